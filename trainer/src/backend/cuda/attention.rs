//! Causal attention, flash-style (attention.cu on CUDA cores, attention_tc.cu on tensor cores):
//! the forward saves each row's log-sum-exp, the backward recomputes the softmax from it.

use super::CudaBackend;
use crate::backend::BackendResult;
use crate::ops::attention::AttnDims;
use cudarc::driver::{CudaSlice, LaunchConfig};

/// The CUDA-core attention kernels (attention.cu), all loaded.
pub(super) const KERNELS: &[&str] = &[
    "flash_forward_8",
    "flash_forward_16",
    "flash_forward_32",
    "flash_forward_64",
    "flash_forward_128",
    "flash_backward_q_8",
    "flash_backward_q_16",
    "flash_backward_q_32",
    "flash_backward_q_64",
    "flash_backward_q_128",
    "flash_backward_kv_8",
    "flash_backward_kv_16",
    "flash_backward_kv_32",
    "flash_backward_kv_64",
    "flash_backward_kv_128",
];
/// The tensor-core attention kernels (attention_tc.cu: mma.sync TF32, compute capability 8.0 and
/// up), by head size: forward, dq, dk+dv; loaded where the GPU has them.
pub(super) const TC_ATTENTION: &[(usize, [&str; 3])] = &[
    (
        8,
        [
            "flash_forward_tc_8",
            "flash_backward_q_tc_8",
            "flash_backward_kv_tc_8",
        ],
    ),
    (
        16,
        [
            "flash_forward_tc_16",
            "flash_backward_q_tc_16",
            "flash_backward_kv_tc_16",
        ],
    ),
    (
        32,
        [
            "flash_forward_tc_32",
            "flash_backward_q_tc_32",
            "flash_backward_kv_tc_32",
        ],
    ),
    (
        64,
        [
            "flash_forward_tc_64",
            "flash_backward_q_tc_64",
            "flash_backward_kv_tc_64",
        ],
    ),
];

pub(super) fn attention_saved_len(_b: &CudaBackend, batch: usize, dims: AttnDims) -> usize {
    // The flash kernels keep only each row's log-sum-exp.
    batch * dims.n_head * dims.seq_len
}

pub(super) fn attention_forward(
    b: &CudaBackend,
    out: &mut CudaSlice<f32>,
    lse: &mut CudaSlice<f32>,
    q: &CudaSlice<f32>,
    k: &CudaSlice<f32>,
    v: &CudaSlice<f32>,
    dims: AttnDims,
) -> BackendResult<()> {
    let (kernels, cfg, [t, h, hd]) = b.flash(q.len(), dims)?;
    launch!(
        b,
        kernels[0],
        cfg,
        b.ptr(out),
        b.ptr(lse),
        b.ptr(q),
        b.ptr(k),
        b.ptr(v),
        t,
        h,
        hd
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn attention_backward(
    b: &CudaBackend,
    dq: &mut CudaSlice<f32>,
    dk: &mut CudaSlice<f32>,
    dv: &mut CudaSlice<f32>,
    dout: &CudaSlice<f32>,
    out: &CudaSlice<f32>,
    q: &CudaSlice<f32>,
    k: &CudaSlice<f32>,
    v: &CudaSlice<f32>,
    lse: &CudaSlice<f32>,
    dims: AttnDims,
) -> BackendResult<()> {
    let (kernels, cfg, [t, h, hd]) = b.flash(q.len(), dims)?;
    let dsum = b.scratch("attention dO·O", lse.len())?;
    launch!(
        b,
        kernels[1],
        cfg,
        b.ptr(dq),
        dsum,
        b.ptr(dout),
        b.ptr(out),
        b.ptr(q),
        b.ptr(k),
        b.ptr(v),
        b.ptr(lse),
        t,
        h,
        hd
    );
    launch!(
        b,
        kernels[2],
        cfg,
        b.ptr(dk),
        b.ptr(dv),
        b.ptr(dout),
        b.ptr(q),
        b.ptr(k),
        b.ptr(v),
        b.ptr(lse),
        dsum,
        t,
        h,
        hd
    );
    Ok(())
}

impl CudaBackend {
    /// The flash-attention kernels (forward, dq, dk+dv) compiled for the smallest head size
    /// ≥ hd, their launch shape (one block per (b, h) and 64 rows: one row a thread on CUDA cores,
    /// 16 a warp on tensor cores), and (T, H, hd).
    #[allow(clippy::type_complexity)]
    fn flash(
        &self,
        len: usize,
        dims: AttnDims,
    ) -> BackendResult<([&'static str; 3], LaunchConfig, [u32; 3])> {
        const ATT_Q: usize = 64;
        let tc = if self.tc_attention {
            TC_ATTENTION.iter().find(|(hd, _)| dims.head_dim <= *hd)
        } else {
            None
        };
        let batch = len / (dims.seq_len * dims.d());
        let cfg = LaunchConfig {
            grid_dim: (
                (batch * dims.n_head) as u32,
                dims.seq_len.div_ceil(ATT_Q) as u32,
                1,
            ),
            // attention_tc.cu's TC_WARPS warps of 16 rows.
            block_dim: (if tc.is_some() { 128 } else { ATT_Q as u32 }, 1, 1),
            shared_mem_bytes: 0,
        };
        let dims_u32 = [dims.seq_len, dims.n_head, dims.head_dim].map(|x| x as u32);
        if let Some((_, names)) = tc {
            return Ok((*names, cfg, dims_u32));
        }
        let kernels = match dims.head_dim {
            0..=8 => [
                "flash_forward_8",
                "flash_backward_q_8",
                "flash_backward_kv_8",
            ],
            9..=16 => [
                "flash_forward_16",
                "flash_backward_q_16",
                "flash_backward_kv_16",
            ],
            17..=32 => [
                "flash_forward_32",
                "flash_backward_q_32",
                "flash_backward_kv_32",
            ],
            33..=64 => [
                "flash_forward_64",
                "flash_backward_q_64",
                "flash_backward_kv_64",
            ],
            65..=128 => [
                "flash_forward_128",
                "flash_backward_q_128",
                "flash_backward_kv_128",
            ],
            hd => {
                return Err(self.err(
                    "attention",
                    format!("head dimension {hd} is over the kernels' largest, 128"),
                ));
            }
        };
        Ok((kernels, cfg, dims_u32))
    }
}
