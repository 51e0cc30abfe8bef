//! The trainer's integration tests as one test binary, each former test file a module: one
//! compile and one link instead of seven (CI's build time, docs/BENCHMARKS.md "CI's time"). Run
//! one file's tests with its module as the filter, e.g. `cargo test -p walsh-trainer --test
//! integration gradcheck::`. The CUDA tests stay a binary of their own (`--test cuda`, built only
//! with `--features cuda`), which trainer/gpu/build.sh ships to the GPU machine.

mod common;
mod gradcheck;
mod model_gradcheck;
mod parity;
mod plot;
mod prepare;
mod sample;
mod train;
