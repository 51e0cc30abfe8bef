//! The packer: checkpoints in, `.walsh` blobs out (SPEC §4), and the tools an operator uses on
//! blobs, including uploading them to a running canister (`ic`, behind the default `ic` feature).
//! `main.rs` is only the command line over these modules.

pub mod checkpoint;
pub mod config_file;
pub mod eval;
#[cfg(feature = "ic")]
pub mod ic;
pub mod init;
pub mod inspect;
pub mod pack;
pub mod run;

pub use checkpoint::{Checkpoint, CheckpointError, Tensor};
pub use pack::{PackOptions, Packing, pack};
