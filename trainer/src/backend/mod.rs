//! The operations the model is written over. The model ([`crate::model`]) owns its buffers and
//! calls these in order; a backend decides how each runs: [`cpu::CpuBackend`] with the reference
//! ops of [`crate::ops`] (f32 for training, f64 for the gradient checks), a CUDA backend with
//! kernels of its own (trainer part 2).
//!
//! Parameters, their effective (quantized) copy, their gradients and the optimizer moments live in
//! flat buffers with one layout ([`crate::model::ParamLayout`]); an op names the tensors it uses
//! by range into them ([`LinearRef`], [`MixRef`], [`EmbRef`]), so the optimizer and the gradient
//! norm run over one buffer each. Activations are buffers of their own.
//!
//! Every op follows the conventions of [`crate::ops`]: forwards overwrite, backwards accumulate —
//! except that the backwards of the AlgebraLinear, head mixing, SwiGLU and RoPE overwrite their
//! input gradients when `accumulate` is false, so that the model need not zero a buffer whose
//! first writer they are (on a GPU those zero-fills were 5 % of a training step).

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;

use crate::ops::Real;
use crate::ops::algebra_linear::LinearDims;
use crate::ops::attention::AttnDims;
use crate::ops::head_mixing::MixDims;
use std::ops::Range;
use thiserror::Error;

/// An operation a backend could not run (a CUDA launch or allocation, say). The CPU backend never
/// fails; its invariant violations are bugs and panic.
#[derive(Debug, Error)]
#[error("{backend}: {op}: {msg}")]
pub struct BackendError {
    pub backend: String,
    pub op: &'static str,
    pub msg: String,
}

pub type BackendResult<T> = Result<T, BackendError>;

/// One AlgebraLinear: its shape and where its tensors sit in the parameter layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearRef {
    pub dims: LinearDims,
    pub weight: Range<usize>,
    pub alpha: Range<usize>,
    pub beta: Range<usize>,
}

/// One layer's head mixing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixRef {
    pub dims: MixDims,
    pub weight: Range<usize>,
    pub beta: Range<usize>,
}

/// The token embedding (and, tied, the output logits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmbRef {
    Standard {
        table: Range<usize>,
        vocab: usize,
        d: usize,
    },
    Hash {
        e1: Range<usize>,
        e2: Range<usize>,
        buckets: usize,
        vocab: usize,
        d: usize,
    },
}

impl EmbRef {
    pub fn vocab(&self) -> usize {
        match self {
            EmbRef::Standard { vocab, .. } | EmbRef::Hash { vocab, .. } => *vocab,
        }
    }
}

/// One AlgebraLinear of [`Backend::linears_forward`]: what [`Backend::linear_forward`] writes.
pub struct LinearOut<'a, B> {
    pub out: &'a mut B,
    pub u: &'a mut B,
    pub z: &'a mut B,
    pub lin: &'a LinearRef,
}

/// One AlgebraLinear of [`Backend::linears_backward`]: its output's gradient and saved buffers.
pub struct LinearIn<'a, B> {
    pub dout: &'a B,
    pub u: &'a B,
    pub z: &'a B,
    pub lin: &'a LinearRef,
}

/// A point in an asynchronous backend's queue (a CUDA event): `trainer bench` times each op
/// between two marks without draining the queue in between.
pub struct Mark(pub Box<dyn std::any::Any>);

/// AdamW hyperparameters of one step (SPEC-free: the trainer's own, documented in
/// `docs/TRAINING.md`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// 1-based step number, for the bias corrections.
    pub step: u64,
}

/// The operations of one training or evaluation step. `Buf` holds floats of the backend's
/// precision, `Tokens` token ids; both live wherever the backend computes.
pub trait Backend {
    /// The host-side element type of uploads and downloads.
    type Elem: Real;
    type Buf;
    type Tokens;

    /// A short description for logs ("cpu (f32, 16 threads)", "cuda:0 (NVIDIA H100 …)").
    fn describe(&self) -> String;

    /// Waits for all queued work (a no-op for synchronous backends): lets a profiler charge each
    /// op its own time.
    fn sync(&self) -> BackendResult<()> {
        Ok(())
    }

    /// Records a [`Mark`] after the work queued so far; `None` for a synchronous backend, whose
    /// ops are timed by the host clock.
    fn mark(&self) -> BackendResult<Option<Mark>> {
        Ok(None)
    }
    /// Seconds of device time from `from` to `to`, two of this backend's marks (waits for `to`).
    fn elapsed(&self, from: &Mark, to: &Mark) -> BackendResult<f64> {
        let _ = (from, to);
        Err(BackendError {
            backend: self.describe(),
            op: "elapsed",
            msg: "this backend records no marks".into(),
        })
    }

    // ---- memory ----
    fn zeros(&self, len: usize) -> BackendResult<Self::Buf>;
    fn upload(&self, host: &[Self::Elem]) -> BackendResult<Self::Buf>;
    fn download(&self, buf: &Self::Buf) -> BackendResult<Vec<Self::Elem>>;
    fn upload_tokens(&self, tokens: &[u32]) -> BackendResult<Self::Tokens>;
    fn fill_zero(&self, buf: &mut Self::Buf) -> BackendResult<()>;
    /// dst += src.
    fn add_assign(&self, dst: &mut Self::Buf, src: &Self::Buf) -> BackendResult<()>;
    /// out = a + b.
    fn add(&self, out: &mut Self::Buf, a: &Self::Buf, b: &Self::Buf) -> BackendResult<()>;

    // ---- parameters ----
    /// `eff` = `params`, except that each range of `ternary` holds γ·Wq of the latent weight
    /// there (SPEC §2.1) — or the latent weight itself when `quantize` is false (the identity
    /// quantizer of the gradient checks). By the STE the gradient of `eff` is the gradient of
    /// `params`, so there is no backward.
    fn quantize(
        &self,
        eff: &mut Self::Buf,
        params: &Self::Buf,
        ternary: &[Range<usize>],
        quantize: bool,
    ) -> BackendResult<()>;

    /// Called by the model after every [`Backend::quantize`] with all its AlgebraLinears and
    /// head mixings: a backend may derive per-step forms of their weights from `eff` here, valid
    /// until the next `quantize` (the CUDA backend expands each to one dense matrix once a step
    /// rather than in every forward and backward). Ops whose weights were not prepared this way
    /// derive what they need themselves.
    fn prepare_weights(
        &self,
        eff: &Self::Buf,
        linears: &[&LinearRef],
        mixes: &[&MixRef],
    ) -> BackendResult<()> {
        let _ = (eff, linears, mixes);
        Ok(())
    }

    // ---- layers (forward overwrites; backward accumulates into params' grads, and into inputs'
    // grads unless `accumulate` is false) ----
    fn embed_forward(
        &self,
        out: &mut Self::Buf,
        tokens: &Self::Tokens,
        eff: &Self::Buf,
        emb: &EmbRef,
    ) -> BackendResult<()>;
    fn embed_backward(
        &self,
        grads: &mut Self::Buf,
        dout: &Self::Buf,
        tokens: &Self::Tokens,
        emb: &EmbRef,
    ) -> BackendResult<()>;

    #[allow(clippy::too_many_arguments)]
    fn rmsnorm_forward(
        &self,
        out: &mut Self::Buf,
        rstd: &mut Self::Buf,
        inp: &Self::Buf,
        eff: &Self::Buf,
        gain: Range<usize>,
    ) -> BackendResult<()>;
    #[allow(clippy::too_many_arguments)]
    fn rmsnorm_backward(
        &self,
        dinp: &mut Self::Buf,
        grads: &mut Self::Buf,
        dout: &Self::Buf,
        inp: &Self::Buf,
        rstd: &Self::Buf,
        eff: &Self::Buf,
        gain: Range<usize>,
    ) -> BackendResult<()>;

    /// The length a saved `u` or `z` buffer of [`Backend::linear_forward`] (and `z` of
    /// [`Backend::mix_forward`]) needs for an activation of `len` elements: the CPU reference
    /// keeps them all; a backend that folds α and β into the weight needs none (length 0), or
    /// only a low-precision copy of the input (the CUDA bf16 mode's, half the length).
    fn linear_saved_len(&self, len: usize) -> usize {
        len
    }
    /// Saves `u` [rows, in] and `z` [rows, out] for the backward (buffers of
    /// [`Backend::linear_saved_len`]).
    fn linear_forward(
        &self,
        out: &mut Self::Buf,
        u: &mut Self::Buf,
        z: &mut Self::Buf,
        inp: &Self::Buf,
        eff: &Self::Buf,
        lin: &LinearRef,
    ) -> BackendResult<()>;
    #[allow(clippy::too_many_arguments)]
    fn linear_backward(
        &self,
        dinp: &mut Self::Buf,
        grads: &mut Self::Buf,
        dout: &Self::Buf,
        inp: &Self::Buf,
        u: &Self::Buf,
        z: &Self::Buf,
        eff: &Self::Buf,
        lin: &LinearRef,
        accumulate: bool,
    ) -> BackendResult<()>;

    /// Several AlgebraLinears of one input (q, k and v; gate and up), each as
    /// [`Backend::linear_forward`]. A backend may share work between them: the CUDA bf16 mode
    /// rounds the input to bf16 once, into the first one's `u`, which
    /// [`Backend::linears_backward`] then reads for all of them.
    fn linears_forward(
        &self,
        items: &mut [LinearOut<'_, Self::Buf>],
        inp: &Self::Buf,
        eff: &Self::Buf,
    ) -> BackendResult<()> {
        for it in items.iter_mut() {
            self.linear_forward(it.out, it.u, it.z, inp, eff, it.lin)?;
        }
        Ok(())
    }
    /// The backward of one [`Backend::linears_forward`] call (the same linears in the same
    /// order): `dinp` gets the sum of their input gradients, added to it with `accumulate`.
    #[allow(clippy::too_many_arguments)]
    fn linears_backward(
        &self,
        dinp: &mut Self::Buf,
        grads: &mut Self::Buf,
        items: &[LinearIn<'_, Self::Buf>],
        inp: &Self::Buf,
        eff: &Self::Buf,
        accumulate: bool,
    ) -> BackendResult<()> {
        for (k, it) in items.iter().enumerate() {
            let acc = accumulate || k > 0;
            self.linear_backward(dinp, grads, it.dout, inp, it.u, it.z, eff, it.lin, acc)?;
        }
        Ok(())
    }

    /// RoPE over rows of `seq_len` positions; `cos`/`sin` are [`crate::ops::rope::rope_table`]s.
    #[allow(clippy::too_many_arguments)]
    fn rope_forward(
        &self,
        out: &mut Self::Buf,
        inp: &Self::Buf,
        cos: &Self::Buf,
        sin: &Self::Buf,
        seq_len: usize,
        d: usize,
        head_dim: usize,
    ) -> BackendResult<()>;
    #[allow(clippy::too_many_arguments)]
    fn rope_backward(
        &self,
        dinp: &mut Self::Buf,
        dout: &Self::Buf,
        cos: &Self::Buf,
        sin: &Self::Buf,
        seq_len: usize,
        d: usize,
        head_dim: usize,
        accumulate: bool,
    ) -> BackendResult<()>;

    /// Length of what [`Backend::attention_forward`] saves for the backward (`att`) for `batch`
    /// sequences: the CPU reference keeps the softmax [B, H, T, T]; a fused kernel keeps less.
    fn attention_saved_len(&self, batch: usize, dims: AttnDims) -> usize {
        dims.att_len(batch)
    }
    /// Causal attention; saves into `att` what its backward needs (see
    /// [`Backend::attention_saved_len`]).
    fn attention_forward(
        &self,
        out: &mut Self::Buf,
        att: &mut Self::Buf,
        q: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        dims: AttnDims,
    ) -> BackendResult<()>;
    #[allow(clippy::too_many_arguments)]
    fn attention_backward(
        &self,
        dq: &mut Self::Buf,
        dk: &mut Self::Buf,
        dv: &mut Self::Buf,
        dout: &Self::Buf,
        out: &Self::Buf,
        q: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        att: &Self::Buf,
        dims: AttnDims,
    ) -> BackendResult<()>;

    fn mix_forward(
        &self,
        out: &mut Self::Buf,
        u: &mut Self::Buf,
        z: &mut Self::Buf,
        inp: &Self::Buf,
        eff: &Self::Buf,
        mix: &MixRef,
    ) -> BackendResult<()>;
    #[allow(clippy::too_many_arguments)]
    fn mix_backward(
        &self,
        dinp: &mut Self::Buf,
        grads: &mut Self::Buf,
        dout: &Self::Buf,
        u: &Self::Buf,
        z: &Self::Buf,
        eff: &Self::Buf,
        mix: &MixRef,
        accumulate: bool,
    ) -> BackendResult<()>;

    fn swiglu_forward(
        &self,
        out: &mut Self::Buf,
        gate: &Self::Buf,
        up: &Self::Buf,
    ) -> BackendResult<()>;
    fn swiglu_backward(
        &self,
        dgate: &mut Self::Buf,
        dup: &mut Self::Buf,
        dout: &Self::Buf,
        gate: &Self::Buf,
        up: &Self::Buf,
        accumulate: bool,
    ) -> BackendResult<()>;

    /// Length of what [`Backend::cross_entropy_forward`] keeps for its backward in `saved`,
    /// besides `lse`, for `rows` rows: nothing in the CPU reference (its backward recomputes the
    /// logits), the bf16 logits in the CUDA bf16 mode (its backward turns them into their gradient
    /// in place).
    fn cross_entropy_saved_len(&self, rows: usize, emb: &EmbRef) -> usize {
        let _ = (rows, emb);
        0
    }
    /// Mean cross-entropy of the tied logits of `h` [N, d] against `targets`; saves `lse` [N] and,
    /// in `saved`, what [`Backend::cross_entropy_saved_len`] says (a shorter `saved`, an empty
    /// one say, keeps nothing and leaves the backward to recompute).
    fn cross_entropy_forward(
        &self,
        lse: &mut Self::Buf,
        saved: &mut Self::Buf,
        h: &Self::Buf,
        targets: &Self::Tokens,
        eff: &Self::Buf,
        emb: &EmbRef,
    ) -> BackendResult<f64>;
    /// `dloss` is ∂(objective)/∂(mean loss) — 1/accumulation steps in training. `lse` and
    /// `saved` are the forward's of the same `h`, `targets` and `eff`; the backward may overwrite
    /// `saved` (the CUDA bf16 mode does), so a forward has one backward.
    #[allow(clippy::too_many_arguments)]
    fn cross_entropy_backward(
        &self,
        dh: &mut Self::Buf,
        grads: &mut Self::Buf,
        dloss: f64,
        h: &Self::Buf,
        targets: &Self::Tokens,
        lse: &Self::Buf,
        saved: &mut Self::Buf,
        eff: &Self::Buf,
        emb: &EmbRef,
    ) -> BackendResult<()>;
    /// The full logits [N, V] of `h` [N, d] (evaluation and sampling; N is small there).
    fn logits(
        &self,
        out: &mut Self::Buf,
        h: &Self::Buf,
        eff: &Self::Buf,
        emb: &EmbRef,
    ) -> BackendResult<()>;

    // ---- distillation (ops::distill) ----
    /// Another backend on the same device, for a second model (a distillation teacher): a
    /// backend keeps per-model state between ops (the CUDA one, a step's expanded weights).
    fn another(&self) -> BackendResult<Self>
    where
        Self: Sized;
    /// The token ids of `tokens`, on the host (a teacher's targets travel to the student's
    /// backend through the host: they are small, rows × k).
    fn download_tokens(&self, tokens: &Self::Tokens) -> BackendResult<Vec<u32>>;
    /// The teacher side: from `logits` [rows, `vocab`] (which it may overwrite), each row's `k`
    /// largest logits as ids `idx` [rows, k] (ties: the lower id first) and their softmax at
    /// temperature `tau` over those k alone, `q` [rows, k].
    #[allow(clippy::too_many_arguments)]
    fn distill_targets(
        &self,
        idx: &mut Self::Tokens,
        q: &mut Self::Buf,
        logits: &mut Self::Buf,
        vocab: usize,
        k: usize,
        tau: f64,
    ) -> BackendResult<()>;
    /// The student side: mean over the rows of `h` [N, d] of τ²·KL(q ‖ softmax(ℓ/τ)), ℓ the tied
    /// standard logits, against the teacher's `idx`, `q` [N, k]; saves `lse` [N] (log-sum-exp of
    /// ℓ/τ). A hash embedding is an error.
    #[allow(clippy::too_many_arguments)]
    fn distill_forward(
        &self,
        lse: &mut Self::Buf,
        h: &Self::Buf,
        idx: &Self::Tokens,
        q: &Self::Buf,
        k: usize,
        tau: f64,
        eff: &Self::Buf,
        emb: &EmbRef,
    ) -> BackendResult<f64>;
    /// Accumulates `dloss` × the gradient of [`Backend::distill_forward`]'s mean into `dh` and
    /// the table's gradient in `grads`.
    #[allow(clippy::too_many_arguments)]
    fn distill_backward(
        &self,
        dh: &mut Self::Buf,
        grads: &mut Self::Buf,
        dloss: f64,
        h: &Self::Buf,
        idx: &Self::Tokens,
        q: &Self::Buf,
        lse: &Self::Buf,
        k: usize,
        tau: f64,
        eff: &Self::Buf,
        emb: &EmbRef,
    ) -> BackendResult<()>;

    // ---- optimizer ----
    /// Σ g² over the whole buffer, in f64.
    fn sum_squares(&self, buf: &Self::Buf) -> BackendResult<f64>;
    /// One AdamW step over every element: m, v updated; params -= lr·(m̂/(√v̂+ε) + wd·p) where
    /// `decay` marks the ranges that take weight decay. Gradients are multiplied by `grad_scale`
    /// first (the clipping factor).
    #[allow(clippy::too_many_arguments)]
    fn adamw(
        &self,
        params: &mut Self::Buf,
        grads: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
        decay: &[Range<usize>],
        grad_scale: f64,
        hp: AdamW,
    ) -> BackendResult<()>;
}
