//! What docs/SPEC.md defines, in one crate at the ground of the workspace: the model config
//! (§1), the tensor list (§3), the `.walsh` blob format (§4) and ternary packing, the octonion
//! and Hadamard tables (§2.2), sampling (§5), the end-of-text convention of text files, and —
//! with the `checkpoint` feature — checkpoints on disk, TOML configs, initialisation and packing.
//!
//! Every stage depends on this crate and it depends on none of them: the trainer, the engine,
//! the canister and the packer all read the same definitions. It knows nothing of the Internet
//! Computer, the command line or the GPU, and builds for wasm32.

pub mod blob;
pub mod config;
pub mod hadamard;
pub mod octonion;
pub mod sampler;
pub mod ternary;
pub mod text;
pub mod upload;

#[cfg(feature = "checkpoint")]
pub mod checkpoint;
#[cfg(feature = "checkpoint")]
pub mod config_file;
#[cfg(feature = "checkpoint")]
pub mod init;
#[cfg(feature = "checkpoint")]
pub mod pack;

pub use blob::BlobError;
#[cfg(feature = "checkpoint")]
pub use checkpoint::{Checkpoint, CheckpointError, Tensor};
pub use config::ModelConfig;
#[cfg(feature = "checkpoint")]
pub use pack::{PackOptions, Packing, pack};
pub use sampler::SamplingParams;
