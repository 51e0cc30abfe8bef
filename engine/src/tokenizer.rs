//! Text ↔ tokens with the HF `tokenizers` crate on the tokenizer.json carried in the blob.

use std::str::FromStr;
use thiserror::Error;

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
