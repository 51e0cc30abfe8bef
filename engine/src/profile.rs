//! Where generation spends its work, by phase, for benchmarks (docs/BENCHMARKS.md): the embedder
//! sets a clock (the canister built with its `profile` feature sets the IC's instruction counter)
//! and the forward pass adds each phase's clock difference to a total. Without a clock a lap
//! costs one thread-local read and a branch.

use std::cell::{Cell, RefCell};

/// The phases of a forward pass and of sampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Embed,
    Norm,
    /// The ternary AlgebraLinears' input side: α, the FHT across parts, the activation codes.
    LinearIn,
    /// The ternary AlgebraLinears' (q, k, v, o, gate, up, down) integer block products.
    Linear,
    /// The ternary AlgebraLinears' output side: the integer FHT, β and the scale back to f32.
    LinearOut,
    Rope,
    /// Attention's scores: the query's codes and the integer products with the cached keys.
    AttnScores,
    /// Attention's softmax: scores to f32, max, exp, sum, the value weights' codes.
    AttnSoftmax,
    /// Attention's weighted sum of the cached values, scaled back to f32.
    AttnValues,
    /// The rest of attention (the loop over positions and heads).
    Attention,
    /// Head mixing (full-precision AlgebraLinear).
    Mix,
    SwiGlu,
    Residual,
    /// The tied output logits (with the hash gather).
    Head,
    Sample,
}

pub const PHASES: [Phase; 15] = [
    Phase::Embed,
    Phase::Norm,
    Phase::LinearIn,
    Phase::Linear,
    Phase::LinearOut,
    Phase::Rope,
    Phase::AttnScores,
    Phase::AttnSoftmax,
    Phase::AttnValues,
    Phase::Attention,
    Phase::Mix,
    Phase::SwiGlu,
    Phase::Residual,
    Phase::Head,
    Phase::Sample,
];

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Embed => "embed",
            Phase::Norm => "rmsnorm",
            Phase::LinearIn => "linears: input",
            Phase::Linear => "linears: products",
            Phase::LinearOut => "linears: output",
            Phase::Rope => "rope",
            Phase::AttnScores => "attn: scores",
            Phase::AttnSoftmax => "attn: softmax",
            Phase::AttnValues => "attn: values",
            Phase::Attention => "attn: rest",
            Phase::Mix => "head mixing",
            Phase::SwiGlu => "swiglu",
            Phase::Residual => "residual",
            Phase::Head => "head (logits)",
            Phase::Sample => "sampling",
        }
    }
}

thread_local! {
    static CLOCK: Cell<Option<fn() -> u64>> = const { Cell::new(None) };
    static TOTALS: RefCell<[u64; PHASES.len()]> = const { RefCell::new([0; PHASES.len()]) };
    /// The clock at the last lap of any timer, so that laps nested in a callee (a linear's
    /// phases) and the caller's next lap never count the same work twice.
    static LAST: Cell<u64> = const { Cell::new(0) };
}

/// Starts profiling with `clock` (monotonic) and zeroes the totals; `None` stops it.
pub fn set_clock(clock: Option<fn() -> u64>) {
    CLOCK.with(|c| c.set(clock));
    TOTALS.with(|t| *t.borrow_mut() = [0; PHASES.len()]);
}

/// The totals per phase since `set_clock`.
pub fn totals() -> Vec<(Phase, u64)> {
    TOTALS.with(|t| {
        PHASES
            .iter()
            .copied()
            .zip(t.borrow().iter().copied())
            .collect()
    })
}

/// A running lap timer: `lap(p)` charges the work since the last lap to phase p.
pub struct Laps {
    clock: Option<fn() -> u64>,
}

impl Laps {
    /// A timer whose first lap counts from now.
    #[inline]
    pub fn start() -> Self {
        let clock = CLOCK.with(|c| c.get());
        if let Some(f) = clock {
            LAST.with(|l| l.set(f()));
        }
        Laps { clock }
    }

    /// A timer that goes on from the last lap of any timer (for phases inside a callee).
    #[inline]
    pub fn resume() -> Self {
        Laps {
            clock: CLOCK.with(|c| c.get()),
        }
    }

    #[inline]
    pub fn lap(&mut self, phase: Phase) {
        if let Some(f) = self.clock {
            let now = f();
            let i = PHASES.iter().position(|p| *p == phase).unwrap_or(0);
            let last = LAST.with(|l| l.get());
            TOTALS.with(|t| t.borrow_mut()[i] += now.saturating_sub(last));
            LAST.with(|l| l.set(f()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    static TICKS: AtomicU64 = AtomicU64::new(0);
    fn tick() -> u64 {
        TICKS.fetch_add(10, Ordering::Relaxed)
    }

    #[test]
    fn laps_charge_their_phase_and_nothing_without_a_clock() {
        set_clock(None);
        let mut l = Laps::start();
        l.lap(Phase::Head);
        assert!(totals().iter().all(|(_, v)| *v == 0));
        set_clock(Some(tick));
        let mut l = Laps::start();
        l.lap(Phase::Head);
        l.lap(Phase::Linear);
        l.lap(Phase::Linear);
        let t = totals();
        let get = |p: Phase| t.iter().find(|(q, _)| *q == p).map(|(_, v)| *v);
        assert_eq!(get(Phase::Head), Some(10));
        assert_eq!(get(Phase::Linear), Some(20));
        assert_eq!(get(Phase::Attention), Some(0));
        set_clock(None);
    }
}
