//! The tokenizer: the project's GPT-2 copy, any `tokenizer.json`, or a byte-level BPE trained on
//! the corpus.

use super::tokens::TokenWidth;
use anyhow::{Context, Result, anyhow, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

use walsh_spec::text::END_OF_TEXT;

/// The default tokenizer, relative to the working directory or to the repository root.
pub const DEFAULT_TOKENIZER: &str = "models/tokenizer-gpt2.json";

/// `models/tokenizer-gpt2.json` in the working directory if it is there, else the repository's
/// copy (found from this crate's source directory).
pub fn default_tokenizer_path() -> Result<PathBuf> {
    let local = PathBuf::from(DEFAULT_TOKENIZER);
    if local.is_file() {
        return Ok(local);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(DEFAULT_TOKENIZER);
    if repo.is_file() {
        return Ok(repo);
    }
    bail!(
        "default tokenizer not found: neither {} nor {} exists (pass --tokenizer PATH)",
        local.display(),
        repo.display()
    )
}

/// A tokenizer ready to encode, with what the sidecars record about it.
pub struct LoadedTokenizer {
    pub tokenizer: Tokenizer,
    /// The `tokenizer.json` bytes (copied next to the token files).
    pub json: Vec<u8>,
    pub sha256: String,
    pub eos_token_id: u32,
    /// One more than the largest id.
    pub vocab_size: u64,
    pub width: TokenWidth,
}

/// Parses a `tokenizer.json` (`origin` names it in errors) and checks it has [`END_OF_TEXT`] and a
/// vocabulary that fits in u32 ids. Truncation and padding are switched off: every document is
/// encoded whole.
pub fn load_tokenizer(json: Vec<u8>, origin: &str) -> Result<LoadedTokenizer> {
    let mut tokenizer = Tokenizer::from_bytes(&json)
        .map_err(|e| anyhow!("{origin}: not a valid tokenizer.json ({e})"))?;
    tokenizer
        .with_truncation(None)
        .map_err(|e| anyhow!("{origin}: cannot disable truncation ({e})"))?;
    tokenizer.with_padding(None);
    let eos_token_id = tokenizer.token_to_id(END_OF_TEXT).ok_or_else(|| {
        anyhow!("{origin}: the tokenizer has no {END_OF_TEXT} token in its vocabulary")
    })?;
    let max_id = tokenizer.get_vocab(true).into_values().max().unwrap_or(0);
    let vocab_size = (tokenizer.get_vocab_size(true) as u64).max(u64::from(max_id) + 1);
    let width = TokenWidth::for_vocab(vocab_size).with_context(|| origin.to_owned())?;
    let sha256 = sha256_hex(&json);
    Ok(LoadedTokenizer {
        tokenizer,
        json,
        sha256,
        eos_token_id,
        vocab_size,
        width,
    })
}

/// Lowercase hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Trains a byte-level BPE (GPT-2's pre-tokenization, no prefix space, so decoding gives back the
/// text exactly) of `vocab_size` ids on the documents, with [`END_OF_TEXT`] as its special token (id 0),
/// and returns its `tokenizer.json`. `vocab_size` must leave room for the 256 byte symbols and
/// [`END_OF_TEXT`]; a small corpus may give fewer ids than asked.
pub fn train_bpe<I>(documents: I, vocab_size: u32) -> Result<Vec<u8>>
where
    I: Iterator<Item = String> + Send,
{
    if vocab_size < 257 {
        bail!(
            "--train-tokenizer {vocab_size}: the vocabulary needs at least 257 ids \
             (256 bytes and {END_OF_TEXT})"
        );
    }
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size as usize)
        .min_frequency(0)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(vec![AddedToken::from(END_OF_TEXT, true)])
        .build();
    let byte_level = ByteLevel::default().add_prefix_space(false);
    let mut tokenizer = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_normalizer(None::<NormalizerWrapper>)
        .with_pre_tokenizer(Some(byte_level))
        .with_post_processor(Some(byte_level.trim_offsets(false)))
        .with_decoder(Some(byte_level))
        .build()
        .map_err(|e| anyhow!("building the tokenizer: {e}"))?;
    tokenizer
        .train(&mut trainer, documents)
        .map_err(|e| anyhow!("training the tokenizer: {e}"))?;
    let tokenizer = Tokenizer::from(tokenizer);
    let json = tokenizer
        .to_string(false)
        .map_err(|e| anyhow!("serializing the trained tokenizer: {e}"))?;
    Ok(json.into_bytes())
}
