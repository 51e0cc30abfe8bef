//! Input discovery and streaming document readers.
//!
//! A `.txt` file holds documents separated by `<|endoftext|>` (TinyStories' convention: every
//! story is followed by a line `<|endoftext|>`); each document is trimmed of surrounding
//! whitespace. A `.jsonl` file holds one JSON object a line whose string field `text` is the
//! document, taken as is. Empty documents are skipped in both. Files are read incrementally: memory
//! holds one document (and one line) at a time, whatever the size of the file.

use anyhow::{Context, Result, anyhow, bail};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use walsh_spec::text::END_OF_TEXT;

/// How a source file holds its documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Documents separated by `<|endoftext|>`.
    Txt,
    /// One JSON object a line with a string field `text`.
    Jsonl,
}

impl Format {
    /// The format a file name's extension says, if any.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "txt" => Some(Format::Txt),
            "jsonl" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

/// One input file.
#[derive(Clone, Debug)]
pub struct Source {
    pub path: PathBuf,
    pub format: Format,
    /// File size in bytes when it was listed (for the progress bar).
    pub size: u64,
}

/// Expands the inputs into files: a file stands for itself (its extension must be `.txt` or
/// `.jsonl`); a directory stands for every `.txt` and `.jsonl` file under it, recursively, in
/// sorted order (other files in it are skipped; symlinked directories are not followed).
pub fn collect_sources(inputs: &[PathBuf]) -> Result<Vec<Source>> {
    let mut sources = Vec::new();
    for input in inputs {
        let meta =
            std::fs::metadata(input).with_context(|| format!("cannot read {}", input.display()))?;
        if meta.is_dir() {
            let before = sources.len();
            walk_dir(input, &mut sources)?;
            if sources.len() == before {
                bail!(
                    "{}: no .txt or .jsonl files in this directory",
                    input.display()
                );
            }
        } else {
            let format = Format::from_path(input).ok_or_else(|| {
                anyhow!(
                    "{}: unknown extension (expected .txt or .jsonl)",
                    input.display()
                )
            })?;
            sources.push(Source {
                path: input.clone(),
                format,
                size: meta.len(),
            });
        }
    }
    Ok(sources)
}

fn walk_dir(dir: &Path, sources: &mut Vec<Source>) -> Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let file_type = entry
            .file_type()
            .with_context(|| format!("cannot read {}", path.display()))?;
        if file_type.is_dir() {
            walk_dir(&path, sources)?;
        } else if let Some(format) = Format::from_path(&path) {
            // Follows a symlink to a file; a symlink to a directory is skipped.
            let meta = std::fs::metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if meta.is_file() {
                sources.push(Source {
                    path,
                    format,
                    size: meta.len(),
                });
            }
        }
    }
    Ok(())
}

/// One document and the index (into the reader's sources) of the file it came from.
#[derive(Debug)]
pub struct Document {
    pub text: String,
    pub source: usize,
}

/// Counts the bytes read from a file into a shared counter (for the progress bar).
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

type Reader = BufReader<Counting<File>>;

enum Open {
    Txt {
        reader: Reader,
        /// Bytes read but not yet handed out as a document.
        pending: Vec<u8>,
        /// `pending[..scanned]` is known to hold no separator.
        scanned: usize,
        /// 1-based number of the next raw segment (for error messages).
        segment: u64,
    },
    Jsonl {
        reader: Reader,
        line: Vec<u8>,
        line_no: u64,
    },
}

/// Reads the documents of a list of sources, in order, one at a time.
pub struct DocumentReader {
    sources: Vec<Source>,
    next: usize,
    open: Option<(usize, Open)>,
    bytes_read: Arc<AtomicU64>,
}

impl DocumentReader {
    pub fn new(sources: Vec<Source>) -> Self {
        DocumentReader {
            sources,
            next: 0,
            open: None,
            bytes_read: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Bytes read from the files so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// The next non-empty document, or `None` after the last one.
    pub fn next_document(&mut self) -> Result<Option<Document>> {
        loop {
            if self.open.is_none() {
                let Some(source) = self.sources.get(self.next) else {
                    return Ok(None);
                };
                let file = File::open(&source.path)
                    .with_context(|| format!("cannot read {}", source.path.display()))?;
                let reader = BufReader::with_capacity(
                    1 << 16,
                    Counting {
                        inner: file,
                        count: Arc::clone(&self.bytes_read),
                    },
                );
                let open = match source.format {
                    Format::Txt => Open::Txt {
                        reader,
                        pending: Vec::new(),
                        scanned: 0,
                        segment: 1,
                    },
                    Format::Jsonl => Open::Jsonl {
                        reader,
                        line: Vec::new(),
                        line_no: 0,
                    },
                };
                self.open = Some((self.next, open));
                self.next += 1;
            }
            let (index, open) = self.open.as_mut().expect("a source is open");
            let path = &self.sources[*index].path;
            let text = match open {
                Open::Txt {
                    reader,
                    pending,
                    scanned,
                    segment,
                } => next_txt(path, reader, pending, scanned, segment)?,
                Open::Jsonl {
                    reader,
                    line,
                    line_no,
                } => next_jsonl(path, reader, line, line_no)?,
            };
            match text {
                Some(text) => {
                    return Ok(Some(Document {
                        text,
                        source: *index,
                    }));
                }
                None => self.open = None,
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The next non-empty trimmed document of a `.txt` file, or `None` at its end.
fn next_txt(
    path: &Path,
    reader: &mut Reader,
    pending: &mut Vec<u8>,
    scanned: &mut usize,
    segment: &mut u64,
) -> Result<Option<String>> {
    let sep = END_OF_TEXT.as_bytes();
    loop {
        let raw = if let Some(pos) = find(&pending[*scanned..], sep) {
            let end = *scanned + pos;
            let rest = pending.split_off(end + sep.len());
            pending.truncate(end);
            *scanned = 0;
            std::mem::replace(pending, rest)
        } else {
            // A separator may straddle what is read next: rescan its length − 1 last bytes.
            *scanned = pending.len().saturating_sub(sep.len() - 1);
            let n = reader
                .read_until(b'\n', pending)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if n > 0 {
                continue;
            }
            if pending.is_empty() {
                return Ok(None);
            }
            *scanned = 0;
            std::mem::take(pending)
        };
        let number = *segment;
        *segment += 1;
        let text = String::from_utf8(raw)
            .map_err(|_| anyhow!("{}: document {number} is not valid UTF-8", path.display()))?;
        let Some(trimmed) = walsh_spec::text::document(&text) else {
            continue;
        };
        return Ok(Some(if trimmed.len() == text.len() {
            text
        } else {
            trimmed.to_owned()
        }));
    }
}

/// The next non-empty `text` of a `.jsonl` file (blank lines are skipped), or `None` at its end.
fn next_jsonl(
    path: &Path,
    reader: &mut Reader,
    line: &mut Vec<u8>,
    line_no: &mut u64,
) -> Result<Option<String>> {
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', line)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            return Ok(None);
        }
        *line_no += 1;
        if line.trim_ascii().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_slice(line)
            .map_err(|e| anyhow!("{}:{}: not valid JSON ({e})", path.display(), *line_no))?;
        let serde_json::Value::Object(mut object) = value else {
            bail!("{}:{}: not a JSON object", path.display(), *line_no);
        };
        let Some(serde_json::Value::String(text)) = object.remove("text") else {
            bail!("{}:{}: no string field \"text\"", path.display(), *line_no);
        };
        if !text.is_empty() {
            return Ok(Some(text));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(name: &str, content: &[u8]) -> Result<Vec<String>> {
        let dir = std::env::temp_dir().join(format!("walsh-source-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(name);
        std::fs::write(&path, content)?;
        let format = Format::from_path(&path).unwrap();
        let mut reader = DocumentReader::new(vec![Source {
            path,
            format,
            size: 0,
        }]);
        let mut docs = Vec::new();
        while let Some(doc) = reader.next_document()? {
            docs.push(doc.text);
        }
        assert_eq!(reader.bytes_read(), content.len() as u64);
        std::fs::remove_dir_all(&dir)?;
        Ok(docs)
    }

    #[test]
    fn txt_splits_on_separator_anywhere() {
        let docs = read_all(
            "a.txt",
            b"one\ntwo\n<|endoftext|>\n three<|endoftext|>four<|endoftext|>\n\n<|endoftext|>\nfive",
        )
        .unwrap();
        assert_eq!(docs, ["one\ntwo", "three", "four", "five"]);
    }

    #[test]
    fn txt_without_separator_is_one_document() {
        assert_eq!(read_all("b.txt", b"just text\n").unwrap(), ["just text"]);
        assert!(read_all("c.txt", b"\n<|endoftext|>\n").unwrap().is_empty());
    }

    #[test]
    fn jsonl_reads_text_fields() {
        let docs = read_all(
            "d.jsonl",
            b"{\"text\":\"a\\nb\",\"id\":1}\n\n{\"id\":2,\"text\":\"c\"}",
        )
        .unwrap();
        assert_eq!(docs, ["a\nb", "c"]);
        let err = read_all("e.jsonl", b"{\"text\":\"a\"}\n[1]\n").unwrap_err();
        assert!(
            err.to_string().ends_with("e.jsonl:2: not a JSON object"),
            "{err}"
        );
    }
}
