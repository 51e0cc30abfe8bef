//! The CUDA backend (feature `cuda`): the [`Backend`] operations on one NVIDIA GPU, with kernels
//! in CUDA C compiled by NVRTC when the backend starts, and GEMMs by cuBLAS. The CUDA libraries
//! are loaded at run time, so building needs no CUDA toolkit.
//!
//! One module per op family, each with its kernels in a `.cu` file of the same name beside it:
//! `elementwise` (sums, RoPE, SwiGLU), `quantize`, `linear` (the AlgebraLinear and head mixing as
//! dense GEMMs against expanded weights), `embedding`, `norm` (RMSNorm), `attention` (with
//! `attention_tc.cu`, its tensor-core kernels), `cross_entropy` (and the tied logits) and
//! `optimizer`. `launch` is the plumbing they share (launches, scratch, GEMMs, buffers), and
//! `common.cu` what their kernels share. The `.cu` files are compiled together, as one NVRTC
//! program ([`compile_kernels`]), so that a helper of `common.cu` is written once.
//!
//! Buffers are `CudaSlice<f32>`; ops pass raw device pointers (one stream, event tracking off),
//! and every driver, NVRTC and cuBLAS result is checked and reported with the op's name. What a
//! backward needs from its forward travels in the buffers the model keeps and passes (`u` of a
//! linear, `att` of attention, `saved` of the cross-entropy), not in the backend. What the
//! backend keeps between calls is scratch, constants, and one per-step derivation of the
//! weights: `linear`'s expanded matrices, found by `eff`'s address (its comment says why).

#[macro_use]
mod launch;
mod attention;
mod ceilings;
mod cross_entropy;
mod distill;
mod elementwise;
mod embedding;
mod linear;
mod norm;
mod optimizer;
mod quantize;

use super::{
    AdamW, Backend, BackendError, BackendResult, EmbRef, LinearIn, LinearOut, LinearRef, Mark,
    MixRef,
};
use crate::ops::attention::AttnDims;
pub use ceilings::Ceilings;
use cudarc::cublas::{CudaBlas, sys as blas_sys};
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream};
use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

/// The kernels' source: `common.cu` first (types, bf16 casts, exponentials, block reductions),
/// then each family's file.
const SOURCE: &str = concat!(
    include_str!("common.cu"),
    include_str!("elementwise.cu"),
    include_str!("quantize.cu"),
    include_str!("linear.cu"),
    include_str!("embedding.cu"),
    include_str!("norm.cu"),
    include_str!("attention.cu"),
    include_str!("attention_tc.cu"),
    include_str!("cross_entropy.cu"),
    include_str!("distill.cu"),
    include_str!("optimizer.cu"),
);

/// Every kernel loaded on any GPU (the tensor-core attention's only from compute capability 8.0:
/// [`attention::TC_ATTENTION`]).
const KERNEL_NAMES: &[&[&str]] = &[
    launch::KERNELS,
    elementwise::KERNELS,
    quantize::KERNELS,
    linear::KERNELS,
    embedding::KERNELS,
    norm::KERNELS,
    attention::KERNELS,
    cross_entropy::KERNELS,
    distill::KERNELS,
    optimizer::KERNELS,
];

/// How cuBLAS multiplies f32 matrices (operands and results stay f32 in memory either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matmul {
    /// IEEE f32 FMAs: agrees with the CPU backend to f32 rounding (the exactness tests).
    F32,
    /// Tensor cores on TF32 operands (10-bit mantissa, like an f16's) with f32 accumulation.
    Tf32,
    /// Tensor cores on bf16 operands (8-bit mantissa) with f32 accumulation: the linears and the
    /// standard cross-entropy hand cuBLAS bf16 copies (`to_bf16_x4_kernel`; a linear's input copy
    /// is what the forward saves for the backward), the cross-entropy keeps its logits in bf16;
    /// master weights, optimizer state and the other activations stay f32. The GEMMs left on f32
    /// operands (the hash cross-entropy's) run as `CUBLAS_COMPUTE_32F_FAST_16BF`.
    Bf16,
}

impl std::str::FromStr for Matmul {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Matmul::F32),
            "tf32" => Ok(Matmul::Tf32),
            "bf16" => Ok(Matmul::Bf16),
            _ => Err(format!("expected f32, tf32 or bf16, not {s:?}")),
        }
    }
}

pub struct CudaBackend {
    name: String,
    /// The GPU's ordinal and whether attention runs on tensor cores, for [`Backend::another`].
    ordinal: usize,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    matmul: Matmul,
    /// Attention on tensor cores (attention_tc.cu) rather than CUDA cores: the default where
    /// they exist and the matmul mode allows them (TF32, bf16); `WALSH_ATTENTION=cores` or
    /// [`CudaBackend::set_tensor_core_attention`] turns it off.
    tc_attention: bool,
    /// Compute capability 8.0 or more: the tensor-core kernels were compiled and loaded.
    tc_available: bool,
    funcs: HashMap<&'static str, CudaFunction>,
    /// Scratch buffers by purpose, grown on demand.
    scratch: RefCell<HashMap<&'static str, CudaSlice<f32>>>,
    sums: RefCell<Option<CudaSlice<f64>>>,
    /// The algebra coefficient tables C[i, j, g] of the expansion, by A (constants).
    coef: RefCell<HashMap<usize, CudaSlice<f32>>>,
    /// The weight-decay mask of the last `adamw` call's ranges, which it is checked against.
    mask: RefCell<Option<optimizer::DecayMask>>,
    /// The step's expanded weights (`linear::prepare_weights`).
    expanded: RefCell<Option<linear::Expanded>>,
}

/// The kernels (every `.cu` file, as one program) compiled by NVRTC for compute capability
/// `major.minor` (needs no GPU, only the NVRTC library).
pub fn compile_kernels(major: i32, minor: i32) -> Result<cudarc::nvrtc::Ptx, String> {
    let arch: &'static str = Box::leak(format!("sm_{major}{minor}").into_boxed_str());
    let opts = cudarc::nvrtc::CompileOptions {
        arch: Some(arch),
        options: vec!["--std=c++17".into()],
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(SOURCE, opts).map_err(|e| format!("{e:?}"))
}

impl CudaBackend {
    /// Opens GPU `ordinal` and compiles the kernels.
    pub fn new(ordinal: usize, matmul: Matmul) -> BackendResult<Self> {
        let tag = format!("cuda:{ordinal}");
        let err = |op: &'static str, e: String| BackendError {
            backend: tag.clone(),
            op,
            msg: e,
        };
        let ctx = CudaContext::new(ordinal).map_err(|e| err("open device", e.to_string()))?;
        // One stream: ordering is the stream's, and per-buffer events would only cost time.
        // SAFETY: no buffer exists yet, and this backend never uses a second stream.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| err("open device", e.to_string()))?;
        let gpu = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let ptx = compile_kernels(major, minor).map_err(|e| err("NVRTC compile the kernels", e))?;
        let module = ctx
            .load_module(ptx)
            .map_err(|e| err("load module", e.to_string()))?;
        let mut funcs = HashMap::new();
        let tc = major >= 8;
        let tc_names = attention::TC_ATTENTION.iter().flat_map(|(_, n)| n.iter());
        let names = KERNEL_NAMES.iter().flat_map(|k| k.iter());
        for name in names.chain(tc_names.filter(|_| tc)) {
            let f = module
                .load_function(name)
                .map_err(|e| err("load function", format!("{name}: {e}")))?;
            funcs.insert(*name, f);
        }
        let blas = CudaBlas::new(stream.clone()).map_err(|e| err("cuBLAS init", e.to_string()))?;
        // The GEMMs name their compute type (`gemm`); pedantic math keeps cuBLAS from
        // substituting a faster one of its own in the f32 mode.
        let mode = match matmul {
            Matmul::F32 => blas_sys::cublasMath_t::CUBLAS_PEDANTIC_MATH,
            Matmul::Tf32 | Matmul::Bf16 => blas_sys::cublasMath_t::CUBLAS_DEFAULT_MATH,
        };
        // SAFETY: the handle is live and owned by `blas`.
        unsafe { blas_sys::cublasSetMathMode(*blas.handle(), mode) }
            .result()
            .map_err(|e| err("cuBLAS math mode", format!("{e:?}")))?;
        let mut backend = CudaBackend {
            name: format!("{tag} ({gpu}, sm_{major}{minor}, {matmul:?} matmul)"),
            ordinal,
            stream,
            blas,
            matmul,
            tc_attention: false,
            tc_available: tc,
            funcs,
            scratch: RefCell::new(HashMap::new()),
            sums: RefCell::new(None),
            coef: RefCell::new(HashMap::new()),
            mask: RefCell::new(None),
            expanded: RefCell::new(None),
        };
        match std::env::var("WALSH_ATTENTION").as_deref() {
            // Tensor cores are 3-4x faster (docs/BENCHMARKS.md) and within TF32's rounding.
            Err(_) => backend.tc_attention = tc && matmul != Matmul::F32,
            Ok("cores") => {}
            Ok("tc") => backend.set_tensor_core_attention(true)?,
            Ok(other) => {
                return Err(err(
                    "WALSH_ATTENTION",
                    format!("{other:?}: expected \"tc\" (tensor cores) or \"cores\""),
                ));
            }
        }
        Ok(backend)
    }

    /// Runs attention on tensor cores (attention_tc.cu: TF32 operands, f32 accumulation) for
    /// head sizes up to 64, or on CUDA cores (exact f32). Tensor cores need compute capability
    /// 8.0 and a TF32 or bf16 matmul mode (the f32 mode promises IEEE f32 products).
    pub fn set_tensor_core_attention(&mut self, on: bool) -> BackendResult<()> {
        if on && !self.tc_available {
            return Err(self.err(
                "tensor-core attention",
                "needs compute capability 8.0 or newer",
            ));
        }
        if on && self.matmul == Matmul::F32 {
            return Err(self.err(
                "tensor-core attention",
                "the f32 matmul mode keeps IEEE f32 products; use --matmul tf32 or bf16",
            ));
        }
        self.tc_attention = on;
        Ok(())
    }
}

impl Backend for CudaBackend {
    type Elem = f32;
    type Buf = CudaSlice<f32>;
    type Tokens = CudaSlice<u32>;

    fn describe(&self) -> String {
        self.name.clone()
    }
    fn mark(&self) -> BackendResult<Option<Mark>> {
        launch::mark(self)
    }
    fn elapsed(&self, from: &Mark, to: &Mark) -> BackendResult<f64> {
        launch::elapsed(self, from, to)
    }
    fn sync(&self) -> BackendResult<()> {
        CudaBackend::sync(self, "synchronize")
    }
    fn zeros(&self, len: usize) -> BackendResult<CudaSlice<f32>> {
        launch::zeros(self, len)
    }
    fn upload(&self, host: &[f32]) -> BackendResult<CudaSlice<f32>> {
        launch::upload(self, host)
    }
    fn download(&self, buf: &CudaSlice<f32>) -> BackendResult<Vec<f32>> {
        launch::download(self, buf)
    }
    fn upload_tokens(&self, tokens: &[u32]) -> BackendResult<CudaSlice<u32>> {
        launch::upload_tokens(self, tokens)
    }
    fn fill_zero(&self, buf: &mut CudaSlice<f32>) -> BackendResult<()> {
        launch::fill_zero(self, buf)
    }
    fn add_assign(&self, dst: &mut CudaSlice<f32>, src: &CudaSlice<f32>) -> BackendResult<()> {
        elementwise::add_assign(self, dst, src)
    }
    fn add(
        &self,
        out: &mut CudaSlice<f32>,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
    ) -> BackendResult<()> {
        elementwise::add(self, out, a, b)
    }
    fn quantize(
        &self,
        eff: &mut CudaSlice<f32>,
        params: &CudaSlice<f32>,
        ternary: &[Range<usize>],
        quantize: bool,
    ) -> BackendResult<()> {
        quantize::quantize(self, eff, params, ternary, quantize)
    }
    fn prepare_weights(
        &self,
        eff: &CudaSlice<f32>,
        linears: &[&LinearRef],
        mixes: &[&MixRef],
    ) -> BackendResult<()> {
        linear::prepare_weights(self, eff, linears, mixes)
    }
    fn embed_forward(
        &self,
        out: &mut CudaSlice<f32>,
        tokens: &CudaSlice<u32>,
        eff: &CudaSlice<f32>,
        emb: &EmbRef,
    ) -> BackendResult<()> {
        embedding::embed_forward(self, out, tokens, eff, emb)
    }
    fn embed_backward(
        &self,
        grads: &mut CudaSlice<f32>,
        dout: &CudaSlice<f32>,
        tokens: &CudaSlice<u32>,
        emb: &EmbRef,
    ) -> BackendResult<()> {
        embedding::embed_backward(self, grads, dout, tokens, emb)
    }
    fn rmsnorm_forward(
        &self,
        out: &mut CudaSlice<f32>,
        rstd: &mut CudaSlice<f32>,
        inp: &CudaSlice<f32>,
        eff: &CudaSlice<f32>,
        gain: Range<usize>,
    ) -> BackendResult<()> {
        norm::rmsnorm_forward(self, out, rstd, inp, eff, gain)
    }
    fn rmsnorm_backward(
        &self,
        dinp: &mut CudaSlice<f32>,
        grads: &mut CudaSlice<f32>,
        dout: &CudaSlice<f32>,
        inp: &CudaSlice<f32>,
        rstd: &CudaSlice<f32>,
        eff: &CudaSlice<f32>,
        gain: Range<usize>,
    ) -> BackendResult<()> {
        norm::rmsnorm_backward(self, dinp, grads, dout, inp, rstd, eff, gain)
    }
    fn linear_saved_len(&self, len: usize) -> usize {
        linear::linear_saved_len(self, len)
    }
    fn linear_forward(
        &self,
        out: &mut CudaSlice<f32>,
        u: &mut CudaSlice<f32>,
        _z: &mut CudaSlice<f32>,
        inp: &CudaSlice<f32>,
        eff: &CudaSlice<f32>,
        lin: &LinearRef,
    ) -> BackendResult<()> {
        linear::linear_forward(self, out, u, _z, inp, eff, lin)
    }
    fn linear_backward(
        &self,
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
        linear::linear_backward(self, dinp, grads, dout, inp, u, _z, eff, lin, accumulate)
    }
    fn linears_forward(
        &self,
        items: &mut [LinearOut<'_, CudaSlice<f32>>],
        inp: &CudaSlice<f32>,
        eff: &CudaSlice<f32>,
    ) -> BackendResult<()> {
        linear::linears_forward(self, items, inp, eff)
    }
    fn linears_backward(
        &self,
        dinp: &mut CudaSlice<f32>,
        grads: &mut CudaSlice<f32>,
        items: &[LinearIn<'_, CudaSlice<f32>>],
        inp: &CudaSlice<f32>,
        eff: &CudaSlice<f32>,
        accumulate: bool,
    ) -> BackendResult<()> {
        linear::linears_backward(self, dinp, grads, items, inp, eff, accumulate)
    }
    fn rope_forward(
        &self,
        out: &mut CudaSlice<f32>,
        inp: &CudaSlice<f32>,
        cos: &CudaSlice<f32>,
        sin: &CudaSlice<f32>,
        seq_len: usize,
        d: usize,
        head_dim: usize,
    ) -> BackendResult<()> {
        elementwise::rope_forward(self, out, inp, cos, sin, seq_len, d, head_dim)
    }
    fn rope_backward(
        &self,
        dinp: &mut CudaSlice<f32>,
        dout: &CudaSlice<f32>,
        cos: &CudaSlice<f32>,
        sin: &CudaSlice<f32>,
        seq_len: usize,
        d: usize,
        head_dim: usize,
        accumulate: bool,
    ) -> BackendResult<()> {
        elementwise::rope_backward(self, dinp, dout, cos, sin, seq_len, d, head_dim, accumulate)
    }
    fn attention_saved_len(&self, batch: usize, dims: AttnDims) -> usize {
        attention::attention_saved_len(self, batch, dims)
    }
    fn attention_forward(
        &self,
        out: &mut CudaSlice<f32>,
        lse: &mut CudaSlice<f32>,
        q: &CudaSlice<f32>,
        k: &CudaSlice<f32>,
        v: &CudaSlice<f32>,
        dims: AttnDims,
    ) -> BackendResult<()> {
        attention::attention_forward(self, out, lse, q, k, v, dims)
    }
    fn attention_backward(
        &self,
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
        attention::attention_backward(self, dq, dk, dv, dout, out, q, k, v, lse, dims)
    }
    fn mix_forward(
        &self,
        out: &mut CudaSlice<f32>,
        u: &mut CudaSlice<f32>,
        _z: &mut CudaSlice<f32>,
        inp: &CudaSlice<f32>,
        eff: &CudaSlice<f32>,
        mix: &MixRef,
    ) -> BackendResult<()> {
        linear::mix_forward(self, out, u, _z, inp, eff, mix)
    }
    fn mix_backward(
        &self,
        dinp: &mut CudaSlice<f32>,
        grads: &mut CudaSlice<f32>,
        dout: &CudaSlice<f32>,
        u: &CudaSlice<f32>,
        _z: &CudaSlice<f32>,
        eff: &CudaSlice<f32>,
        mix: &MixRef,
        accumulate: bool,
    ) -> BackendResult<()> {
        linear::mix_backward(self, dinp, grads, dout, u, _z, eff, mix, accumulate)
    }
    fn swiglu_forward(
        &self,
        out: &mut CudaSlice<f32>,
        gate: &CudaSlice<f32>,
        up: &CudaSlice<f32>,
    ) -> BackendResult<()> {
        elementwise::swiglu_forward(self, out, gate, up)
    }
    fn swiglu_backward(
        &self,
        dgate: &mut CudaSlice<f32>,
        dup: &mut CudaSlice<f32>,
        dout: &CudaSlice<f32>,
        gate: &CudaSlice<f32>,
        up: &CudaSlice<f32>,
        accumulate: bool,
    ) -> BackendResult<()> {
        elementwise::swiglu_backward(self, dgate, dup, dout, gate, up, accumulate)
    }
    fn cross_entropy_saved_len(&self, rows: usize, emb: &EmbRef) -> usize {
        cross_entropy::cross_entropy_saved_len(self, rows, emb)
    }
    fn cross_entropy_forward(
        &self,
        lse: &mut CudaSlice<f32>,
        saved: &mut CudaSlice<f32>,
        h: &CudaSlice<f32>,
        targets: &CudaSlice<u32>,
        eff: &CudaSlice<f32>,
        emb: &EmbRef,
    ) -> BackendResult<f64> {
        cross_entropy::cross_entropy_forward(self, lse, saved, h, targets, eff, emb)
    }
    fn cross_entropy_backward(
        &self,
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
        cross_entropy::cross_entropy_backward(
            self, dh, grads, dloss, h, targets, lse, saved, eff, emb,
        )
    }
    fn another(&self) -> BackendResult<Self> {
        let mut b = CudaBackend::new(self.ordinal, self.matmul)?;
        b.set_tensor_core_attention(self.tc_attention)?;
        Ok(b)
    }
    fn download_tokens(&self, tokens: &CudaSlice<u32>) -> BackendResult<Vec<u32>> {
        let v = self
            .stream
            .clone_dtoh(tokens)
            .map_err(|e| self.err("download tokens", e))?;
        self.sync("download tokens")?;
        Ok(v)
    }
    fn distill_targets(
        &self,
        idx: &mut CudaSlice<u32>,
        q: &mut CudaSlice<f32>,
        logits: &mut CudaSlice<f32>,
        vocab: usize,
        k: usize,
        tau: f64,
    ) -> BackendResult<()> {
        distill::distill_targets(self, idx, q, logits, vocab, k, tau)
    }
    fn distill_forward(
        &self,
        lse: &mut CudaSlice<f32>,
        h: &CudaSlice<f32>,
        idx: &CudaSlice<u32>,
        q: &CudaSlice<f32>,
        k: usize,
        tau: f64,
        eff: &CudaSlice<f32>,
        emb: &EmbRef,
    ) -> BackendResult<f64> {
        distill::distill_forward(self, lse, h, idx, q, k, tau, eff, emb)
    }
    fn distill_backward(
        &self,
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
        distill::distill_backward(self, dh, grads, dloss, h, idx, q, lse, k, tau, eff, emb)
    }
    fn logits(
        &self,
        out: &mut CudaSlice<f32>,
        h: &CudaSlice<f32>,
        eff: &CudaSlice<f32>,
        emb: &EmbRef,
    ) -> BackendResult<()> {
        cross_entropy::logits(self, out, h, eff, emb)
    }
    fn sum_squares(&self, buf: &CudaSlice<f32>) -> BackendResult<f64> {
        optimizer::sum_squares(self, buf)
    }
    fn adamw(
        &self,
        params: &mut CudaSlice<f32>,
        grads: &CudaSlice<f32>,
        m: &mut CudaSlice<f32>,
        v: &mut CudaSlice<f32>,
        decay: &[Range<usize>],
        grad_scale: f64,
        hp: AdamW,
    ) -> BackendResult<()> {
        optimizer::adamw(self, params, grads, m, v, decay, grad_scale, hp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each family's kernels are defined in its own `.cu` file, and every kernel the backend
    /// loads is in the program NVRTC compiles (a kernel moved or renamed without its list fails
    /// here, not at the GPU's start).
    #[test]
    fn every_loaded_kernel_is_defined_in_its_family_file() {
        let families: &[(&str, &[&str])] = &[
            (include_str!("common.cu"), launch::KERNELS),
            (include_str!("elementwise.cu"), elementwise::KERNELS),
            (include_str!("quantize.cu"), quantize::KERNELS),
            (include_str!("linear.cu"), linear::KERNELS),
            (include_str!("embedding.cu"), embedding::KERNELS),
            (include_str!("norm.cu"), norm::KERNELS),
            (include_str!("attention.cu"), attention::KERNELS),
            (include_str!("cross_entropy.cu"), cross_entropy::KERNELS),
            (include_str!("distill.cu"), distill::KERNELS),
            (include_str!("optimizer.cu"), optimizer::KERNELS),
        ];
        assert_eq!(families.len(), KERNEL_NAMES.len());
        let defined = |src: &str, name: &str| {
            // Plain kernels, and the attention ones their macros stamp out by head size.
            let (stem, hd) = name.rsplit_once('_').unwrap_or((name, ""));
            src.contains(&format!(" {name}("))
                || (hd.parse::<usize>().is_ok()
                    && src.contains(&format!(" {stem}_##HD("))
                    && src.contains(&format!("_KERNELS({hd})")))
        };
        for (src, names) in families {
            for name in *names {
                assert!(defined(src, name), "{name} is not in its family's .cu file");
            }
        }
        let tc = include_str!("attention_tc.cu");
        for (_, names) in attention::TC_ATTENTION {
            for name in names {
                assert!(defined(tc, name), "{name} is not in attention_tc.cu");
            }
        }
        for src in families.iter().map(|f| f.0).chain([tc]) {
            assert!(SOURCE.contains(src));
        }
    }
}
