//! Token files: `NAME.bin` (token ids, little-endian, u16 or u32) with the sidecar `NAME.json`
//! (format `walsh-tokens-v1`), their writer and the memory-mapped reader [`TokenFile`].

use anyhow::{Context, Result, anyhow, bail};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The `format` field of every sidecar.
pub const FORMAT: &str = "walsh-tokens-v1";

/// How a token id is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenWidth {
    U16,
    U32,
}

impl TokenWidth {
    /// u16 for a vocabulary of at most 65,536 ids, u32 up to 2^32 ids, an error beyond.
    pub fn for_vocab(vocab_size: u64) -> Result<TokenWidth> {
        if vocab_size <= 1 << 16 {
            Ok(TokenWidth::U16)
        } else if vocab_size <= 1 << 32 {
            Ok(TokenWidth::U32)
        } else {
            bail!(
                "vocabulary of {vocab_size} tokens is too large for the token width \
                 (u32 holds at most 4294967296 ids)"
            )
        }
    }

    /// Bytes per token.
    pub fn bytes(self) -> usize {
        match self {
            TokenWidth::U16 => 2,
            TokenWidth::U32 => 4,
        }
    }

    /// The sidecar's `dtype`.
    pub fn name(self) -> &'static str {
        match self {
            TokenWidth::U16 => "u16",
            TokenWidth::U32 => "u32",
        }
    }

    pub fn from_name(name: &str) -> Option<TokenWidth> {
        match name {
            "u16" => Some(TokenWidth::U16),
            "u32" => Some(TokenWidth::U32),
            _ => None,
        }
    }
}

/// The sidecar `NAME.json` of a token file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    /// Always [`FORMAT`].
    pub format: String,
    /// `"u16"` or `"u32"`, little-endian.
    pub dtype: String,
    /// Number of tokens in the `.bin`, eos tokens included.
    pub tokens: u64,
    /// UTF-8 bytes of the documents' text the tokens encode (separators excluded), for bits per
    /// byte.
    pub bytes: u64,
    /// Number of documents; each is followed by one eos token.
    pub documents: u64,
    pub vocab_size: u64,
    pub eos_token_id: u32,
    /// sha256 of the `tokenizer.json` written next to the token files.
    pub tokenizer_sha256: String,
    /// The input files the documents came from.
    pub sources: Vec<String>,
}

impl Sidecar {
    /// The token width `dtype` names.
    pub fn width(&self) -> Result<TokenWidth> {
        TokenWidth::from_name(&self.dtype).ok_or_else(|| {
            anyhow!(
                "unknown dtype {:?} (expected \"u16\" or \"u32\")",
                self.dtype
            )
        })
    }
}

/// The `.bin` and `.json` paths of a token file named by either.
pub fn token_file_paths(path: &Path) -> (PathBuf, PathBuf) {
    if path.extension().is_some_and(|e| e == "json") {
        (path.with_extension("bin"), path.to_path_buf())
    } else {
        (path.to_path_buf(), path.with_extension("json"))
    }
}

/// Appends documents to `NAME.bin.partial`; [`TokenWriter::finish`] renames it to `NAME.bin` and
/// writes the sidecar.
pub(crate) struct TokenWriter {
    bin: PathBuf,
    partial: PathBuf,
    out: BufWriter<File>,
    width: TokenWidth,
    vocab_size: u64,
    eos: u32,
    scratch: Vec<u8>,
    pub tokens: u64,
    pub bytes: u64,
    pub documents: u64,
}

impl TokenWriter {
    pub fn create(bin: PathBuf, width: TokenWidth, vocab_size: u64, eos: u32) -> Result<Self> {
        let mut partial = bin.clone().into_os_string();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&partial)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        Ok(TokenWriter {
            bin,
            partial,
            out: BufWriter::with_capacity(1 << 20, file),
            width,
            vocab_size,
            eos,
            scratch: Vec::new(),
            tokens: 0,
            bytes: 0,
            documents: 0,
        })
    }

    /// Appends one document's ids followed by the eos token.
    pub fn push_document(&mut self, ids: &[u32], text_bytes: usize) -> Result<()> {
        self.scratch.clear();
        self.scratch.reserve((ids.len() + 1) * self.width.bytes());
        for &id in ids.iter().chain(std::iter::once(&self.eos)) {
            if u64::from(id) >= self.vocab_size {
                bail!(
                    "token id {id} is outside the vocabulary of {} tokens",
                    self.vocab_size
                );
            }
            match self.width {
                TokenWidth::U16 => self.scratch.extend_from_slice(&(id as u16).to_le_bytes()),
                TokenWidth::U32 => self.scratch.extend_from_slice(&id.to_le_bytes()),
            }
        }
        self.out
            .write_all(&self.scratch)
            .with_context(|| format!("cannot write {}", self.partial.display()))?;
        self.tokens += ids.len() as u64 + 1;
        self.bytes += text_bytes as u64;
        self.documents += 1;
        Ok(())
    }

    /// Appends `ids` as they are (no eos added), counting `text_bytes` bytes and `documents`
    /// documents (the positional split's validation part).
    pub fn push_tokens(&mut self, ids: &[u32], text_bytes: u64, documents: u64) -> Result<()> {
        self.scratch.clear();
        for &id in ids {
            if u64::from(id) >= self.vocab_size {
                bail!(
                    "token id {id} is outside the vocabulary of {} tokens",
                    self.vocab_size
                );
            }
            match self.width {
                TokenWidth::U16 => self.scratch.extend_from_slice(&(id as u16).to_le_bytes()),
                TokenWidth::U32 => self.scratch.extend_from_slice(&id.to_le_bytes()),
            }
        }
        self.out
            .write_all(&self.scratch)
            .with_context(|| format!("cannot write {}", self.partial.display()))?;
        self.tokens += ids.len() as u64;
        self.bytes += text_bytes;
        self.documents += documents;
        Ok(())
    }

    /// Cuts the tokens from position `from` on off the file and returns them; the caller sets
    /// the counts of what remains ([`TokenWriter::set_counts`]).
    pub fn split_off(&mut self, from: u64) -> Result<Vec<u32>> {
        let ctx = || format!("cannot rewrite {}", self.partial.display());
        self.out.flush().with_context(ctx)?;
        let from = from.min(self.tokens);
        let w = self.width.bytes();
        let file = self.out.get_mut();
        file.seek(SeekFrom::Start(from * w as u64))
            .with_context(ctx)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).with_context(ctx)?;
        let tail = bytes
            .chunks_exact(w)
            .map(|c| match self.width {
                TokenWidth::U16 => u32::from(u16::from_le_bytes([c[0], c[1]])),
                TokenWidth::U32 => u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            })
            .collect();
        file.set_len(from * w as u64).with_context(ctx)?;
        file.seek(SeekFrom::End(0)).with_context(ctx)?;
        self.tokens = from;
        Ok(tail)
    }

    /// Sets the byte and document counts (after [`TokenWriter::split_off`]).
    pub fn set_counts(&mut self, bytes: u64, documents: u64) {
        self.bytes = bytes;
        self.documents = documents;
    }

    /// Flushes, renames the `.partial` file into place and writes the sidecar.
    pub fn finish(self, mut sidecar: Sidecar) -> Result<Sidecar> {
        let TokenWriter {
            bin,
            partial,
            out,
            tokens,
            bytes,
            documents,
            ..
        } = self;
        let file = out
            .into_inner()
            .map_err(|e| anyhow!("cannot write {}: {}", partial.display(), e.error()))?;
        file.sync_all()
            .with_context(|| format!("cannot write {}", partial.display()))?;
        drop(file);
        std::fs::rename(&partial, &bin)
            .with_context(|| format!("cannot write {}", bin.display()))?;
        sidecar.tokens = tokens;
        sidecar.bytes = bytes;
        sidecar.documents = documents;
        let (_, json_path) = token_file_paths(&bin);
        let mut json = serde_json::to_string_pretty(&sidecar)?;
        json.push('\n');
        std::fs::write(&json_path, json)
            .with_context(|| format!("cannot write {}", json_path.display()))?;
        Ok(sidecar)
    }

    /// Passes every token written so far through `f` and, with `rewrite`, stores what it returns
    /// in its place (the ids then must fit the vocabulary still). Chunked: memory stays flat.
    pub fn map_tokens(&mut self, rewrite: bool, mut f: impl FnMut(u32) -> u32) -> Result<()> {
        let ctx = || format!("cannot rewrite {}", self.partial.display());
        self.out.flush().with_context(ctx)?;
        let file = self.out.get_mut();
        let w = self.width.bytes();
        let mut chunk = vec![0u8; (1 << 20) * w];
        let mut pos = 0u64;
        let end = self.tokens * w as u64;
        while pos < end {
            let n = ((end - pos) as usize).min(chunk.len());
            let buf = &mut chunk[..n];
            file.seek(SeekFrom::Start(pos)).with_context(ctx)?;
            file.read_exact(buf).with_context(ctx)?;
            for c in buf.chunks_exact_mut(w) {
                let id = match self.width {
                    TokenWidth::U16 => u32::from(u16::from_le_bytes([c[0], c[1]])),
                    TokenWidth::U32 => u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                };
                let new = f(id);
                if rewrite {
                    match self.width {
                        TokenWidth::U16 => c.copy_from_slice(&(new as u16).to_le_bytes()),
                        TokenWidth::U32 => c.copy_from_slice(&new.to_le_bytes()),
                    }
                }
            }
            if rewrite {
                file.seek(SeekFrom::Start(pos)).with_context(ctx)?;
                file.write_all(buf).with_context(ctx)?;
            }
            pos += n as u64;
        }
        file.seek(SeekFrom::End(0)).with_context(ctx)?;
        Ok(())
    }

    /// Removes the `.partial` file (after an error).
    pub fn abandon(self) {
        drop(self.out);
        let _ = std::fs::remove_file(&self.partial);
    }
}

/// A token file opened for reading: the sidecar, and the `.bin` memory-mapped (gigabyte files
/// cost no memory up front).
pub struct TokenFile {
    sidecar: Sidecar,
    width: TokenWidth,
    len: usize,
    map: Option<Mmap>,
}

impl std::fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenFile")
            .field("sidecar", &self.sidecar)
            .field("len", &self.len)
            .finish()
    }
}

impl TokenFile {
    /// Opens `NAME.bin` (or `NAME.json`): reads and checks the sidecar, maps the `.bin` and checks
    /// that its size is `tokens × width`.
    pub fn open(path: impl AsRef<Path>) -> Result<TokenFile> {
        let (bin, json) = token_file_paths(path.as_ref());
        let text = std::fs::read_to_string(&json)
            .with_context(|| format!("cannot read {}", json.display()))?;
        let sidecar: Sidecar = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a {FORMAT} sidecar", json.display()))?;
        if sidecar.format != FORMAT {
            bail!(
                "{}: format is {:?}, expected {FORMAT:?}",
                json.display(),
                sidecar.format
            );
        }
        let width = sidecar
            .width()
            .with_context(|| json.display().to_string())?;
        let file = File::open(&bin).with_context(|| format!("cannot read {}", bin.display()))?;
        let size = file
            .metadata()
            .with_context(|| format!("cannot read {}", bin.display()))?
            .len();
        let expected = sidecar.tokens.checked_mul(width.bytes() as u64);
        if expected != Some(size) {
            bail!(
                "{}: {size} bytes, but the sidecar says {} {} tokens ({} bytes)",
                bin.display(),
                sidecar.tokens,
                width.name(),
                sidecar.tokens.saturating_mul(width.bytes() as u64)
            );
        }
        let len = usize::try_from(sidecar.tokens)
            .map_err(|_| anyhow!("{}: too many tokens for this machine", bin.display()))?;
        let map = if size == 0 {
            None
        } else {
            // SAFETY: the mapping is read-only; token files are written once by `prepare` and
            // not modified while a trainer reads them (modifying a mapped file is undefined
            // behaviour, as with every memory-mapped reader).
            Some(
                unsafe { Mmap::map(&file) }
                    .with_context(|| format!("cannot map {}", bin.display()))?,
            )
        };
        Ok(TokenFile {
            sidecar,
            width,
            len,
            map,
        })
    }

    /// The sidecar.
    pub fn sidecar(&self) -> &Sidecar {
        &self.sidecar
    }

    pub fn width(&self) -> TokenWidth {
        self.width
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn data(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// Token `i`. Panics if `i >= len()`.
    pub fn get(&self, i: usize) -> u32 {
        assert!(
            i < self.len,
            "token index {i} out of range for {} tokens",
            self.len
        );
        let data = self.data();
        match self.width {
            TokenWidth::U16 => u16::from_le_bytes([data[2 * i], data[2 * i + 1]]).into(),
            TokenWidth::U32 => {
                u32::from_le_bytes(data[4 * i..4 * i + 4].try_into().expect("4 bytes"))
            }
        }
    }

    /// Tokens `start..start + len`. Panics if the range goes past `len()`.
    pub fn slice(&self, start: usize, len: usize) -> Vec<u32> {
        let end = start
            .checked_add(len)
            .filter(|&end| end <= self.len)
            .unwrap_or_else(|| {
                panic!(
                    "token range {start}..{start}+{len} out of range for {} tokens",
                    self.len
                )
            });
        let w = self.width.bytes();
        let bytes = &self.data()[start * w..end * w];
        match self.width {
            TokenWidth::U16 => bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]).into())
                .collect(),
            TokenWidth::U32 => bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        }
    }
}
