//! Ternary absmean quantization (SPEC §2.1) with the straight-through estimator.

use super::{Real, cast};

/// γ = mean|W|, accumulated in f64 and rounded to `T` (as `packer pack` computes it).
pub fn absmean<T: Real>(weight: &[T]) -> T {
    let sum: f64 = weight.iter().map(|v| v.abs().to_f64().unwrap_or(0.0)).sum();
    cast(sum / weight.len().max(1) as f64)
}

/// The effective weight of the forward: `weff = γ·Wq` with Wq = clamp(round(W / (γ + 1e-8)),
/// −1, 1) (round half away from zero), or `weff = W` when `quantize` is false (the identity
/// quantizer of the gradient checks). Returns γ (1 when not quantizing).
pub fn ternary_forward<T: Real>(weff: &mut [T], weight: &[T], quantize: bool) -> T {
    debug_assert_eq!(weff.len(), weight.len());
    if !quantize {
        weff.copy_from_slice(weight);
        return T::one();
    }
    let gamma = absmean(weight);
    let denom = gamma + cast(1e-8);
    let one = T::one();
    for (o, w) in weff.iter_mut().zip(weight) {
        *o = gamma * (*w / denom).round().max(-one).min(one);
    }
    gamma
}

/// Wq ∈ {−1, 0, 1} of a quantized forward's effective weight weff = γ·Wq (γ > 0): its signs.
pub fn ternary_values<T: Real>(weff: &[T]) -> Vec<i8> {
    weff.iter()
        .map(|v| {
            if *v > T::zero() {
                1
            } else if *v < T::zero() {
                -1
            } else {
                0
            }
        })
        .collect()
}

/// STE: ∂L/∂W = ∂L/∂(γWq) elementwise, γ a constant: `dweight += dweff`.
pub fn ternary_backward<T: Real>(dweight: &mut [T], dweff: &[T]) {
    debug_assert_eq!(dweight.len(), dweff.len());
    for (d, g) in dweight.iter_mut().zip(dweff) {
        *d += *g;
    }
}
