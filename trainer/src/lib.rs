//! The Walsh trainer. Data preparation, the model with its hand-written backward, the CPU and
//! CUDA backends and the training loop arrive with the trainer issues; the model it trains is the
//! one defined in `docs/SPEC.md` and described by [`walsh_canister::config::ModelConfig`].

pub use walsh_canister::config::ModelConfig;
