//! Causal attention of one query position over the cached positions of one head: SPEC §2.3 with
//! the integer codes of §2.6 (keys and values Q(·, 2047) in the cache, the query Q(q, L_q), the
//! value weights Q(w, 32767)), so that the scores and the weighted sum are exact integer dot
//! products (`int_math::panel_matvec`).

use crate::int_math::{PAIR_BLOCK, block_products, panel_matvec};
use crate::kv_cache::KvCache;
use crate::math::{block_sums, dequant_max, scratch, softmax_weights};
use crate::profile::{Laps, Phase};
use crate::quant::{ACT_LIMIT, KV_LIMIT, act_limit, encode, quantize, scales};

/// Buffers of [`attend`], kept between calls.
#[derive(Debug, Default)]
pub struct AttentionScratch {
    q: Vec<i16>,
    dots: Vec<i32>,
    scores: Vec<f32>,
    w: Vec<i16>,
    blk: Vec<i32>,
}

impl AttentionScratch {
    /// Sizes the buffers for a whole context once, so that decode steps allocate nothing.
    pub fn reserve(&mut self, cache: &KvCache) {
        let cap = cache.capacity().div_ceil(PAIR_BLOCK) * PAIR_BLOCK;
        self.dots.reserve(cap.saturating_sub(self.dots.len()));
        self.scores.reserve(cap.saturating_sub(self.scores.len()));
        self.w.reserve(cap.saturating_sub(self.w.len()));
    }
}

/// out (head size) = head h of layer l attending from a query q (head size, after RoPE) to
/// positions 0..seen of the cache.
pub fn attend(
    cache: &KvCache,
    l: usize,
    h: usize,
    q: &[f32],
    seen: usize,
    out: &mut [f32],
    s: &mut AttentionScratch,
) {
    let mut laps = Laps::resume();
    let hd = q.len();
    let hdp = cache.head_dim_padded();
    let (kc, ks, vc, vs) = cache.head(l, h);

    // Scores: score_p = (f32(c_q · c_k,p) · s_k,p) · (s_q · hd^−1/2).
    // The pads past hd stay zero: only the first hd codes are ever written. (No clear and
    // refill per call: a `memory.fill` costs 100 instructions plus one per byte on the IC.)
    if s.q.len() != hdp {
        s.q.clear();
        s.q.resize(hdp, 0);
    }
    let sq = quantize(q, act_limit(hd, KV_LIMIT), &mut s.q);
    let groups = seen.div_ceil(4);
    s.dots.resize(4 * groups, 0);
    panel_matvec(kc, cache.positions_padded(), hdp, &s.q, &mut s.dots);
    laps.lap(Phase::AttnScores);
    let c = sq * (1.0 / (hd as f32).sqrt());
    // Scores, weights and their codes over whole vectors of four positions (4·groups ≤ the
    // cache's padded positions, so ks and vs reach that far): the pads past `seen` are computed
    // but never counted, and weigh 0 (no scalar tail loops a head).
    s.scores.resize(4 * groups, 0.0);
    let m = dequant_max(&s.dots, ks, c, &mut s.scores, seen);

    // Softmax's numerators e(score − max) and their sum, then the value weights
    // w_p = e_p · s_v,p as codes Q(w, 32767); positions past `seen` in the last block weigh 0.
    let (sum, wmax) = softmax_weights(&mut s.scores, m, vs, seen);
    let padded = seen.div_ceil(PAIR_BLOCK) * PAIR_BLOCK;
    s.w.resize(padded, 0);
    // Zero the last block (then the codes overwrite its first positions): four vector stores
    // rather than a `memory.fill` of the whole buffer.
    s.w[padded - PAIR_BLOCK..padded].copy_from_slice(&[0; PAIR_BLOCK]);
    let sw = match scales(wmax, ACT_LIMIT) {
        Some((inv, scale)) => {
            encode(&s.scores, inv, ACT_LIMIT, &mut s.w);
            scale
        }
        None => 0.0,
    };

    laps.lap(Phase::AttnSoftmax);
    // o_j = (Σ_blocks f32(Σ_p c_w,p · c_v,p,j) · s_w) · (1 / S): a block of 32 positions is one
    // panel of the values' matrix, its sums exact in i32, added in f32 in increasing order.
    // The blocks' panels lie one after another, a block-diagonal matrix against the blocks of
    // w: all of them in one call; then `block_sums` adds the blocks' f32 sums and scales them,
    // four values a step, the accumulator in registers.
    let blocks = padded / PAIR_BLOCK;
    let blk = scratch(&mut s.blk, blocks * hdp);
    block_products(&vc[..padded * hdp], blocks, hdp, PAIR_BLOCK, &s.w, blk);
    block_sums(blk, hdp, sw, 1.0 / sum, out);
    laps.lap(Phase::AttnValues);
}
