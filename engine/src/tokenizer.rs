//! Text ↔ tokens with the HF `tokenizers` crate on the tokenizer the blob carries: its
//! tokenizer.json, or the compact form (SPEC §4.2), rebuilt into the same tokenizer without JSON.

use serde_json::{Map, Value};
use std::str::FromStr;
use thiserror::Error;
use tokenizers::models::bpe::BPE;
use tokenizers::{
    AddedToken, DecoderWrapper, ModelWrapper, NormalizerWrapper, PaddingParams,
    PostProcessorWrapper, PreTokenizerWrapper, TokenizerBuilder, TruncationParams,
};
use walsh_spec::blob::CompactTokenizer;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenizerError {
    #[error("tokenizer.json could not be loaded: {0}")]
    Load(String),
    #[error("tokenizer.json is not supported: {0}")]
    Unsupported(String),
    #[error("eos_token_id {eos} is not a token of the tokenizer ({vocab} tokens)")]
    EosOutOfRange { eos: u32, vocab: usize },
    #[error("tokenizer has {tokenizer} tokens but the model's vocabulary is {model}")]
    VocabTooLarge { tokenizer: usize, model: usize },
    #[error("could not encode the prompt: {0}")]
    Encode(String),
    #[error("could not decode tokens: {0}")]
    Decode(String),
}

/// Component types the engine accepts, by field of tokenizer.json. The `tokenizers` crate panics
/// (instead of returning an error) on some malformed components (huggingface/tokenizers#2151),
/// and a panic traps the canister, so anything outside byte-level BPE's usual parts is refused
/// before the crate sees it.
const ALLOWED: &[(&str, &[&str])] = &[
    ("model", &["BPE"]),
    (
        "normalizer",
        &[
            "NFC",
            "NFD",
            "NFKC",
            "NFKD",
            "Lowercase",
            "Strip",
            "StripAccents",
            "Replace",
            "Prepend",
            "Sequence",
        ],
    ),
    (
        "pre_tokenizer",
        &[
            "ByteLevel",
            "Split",
            "Whitespace",
            "WhitespaceSplit",
            "Punctuation",
            "Digits",
            "Metaspace",
            "Sequence",
        ],
    ),
    (
        "post_processor",
        &[
            "ByteLevel",
            "TemplateProcessing",
            "RobertaProcessing",
            "BertProcessing",
            "Sequence",
        ],
    ),
    (
        "decoder",
        &[
            "ByteLevel",
            "BPEDecoder",
            "Metaspace",
            "Replace",
            "Strip",
            "Fuse",
            "ByteFallback",
            "Sequence",
        ],
    ),
];

fn check_component(
    field: &str,
    v: &serde_json::Value,
    allowed: &[&str],
) -> Result<(), TokenizerError> {
    let unsupported = |why: String| TokenizerError::Unsupported(format!("{field}: {why}"));
    if v.is_null() && field != "model" {
        return Ok(());
    }
    let obj = v
        .as_object()
        .ok_or_else(|| unsupported("must be an object".into()))?;
    let ty = match obj.get("type").and_then(|t| t.as_str()) {
        Some(t) => t,
        // BPE models may omit their type.
        None if field == "model" => "BPE",
        None => return Err(unsupported("has no \"type\"".into())),
    };
    if !allowed.contains(&ty) {
        return Err(unsupported(format!(
            "type {:?} is not one of {allowed:?}",
            walsh_spec::config::one_line(ty)
        )));
    }
    if ty == "Sequence" {
        let key = match field {
            "normalizer" => "normalizers",
            "pre_tokenizer" => "pretokenizers",
            "post_processor" => "processors",
            _ => "decoders",
        };
        let items = obj
            .get(key)
            .and_then(|s| s.as_array())
            .ok_or_else(|| unsupported(format!("Sequence without a \"{key}\" list")))?;
        for item in items {
            if item.is_null() {
                return Err(unsupported("null inside a Sequence".into()));
            }
            check_component(field, item, allowed)?;
        }
    }
    Ok(())
}

/// Checks the components and returns the JSON the `tokenizers` crate gets: re-serialized from
/// what was checked (so duplicate keys cannot smuggle in a different component) and with the
/// model's type made explicit (else the crate would try other model kinds too).
fn check_components(json: &str) -> Result<String, TokenizerError> {
    let mut v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| TokenizerError::Load(walsh_spec::config::one_line(&e.to_string())))?;
    let obj = v
        .as_object()
        .ok_or_else(|| TokenizerError::Load("tokenizer.json is not a JSON object".into()))?;
    for (field, allowed) in ALLOWED {
        let value = obj.get(*field).unwrap_or(&serde_json::Value::Null);
        check_component(field, value, allowed)?;
    }
    if let Some(model) = v.get_mut("model").and_then(|m| m.as_object_mut()) {
        model.insert("type".into(), serde_json::Value::String("BPE".into()));
    }
    Ok(v.to_string())
}

/// An entry of tokenizer.json's `added_tokens`, as the `tokenizers` crate reads it.
#[derive(serde::Deserialize)]
struct AddedTokenWithId {
    // Required, as the crate requires it; like the crate, the token keeps the id the vocabulary
    // gives it.
    #[allow(dead_code)]
    id: u32,
    #[serde(flatten)]
    token: AddedToken,
}

/// The BPE model's settings (everything but `vocab` and `merges`), as the crate reads them.
#[derive(serde::Deserialize)]
struct BpeSettings {
    dropout: Option<f32>,
    unk_token: Option<String>,
    continuing_subword_prefix: Option<String>,
    end_of_word_suffix: Option<String>,
    fuse_unk: Option<bool>,
    byte_fallback: Option<bool>,
    ignore_merges: Option<bool>,
}

fn load_err(e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Load(walsh_spec::config::one_line(&e.to_string()))
}

/// A component of the skeleton (null or absent: none), deserialized as the crate does.
fn component<T: serde::de::DeserializeOwned>(
    skeleton: &Map<String, Value>,
    field: &str,
) -> Result<Option<T>, TokenizerError> {
    match skeleton.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| load_err(format!("{field}: {e}"))),
    }
}

/// The `tokenizers` tokenizer a compact tokenizer stands for, built as the crate's own
/// deserializer builds it from the equivalent tokenizer.json: the BPE model from the vocabulary
/// and merges, the other components from the skeleton, then the added tokens.
fn build_compact(t: &CompactTokenizer) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let sk = &t.skeleton;
    for (field, allowed) in ALLOWED {
        let value = sk.get(*field).unwrap_or(&Value::Null);
        check_component(field, value, allowed)?;
    }
    if let Some(v) = sk.get("version")
        && v.as_str() != Some("1.0")
    {
        return Err(load_err(format!(
            "Unknown tokenizer version '{}'",
            walsh_spec::config::one_line(&v.to_string())
        )));
    }
    let settings: BpeSettings =
        serde_json::from_value(sk.get("model").cloned().unwrap_or(Value::Null))
            .map_err(|e| load_err(format!("model: {e}")))?;
    let vocab: tokenizers::models::bpe::Vocab = t
        .vocab
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i as u32))
        .collect();
    let merges: Vec<(String, String)> = t
        .merges
        .iter()
        .map(|&(a, b)| (t.vocab[a as usize].clone(), t.vocab[b as usize].clone()))
        .collect();
    let mut bpe = BPE::builder().vocab_and_merges(vocab, merges);
    if let Some(d) = settings.dropout {
        bpe = bpe.dropout(d);
    }
    if let Some(u) = settings.unk_token {
        bpe = bpe.unk_token(u);
    }
    if let Some(p) = settings.continuing_subword_prefix {
        bpe = bpe.continuing_subword_prefix(p);
    }
    if let Some(p) = settings.end_of_word_suffix {
        bpe = bpe.end_of_word_suffix(p);
    }
    if let Some(f) = settings.fuse_unk {
        bpe = bpe.fuse_unk(f);
    }
    if let Some(f) = settings.byte_fallback {
        bpe = bpe.byte_fallback(f);
    }
    if let Some(f) = settings.ignore_merges {
        bpe = bpe.ignore_merges(f);
    }
    let bpe = bpe.build().map_err(load_err)?;
    let built = TokenizerBuilder::<
        ModelWrapper,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(ModelWrapper::BPE(bpe))
    .with_normalizer(component(sk, "normalizer")?)
    .with_pre_tokenizer(component(sk, "pre_tokenizer")?)
    .with_post_processor(component(sk, "post_processor")?)
    .with_decoder(component(sk, "decoder")?)
    .with_truncation(component::<TruncationParams>(sk, "truncation")?)
    .with_padding(component::<PaddingParams>(sk, "padding")?)
    .build()
    .map_err(load_err)?;
    let mut tokenizer = tokenizers::Tokenizer::from(built);
    let added: Vec<AddedTokenWithId> = component(sk, "added_tokens")?.unwrap_or_default();
    let tokens: Vec<AddedToken> = added.into_iter().map(|t| t.token).collect();
    tokenizer.add_tokens(&tokens);
    Ok(tokenizer)
}

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer({} tokens)", self.vocab_size())
    }
}

impl Tokenizer {
    /// Loads a tokenizer.json and checks it fits a model of `model_vocab` tokens.
    pub fn from_json(json: &str, model_vocab: usize) -> Result<Self, TokenizerError> {
        let checked = check_components(json)?;
        let inner = tokenizers::Tokenizer::from_str(&checked)
            .map_err(|e| TokenizerError::Load(walsh_spec::config::one_line(&e.to_string())))?;
        let t = Tokenizer { inner };
        if t.vocab_size() > model_vocab {
            return Err(TokenizerError::VocabTooLarge {
                tokenizer: t.vocab_size(),
                model: model_vocab,
            });
        }
        Ok(t)
    }

    /// Rebuilds a tokenizer from the compact form of SPEC §4.2 (the bytes of the blob's
    /// tokenizer section) and checks it fits a model of `model_vocab` tokens.
    pub fn from_compact(bytes: &[u8], model_vocab: usize) -> Result<Self, TokenizerError> {
        let compact = CompactTokenizer::decode(bytes).map_err(load_err)?;
        let t = Tokenizer {
            inner: build_compact(&compact)?,
        };
        if t.vocab_size() > model_vocab {
            return Err(TokenizerError::VocabTooLarge {
                tokenizer: t.vocab_size(),
                model: model_vocab,
            });
        }
        Ok(t)
    }

    /// Loads the tokenizer section of a blob, whichever form it has.
    pub fn from_section(
        section: walsh_spec::blob::TokenizerSection<'_>,
        model_vocab: usize,
    ) -> Result<Self, TokenizerError> {
        match section {
            walsh_spec::blob::TokenizerSection::Json(json) => Self::from_json(json, model_vocab),
            walsh_spec::blob::TokenizerSection::Compact(bytes) => {
                Self::from_compact(bytes, model_vocab)
            }
        }
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| TokenizerError::Encode(walsh_spec::config::one_line(&e.to_string())))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| TokenizerError::Decode(walsh_spec::config::one_line(&e.to_string())))
    }

    /// The text of one token (for `--logprobs`), e.g. "Ġthe" shown as " the".
    pub fn token_text(&self, id: u32) -> String {
        self.decode(&[id]).unwrap_or_else(|_| format!("<{id}>"))
    }
}
