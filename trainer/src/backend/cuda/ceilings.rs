//! The GPU's two ceilings, which docs/BENCHMARKS.md's floors divide by: memory bandwidth from a
//! large device-to-device copy (bytes read plus bytes written) and the tensor-core rate from a
//! large cuBLAS product, with bf16 operands and with f32 operands in the backend's GEMM mode. Each
//! is the median of several runs timed by CUDA events after a warmup, on random data (never zeros:
//! they can run faster than real data), and checked: the copy element for element at sampled
//! places, the products against f64 dot products of the same (rounded) operands.

use super::{CudaBackend, Matmul};
use crate::backend::{Backend, BackendResult};
use cudarc::driver::CudaSlice;
use std::fmt;
use walsh_spec::sampler::SplitMix64;

/// Floats in each of the copy's two buffers: 1 GiB, far past the 60 MB of an H200's L2.
const COPY_FLOATS: usize = 1 << 28;
/// The products' M = N = K.
const GEMM_N: usize = 8192;
const WARMUP: usize = 2;
const RUNS: usize = 10;
/// Sampled elements checked of each result.
const CHECKS: usize = 16;

/// What [`CudaBackend::ceilings`] measured.
#[derive(Clone, Debug)]
pub struct Ceilings {
    pub device: String,
    /// Bytes read plus bytes written per second by a `COPY_FLOATS`-float copy.
    pub copy_bytes_per_s: f64,
    /// Multiply-adds × 2 per second of an `GEMM_N`³ product of bf16 operands, f32 accumulation.
    pub bf16_flops: f64,
    /// The same with f32 operands in `mode` (TF32 tensor cores, or IEEE f32 in the f32 mode).
    pub f32_operand_flops: f64,
    pub mode: Matmul,
}

impl fmt::Display for Ceilings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ceilings of {} (median of {RUNS} runs each):",
            self.device
        )?;
        writeln!(
            f,
            "memory         {:8.0} GB/s  (device-to-device copy of {} MiB; bytes read + written)",
            self.copy_bytes_per_s / 1e9,
            (COPY_FLOATS * 4) >> 20
        )?;
        writeln!(
            f,
            "bf16 GEMM      {:8.1} TFLOP/s ({GEMM_N}³, bf16 operands, f32 accumulation and output)",
            self.bf16_flops / 1e12
        )?;
        writeln!(
            f,
            "f32-operand GEMM {:6.1} TFLOP/s ({GEMM_N}³, the {:?} mode's compute type)",
            self.f32_operand_flops / 1e12,
            self.mode
        )
    }
}

impl CudaBackend {
    /// Measures the GPU's memory and tensor-core ceilings (several seconds, ~2.5 GiB of memory).
    pub fn ceilings(&self) -> BackendResult<Ceilings> {
        let mut rng = SplitMix64::new(0x5eed_ce11);
        let mut random =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.next_f64() as f32 * 2.0 - 1.0).collect() };

        let src_host = random(COPY_FLOATS);
        let src = self.upload(&src_host)?;
        let mut dst = self.zeros(COPY_FLOATS)?;
        let copy = self.median(|| {
            self.stream
                .memcpy_dtod(&src, &mut dst)
                .map_err(|e| self.err("ceilings copy", e))
        })?;
        let got = self.download(&dst)?;
        for i in samples(COPY_FLOATS) {
            if got[i].to_bits() != src_host[i].to_bits() {
                return Err(self.err("ceilings copy", format!("element {i} was not copied")));
            }
        }
        drop((src, dst, got, src_host));

        let n = GEMM_N;
        let (a_host, b_host) = (random(n * n), random(n * n));
        let (a, b) = (self.upload(&a_host)?, self.upload(&b_host)?);
        let c = self.zeros(n * n)?;
        let (a16, b16) = (
            self.scratch("ceilings a", n * n / 2)?,
            self.scratch("ceilings b", n * n / 2)?,
        );
        self.cast_bf16(a16, self.ptr(&a), n * n, n * n)?;
        self.cast_bf16(b16, self.ptr(&b), n * n, n * n)?;
        let product = |bf16: bool, a: u64, b: u64| {
            self.gemm_of(
                "ceilings GEMM",
                (bf16, false),
                (false, false),
                (n, n, n),
                (a, n),
                (b, n),
                (self.ptr(&c), n),
                0.0,
            )
        };
        let bf16 = self.median(|| product(true, a16, b16))?;
        self.check_product(&c, &a_host, &b_host, bf16_round, 1e-3)?;
        let f32_operands = self.median(|| product(false, self.ptr(&a), self.ptr(&b)))?;
        let (round, tol): (fn(f32) -> f32, f64) = match self.matmul {
            Matmul::F32 => (|x| x, 1e-4),
            Matmul::Tf32 => (tf32_round, 5e-3),
            // FAST_16BF on f32 operands: cuBLAS rounds them to bf16 (or better).
            Matmul::Bf16 => (bf16_round, 1e-2),
        };
        self.check_product(&c, &a_host, &b_host, round, tol)?;
        self.scratch
            .borrow_mut()
            .retain(|k, _| !k.starts_with("ceilings"));

        let flops = 2.0 * (n as f64).powi(3);
        Ok(Ceilings {
            device: self.describe(),
            copy_bytes_per_s: 2.0 * 4.0 * COPY_FLOATS as f64 / copy,
            bf16_flops: flops / bf16,
            f32_operand_flops: flops / f32_operands,
            mode: self.matmul,
        })
    }

    /// The median seconds of `RUNS` runs of `f` (after `WARMUP`), each between two CUDA events.
    fn median(&self, mut f: impl FnMut() -> BackendResult<()>) -> BackendResult<f64> {
        for _ in 0..WARMUP {
            f()?;
        }
        let mut times = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let start = self.mark()?;
            f()?;
            let end = self.mark()?;
            self.sync("ceilings")?;
            if let (Some(s), Some(e)) = (start, end) {
                times.push(self.elapsed(&s, &e)?);
            }
        }
        times.sort_by(f64::total_cmp);
        Ok(times[RUNS / 2])
    }

    /// Sampled elements of C = A·B against f64 dot products of the operands as `round` leaves
    /// them, relative to the row's scale (√n for these uniform ±1 entries).
    fn check_product(
        &self,
        c: &CudaSlice<f32>,
        a: &[f32],
        b: &[f32],
        round: fn(f32) -> f32,
        tol: f64,
    ) -> BackendResult<()> {
        let n = GEMM_N;
        let got = self.download(c)?;
        for (s, at) in samples(n * n).enumerate() {
            let (i, j) = (at / n, at % n);
            let want: f64 = (0..n)
                .map(|k| f64::from(round(a[i * n + k])) * f64::from(round(b[k * n + j])))
                .sum();
            let err = (f64::from(got[at]) - want).abs() / (n as f64).sqrt();
            if !err.is_finite() || err > tol {
                let msg = format!(
                    "sample {s}: C[{i}, {j}] = {} against {want} (error {err:.1e})",
                    got[at]
                );
                return Err(self.err("ceilings GEMM", msg));
            }
        }
        Ok(())
    }
}

/// `CHECKS` indices spread over `len` (a fixed stride, so that they touch every part).
fn samples(len: usize) -> impl Iterator<Item = usize> {
    (0..CHECKS).map(move |s| (s * (len / CHECKS) + s * 7919) % len)
}

fn bf16_round(x: f32) -> f32 {
    half::bf16::from_f32(x).to_f32()
}

/// TF32 keeps 10 mantissa bits (cuBLAS rounds; within the tolerance either way).
fn tf32_round(x: f32) -> f32 {
    f32::from_bits((x.to_bits() + 0x1000) & !0x1fff)
}
