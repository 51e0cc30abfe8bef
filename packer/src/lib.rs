//! The packer: the operator's tools on blobs — inspect, run, and uploading them to a running
//! canister (`ic`, behind the default `ic` feature). Packing itself (checkpoint → blob), the blob
//! format and checkpoints are defined in `walsh-spec`; running and scoring a blob is
//! `walsh-engine`. `main.rs` is only the command line over these.

#[cfg(feature = "ic")]
pub mod ic;
pub mod inspect;
pub mod run;
