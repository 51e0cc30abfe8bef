//! Distillation (distill.cu; the CPU reference is `ops::distill`): the teacher's top-k targets,
//! and the student's KL term over its tied standard logits, which it computes in f32 operands
//! (`padded_table`) CE_ROWS rows at a time, recomputing them in the backward.

use super::CudaBackend;
use super::launch::rows_cfg;
use crate::backend::{BackendResult, EmbRef};
use cudarc::driver::{CudaSlice, LaunchConfig};

/// The kernels of distill.cu.
pub(super) const KERNELS: &[&str] = &[
    "distill_targets_kernel",
    "distill_forward_kernel",
    "distill_backward_kernel",
];

/// Rows of student logits materialised at once.
const ROWS: usize = 4096;

fn standard(
    b: &CudaBackend,
    emb: &EmbRef,
    op: &'static str,
) -> BackendResult<(usize, usize, usize)> {
    match emb {
        EmbRef::Standard { table, vocab, d } => Ok((table.start, *vocab, *d)),
        EmbRef::Hash { .. } => Err(b.err(
            op,
            "distillation needs a standard embedding (the student is a hash model)",
        )),
    }
}

fn checked_k(b: &CudaBackend, k: usize, vocab: usize, op: &'static str) -> BackendResult<()> {
    if k == 0 || k > vocab {
        return Err(b.err(op, format!("top-k {k} outside 1..={vocab}")));
    }
    Ok(())
}

pub(super) fn distill_targets(
    b: &CudaBackend,
    idx: &mut CudaSlice<u32>,
    q: &mut CudaSlice<f32>,
    logits: &mut CudaSlice<f32>,
    vocab: usize,
    k: usize,
    tau: f64,
) -> BackendResult<()> {
    checked_k(b, k, vocab, "distill targets")?;
    let rows = logits.len() / vocab;
    if idx.len() < rows * k || q.len() < rows * k {
        return Err(b.err(
            "distill targets",
            format!("outputs shorter than {rows} × {k}"),
        ));
    }
    // One warp a row, eight rows a block.
    let cfg = LaunchConfig {
        grid_dim: (rows.div_ceil(8).max(1) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    launch!(
        b,
        "distill_targets_kernel",
        cfg,
        b.ptr(idx),
        b.ptr(q),
        b.ptr(logits),
        rows as u64,
        vocab as u32,
        k as u32,
        (1.0 / tau) as f32
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn distill_forward(
    b: &CudaBackend,
    lse: &mut CudaSlice<f32>,
    h: &CudaSlice<f32>,
    idx: &CudaSlice<u32>,
    q: &CudaSlice<f32>,
    k: usize,
    tau: f64,
    eff: &CudaSlice<f32>,
    emb: &EmbRef,
) -> BackendResult<f64> {
    let (start, vocab, d) = standard(b, emb, "distill forward")?;
    checked_k(b, k, vocab, "distill forward")?;
    let n = lse.len();
    let (table, ld) = b.padded_table(eff, &(start..start + vocab * d), vocab, d)?;
    let chunk = ROWS.min(n).max(1);
    let logits = b.scratch("distill logits", chunk * ld)?;
    let loss = b.scratch("distill loss", n)?;
    for r0 in (0..n).step_by(chunk) {
        let rows = chunk.min(n - r0);
        let hp = b.at(h, r0 * d);
        b.gemm(
            "distill logits",
            (false, true),
            (rows, ld, d),
            (hp, d),
            (table, d),
            (logits, ld),
            0.0,
        )?;
        launch!(
            b,
            "distill_forward_kernel",
            rows_cfg(rows, 256, 0),
            b.at(lse, r0),
            loss + 4 * r0 as u64,
            logits,
            b.ptr(idx) + 4 * (r0 * k) as u64,
            b.at(q, r0 * k),
            vocab as u32,
            ld as u32,
            k as u32,
            (1.0 / tau) as f32,
            (tau * tau) as f32
        );
    }
    let map = b.scratch.borrow();
    let host = b
        .stream
        .clone_dtoh(&map["distill loss"].slice(0..n))
        .map_err(|e| b.err("read distill loss", e))?;
    drop(map);
    b.sync("read distill loss")?;
    Ok(host.iter().map(|&v| v as f64).sum::<f64>() / n.max(1) as f64)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn distill_backward(
    b: &CudaBackend,
    dh: &mut CudaSlice<f32>,
    grads: &mut CudaSlice<f32>,
    dloss: f64,
    h: &CudaSlice<f32>,
    idx: &CudaSlice<u32>,
    q: &CudaSlice<f32>,
    lse: &CudaSlice<f32>,
    k: usize,
    tau: f64,
    eff: &CudaSlice<f32>,
    emb: &EmbRef,
) -> BackendResult<()> {
    let (start, vocab, d) = standard(b, emb, "distill backward")?;
    checked_k(b, k, vocab, "distill backward")?;
    let n = lse.len();
    let scale = (dloss * tau / n.max(1) as f64) as f32;
    let (table, ld) = b.padded_table(eff, &(start..start + vocab * d), vocab, d)?;
    let chunk = ROWS.min(n).max(1);
    let logits = b.scratch("distill logits", chunk * ld)?;
    let de = b.scratch("distill table grad", ld * d)?;
    for r0 in (0..n).step_by(chunk) {
        let rows = chunk.min(n - r0);
        let hp = b.at(h, r0 * d);
        b.gemm(
            "distill logits",
            (false, true),
            (rows, ld, d),
            (hp, d),
            (table, d),
            (logits, ld),
            0.0,
        )?;
        launch!(
            b,
            "distill_backward_kernel",
            rows_cfg(rows, 256, 0),
            logits,
            b.at(lse, r0),
            b.ptr(idx) + 4 * (r0 * k) as u64,
            b.at(q, r0 * k),
            vocab as u32,
            ld as u32,
            k as u32,
            (1.0 / tau) as f32,
            scale
        );
        // The logits are now their gradient g [rows, ld]: dh += g·E, dE (= or +=) gᵀ·h.
        b.gemm(
            "distill dh",
            (false, false),
            (rows, d, ld),
            (logits, ld),
            (table, d),
            (b.at(dh, r0 * d), d),
            1.0,
        )?;
        let beta = if r0 == 0 { 0.0 } else { 1.0 };
        b.gemm(
            "distill dE",
            (true, false),
            (ld, d, rows),
            (logits, ld),
            (hp, d),
            (de, d),
            beta,
        )?;
    }
    let len = (vocab * d) as u64;
    launch!(
        b,
        "add_assign_kernel",
        super::launch::elems(len),
        b.at(grads, start),
        de,
        len
    );
    Ok(())
}
