//! Text ↔ tokens with the HF `tokenizers` crate on the tokenizer.json carried in the blob.

use std::str::FromStr;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenizerError {
    #[error("tokenizer.json could not be loaded: {0}")]
    Load(String),
    #[error("tokenizer has {tokenizer} tokens but the model's vocabulary is {model}")]
    VocabTooLarge { tokenizer: usize, model: usize },
    #[error("could not encode the prompt: {0}")]
    Encode(String),
    #[error("could not decode tokens: {0}")]
    Decode(String),
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
        let inner = tokenizers::Tokenizer::from_str(json)
            .map_err(|e| TokenizerError::Load(e.to_string()))?;
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
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    /// The text of one token (for `--logprobs`), e.g. "Ġthe" shown as " the".
    pub fn token_text(&self, id: u32) -> String {
        self.decode(&[id]).unwrap_or_else(|_| format!("<{id}>"))
    }
}
