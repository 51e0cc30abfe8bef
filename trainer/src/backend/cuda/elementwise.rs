//! Elementwise ops (elementwise.cu): sums of buffers, RoPE, SwiGLU.

use super::CudaBackend;
use super::launch::elems;
use crate::backend::BackendResult;
use cudarc::driver::CudaSlice;

/// The kernels of elementwise.cu.
pub(super) const KERNELS: &[&str] = &[
    "add_kernel",
    "add_assign_kernel",
    "rope_kernel",
    "swiglu_kernel",
    "swiglu_backward_kernel",
];

pub(super) fn add_assign(
    b: &CudaBackend,
    dst: &mut CudaSlice<f32>,
    src: &CudaSlice<f32>,
) -> BackendResult<()> {
    let n = dst.len() as u64;
    launch!(b, "add_assign_kernel", elems(n), b.ptr(dst), b.ptr(src), n);
    Ok(())
}

pub(super) fn add(
    b: &CudaBackend,
    out: &mut CudaSlice<f32>,
    x: &CudaSlice<f32>,
    y: &CudaSlice<f32>,
) -> BackendResult<()> {
    let n = out.len() as u64;
    launch!(b, "add_kernel", elems(n), b.ptr(out), b.ptr(x), b.ptr(y), n);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn rope_forward(
    b: &CudaBackend,
    out: &mut CudaSlice<f32>,
    inp: &CudaSlice<f32>,
    cos: &CudaSlice<f32>,
    sin: &CudaSlice<f32>,
    seq_len: usize,
    d: usize,
    head_dim: usize,
) -> BackendResult<()> {
    let io = (b.ptr(out), b.ptr(inp), inp.len());
    b.rope(io, (cos, sin), seq_len, d, head_dim, (false, false))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn rope_backward(
    b: &CudaBackend,
    dinp: &mut CudaSlice<f32>,
    dout: &CudaSlice<f32>,
    cos: &CudaSlice<f32>,
    sin: &CudaSlice<f32>,
    seq_len: usize,
    d: usize,
    head_dim: usize,
    accumulate: bool,
) -> BackendResult<()> {
    let io = (b.ptr(dinp), b.ptr(dout), dout.len());
    b.rope(io, (cos, sin), seq_len, d, head_dim, (true, accumulate))
}

pub(super) fn swiglu_forward(
    b: &CudaBackend,
    out: &mut CudaSlice<f32>,
    gate: &CudaSlice<f32>,
    up: &CudaSlice<f32>,
) -> BackendResult<()> {
    let n = out.len() as u64;
    launch!(
        b,
        "swiglu_kernel",
        elems(n),
        b.ptr(out),
        b.ptr(gate),
        b.ptr(up),
        n
    );
    Ok(())
}

pub(super) fn swiglu_backward(
    b: &CudaBackend,
    dgate: &mut CudaSlice<f32>,
    dup: &mut CudaSlice<f32>,
    dout: &CudaSlice<f32>,
    gate: &CudaSlice<f32>,
    up: &CudaSlice<f32>,
    accumulate: bool,
) -> BackendResult<()> {
    let n = dout.len() as u64;
    launch!(
        b,
        "swiglu_backward_kernel",
        elems(n),
        b.ptr(dgate),
        b.ptr(dup),
        b.ptr(dout),
        b.ptr(gate),
        b.ptr(up),
        n,
        accumulate as i32
    );
    Ok(())
}

impl CudaBackend {
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
}
