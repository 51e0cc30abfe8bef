//! `trainer bench`: training steps on random tokens, timed as a whole (tokens/s) and per op by
//! [`Timed`], a backend wrapper that clocks every call of the backend it wraps.

use crate::backend::cpu::CpuBackend;
use crate::backend::{
    AdamW, Backend, BackendResult, EmbRef, LinearIn, LinearOut, LinearRef, Mark, MixRef,
};
use crate::model::Model;
use crate::ops::attention::AttnDims;
use crate::train::load_run_config;
use crate::train::state::Optimizer;
use anyhow::Result;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};
use walsh_spec::sampler::SplitMix64;

/// A backend whose every op is timed: on an asynchronous backend by two [`Mark`]s (CUDA events)
/// around it, read once the pass is over ([`Timed::settle`]), so the queue never drains between
/// ops and each op is charged its device time only; on a synchronous one by the host clock.
/// The gaps between ops (launch overhead the device waits for) are in no op: the whole-step
/// time of `trainer bench` minus the ops' sum is their total.
pub struct Timed<B> {
    pub inner: B,
    times: RefCell<BTreeMap<&'static str, (Duration, u64)>>,
    /// Marks around each op not yet read.
    pending: RefCell<Vec<(&'static str, Mark, Mark)>>,
    /// How the ops were timed ("device events" or "host clock").
    clock_name: std::cell::Cell<&'static str>,
    /// Off: ops run untimed and unsynchronised (for the whole-step tokens/s).
    pub enabled: std::cell::Cell<bool>,
    /// Bytes of the buffers allocated or uploaded so far (what [`cpu_estimate`] extrapolates).
    pub allocated: std::cell::Cell<u64>,
}

impl<B: Backend> Timed<B> {
    pub fn new(inner: B) -> Self {
        Timed {
            inner,
            times: RefCell::new(BTreeMap::new()),
            pending: RefCell::new(Vec::new()),
            clock_name: std::cell::Cell::new("host clock"),
            enabled: std::cell::Cell::new(true),
            allocated: std::cell::Cell::new(0),
        }
    }

    fn clock<T>(&self, op: &'static str, f: impl FnOnce() -> T) -> T
    where
        B: Backend,
    {
        if !self.enabled.get() {
            return f();
        }
        match self.inner.mark() {
            Ok(Some(from)) => {
                let out = f();
                match self.inner.mark() {
                    Ok(Some(to)) => self.pending.borrow_mut().push((op, from, to)),
                    Ok(None) => eprintln!("warning: {op}: the backend stopped recording marks"),
                    Err(e) => eprintln!("warning: {e}"),
                }
                self.clock_name.set("device events");
                return out;
            }
            Ok(None) => {}
            Err(e) => eprintln!("warning: {e} (timing by the host clock instead)"),
        }
        let start = Instant::now();
        let out = f();
        // An asynchronous backend's op is done when its queue drains: wait, so the time is its.
        if let Err(e) = self.inner.sync() {
            eprintln!("warning: {e}");
        }
        self.add(op, start.elapsed());
        out
    }

    fn count(&self, elements: usize) {
        let bytes = (elements * std::mem::size_of::<B::Elem>()) as u64;
        self.allocated.set(self.allocated.get() + bytes);
    }

    fn add(&self, op: &'static str, d: Duration) {
        let mut times = self.times.borrow_mut();
        let e = times.entry(op).or_default();
        e.0 += d;
        e.1 += 1;
    }

    /// Reads the marks recorded since the last call into the split (waits for the last of them).
    pub fn settle(&self) -> BackendResult<()> {
        for (op, from, to) in self.pending.take() {
            let s = self.inner.elapsed(&from, &to)?;
            self.add(op, Duration::from_secs_f64(s.max(0.0)));
        }
        Ok(())
    }

    /// How the split was timed.
    pub fn clock_name(&self) -> &'static str {
        self.clock_name.get()
    }

    pub fn reset(&self) {
        self.times.borrow_mut().clear();
        self.pending.borrow_mut().clear();
    }

    /// (op, total time, calls), slowest first.
    pub fn split(&self) -> Vec<(&'static str, Duration, u64)> {
        let mut v: Vec<_> = self
            .times
            .borrow()
            .iter()
            .map(|(k, (d, n))| (*k, *d, *n))
            .collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.1));
        v
    }
}

impl<B: Backend> Backend for Timed<B> {
    type Elem = B::Elem;
    type Buf = B::Buf;
    type Tokens = B::Tokens;

    fn describe(&self) -> String {
        self.inner.describe()
    }
    // Every trait method is forwarded, those with defaults too: a default here silently replaces
    // the inner backend's own (`sync` was not forwarded, so `trainer bench`'s whole-step time did
    // not wait for the last step's queued optimizer work).
    fn sync(&self) -> BackendResult<()> {
        self.inner.sync()
    }
    fn mark(&self) -> BackendResult<Option<Mark>> {
        self.inner.mark()
    }
    fn elapsed(&self, from: &Mark, to: &Mark) -> BackendResult<f64> {
        self.inner.elapsed(from, to)
    }
    fn zeros(&self, len: usize) -> BackendResult<B::Buf> {
        self.count(len);
        self.clock("alloc", || self.inner.zeros(len))
    }
    fn upload(&self, host: &[B::Elem]) -> BackendResult<B::Buf> {
        self.count(host.len());
        self.clock("transfer", || self.inner.upload(host))
    }
    fn download(&self, buf: &B::Buf) -> BackendResult<Vec<B::Elem>> {
        self.clock("transfer", || self.inner.download(buf))
    }
    fn upload_tokens(&self, tokens: &[u32]) -> BackendResult<B::Tokens> {
        self.clock("transfer", || self.inner.upload_tokens(tokens))
    }
    fn fill_zero(&self, buf: &mut B::Buf) -> BackendResult<()> {
        self.clock("zero", || self.inner.fill_zero(buf))
    }
    fn add_assign(&self, dst: &mut B::Buf, src: &B::Buf) -> BackendResult<()> {
        self.clock("residual", || self.inner.add_assign(dst, src))
    }
    fn add(&self, out: &mut B::Buf, a: &B::Buf, b: &B::Buf) -> BackendResult<()> {
        self.clock("residual", || self.inner.add(out, a, b))
    }
    fn quantize(
        &self,
        eff: &mut B::Buf,
        params: &B::Buf,
        ternary: &[Range<usize>],
        quantize: bool,
    ) -> BackendResult<()> {
        self.clock("quantize", || {
            self.inner.quantize(eff, params, ternary, quantize)
        })
    }
    fn prepare_weights(
        &self,
        eff: &B::Buf,
        linears: &[&LinearRef],
        mixes: &[&MixRef],
    ) -> BackendResult<()> {
        self.clock("prepare weights", || {
            self.inner.prepare_weights(eff, linears, mixes)
        })
    }
    fn embed_forward(
        &self,
        out: &mut B::Buf,
        tokens: &B::Tokens,
        eff: &B::Buf,
        emb: &EmbRef,
    ) -> BackendResult<()> {
        self.clock("embedding fwd", || {
            self.inner.embed_forward(out, tokens, eff, emb)
        })
    }
    fn embed_backward(
        &self,
        grads: &mut B::Buf,
        dout: &B::Buf,
        tokens: &B::Tokens,
        emb: &EmbRef,
    ) -> BackendResult<()> {
        self.clock("embedding bwd", || {
            self.inner.embed_backward(grads, dout, tokens, emb)
        })
    }
    fn rmsnorm_forward(
        &self,
        out: &mut B::Buf,
        rstd: &mut B::Buf,
        inp: &B::Buf,
        eff: &B::Buf,
        gain: Range<usize>,
    ) -> BackendResult<()> {
        self.clock("rmsnorm fwd", || {
            self.inner.rmsnorm_forward(out, rstd, inp, eff, gain)
        })
    }
    fn rmsnorm_backward(
        &self,
        dinp: &mut B::Buf,
        grads: &mut B::Buf,
        dout: &B::Buf,
        inp: &B::Buf,
        rstd: &B::Buf,
        eff: &B::Buf,
        gain: Range<usize>,
    ) -> BackendResult<()> {
        self.clock("rmsnorm bwd", || {
            self.inner
                .rmsnorm_backward(dinp, grads, dout, inp, rstd, eff, gain)
        })
    }
    fn linear_forward(
        &self,
        out: &mut B::Buf,
        u: &mut B::Buf,
        z: &mut B::Buf,
        inp: &B::Buf,
        eff: &B::Buf,
        lin: &LinearRef,
    ) -> BackendResult<()> {
        self.clock("algebra linear fwd", || {
            self.inner.linear_forward(out, u, z, inp, eff, lin)
        })
    }
    fn linear_backward(
        &self,
        dinp: &mut B::Buf,
        grads: &mut B::Buf,
        dout: &B::Buf,
        inp: &B::Buf,
        u: &B::Buf,
        z: &B::Buf,
        eff: &B::Buf,
        lin: &LinearRef,
        accumulate: bool,
    ) -> BackendResult<()> {
        self.clock("algebra linear bwd", || {
            self.inner
                .linear_backward(dinp, grads, dout, inp, u, z, eff, lin, accumulate)
        })
    }
    fn linears_forward(
        &self,
        items: &mut [LinearOut<'_, B::Buf>],
        inp: &B::Buf,
        eff: &B::Buf,
    ) -> BackendResult<()> {
        self.clock("algebra linear fwd", || {
            self.inner.linears_forward(items, inp, eff)
        })
    }
    fn linears_backward(
        &self,
        dinp: &mut B::Buf,
        grads: &mut B::Buf,
        items: &[LinearIn<'_, B::Buf>],
        inp: &B::Buf,
        eff: &B::Buf,
        accumulate: bool,
    ) -> BackendResult<()> {
        self.clock("algebra linear bwd", || {
            self.inner
                .linears_backward(dinp, grads, items, inp, eff, accumulate)
        })
    }
    fn rope_forward(
        &self,
        out: &mut B::Buf,
        inp: &B::Buf,
        cos: &B::Buf,
        sin: &B::Buf,
        seq_len: usize,
        d: usize,
        head_dim: usize,
    ) -> BackendResult<()> {
        self.clock("rope fwd", || {
            self.inner
                .rope_forward(out, inp, cos, sin, seq_len, d, head_dim)
        })
    }
    fn rope_backward(
        &self,
        dinp: &mut B::Buf,
        dout: &B::Buf,
        cos: &B::Buf,
        sin: &B::Buf,
        seq_len: usize,
        d: usize,
        head_dim: usize,
        accumulate: bool,
    ) -> BackendResult<()> {
        self.clock("rope bwd", || {
            self.inner
                .rope_backward(dinp, dout, cos, sin, seq_len, d, head_dim, accumulate)
        })
    }
    fn linear_saved_len(&self, len: usize) -> usize {
        self.inner.linear_saved_len(len)
    }
    fn attention_saved_len(&self, batch: usize, dims: AttnDims) -> usize {
        self.inner.attention_saved_len(batch, dims)
    }
    fn attention_forward(
        &self,
        out: &mut B::Buf,
        att: &mut B::Buf,
        q: &B::Buf,
        k: &B::Buf,
        v: &B::Buf,
        dims: AttnDims,
    ) -> BackendResult<()> {
        self.clock("attention fwd", || {
            self.inner.attention_forward(out, att, q, k, v, dims)
        })
    }
    fn attention_backward(
        &self,
        dq: &mut B::Buf,
        dk: &mut B::Buf,
        dv: &mut B::Buf,
        dout: &B::Buf,
        out: &B::Buf,
        q: &B::Buf,
        k: &B::Buf,
        v: &B::Buf,
        att: &B::Buf,
        dims: AttnDims,
    ) -> BackendResult<()> {
        self.clock("attention bwd", || {
            self.inner
                .attention_backward(dq, dk, dv, dout, out, q, k, v, att, dims)
        })
    }
    fn mix_forward(
        &self,
        out: &mut B::Buf,
        u: &mut B::Buf,
        z: &mut B::Buf,
        inp: &B::Buf,
        eff: &B::Buf,
        mix: &MixRef,
    ) -> BackendResult<()> {
        self.clock("head mixing fwd", || {
            self.inner.mix_forward(out, u, z, inp, eff, mix)
        })
    }
    fn mix_backward(
        &self,
        dinp: &mut B::Buf,
        grads: &mut B::Buf,
        dout: &B::Buf,
        u: &B::Buf,
        z: &B::Buf,
        eff: &B::Buf,
        mix: &MixRef,
        accumulate: bool,
    ) -> BackendResult<()> {
        self.clock("head mixing bwd", || {
            self.inner
                .mix_backward(dinp, grads, dout, u, z, eff, mix, accumulate)
        })
    }
    fn swiglu_forward(&self, out: &mut B::Buf, gate: &B::Buf, up: &B::Buf) -> BackendResult<()> {
        self.clock("swiglu fwd", || self.inner.swiglu_forward(out, gate, up))
    }
    fn swiglu_backward(
        &self,
        dgate: &mut B::Buf,
        dup: &mut B::Buf,
        dout: &B::Buf,
        gate: &B::Buf,
        up: &B::Buf,
        accumulate: bool,
    ) -> BackendResult<()> {
        self.clock("swiglu bwd", || {
            self.inner
                .swiglu_backward(dgate, dup, dout, gate, up, accumulate)
        })
    }
    fn cross_entropy_saved_len(&self, rows: usize, emb: &EmbRef) -> usize {
        self.inner.cross_entropy_saved_len(rows, emb)
    }
    fn cross_entropy_forward(
        &self,
        lse: &mut B::Buf,
        saved: &mut B::Buf,
        h: &B::Buf,
        targets: &B::Tokens,
        eff: &B::Buf,
        emb: &EmbRef,
    ) -> BackendResult<f64> {
        self.clock("cross-entropy fwd", || {
            self.inner
                .cross_entropy_forward(lse, saved, h, targets, eff, emb)
        })
    }
    fn cross_entropy_backward(
        &self,
        dh: &mut B::Buf,
        grads: &mut B::Buf,
        dloss: f64,
        h: &B::Buf,
        targets: &B::Tokens,
        lse: &B::Buf,
        saved: &mut B::Buf,
        eff: &B::Buf,
        emb: &EmbRef,
    ) -> BackendResult<()> {
        self.clock("cross-entropy bwd", || {
            self.inner
                .cross_entropy_backward(dh, grads, dloss, h, targets, lse, saved, eff, emb)
        })
    }
    fn logits(
        &self,
        out: &mut B::Buf,
        h: &B::Buf,
        eff: &B::Buf,
        emb: &EmbRef,
    ) -> BackendResult<()> {
        self.clock("logits", || self.inner.logits(out, h, eff, emb))
    }
    fn another(&self) -> BackendResult<Self> {
        Ok(Timed::new(self.inner.another()?))
    }
    fn download_tokens(&self, tokens: &B::Tokens) -> BackendResult<Vec<u32>> {
        self.clock("transfer", || self.inner.download_tokens(tokens))
    }
    fn distill_targets(
        &self,
        idx: &mut B::Tokens,
        q: &mut B::Buf,
        logits: &mut B::Buf,
        vocab: usize,
        k: usize,
        tau: f64,
    ) -> BackendResult<()> {
        self.clock("distill targets", || {
            self.inner.distill_targets(idx, q, logits, vocab, k, tau)
        })
    }
    fn distill_forward(
        &self,
        lse: &mut B::Buf,
        h: &B::Buf,
        idx: &B::Tokens,
        q: &B::Buf,
        k: usize,
        tau: f64,
        eff: &B::Buf,
        emb: &EmbRef,
    ) -> BackendResult<f64> {
        self.clock("distill fwd", || {
            self.inner.distill_forward(lse, h, idx, q, k, tau, eff, emb)
        })
    }
    fn distill_backward(
        &self,
        dh: &mut B::Buf,
        grads: &mut B::Buf,
        dloss: f64,
        h: &B::Buf,
        idx: &B::Tokens,
        q: &B::Buf,
        lse: &B::Buf,
        k: usize,
        tau: f64,
        eff: &B::Buf,
        emb: &EmbRef,
    ) -> BackendResult<()> {
        self.clock("distill bwd", || {
            self.inner
                .distill_backward(dh, grads, dloss, h, idx, q, lse, k, tau, eff, emb)
        })
    }
    fn sum_squares(&self, buf: &B::Buf) -> BackendResult<f64> {
        self.clock("grad norm", || self.inner.sum_squares(buf))
    }
    fn adamw(
        &self,
        params: &mut B::Buf,
        grads: &B::Buf,
        m: &mut B::Buf,
        v: &mut B::Buf,
        decay: &[Range<usize>],
        grad_scale: f64,
        hp: AdamW,
    ) -> BackendResult<()> {
        self.clock("adamw", || {
            self.inner.adamw(params, grads, m, v, decay, grad_scale, hp)
        })
    }
}

/// What `trainer bench` prints.
pub struct BenchReport {
    pub config: String,
    pub device: String,
    pub params: (u64, u64),
    pub batch: usize,
    pub seq: usize,
    pub steps: usize,
    pub step_time: Duration,
    pub split: Vec<(&'static str, Duration, u64)>,
    /// How the split was timed ("device events" or "host clock").
    pub clock: &'static str,
}

impl BenchReport {
    pub fn tokens_per_second(&self) -> f64 {
        (self.batch * self.seq * self.steps) as f64 / self.step_time.as_secs_f64().max(1e-12)
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} ({} embedding + {} brain parameters) on {}",
            self.config, self.params.0, self.params.1, self.device
        )?;
        writeln!(
            f,
            "micro-batch {}×{}: {:.1} ms/step, {:.0} tokens/s ({} timed steps)",
            self.batch,
            self.seq,
            self.step_time.as_secs_f64() * 1e3 / self.steps as f64,
            self.tokens_per_second(),
            self.steps
        )?;
        let total: Duration = self.split.iter().map(|s| s.1).sum();
        writeln!(
            f,
            "{:<22} {:>10} {:>7} {:>8}   (each op timed by {}; {:.1} ms/step in all)",
            "op",
            "ms/step",
            "share",
            "calls",
            self.clock,
            total.as_secs_f64() * 1e3 / self.steps as f64
        )?;
        for (op, d, n) in &self.split {
            writeln!(
                f,
                "{op:<22} {:>10.2} {:>6.1}% {:>8}",
                d.as_secs_f64() * 1e3 / self.steps as f64,
                100.0 * d.as_secs_f64() / total.as_secs_f64().max(1e-12),
                n / self.steps as u64
            )?;
        }
        Ok(())
    }
}

/// Times `steps` training steps (forward, backward, AdamW, quantize) of the config's model on one
/// micro-batch of its `[train]` shape (learning rate `lr`, clipping `grad_clip`): one warmup
/// step, `steps` timed as a whole, then `steps` with every op timed on its own.
pub fn bench<B: Backend<Elem = f32>>(
    backend: B,
    config: &Path,
    sets: &[String],
    steps: usize,
) -> Result<BenchReport> {
    anyhow::ensure!(steps >= 1, "bench needs at least one timed step");
    let (mcfg, tcfg) = load_run_config(config, sets)?;
    let seq = tcfg.seq_len_for(mcfg.block_size);
    let batch = tcfg.batch_size;
    let ckpt = walsh_spec::init::random_checkpoint(&mcfg, tcfg.seed, String::new());
    let mut model = Model::new(Timed::new(backend), mcfg.clone(), &ckpt.tensors)?;
    let mut opt = Optimizer::new(&model)?;
    let decay = model.layout.decay_ranges();
    let mut rng = SplitMix64::new(tcfg.seed);
    let mut tokens = |n: usize| -> Vec<u32> {
        (0..n)
            .map(|_| (rng.next_u64() % mcfg.vocab_size as u64) as u32)
            .collect()
    };
    // Pass 0 warms up; pass 1 times whole steps (ops unsynchronised); pass 2 times each op.
    let mut step_time = Duration::ZERO;
    for pass in 0..3 {
        model.backend.enabled.set(pass == 2);
        model.backend.reset();
        let n = if pass == 0 { 1 } else { steps };
        model.backend.sync()?;
        let start = Instant::now();
        for i in 0..n {
            let (inputs, targets) = (tokens(batch * seq), tokens(batch * seq));
            model.zero_grads()?;
            model.forward(&inputs, Some(&targets), batch, seq)?;
            model.backward(1.0)?;
            let norm = model.backend.sum_squares(&model.grads)?.sqrt();
            let hp = AdamW {
                lr: tcfg.lr,
                beta1: tcfg.beta1,
                beta2: tcfg.beta2,
                eps: tcfg.eps,
                weight_decay: tcfg.weight_decay,
                step: (pass * steps + i) as u64 + 1,
            };
            let clip = if tcfg.grad_clip > 0.0 && norm > tcfg.grad_clip {
                tcfg.grad_clip / norm
            } else {
                1.0
            };
            opt.step(&mut model, &decay, clip, hp)?;
            model.quantize()?;
        }
        model.backend.sync()?;
        if pass == 1 {
            step_time = start.elapsed();
        }
        model.backend.settle()?;
    }
    Ok(BenchReport {
        config: mcfg.name.clone(),
        device: model.backend.describe(),
        params: mcfg.param_counts(),
        batch,
        seq,
        steps: steps.max(1),
        step_time,
        split: model.backend.split(),
        clock: model.backend.clock_name(),
    })
}

pub fn bench_cpu(config: &Path, sets: &[String], steps: usize) -> Result<BenchReport> {
    bench(CpuBackend::<f32>::new(), config, sets, steps)
}

/// What a CPU `trainer bench` of a config will cost, extrapolated from one training step of a
/// single sequence: memory (the buffers allocated, the parameters' and optimizer's plus the
/// activations' times the batch size) and time (that step's times the batch size, for the
/// warmup step and the two timed passes).
#[derive(Debug, Clone, Copy)]
pub struct CpuEstimate {
    pub bytes: u64,
    pub step_seconds: f64,
    /// Steps `trainer bench` runs: one warmup, then `steps` twice.
    pub total_steps: usize,
}

impl CpuEstimate {
    /// Above this much memory or time the estimate is a warning.
    pub const WARN_BYTES: u64 = 4 << 30;
    pub const WARN_SECONDS: f64 = 60.0;

    pub fn total_seconds(&self) -> f64 {
        self.step_seconds * self.total_steps as f64
    }

    pub fn is_large(&self) -> bool {
        self.bytes > Self::WARN_BYTES || self.total_seconds() > Self::WARN_SECONDS
    }
}

impl fmt::Display for CpuEstimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}CPU estimate: about {:.2} GB of memory and {:.1} s a step, {:.0} s for all {} steps \
             (from one step of one sequence)",
            if self.is_large() { "warning: " } else { "" },
            self.bytes as f64 / 1e9,
            self.step_seconds,
            self.total_seconds(),
            self.total_steps
        )?;
        if self.is_large() {
            write!(
                f,
                "; lower --set batch_size=… or --steps, or use --device cuda"
            )?;
        }
        Ok(())
    }
}

/// Estimates a CPU `trainer bench` of `config` with `steps` timed steps (see [`CpuEstimate`]).
pub fn cpu_estimate(config: &Path, sets: &[String], steps: usize) -> Result<CpuEstimate> {
    let (mcfg, tcfg) = load_run_config(config, sets)?;
    let seq = tcfg.seq_len_for(mcfg.block_size);
    let ckpt = walsh_spec::init::random_checkpoint(&mcfg, tcfg.seed, String::new());
    let mut model = Model::new(
        Timed::new(CpuBackend::<f32>::new()),
        mcfg.clone(),
        &ckpt.tensors,
    )?;
    model.backend.enabled.set(false);
    let mut opt = Optimizer::new(&model)?;
    let fixed = model.backend.allocated.get();
    let tokens: Vec<u32> = (0..seq as u32)
        .map(|i| i % mcfg.vocab_size as u32)
        .collect();
    let start = Instant::now();
    model.zero_grads()?;
    model.forward(&tokens, Some(&tokens), 1, seq)?;
    model.backward(1.0)?;
    let hp = AdamW {
        lr: tcfg.lr,
        beta1: tcfg.beta1,
        beta2: tcfg.beta2,
        eps: tcfg.eps,
        weight_decay: tcfg.weight_decay,
        step: 1,
    };
    let decay = model.layout.decay_ranges();
    opt.step(&mut model, &decay, 1.0, hp)?;
    model.quantize()?;
    let one = start.elapsed().as_secs_f64();
    let per_sequence = model.backend.allocated.get() - fixed;
    let batch = tcfg.batch_size as u64;
    Ok(CpuEstimate {
        bytes: fixed + per_sequence * batch,
        step_seconds: one * batch as f64,
        total_steps: 1 + 2 * steps,
    })
}
