//! The Walsh model of SPEC §2 with its weights in heap: loading from a validated blob and the
//! forward pass over a block of new positions (the whole prompt at once, or one decode step).

use crate::attention::{AttentionScratch, attend};
use crate::embedding_table::{EmbeddingTable, HeadScratch};
use crate::head_mixing::{HeadMixing, MixScratch};
use crate::kv_cache::KvCache;
use crate::math::{add_assign, rmsnorm, rope_heads, swiglu};
use crate::profile::{Laps, Phase};
use crate::ternary_linear::{TernaryLinear, TernaryScratch};
use thiserror::Error;
use walsh_spec::blob::{Blob, BlobError};
use walsh_spec::config::{Algebra, Embedding, ModelConfig};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ForwardError {
    #[error("token id {token} is outside the model's vocabulary of {vocab}")]
    TokenOutOfRange { token: u32, vocab: usize },
    #[error("{new} new positions do not fit: {used} of the {capacity}-position context are used")]
    ContextFull {
        new: usize,
        used: usize,
        capacity: usize,
    },
}

#[derive(Debug)]
enum Embeddings {
    Standard(EmbeddingTable),
    Hash {
        e1: EmbeddingTable,
        e2: EmbeddingTable,
    },
}

#[derive(Debug)]
struct Layer {
    attn_norm: Vec<f32>,
    q: TernaryLinear,
    k: TernaryLinear,
    v: TernaryLinear,
    o: TernaryLinear,
    mix: Option<HeadMixing>,
    mlp_norm: Vec<f32>,
    gate: TernaryLinear,
    up: TernaryLinear,
    down: TernaryLinear,
}

#[derive(Debug)]
pub struct Model {
    pub config: ModelConfig,
    embeddings: Embeddings,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    /// The RoPE angles' cos and (−sin, sin), each duplicated per pair: [T, hd] (math::rope).
    rope_cos: Vec<f32>,
    rope_sin: Vec<f32>,
}

fn floats(blob: &Blob<'_>, name: &str) -> Result<Vec<f32>, BlobError> {
    blob.tensor(name)
        .ok_or_else(|| BlobError::MissingTensor(name.to_string()))?
        .to_f32()
}

fn linear(
    blob: &Blob<'_>,
    prefix: &str,
    inp: usize,
    out: usize,
) -> Result<TernaryLinear, BlobError> {
    let name = format!("{prefix}.weight");
    let w = blob
        .tensor(&name)
        .ok_or(BlobError::MissingTensor(name))?
        .to_ternary()?;
    Ok(TernaryLinear::new(
        blob.config.algebra,
        inp,
        out,
        &w,
        floats(blob, &format!("{prefix}.alpha"))?,
        floats(blob, &format!("{prefix}.beta"))?,
    ))
}

/// An embedding table built row by row from the blob's bytes (SPEC §2.6): integer rows keep their
/// codes (and rotation), f32 / f16 rows are coded at load; no full-size f32 copy is made.
fn table(blob: &Blob<'_>, name: &str, cols: usize) -> Result<EmbeddingTable, BlobError> {
    let view = blob
        .tensor(name)
        .ok_or_else(|| BlobError::MissingTensor(name.to_string()))?;
    if let Some(rows) = view.quant_rows_ref()? {
        return EmbeddingTable::from_quant_rows(&rows).map_err(|e| view.quant_error(e));
    }
    EmbeddingTable::from_float_rows(view.numel() / cols.max(1), cols, |r, out| {
        if view.float_row_into(r, out) {
            Ok(())
        } else {
            Err(BlobError::DtypeNotAllowed {
                tensor: view.name.clone(),
                dtype: view.dtype.name(),
            })
        }
    })
}

/// The buffers of a forward pass, kept between calls (a generation holds one), so that a decode
/// step allocates nothing: each is resized to the call's rows and fully overwritten.
#[derive(Debug, Default)]
pub struct ForwardScratch {
    x: Vec<f32>,
    xn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    mixed: Vec<f32>,
    proj: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    attn: AttentionScratch,
    mixing: MixScratch,
    tern: TernaryScratch,
    head: HeadScratch,
    /// The hash logits' two tables' scores and the final normed row.
    s1: Vec<f32>,
    s2: Vec<f32>,
    h: Vec<f32>,
}

impl Model {
    /// Builds the heap model from a blob that `blob::parse` accepted.
    pub fn from_blob(blob: &Blob<'_>) -> Result<Self, BlobError> {
        let c = &blob.config;
        let (d, f, hd) = (c.n_embd, c.mlp_hidden(), c.head_dim());
        let embeddings = match c.embedding {
            Embedding::Standard => Embeddings::Standard(table(blob, "tok_emb.weight", d)?),
            Embedding::Hash => Embeddings::Hash {
                e1: table(blob, "tok_emb.hash1", d)?,
                e2: table(blob, "tok_emb.hash2", d)?,
            },
        };
        let mut layers = Vec::with_capacity(c.n_layer);
        for l in 0..c.n_layer {
            let p = format!("layers.{l}");
            let mix = if c.head_mixing {
                Some(HeadMixing::new(
                    c.algebra,
                    hd,
                    &floats(blob, &format!("{p}.attn.mix.weight"))?,
                    floats(blob, &format!("{p}.attn.mix.beta"))?,
                ))
            } else {
                None
            };
            layers.push(Layer {
                attn_norm: floats(blob, &format!("{p}.attn_norm.weight"))?,
                q: linear(blob, &format!("{p}.attn.q"), d, d)?,
                k: linear(blob, &format!("{p}.attn.k"), d, d)?,
                v: linear(blob, &format!("{p}.attn.v"), d, d)?,
                o: linear(blob, &format!("{p}.attn.o"), d, d)?,
                mix,
                mlp_norm: floats(blob, &format!("{p}.mlp_norm.weight"))?,
                gate: linear(blob, &format!("{p}.mlp.gate"), d, f)?,
                up: linear(blob, &format!("{p}.mlp.up"), d, f)?,
                down: linear(blob, &format!("{p}.mlp.down"), f, d)?,
            });
        }
        let half = hd / 2;
        let mut rope_cos = Vec::with_capacity(c.block_size * hd);
        let mut rope_sin = Vec::with_capacity(c.block_size * hd);
        for p in 0..c.block_size {
            for i in 0..half {
                let inv_freq = libm::pow(c.rope_theta, -((2 * i) as f64) / hd as f64);
                let angle = p as f64 * inv_freq;
                let (cos, sin) = (libm::cos(angle) as f32, libm::sin(angle) as f32);
                rope_cos.extend([cos, cos]);
                rope_sin.extend([-sin, sin]);
            }
        }
        Ok(Model {
            config: c.clone(),
            embeddings,
            layers,
            norm: floats(blob, "norm.weight")?,
            rope_cos,
            rope_sin,
        })
    }

    /// Heap bytes a model of this config takes in the engine (checked before anything is
    /// allocated, since a small blob can describe a huge config).
    pub fn heap_estimate(c: &ModelConfig) -> u64 {
        // In u64 with checked arithmetic (saturating at u64::MAX, which every limit refuses): a
        // usize is 32 bits on wasm32, where 256 layers × 65,536 positions × 256 dimensions of
        // KV cache would wrap to 0 and a model the native engine refuses would load.
        let (emb, brain) = c.param_counts();
        let u = |v: usize| v as u64;
        let mul = |a: u64, b: u64| a.checked_mul(b);
        let estimate = || -> Option<u64> {
            let weights = mul(4, emb.checked_add(brain)?)?;
            let rope = mul(4, mul(u(c.block_size), u(c.head_dim()))?)?;
            let kv = KvCache::bytes_for(c.n_layer, c.block_size, c.n_embd, c.n_head);
            let row = mul(8, u(c.n_embd))?
                .checked_add(mul(2, u(c.mlp_hidden()))?)?
                .checked_add(u(c.vocab_size))?;
            let activations = mul(4, mul(u(c.block_size), row)?)?;
            weights
                .checked_add(rope)?
                .checked_add(kv)?
                .checked_add(activations)
        };
        estimate().unwrap_or(u64::MAX)
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(
            self.config.n_layer,
            self.config.block_size,
            self.config.n_embd,
            self.config.n_head,
        )
    }

    /// Whether `cache` has the shape [`Model::new_cache`] gives this model.
    pub fn fits(&self, cache: &KvCache) -> bool {
        let c = &self.config;
        cache.has_shape(c.n_layer, c.block_size, c.n_embd, c.n_head)
    }

    fn embed(&self, token: u32, out: &mut [f32], hs: &mut HeadScratch) {
        let t = token as usize;
        match &self.embeddings {
            Embeddings::Standard(e) => e.row_into(t, out),
            Embeddings::Hash { e1, e2 } => {
                let b = self.config.hash_buckets;
                e1.row_into(t % b, out);
                e2.add_row((t / b) % b, out, hs);
            }
        }
    }

    /// Tied output logits of one final hidden row (after the final RMSNorm), SPEC §2.4.
    fn logits_of(
        &self,
        h: &[f32],
        out: &mut [f32],
        s1: &mut Vec<f32>,
        s2: &mut Vec<f32>,
        hs: &mut HeadScratch,
    ) {
        match &self.embeddings {
            Embeddings::Standard(e) => e.logits(h, out, hs),
            Embeddings::Hash { e1, e2 } => {
                let b = self.config.hash_buckets;
                // Table 2 is only reached at rows ⌊t/B⌋ mod B < ⌈V/B⌉.
                let rows2 = b.min(self.config.vocab_size.div_ceil(b));
                s1.resize(b, 0.0);
                s2.resize(rows2, 0.0);
                e1.logits(h, s1, hs);
                e2.logits(h, s2, hs);
                // ℓ_t = s1[t mod B] + s2[⌊t/B⌋ mod B], in runs of B ids that share ⌊t/B⌋: no
                // division per id.
                for (k, run) in out.chunks_mut(b).enumerate() {
                    let c = s2[k % b];
                    run.iter_mut().zip(s1.iter()).for_each(|(o, a)| *o = a + c);
                }
            }
        }
    }

    fn rope(&self, row: &mut [f32], pos: usize) {
        let hd = self.config.head_dim();
        let cos = &self.rope_cos[pos * hd..(pos + 1) * hd];
        let sin = &self.rope_sin[pos * hd..(pos + 1) * hd];
        rope_heads(row, cos, sin);
    }

    /// Runs `tokens` at the next positions of `cache` and returns the logits of the last one
    /// (`all = false`, V values) or of every one (`all = true`, tokens.len() × V values).
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        all: bool,
    ) -> Result<Vec<f32>, ForwardError> {
        let mut logits = Vec::new();
        self.forward_into(
            tokens,
            cache,
            all,
            &mut ForwardScratch::default(),
            &mut logits,
        )?;
        Ok(logits)
    }

    /// [`Model::forward`] into `logits` (resized), with buffers from `b`: once `b` and `logits`
    /// have served a call of as many rows, a call allocates nothing.
    pub fn forward_into(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        all: bool,
        b: &mut ForwardScratch,
        logits: &mut Vec<f32>,
    ) -> Result<(), ForwardError> {
        let c = &self.config;
        let (d, f, hd, nh) = (c.n_embd, c.mlp_hidden(), c.head_dim(), c.n_head);
        let t = tokens.len();
        let p0 = cache.len();
        if p0 + t > cache.capacity() {
            return Err(ForwardError::ContextFull {
                new: t,
                used: p0,
                capacity: cache.capacity(),
            });
        }
        if let Some(&bad) = tokens.iter().find(|&&tok| tok as usize >= c.vocab_size) {
            return Err(ForwardError::TokenOutOfRange {
                token: bad,
                vocab: c.vocab_size,
            });
        }
        // Every buffer is fully overwritten before it is read (embed, rmsnorm, the linears,
        // matvec_strided, weighted_rows), so resizing keeps no stale value visible.
        for (buf, n) in [
            (&mut b.x, t * d),
            (&mut b.xn, t * d),
            (&mut b.q, t * d),
            (&mut b.k, t * d),
            (&mut b.v, t * d),
            (&mut b.att, t * d),
            (&mut b.mixed, t * d),
            (&mut b.proj, t * d),
            (&mut b.gate, t * f),
            (&mut b.up, t * f),
        ] {
            buf.resize(n, 0.0);
        }
        // The scores grow by one position per decode step: reserve the whole context once.
        b.attn.reserve(cache);
        let mut laps = Laps::start();
        for (row, &tok) in b.x.chunks_exact_mut(d).zip(tokens) {
            self.embed(tok, row, &mut b.head);
        }
        laps.lap(Phase::Embed);
        for (l, layer) in self.layers.iter().enumerate() {
            for (xr, nr) in b.x.chunks_exact(d).zip(b.xn.chunks_exact_mut(d)) {
                rmsnorm(xr, &layer.attn_norm, nr);
            }
            laps.lap(Phase::Norm);
            layer.q.forward(&b.xn, &mut b.q, &mut b.tern);
            layer.k.forward(&b.xn, &mut b.k, &mut b.tern);
            layer.v.forward(&b.xn, &mut b.v, &mut b.tern);
            laps.lap(Phase::Linear);
            for i in 0..t {
                self.rope(&mut b.q[i * d..(i + 1) * d], p0 + i);
                self.rope(&mut b.k[i * d..(i + 1) * d], p0 + i);
                cache.write(
                    l,
                    p0 + i,
                    &b.k[i * d..(i + 1) * d],
                    &b.v[i * d..(i + 1) * d],
                );
            }
            laps.lap(Phase::Rope);
            for i in 0..t {
                let seen = p0 + i + 1;
                for h in 0..nh {
                    let heads = i * d + h * hd..i * d + (h + 1) * hd;
                    attend(
                        cache,
                        l,
                        h,
                        &b.q[heads.clone()],
                        seen,
                        &mut b.att[heads],
                        &mut b.attn,
                    );
                }
            }
            laps.lap(Phase::Attention);
            let attn_out = match &layer.mix {
                Some(mix) => {
                    for (xr, yr) in b.att.chunks_exact(d).zip(b.mixed.chunks_exact_mut(d)) {
                        mix.forward(xr, yr, &mut b.mixing);
                    }
                    &b.mixed
                }
                None => &b.att,
            };
            laps.lap(Phase::Mix);
            layer.o.forward(attn_out, &mut b.proj, &mut b.tern);
            laps.lap(Phase::Linear);
            add_assign(&mut b.x, &b.proj);
            laps.lap(Phase::Residual);

            for (xr, nr) in b.x.chunks_exact(d).zip(b.xn.chunks_exact_mut(d)) {
                rmsnorm(xr, &layer.mlp_norm, nr);
            }
            laps.lap(Phase::Norm);
            layer.gate.forward(&b.xn, &mut b.gate, &mut b.tern);
            layer.up.forward(&b.xn, &mut b.up, &mut b.tern);
            laps.lap(Phase::Linear);
            swiglu(&mut b.gate, &b.up);
            laps.lap(Phase::SwiGlu);
            layer.down.forward(&b.gate, &mut b.proj, &mut b.tern);
            laps.lap(Phase::Linear);
            add_assign(&mut b.x, &b.proj);
            laps.lap(Phase::Residual);
        }
        cache.advance(t);
        let v = c.vocab_size;
        let first = if all { 0 } else { t - 1 };
        logits.resize((t - first) * v, 0.0);
        b.h.resize(d, 0.0);
        for (k, i) in (first..t).enumerate() {
            rmsnorm(&b.x[i * d..(i + 1) * d], &self.norm, &mut b.h);
            self.logits_of(
                &b.h,
                &mut logits[k * v..(k + 1) * v],
                &mut b.s1,
                &mut b.s2,
                &mut b.head,
            );
        }
        laps.lap(Phase::Head);
        Ok(())
    }

    /// Heap bytes of the weights as the engine holds them.
    pub fn heap_bytes(&self) -> usize {
        let emb = match &self.embeddings {
            Embeddings::Standard(e) => e.heap_bytes(),
            Embeddings::Hash { e1, e2 } => e1.heap_bytes() + e2.heap_bytes(),
        };
        let mut total = emb + 4 * (self.norm.len() + self.rope_cos.len() + self.rope_sin.len());
        for l in &self.layers {
            total += [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down]
                .iter()
                .map(|t| t.heap_bytes())
                .sum::<usize>();
            total += 4 * (l.attn_norm.len() + l.mlp_norm.len());
            total += l.mix.as_ref().map_or(0, HeadMixing::heap_bytes);
        }
        total
    }

    pub fn algebra(&self) -> Algebra {
        self.config.algebra
    }
}
