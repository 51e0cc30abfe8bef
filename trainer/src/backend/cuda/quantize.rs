//! Ternary quantization of the latent weights (quantize.cu): `eff` from `params`.

use super::{CudaBackend, linear};
use crate::backend::BackendResult;
use cudarc::driver::{CudaSlice, LaunchConfig};
use std::ops::Range;

/// The kernels of quantize.cu.
pub(super) const KERNELS: &[&str] = &["abs_sum_kernel", "ternary_kernel"];

pub(super) fn quantize(
    b: &CudaBackend,
    eff: &mut CudaSlice<f32>,
    params: &CudaSlice<f32>,
    ternary: &[Range<usize>],
    quantize: bool,
) -> BackendResult<()> {
    linear::eff_rewritten(b);
    b.stream
        .memcpy_dtod(params, eff)
        .map_err(|e| b.err("quantize copy", e))?;
    if !quantize || ternary.is_empty() {
        return Ok(());
    }
    let sums = b.sums(ternary.len())?;
    let ranges: Vec<u64> = (ternary.iter())
        .flat_map(|r| [r.start as u64, r.len() as u64])
        .collect();
    let on_device = b
        .stream
        .clone_htod(&ranges)
        .map_err(|e| b.err("upload ternary ranges", e))?;
    let most = ternary.iter().map(|r| r.len() as u64).max().unwrap_or(0);
    let tensors = ternary.len() as u32;
    let cfg = |cap: u64| LaunchConfig {
        grid_dim: (most.div_ceil(256).clamp(1, cap) as u32, tensors, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let table = b.ptr(&on_device);
    launch!(b, "abs_sum_kernel", cfg(1024), sums, b.ptr(params), table);
    launch!(
        b,
        "ternary_kernel",
        cfg(1 << 16),
        b.ptr(eff),
        b.ptr(params),
        sums,
        table
    );
    Ok(())
}
