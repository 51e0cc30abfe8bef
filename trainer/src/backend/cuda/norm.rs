//! RMSNorm (norm.cu): one block a row forward; the backward's blocks take NORM_ROWS rows each.

use super::CudaBackend;
use super::launch::rows_cfg;
use crate::backend::BackendResult;
use cudarc::driver::{CudaSlice, LaunchConfig};
use std::ops::Range;

/// The kernels of norm.cu.
pub(super) const KERNELS: &[&str] = &["rmsnorm_kernel", "rmsnorm_backward_kernel"];

/// Rows per block of the RMSNorm backward (one atomic per gain column and block).
const NORM_ROWS: usize = 16;

pub(super) fn rmsnorm_forward(
    b: &CudaBackend,
    out: &mut CudaSlice<f32>,
    rstd: &mut CudaSlice<f32>,
    inp: &CudaSlice<f32>,
    eff: &CudaSlice<f32>,
    gain: Range<usize>,
) -> BackendResult<()> {
    let d = gain.len();
    let rows = inp.len() / d;
    launch!(
        b,
        "rmsnorm_kernel",
        rows_cfg(rows, 256, 0),
        b.ptr(out),
        b.ptr(rstd),
        b.ptr(inp),
        b.at(eff, gain.start),
        d as u32
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn rmsnorm_backward(
    b: &CudaBackend,
    dinp: &mut CudaSlice<f32>,
    grads: &mut CudaSlice<f32>,
    dout: &CudaSlice<f32>,
    inp: &CudaSlice<f32>,
    rstd: &CudaSlice<f32>,
    eff: &CudaSlice<f32>,
    gain: Range<usize>,
) -> BackendResult<()> {
    let d = gain.len();
    let rows = inp.len() / d;
    if d * 4 > 48 * 1024 {
        return Err(b.err(
            "rmsnorm backward",
            format!(
                "width {d} needs {} bytes of shared memory; at most 12,288 is supported",
                d * 4
            ),
        ));
    }
    launch!(
        b,
        "rmsnorm_backward_kernel",
        LaunchConfig {
            grid_dim: (rows.div_ceil(NORM_ROWS) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: (d * 4) as u32,
        },
        b.ptr(dinp),
        b.at(grads, gain.start),
        b.ptr(dout),
        b.ptr(inp),
        b.ptr(rstd),
        b.at(eff, gain.start),
        rows as u64,
        d as u32,
        NORM_ROWS as u32
    );
    Ok(())
}
