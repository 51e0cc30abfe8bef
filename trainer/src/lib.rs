//! The Walsh trainer, for the model defined in `docs/SPEC.md` (described by
//! [`walsh_canister::config::ModelConfig`]).
//!
//! Here so far: [`prepare`] turns text into token files (`trainer prepare`) and [`TokenFile`]
//! reads them; [`ops`] holds the CPU reference layers, each a forward/backward pair checked
//! against f64 finite differences. The model over a backend trait, the training loop,
//! checkpoints and the CUDA backend are still to come (trainer issues).

pub mod backend;
pub mod model;
pub mod ops;
pub mod plot;
pub mod prepare;

pub use prepare::TokenFile;
pub use walsh_canister::config::ModelConfig;
