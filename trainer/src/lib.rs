//! The Walsh trainer, for the model defined in `docs/SPEC.md` (described by
//! [`walsh_spec::config::ModelConfig`]).
//!
//! Data flows [`prepare`] (text → token files, read by [`TokenFile`]) → [`train`] (AdamW over the
//! [`model`], written once over the [`backend::Backend`] operations; [`backend::cpu`] runs the
//! reference [`ops`]) → checkpoints that `packer` reads. [`eval`] measures loss and bits per byte
//! and samples text; [`generate`] continues many sequences at once and [`corpus`] writes a
//! model's stories as training text (sequence-level distillation); [`plot`] draws a run's curves,
//! [`frontier`] the bits per byte of a set of models against their blob sizes. The CUDA backend is trainer part 2.

pub mod backend;
pub mod bench;
pub mod corpus;
pub mod eval;
pub mod frontier;
pub mod generate;
pub mod model;
pub mod ops;
pub mod plot;
pub mod prepare;
pub mod train;

pub use prepare::TokenFile;
pub use walsh_spec::config::ModelConfig;
