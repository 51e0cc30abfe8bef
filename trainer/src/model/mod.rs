//! The Walsh model of SPEC §2, written once over the [`Backend`] operations: a forward that saves
//! what the backward needs, and a backward that accumulates every parameter's gradient into one
//! flat buffer.
//!
//! Buffers: `params` (latent f32 weights), `eff` (what the forward uses: γ·Wq for ternary weights,
//! the parameters themselves otherwise; refreshed by [`Model::quantize`] after each update),
//! `grads`. Activations are sized for one (batch, seq) shape and reallocated when it changes.

pub mod layout;

use crate::backend::{Backend, BackendResult, EmbRef, LinearIn, LinearOut, LinearRef, MixRef};
use crate::ops::attention::AttnDims;
use crate::ops::rope::rope_table;
use crate::ops::{Real, cast};
pub use layout::{LayerRefs, ParamLayout, TensorSlot};
use std::collections::BTreeMap;
use walsh_spec::Tensor;
use walsh_spec::config::ModelConfig;

/// What one layer's forward saves.
struct LayerActs<B: Backend> {
    an: B::Buf,
    an_rstd: B::Buf,
    q: [B::Buf; 3],
    k: [B::Buf; 3],
    v: [B::Buf; 3],
    qr: B::Buf,
    kr: B::Buf,
    att: B::Buf,
    heads: B::Buf,
    /// Head mixing: [out, u, z].
    mix: Option<[B::Buf; 3]>,
    o_uz: [B::Buf; 2],
    h: B::Buf,
    mn: B::Buf,
    mn_rstd: B::Buf,
    gate: [B::Buf; 3],
    up: [B::Buf; 3],
    sw: B::Buf,
    down_uz: [B::Buf; 2],
}

/// Activations of one (batch, seq) shape, and the backward's scratch gradients.
struct Acts<B: Backend> {
    batch: usize,
    seq: usize,
    tokens: B::Tokens,
    targets: Option<B::Tokens>,
    /// resid[0] = embeddings, resid[l + 1] = output of layer l.
    resid: Vec<B::Buf>,
    layers: Vec<LayerActs<B>>,
    /// A [N, D] output consumed at once (o and down projections before their residual add).
    tmp: B::Buf,
    hf: B::Buf,
    hf_rstd: B::Buf,
    lse: B::Buf,
    /// What the cross-entropy forward keeps for its backward besides `lse`
    /// ([`Backend::cross_entropy_saved_len`]); allocated by the first forward with targets.
    ce_saved: Option<B::Buf>,
    /// Distillation: the student's log-sum-exps of ℓ/τ (`Model::distill_forward`), and a
    /// teacher's logits and top-k targets (`Model::teacher_targets`); allocated on first use.
    kl_lse: Option<B::Buf>,
    teacher: Option<TeacherBufs<B>>,
    grad: Option<Scratch<B>>,
}

struct TeacherBufs<B: Backend> {
    k: usize,
    logits: B::Buf,
    idx: B::Tokens,
    q: B::Buf,
}

/// A teacher's targets for the rows of a student's forward (`ops::distill`): ids and
/// probabilities [rows, k] at temperature `tau`, and the weight w of the objective
/// (1 − w)·cross-entropy + w·τ²·KL.
pub struct Distill<B: Backend> {
    pub idx: B::Tokens,
    pub q: B::Buf,
    pub k: usize,
    pub tau: f64,
    pub weight: f64,
}

struct Scratch<B: Backend> {
    dres: B::Buf,
    dsw: B::Buf,
    dgate: B::Buf,
    dup: B::Buf,
    dmn: B::Buf,
    dmixed: B::Buf,
    dheads: B::Buf,
    dqr: B::Buf,
    dkr: B::Buf,
    dv: B::Buf,
    dq: B::Buf,
    dk: B::Buf,
    dan: B::Buf,
    dhf: B::Buf,
}

pub struct Model<B: Backend> {
    pub backend: B,
    pub config: ModelConfig,
    pub layout: ParamLayout,
    pub params: B::Buf,
    pub eff: B::Buf,
    pub grads: B::Buf,
    /// False only in the gradient checks (identity quantizer, SPEC's STE made exact).
    pub quantize: bool,
    cos: B::Buf,
    sin: B::Buf,
    acts: Option<Acts<B>>,
}

/// The ways a set of host tensors can fail to fit the model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("tensor `{0}` is missing")]
    Missing(String),
    #[error("tensor `{name}` has {found} elements; the config needs {expected}")]
    Size {
        name: String,
        expected: usize,
        found: usize,
    },
    #[error("{0} positions is more than the model's block_size {1}")]
    TooLong(usize, usize),
    #[error("token {token} is outside the vocabulary of {vocab}")]
    Token { token: u32, vocab: usize },
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
}

impl<B: Backend> Model<B> {
    /// A model holding `tensors` (named per SPEC §3, e.g. a checkpoint's).
    pub fn new(
        backend: B,
        config: ModelConfig,
        tensors: &BTreeMap<String, Tensor>,
    ) -> Result<Self, ModelError> {
        let layout = ParamLayout::new(&config);
        let mut host = vec![cast::<B::Elem>(0.0); layout.len];
        for slot in &layout.tensors {
            let t = tensors
                .get(&slot.spec.name)
                .ok_or_else(|| ModelError::Missing(slot.spec.name.clone()))?;
            if t.data.len() != slot.range.len() {
                return Err(ModelError::Size {
                    name: slot.spec.name.clone(),
                    expected: slot.range.len(),
                    found: t.data.len(),
                });
            }
            for (h, v) in host[slot.range.clone()].iter_mut().zip(&t.data) {
                *h = cast(*v as f64);
            }
        }
        Self::from_host(backend, config, layout, &host)
    }

    /// A model from a flat host buffer in `layout` order (the gradient checks perturb it).
    pub fn from_host(
        backend: B,
        config: ModelConfig,
        layout: ParamLayout,
        host: &[B::Elem],
    ) -> Result<Self, ModelError> {
        assert_eq!(host.len(), layout.len);
        let params = backend.upload(host)?;
        let eff = backend.zeros(layout.len)?;
        let grads = backend.zeros(layout.len)?;
        let (cos, sin) =
            rope_table::<B::Elem>(config.block_size, config.head_dim(), config.rope_theta);
        let cos = backend.upload(&cos)?;
        let sin = backend.upload(&sin)?;
        let mut model = Model {
            backend,
            config,
            layout,
            params,
            eff,
            grads,
            quantize: true,
            cos,
            sin,
            acts: None,
        };
        model.quantize()?;
        Ok(model)
    }

    /// The parameters as named f32 tensors (for a checkpoint).
    pub fn tensors(&self) -> Result<BTreeMap<String, Tensor>, ModelError> {
        let host = self.backend.download(&self.params)?;
        Ok(self.layout.tensors_of(&host))
    }

    /// Recomputes the effective weights from the parameters (after every optimizer step).
    pub fn quantize(&mut self) -> BackendResult<()> {
        let ternary = self.layout.ternary_ranges();
        self.backend
            .quantize(&mut self.eff, &self.params, &ternary, self.quantize)?;
        let layers = &self.layout.layers;
        let linears: Vec<&LinearRef> = layers
            .iter()
            .flat_map(|l| [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down])
            .collect();
        let mixes: Vec<&MixRef> = layers.iter().filter_map(|l| l.mix.as_ref()).collect();
        self.backend.prepare_weights(&self.eff, &linears, &mixes)
    }

    pub fn zero_grads(&mut self) -> BackendResult<()> {
        self.backend.fill_zero(&mut self.grads)
    }

    fn check_tokens(&self, tokens: &[u32], seq: usize) -> Result<(), ModelError> {
        if seq > self.config.block_size {
            return Err(ModelError::TooLong(seq, self.config.block_size));
        }
        let vocab = self.config.vocab_size;
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(ModelError::Token { token, vocab });
        }
        Ok(())
    }

    /// Runs the model over `batch` sequences of `seq` tokens (`tokens` row-major) and, with
    /// `targets`, returns the mean cross-entropy. Saves the activations for [`Model::backward`].
    pub fn forward(
        &mut self,
        tokens: &[u32],
        targets: Option<&[u32]>,
        batch: usize,
        seq: usize,
    ) -> Result<Option<f64>, ModelError> {
        assert_eq!(tokens.len(), batch * seq);
        self.check_tokens(tokens, seq)?;
        if let Some(t) = targets {
            assert_eq!(t.len(), tokens.len());
            self.check_tokens(t, seq)?;
        }
        self.ensure_acts(batch, seq)?;
        let b = &self.backend;
        let cfg = &self.config;
        let layout = &self.layout;
        let eff = &self.eff;
        let Some(acts) = self.acts.as_mut() else {
            unreachable!("ensure_acts allocated them")
        };
        acts.tokens = b.upload_tokens(tokens)?;
        acts.targets = targets.map(|t| b.upload_tokens(t)).transpose()?;
        let (d, hd) = (cfg.n_embd, cfg.head_dim());
        let dims = AttnDims {
            seq_len: seq,
            n_head: cfg.n_head,
            head_dim: hd,
        };
        b.embed_forward(&mut acts.resid[0], &acts.tokens, eff, &layout.emb)?;
        for (l, (refs, la)) in layout.layers.iter().zip(acts.layers.iter_mut()).enumerate() {
            let (before, after) = acts.resid.split_at_mut(l + 1);
            let x = &before[l];
            let out = &mut after[0];
            b.rmsnorm_forward(&mut la.an, &mut la.an_rstd, x, eff, refs.attn_norm.clone())?;
            let [[qy, qu, qz], [ky, ku, kz], [vy, vu, vz]] = [&mut la.q, &mut la.k, &mut la.v];
            b.linears_forward(
                &mut [
                    linear_out(qy, qu, qz, &refs.q),
                    linear_out(ky, ku, kz, &refs.k),
                    linear_out(vy, vu, vz, &refs.v),
                ],
                &la.an,
                eff,
            )?;
            b.rope_forward(&mut la.qr, &la.q[0], &self.cos, &self.sin, seq, d, hd)?;
            b.rope_forward(&mut la.kr, &la.k[0], &self.cos, &self.sin, seq, d, hd)?;
            b.attention_forward(&mut la.heads, &mut la.att, &la.qr, &la.kr, &la.v[0], dims)?;
            let o_in = match (&mut la.mix, &refs.mix) {
                (Some([y, u, z]), Some(mix)) => {
                    b.mix_forward(y, u, z, &la.heads, eff, mix)?;
                    &*y
                }
                _ => &la.heads,
            };
            let [ou, oz] = &mut la.o_uz;
            b.linear_forward(&mut acts.tmp, ou, oz, o_in, eff, &refs.o)?;
            b.add(&mut la.h, x, &acts.tmp)?;
            b.rmsnorm_forward(
                &mut la.mn,
                &mut la.mn_rstd,
                &la.h,
                eff,
                refs.mlp_norm.clone(),
            )?;
            let [[gy, gu, gz], [uy, uu, uz]] = [&mut la.gate, &mut la.up];
            b.linears_forward(
                &mut [
                    linear_out(gy, gu, gz, &refs.gate),
                    linear_out(uy, uu, uz, &refs.up),
                ],
                &la.mn,
                eff,
            )?;
            b.swiglu_forward(&mut la.sw, &la.gate[0], &la.up[0])?;
            let [du, dz] = &mut la.down_uz;
            b.linear_forward(&mut acts.tmp, du, dz, &la.sw, eff, &refs.down)?;
            b.add(out, &la.h, &acts.tmp)?;
        }
        let last = &acts.resid[cfg.n_layer];
        b.rmsnorm_forward(
            &mut acts.hf,
            &mut acts.hf_rstd,
            last,
            eff,
            layout.norm.clone(),
        )?;
        let Some(t) = &acts.targets else {
            return Ok(None);
        };
        if acts.ce_saved.is_none() {
            let len = b.cross_entropy_saved_len(acts.batch * acts.seq, &layout.emb);
            acts.ce_saved = Some(b.zeros(len)?);
        }
        let Some(saved) = acts.ce_saved.as_mut() else {
            unreachable!("allocated above")
        };
        let loss = b.cross_entropy_forward(&mut acts.lse, saved, &acts.hf, t, eff, &layout.emb)?;
        Ok(Some(loss))
    }

    /// Accumulates into `grads` the gradient of `dloss` × (the last forward's mean loss). Once per
    /// forward: the cross-entropy's backward may consume what its forward kept (`ce_saved`).
    pub fn backward(&mut self, dloss: f64) -> Result<(), ModelError> {
        self.backward_distilled(dloss, None)
    }

    /// τ²·KL(teacher ‖ student) of the last forward's rows ([`Distill`]; after a forward with
    /// targets, before [`Model::backward_distilled`] with the same `distill`).
    pub fn distill_forward(&mut self, distill: &Distill<B>) -> Result<f64, ModelError> {
        let b = &self.backend;
        let acts = self.acts.as_mut().expect("distillation follows a forward");
        if acts.kl_lse.is_none() {
            acts.kl_lse = Some(b.zeros(acts.batch * acts.seq)?);
        }
        let Some(lse) = acts.kl_lse.as_mut() else {
            unreachable!("allocated above")
        };
        let (k, tau) = (distill.k, distill.tau);
        let emb = &self.layout.emb;
        Ok(b.distill_forward(
            lse,
            &acts.hf,
            &distill.idx,
            &distill.q,
            k,
            tau,
            &self.eff,
            emb,
        )?)
    }

    /// The teacher's side of distillation: runs the forward on `tokens` ([batch, seq]) and
    /// returns every row's `k` likeliest ids and their probabilities at temperature `tau` over
    /// those k ([rows, k] each, on the host).
    pub fn teacher_targets(
        &mut self,
        tokens: &[u32],
        batch: usize,
        seq: usize,
        k: usize,
        tau: f64,
    ) -> Result<(Vec<u32>, Vec<B::Elem>), ModelError> {
        self.forward(tokens, None, batch, seq)?;
        let b = &self.backend;
        let acts = self.acts.as_mut().expect("forward allocated them");
        let (n, v) = (batch * seq, self.config.vocab_size);
        if acts.teacher.as_ref().is_none_or(|t| t.k != k) {
            acts.teacher = Some(TeacherBufs {
                k,
                logits: b.zeros(n * v)?,
                idx: b.upload_tokens(&vec![0; n * k])?,
                q: b.zeros(n * k)?,
            });
        }
        let Some(t) = acts.teacher.as_mut() else {
            unreachable!("allocated above")
        };
        b.logits(&mut t.logits, &acts.hf, &self.eff, &self.layout.emb)?;
        b.distill_targets(&mut t.idx, &mut t.q, &mut t.logits, v, k, tau)?;
        let mut idx = b.download_tokens(&t.idx)?;
        let mut q = b.download(&t.q)?;
        idx.truncate(n * k);
        q.truncate(n * k);
        Ok((idx, q))
    }

    /// [`Model::backward`] of the distillation objective (1 − w)·cross-entropy + w·τ²·KL when
    /// `distill` is given (the one [`Model::distill_forward`] ran with), else of the
    /// cross-entropy alone.
    pub fn backward_distilled(
        &mut self,
        dloss: f64,
        distill: Option<&Distill<B>>,
    ) -> Result<(), ModelError> {
        let b = &self.backend;
        let cfg = &self.config;
        let layout = &self.layout;
        let eff = &self.eff;
        let grads = &mut self.grads;
        let acts = self
            .acts
            .as_mut()
            .expect("backward follows a forward with targets");
        let targets = acts
            .targets
            .as_ref()
            .expect("backward follows a forward with targets");
        let ce_saved = (acts.ce_saved.as_mut()).expect("a forward with targets allocated it");
        if acts.grad.is_none() {
            acts.grad = Some(Scratch::new(b, cfg, acts.batch * acts.seq)?);
        }
        let Some(s) = acts.grad.as_mut() else {
            unreachable!("allocated above")
        };
        let (seq, d, hd) = (acts.seq, cfg.n_embd, cfg.head_dim());
        let dims = AttnDims {
            seq_len: seq,
            n_head: cfg.n_head,
            head_dim: hd,
        };
        b.fill_zero(&mut s.dhf)?;
        let ce_weight = distill.map_or(1.0, |t| 1.0 - t.weight);
        b.cross_entropy_backward(
            &mut s.dhf,
            grads,
            dloss * ce_weight,
            &acts.hf,
            targets,
            &acts.lse,
            ce_saved,
            eff,
            &layout.emb,
        )?;
        if let Some(t) = distill {
            let lse = (acts.kl_lse.as_ref()).expect("distill_forward ran before the backward");
            let (hf, emb) = (&acts.hf, &layout.emb);
            let dkl = dloss * t.weight;
            b.distill_backward(
                &mut s.dhf, grads, dkl, hf, &t.idx, &t.q, lse, t.k, t.tau, eff, emb,
            )?;
        }
        b.fill_zero(&mut s.dres)?;
        let last = &acts.resid[cfg.n_layer];
        b.rmsnorm_backward(
            &mut s.dres,
            grads,
            &s.dhf,
            last,
            &acts.hf_rstd,
            eff,
            layout.norm.clone(),
        )?;
        for (l, (refs, la)) in layout
            .layers
            .iter()
            .zip(acts.layers.iter())
            .enumerate()
            .rev()
        {
            let x = &acts.resid[l];
            // MLP branch: x' = h + down(swiglu(gate(mn), up(mn))), mn = norm(h).
            // The first op to write an input gradient overwrites it (`accumulate` false), so
            // none of these buffers needs zeroing; the later ones add to it.
            let [du, dz] = &la.down_uz;
            let (sw, down) = (&la.sw, &refs.down);
            b.linear_backward(&mut s.dsw, grads, &s.dres, sw, du, dz, eff, down, false)?;
            b.swiglu_backward(
                &mut s.dgate,
                &mut s.dup,
                &s.dsw,
                &la.gate[0],
                &la.up[0],
                false,
            )?;
            let items = [
                linear_in(&s.dgate, &la.gate, &refs.gate),
                linear_in(&s.dup, &la.up, &refs.up),
            ];
            b.linears_backward(&mut s.dmn, grads, &items, &la.mn, eff, false)?;
            // dres becomes ∂L/∂h: the residual path plus the norm's share.
            b.rmsnorm_backward(
                &mut s.dres,
                grads,
                &s.dmn,
                &la.h,
                &la.mn_rstd,
                eff,
                refs.mlp_norm.clone(),
            )?;
            // Attention branch: h = x + o(mix(attn(rope(q(an)), rope(k(an)), v(an)))).
            let o_in = la.mix.as_ref().map_or(&la.heads, |m| &m[0]);
            let [ou, oz] = &la.o_uz;
            b.linear_backward(
                &mut s.dmixed,
                grads,
                &s.dres,
                o_in,
                ou,
                oz,
                eff,
                &refs.o,
                false,
            )?;
            let dheads = match (&la.mix, &refs.mix) {
                (Some([_, u, z]), Some(mix)) => {
                    b.mix_backward(&mut s.dheads, grads, &s.dmixed, u, z, eff, mix, false)?;
                    &s.dheads
                }
                _ => &s.dmixed,
            };
            b.fill_zero(&mut s.dqr)?;
            b.fill_zero(&mut s.dkr)?;
            b.fill_zero(&mut s.dv)?;
            b.attention_backward(
                &mut s.dqr, &mut s.dkr, &mut s.dv, dheads, &la.heads, &la.qr, &la.kr, &la.v[0],
                &la.att, dims,
            )?;
            let (cos, sin) = (&self.cos, &self.sin);
            b.rope_backward(&mut s.dq, &s.dqr, cos, sin, seq, d, hd, false)?;
            b.rope_backward(&mut s.dk, &s.dkr, cos, sin, seq, d, hd, false)?;
            let items = [
                linear_in(&s.dq, &la.q, &refs.q),
                linear_in(&s.dk, &la.k, &refs.k),
                linear_in(&s.dv, &la.v, &refs.v),
            ];
            b.linears_backward(&mut s.dan, grads, &items, &la.an, eff, false)?;
            b.rmsnorm_backward(
                &mut s.dres,
                grads,
                &s.dan,
                x,
                &la.an_rstd,
                eff,
                refs.attn_norm.clone(),
            )?;
        }
        b.embed_backward(grads, &s.dres, &acts.tokens, &layout.emb)?;
        Ok(())
    }

    /// Logits [rows.len(), V] of the given rows (batch·seq order) of the last forward.
    pub fn logits(&mut self, rows: &[usize]) -> Result<Vec<B::Elem>, ModelError> {
        let acts = self.acts.as_ref().expect("logits follow a forward");
        let (d, n) = (self.config.n_embd, acts.batch * acts.seq);
        assert!(rows.iter().all(|&r| r < n), "rows of the last forward");
        // The rows are picked where `hf` lives: the standard embedding's forward is a row
        // gather, here of `hf` as a table of n rows. Batched sampling asks for one row of
        // every sequence's window a step; `hf` itself never travels to the host.
        let gather = EmbRef::Standard {
            table: 0..n * d,
            vocab: n,
            d,
        };
        let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let idx = self.backend.upload_tokens(&idx)?;
        let mut h = self.backend.zeros(rows.len() * d)?;
        self.backend
            .embed_forward(&mut h, &idx, &acts.hf, &gather)?;
        let mut out = self.backend.zeros(rows.len() * self.config.vocab_size)?;
        self.backend
            .logits(&mut out, &h, &self.eff, &self.layout.emb)?;
        Ok(self.backend.download(&out)?)
    }

    fn ensure_acts(&mut self, batch: usize, seq: usize) -> BackendResult<()> {
        if self
            .acts
            .as_ref()
            .is_some_and(|a| a.batch == batch && a.seq == seq)
        {
            return Ok(());
        }
        self.acts = None; // free the old shape first
        self.acts = Some(Acts::new(&self.backend, &self.config, batch, seq)?);
        Ok(())
    }
}

fn linear_out<'a, T>(
    out: &'a mut T,
    u: &'a mut T,
    z: &'a mut T,
    lin: &'a LinearRef,
) -> LinearOut<'a, T> {
    LinearOut { out, u, z, lin }
}

/// The backward's view of a linear's forward buffers [y, u, z].
fn linear_in<'a, T>(dout: &'a T, saved: &'a [T; 3], lin: &'a LinearRef) -> LinearIn<'a, T> {
    LinearIn {
        dout,
        u: &saved[1],
        z: &saved[2],
        lin,
    }
}

impl<B: Backend> LayerActs<B> {
    fn new(b: &B, cfg: &ModelConfig, batch: usize, seq: usize) -> BackendResult<Self> {
        let n = batch * seq;
        let (d, f) = (cfg.n_embd, cfg.mlp_hidden());
        let nd = || b.zeros(n * d);
        let nf = || b.zeros(n * f);
        // What linear_forward saves (u, z), which some backends do not need.
        let sd = || b.zeros(b.linear_saved_len(n * d));
        let sf = || b.zeros(b.linear_saved_len(n * f));
        Ok(LayerActs {
            an: nd()?,
            an_rstd: b.zeros(n)?,
            q: [nd()?, sd()?, sd()?],
            k: [nd()?, sd()?, sd()?],
            v: [nd()?, sd()?, sd()?],
            qr: nd()?,
            kr: nd()?,
            att: b.zeros(b.attention_saved_len(
                batch,
                AttnDims {
                    seq_len: seq,
                    n_head: cfg.n_head,
                    head_dim: cfg.head_dim(),
                },
            ))?,
            heads: nd()?,
            mix: if cfg.head_mixing {
                Some([nd()?, nd()?, sd()?])
            } else {
                None
            },
            o_uz: [sd()?, sd()?],
            h: nd()?,
            mn: nd()?,
            mn_rstd: b.zeros(n)?,
            gate: [nf()?, sd()?, sf()?],
            up: [nf()?, sd()?, sf()?],
            sw: nf()?,
            down_uz: [sf()?, sd()?],
        })
    }
}

impl<B: Backend> Acts<B> {
    fn new(b: &B, cfg: &ModelConfig, batch: usize, seq: usize) -> BackendResult<Self> {
        let n = batch * seq;
        let d = cfg.n_embd;
        Ok(Acts {
            batch,
            seq,
            tokens: b.upload_tokens(&vec![0; n])?,
            targets: None,
            resid: (0..=cfg.n_layer)
                .map(|_| b.zeros(n * d))
                .collect::<Result<_, _>>()?,
            layers: (0..cfg.n_layer)
                .map(|_| LayerActs::new(b, cfg, batch, seq))
                .collect::<Result<_, _>>()?,
            tmp: b.zeros(n * d)?,
            hf: b.zeros(n * d)?,
            hf_rstd: b.zeros(n)?,
            lse: b.zeros(n)?,
            ce_saved: None,
            kl_lse: None,
            teacher: None,
            grad: None,
        })
    }
}

impl<B: Backend> Scratch<B> {
    fn new(b: &B, cfg: &ModelConfig, n: usize) -> BackendResult<Self> {
        let (d, f) = (cfg.n_embd, cfg.mlp_hidden());
        let nd = || b.zeros(n * d);
        let nf = || b.zeros(n * f);
        Ok(Scratch {
            dres: nd()?,
            dsw: nf()?,
            dgate: nf()?,
            dup: nf()?,
            dmn: nd()?,
            dmixed: nd()?,
            dheads: nd()?,
            dqr: nd()?,
            dkr: nd()?,
            dv: nd()?,
            dq: nd()?,
            dk: nd()?,
            dan: nd()?,
            dhf: nd()?,
        })
    }
}

impl ParamLayout {
    /// Named f32 tensors of a flat host buffer in this layout.
    pub fn tensors_of<T: Real>(&self, host: &[T]) -> BTreeMap<String, Tensor> {
        self.tensors
            .iter()
            .map(|slot| {
                let data = host[slot.range.clone()]
                    .iter()
                    .map(|v| v.to_f32().unwrap_or(f32::NAN))
                    .collect();
                (
                    slot.spec.name.clone(),
                    Tensor {
                        shape: slot.spec.shape.clone(),
                        data,
                    },
                )
            })
            .collect()
    }
}
