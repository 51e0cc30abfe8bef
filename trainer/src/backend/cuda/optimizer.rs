//! The optimizer (optimizer.cu): the gradient's sum of squares and AdamW.

use super::CudaBackend;
use super::launch::elems;
use crate::backend::{AdamW, BackendResult};
use cudarc::driver::{CudaSlice, LaunchConfig};
use std::ops::Range;

/// The kernels of optimizer.cu.
pub(super) const KERNELS: &[&str] = &["sum_squares_kernel", "adamw_kernel"];

/// Weight-decay flags per parameter, for the ranges they were built from.
pub(super) type DecayMask = (Vec<Range<usize>>, CudaSlice<u8>);

pub(super) fn sum_squares(b: &CudaBackend, buf: &CudaSlice<f32>) -> BackendResult<f64> {
    let sums = b.sums(1)?;
    let n = buf.len() as u64;
    let cfg = LaunchConfig {
        grid_dim: (n.div_ceil(256).clamp(1, 1024) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    launch!(b, "sum_squares_kernel", cfg, sums, b.ptr(buf), n);
    Ok(b.read_sums(1)?[0])
}

#[allow(clippy::too_many_arguments)]
pub(super) fn adamw(
    b: &CudaBackend,
    params: &mut CudaSlice<f32>,
    grads: &CudaSlice<f32>,
    m: &mut CudaSlice<f32>,
    v: &mut CudaSlice<f32>,
    decay: &[Range<usize>],
    grad_scale: f64,
    hp: AdamW,
) -> BackendResult<()> {
    let n = params.len();
    let mut mask = b.mask.borrow_mut();
    if mask
        .as_ref()
        .is_none_or(|(r, b)| r.as_slice() != decay || b.len() != n)
    {
        let mut host = vec![0u8; n];
        for r in decay {
            host[r.clone()].fill(1);
        }
        let buf = b
            .stream
            .clone_htod(&host)
            .map_err(|e| b.err("adamw mask", e))?;
        *mask = Some((decay.to_vec(), buf));
    }
    let mp = b.ptr(&mask.as_ref().expect("built above").1);
    let t = hp.step as i32;
    let (c1, c2) = (1.0 - hp.beta1.powi(t), 1.0 - hp.beta2.powi(t));
    launch!(
        b,
        "adamw_kernel",
        elems(n as u64),
        b.ptr(params),
        b.ptr(grads),
        b.ptr(m),
        b.ptr(v),
        mp,
        n as u64,
        grad_scale as f32,
        hp.lr as f32,
        hp.beta1 as f32,
        hp.beta2 as f32,
        c1 as f32,
        c2 as f32,
        hp.eps as f32,
        hp.weight_decay as f32
    );
    Ok(())
}
