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

#[cfg(test)]
mod tests {
    use super::*;

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
