//! The query instruction budget: `generate` measures itself and stops before the IC would.

/// Instructions one query may execute on the IC: 5 billion ("Resource limits", Internet Computer
/// developer docs, internetcomputer.org/docs/building-apps/canister-management/resource-limits:
/// "Instruction limit, instructions per call: query 5 billion").
pub const QUERY_INSTRUCTION_LIMIT: u64 = 5_000_000_000;

/// Kept back for decoding the text and encoding the reply after the last step.
pub const REPLY_RESERVE: u64 = 60_000_000;

/// Decides before each unit of work (a prefill chunk, a decode step) whether it still fits.
/// The cost of a position is learned as the call goes (the most expensive one so far, since later
/// positions attend over more keys), starting from a conservative estimate from the model's size.
pub struct Budget {
    limit: u64,
    per_position: u64,
    last_counter: u64,
    last_positions: usize,
}

impl Budget {
    /// `prior_per_position`: the instructions one position is assumed to cost before any is
    /// measured.
    pub fn new(limit: u64, prior_per_position: u64, counter_now: u64) -> Self {
        Budget {
            limit,
            per_position: prior_per_position,
            last_counter: counter_now,
            last_positions: 0,
        }
    }

    /// Called with the instruction counter now and the positions the next unit will run.
    pub fn allows(&mut self, counter_now: u64, positions: usize) -> bool {
        if self.last_positions > 0 {
            let spent = counter_now.saturating_sub(self.last_counter);
            let per = spent / self.last_positions as u64;
            // A margin of 1/8 for the growth of attention with the position.
            self.per_position = self.per_position.max(per + per / 8);
        }
        self.last_counter = counter_now;
        self.last_positions = positions;
        let next = self.per_position.saturating_mul(positions as u64);
        counter_now
            .saturating_add(next)
            .saturating_add(REPLY_RESERVE)
            <= self.limit
    }
}

/// What the positions of a model cost: position `p` of a prefill `a + b·p` instructions
/// (attention grows with the position), a decode step at position `p` `a + b·p + step_extra`
/// (its own logits and sampling). Measured when the model loads (`calibrate` in lib.rs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostModel {
    pub a: f64,
    pub b: f64,
    pub step_extra: f64,
}

/// Estimates are raised by this much: what a query measures varies a little with the data.
const COST_MARGIN: f64 = 1.05;

impl CostModel {
    /// From the measured prefill chunks (`(positions, instructions)`, in order from position 0)
    /// and one decode step at position `at`.
    pub fn fit(chunks: &[(usize, u64)], decode: u64, at: usize) -> Self {
        Self::fit_from(0, chunks, decode, at)
    }

    /// [`CostModel::fit`] for chunks that start at position `origin`.
    pub fn fit_from(origin: usize, chunks: &[(usize, u64)], decode: u64, at: usize) -> Self {
        let mut start = origin;
        let placed: Vec<(usize, usize, u64)> = chunks
            .iter()
            .map(|&(n, c)| {
                let chunk = (start, n, c);
                start += n;
                chunk
            })
            .collect();
        Self::fit_placed(&placed, decode, at)
    }

    /// From measured prefill chunks anywhere in the context (`(first position, positions,
    /// instructions)`: two far apart measure the growth with the position over the range a prompt
    /// spans, where attention's cost grows in steps of its kernels' blocks) and one decode step at
    /// position `at`.
    pub fn fit_placed(chunks: &[(usize, usize, u64)], decode: u64, at: usize) -> Self {
        let sum = |from: usize, n: usize| (from..from + n).map(|p| p as f64).sum::<f64>();
        let (a, b) = match chunks {
            [(_, n1, c1), (_, n2, c2), ..] if *n1 > 0 && *n2 > 0 => {
                let (p1, p2) = (chunks[0].0, chunks[1].0);
                let (s1, s2) = (sum(p1, *n1), sum(p2, *n2));
                let (n1, n2, c1, c2) = (*n1 as f64, *n2 as f64, *c1 as f64, *c2 as f64);
                let det = s2 * n1 - s1 * n2;
                let b = if det > 0.0 {
                    ((c2 * n1 - c1 * n2) / det).max(0.0)
                } else {
                    0.0
                };
                (((c1 - b * s1) / n1).max(c1 / n1 / 2.0), b)
            }
            [(_, n, c), ..] if *n > 0 => (*c as f64 / *n as f64, 0.0),
            _ => (1e6, 0.0),
        };
        let step_extra = (decode as f64 - (a + b * at as f64)).max(0.0);
        CostModel {
            a: a * COST_MARGIN,
            b: b * COST_MARGIN,
            step_extra: step_extra * COST_MARGIN,
        }
    }

    /// The per-position cost the budget assumes before it has measured one.
    pub fn prior(&self) -> u64 {
        self.a as u64
    }

    fn prefill(&self, from: usize, n: usize) -> f64 {
        let (from, n) = (from as f64, n as f64);
        n * self.a + self.b * (n * from + n * (n - 1.0) / 2.0)
    }

    fn step(&self, at: usize) -> f64 {
        self.a + self.b * at as f64 + self.step_extra
    }

    /// Whether a prompt of `tokens` tokens gets its first new token in a query whose counter is
    /// at `counter` now: the prefill and the first decode step, under the same [`Budget`] that
    /// `generate` runs.
    fn first_token_fits(&self, tokens: usize, counter: u64, limit: u64) -> bool {
        let mut budget = Budget::new(limit, self.prior(), counter);
        let mut at = counter as f64;
        let positions = tokens + 1;
        let mut pos = 0;
        while pos < positions {
            let n = (positions - pos).min(crate::PREFILL_CHUNK);
            if !budget.allows(at as u64, n) {
                return false;
            }
            at += self.prefill(pos, n);
            pos += n;
        }
        budget.allows(at as u64, 1)
            && at + self.step(positions) + REPLY_RESERVE as f64 <= limit as f64
    }

    /// The longest prompt (in tokens, at most `max_context`) that gets a first new token.
    pub fn max_prompt_tokens(&self, counter: u64, limit: u64, max_context: usize) -> usize {
        if !self.first_token_fits(0, counter, limit) {
            return 0;
        }
        let (mut lo, mut hi) = (0, max_context);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if self.first_token_fits(mid, counter, limit) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        lo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cost_model_fits_linear_costs_and_bounds_the_prompt() {
        // Position p costs 1M + 10k·p; a decode step 3M more.
        let cost = |from: usize, n: usize| -> u64 {
            (from..from + n)
                .map(|p| 1_000_000 + 10_000 * p as u64)
                .sum()
        };
        let m = CostModel::fit(
            &[(32, cost(0, 32)), (32, cost(32, 32))],
            cost(64, 1) + 3_000_000,
            64,
        );
        assert!((m.a / COST_MARGIN - 1e6).abs() < 1.0, "{m:?}");
        assert!((m.b / COST_MARGIN - 1e4).abs() < 0.01, "{m:?}");
        assert!((m.step_extra / COST_MARGIN - 3e6).abs() < 1.0, "{m:?}");
        // What `calibrate` measures: chunks of 8 from position 1, a step at 17.
        let from1 = CostModel::fit_from(
            1,
            &[(8, cost(1, 8)), (8, cost(9, 8))],
            cost(17, 1) + 3_000_000,
            17,
        );
        assert!(
            (from1.a - m.a).abs() < 1.0 && (from1.b - m.b).abs() < 0.01,
            "{from1:?}"
        );
        assert!((from1.step_extra - m.step_extra).abs() < 1.0, "{from1:?}");
        let limit = 5_000_000_000;
        let max = m.max_prompt_tokens(0, limit, 65_535);
        // What the prefill of max + 1 positions and one step really cost fits; one more does not.
        let real = |t: usize| cost(0, t + 1) + cost(t + 1, 1) + 3_000_000 + REPLY_RESERVE;
        assert!(real(max) <= limit, "{max}");
        assert!(real(max + 40) > limit, "{max}: too cautious");
        assert_eq!(m.max_prompt_tokens(0, limit, 100), 100);
        assert_eq!(m.max_prompt_tokens(limit, limit, 100), 0);
    }

    #[test]
    fn learns_the_step_cost_and_stops_in_time() {
        let mut b = Budget::new(1_000_000_000, 1_000_000, 0);
        let mut counter = 0u64;
        let mut steps = 0;
        // Each step really costs 10M instructions.
        while b.allows(counter, 1) {
            counter += 10_000_000;
            steps += 1;
            assert!(counter <= 1_000_000_000, "overran the limit");
        }
        assert!(steps > 80 && steps < 100, "{steps}");
    }
}
