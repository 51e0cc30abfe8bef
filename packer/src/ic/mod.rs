//! The operator's client of a running walsh canister: `packer upload` (chunked, resumable,
//! several chunks in flight, retried) and `packer download` (the active blob read back and
//! verified).
//!
//! The logic (`upload`, `download`, `client`, `retry`) runs over the small [`Transport`] trait;
//! `agent` implements it with ic-agent for real replicas, and the workspace tests implement it
//! over the IC emulation harness, which runs the canister's real wasm.

pub mod agent;
pub mod client;
pub mod dfx;
pub mod download;
pub mod error;
pub mod report;
pub mod retry;
pub mod transport;
pub mod upload;

pub use client::{CallStats, Client};
pub use error::Error;
pub use retry::RetryPolicy;
pub use transport::{CallError, Transport};
