//! The token embedding's lookups (embedding.cu), standard or hashed; the tied output logits are
//! `cross_entropy`'s.

use super::CudaBackend;
use super::launch::elems;
use crate::backend::{BackendResult, EmbRef};
use cudarc::driver::CudaSlice;

/// The kernels of embedding.cu.
pub(super) const KERNELS: &[&str] = &["embed_kernel", "embed_backward_kernel"];

pub(super) fn embed_forward(
    b: &CudaBackend,
    out: &mut CudaSlice<f32>,
    tokens: &CudaSlice<u32>,
    eff: &CudaSlice<f32>,
    emb: &EmbRef,
) -> BackendResult<()> {
    let (e1, e2, buckets, d) = match emb {
        EmbRef::Standard { table, d, .. } => (b.at(eff, table.start), 0u64, 1, *d),
        EmbRef::Hash {
            e1, e2, buckets, d, ..
        } => (b.at(eff, e1.start), b.at(eff, e2.start), *buckets, *d),
    };
    let rows = (out.len() / d) as u64;
    launch!(
        b,
        "embed_kernel",
        elems(rows * d as u64),
        b.ptr(out),
        b.ptr(tokens),
        e1,
        e2,
        buckets as u32,
        rows,
        d as u32
    );
    Ok(())
}

pub(super) fn embed_backward(
    b: &CudaBackend,
    grads: &mut CudaSlice<f32>,
    dout: &CudaSlice<f32>,
    tokens: &CudaSlice<u32>,
    emb: &EmbRef,
) -> BackendResult<()> {
    let (g1, g2, buckets, d) = match emb {
        EmbRef::Standard { table, d, .. } => (b.at(grads, table.start), 0u64, 1, *d),
        EmbRef::Hash {
            e1, e2, buckets, d, ..
        } => (b.at(grads, e1.start), b.at(grads, e2.start), *buckets, *d),
    };
    let rows = (dout.len() / d) as u64;
    launch!(
        b,
        "embed_backward_kernel",
        elems(rows * d as u64),
        g1,
        g2,
        b.ptr(dout),
        b.ptr(tokens),
        buckets as u32,
        rows,
        d as u32
    );
    Ok(())
}
