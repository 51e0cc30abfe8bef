//! Training and evaluation windows from a memory-mapped token file.
//!
//! A training micro-batch is a pure function of (seed, step, micro-batch index): no sampler state
//! to save, and a resumed run draws exactly the windows the unbroken run would have.

use crate::TokenFile;
use walsh_spec::sampler::SplitMix64;

/// `batch` windows of `seq + 1` tokens: inputs are the first `seq`, targets the last `seq`.
pub struct Batch {
    pub inputs: Vec<u32>,
    pub targets: Vec<u32>,
}

fn push_window(b: &mut Batch, data: &TokenFile, start: usize, seq: usize) {
    let w = data.slice(start, seq + 1);
    b.inputs.extend_from_slice(&w[..seq]);
    b.targets.extend_from_slice(&w[1..]);
}

/// Random windows for optimizer step `step`, micro-batch `micro`. `data` holds at least `seq + 1`
/// tokens (checked when the run starts).
pub fn train_batch(
    data: &TokenFile,
    seed: u64,
    step: u64,
    micro: usize,
    batch: usize,
    seq: usize,
) -> Batch {
    let mut rng = SplitMix64::new(
        seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (micro as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
    );
    let starts = (data.len() - seq) as u64; // windows start in [0, len − seq − 1]
    let mut b = Batch {
        inputs: Vec::with_capacity(batch * seq),
        targets: Vec::with_capacity(batch * seq),
    };
    for _ in 0..batch {
        let start = (rng.next_u64() % starts) as usize;
        push_window(&mut b, data, start, seq);
    }
    b
}

/// The evaluation windows: non-overlapping, from the start of `data`, `batch` per batch (the last
/// batch takes what is left); `max_batches` of them (all when `None`). The same windows every
/// time, so evaluations along a run compare.
pub fn eval_batches(
    data: &TokenFile,
    batch: usize,
    seq: usize,
    max_batches: Option<usize>,
) -> impl Iterator<Item = Batch> + '_ {
    let windows = data.len().saturating_sub(1) / seq;
    let batches = windows.div_ceil(batch.max(1));
    let n = max_batches.map_or(batches, |m| m.min(batches));
    (0..n).map(move |i| {
        let first = i * batch;
        let count = batch.min(windows - first);
        let mut b = Batch {
            inputs: Vec::with_capacity(count * seq),
            targets: Vec::with_capacity(count * seq),
        };
        for j in 0..count {
            push_window(&mut b, data, (first + j) * seq, seq);
        }
        b
    })
}
