//! Next-token choice (SPEC §5.2): greedy, or temperature / top-k / top-p with SplitMix64, so a
//! seed gives the same tokens natively and in wasm.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// SplitMix64: tiny, fast and defined by a few lines of integer arithmetic on every target.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A standard normal draw (Box–Muller), for initialisation.
    pub fn next_normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(2.0 * std::f64::consts::PI * u2)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = no top-k cut.
    pub top_k: usize,
    /// 1 = no nucleus cut.
    pub top_p: f32,
    pub seed: u64,
    /// llama.cpp's repeat_penalty (SPEC §5.2): the logits of the tokens among the last
    /// `repeat_last_n` of the context are divided by it when positive and multiplied by it
    /// otherwise. 1 = off.
    pub repeat_penalty: f32,
    /// How many of the context's last tokens the penalty looks at; 0 = off.
    pub repeat_last_n: usize,
}

/// [`SamplingParams::repeat_last_n`]'s default, llama.cpp's.
pub const DEFAULT_REPEAT_LAST_N: usize = 64;

/// The repetition penalty of the default decoding (SPEC §5.2): the canister's `generate` and
/// `packer run` without `--repeat-penalty` use it over the last [`DEFAULT_REPEAT_LAST_N`] tokens,
/// so that both write the same text for the same prompt. Measured on the default model, it
/// removes every repeated sentence from its greedy text (docs/MODELS.md).
pub const DEFAULT_DECODING_REPEAT_PENALTY: f32 = 1.1;

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
            repeat_penalty: 1.0,
            repeat_last_n: DEFAULT_REPEAT_LAST_N,
        }
    }
}

impl SamplingParams {
    /// Checks the ranges; the message names the parameter.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(format!(
                "temperature {} must be a finite number >= 0",
                self.temperature
            ));
        }
        if !(self.top_p.is_finite() && self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top_p {} must be in (0, 1]", self.top_p));
        }
        if !(self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0) {
            return Err(format!(
                "repeat_penalty {} must be a finite number > 0",
                self.repeat_penalty
            ));
        }
        Ok(())
    }
}

/// Index of the largest value, lowest index on ties.
pub fn argmax(logits: &[f32]) -> usize {
    #[cfg(target_arch = "wasm32")]
    {
        argmax_simd(logits)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        argmax_two_pass(logits)
    }
}

/// The definition of [`argmax`]: the first index whose value no later value exceeds (`>`), so
/// the lowest id among the maxima; NaNs are never chosen unless logits[0] is one.
pub fn argmax_sequential(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in logits.iter().enumerate() {
        if *v > logits[best] {
            best = i;
        }
    }
    best
}

/// [`argmax_sequential`] in two passes, the shape of the wasm32 SIMD version: the largest value
/// (NaNs never taken), then the first index holding it — the lowest id among the maxima, as the
/// definition's strict `>` keeps.
pub fn argmax_two_pass(logits: &[f32]) -> usize {
    if logits.first().is_none_or(|v| v.is_nan()) {
        return 0;
    }
    let max = logits
        .iter()
        .fold(logits[0], |m, v| if *v > m { *v } else { m });
    logits.iter().position(|v| *v == max).unwrap_or(0)
}

/// [`argmax_two_pass`] with the first pass in f32x4 lanes (pmax never takes a NaN over what it
/// holds) and the second comparing four at a time: about 2.5 instructions a logit on the IC,
/// against 5 for one pass tracking indices.
#[cfg(target_arch = "wasm32")]
fn argmax_simd(logits: &[f32]) -> usize {
    use core::arch::wasm32::*;
    if logits.first().is_none_or(|v| v.is_nan()) {
        return 0;
    }
    let (chunks, rest) = logits.as_chunks::<4>();
    let mut m = f32x4_splat(f32::NEG_INFINITY);
    for chunk in chunks {
        // SAFETY: a chunk is 16 bytes of f32. pmax(m, v) = if m < v { v } else { m }.
        m = f32x4_pmax(m, unsafe { v128_load(chunk.as_ptr() as *const v128) });
    }
    let mut max = logits[0];
    for v in [
        f32x4_extract_lane::<0>(m),
        f32x4_extract_lane::<1>(m),
        f32x4_extract_lane::<2>(m),
        f32x4_extract_lane::<3>(m),
    ]
    .iter()
    .chain(rest)
    {
        if *v > max {
            max = *v;
        }
    }
    let mv = f32x4_splat(max);
    for (c, chunk) in chunks.iter().enumerate() {
        // SAFETY: as above.
        let eq = f32x4_eq(unsafe { v128_load(chunk.as_ptr() as *const v128) }, mv);
        if v128_any_true(eq)
            && let Some(l) = chunk.iter().position(|v| *v == max)
        {
            return 4 * c + l;
        }
    }
    let start = 4 * chunks.len();
    rest.iter().position(|v| *v == max).map_or(0, |k| start + k)
}

#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: SplitMix64,
    /// The penalized ids and their logits before the penalty, kept between calls so that a
    /// step allocates nothing.
    ids: Vec<u32>,
    saved: Vec<f32>,
    /// The top-k selection's k best so far (the worst on top) and the candidates, kept between
    /// calls.
    best: BinaryHeap<Reverse<(i32, Reverse<u32>)>>,
    cand: Vec<(u32, f64)>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = SplitMix64::new(params.seed);
        Sampler {
            params,
            rng,
            ids: Vec::new(),
            saved: Vec::new(),
            best: BinaryHeap::new(),
            cand: Vec::new(),
        }
    }

    /// The next token from `logits`, without a repetition penalty.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        self.sample_unpenalized(logits)
    }

    /// The next token from `logits` after `context` (every token so far, the start token and
    /// the prompt included): the repetition penalty of SPEC §5.2 over its last `repeat_last_n`
    /// tokens, then [`Sampler::sample`]. The penalty is applied to `logits` in place and undone
    /// before returning (so they come back unchanged), with buffers kept between calls: a step
    /// allocates and copies nothing.
    pub fn sample_after(&mut self, logits: &mut [f32], context: &[u32]) -> u32 {
        let n = self.params.repeat_last_n.min(context.len());
        if self.params.repeat_penalty == 1.0 || n == 0 {
            return self.sample_unpenalized(logits);
        }
        let r = self.params.repeat_penalty;
        // Each distinct id of the window (inside the vocabulary) once.
        self.ids.clear();
        self.ids.extend(
            context[context.len() - n..]
                .iter()
                .copied()
                .filter(|&id| (id as usize) < logits.len()),
        );
        self.ids.sort_unstable();
        self.ids.dedup();
        self.saved.clear();
        for &id in &self.ids {
            let l = &mut logits[id as usize];
            self.saved.push(*l);
            *l = penalize(*l, r);
        }
        let token = self.sample_unpenalized(logits);
        for (&id, &v) in self.ids.iter().zip(&self.saved) {
            logits[id as usize] = v;
        }
        token
    }

    fn sample_unpenalized(&mut self, logits: &[f32]) -> u32 {
        if self.params.temperature == 0.0 {
            return argmax(logits) as u32;
        }
        let t = f64::from(self.params.temperature);
        let k = self.params.top_k;
        // Candidates in the order SPEC §5.2 defines: descending logit / t (f64), lower id first
        // on ties. Descending, lower id first on ties is a total order, so an unstable sort
        // gives the one order a stable sort would.
        let desc = |a: &(u32, f64), b: &(u32, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        self.cand.clear();
        if k > 0 && k <= TOP_K_SCAN && k < logits.len() && top_k(logits, k, &mut self.best) {
            // The k best in one pass over the f32 logits, without the quotients: for a
            // temperature t > 0 (finite f32) and logits that are not NaN, v ↦ f64(v) / t keeps
            // the order of the f32 values strictly (f32 values are exact in f64; the quotients
            // stay inside f64's normal range, |v / t| < 2^280, so two f32 values, at least
            // 2^−24 apart relatively, stay apart after one rounding to 53 bits), so the k best
            // by (logit, lower id) are the k best by (logit / t, lower id).
            self.cand.extend(
                self.best
                    .drain()
                    .map(|Reverse((_, Reverse(id)))| (id, f64::from(logits[id as usize]) / t)),
            );
        } else {
            self.cand.extend(
                logits
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| (i as u32, f64::from(v) / t)),
            );
            // Selecting the k best first (O(V)) then sorting only those gives the prefix of
            // the whole order. The full sort of 50K candidates was 3x the model's time.
            if k > 0 && k < self.cand.len() {
                self.cand.select_nth_unstable_by(k - 1, desc);
                self.cand.truncate(k);
            }
        }
        self.cand.sort_unstable_by(desc);
        draw(&mut self.rng, &self.params, &mut self.cand)
    }
}

/// The largest top-k that [`Sampler`] selects in one pass over the logits with a heap of k
/// (larger ones select among all V candidates: a heap of thousands costs more than that).
const TOP_K_SCAN: usize = 256;

/// f32's total order (`f32::total_cmp`) as an i32 key: the bits, with the magnitude bits
/// flipped for negative values.
#[inline]
fn total_order_key(v: f32) -> i32 {
    let b = v.to_bits() as i32;
    b ^ ((((b >> 31) as u32) >> 1) as i32)
}

type Best = BinaryHeap<Reverse<(i32, Reverse<u32>)>>;

/// `best` = the k (≥ 1, < logits.len()) best ids by (logit, in f32's total order, descending;
/// lower id first on ties), in no particular order, and true; false if a logit is NaN (then
/// `best` means nothing). One pass, each logit compared with the worst kept so far (a later id
/// with an equal logit never displaces it); in wasm four logits a step, the heap only touched
/// where one of them beats the worst.
fn top_k(logits: &[f32], k: usize, best: &mut Best) -> bool {
    best.clear();
    for (i, &v) in logits.iter().enumerate().take(k) {
        best.push(Reverse((total_order_key(v), Reverse(i as u32))));
    }
    let mut cutoff = worst(best);
    #[cfg(target_arch = "wasm32")]
    let (done, nan) = simd_top_k(logits, k, best, &mut cutoff);
    #[cfg(not(target_arch = "wasm32"))]
    let (done, nan) = (k, false);
    let mut nan = nan || logits[..k].iter().any(|v| v.is_nan());
    for (i, &v) in logits.iter().enumerate().skip(done) {
        nan |= v.is_nan();
        offer(best, &mut cutoff, total_order_key(v), i);
    }
    !nan
}

/// The key of the worst id kept.
#[inline]
fn worst(best: &Best) -> i32 {
    best.peek().map_or(i32::MIN, |Reverse((key, _))| *key)
}

/// Keeps id i (its logit's key) in place of the worst if it beats it.
#[inline]
fn offer(best: &mut Best, cutoff: &mut i32, key: i32, i: usize) {
    if key > *cutoff {
        if let Some(mut w) = best.peek_mut() {
            *w = Reverse((key, Reverse(i as u32)));
        }
        *cutoff = worst(best);
    }
}

/// [`top_k`]'s pass from k on, four logits a step (wasm loads need no alignment) up to the last
/// whole vector: (where it stopped, whether it met a NaN).
#[cfg(target_arch = "wasm32")]
fn simd_top_k(logits: &[f32], k: usize, best: &mut Best, cutoff: &mut i32) -> (usize, bool) {
    use core::arch::wasm32::*;
    let start = k;
    let (chunks, _) = logits[start..].as_chunks::<4>();
    let mut nans = i32x4_splat(0);
    let mut cut = i32x4_splat(*cutoff);
    for (c, chunk) in chunks.iter().enumerate() {
        // SAFETY: a chunk is 16 bytes of f32.
        let v = unsafe { v128_load(chunk.as_ptr() as *const v128) };
        nans = v128_or(nans, f32x4_ne(v, v));
        // total_order_key in lanes: the bits, magnitude flipped where the sign is set.
        let keys = v128_xor(v, u32x4_shr(i32x4_shr(v, 31), 1));
        if v128_any_true(i32x4_gt(keys, cut)) {
            for (l, &x) in chunk.iter().enumerate() {
                offer(best, cutoff, total_order_key(x), start + 4 * c + l);
            }
            cut = i32x4_splat(*cutoff);
        }
    }
    (start + 4 * chunks.len(), v128_any_true(nans))
}

/// SPEC §5.2's repetition penalty: each distinct id of `recent` (inside the vocabulary) once,
/// ℓ / r when ℓ > 0, else ℓ · r.
pub fn apply_repeat_penalty(logits: &mut [f32], recent: &[u32], r: f32) {
    let mut ids: Vec<u32> = recent.to_vec();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        if let Some(l) = logits.get_mut(id as usize) {
            *l = penalize(*l, r);
        }
    }
}

/// One logit under the penalty r: ℓ / r when ℓ > 0, else ℓ · r.
#[inline]
fn penalize(l: f32, r: f32) -> f32 {
    if l > 0.0 { l / r } else { l * r }
}

/// Softmax over the kept candidates (sorted, best first), the nucleus cut, and one draw.
fn draw(rng: &mut SplitMix64, params: &SamplingParams, cand: &mut Vec<(u32, f64)>) -> u32 {
    let max = cand[0].1;
    let mut total = 0.0;
    for c in cand.iter_mut() {
        c.1 = libm::exp(c.1 - max);
        total += c.1;
    }
    if params.top_p < 1.0 {
        let want = f64::from(params.top_p) * total;
        let mut cum = 0.0;
        let mut keep = cand.len();
        for (i, c) in cand.iter().enumerate() {
            cum += c.1;
            if cum >= want {
                keep = i + 1;
                break;
            }
        }
        cand.truncate(keep);
        total = cand.iter().map(|c| c.1).sum();
    }
    let u = rng.next_f64() * total;
    let mut cum = 0.0;
    for c in cand.iter() {
        cum += c.1;
        if cum > u {
            return c.0;
        }
    }
    cand[cand.len() - 1].0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_penalty_follows_llama_cpp() {
        // Positive logits are divided, the others multiplied, each id once however often it
        // recurs; ids outside the window or the vocabulary change nothing.
        let mut l = vec![2.0, -1.0, 0.0, 4.0, 3.0];
        apply_repeat_penalty(&mut l, &[0, 1, 1, 2, 0, 9], 2.0);
        assert_eq!(l, vec![1.0, -2.0, 0.0, 4.0, 3.0]);
        // Greedy: token 3 leads, but it is recent, so the penalty hands the choice to token 4;
        // beyond the window (repeat_last_n 1 sees only the last token) it leads again.
        let params = SamplingParams {
            repeat_penalty: 1.5,
            ..SamplingParams::default()
        };
        let mut logits = [0.0, 0.0, 0.0, 4.0, 3.0];
        assert_eq!(
            Sampler::new(params.clone()).sample_after(&mut logits, &[3, 1]),
            4
        );
        let one = SamplingParams {
            repeat_last_n: 1,
            ..params.clone()
        };
        assert_eq!(Sampler::new(one).sample_after(&mut logits, &[3, 1]), 3);
        assert_eq!(
            Sampler::new(SamplingParams::default()).sample_after(&mut logits, &[3]),
            3
        );
        let bad = SamplingParams {
            repeat_penalty: 0.0,
            ..params
        };
        assert!(bad.validate().unwrap_err().contains("repeat_penalty"));
    }

    #[test]
    fn greedy_with_a_penalty_is_the_argmax_of_the_penalized_logits() {
        let mut rng = SplitMix64::new(5);
        for case in 0..400 {
            let v = 1 + case % 37;
            let logits: Vec<f32> = (0..v)
                .map(|_| (rng.next_f64() * 8.0 - 4.0).round() as f32 / 2.0)
                .collect();
            let context: Vec<u32> = (0..case % 9)
                .map(|_| (rng.next_u64() % 40) as u32)
                .collect();
            for r in [0.5, 1.0, 1.1, 2.0] {
                let params = SamplingParams {
                    repeat_penalty: r,
                    repeat_last_n: 4,
                    ..SamplingParams::default()
                };
                let n = params.repeat_last_n.min(context.len());
                let mut want = logits.clone();
                apply_repeat_penalty(&mut want, &context[context.len() - n..], r);
                let mut l = logits.clone();
                let got = Sampler::new(params).sample_after(&mut l, &context);
                assert_eq!(l, logits, "the logits come back unchanged");
                assert_eq!(
                    got as usize,
                    argmax_sequential(&want),
                    "{logits:?} {context:?} {r}"
                );
            }
        }
    }

    #[test]
    fn splitmix_reference_values() {
        // First outputs for seed 0 as published with the algorithm (Vigna's splitmix64.c).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn argmax_two_pass_is_argmax_sequential() {
        let mut cases: Vec<Vec<f32>> = vec![
            vec![],
            vec![1.0],
            vec![f32::NAN, 5.0, 6.0],
            vec![1.0, f32::NAN, 3.0, 3.0, f32::NAN, 3.0, 2.0],
            vec![f32::NEG_INFINITY; 9],
            vec![-0.0, 0.0, 0.0, -0.0, 0.0],
            vec![0.0, 1.0, 1.0, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0],
            vec![
                f32::NEG_INFINITY,
                f32::NEG_INFINITY,
                2.0,
                f32::INFINITY,
                2.0,
                f32::INFINITY,
            ],
        ];
        let mut rng = SplitMix64::new(3);
        for len in [3, 4, 5, 17, 64, 1021, 50257] {
            // Few distinct values, so ties are everywhere.
            cases.push(
                (0..len)
                    .map(|_| (rng.next_u64() % 7) as f32 - 3.0)
                    .collect(),
            );
        }
        for c in &cases {
            assert_eq!(argmax_two_pass(c), argmax_sequential(c), "{c:?}");
            assert_eq!(argmax(c), argmax_sequential(c));
        }
    }

    #[test]
    fn greedy_and_top_k_one_agree() {
        let logits = [0.1, 2.0, 2.0, -1.0];
        let mut g = Sampler::new(SamplingParams::default());
        assert_eq!(g.sample(&logits), 1);
        let mut k1 = Sampler::new(SamplingParams {
            temperature: 1.3,
            top_k: 1,
            top_p: 1.0,
            seed: 9,
            ..SamplingParams::default()
        });
        for _ in 0..10 {
            assert_eq!(k1.sample(&logits), 1);
        }
    }

    #[test]
    fn sampling_follows_the_distribution_and_the_nucleus() {
        let logits = [0.0f32, (3.0f32).ln(), -30.0];
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 42,
            ..SamplingParams::default()
        });
        let n = 20000;
        let ones = (0..n).filter(|_| s.sample(&logits) == 1).count();
        let frac = ones as f64 / n as f64;
        assert!((frac - 0.75).abs() < 0.02, "{frac}");
        // top_p 0.7 keeps only token 1 (probability 0.75).
        let mut p = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.7,
            seed: 1,
            ..SamplingParams::default()
        });
        assert!((0..200).all(|_| p.sample(&logits) == 1));
    }

    /// The sampler as first written (a stable sort of every candidate, then the top-k cut): the
    /// faster ordering must draw exactly the same tokens.
    fn reference_sample(params: &SamplingParams, rng: &mut SplitMix64, logits: &[f32]) -> u32 {
        if params.temperature == 0.0 {
            return argmax(logits) as u32;
        }
        let t = f64::from(params.temperature);
        let mut cand: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as u32, f64::from(v) / t))
            .collect();
        cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if params.top_k > 0 && params.top_k < cand.len() {
            cand.truncate(params.top_k);
        }
        draw(rng, params, &mut cand)
    }

    /// `draws` tokens of a Sampler equal those of [`reference_sample`] with the same seed.
    fn assert_draws_as_the_reference(params: &SamplingParams, logits: &[f32], draws: usize) {
        let mut fast = Sampler::new(params.clone());
        let mut rng = SplitMix64::new(params.seed);
        for _ in 0..draws {
            assert_eq!(
                fast.sample(logits),
                reference_sample(params, &mut rng, logits),
                "{params:?}, V = {}",
                logits.len()
            );
        }
    }

    #[test]
    fn draws_exactly_what_the_full_sort_drew() {
        let mut draw = SplitMix64::new(2026);
        for case in 0..60 {
            // Vocabularies up to GPT-2's, logits with many exact ties (rounded to 1/4).
            let v = [3, 40, 1000, 50257][case % 4];
            let logits: Vec<f32> = (0..v)
                .map(|_| ((draw.next_f64() * 40.0 - 20.0) * 4.0).round() as f32 / 4.0)
                .collect();
            let params = SamplingParams {
                temperature: [0.3, 0.8, 1.0, 1.7][(case / 4) % 4],
                top_k: [0, 1, 5, 40, 50, 60000][case % 6],
                top_p: [1.0, 0.95, 0.5, 0.01][(case / 6) % 4],
                seed: case as u64,
                ..SamplingParams::default()
            };
            assert_draws_as_the_reference(&params, &logits, 20);
        }
    }

    /// The one-pass top-k on the logits' edge values: signed zeros (−0.0 ranks below +0.0 in
    /// the total order of the quotients too), infinities, subnormals, the largest f32 values at
    /// the smallest and largest temperatures, and NaN (which takes the path over all candidates).
    #[test]
    fn top_k_in_one_pass_draws_what_the_full_sort_drew_on_edge_values() {
        let edges = [
            0.0f32,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            1e-45,
            -1e-45,
            1.0,
            -1.0,
        ];
        let mut draw = SplitMix64::new(7);
        for case in 0..48 {
            let v = [20, 300, 5000][case % 3];
            let mut logits: Vec<f32> = (0..v)
                .map(|_| edges[(draw.next_u64() % edges.len() as u64) as usize])
                .collect();
            if case % 8 == 7 {
                logits[v / 2] = f32::NAN;
            }
            let params = SamplingParams {
                temperature: [1e-45, 0.8, 3.4e38, 1.0][(case / 3) % 4],
                top_k: [1, 3, 19, 256, 257][case % 5],
                top_p: [1.0, 0.5][(case / 5) % 2],
                seed: case as u64,
                ..SamplingParams::default()
            };
            assert_draws_as_the_reference(&params, &logits, 10);
        }
    }

    #[test]
    fn same_seed_same_sequence() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let params = SamplingParams {
            temperature: 0.8,
            top_k: 20,
            top_p: 0.9,
            seed: 123,
            ..SamplingParams::default()
        };
        let (mut a, mut b) = (Sampler::new(params.clone()), Sampler::new(params));
        for _ in 0..100 {
            assert_eq!(a.sample(&logits), b.sample(&logits));
        }
    }
}
