//! The AlgebraLinear and the head mixing (linear.cu). Each runs as one dense GEMM against its
//! algebra's weight expanded to a full matrix with α and β folded in (`expand_kernel`: the
//! octonion sign blocks from a coefficient table; `expand_hadamard_kernel`: H32·blockdiag·H32 by
//! an in-register FHT). The backward is two more GEMMs, dx = dy·W' and D = dyᵀ·x, and small
//! kernels over the [out, in] matrix D: the weight gradient folded back (`fold_kernel`,
//! `fold_hadamard_kernel`) and the gradients of α and β. Nothing the size of the activations is
//! saved but the input. At the seed's sizes this beats per-block batched GEMMs with a separate FHT
//! over the activations.

use super::launch::{BF16, elems};
use super::{CudaBackend, Matmul};
use crate::backend::{BackendResult, LinearIn, LinearOut, LinearRef, MixRef};
use cudarc::driver::{CudaSlice, LaunchConfig};
use std::collections::HashMap;
use walsh_spec::octonion::SIGNS;

/// The kernels of linear.cu.
pub(super) const KERNELS: &[&str] = &[
    "expand_kernel",
    "fold_kernel",
    "expand_hadamard_kernel",
    "expand_hadamard_many_kernel",
    "expand_many_kernel",
    "fold_hadamard_kernel",
    "row_dot_kernel",
    "col_dot_kernel",
];

/// The Hadamard algebra's dimension, which has kernels of its own (the FHT, not the table).
const HADAMARD_A: usize = 32;
/// Rows of an [out, in] matrix per block of `col_dot_kernel` (one atomic per column and block).
const COL_DOT_ROWS: usize = 64;

/// An AlgebraLinear or a head mixing, as what its GEMMs need: A parts of [n, m] blocks at offset
/// `weight` of the parameter buffers, the input scale α (head mixing has none) and the output
/// scale β, indexed by output column modulo `beta_len` (head mixing's β is per head channel).
struct Folded {
    op: &'static str,
    a: usize,
    n: usize,
    m: usize,
    weight: usize,
    alpha: Option<usize>,
    beta: usize,
    beta_len: usize,
}

impl Folded {
    fn linear(lin: &LinearRef) -> Self {
        Folded {
            op: "algebra linear",
            a: lin.dims.parts(),
            n: lin.dims.n(),
            m: lin.dims.m(),
            weight: lin.weight.start,
            alpha: Some(lin.alpha.start),
            beta: lin.beta.start,
            beta_len: lin.dims.out_dim,
        }
    }
    fn mix(mix: &MixRef) -> Self {
        let hd = mix.dims.head_dim;
        Folded {
            op: "head mixing",
            a: mix.dims.algebra.dim(),
            n: hd,
            m: hd,
            weight: mix.weight.start,
            alpha: None,
            beta: mix.beta.start,
            beta_len: hd,
        }
    }
}

/// Every AlgebraLinear's and head mixing's W' and Wfull (`CudaBackend::expand`), expanded once
/// after a `quantize` by `prepare_weights` rather than in each forward and backward.
///
/// This is the one cache the backend still keeps between calls and finds by a device address:
/// it is not state a backward takes from its forward (that travels in the model's buffers) but a
/// per-step function of `eff`, which the ops receive as a plain buffer. It is found by `eff`'s
/// address and dropped by every `quantize` (`eff_rewritten`), the only op that writes an `eff`;
/// an op whose `eff` was not prepared (the op tests') expands its weight itself.
pub(super) struct Expanded {
    /// The address of the `eff` they were expanded from; 0 once a `quantize` has rewritten it.
    eff: u64,
    full: CudaSlice<f32>,
    raw: CudaSlice<f32>,
    /// In the bf16 matmul mode, `full` as bf16 (the GEMMs' operand; two to a float).
    full_bf16: Option<CudaSlice<f32>>,
    /// Where each one starts in `full` and `raw`, by the offset of its weight in `eff`.
    at: HashMap<usize, usize>,
}

/// C[i, j, g]: the coefficient of block g of W in block (i, j) of the expanded matrix.
fn algebra_coefficients(a: usize) -> Vec<f32> {
    let mut c = vec![0.0f32; a * a * a];
    for i in 0..a {
        for j in 0..a {
            match a {
                1 => c[0] = 1.0,
                8 => c[(i * a + j) * a + (i ^ j)] = f32::from(SIGNS[i][j]),
                _ => {
                    for g in 0..a {
                        let sign = |x: usize| {
                            if x.count_ones().is_multiple_of(2) {
                                1.0
                            } else {
                                -1.0
                            }
                        };
                        c[(i * a + j) * a + g] = sign(i & g) * sign(g & j) / a as f32;
                    }
                }
            }
        }
    }
    c
}

/// Called by `quantize`, which rewrites `eff`: the expanded weights no longer match it.
pub(super) fn eff_rewritten(b: &CudaBackend) {
    if let Some(x) = b.expanded.borrow_mut().as_mut() {
        x.eff = 0;
    }
}

pub(super) fn prepare_weights(
    b: &CudaBackend,
    eff: &CudaSlice<f32>,
    linears: &[&LinearRef],
    mixes: &[&MixRef],
) -> BackendResult<()> {
    let all: Vec<Folded> = (linears.iter().map(|l| Folded::linear(l)))
        .chain(mixes.iter().map(|m| Folded::mix(m)))
        .collect();
    let mut at = HashMap::new();
    let mut len = 0;
    for f in &all {
        at.insert(f.weight, len);
        // Each at a 128-byte boundary, as cuBLAS's fastest kernels want.
        len += (f.a * f.n * f.a * f.m).next_multiple_of(32);
    }
    let mut slot = b.expanded.borrow_mut();
    let x = match slot.take() {
        Some(x) if x.full.len() >= len => Expanded { eff: 0, at, ..x },
        _ => {
            let alloc = |what| {
                // SAFETY: every expansion is written below before any GEMM reads it.
                unsafe { b.stream.alloc::<f32>(len.max(1)) }.map_err(|e| {
                    b.err(
                        "alloc expanded weights",
                        format!("{what}: {len} floats: {e}"),
                    )
                })
            };
            Expanded {
                eff: 0,
                full: alloc("W'")?,
                raw: alloc("Wfull")?,
                full_bf16: None,
                at,
            }
        }
    };
    // One launch for the Hadamard weights (their FHT kernel) and one for the others.
    let (mut fht_jobs, mut fht_most) = (Vec::new(), 0);
    let (mut jobs, mut most) = (Vec::new(), 0);
    for f in &all {
        b.weight_fits_u32(f.a, f.n, f.m)?;
        let o = x.at[&f.weight];
        let (full, raw) = (b.at(&x.full, o), b.at(&x.raw, o));
        let alpha = f.alpha.map_or(0, |a| b.at(eff, a));
        let (w, beta) = (b.at(eff, f.weight), b.at(eff, f.beta));
        if f.a == HADAMARD_A {
            let shape = f.beta_len as u64 | (f.n as u64) << 32;
            fht_jobs.extend([full, raw, w, alpha, beta, shape, f.m as u64]);
            fht_most = fht_most.max(f.n * HADAMARD_A * f.m);
        } else {
            let coef = b.coef(f.a)?;
            let shape = [
                f.beta_len as u64 | (f.a as u64) << 32,
                f.n as u64 | (f.m as u64) << 32,
            ];
            jobs.extend([full, raw, w, coef, alpha, beta]);
            jobs.extend(shape);
            most = most.max(f.a * f.n * f.a * f.m);
        }
    }
    for (kernel, jobs, words, most) in [
        ("expand_hadamard_many_kernel", fht_jobs, 7, fht_most),
        ("expand_many_kernel", jobs, 8, most),
    ] {
        if jobs.is_empty() {
            continue;
        }
        let table = b
            .stream
            .clone_htod(&jobs)
            .map_err(|e| b.err("upload expansion jobs", e))?;
        launch!(
            b,
            kernel,
            LaunchConfig {
                grid_dim: (most.div_ceil(64) as u32, (jobs.len() / words) as u32, 1),
                block_dim: (64, 1, 1),
                shared_mem_bytes: 0,
            },
            b.ptr(&table)
        );
    }
    let mut full_bf16 = x.full_bf16;
    if b.matmul == Matmul::Bf16 {
        let half = len.div_ceil(2);
        if full_bf16.as_ref().is_none_or(|b| b.len() < half) {
            // SAFETY: written by the cast below before any GEMM reads it.
            let buf = unsafe { b.stream.alloc::<f32>(half.max(1)) }
                .map_err(|e| b.err("alloc expanded weights", format!("bf16 W': {e}")))?;
            full_bf16 = Some(buf);
        }
        if let Some(buf) = &full_bf16 {
            b.cast_bf16(b.ptr(buf), b.ptr(&x.full), len, len)?;
        }
    }
    *slot = Some(Expanded {
        eff: b.ptr(eff),
        full_bf16,
        ..x
    });
    Ok(())
}

/// The bf16 mode keeps a bf16 copy of each input (`u`; two to a float) for the backward's
/// D = dyᵀ·x; the f32 and TF32 modes read the input itself and save nothing.
pub(super) fn linear_saved_len(b: &CudaBackend, len: usize) -> usize {
    if b.matmul == Matmul::Bf16 {
        len.div_ceil(2)
    } else {
        0
    }
}

pub(super) fn linear_forward(
    b: &CudaBackend,
    out: &mut CudaSlice<f32>,
    u: &mut CudaSlice<f32>,
    _z: &mut CudaSlice<f32>,
    inp: &CudaSlice<f32>,
    eff: &CudaSlice<f32>,
    lin: &LinearRef,
) -> BackendResult<()> {
    let f = Folded::linear(lin);
    let rows = inp.len() / lin.dims.in_dim;
    let need = linear_saved_len(b, inp.len());
    if u.len() < need {
        let msg = format!(
            "the saved-input buffer holds {} floats, {need} needed",
            u.len()
        );
        return Err(b.err(f.op, msg));
    }
    b.folded_forward(b.ptr(out), b.ptr(inp), b.ptr(u), true, rows, eff, &f)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn linear_backward(
    b: &CudaBackend,
    dinp: &mut CudaSlice<f32>,
    grads: &mut CudaSlice<f32>,
    dout: &CudaSlice<f32>,
    inp: &CudaSlice<f32>,
    u: &CudaSlice<f32>,
    _z: &CudaSlice<f32>,
    eff: &CudaSlice<f32>,
    lin: &LinearRef,
    accumulate: bool,
) -> BackendResult<()> {
    let f = Folded::linear(lin);
    let rows = inp.len() / lin.dims.in_dim;
    // The bf16 mode's GEMM reads the forward's bf16 copy of the input.
    let x = if b.matmul == Matmul::Bf16 { u } else { inp };
    let (dp, dy, x) = (b.ptr(dinp), b.ptr(dout), b.ptr(x));
    b.folded_backward(dp, grads, dy, x, rows, eff, &f, accumulate)
}

/// In the bf16 mode the input is rounded to bf16 once, into the first linear's `u`.
pub(super) fn linears_forward(
    b: &CudaBackend,
    items: &mut [LinearOut<'_, CudaSlice<f32>>],
    inp: &CudaSlice<f32>,
    eff: &CudaSlice<f32>,
) -> BackendResult<()> {
    let Some(first) = items.first() else {
        return Ok(());
    };
    let need = linear_saved_len(b, inp.len());
    if first.u.len() < need {
        let msg = format!(
            "the saved-input buffer holds {} floats, {need} needed",
            first.u.len()
        );
        return Err(b.err("algebra linear", msg));
    }
    let save = b.ptr(&*first.u);
    for (k, it) in items.iter_mut().enumerate() {
        let f = Folded::linear(it.lin);
        let rows = inp.len() / it.lin.dims.in_dim;
        b.folded_forward(b.ptr(&*it.out), b.ptr(inp), save, k == 0, rows, eff, &f)?;
    }
    Ok(())
}

/// In the bf16 mode every D = dyᵀx reads the first linear's `u` (`linears_forward`).
pub(super) fn linears_backward(
    b: &CudaBackend,
    dinp: &mut CudaSlice<f32>,
    grads: &mut CudaSlice<f32>,
    items: &[LinearIn<'_, CudaSlice<f32>>],
    inp: &CudaSlice<f32>,
    eff: &CudaSlice<f32>,
    accumulate: bool,
) -> BackendResult<()> {
    let Some(first) = items.first() else {
        return Ok(());
    };
    let x = if b.matmul == Matmul::Bf16 {
        first.u
    } else {
        inp
    };
    for (k, it) in items.iter().enumerate() {
        let f = Folded::linear(it.lin);
        let rows = inp.len() / it.lin.dims.in_dim;
        let (dp, dy, xp) = (b.ptr(dinp), b.ptr(it.dout), b.ptr(x));
        b.folded_backward(dp, grads, dy, xp, rows, eff, &f, accumulate || k > 0)?;
    }
    Ok(())
}

pub(super) fn mix_forward(
    b: &CudaBackend,
    out: &mut CudaSlice<f32>,
    u: &mut CudaSlice<f32>,
    _z: &mut CudaSlice<f32>,
    inp: &CudaSlice<f32>,
    eff: &CudaSlice<f32>,
    mix: &MixRef,
) -> BackendResult<()> {
    let f = Folded::mix(mix);
    let rows = inp.len() / (f.a * f.m);
    // The backward's input (the trait hands it `u`, not the forward's input): in the bf16
    // mode the forward's bf16 copy, else the input itself.
    if b.matmul != Matmul::Bf16 {
        b.stream
            .memcpy_dtod(inp, u)
            .map_err(|e| b.err("head mixing save", e))?;
    }
    b.folded_forward(b.ptr(out), b.ptr(inp), b.ptr(u), true, rows, eff, &f)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn mix_backward(
    b: &CudaBackend,
    dinp: &mut CudaSlice<f32>,
    grads: &mut CudaSlice<f32>,
    dout: &CudaSlice<f32>,
    u: &CudaSlice<f32>,
    _z: &CudaSlice<f32>,
    eff: &CudaSlice<f32>,
    mix: &MixRef,
    accumulate: bool,
) -> BackendResult<()> {
    let f = Folded::mix(mix);
    let rows = u.len() / (f.a * f.m);
    let (dp, dy, x) = (b.ptr(dinp), b.ptr(dout), b.ptr(u));
    b.folded_backward(dp, grads, dy, x, rows, eff, &f, accumulate)
}

impl CudaBackend {
    /// The expansion and fold kernels index an A-algebra weight's a·n × a·m elements in 32 bits.
    fn weight_fits_u32(&self, a: usize, n: usize, m: usize) -> BackendResult<()> {
        match (a * n).checked_mul(a * m) {
            Some(e) if e <= u32::MAX as usize => Ok(()),
            _ => Err(self.err(
                "algebra weight",
                format!(
                    "{} × {} is too large for the 32-bit indexing of its kernels",
                    a * n,
                    a * m
                ),
            )),
        }
    }

    fn coef(&self, a: usize) -> BackendResult<u64> {
        let mut map = self.coef.borrow_mut();
        if let std::collections::hash_map::Entry::Vacant(slot) = map.entry(a) {
            let buf = self
                .stream
                .clone_htod(&algebra_coefficients(a))
                .map_err(|e| self.err("upload coefficients", e))?;
            slot.insert(buf);
        }
        Ok(self.ptr(&map[&a]))
    }

    /// W' of `lin` as bf16 (the bf16 mode's GEMM operand).
    fn expand_bf16(&self, eff: &CudaSlice<f32>, lin: &Folded) -> BackendResult<u64> {
        if let Some(x) = self.expanded.borrow().as_ref()
            && x.eff == self.ptr(eff)
            && let Some(&o) = x.at.get(&lin.weight)
            && let Some(b) = &x.full_bf16
        {
            return Ok(self.ptr(b) + 2 * o as u64);
        }
        let len = lin.a * lin.n * lin.a * lin.m;
        let (full, _) = self.expand(eff, lin, false)?;
        self.to_bf16("full bf16", full, len, len)
    }

    /// The expanded weight of `lin` with its scales folded in, W'[o, i] = β[o]·Wfull[o, i]·α[i],
    /// and, with `raw`, Wfull itself (else 0): one GEMM then does the whole AlgebraLinear, and the
    /// backward needs no saved activations but the input. From `prepare_weights` when it has
    /// expanded this `eff`, else into scratch "full" and "raw".
    fn expand(&self, eff: &CudaSlice<f32>, lin: &Folded, raw: bool) -> BackendResult<(u64, u64)> {
        if let Some(x) = self.expanded.borrow().as_ref()
            && x.eff == self.ptr(eff)
            && let Some(&o) = x.at.get(&lin.weight)
        {
            return Ok((
                self.at(&x.full, o),
                if raw { self.at(&x.raw, o) } else { 0 },
            ));
        }
        let len = lin.a * lin.n * lin.a * lin.m;
        let full = self.scratch("full", len)?;
        let raw = if raw { self.scratch("raw", len)? } else { 0 };
        self.expand_into(eff, lin, full, raw)?;
        Ok((full, raw))
    }

    /// W' of `lin` into `full` and, unless `raw` is 0, Wfull into `raw`.
    fn expand_into(
        &self,
        eff: &CudaSlice<f32>,
        lin: &Folded,
        full: u64,
        raw: u64,
    ) -> BackendResult<()> {
        let (a, n, m) = (lin.a, lin.n, lin.m);
        self.weight_fits_u32(a, n, m)?;
        let len = a * n * a * m;
        if a == HADAMARD_A {
            launch!(
                self,
                "expand_hadamard_kernel",
                // Small blocks: a 512 × 512 weight is only 8,192 threads (one 32-point FHT
                // each), which blocks of 256 put on 32 of an H200's 132 SMs.
                LaunchConfig {
                    grid_dim: ((n * a * m).div_ceil(64) as u32, 1, 1),
                    block_dim: (64, 1, 1),
                    shared_mem_bytes: 0,
                },
                full,
                raw,
                self.at(eff, lin.weight),
                lin.alpha.map_or(0, |o| self.at(eff, o)),
                self.at(eff, lin.beta),
                lin.beta_len as u32,
                n as u32,
                m as u32
            );
            return Ok(());
        }
        let coef = self.coef(a)?;
        launch!(
            self,
            "expand_kernel",
            elems(len as u64),
            full,
            raw,
            self.at(eff, lin.weight),
            coef,
            lin.alpha.map_or(0, |o| self.at(eff, o)),
            self.at(eff, lin.beta),
            lin.beta_len as u32,
            a as u32,
            n as u32,
            m as u32
        );
        Ok(())
    }

    /// dW[g] += Σ_{I,J} C[I, J, g]·β·D·α with the coefficient table (octonion, dense).
    fn fold_generic(
        &self,
        grads: &CudaSlice<f32>,
        lin: &Folded,
        d: u64,
        alpha: u64,
        beta: u64,
    ) -> BackendResult<()> {
        let (a, n, m) = (lin.a, lin.n, lin.m);
        self.weight_fits_u32(a, n, m)?;
        let coef = self.coef(a)?;
        let fold = LaunchConfig {
            grid_dim: ((a * n * m).div_ceil(32) as u32, 1, 1),
            block_dim: (32, 8, 1),
            shared_mem_bytes: 0,
        };
        launch!(
            self,
            "fold_kernel",
            fold,
            self.at(grads, lin.weight),
            d,
            coef,
            alpha,
            beta,
            lin.beta_len as u32,
            a as u32,
            n as u32,
            m as u32
        );
        Ok(())
    }

    /// out = inp · W'ᵀ over `rows` rows. In the bf16 mode the GEMM's operands are bf16, and the
    /// bf16 copy of `inp` is at `save` for the backward (room for rows·in bf16s): written here
    /// when `cast`, else already there (`linears_forward`).
    #[allow(clippy::too_many_arguments)]
    fn folded_forward(
        &self,
        out: u64,
        inp: u64,
        save: u64,
        cast: bool,
        rows: usize,
        eff: &CudaSlice<f32>,
        lin: &Folded,
    ) -> BackendResult<()> {
        let (di, dou) = (lin.a * lin.m, lin.a * lin.n);
        if self.matmul == Matmul::Bf16 {
            let w = self.expand_bf16(eff, lin)?;
            if cast {
                self.cast_bf16(save, inp, rows * di, rows * di)?;
            }
            let dims = (rows, dou, di);
            return self.gemm_of(
                lin.op,
                BF16,
                (false, true),
                dims,
                (save, di),
                (w, di),
                (out, dou),
                0.0,
            );
        }
        let (full, _) = self.expand(eff, lin, false)?;
        self.gemm(
            lin.op,
            (false, true),
            (rows, dou, di),
            (inp, di),
            (full, di),
            (out, dou),
            0.0,
        )
    }

    /// dinp += dy · W' (= without `accumulate`); then from D = dyᵀ · inp (an [out, in] matrix, so
    /// nothing here is as large as the activations): dW[g] += fold(β ⊙ D ⊙ α),
    /// dβ[o] += Σ_i Wfull·α·D, dα[i] += Σ_o β·Wfull·D.
    /// In the bf16 mode `inp` is the forward's bf16 copy (`folded_forward`'s `save`) and both
    /// GEMMs take bf16 operands. (D on f32 operands, TF32, cost 1.6 ms of an 18 ms step and did
    /// not bring the bf16 gradients nearer the f32 ones: their error comes down from above, in dy.)
    #[allow(clippy::too_many_arguments)]
    fn folded_backward(
        &self,
        dinp: u64,
        grads: &CudaSlice<f32>,
        dy: u64,
        inp: u64,
        rows: usize,
        eff: &CudaSlice<f32>,
        lin: &Folded,
        accumulate: bool,
    ) -> BackendResult<()> {
        let dx_beta = if accumulate { 1.0 } else { 0.0 };
        let (a, n, m) = (lin.a, lin.n, lin.m);
        let (di, dou) = (a * m, a * n);
        let (full, raw) = self.expand(eff, lin, true)?;
        let d = self.scratch("dfull", dou * di)?;
        let (dx_dims, d_dims) = ((rows, di, dou), (dou, di, rows));
        if self.matmul == Matmul::Bf16 {
            let w = self.expand_bf16(eff, lin)?;
            let dyb = self.to_bf16("dy bf16", dy, rows * dou, rows * dou)?;
            let mode = (false, false);
            self.gemm_of(
                lin.op,
                BF16,
                mode,
                dx_dims,
                (dyb, dou),
                (w, di),
                (dinp, di),
                dx_beta,
            )?;
            let mode = (true, false);
            self.gemm_of(
                lin.op,
                BF16,
                mode,
                d_dims,
                (dyb, dou),
                (inp, di),
                (d, di),
                0.0,
            )?;
        } else {
            let mode = (false, false);
            self.gemm(
                lin.op,
                mode,
                dx_dims,
                (dy, dou),
                (full, di),
                (dinp, di),
                dx_beta,
            )?;
            let mode = (true, false);
            self.gemm(lin.op, mode, d_dims, (dy, dou), (inp, di), (d, di), 0.0)?;
        }
        let alpha = lin.alpha.map_or(0, |o| self.at(eff, o));
        let beta = self.at(eff, lin.beta);
        if a == HADAMARD_A {
            self.weight_fits_u32(a, n, m)?;
            launch!(
                self,
                "fold_hadamard_kernel",
                // A block per (r, c), its eight warps splitting the rows: linear.cu's FOLD_H_SPLIT.
                LaunchConfig {
                    grid_dim: ((n * m) as u32, 1, 1),
                    block_dim: (256, 1, 1),
                    shared_mem_bytes: 0,
                },
                self.at(grads, lin.weight),
                lin.alpha.map_or(0, |o| self.at(grads, o)),
                self.at(grads, lin.beta),
                d,
                raw,
                alpha,
                beta,
                lin.beta_len as u32,
                n as u32,
                m as u32
            );
            return Ok(());
        }
        self.fold_generic(grads, lin, d, alpha, beta)?;
        launch!(
            self,
            "row_dot_kernel",
            LaunchConfig {
                grid_dim: (dou.div_ceil(8) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            },
            self.at(grads, lin.beta),
            lin.beta_len as u32,
            raw,
            d,
            alpha,
            dou as u32,
            di as u32
        );
        if let Some(o) = lin.alpha {
            launch!(
                self,
                "col_dot_kernel",
                LaunchConfig {
                    grid_dim: (di.div_ceil(32) as u32, dou.div_ceil(COL_DOT_ROWS) as u32, 1),
                    block_dim: (32, 8, 1),
                    shared_mem_bytes: 0,
                },
                self.at(grads, o),
                raw,
                d,
                beta,
                lin.beta_len as u32,
                dou as u32,
                di as u32,
                COL_DOT_ROWS as u32
            );
        }
        Ok(())
    }
}
