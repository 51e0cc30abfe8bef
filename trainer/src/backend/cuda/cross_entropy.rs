//! The cross-entropy of the tied logits and the logits themselves (cross_entropy.cu), standard or
//! hashed.

use super::launch::{elems, rows_cfg};
use super::{CudaBackend, Matmul};
use crate::backend::{BackendResult, EmbRef};
use cudarc::driver::CudaSlice;
use std::ops::Range;

/// The kernels of cross_entropy.cu.
pub(super) const KERNELS: &[&str] = &[
    "ce_forward_kernel",
    "ce_backward_kernel",
    "ce_backward_bf16_kernel",
    "ce_forward_bf16_kernel",
    "hash_ce_forward_kernel",
    "hash_ce_backward_kernel",
    "hash_ce_forward_factored_kernel",
    "hash_ce_backward_factored_kernel",
    "hash_logits_kernel",
];

/// Rows of logits materialised at once by the standard cross-entropy (bounds its N×V scratch).
const CE_ROWS: usize = 4096;
/// The most logits (bf16) the bf16 mode's cross-entropy forward keeps for its backward, which then
/// need not recompute them: 2 GiB, 8192 rows of GPT-2's vocabulary twice over.
const CE_SAVE: usize = 1 << 30;

/// The padded vocabulary extent of the standard cross-entropy's GEMMs and the row stride of its
/// logits: V rounded up to 32 floats (128 bytes; the bf16 kernels read 8 at a time). At V = 50,257
/// (odd) cuBLAS could only pick its Ampere-era `align1` TF32 kernels, ~50 TFLOP/s on an H200
/// (docs/BENCHMARKS.md).
fn logits_stride(vocab: usize) -> usize {
    vocab.next_multiple_of(32)
}

/// Operands of the standard cross-entropy's GEMMs (`CudaBackend::ce_operands`): device addresses
/// of the table padded to `ld` rows and of h, both bf16 when `bf16`.
struct CeOperands {
    bf16: bool,
    ld: usize,
    table: u64,
    h: u64,
}

/// What the forward keeps for the backward besides `lse`: in the bf16 mode, the standard
/// embedding's bf16 logits of all `rows` rows (two to a float, rows [`logits_stride`] apart),
/// which the backward then turns into their gradient in place instead of recomputing them — when
/// they fit in `CE_SAVE`; otherwise nothing, and the backward recomputes them `CE_ROWS` rows at a
/// time, as the f32 and TF32 modes and the hash embedding always do.
pub(super) fn cross_entropy_saved_len(b: &CudaBackend, rows: usize, emb: &EmbRef) -> usize {
    match emb {
        EmbRef::Standard { vocab, .. } if b.matmul == Matmul::Bf16 => {
            let len = rows * logits_stride(*vocab);
            if len <= CE_SAVE { len.div_ceil(2) } else { 0 }
        }
        _ => 0,
    }
}

/// Whether `saved` can hold what the forward keeps for `rows` rows (an empty or short one, as
/// the CPU backend or a caller that wants no copy gives, makes the backward recompute).
fn keeps_logits(b: &CudaBackend, saved: &CudaSlice<f32>, rows: usize, emb: &EmbRef) -> bool {
    let need = cross_entropy_saved_len(b, rows, emb);
    need > 0 && saved.len() >= need
}

pub(super) fn cross_entropy_forward(
    b: &CudaBackend,
    lse: &mut CudaSlice<f32>,
    saved: &mut CudaSlice<f32>,
    h: &CudaSlice<f32>,
    targets: &CudaSlice<u32>,
    eff: &CudaSlice<f32>,
    emb: &EmbRef,
) -> BackendResult<f64> {
    let n = lse.len();
    let loss = b.scratch("loss", n)?;
    match emb {
        EmbRef::Standard { table, vocab, d } => {
            let o = b.ce_operands(h, eff, table, *vocab, *d)?;
            // All n rows at once into `saved` when it keeps them, else CE_ROWS rows of scratch.
            let (chunk, logits) = if keeps_logits(b, saved, n, emb) {
                (n.max(1), b.ptr(saved))
            } else {
                b.ce_logits_scratch(&o, n)?
            };
            let kernel = if o.bf16 {
                "ce_forward_bf16_kernel"
            } else {
                "ce_forward_kernel"
            };
            for r0 in (0..n).step_by(chunk) {
                let rows = chunk.min(n - r0);
                b.ce_logits(&o, logits, r0, rows, *d)?;
                launch!(
                    b,
                    kernel,
                    rows_cfg(rows, 256, 0),
                    b.at(lse, r0),
                    loss + 4 * r0 as u64,
                    logits,
                    b.ptr(targets) + 4 * r0 as u64,
                    *vocab as u32,
                    o.ld as u32
                );
            }
        }
        EmbRef::Hash {
            e1,
            e2,
            buckets,
            vocab,
            d,
        } => {
            let (s1, s2) = b.hash_scores(b.ptr(h), n, eff, e1, e2, *buckets, *d)?;
            let kernel = if vocab <= &(buckets * buckets) {
                "hash_ce_forward_factored_kernel"
            } else {
                "hash_ce_forward_kernel"
            };
            launch!(
                b,
                kernel,
                rows_cfg(n, 256, 0),
                b.ptr(lse),
                loss,
                s1,
                s2,
                b.ptr(targets),
                *buckets as u32,
                *vocab as u32
            );
        }
    }
    let map = b.scratch.borrow();
    let host = b
        .stream
        .clone_dtoh(&map["loss"].slice(0..n))
        .map_err(|e| b.err("read loss", e))?;
    drop(map);
    b.sync("read loss")?;
    Ok(host.iter().map(|&v| v as f64).sum::<f64>() / n.max(1) as f64)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn cross_entropy_backward(
    b: &CudaBackend,
    dh: &mut CudaSlice<f32>,
    grads: &mut CudaSlice<f32>,
    dloss: f64,
    h: &CudaSlice<f32>,
    targets: &CudaSlice<u32>,
    lse: &CudaSlice<f32>,
    saved: &mut CudaSlice<f32>,
    eff: &CudaSlice<f32>,
    emb: &EmbRef,
) -> BackendResult<()> {
    let n = lse.len();
    let scale = (dloss / n.max(1) as f64) as f32;
    match emb {
        EmbRef::Standard { table, vocab, d } => {
            let o = b.ce_operands(h, eff, table, *vocab, *d)?;
            let ld = o.ld;
            // The forward's logits when it kept them in `saved` (the bf16 mode), else
            // recomputed CE_ROWS rows at a time.
            let kept = keeps_logits(b, saved, n, emb);
            let (chunk, logits) = if kept {
                (n.max(1), b.ptr(saved))
            } else {
                b.ce_logits_scratch(&o, n)?
            };
            let kernel = if o.bf16 {
                "ce_backward_bf16_kernel"
            } else {
                "ce_backward_kernel"
            };
            let elem = if o.bf16 { 2 } else { 4 };
            let de = b.scratch("table grad", ld * d)?;
            for r0 in (0..n).step_by(chunk) {
                let rows = chunk.min(n - r0);
                if !kept {
                    b.ce_logits(&o, logits, r0, rows, *d)?;
                }
                launch!(
                    b,
                    kernel,
                    rows_cfg(rows, 256, 0),
                    logits,
                    b.at(lse, r0),
                    b.ptr(targets) + 4 * r0 as u64,
                    *vocab as u32,
                    ld as u32,
                    scale
                );
                // The logits are now their gradient. The padded columns are zero (the zero
                // rows' logits, or zeroed by the bf16 kernel) and add nothing to dh; dE's
                // padded rows are not added to the gradient. (dE straight into the gradient,
                // V = 50,257 rows, made the GEMM slower than this scratch and its add:
                // 2.15 against 1.94 ms a step on an H200.)
                let (dhp, hp) = (b.at(dh, r0 * d), o.h + elem * (r0 * d) as u64);
                let de_beta = if r0 == 0 { 0.0 } else { 1.0 };
                let types = (o.bf16, false);
                let (op, mode) = ("cross-entropy dh", (false, false));
                let (g, e) = ((logits, ld), (o.table, *d));
                b.gemm_of(op, types, mode, (rows, *d, ld), g, e, (dhp, *d), 1.0)?;
                let (op, mode) = ("cross-entropy dE", (true, false));
                b.gemm_of(
                    op,
                    types,
                    mode,
                    (ld, *d, rows),
                    g,
                    (hp, *d),
                    (de, *d),
                    de_beta,
                )?;
            }
            let len = (vocab * d) as u64;
            launch!(
                b,
                "add_assign_kernel",
                elems(len),
                b.at(grads, table.start),
                de,
                len
            );
        }
        EmbRef::Hash {
            e1,
            e2,
            buckets,
            vocab,
            d,
        } => {
            let nb = *buckets;
            let factored = *vocab <= nb * nb;
            if !factored && 8 * nb > 48 * 1024 {
                return Err(b.err("hash cross-entropy", format!("{nb} buckets need {} bytes of shared memory; at most 6144 buckets are supported", 8 * nb)));
            }
            let (s1, s2) = b.hash_scores(b.ptr(h), n, eff, e1, e2, nb, *d)?;
            let ds1 = b.scratch("ds1", n * nb)?;
            let ds2 = b.scratch("ds2", n * nb)?;
            let (kernel, shared) = if factored {
                ("hash_ce_backward_factored_kernel", 0)
            } else {
                ("hash_ce_backward_kernel", (8 * nb) as u32)
            };
            launch!(
                b,
                kernel,
                rows_cfg(n, 256, shared),
                ds1,
                ds2,
                s1,
                s2,
                b.ptr(lse),
                b.ptr(targets),
                nb as u32,
                *vocab as u32,
                scale
            );
            let hp = b.ptr(h);
            for (ds, e) in [(ds1, e1), (ds2, e2)] {
                b.gemm(
                    "hash cross-entropy dh",
                    (false, false),
                    (n, *d, nb),
                    (ds, nb),
                    (b.at(eff, e.start), *d),
                    (b.ptr(dh), *d),
                    1.0,
                )?;
                b.gemm(
                    "hash cross-entropy dE",
                    (true, false),
                    (nb, *d, n),
                    (ds, nb),
                    (hp, *d),
                    (b.at(grads, e.start), *d),
                    1.0,
                )?;
            }
        }
    }
    Ok(())
}

pub(super) fn logits(
    b: &CudaBackend,
    out: &mut CudaSlice<f32>,
    h: &CudaSlice<f32>,
    eff: &CudaSlice<f32>,
    emb: &EmbRef,
) -> BackendResult<()> {
    match emb {
        EmbRef::Standard { table, vocab, d } => {
            let rows = h.len() / d;
            b.gemm(
                "logits",
                (false, true),
                (rows, *vocab, *d),
                (b.ptr(h), *d),
                (b.at(eff, table.start), *d),
                (b.ptr(out), *vocab),
                0.0,
            )
        }
        EmbRef::Hash {
            e1,
            e2,
            buckets,
            vocab,
            d,
        } => {
            let rows = h.len() / d;
            let (s1, s2) = b.hash_scores(b.ptr(h), rows, eff, e1, e2, *buckets, *d)?;
            launch!(
                b,
                "hash_logits_kernel",
                elems((rows * vocab) as u64),
                b.ptr(out),
                s1,
                s2,
                rows as u64,
                *buckets as u32,
                *vocab as u32
            );
            Ok(())
        }
    }
}

impl CudaBackend {
    #[allow(clippy::too_many_arguments)]
    fn hash_scores(
        &self,
        h: u64,
        rows: usize,
        eff: &CudaSlice<f32>,
        e1: &Range<usize>,
        e2: &Range<usize>,
        buckets: usize,
        d: usize,
    ) -> BackendResult<(u64, u64)> {
        let s1 = self.scratch("s1", rows * buckets)?;
        let s2 = self.scratch("s2", rows * buckets)?;
        self.gemm(
            "hash scores",
            (false, true),
            (rows, buckets, d),
            (h, d),
            (self.at(eff, e1.start), d),
            (s1, buckets),
            0.0,
        )?;
        self.gemm(
            "hash scores",
            (false, true),
            (rows, buckets, d),
            (h, d),
            (self.at(eff, e2.start), d),
            (s2, buckets),
            0.0,
        )?;
        Ok((s1, s2))
    }

    /// The standard cross-entropy's GEMM operands: the table padded to [ld, d] and `h`, as f32
    /// (`h` in place) or, in the bf16 mode, as bf16 copies.
    fn ce_operands(
        &self,
        h: &CudaSlice<f32>,
        eff: &CudaSlice<f32>,
        table: &Range<usize>,
        vocab: usize,
        d: usize,
    ) -> BackendResult<CeOperands> {
        let ld = logits_stride(vocab);
        if self.matmul == Matmul::Bf16 {
            let src = self.at(eff, table.start);
            Ok(CeOperands {
                bf16: true,
                ld,
                table: self.to_bf16("table bf16", src, vocab * d, ld * d)?,
                h: self.to_bf16("h bf16", self.ptr(h), h.len(), h.len())?,
            })
        } else {
            let (table, ld) = self.padded_table(eff, table, vocab, d)?;
            Ok(CeOperands {
                bf16: false,
                ld,
                table,
                h: self.ptr(h),
            })
        }
    }

    /// Logits [rows, ld] of rows r0.. of h into `logits` (bf16 ones in the bf16 mode).
    fn ce_logits(
        &self,
        o: &CeOperands,
        logits: u64,
        r0: usize,
        rows: usize,
        d: usize,
    ) -> BackendResult<()> {
        let (op, mode, dims) = ("cross-entropy logits", (false, true), (rows, o.ld, d));
        if o.bf16 {
            let h = (o.h + 2 * (r0 * d) as u64, d);
            let types = (true, true);
            self.gemm_of(op, types, mode, dims, h, (o.table, d), (logits, o.ld), 0.0)
        } else {
            let h = (o.h + 4 * (r0 * d) as u64, d);
            self.gemm(op, mode, dims, h, (o.table, d), (logits, o.ld), 0.0)
        }
    }

    /// CE_ROWS rows of scratch for the standard cross-entropy's logits (bf16 ones in the bf16
    /// mode), when they are not kept in a saved buffer: (rows at a time, address).
    fn ce_logits_scratch(&self, o: &CeOperands, n: usize) -> BackendResult<(usize, u64)> {
        let rows = CE_ROWS.min(n);
        let len = if o.bf16 {
            (rows * o.ld).div_ceil(2)
        } else {
            rows * o.ld
        };
        Ok((CE_ROWS, self.scratch("logits", len)?))
    }

    /// The tied table [V, d] copied into scratch "table" [ld, d] (ld = [`logits_stride`]) with
    /// rows V.. zero: the logits GEMMs then run over an aligned vocabulary extent (their padded
    /// columns come out zero, and the cross-entropy kernels never read them).
    pub(super) fn padded_table(
        &self,
        eff: &CudaSlice<f32>,
        table: &Range<usize>,
        vocab: usize,
        d: usize,
    ) -> BackendResult<(u64, usize)> {
        let ld = logits_stride(vocab);
        let t = self.scratch("table", ld * d)?;
        let bytes = vocab * d * 4;
        // SAFETY: scratch "table" holds ld·d floats; the source is the table's V·d floats.
        unsafe {
            cudarc::driver::result::memcpy_dtod_async(
                t,
                self.at(eff, table.start),
                bytes,
                self.stream.cu_stream(),
            )
            .and_then(|()| {
                cudarc::driver::result::memset_d8_async(
                    t + bytes as u64,
                    0,
                    (ld - vocab) * d * 4,
                    self.stream.cu_stream(),
                )
            })
        }
        .map_err(|e| self.err("pad the embedding table", e))?;
        Ok((t, ld))
    }
}
