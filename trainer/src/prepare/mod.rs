//! `trainer prepare`: text → token files.
//!
//! Inputs are `.txt` files (documents separated by `<|endoftext|>`) and `.jsonl` files (a string
//! field `text` a line), or directories of them (recursively, sorted). Documents are read one at
//! a time, tokenized in batches in parallel (rayon) and appended in input order, each followed by
//! the `<|endoftext|>` token, to `train.bin` or `val.bin` in the output directory; each gets a
//! sidecar (`train.json`, `val.json`, see [`Sidecar`]) and the directory gets a copy of the
//! `tokenizer.json`. Memory does not grow with the corpus: it holds two batches of documents.
//!
//! The validation split is either separate inputs ([`ValSplit::Files`]) or every k-th document
//! of the inputs, starting with the first, k = round(1 / fraction) ([`ValSplit::Fraction`]).
//! Inputs of too few documents for that (fewer than k / 2, or one: a book, Tiny Shakespeare) are
//! split by position instead, as nanoGPT does: the last `fraction` of the tokens is validation.

pub mod renumber;
pub mod source;
pub mod tokenizer;
pub mod tokens;

pub use source::{Document, DocumentReader, Format, Source, collect_sources};
pub use tokenizer::{DEFAULT_TOKENIZER, LoadedTokenizer, default_tokenizer_path};
pub use tokens::{FORMAT, Sidecar, TokenFile, TokenWidth, token_file_paths};
use walsh_spec::text::END_OF_TEXT;

use anyhow::{Context, Result, anyhow, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use tokens::TokenWriter;

/// Which tokenizer `prepare` uses.
#[derive(Clone, Debug)]
pub enum TokenizerChoice {
    /// The project's GPT-2 tokenizer ([`default_tokenizer_path`]).
    Gpt2,
    /// A `tokenizer.json`.
    File(PathBuf),
    /// A byte-level BPE of this many ids trained on the training documents.
    Train(u32),
}

/// Where the validation documents come from.
#[derive(Clone, Debug)]
pub enum ValSplit {
    /// Separate inputs (files or directories).
    Files(Vec<PathBuf>),
    /// Every k-th input document, starting with the first, k = round(1 / fraction);
    /// 0 ≤ fraction ≤ 0.5; 0 gives an empty validation file. Inputs of fewer than k / 2
    /// documents (or of one) are split by position: the last `fraction` of the tokens.
    Fraction(f64),
}

/// The default [`ValSplit::Fraction`].
pub const DEFAULT_VAL_FRACTION: f64 = 0.005;

/// Documents tokenized together (one rayon batch).
pub const DEFAULT_BATCH_DOCUMENTS: usize = 1000;

/// A batch also ends once it holds this many bytes of text.
const MAX_BATCH_BYTES: usize = 32 << 20;

#[derive(Clone, Debug)]
pub struct PrepareOptions {
    pub inputs: Vec<PathBuf>,
    pub output: PathBuf,
    pub tokenizer: TokenizerChoice,
    pub val: ValSplit,
    pub batch_documents: usize,
    /// Renumber the vocabulary by frequency in the training documents ([`renumber`]).
    pub frequency_order: bool,
    /// Show a progress bar on stderr (drawn only when stderr is a terminal).
    pub progress: bool,
}

impl PrepareOptions {
    /// GPT-2, `--val-fraction 0.005`, batches of 1000 documents, no progress bar.
    pub fn new(inputs: Vec<PathBuf>, output: PathBuf) -> Self {
        PrepareOptions {
            inputs,
            output,
            tokenizer: TokenizerChoice::Gpt2,
            val: ValSplit::Fraction(DEFAULT_VAL_FRACTION),
            batch_documents: DEFAULT_BATCH_DOCUMENTS,
            frequency_order: false,
            progress: false,
        }
    }
}

/// What `prepare` wrote.
#[derive(Clone, Debug)]
pub struct PrepareSummary {
    pub train: Sidecar,
    pub val: Sidecar,
    pub train_path: PathBuf,
    pub val_path: PathBuf,
    pub tokenizer_path: PathBuf,
    /// Bytes read from the input files (tokenization pass).
    pub input_bytes: u64,
    /// The inputs held too few documents for the validation fraction: validation is the last
    /// fraction of the tokens instead of every k-th document.
    pub split_by_position: bool,
}

/// Is document `index` (counted over all inputs) a validation document?
#[derive(Clone, Copy, Debug)]
struct EveryKth(Option<u64>);

impl EveryKth {
    fn from_fraction(fraction: f64) -> Result<Self> {
        if !(0.0..=0.5).contains(&fraction) {
            bail!("--val-fraction {fraction}: must be between 0 and 0.5");
        }
        Ok(EveryKth(if fraction == 0.0 {
            None
        } else {
            Some((1.0 / fraction).round() as u64)
        }))
    }

    fn is_val(self, index: u64) -> bool {
        self.0.is_some_and(|k| index.is_multiple_of(k))
    }

    /// Inputs of fewer documents than this are split by position: every k-th document would
    /// give validation more than twice its fraction of them (or all of a single document).
    fn position_split_below(self) -> u64 {
        self.0.map_or(0, |k| k.div_ceil(2).max(2))
    }
}

/// Whether `sources` hold fewer than `n` documents (reads at most `n` of them).
fn fewer_documents_than(sources: &[Source], n: u64) -> Result<bool> {
    let mut reader = DocumentReader::new(sources.to_vec());
    let mut count = 0;
    while count < n {
        if reader.next_document()?.is_none() {
            return Ok(true);
        }
        count += 1;
    }
    Ok(false)
}

fn progress_bar(show: bool, total: u64, message: &'static str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .expect("valid template"),
    );
    bar.set_message(message);
    bar
}

fn names(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn source_names(sources: &[Source]) -> Vec<String> {
    sources
        .iter()
        .map(|s| s.path.display().to_string())
        .collect()
}

/// Runs `trainer prepare`.
pub fn prepare(opts: &PrepareOptions) -> Result<PrepareSummary> {
    let every = match &opts.val {
        ValSplit::Fraction(f) => EveryKth::from_fraction(*f)?,
        ValSplit::Files(_) => EveryKth(None),
    };
    if opts.inputs.is_empty() {
        bail!("no input files");
    }
    let train_sources = collect_sources(&opts.inputs)?;
    let position_fraction = match &opts.val {
        ValSplit::Fraction(f)
            if fewer_documents_than(&train_sources, every.position_split_below())? =>
        {
            Some(*f)
        }
        _ => None,
    };
    // Split by position: every document goes to train.bin first.
    let every = if position_fraction.is_some() {
        EveryKth(None)
    } else {
        every
    };
    let val_sources = match &opts.val {
        ValSplit::Files(files) if files.is_empty() => bail!("--val needs at least one file"),
        ValSplit::Files(files) => Some(collect_sources(files)?),
        ValSplit::Fraction(_) => None,
    };

    let tok = match &opts.tokenizer {
        TokenizerChoice::Gpt2 => read_tokenizer(&default_tokenizer_path()?)?,
        TokenizerChoice::File(path) => read_tokenizer(path)?,
        TokenizerChoice::Train(vocab_size) => {
            let json = train_on(&train_sources, every, *vocab_size, opts)?;
            tokenizer::load_tokenizer(json, "the trained tokenizer")?
        }
    };

    std::fs::create_dir_all(&opts.output)
        .with_context(|| format!("cannot create {}", opts.output.display()))?;
    let train_path = opts.output.join("train.bin");
    let val_path = opts.output.join("val.bin");
    let mut writers = [
        TokenWriter::create(
            train_path.clone(),
            tok.width,
            tok.vocab_size,
            tok.eos_token_id,
        )?,
        TokenWriter::create(
            val_path.clone(),
            tok.width,
            tok.vocab_size,
            tok.eos_token_id,
        )?,
    ];
    let input_bytes = match write_tokens(
        opts,
        &tok,
        every,
        &train_sources,
        &val_sources,
        &mut writers,
    ) {
        Ok(bytes) => bytes,
        Err(e) => {
            for w in writers {
                w.abandon();
            }
            return Err(e);
        }
    };
    if let Some(fraction) = position_fraction
        && let Err(e) = split_by_position(&mut writers, fraction, &tok)
    {
        for w in writers {
            w.abandon();
        }
        return Err(e);
    }
    let tok = if opts.frequency_order {
        match renumber_written(tok, &mut writers) {
            Ok(tok) => tok,
            Err(e) => {
                for w in writers {
                    w.abandon();
                }
                return Err(e);
            }
        }
    } else {
        tok
    };
    let [train_writer, val_writer] = writers;

    let sidecar = |sources: &[Source]| Sidecar {
        format: FORMAT.to_owned(),
        dtype: tok.width.name().to_owned(),
        tokens: 0,
        bytes: 0,
        documents: 0,
        vocab_size: tok.vocab_size,
        eos_token_id: tok.eos_token_id,
        tokenizer_sha256: tok.sha256.clone(),
        sources: source_names(sources),
    };
    let train = train_writer.finish(sidecar(&train_sources))?;
    let val = val_writer.finish(sidecar(val_sources.as_deref().unwrap_or(&train_sources)))?;
    // Written last, so that a failed run leaves an earlier run's files consistent.
    let tokenizer_path = opts.output.join("tokenizer.json");
    std::fs::write(&tokenizer_path, &tok.json)
        .with_context(|| format!("cannot write {}", tokenizer_path.display()))?;
    Ok(PrepareSummary {
        train,
        val,
        train_path,
        val_path,
        tokenizer_path,
        input_bytes,
        split_by_position: position_fraction.is_some(),
    })
}

/// Moves the last `fraction` of the tokens of `writers[0]` (at least one token, and one is
/// left) to `writers[1]`. The document cut in two counts on both sides; the bytes of the moved
/// tokens are those of their decoded text.
fn split_by_position(
    writers: &mut [TokenWriter; 2],
    fraction: f64,
    tok: &LoadedTokenizer,
) -> Result<()> {
    let total = writers[0].tokens;
    if total < 2 {
        bail!("{total} token: too little text to split into training and validation");
    }
    let val = ((total as f64 * fraction).round() as u64).clamp(1, total - 1);
    let (bytes, documents) = (writers[0].bytes, writers[0].documents);
    let tail = writers[0].split_off(total - val)?;
    let eos = tok.eos_token_id;
    let text = tok
        .tokenizer
        .decode(&tail, true)
        .map_err(|e| anyhow!("cannot decode the validation tokens ({e})"))?;
    let val_bytes = (text.len() as u64).min(bytes);
    let val_documents = tail.iter().filter(|&&id| id == eos).count() as u64;
    // The training part ends inside a document unless the cut fell right after an eos token.
    let cut_inside = writers[0].split_off(total - val - 1)?;
    let cut_inside_document = cut_inside.first().is_some_and(|&id| id != eos);
    writers[0].push_tokens(&cut_inside, 0, 0)?;
    writers[0].set_counts(
        bytes - val_bytes,
        documents - val_documents + u64::from(cut_inside_document),
    );
    writers[1].push_tokens(&tail, val_bytes, val_documents)?;
    Ok(())
}

/// Renumbers the written tokens and the tokenizer by the training tokens' frequencies.
fn renumber_written(
    tok: LoadedTokenizer,
    writers: &mut [TokenWriter; 2],
) -> Result<LoadedTokenizer> {
    let mut counts = vec![0u64; tok.vocab_size as usize];
    writers[0].map_tokens(false, |id| {
        counts[id as usize] += 1;
        id
    })?;
    let map = renumber::frequency_order(&counts, &renumber::special_ids(&tok.json)?);
    let json = renumber::renumber_tokenizer(&tok.json, &map)?;
    let renumbered = tokenizer::load_tokenizer(json, "the renumbered tokenizer")?;
    if renumbered.eos_token_id != tok.eos_token_id || renumbered.vocab_size != tok.vocab_size {
        bail!("renumbering moved {END_OF_TEXT} or changed the vocabulary size (a bug)");
    }
    for w in writers.iter_mut() {
        w.map_tokens(true, |id| map[id as usize])?;
    }
    Ok(renumbered)
}

fn read_tokenizer(path: &Path) -> Result<LoadedTokenizer> {
    let json =
        std::fs::read(path).with_context(|| format!("cannot read tokenizer {}", path.display()))?;
    tokenizer::load_tokenizer(json, &path.display().to_string())
}

/// Tokenizes the inputs into `writers` (`[train, val]`); returns the bytes read.
fn write_tokens(
    opts: &PrepareOptions,
    tok: &LoadedTokenizer,
    every: EveryKth,
    train_sources: &[Source],
    val_sources: &Option<Vec<Source>>,
    writers: &mut [TokenWriter; 2],
) -> Result<u64> {
    let total: u64 = train_sources
        .iter()
        .chain(val_sources.iter().flatten())
        .map(|s| s.size)
        .sum();
    let bar = progress_bar(opts.progress, total, "tokenizing");
    let batch = opts.batch_documents.max(1);
    let mut read = encode_stream(
        train_sources,
        tok,
        batch,
        &bar,
        0,
        |i| every.is_val(i),
        writers,
    )?;
    if writers[0].documents == 0 {
        if writers[1].documents > 0 {
            bail!(
                "no training documents: all {} documents of {} went to validation \
                 (lower --val-fraction)",
                writers[1].documents,
                names(&opts.inputs)
            );
        }
        bail!("empty input: no documents in {}", names(&opts.inputs));
    }
    if let (Some(val), ValSplit::Files(files)) = (val_sources, &opts.val) {
        read += encode_stream(val, tok, batch, &bar, read, |_| true, writers)?;
        if writers[1].documents == 0 {
            bail!("empty validation input: no documents in {}", names(files));
        }
    }
    bar.finish_and_clear();
    Ok(read)
}

/// Reads up to `max` documents (or [`MAX_BATCH_BYTES`]).
fn read_batch(reader: &mut DocumentReader, max: usize) -> Result<Vec<Document>> {
    let mut batch = Vec::with_capacity(max);
    let mut bytes = 0;
    while batch.len() < max && bytes < MAX_BATCH_BYTES {
        match reader.next_document()? {
            Some(doc) => {
                bytes += doc.text.len();
                batch.push(doc);
            }
            None => break,
        }
    }
    Ok(batch)
}

/// Streams the documents of `sources` through the tokenizer: while one batch is tokenized in
/// parallel the next is read; results are written in input order, document `i` (counted over
/// these sources) to `writers[1]` if `to_val(i)` else `writers[0]`. Returns the bytes read.
fn encode_stream(
    sources: &[Source],
    tok: &LoadedTokenizer,
    batch_documents: usize,
    bar: &ProgressBar,
    bar_offset: u64,
    to_val: impl Fn(u64) -> bool,
    writers: &mut [TokenWriter; 2],
) -> Result<u64> {
    let mut reader = DocumentReader::new(sources.to_vec());
    let mut index = 0u64;
    let mut batch = read_batch(&mut reader, batch_documents)?;
    while !batch.is_empty() {
        let (next, encoded) = rayon::join(
            || read_batch(&mut reader, batch_documents),
            || {
                batch
                    .par_iter()
                    .map(|doc| {
                        tok.tokenizer
                            .encode_fast(doc.text.as_str(), false)
                            .map(|e| e.get_ids().to_vec())
                            .map_err(|e| {
                                anyhow!(
                                    "{}: cannot tokenize a document ({e})",
                                    sources[doc.source].path.display()
                                )
                            })
                    })
                    .collect::<Result<Vec<Vec<u32>>>>()
            },
        );
        for (doc, ids) in batch.iter().zip(encoded?) {
            let w = usize::from(to_val(index));
            writers[w].push_document(&ids, doc.text.len())?;
            index += 1;
        }
        bar.set_position(bar_offset + reader.bytes_read());
        batch = next?;
    }
    Ok(reader.bytes_read())
}

/// The training documents as an iterator for the tokenizer trainer; a read error ends it and is
/// kept in `error`.
struct TrainingDocuments<'a> {
    reader: DocumentReader,
    every: EveryKth,
    index: u64,
    documents: u64,
    error: Option<anyhow::Error>,
    bar: &'a ProgressBar,
}

impl Iterator for TrainingDocuments<'_> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        loop {
            match self.reader.next_document() {
                Ok(Some(doc)) => {
                    let index = self.index;
                    self.index += 1;
                    self.bar.set_position(self.reader.bytes_read());
                    if !self.every.is_val(index) {
                        self.documents += 1;
                        return Some(doc.text);
                    }
                }
                Ok(None) => return None,
                Err(e) => {
                    self.error = Some(e);
                    return None;
                }
            }
        }
    }
}

fn train_on(
    sources: &[Source],
    every: EveryKth,
    vocab_size: u32,
    opts: &PrepareOptions,
) -> Result<Vec<u8>> {
    let total = sources.iter().map(|s| s.size).sum();
    let bar = progress_bar(opts.progress, total, "training tokenizer");
    let mut docs = TrainingDocuments {
        reader: DocumentReader::new(sources.to_vec()),
        every,
        index: 0,
        documents: 0,
        error: None,
        bar: &bar,
    };
    let json = tokenizer::train_bpe(&mut docs, vocab_size);
    bar.finish_and_clear();
    if let Some(e) = docs.error {
        return Err(e);
    }
    let json = json?;
    if docs.documents == 0 {
        bail!("empty input: no documents in {}", names(&opts.inputs));
    }
    Ok(json)
}
