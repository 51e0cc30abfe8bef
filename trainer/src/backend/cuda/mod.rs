//! The CUDA backend (feature `cuda`): the [`Backend`] operations on one NVIDIA GPU, with kernels
//! in CUDA C (`kernels.cu`) compiled by NVRTC when the backend starts, and GEMMs by cuBLAS. The
//! CUDA libraries are loaded at run time, so building needs no CUDA toolkit.
//!
//! Every AlgebraLinear (and head mixing) runs as one dense GEMM against its algebra's weight
//! expanded to a full matrix with α and β folded in (`expand_kernel`: the octonion sign blocks
//! from a coefficient table; `expand_hadamard_kernel`: H32·blockdiag·H32 by an in-register FHT).
//! The backward is two more GEMMs, dx = dy·W' and D = dyᵀ·x, and small kernels over the [out, in]
//! matrix D: the weight gradient folded back (`fold_kernel`, `fold_hadamard_kernel`) and the
//! gradients of α and β. Nothing the size of the activations is saved but the input. At the
//! seed's sizes this beats per-block batched GEMMs with a separate FHT over the activations.
//!
//! Buffers are `CudaSlice<f32>`; ops pass raw device pointers (one stream, event tracking off),
//! and every driver, NVRTC and cuBLAS result is checked and reported with the op's name.

mod ceilings;

use super::{
    AdamW, Backend, BackendError, BackendResult, EmbRef, LinearIn, LinearOut, LinearRef, Mark,
    MixRef,
};
use crate::ops::attention::AttnDims;
pub use ceilings::Ceilings;
use cudarc::cublas::{CudaBlas, result as blas, sys as blas_sys};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use walsh_spec::octonion::SIGNS;

const KERNELS: &str = concat!(include_str!("kernels.cu"), include_str!("attention_tc.cu"));
const KERNEL_NAMES: &[&str] = &[
    "add_kernel",
    "add_assign_kernel",
    "abs_sum_kernel",
    "ternary_kernel",
    "expand_kernel",
    "fold_kernel",
    "expand_hadamard_kernel",
    "expand_hadamard_many_kernel",
    "expand_many_kernel",
    "fold_hadamard_kernel",
    "row_dot_kernel",
    "col_dot_kernel",
    "embed_kernel",
    "embed_backward_kernel",
    "rmsnorm_kernel",
    "rmsnorm_backward_kernel",
    "rope_kernel",
    "swiglu_kernel",
    "swiglu_backward_kernel",
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
    "ce_forward_kernel",
    "ce_backward_kernel",
    "ce_backward_bf16_kernel",
    "ce_forward_bf16_kernel",
    "to_bf16_kernel",
    "to_bf16_x4_kernel",
    "hash_ce_forward_kernel",
    "hash_ce_backward_kernel",
    "hash_ce_forward_factored_kernel",
    "hash_ce_backward_factored_kernel",
    "hash_logits_kernel",
    "sum_squares_kernel",
    "adamw_kernel",
];
/// The tensor-core attention kernels (attention_tc.cu: mma.sync TF32, compute capability 8.0 and
/// up), by head size: forward, dq, dk+dv.
const TC_ATTENTION: &[(usize, [&str; 3])] = &[
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
/// The Hadamard algebra's dimension, which has kernels of its own (the FHT, not the table).
const HADAMARD_A: usize = 32;
/// Rows per block of the RMSNorm backward (one atomic per gain column and block).
const NORM_ROWS: usize = 16;
/// Rows of an [out, in] matrix per block of `col_dot_kernel` (one atomic per column and block).
const COL_DOT_ROWS: usize = 64;

/// Weight-decay flags per parameter, for the ranges they were built from.
type DecayMask = (Vec<Range<usize>>, CudaSlice<u8>);

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

/// `gemm_of`'s types: bf16 operands into an f32 C.
const BF16: (bool, bool) = (true, false);

/// Operands of the standard cross-entropy's GEMMs (`CudaBackend::ce_operands`): device addresses
/// of the table padded to `ld` rows and of h, both bf16 when `bf16`.
struct CeOperands {
    bf16: bool,
    ld: usize,
    table: u64,
    h: u64,
}

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
    /// The algebra coefficient tables C[i, j, g] of the expansion, by A.
    coef: RefCell<HashMap<usize, CudaSlice<f32>>>,
    /// The weight-decay mask of the last `adamw` call's ranges.
    mask: RefCell<Option<DecayMask>>,
    /// The step's expanded weights (`prepare_weights`).
    expanded: RefCell<Option<Expanded>>,
    /// How many times `quantize` has rewritten an `eff` (part of the saved logits' key).
    generation: Cell<u64>,
    /// The bf16 mode's last cross-entropy logits, for its backward.
    ce_saved: RefCell<Option<CeSaved>>,
}

/// The bf16 logits of the last standard cross-entropy forward, `key` (`CudaBackend::ce_key`) saying
/// of which h, targets, lse, eff and generation; `None` once they are gone (the backward turns
/// them into gradients in place).
struct CeSaved {
    key: Option<[u64; 5]>,
    logits: CudaSlice<f32>,
}

/// Every AlgebraLinear's and head mixing's W' and Wfull (`CudaBackend::expand`), expanded once
/// after a `quantize` by `prepare_weights` rather than in each forward and backward.
struct Expanded {
    /// The address of the `eff` they were expanded from; 0 once a `quantize` has rewritten it.
    eff: u64,
    full: CudaSlice<f32>,
    raw: CudaSlice<f32>,
    /// In the bf16 matmul mode, `full` as bf16 (the GEMMs' operand; two to a float).
    full_bf16: Option<CudaSlice<f32>>,
    /// Where each one starts in `full` and `raw`, by the offset of its weight in `eff`.
    at: HashMap<usize, usize>,
}

/// Launches kernel `$name` on the backend's stream; arguments are values (pointers as u64).
macro_rules! launch {
    ($s:expr, $name:expr, $cfg:expr $(, $arg:expr)* $(,)?) => {{
        let f = $s.func($name)?;
        let mut b = $s.stream.launch_builder(f);
        $(
            let a = $arg;
            b.arg(&a);
        )*
        // SAFETY: the argument list matches the kernel's signature in kernels.cu (checked by the
        // GPU tests against the CPU backend), and every pointer is into a live buffer of the
        // length the kernel indexes.
        unsafe { b.launch($cfg) }.map_err(|e| $s.err($name, e))?;
    }};
}

fn elems(n: u64) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 1 << 20) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn rows_cfg(rows: usize, threads: u32, shared: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: shared,
    }
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

/// kernels.cu compiled by NVRTC for compute capability `major.minor` (needs no GPU, only the
/// NVRTC library).
pub fn compile_kernels(major: i32, minor: i32) -> Result<cudarc::nvrtc::Ptx, String> {
    let arch: &'static str = Box::leak(format!("sm_{major}{minor}").into_boxed_str());
    let opts = cudarc::nvrtc::CompileOptions {
        arch: Some(arch),
        options: vec!["--std=c++17".into()],
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(KERNELS, opts).map_err(|e| format!("{e:?}"))
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
        let ptx = compile_kernels(major, minor).map_err(|e| err("NVRTC compile kernels.cu", e))?;
        let module = ctx
            .load_module(ptx)
            .map_err(|e| err("load module", e.to_string()))?;
        let mut funcs = HashMap::new();
        let tc = major >= 8;
        let tc_names = TC_ATTENTION.iter().flat_map(|(_, n)| n.iter());
        for name in KERNEL_NAMES.iter().chain(tc_names.filter(|_| tc)) {
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
            generation: Cell::new(0),
            ce_saved: RefCell::new(None),
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

    fn err(&self, op: &'static str, e: impl std::fmt::Display) -> BackendError {
        BackendError {
            backend: self.name.clone(),
            op,
            msg: e.to_string(),
        }
    }

    /// RoPE of `len` floats at `inp` into `out` (base addresses: rope_kernel reads float pairs),
    /// `inverse` rotating back (the backward), `acc` adding to `out`.
    fn rope(
        &self,
        (out, inp, len): (u64, u64, usize),
        (cos, sin): (&CudaSlice<f32>, &CudaSlice<f32>),
        seq_len: usize,
        d: usize,
        head_dim: usize,
        (inverse, acc): (bool, bool),
    ) -> BackendResult<()> {
        let pairs = len / 2;
        if !d.is_multiple_of(2) || pairs >= 1 << 31 {
            let msg = format!(
                "{len} floats of width {d}: needs an even width and fewer than 2^32 floats"
            );
            return Err(self.err("rope", msg));
        }
        launch!(
            self,
            "rope_kernel",
            elems(pairs as u64),
            out,
            inp,
            self.ptr(cos),
            self.ptr(sin),
            (len / d) as u32,
            seq_len as u32,
            d as u32,
            head_dim as u32,
            inverse as i32,
            acc as i32
        );
        Ok(())
    }

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

    fn func(&self, name: &'static str) -> BackendResult<&CudaFunction> {
        self.funcs
            .get(name)
            .ok_or_else(|| self.err("launch", format!("kernel {name} was not loaded")))
    }

    fn ptr<T>(&self, buf: &CudaSlice<T>) -> u64 {
        buf.device_ptr(&self.stream).0
    }

    /// The address of element `offset` of an f32 buffer.
    fn at(&self, buf: &CudaSlice<f32>, offset: usize) -> u64 {
        self.ptr(buf) + 4 * offset as u64
    }

    /// A scratch buffer of at least `len` floats (contents undefined).
    fn scratch(&self, key: &'static str, len: usize) -> BackendResult<u64> {
        let mut map = self.scratch.borrow_mut();
        if map.get(key).is_none_or(|b| b.len() < len) {
            map.remove(key);
            // SAFETY: scratch contents are always written before they are read.
            let buf = unsafe { self.stream.alloc::<f32>(len.max(1)) }
                .map_err(|e| self.err("alloc scratch", format!("{key}: {len} floats: {e}")))?;
            map.insert(key, buf);
        }
        Ok(self.ptr(&map[key]))
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

    /// Zeroed f64 accumulators, `n` of them.
    fn sums(&self, n: usize) -> BackendResult<u64> {
        let mut s = self.sums.borrow_mut();
        if s.as_ref().is_none_or(|b| b.len() < n) {
            *s = Some(
                self.stream
                    .alloc_zeros::<f64>(n)
                    .map_err(|e| self.err("alloc sums", e))?,
            );
        }
        let buf = s.as_mut().expect("allocated above");
        self.stream
            .memset_zeros(buf)
            .map_err(|e| self.err("zero sums", e))?;
        Ok(self.ptr(buf))
    }

    fn read_sums(&self, n: usize) -> BackendResult<Vec<f64>> {
        let s = self.sums.borrow();
        let buf = s.as_ref().expect("sums() came first");
        let v = self
            .stream
            .clone_dtoh(&buf.slice(0..n))
            .map_err(|e| self.err("read sums", e))?;
        self.sync("read sums")?;
        Ok(v)
    }

    fn sync(&self, op: &'static str) -> BackendResult<()> {
        self.stream.synchronize().map_err(|e| self.err(op, e))
    }

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

    /// Row-major C[m, n] = op(A)[m, k] · op(B)[k, n] + beta·C, where op transposes when `ta`/`tb`
    /// (A stored [k, m], B stored [n, k]); ld* are the stored row strides. f32 operands, in the
    /// matmul mode's compute type.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        op: &'static str,
        trans: (bool, bool),
        dims: (usize, usize, usize),
        a: (u64, usize),
        b: (u64, usize),
        c: (u64, usize),
        beta: f32,
    ) -> BackendResult<()> {
        self.gemm_of(op, (false, false), trans, dims, a, b, c, beta)
    }

    /// [`Self::gemm`] with bf16 operands (`bf16`: `to_bf16_kernel`'s) and a bf16 C (`c_bf16`) as
    /// asked; f32 accumulation either way.
    #[allow(clippy::too_many_arguments)]
    fn gemm_of(
        &self,
        op: &'static str,
        (bf16, c_bf16): (bool, bool),
        (ta, tb): (bool, bool),
        (m, n, k): (usize, usize, usize),
        (a, lda): (u64, usize),
        (b, ldb): (u64, usize),
        (c, ldc): (u64, usize),
        beta: f32,
    ) -> BackendResult<()> {
        if m == 0 || n == 0 {
            return Ok(());
        }
        let t = |x: bool| {
            if x {
                blas_sys::cublasOperation_t::CUBLAS_OP_T
            } else {
                blas_sys::cublasOperation_t::CUBLAS_OP_N
            }
        };
        let alpha = 1.0f32;
        let compute = match (bf16, self.matmul) {
            (true, _) => blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            (false, Matmul::F32) => blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_PEDANTIC,
            (false, Matmul::Tf32) => blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
            (false, Matmul::Bf16) => blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_16BF,
        };
        let f32t = blas_sys::cudaDataType::CUDA_R_32F;
        let of = |b: bool| {
            if b {
                blas_sys::cudaDataType::CUDA_R_16BF
            } else {
                f32t
            }
        };
        let ab = of(bf16);
        // Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ.
        // SAFETY: the pointers address live buffers holding matrices of these element types,
        // shapes and strides (the callers size them from the same dims); alpha and beta are f32
        // like the compute type's scale type.
        unsafe {
            blas::gemm_ex(
                *self.blas.handle(),
                t(tb),
                t(ta),
                n as i32,
                m as i32,
                k as i32,
                (&alpha as *const f32).cast(),
                b as *const std::ffi::c_void,
                ab,
                ldb as i32,
                a as *const std::ffi::c_void,
                ab,
                lda as i32,
                (&beta as *const f32).cast(),
                c as *mut std::ffi::c_void,
                of(c_bf16),
                ldc as i32,
                compute,
                blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| {
            let of = if bf16 { "bf16" } else { "f32" };
            self.err(
                op,
                format!("GEMM {m}×{n}×{k} of {of} ({:?}): {e:?}", self.matmul),
            )
        })
    }

    /// A bf16 copy of `len` floats at `src`, zero-padded to `padded` (scratch `key`).
    fn to_bf16(
        &self,
        key: &'static str,
        src: u64,
        len: usize,
        padded: usize,
    ) -> BackendResult<u64> {
        let out = self.scratch(key, padded.div_ceil(2))?;
        self.cast_bf16(out, src, len, padded)?;
        Ok(out)
    }

    /// `dst` (room for `padded` bf16s) = bf16 of the `len` floats at `src`, zero-padded.
    fn cast_bf16(&self, dst: u64, src: u64, len: usize, padded: usize) -> BackendResult<()> {
        if src.is_multiple_of(16) && dst.is_multiple_of(8) {
            launch!(
                self,
                "to_bf16_x4_kernel",
                elems((padded as u64).div_ceil(4)),
                dst,
                src,
                len as u64,
                padded as u64
            );
            return Ok(());
        }
        launch!(
            self,
            "to_bf16_kernel",
            elems(padded as u64),
            dst,
            src,
            len as u64,
            padded as u64
        );
        Ok(())
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
                // A block per (r, c), its eight warps splitting the rows: kernels.cu's FOLD_H_SPLIT.
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

    /// The tied table [V, d] copied into scratch "table" [ld, d] (ld = [`logits_stride`]) with
    /// rows V.. zero: the logits GEMMs then run over an aligned vocabulary extent (their padded
    /// columns come out zero, and the cross-entropy kernels never read them).
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

    /// Where the standard cross-entropy's logits go, and how many rows at a time: in the bf16
    /// mode with `save`, all n rows at once into the buffer the backward can reuse (when they fit
    /// in CE_SAVE bf16s), else CE_ROWS rows of scratch.
    fn ce_logits_buffer(
        &self,
        o: &CeOperands,
        n: usize,
        save: bool,
    ) -> BackendResult<(usize, u64)> {
        if o.bf16 && save && n * o.ld <= CE_SAVE {
            let half = (n * o.ld).div_ceil(2);
            let mut slot = self.ce_saved.borrow_mut();
            if slot.as_ref().is_none_or(|s| s.logits.len() < half) {
                *slot = None;
                // SAFETY: the logits GEMM writes all n rows before anything reads them.
                let logits = unsafe { self.stream.alloc::<f32>(half.max(1)) }.map_err(|e| {
                    self.err("alloc cross-entropy logits", format!("{half} floats: {e}"))
                })?;
                *slot = Some(CeSaved { key: None, logits });
            }
            let saved = slot.as_mut().expect("allocated above");
            saved.key = None;
            return Ok((n.max(1), self.ptr(&saved.logits)));
        }
        let rows = CE_ROWS.min(n);
        let len = if o.bf16 {
            (rows * o.ld).div_ceil(2)
        } else {
            rows * o.ld
        };
        Ok((CE_ROWS, self.scratch("logits", len)?))
    }

    /// What identifies a cross-entropy forward to its backward.
    fn ce_key(
        &self,
        h: &CudaSlice<f32>,
        targets: &CudaSlice<u32>,
        lse: &CudaSlice<f32>,
        eff: &CudaSlice<f32>,
    ) -> [u64; 5] {
        [
            self.ptr(h),
            self.ptr(targets),
            self.ptr(lse),
            self.ptr(eff),
            self.generation.get(),
        ]
    }

    fn padded_table(
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

impl Backend for CudaBackend {
    type Elem = f32;
    type Buf = CudaSlice<f32>;
    type Tokens = CudaSlice<u32>;

    fn describe(&self) -> String {
        self.name.clone()
    }
    fn mark(&self) -> BackendResult<Option<Mark>> {
        let event = self
            .stream
            .record_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| self.err("record event", e))?;
        Ok(Some(Mark(Box::new(event))))
    }
    fn elapsed(&self, from: &Mark, to: &Mark) -> BackendResult<f64> {
        use cudarc::driver::CudaEvent;
        match (
            from.0.downcast_ref::<CudaEvent>(),
            to.0.downcast_ref::<CudaEvent>(),
        ) {
            (Some(a), Some(b)) => a
                .elapsed_ms(b)
                .map(|ms| f64::from(ms) / 1e3)
                .map_err(|e| self.err("elapsed", e)),
            _ => Err(self.err("elapsed", "a mark of another backend")),
        }
    }
    fn sync(&self) -> BackendResult<()> {
        CudaBackend::sync(self, "synchronize")
    }

    fn zeros(&self, len: usize) -> BackendResult<CudaSlice<f32>> {
        self.stream
            .alloc_zeros::<f32>(len.max(1))
            .map_err(|e| self.err("alloc", format!("{len} floats: {e}")))
    }
    fn upload(&self, host: &[f32]) -> BackendResult<CudaSlice<f32>> {
        if host.is_empty() {
            return self.zeros(0);
        }
        self.stream
            .clone_htod(host)
            .map_err(|e| self.err("upload", e))
    }
    fn download(&self, buf: &CudaSlice<f32>) -> BackendResult<Vec<f32>> {
        let v = self
            .stream
            .clone_dtoh(buf)
            .map_err(|e| self.err("download", e))?;
        self.sync("download")?;
        Ok(v)
    }
    fn upload_tokens(&self, tokens: &[u32]) -> BackendResult<CudaSlice<u32>> {
        if tokens.is_empty() {
            return self
                .stream
                .alloc_zeros::<u32>(1)
                .map_err(|e| self.err("upload tokens", e));
        }
        self.stream
            .clone_htod(tokens)
            .map_err(|e| self.err("upload tokens", e))
    }
    fn fill_zero(&self, buf: &mut CudaSlice<f32>) -> BackendResult<()> {
        self.stream
            .memset_zeros(buf)
            .map_err(|e| self.err("fill zero", e))
    }
    fn add_assign(&self, dst: &mut CudaSlice<f32>, src: &CudaSlice<f32>) -> BackendResult<()> {
        let n = dst.len() as u64;
        launch!(
            self,
            "add_assign_kernel",
            elems(n),
            self.ptr(dst),
            self.ptr(src),
            n
        );
        Ok(())
    }
    fn add(
        &self,
        out: &mut CudaSlice<f32>,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
    ) -> BackendResult<()> {
        let n = out.len() as u64;
        launch!(
            self,
            "add_kernel",
            elems(n),
            self.ptr(out),
            self.ptr(a),
            self.ptr(b),
            n
        );
        Ok(())
    }

    fn quantize(
        &self,
        eff: &mut CudaSlice<f32>,
        params: &CudaSlice<f32>,
        ternary: &[Range<usize>],
        quantize: bool,
    ) -> BackendResult<()> {
        if let Some(x) = self.expanded.borrow_mut().as_mut() {
            x.eff = 0;
        }
        self.generation.set(self.generation.get() + 1);
        self.stream
            .memcpy_dtod(params, eff)
            .map_err(|e| self.err("quantize copy", e))?;
        if !quantize || ternary.is_empty() {
            return Ok(());
        }
        let sums = self.sums(ternary.len())?;
        let ranges: Vec<u64> = (ternary.iter())
            .flat_map(|r| [r.start as u64, r.len() as u64])
            .collect();
        let on_device = self
            .stream
            .clone_htod(&ranges)
            .map_err(|e| self.err("upload ternary ranges", e))?;
        let most = ternary.iter().map(|r| r.len() as u64).max().unwrap_or(0);
        let tensors = ternary.len() as u32;
        let cfg = |cap: u64| LaunchConfig {
            grid_dim: (most.div_ceil(256).clamp(1, cap) as u32, tensors, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let table = self.ptr(&on_device);
        launch!(
            self,
            "abs_sum_kernel",
            cfg(1024),
            sums,
            self.ptr(params),
            table
        );
        launch!(
            self,
            "ternary_kernel",
            cfg(1 << 16),
            self.ptr(eff),
            self.ptr(params),
            sums,
            table
        );
        Ok(())
    }

    fn prepare_weights(
        &self,
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
        let mut slot = self.expanded.borrow_mut();
        let x = match slot.take() {
            Some(x) if x.full.len() >= len => Expanded { eff: 0, at, ..x },
            _ => {
                let alloc = |what| {
                    // SAFETY: every expansion is written below before any GEMM reads it.
                    unsafe { self.stream.alloc::<f32>(len.max(1)) }.map_err(|e| {
                        self.err(
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
            self.weight_fits_u32(f.a, f.n, f.m)?;
            let o = x.at[&f.weight];
            let (full, raw) = (self.at(&x.full, o), self.at(&x.raw, o));
            let alpha = f.alpha.map_or(0, |a| self.at(eff, a));
            let (w, beta) = (self.at(eff, f.weight), self.at(eff, f.beta));
            if f.a == HADAMARD_A {
                let shape = f.beta_len as u64 | (f.n as u64) << 32;
                fht_jobs.extend([full, raw, w, alpha, beta, shape, f.m as u64]);
                fht_most = fht_most.max(f.n * HADAMARD_A * f.m);
            } else {
                let coef = self.coef(f.a)?;
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
            let table = self
                .stream
                .clone_htod(&jobs)
                .map_err(|e| self.err("upload expansion jobs", e))?;
            launch!(
                self,
                kernel,
                LaunchConfig {
                    grid_dim: (most.div_ceil(64) as u32, (jobs.len() / words) as u32, 1),
                    block_dim: (64, 1, 1),
                    shared_mem_bytes: 0,
                },
                self.ptr(&table)
            );
        }
        let mut full_bf16 = x.full_bf16;
        if self.matmul == Matmul::Bf16 {
            let half = len.div_ceil(2);
            if full_bf16.as_ref().is_none_or(|b| b.len() < half) {
                // SAFETY: written by the cast below before any GEMM reads it.
                let buf = unsafe { self.stream.alloc::<f32>(half.max(1)) }
                    .map_err(|e| self.err("alloc expanded weights", format!("bf16 W': {e}")))?;
                full_bf16 = Some(buf);
            }
            if let Some(b) = &full_bf16 {
                self.cast_bf16(self.ptr(b), self.ptr(&x.full), len, len)?;
            }
        }
        *slot = Some(Expanded {
            eff: self.ptr(eff),
            full_bf16,
            ..x
        });
        Ok(())
    }

    fn embed_forward(
        &self,
        out: &mut CudaSlice<f32>,
        tokens: &CudaSlice<u32>,
        eff: &CudaSlice<f32>,
        emb: &EmbRef,
    ) -> BackendResult<()> {
        let (e1, e2, buckets, d) = match emb {
            EmbRef::Standard { table, d, .. } => (self.at(eff, table.start), 0u64, 1, *d),
            EmbRef::Hash {
                e1, e2, buckets, d, ..
            } => (self.at(eff, e1.start), self.at(eff, e2.start), *buckets, *d),
        };
        let rows = (out.len() / d) as u64;
        launch!(
            self,
            "embed_kernel",
            elems(rows * d as u64),
            self.ptr(out),
            self.ptr(tokens),
            e1,
            e2,
            buckets as u32,
            rows,
            d as u32
        );
        Ok(())
    }
    fn embed_backward(
        &self,
        grads: &mut CudaSlice<f32>,
        dout: &CudaSlice<f32>,
        tokens: &CudaSlice<u32>,
        emb: &EmbRef,
    ) -> BackendResult<()> {
        let (g1, g2, buckets, d) = match emb {
            EmbRef::Standard { table, d, .. } => (self.at(grads, table.start), 0u64, 1, *d),
            EmbRef::Hash {
                e1, e2, buckets, d, ..
            } => (
                self.at(grads, e1.start),
                self.at(grads, e2.start),
                *buckets,
                *d,
            ),
        };
        let rows = (dout.len() / d) as u64;
        launch!(
            self,
            "embed_backward_kernel",
            elems(rows * d as u64),
            g1,
            g2,
            self.ptr(dout),
            self.ptr(tokens),
            buckets as u32,
            rows,
            d as u32
        );
        Ok(())
    }

    fn rmsnorm_forward(
        &self,
        out: &mut CudaSlice<f32>,
        rstd: &mut CudaSlice<f32>,
        inp: &CudaSlice<f32>,
        eff: &CudaSlice<f32>,
        gain: Range<usize>,
    ) -> BackendResult<()> {
        let d = gain.len();
        let rows = inp.len() / d;
        launch!(
            self,
            "rmsnorm_kernel",
            rows_cfg(rows, 256, 0),
            self.ptr(out),
            self.ptr(rstd),
            self.ptr(inp),
            self.at(eff, gain.start),
            d as u32
        );
        Ok(())
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
        let d = gain.len();
        let rows = inp.len() / d;
        if d * 4 > 48 * 1024 {
            return Err(self.err(
                "rmsnorm backward",
                format!(
                    "width {d} needs {} bytes of shared memory; at most 12,288 is supported",
                    d * 4
                ),
            ));
        }
        launch!(
            self,
            "rmsnorm_backward_kernel",
            LaunchConfig {
                grid_dim: (rows.div_ceil(NORM_ROWS) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: (d * 4) as u32,
            },
            self.ptr(dinp),
            self.at(grads, gain.start),
            self.ptr(dout),
            self.ptr(inp),
            self.ptr(rstd),
            self.at(eff, gain.start),
            rows as u64,
            d as u32,
            NORM_ROWS as u32
        );
        Ok(())
    }

    /// The bf16 mode keeps a bf16 copy of each input (`u`; two to a float) for the backward's
    /// D = dyᵀ·x; the f32 and TF32 modes read the input itself and save nothing.
    fn linear_saved_len(&self, len: usize) -> usize {
        if self.matmul == Matmul::Bf16 {
            len.div_ceil(2)
        } else {
            0
        }
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
        let f = Folded::linear(lin);
        let rows = inp.len() / lin.dims.in_dim;
        let need = self.linear_saved_len(inp.len());
        if u.len() < need {
            let msg = format!(
                "the saved-input buffer holds {} floats, {need} needed",
                u.len()
            );
            return Err(self.err(f.op, msg));
        }
        self.folded_forward(
            self.ptr(out),
            self.ptr(inp),
            self.ptr(u),
            true,
            rows,
            eff,
            &f,
        )
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
        let f = Folded::linear(lin);
        let rows = inp.len() / lin.dims.in_dim;
        // The bf16 mode's GEMM reads the forward's bf16 copy of the input.
        let x = if self.matmul == Matmul::Bf16 { u } else { inp };
        let (dp, dy, x) = (self.ptr(dinp), self.ptr(dout), self.ptr(x));
        self.folded_backward(dp, grads, dy, x, rows, eff, &f, accumulate)
    }

    /// In the bf16 mode the input is rounded to bf16 once, into the first linear's `u`.
    fn linears_forward(
        &self,
        items: &mut [LinearOut<'_, CudaSlice<f32>>],
        inp: &CudaSlice<f32>,
        eff: &CudaSlice<f32>,
    ) -> BackendResult<()> {
        let Some(first) = items.first() else {
            return Ok(());
        };
        let need = self.linear_saved_len(inp.len());
        if first.u.len() < need {
            let msg = format!(
                "the saved-input buffer holds {} floats, {need} needed",
                first.u.len()
            );
            return Err(self.err("algebra linear", msg));
        }
        let save = self.ptr(&*first.u);
        for (k, it) in items.iter_mut().enumerate() {
            let f = Folded::linear(it.lin);
            let rows = inp.len() / it.lin.dims.in_dim;
            self.folded_forward(
                self.ptr(&*it.out),
                self.ptr(inp),
                save,
                k == 0,
                rows,
                eff,
                &f,
            )?;
        }
        Ok(())
    }
    /// In the bf16 mode every D = dyᵀx reads the first linear's `u` (`linears_forward`).
    fn linears_backward(
        &self,
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
        let x = if self.matmul == Matmul::Bf16 {
            first.u
        } else {
            inp
        };
        for (k, it) in items.iter().enumerate() {
            let f = Folded::linear(it.lin);
            let rows = inp.len() / it.lin.dims.in_dim;
            let (dp, dy, xp) = (self.ptr(dinp), self.ptr(it.dout), self.ptr(x));
            self.folded_backward(dp, grads, dy, xp, rows, eff, &f, accumulate || k > 0)?;
        }
        Ok(())
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
        let io = (self.ptr(out), self.ptr(inp), inp.len());
        self.rope(io, (cos, sin), seq_len, d, head_dim, (false, false))
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
        let io = (self.ptr(dinp), self.ptr(dout), dout.len());
        self.rope(io, (cos, sin), seq_len, d, head_dim, (true, accumulate))
    }

    fn attention_saved_len(&self, batch: usize, dims: AttnDims) -> usize {
        // The flash kernels keep only each row's log-sum-exp.
        batch * dims.n_head * dims.seq_len
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
        let (kernels, cfg, [t, h, hd]) = self.flash(q.len(), dims)?;
        launch!(
            self,
            kernels[0],
            cfg,
            self.ptr(out),
            self.ptr(lse),
            self.ptr(q),
            self.ptr(k),
            self.ptr(v),
            t,
            h,
            hd
        );
        Ok(())
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
        let (kernels, cfg, [t, h, hd]) = self.flash(q.len(), dims)?;
        let dsum = self.scratch("attention dO·O", lse.len())?;
        launch!(
            self,
            kernels[1],
            cfg,
            self.ptr(dq),
            dsum,
            self.ptr(dout),
            self.ptr(out),
            self.ptr(q),
            self.ptr(k),
            self.ptr(v),
            self.ptr(lse),
            t,
            h,
            hd
        );
        launch!(
            self,
            kernels[2],
            cfg,
            self.ptr(dk),
            self.ptr(dv),
            self.ptr(dout),
            self.ptr(q),
            self.ptr(k),
            self.ptr(v),
            self.ptr(lse),
            dsum,
            t,
            h,
            hd
        );
        Ok(())
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
        let f = Folded::mix(mix);
        let rows = inp.len() / (f.a * f.m);
        // The backward's input (the trait hands it `u`, not the forward's input): in the bf16
        // mode the forward's bf16 copy, else the input itself.
        if self.matmul != Matmul::Bf16 {
            self.stream
                .memcpy_dtod(inp, u)
                .map_err(|e| self.err("head mixing save", e))?;
        }
        self.folded_forward(
            self.ptr(out),
            self.ptr(inp),
            self.ptr(u),
            true,
            rows,
            eff,
            &f,
        )
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
        let f = Folded::mix(mix);
        let rows = u.len() / (f.a * f.m);
        let (dp, dy, x) = (self.ptr(dinp), self.ptr(dout), self.ptr(u));
        self.folded_backward(dp, grads, dy, x, rows, eff, &f, accumulate)
    }

    fn swiglu_forward(
        &self,
        out: &mut CudaSlice<f32>,
        gate: &CudaSlice<f32>,
        up: &CudaSlice<f32>,
    ) -> BackendResult<()> {
        let n = out.len() as u64;
        launch!(
            self,
            "swiglu_kernel",
            elems(n),
            self.ptr(out),
            self.ptr(gate),
            self.ptr(up),
            n
        );
        Ok(())
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
        let n = dout.len() as u64;
        launch!(
            self,
            "swiglu_backward_kernel",
            elems(n),
            self.ptr(dgate),
            self.ptr(dup),
            self.ptr(dout),
            self.ptr(gate),
            self.ptr(up),
            n,
            accumulate as i32
        );
        Ok(())
    }

    fn cross_entropy_forward(
        &self,
        lse: &mut CudaSlice<f32>,
        h: &CudaSlice<f32>,
        targets: &CudaSlice<u32>,
        eff: &CudaSlice<f32>,
        emb: &EmbRef,
    ) -> BackendResult<f64> {
        let n = lse.len();
        let loss = self.scratch("loss", n)?;
        match emb {
            EmbRef::Standard { table, vocab, d } => {
                let o = self.ce_operands(h, eff, table, *vocab, *d)?;
                let (chunk, logits) = self.ce_logits_buffer(&o, n, true)?;
                let kernel = if o.bf16 {
                    "ce_forward_bf16_kernel"
                } else {
                    "ce_forward_kernel"
                };
                for r0 in (0..n).step_by(chunk) {
                    let rows = chunk.min(n - r0);
                    self.ce_logits(&o, logits, r0, rows, *d)?;
                    launch!(
                        self,
                        kernel,
                        rows_cfg(rows, 256, 0),
                        self.at(lse, r0),
                        loss + 4 * r0 as u64,
                        logits,
                        self.ptr(targets) + 4 * r0 as u64,
                        *vocab as u32,
                        o.ld as u32
                    );
                }
                if o.bf16
                    && chunk >= n
                    && let Some(saved) = self.ce_saved.borrow_mut().as_mut()
                {
                    saved.key = Some(self.ce_key(h, targets, lse, eff));
                }
            }
            EmbRef::Hash {
                e1,
                e2,
                buckets,
                vocab,
                d,
            } => {
                let (s1, s2) = self.hash_scores(self.ptr(h), n, eff, e1, e2, *buckets, *d)?;
                let kernel = if vocab <= &(buckets * buckets) {
                    "hash_ce_forward_factored_kernel"
                } else {
                    "hash_ce_forward_kernel"
                };
                launch!(
                    self,
                    kernel,
                    rows_cfg(n, 256, 0),
                    self.ptr(lse),
                    loss,
                    s1,
                    s2,
                    self.ptr(targets),
                    *buckets as u32,
                    *vocab as u32
                );
            }
        }
        let map = self.scratch.borrow();
        let host = self
            .stream
            .clone_dtoh(&map["loss"].slice(0..n))
            .map_err(|e| self.err("read loss", e))?;
        drop(map);
        self.sync("read loss")?;
        Ok(host.iter().map(|&v| v as f64).sum::<f64>() / n.max(1) as f64)
    }
    fn cross_entropy_backward(
        &self,
        dh: &mut CudaSlice<f32>,
        grads: &mut CudaSlice<f32>,
        dloss: f64,
        h: &CudaSlice<f32>,
        targets: &CudaSlice<u32>,
        lse: &CudaSlice<f32>,
        eff: &CudaSlice<f32>,
        emb: &EmbRef,
    ) -> BackendResult<()> {
        let n = lse.len();
        let scale = (dloss / n.max(1) as f64) as f32;
        match emb {
            EmbRef::Standard { table, vocab, d } => {
                let o = self.ce_operands(h, eff, table, *vocab, *d)?;
                let ld = o.ld;
                // The forward's logits when it kept them (the bf16 mode) for this h, else
                // recomputed CE_ROWS rows at a time.
                let key = Some(self.ce_key(h, targets, lse, eff));
                let saved = (self.ce_saved.borrow_mut().as_mut())
                    .filter(|s| s.key == key)
                    .map(|s| {
                        s.key = None;
                        self.ptr(&s.logits)
                    });
                let (chunk, logits) = match saved {
                    Some(p) => (n.max(1), p),
                    None => self.ce_logits_buffer(&o, n, false)?,
                };
                let kernel = if o.bf16 {
                    "ce_backward_bf16_kernel"
                } else {
                    "ce_backward_kernel"
                };
                let elem = if o.bf16 { 2 } else { 4 };
                let de = self.scratch("table grad", ld * d)?;
                for r0 in (0..n).step_by(chunk) {
                    let rows = chunk.min(n - r0);
                    if saved.is_none() {
                        self.ce_logits(&o, logits, r0, rows, *d)?;
                    }
                    launch!(
                        self,
                        kernel,
                        rows_cfg(rows, 256, 0),
                        logits,
                        self.at(lse, r0),
                        self.ptr(targets) + 4 * r0 as u64,
                        *vocab as u32,
                        ld as u32,
                        scale
                    );
                    // The logits are now their gradient. The padded columns are zero (the zero
                    // rows' logits, or zeroed by the bf16 kernel) and add nothing to dh; dE's
                    // padded rows are not added to the gradient. (dE straight into the gradient,
                    // V = 50,257 rows, made the GEMM slower than this scratch and its add:
                    // 2.15 against 1.94 ms a step on an H200.)
                    let (dhp, hp) = (self.at(dh, r0 * d), o.h + elem * (r0 * d) as u64);
                    let de_beta = if r0 == 0 { 0.0 } else { 1.0 };
                    let types = (o.bf16, false);
                    let (op, mode) = ("cross-entropy dh", (false, false));
                    let (g, e) = ((logits, ld), (o.table, *d));
                    self.gemm_of(op, types, mode, (rows, *d, ld), g, e, (dhp, *d), 1.0)?;
                    let (op, mode) = ("cross-entropy dE", (true, false));
                    self.gemm_of(
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
                    self,
                    "add_assign_kernel",
                    elems(len),
                    self.at(grads, table.start),
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
                let b = *buckets;
                let factored = *vocab <= b * b;
                if !factored && 8 * b > 48 * 1024 {
                    return Err(self.err("hash cross-entropy", format!("{b} buckets need {} bytes of shared memory; at most 6144 buckets are supported", 8 * b)));
                }
                let (s1, s2) = self.hash_scores(self.ptr(h), n, eff, e1, e2, b, *d)?;
                let ds1 = self.scratch("ds1", n * b)?;
                let ds2 = self.scratch("ds2", n * b)?;
                let (kernel, shared) = if factored {
                    ("hash_ce_backward_factored_kernel", 0)
                } else {
                    ("hash_ce_backward_kernel", (8 * b) as u32)
                };
                launch!(
                    self,
                    kernel,
                    rows_cfg(n, 256, shared),
                    ds1,
                    ds2,
                    s1,
                    s2,
                    self.ptr(lse),
                    self.ptr(targets),
                    b as u32,
                    *vocab as u32,
                    scale
                );
                let hp = self.ptr(h);
                for (ds, e) in [(ds1, e1), (ds2, e2)] {
                    self.gemm(
                        "hash cross-entropy dh",
                        (false, false),
                        (n, *d, b),
                        (ds, b),
                        (self.at(eff, e.start), *d),
                        (self.ptr(dh), *d),
                        1.0,
                    )?;
                    self.gemm(
                        "hash cross-entropy dE",
                        (true, false),
                        (b, *d, n),
                        (ds, b),
                        (hp, *d),
                        (self.at(grads, e.start), *d),
                        1.0,
                    )?;
                }
            }
        }
        Ok(())
    }
    fn logits(
        &self,
        out: &mut CudaSlice<f32>,
        h: &CudaSlice<f32>,
        eff: &CudaSlice<f32>,
        emb: &EmbRef,
    ) -> BackendResult<()> {
        match emb {
            EmbRef::Standard { table, vocab, d } => {
                let rows = h.len() / d;
                self.gemm(
                    "logits",
                    (false, true),
                    (rows, *vocab, *d),
                    (self.ptr(h), *d),
                    (self.at(eff, table.start), *d),
                    (self.ptr(out), *vocab),
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
                let (s1, s2) = self.hash_scores(self.ptr(h), rows, eff, e1, e2, *buckets, *d)?;
                launch!(
                    self,
                    "hash_logits_kernel",
                    elems((rows * vocab) as u64),
                    self.ptr(out),
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

    fn sum_squares(&self, buf: &CudaSlice<f32>) -> BackendResult<f64> {
        let sums = self.sums(1)?;
        let n = buf.len() as u64;
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(256).clamp(1, 1024) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(self, "sum_squares_kernel", cfg, sums, self.ptr(buf), n);
        Ok(self.read_sums(1)?[0])
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
        let n = params.len();
        let mut mask = self.mask.borrow_mut();
        if mask
            .as_ref()
            .is_none_or(|(r, b)| r.as_slice() != decay || b.len() != n)
        {
            let mut host = vec![0u8; n];
            for r in decay {
                host[r.clone()].fill(1);
            }
            let buf = self
                .stream
                .clone_htod(&host)
                .map_err(|e| self.err("adamw mask", e))?;
            *mask = Some((decay.to_vec(), buf));
        }
        let mp = self.ptr(&mask.as_ref().expect("built above").1);
        let t = hp.step as i32;
        let (c1, c2) = (1.0 - hp.beta1.powi(t), 1.0 - hp.beta2.powi(t));
        launch!(
            self,
            "adamw_kernel",
            elems(n as u64),
            self.ptr(params),
            self.ptr(grads),
            self.ptr(m),
            self.ptr(v),
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
}
