//! The launch plumbing every op family shares: the `launch!` macro and launch shapes, device
//! addresses of buffers, scratch and f64 accumulators grown on demand, cuBLAS GEMMs (f32 or bf16
//! operands), bf16 casts of operands, and the [`Backend`](super::Backend) memory operations
//! (allocation, copies, events).

use super::{CudaBackend, Matmul};
use crate::backend::{BackendError, BackendResult, Mark};
use cudarc::cublas::{result as blas, sys as blas_sys};
use cudarc::driver::{CudaFunction, CudaSlice, DevicePtr, LaunchConfig};

/// The kernels of common.cu.
pub(super) const KERNELS: &[&str] = &["to_bf16_kernel", "to_bf16_x4_kernel"];

/// Launches kernel `$name` on the backend's stream; arguments are values (pointers as u64).
macro_rules! launch {
    ($s:expr, $name:expr, $cfg:expr $(, $arg:expr)* $(,)?) => {{
        let f = $s.func($name)?;
        let mut b = $s.stream.launch_builder(f);
        $(
            let a = $arg;
            cudarc::driver::PushKernelArg::arg(&mut b, &a);
        )*
        // SAFETY: the argument list matches the kernel's signature in its family's .cu file
        // (checked by the GPU tests against the CPU backend), and every pointer is into a live
        // buffer of the length the kernel indexes.
        unsafe { b.launch($cfg) }.map_err(|e| $s.err($name, e))?;
    }};
}

pub(super) fn elems(n: u64) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 1 << 20) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

pub(super) fn rows_cfg(rows: usize, threads: u32, shared: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: shared,
    }
}

/// `gemm_of`'s types: bf16 operands into an f32 C.
pub(super) const BF16: (bool, bool) = (true, false);

impl CudaBackend {
    pub(super) fn err(&self, op: &'static str, e: impl std::fmt::Display) -> BackendError {
        BackendError {
            backend: self.name.clone(),
            op,
            msg: e.to_string(),
        }
    }

    pub(super) fn func(&self, name: &'static str) -> BackendResult<&CudaFunction> {
        self.funcs
            .get(name)
            .ok_or_else(|| self.err("launch", format!("kernel {name} was not loaded")))
    }

    pub(super) fn ptr<T>(&self, buf: &CudaSlice<T>) -> u64 {
        buf.device_ptr(&self.stream).0
    }

    /// The address of element `offset` of an f32 buffer.
    pub(super) fn at(&self, buf: &CudaSlice<f32>, offset: usize) -> u64 {
        self.ptr(buf) + 4 * offset as u64
    }

    /// A scratch buffer of at least `len` floats (contents undefined).
    pub(super) fn scratch(&self, key: &'static str, len: usize) -> BackendResult<u64> {
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

    /// Zeroed f64 accumulators, `n` of them.
    pub(super) fn sums(&self, n: usize) -> BackendResult<u64> {
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

    pub(super) fn read_sums(&self, n: usize) -> BackendResult<Vec<f64>> {
        let s = self.sums.borrow();
        let buf = s.as_ref().expect("sums() came first");
        let v = self
            .stream
            .clone_dtoh(&buf.slice(0..n))
            .map_err(|e| self.err("read sums", e))?;
        self.sync("read sums")?;
        Ok(v)
    }

    pub(super) fn sync(&self, op: &'static str) -> BackendResult<()> {
        self.stream.synchronize().map_err(|e| self.err(op, e))
    }

    /// Row-major C[m, n] = op(A)[m, k] · op(B)[k, n] + beta·C, where op transposes when `ta`/`tb`
    /// (A stored [k, m], B stored [n, k]); ld* are the stored row strides. f32 operands, in the
    /// matmul mode's compute type.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm(
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
    pub(super) fn gemm_of(
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
    pub(super) fn to_bf16(
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
    pub(super) fn cast_bf16(
        &self,
        dst: u64,
        src: u64,
        len: usize,
        padded: usize,
    ) -> BackendResult<()> {
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
}

pub(super) fn mark(b: &CudaBackend) -> BackendResult<Option<Mark>> {
    let event = b
        .stream
        .record_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))
        .map_err(|e| b.err("record event", e))?;
    Ok(Some(Mark(Box::new(event))))
}

pub(super) fn elapsed(b: &CudaBackend, from: &Mark, to: &Mark) -> BackendResult<f64> {
    use cudarc::driver::CudaEvent;
    match (
        from.0.downcast_ref::<CudaEvent>(),
        to.0.downcast_ref::<CudaEvent>(),
    ) {
        (Some(from), Some(to)) => from
            .elapsed_ms(to)
            .map(|ms| f64::from(ms) / 1e3)
            .map_err(|e| b.err("elapsed", e)),
        _ => Err(b.err("elapsed", "a mark of another backend")),
    }
}

pub(super) fn zeros(b: &CudaBackend, len: usize) -> BackendResult<CudaSlice<f32>> {
    b.stream
        .alloc_zeros::<f32>(len.max(1))
        .map_err(|e| b.err("alloc", format!("{len} floats: {e}")))
}

pub(super) fn upload(b: &CudaBackend, host: &[f32]) -> BackendResult<CudaSlice<f32>> {
    if host.is_empty() {
        return zeros(b, 0);
    }
    b.stream.clone_htod(host).map_err(|e| b.err("upload", e))
}

pub(super) fn download(b: &CudaBackend, buf: &CudaSlice<f32>) -> BackendResult<Vec<f32>> {
    let v = b.stream.clone_dtoh(buf).map_err(|e| b.err("download", e))?;
    b.sync("download")?;
    Ok(v)
}

pub(super) fn upload_tokens(b: &CudaBackend, tokens: &[u32]) -> BackendResult<CudaSlice<u32>> {
    if tokens.is_empty() {
        return b
            .stream
            .alloc_zeros::<u32>(1)
            .map_err(|e| b.err("upload tokens", e));
    }
    b.stream
        .clone_htod(tokens)
        .map_err(|e| b.err("upload tokens", e))
}

pub(super) fn fill_zero(b: &CudaBackend, buf: &mut CudaSlice<f32>) -> BackendResult<()> {
    b.stream
        .memset_zeros(buf)
        .map_err(|e| b.err("fill zero", e))
}
