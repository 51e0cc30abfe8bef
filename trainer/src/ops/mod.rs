//! The CPU reference ops of the trainer, llm.c style: every op is a pair of plain functions,
//! `x_forward(out, …saved…, inp, params, dims)` and `x_backward(dinp, dparams, dout, inp, saved,
//! dims)`, over row-major buffers of B·T rows, following `docs/SPEC.md` exactly.
//!
//! Conventions shared by every op:
//! - The ops are generic over the float type ([`Real`]): the trainer runs them in `f32`, the
//!   gradient checks in `f64`.
//! - A forward overwrites its outputs and its saved buffers.
//! - A backward **accumulates** (`+=`) into every gradient it produces, inputs and parameters
//!   alike, so a tensor consumed twice (the residual stream, the normed input of q, k and v) needs
//!   no extra add; zero the gradients once per step.
//! - Work is split over rows (or sequences, or vocabulary chunks) with rayon where it pays.

pub mod algebra_linear;
pub mod attention;
pub mod cross_entropy;
pub mod distill;
pub mod embedding;
pub mod head_mixing;
pub mod rmsnorm;
pub mod rope;
pub mod swiglu;
pub mod ternary;

use num_traits::{Float, FromPrimitive, NumAssign};
use walsh_spec::hadamard::FhtScalar;

/// The float type an op runs in (`f32` in training, `f64` in the gradient checks).
pub trait Real:
    Float
    + NumAssign
    + FromPrimitive
    + FhtScalar
    + Send
    + Sync
    + std::fmt::Debug
    + std::iter::Sum
    + 'static
{
}

impl<T> Real for T where
    T: Float
        + NumAssign
        + FromPrimitive
        + FhtScalar
        + Send
        + Sync
        + std::fmt::Debug
        + std::iter::Sum
        + 'static
{
}

/// `x` as a `T` (exact for the small integers and the f32/f64 constants the ops use).
#[inline]
pub(crate) fn cast<T: Real>(x: f64) -> T {
    T::from_f64(x).expect("every f64 converts to a Real")
}

/// Σ a·b, with eight independent accumulators so that it vectorizes without reassociation.
#[inline]
pub(crate) fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [T::zero(); 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: T = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| *x * *y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// y += s·x.
#[inline]
pub(crate) fn axpy<T: Real>(y: &mut [T], s: T, x: &[T]) {
    debug_assert_eq!(x.len(), y.len());
    for (o, v) in y.iter_mut().zip(x) {
        *o += s * *v;
    }
}

/// Rows per rayon task for elementwise and row-wise ops: enough work to amortise a task.
pub(crate) fn rows_per_task(row_len: usize) -> usize {
    (16_384 / row_len.max(1)).max(1)
}
