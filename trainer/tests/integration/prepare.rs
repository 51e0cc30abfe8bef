//! `trainer prepare` end to end: the binary on the TinyStories fixtures, checked against the
//! `tokenizers` crate used directly, and the `TokenFile` reader.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use tokenizers::Tokenizer;
use walsh_trainer::TokenFile;
use walsh_trainer::prepare::{Sidecar, TokenWidth};

const GPT2_EOS: u32 = 50256;

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    manifest().join("tests/fixtures").join(name)
}

fn gpt2_path() -> PathBuf {
    manifest().join("../models/tokenizer-gpt2.json")
}

fn gpt2() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| Tokenizer::from_file(gpt2_path()).unwrap())
}

/// The stories of a TinyStories-style file, split independently of the crate.
fn stories(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .split("<|endoftext|>")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn encode(tokenizer: &Tokenizer, text: &str) -> Vec<u32> {
    tokenizer.encode(text, false).unwrap().get_ids().to_vec()
}

/// Each document's ids followed by eos, concatenated.
fn stream<'a>(docs: impl IntoIterator<Item = &'a String>, eos: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for doc in docs {
        out.extend(encode(gpt2(), doc));
        out.push(eos);
    }
    out
}

fn run(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("prepare")
        .args(args)
        .output()
        .unwrap()
}

/// Runs `trainer prepare ARGS` and expects success.
fn prepare(args: &[&std::ffi::OsStr]) {
    let out = run(args);
    assert!(
        out.status.success(),
        "trainer prepare failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `trainer prepare ARGS`, expects exit 1 and one `error: ` line containing `needle`.
fn prepare_fails(args: &[&std::ffi::OsStr], needle: &str) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
}

macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$(std::ffi::OsStr::new(&$a)),*] };
}

fn sidecar(dir: &Path, name: &str) -> Sidecar {
    serde_json::from_str(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
}

fn all_tokens(file: &TokenFile) -> Vec<u32> {
    file.slice(0, file.len())
}

#[test]
fn gpt2_matches_independent_encoding() {
    let input = fixture("tinystories-train.txt");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    prepare(args!(input, "-o", out, "--val-fraction", "0.1"));

    // Every 10th story, from the first, is validation.
    let docs = stories(&input);
    assert_eq!(docs.len(), 119);
    let val_docs: Vec<&String> = docs.iter().step_by(10).collect();
    let train_docs: Vec<&String> = docs
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 != 0)
        .map(|(_, d)| d)
        .collect();

    let gpt2_json = std::fs::read(gpt2_path()).unwrap();
    let sha = format!("{:x}", Sha256::digest(&gpt2_json));
    assert_eq!(
        std::fs::read(out.join("tokenizer.json")).unwrap(),
        gpt2_json
    );

    for (name, split) in [("train", &train_docs), ("val", &val_docs)] {
        let expected = stream(split.iter().copied(), GPT2_EOS);
        let meta = sidecar(&out, &format!("{name}.json"));
        assert_eq!(meta.format, "walsh-tokens-v1");
        assert_eq!(meta.dtype, "u16");
        assert_eq!(meta.tokens, expected.len() as u64);
        assert_eq!(
            meta.bytes,
            split.iter().map(|d| d.len() as u64).sum::<u64>()
        );
        assert_eq!(meta.documents, split.len() as u64);
        assert_eq!(meta.vocab_size, 50257);
        assert_eq!(meta.eos_token_id, GPT2_EOS);
        assert_eq!(meta.tokenizer_sha256, sha);
        assert_eq!(meta.sources, [input.display().to_string()]);

        let bin = out.join(format!("{name}.bin"));
        assert_eq!(
            std::fs::metadata(&bin).unwrap().len(),
            2 * expected.len() as u64
        );
        let file = TokenFile::open(&bin).unwrap();
        assert_eq!(file.width(), TokenWidth::U16);
        assert_eq!(file.sidecar(), &meta);
        assert_eq!(all_tokens(&file), expected);
        assert_eq!(file.get(file.len() - 1), GPT2_EOS);
        assert_eq!(file.slice(1, 3), expected[1..4]);
        // The stories hold no <|endoftext|>: one eos per document, ending each.
        let eos_count = expected.iter().filter(|&&t| t == GPT2_EOS).count();
        assert_eq!(eos_count, split.len());
    }
}

#[test]
fn deterministic_whatever_the_batch_size() {
    let input = fixture("tinystories-train.txt");
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    prepare(args!(input, "-o", a));
    prepare(args!(input, "-o", b, "--batch-size", "7"));
    for name in [
        "train.bin",
        "train.json",
        "val.bin",
        "val.json",
        "tokenizer.json",
    ] {
        let (x, y) = (
            std::fs::read(a.join(name)).unwrap(),
            std::fs::read(b.join(name)).unwrap(),
        );
        assert!(x == y, "{name} differs between runs");
    }
    // Default --val-fraction 0.005: every 200th document, so the first one only here.
    assert_eq!(sidecar(&a, "val.json").documents, 1);
    assert_eq!(sidecar(&a, "train.json").documents, 118);
}

#[test]
fn frequency_order_renumbers_tokens_and_tokenizer_alike() {
    let (input, val) = (
        fixture("tinystories-train.txt"),
        fixture("tinystories-val.txt"),
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    prepare(args!(input, "-o", out, "--val", val, "--frequency-order"));

    let renumbered = Tokenizer::from_file(out.join("tokenizer.json")).unwrap();
    let sha = format!(
        "{:x}",
        Sha256::digest(std::fs::read(out.join("tokenizer.json")).unwrap())
    );
    let train = TokenFile::open(out.join("train.bin")).unwrap();
    let ids = all_tokens(&train);
    // The same segmentation as GPT-2's, only numbered otherwise: the renumbered tokenizer encodes
    // each story to these ids and decodes them back to the story; GPT-2's ids map one to one.
    let docs = stories(&input);
    assert_eq!(ids.len(), stream(&docs, GPT2_EOS).len());
    let mut expected = Vec::new();
    let mut map = std::collections::HashMap::new();
    for d in &docs {
        let new = encode(&renumbered, d);
        assert_eq!(renumbered.decode(&new, false).unwrap(), *d);
        for (o, n) in encode(gpt2(), d).into_iter().zip(&new) {
            assert_eq!(
                *map.entry(o).or_insert(*n),
                *n,
                "GPT-2 id {o} got two new ids"
            );
        }
        assert_eq!(encode(gpt2(), d).len(), new.len());
        expected.extend(new);
        expected.push(GPT2_EOS);
    }
    assert_eq!(ids, expected);
    // Most frequent first: counts never rise with the id (eos, special, keeps 50256).
    let mut counts = vec![0u64; 50257];
    ids.iter().for_each(|&t| counts[t as usize] += 1);
    assert_eq!(renumbered.token_to_id("<|endoftext|>"), Some(GPT2_EOS));
    assert!(counts[..50256].windows(2).all(|w| w[0] >= w[1]));
    assert!(counts[0] > 1000, "the commonest token leads: {}", counts[0]);
    for name in ["train.json", "val.json"] {
        let meta = sidecar(&out, name);
        assert_eq!((meta.eos_token_id, meta.vocab_size), (GPT2_EOS, 50257));
        assert_eq!(meta.tokenizer_sha256, sha);
    }
    // Validation is numbered by the training frequencies too.
    let valf = TokenFile::open(out.join("val.bin")).unwrap();
    let val_expected: Vec<u32> = stories(&val)
        .iter()
        .flat_map(|d| encode(&renumbered, d).into_iter().chain([GPT2_EOS]))
        .collect();
    assert_eq!(all_tokens(&valf), val_expected);
}

#[test]
fn separate_validation_files() {
    let (input, val) = (
        fixture("tinystories-train.txt"),
        fixture("tinystories-val.txt"),
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    prepare(args!(input, "-o", out, "--val", val));

    let train_docs = stories(&input);
    let val_docs = stories(&val);
    assert_eq!(val_docs.len(), 17);
    let train = TokenFile::open(out.join("train.bin")).unwrap();
    let valf = TokenFile::open(out.join("val.json")).unwrap();
    assert_eq!(all_tokens(&train), stream(&train_docs, GPT2_EOS));
    assert_eq!(all_tokens(&valf), stream(&val_docs, GPT2_EOS));
    assert_eq!(train.sidecar().documents, 119);
    assert_eq!(valf.sidecar().documents, 17);
    assert_eq!(valf.sidecar().sources, [val.display().to_string()]);
    assert_eq!(train.sidecar().sources, [input.display().to_string()]);
}

#[test]
fn jsonl_and_directories() {
    let docs = stories(&fixture("tinystories-train.txt"));
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir_all(corpus.join("a")).unwrap();
    // b.jsonl: stories 0..5 and a non-ASCII one, with another field and a blank line.
    let mut jsonl_docs: Vec<String> = docs[..5].to_vec();
    jsonl_docs.push("Tom said, “Hi!” — café 🙂\n\tand left.".to_owned());
    let mut jsonl = String::new();
    for (i, d) in jsonl_docs.iter().enumerate() {
        jsonl += &serde_json::json!({ "id": i, "text": d }).to_string();
        jsonl += if i == 2 { "\n\n" } else { "\n" };
    }
    std::fs::write(corpus.join("b.jsonl"), jsonl).unwrap();
    // a/c.txt: stories 5..10, separated without the trailing newline convention.
    std::fs::write(corpus.join("a/c.txt"), docs[5..10].join("<|endoftext|>")).unwrap();
    std::fs::write(corpus.join("notes.md"), "skipped").unwrap();

    let out = dir.path().join("out");
    prepare(args!(corpus, "-o", out, "--val-fraction", "0"));
    // Sorted walk: a/c.txt before b.jsonl.
    let expected_docs: Vec<String> = docs[5..10].iter().chain(&jsonl_docs).cloned().collect();
    let train = TokenFile::open(out.join("train.bin")).unwrap();
    assert_eq!(all_tokens(&train), stream(&expected_docs, GPT2_EOS));
    let meta = train.sidecar();
    assert_eq!(meta.documents, 11);
    assert_eq!(
        meta.bytes,
        expected_docs.iter().map(|d| d.len() as u64).sum::<u64>()
    );
    assert_eq!(
        meta.sources,
        [
            corpus.join("a/c.txt").display().to_string(),
            corpus.join("b.jsonl").display().to_string()
        ]
    );
    let val = TokenFile::open(out.join("val.bin")).unwrap();
    assert!(val.is_empty());
    assert_eq!(val.sidecar().documents, 0);
}

#[test]
fn train_tokenizer_round_trips() {
    let input = fixture("tinystories-train.txt");
    let docs = stories(&input);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    prepare(args!(
        input,
        "-o",
        a,
        "--train-tokenizer",
        "512",
        "--val-fraction",
        "0.1"
    ));

    let tokenizer = Tokenizer::from_file(a.join("tokenizer.json")).unwrap();
    assert_eq!(tokenizer.get_vocab_size(true), 512);
    let eos = tokenizer.token_to_id("<|endoftext|>").unwrap();
    let meta = sidecar(&a, "train.json");
    assert_eq!(
        (meta.vocab_size, meta.eos_token_id, meta.dtype.as_str()),
        (512, eos, "u16")
    );

    let samples = [
        &docs[0],
        &docs[1],
        &docs[57],
        &"Tom said, “Hi!” — café 🙂\n".to_owned(),
    ];
    for text in samples {
        let ids = encode(&tokenizer, text);
        assert_eq!(&tokenizer.decode(&ids, false).unwrap(), text);
    }
    // The first training document (document 0 went to validation) decodes back from train.bin.
    let train = TokenFile::open(a.join("train.bin")).unwrap();
    let first = encode(&tokenizer, &docs[1]);
    assert_eq!(train.slice(0, first.len() + 1)[..first.len()], first[..]);
    assert_eq!(train.get(first.len()), eos);
    assert_eq!(
        tokenizer
            .decode(&train.slice(0, first.len()), false)
            .unwrap(),
        docs[1]
    );
    assert!(
        train.sidecar().tokens > train.sidecar().bytes / 4,
        "a small vocabulary"
    );

    // Training is deterministic.
    prepare(args!(
        input,
        "-o",
        b,
        "--train-tokenizer",
        "512",
        "--val-fraction",
        "0.1"
    ));
    for name in ["tokenizer.json", "train.bin", "val.bin"] {
        assert!(
            std::fs::read(a.join(name)).unwrap() == std::fs::read(b.join(name)).unwrap(),
            "{name} differs between runs"
        );
    }
}

#[test]
fn errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out");
    let write = |name: &str, content: &str| {
        let path = d.join(name);
        std::fs::write(&path, content).unwrap();
        path
    };

    // Unreadable input and validation files.
    let missing = d.join("missing.txt");
    prepare_fails(
        args!(missing, "-o", out),
        &format!("cannot read {}", missing.display()),
    );
    let good = fixture("tinystories-val.txt");
    prepare_fails(args!(good, "-o", out, "--val", missing), "cannot read");

    // Empty input.
    let empty = write("empty.txt", "\n<|endoftext|>\n  \n<|endoftext|>\n");
    prepare_fails(args!(empty, "-o", out), "empty input: no documents in");
    prepare_fails(
        args!(good, "-o", out, "--val", empty),
        "empty validation input",
    );
    let empty_dir = d.join("nothing");
    std::fs::create_dir_all(&empty_dir).unwrap();
    prepare_fails(args!(empty_dir, "-o", out), "no .txt or .jsonl files");

    // Bad .jsonl lines.
    let bad = write("bad.jsonl", "{\"text\": \"fine\"}\n{\"text\": \n");
    prepare_fails(
        args!(bad, "-o", out),
        &format!("{}:2: not valid JSON", bad.display()),
    );
    let no_text = write("notext.jsonl", "{\"text\": \"a\"}\n\n{\"body\": \"b\"}\n");
    prepare_fails(
        args!(no_text, "-o", out),
        &format!("{}:3: no string field \"text\"", no_text.display()),
    );
    let number = write("number.jsonl", "{\"text\": 5}\n");
    prepare_fails(
        args!(number, "-o", out),
        "number.jsonl:1: no string field \"text\"",
    );

    // Unknown extension.
    let csv = write("data.csv", "a,b\n");
    prepare_fails(
        args!(csv, "-o", out),
        "data.csv: unknown extension (expected .txt or .jsonl)",
    );

    // A tokenizer without <|endoftext|>.
    let no_eos = write(
        "no-eos.json",
        r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
            "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,
            "decoder":null,"model":{"type":"WordLevel","vocab":{"a":0,"[UNK]":1},
            "unk_token":"[UNK]"}}"#,
    );
    prepare_fails(
        args!(good, "-o", out, "--tokenizer", no_eos),
        "has no <|endoftext|> token",
    );
    let not_json = write("broken.json", "{");
    prepare_fails(
        args!(good, "-o", out, "--tokenizer", not_json),
        "not a valid tokenizer.json",
    );
    prepare_fails(
        args!(good, "-o", out, "--tokenizer", missing),
        "cannot read tokenizer",
    );

    // Bad numbers.
    prepare_fails(
        args!(good, "-o", out, "--train-tokenizer", "100"),
        "at least 257",
    );
    prepare_fails(
        args!(good, "-o", out, "--val-fraction", "0.9"),
        "between 0 and 0.5",
    );
    // One document is split by position, not sent whole to validation.
    let one = write("one.txt", "Just one story.\n<|endoftext|>\n");
    prepare(args!(one, "-o", out));
    assert_eq!(sidecar(&out, "train.json").documents, 1);

    // Nothing partial was left behind.
    for entry in std::fs::read_dir(&out).unwrap() {
        let name = entry.unwrap().file_name();
        assert!(
            !name.to_string_lossy().ends_with(".partial"),
            "{name:?} left behind"
        );
    }
}

#[test]
fn token_width_limits() {
    assert_eq!(TokenWidth::for_vocab(50257).unwrap(), TokenWidth::U16);
    assert_eq!(TokenWidth::for_vocab(65536).unwrap(), TokenWidth::U16);
    assert_eq!(TokenWidth::for_vocab(65537).unwrap(), TokenWidth::U32);
    assert_eq!(TokenWidth::for_vocab(1 << 32).unwrap(), TokenWidth::U32);
    let err = TokenWidth::for_vocab((1 << 32) + 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("too large for the token width"), "{err}");
}

#[test]
fn token_file_reads_u32_and_checks_size() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("x.bin");
    let ids = [70000u32, 5, 100_000];
    let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(&bin, &bytes).unwrap();
    let meta = Sidecar {
        format: "walsh-tokens-v1".into(),
        dtype: "u32".into(),
        tokens: 3,
        bytes: 10,
        documents: 1,
        vocab_size: 100_001,
        eos_token_id: 100_000,
        tokenizer_sha256: "00".into(),
        sources: vec!["x.txt".into()],
    };
    std::fs::write(
        dir.path().join("x.json"),
        serde_json::to_string(&meta).unwrap(),
    )
    .unwrap();
    let file = TokenFile::open(&bin).unwrap();
    assert_eq!((file.len(), file.width()), (3, TokenWidth::U32));
    assert_eq!(file.get(0), 70000);
    assert_eq!(file.slice(1, 2), [5, 100_000]);

    std::fs::write(&bin, &bytes[..11]).unwrap();
    let err = format!("{:#}", TokenFile::open(&bin).unwrap_err());
    assert!(
        err.contains("11 bytes") && err.contains("12 bytes"),
        "{err}"
    );

    std::fs::write(dir.path().join("x.json"), "{\"format\": \"other\"}").unwrap();
    let err = format!("{:#}", TokenFile::open(&bin).unwrap_err());
    assert!(err.contains("not a walsh-tokens-v1 sidecar"), "{err}");
}

/// One document without separators (Tiny Shakespeare, where the shared data has it; the
/// fixture's stories run together otherwise): the last --val-fraction of the tokens is
/// validation, as nanoGPT splits it, and the binary says so.
#[test]
fn one_document_is_split_by_position() {
    let dir = tempfile::tempdir().unwrap();
    let shakespeare = Path::new("/work/shared/data/tinyshakespeare/input.txt");
    let input = if shakespeare.exists() {
        shakespeare.to_path_buf()
    } else {
        let book = dir.path().join("book.txt");
        std::fs::write(
            &book,
            stories(&fixture("tinystories-train.txt")).join("\n\n"),
        )
        .unwrap();
        book
    };
    let out = dir.path().join("out");
    let o = run(args!(input, "-o", out, "--val-fraction", "0.1"));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("split by position"), "{stdout}");

    let docs = stories(&input);
    assert_eq!(docs.len(), 1);
    let expected = stream(&docs, GPT2_EOS);
    let train = TokenFile::open(out.join("train.bin")).unwrap();
    let val = TokenFile::open(out.join("val.bin")).unwrap();
    let val_len = (expected.len() as f64 * 0.1).round() as usize;
    assert_eq!(val.len(), val_len);
    let mut both = all_tokens(&train);
    both.extend(all_tokens(&val));
    assert!(both == expected, "train.bin then val.bin is the whole text");
    let (t, v) = (train.sidecar(), val.sidecar());
    assert_eq!((t.documents, v.documents), (1, 1));
    let bytes = docs[0].len() as u64;
    assert!(v.bytes > bytes / 20 && v.bytes < bytes / 5, "{v:?}");
    assert!((t.bytes + v.bytes).abs_diff(bytes) <= 3, "{t:?} {v:?}");
}
