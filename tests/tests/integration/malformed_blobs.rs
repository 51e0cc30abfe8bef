//! Malformed blobs (SPEC §4): every `BlobError` variant from a blob built to trigger it, the
//! tokenizer and size errors of `Engine::load`, and thousands of randomly mutated blobs that must
//! all be rejected (or accepted) without a panic. Every error message is one line.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use walsh_engine::{Engine, LoadError, MAX_ENGINE_HEAP, Model, Tokenizer, TokenizerError};
use walsh_spec::blob::{self, BlobError, BlobWriter, DType, WriterTensor, WriterTokenizer};
use walsh_spec::config::{Algebra, ConfigError, Embedding, ModelConfig};
use walsh_spec::init::random_checkpoint;
use walsh_spec::{PackOptions, Packing, pack};

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const GPT2_TOKENIZER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/tokenizer-gpt2.json");

/// A three-token byte-level BPE tokenizer (the engine accepts BPE models only): loads in
/// microseconds, so the robustness test can run `Engine::load` thousands of times.
const TINY_TOKENIZER: &str = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},"post_processor":null,"decoder":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true},"model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":"","end_of_word_suffix":"","fuse_unk":false,"byte_fallback":false,"ignore_merges":false,"vocab":{"a":0,"b":1,"c":2},"merges":[]}}"#;

/// The config of the brief: hadamard, head mixing, hash embeddings, GPT-2 vocabulary.
fn gpt2_config() -> ModelConfig {
    ModelConfig {
        name: "t".into(),
        vocab_size: 50257,
        n_embd: 64,
        n_layer: 1,
        n_head: 32,
        block_size: 16,
        algebra: Algebra::Hadamard,
        head_mixing: true,
        embedding: Embedding::Hash,
        hash_buckets: 97,
        rope_theta: 10000.0,
        eos_token_id: 50256,
    }
}

/// Dense, standard f32 embeddings, 4x packing. F = 5, so `mlp.gate.weight` [1, 5, 2] has 10
/// weights and its last 4x byte has two padding codes.
fn tiny_dense_config() -> ModelConfig {
    ModelConfig {
        name: "dense".into(),
        vocab_size: 16,
        n_embd: 2,
        n_layer: 1,
        n_head: 1,
        block_size: 4,
        algebra: Algebra::Dense,
        head_mixing: false,
        embedding: Embedding::Standard,
        hash_buckets: 1021,
        rope_theta: 10000.0,
        eos_token_id: 0,
    }
}

/// Octonion with head mixing, int8 embeddings, 16x packing.
fn tiny_octonion_config() -> ModelConfig {
    ModelConfig {
        name: "oct".into(),
        vocab_size: 32,
        n_embd: 16,
        n_layer: 2,
        n_head: 8,
        block_size: 4,
        algebra: Algebra::Octonion,
        head_mixing: true,
        embedding: Embedding::Standard,
        hash_buckets: 1021,
        rope_theta: 500.0,
        eos_token_id: 1,
    }
}

/// Hadamard with head mixing, hash f16 embeddings, 16x packing (its [32, 2, 2] weights are
/// mostly tile padding).
fn tiny_hadamard_config() -> ModelConfig {
    ModelConfig {
        name: "had".into(),
        vocab_size: 128,
        n_embd: 64,
        n_layer: 1,
        n_head: 32,
        block_size: 4,
        algebra: Algebra::Hadamard,
        head_mixing: true,
        embedding: Embedding::Hash,
        hash_buckets: 7,
        rope_theta: 10000.0,
        eos_token_id: 2,
    }
}

/// A packed random checkpoint, as the packer writes it (compact tokenizer).
fn packed(cfg: &ModelConfig, tokenizer: &str, packing: Packing, embeddings: DType) -> Vec<u8> {
    let ckpt = random_checkpoint(cfg, 1, tokenizer.to_string());
    pack(
        &ckpt,
        PackOptions {
            packing,
            embeddings,
            ..PackOptions::default()
        },
    )
    .expect("packing a random checkpoint")
}

/// `b` with its tokenizer stored as minified tokenizer.json instead: the fixtures most tests
/// edit, whose tokenizer section is text.
fn with_json_tokenizer(b: &[u8], tokenizer: &str) -> Vec<u8> {
    let mut w = writer_of(b);
    w.tokenizer = WriterTokenizer::Json(walsh_spec::pack::minify_json(tokenizer).unwrap());
    w.finish()
}

fn make_blob(cfg: &ModelConfig, tokenizer: &str, packing: Packing, embeddings: DType) -> Vec<u8> {
    with_json_tokenizer(&packed(cfg, tokenizer, packing, embeddings), tokenizer)
}

/// The brief's blob: GPT-2 tokenizer (as JSON), default packing (4x, f16 embeddings).
fn gpt2_blob() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        let tok = std::fs::read_to_string(GPT2_TOKENIZER).expect("models/tokenizer-gpt2.json");
        make_blob(&gpt2_config(), &tok, Packing::X4, DType::F16)
    })
}

/// What `packer pack` writes by default for GPT-2: the compact tokenizer.
fn gpt2_compact_blob() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        let tok = std::fs::read_to_string(GPT2_TOKENIZER).expect("models/tokenizer-gpt2.json");
        packed(&gpt2_config(), &tok, Packing::X5, DType::Int4Rot)
    })
}

/// The newer formats on tiny models: compact tokenizer, base-3 ternary, low-bit rows.
fn hash_int4r_blob() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        packed(
            &tiny_hadamard_config(),
            TINY_TOKENIZER,
            Packing::X5,
            DType::Int4Rot,
        )
    })
}

fn octonion_int6_blob() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        packed(
            &tiny_octonion_config(),
            TINY_TOKENIZER,
            Packing::X5,
            DType::Int6,
        )
    })
}

fn dense_blob() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        make_blob(
            &tiny_dense_config(),
            TINY_TOKENIZER,
            Packing::X4,
            DType::F32,
        )
    })
}

fn octonion_blob() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        make_blob(
            &tiny_octonion_config(),
            TINY_TOKENIZER,
            Packing::X16,
            DType::Int8,
        )
    })
}

fn hadamard_blob() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        make_blob(
            &tiny_hadamard_config(),
            TINY_TOKENIZER,
            Packing::X16,
            DType::F16,
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Byte-level helpers: the layout of a (valid) blob, field edits, and resealing
// ---------------------------------------------------------------------------------------------

const H_VERSION: usize = 8;
const H_FLAGS: usize = 12;
const H_CONFIG_LEN: usize = 16;
const H_TOKENIZER_LEN: usize = 24;
const H_COUNT: usize = 32;
const H_DATA_OFFSET: usize = 40;
const H_DATA_LEN: usize = 48;

fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn set_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn set_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

/// Recomputes the trailing SHA-256 over everything before the last 32 bytes.
fn reseal(b: &mut [u8]) {
    let n = b.len() - 32;
    let digest = Sha256::digest(&b[..n]);
    b[n..].copy_from_slice(&digest);
}

/// Where the fields of one tensor table entry are.
#[derive(Debug, Clone)]
struct Entry {
    /// Position of the u16 name length.
    pos: usize,
    name: String,
    dtype: u8,
    dtype_pos: usize,
    rank_pos: usize,
    dims_pos: usize,
    offset_pos: usize,
    length_pos: usize,
    offset: u64,
    length: u64,
}

#[derive(Debug, Clone)]
struct Layout {
    config: std::ops::Range<usize>,
    tokenizer: std::ops::Range<usize>,
    table_end: usize,
    data_offset: usize,
    data_len: usize,
    entries: Vec<Entry>,
}

impl Layout {
    fn entry(&self, name: &str) -> &Entry {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no tensor {name}"))
    }
    /// Absolute blob offset of a tensor's first data byte.
    fn data_at(&self, name: &str) -> usize {
        self.data_offset + self.entry(name).offset as usize
    }
}

/// The layout of a blob that `parse` accepts.
fn layout(b: &[u8]) -> Layout {
    let c = get_u64(b, H_CONFIG_LEN) as usize;
    let k = get_u64(b, H_TOKENIZER_LEN) as usize;
    let n = get_u64(b, H_COUNT) as usize;
    let mut pos = 56 + c + k;
    let mut entries = Vec::with_capacity(n);
    for _ in 0..n {
        let start = pos;
        let name_len = u16::from_le_bytes([b[pos], b[pos + 1]]) as usize;
        let name = String::from_utf8(b[pos + 2..pos + 2 + name_len].to_vec()).unwrap();
        let dtype_pos = pos + 2 + name_len;
        let rank_pos = dtype_pos + 1;
        let rank = b[rank_pos] as usize;
        let dims_pos = rank_pos + 1;
        let offset_pos = dims_pos + 8 * rank;
        let length_pos = offset_pos + 8;
        entries.push(Entry {
            pos: start,
            name,
            dtype: b[dtype_pos],
            dtype_pos,
            rank_pos,
            dims_pos,
            offset_pos,
            length_pos,
            offset: get_u64(b, offset_pos),
            length: get_u64(b, length_pos),
        });
        pos = length_pos + 8;
    }
    Layout {
        config: 56..56 + c,
        tokenizer: 56 + c..56 + c + k,
        table_end: pos,
        data_offset: get_u64(b, H_DATA_OFFSET) as usize,
        data_len: get_u64(b, H_DATA_LEN) as usize,
        entries,
    }
}

/// A copy of `base` edited by `f`, then resealed.
fn edited(base: &[u8], f: impl FnOnce(&mut Vec<u8>, &Layout)) -> Vec<u8> {
    let l = layout(base);
    let mut b = base.to_vec();
    f(&mut b, &l);
    reseal(&mut b);
    b
}

/// A writer holding exactly what a valid blob holds (config and tokenizer text, tensors).
fn writer_of(base: &[u8]) -> BlobWriter {
    let parsed = blob::parse(base).expect("base blob parses");
    let l = layout(base);
    BlobWriter {
        config_json: String::from_utf8(base[l.config.clone()].to_vec()).unwrap(),
        tokenizer: parsed.tokenizer.into(),
        tensors: parsed
            .tensors
            .iter()
            .map(|t| WriterTensor {
                name: t.name.clone(),
                dtype: t.dtype,
                shape: t.shape.clone(),
                bytes: t.bytes.to_vec(),
            })
            .collect(),
    }
}

fn tensor_mut<'a>(w: &'a mut BlobWriter, name: &str) -> &'a mut WriterTensor {
    w.tensors
        .iter_mut()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tensor {name}"))
}

/// A blob assembled by hand: header, config, tokenizer, the given table bytes, zeros up to the
/// next multiple of 64, the data, the checksum. The header's count and data length are as given.
fn raw_blob(config: &[u8], tokenizer: &[u8], table: &[u8], count: u64, data: &[u8]) -> Vec<u8> {
    let data_offset = (56 + config.len() + tokenizer.len() + table.len()).next_multiple_of(64);
    let mut b = Vec::new();
    b.extend_from_slice(&blob::MAGIC);
    b.extend_from_slice(&blob::VERSION.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    for v in [
        config.len() as u64,
        tokenizer.len() as u64,
        count,
        data_offset as u64,
        data.len() as u64,
    ] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(config);
    b.extend_from_slice(tokenizer);
    b.extend_from_slice(table);
    b.resize(data_offset, 0);
    b.extend_from_slice(data);
    b.extend_from_slice(&[0; 32]);
    reseal(&mut b);
    b
}

/// The tokenizer text padded with spaces so that header + config + tokenizer + `table_len` bytes
/// end exactly on a multiple of 64 (no zero padding before the data section).
fn padded_tokenizer(config_len: usize, tokenizer: &str, table_len: usize) -> String {
    let used = 56 + config_len + tokenizer.len() + table_len;
    format!(
        "{tokenizer}{}",
        " ".repeat(used.next_multiple_of(64) - used)
    )
}

fn parse_err(b: &[u8]) -> BlobError {
    match blob::parse(b) {
        Ok(_) => panic!("blob was accepted"),
        Err(e) => e,
    }
}

/// The error, after checking that `Engine::load` reports the same one and the message is a single
/// line.
fn err(b: &[u8]) -> BlobError {
    let e = parse_err(b);
    assert_eq!(Engine::load(b).unwrap_err(), LoadError::Blob(e.clone()));
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "multi-line message: {msg:?}");
    e
}

fn assert_mentions(e: &BlobError, what: &str) {
    let msg = e.to_string();
    assert!(msg.contains(what), "`{msg}` should mention `{what}`");
}

/// Why `parse` refuses a table name with a character outside SPEC §3's set.
const NAME_CHARS: &str = "only ASCII letters, digits, '.' and '_' are allowed";

/// Index of a tensor in the table of a blob (the writer keeps the table's order).
fn entry_index(base: &[u8], name: &str) -> u64 {
    layout(base)
        .entries
        .iter()
        .position(|e| e.name == name)
        .unwrap_or_else(|| panic!("no tensor {name}")) as u64
}

/// The dense blob with its tokenizer section replaced; `parse` accepts it (it checks the
/// tokenizer only as UTF-8), so whatever `Engine::load` says comes from the tokenizer.
fn dense_blob_with_tokenizer(tokenizer: &str) -> Vec<u8> {
    let mut w = writer_of(dense_blob());
    w.tokenizer = WriterTokenizer::Json(tokenizer.into());
    let b = w.finish();
    blob::parse(&b).expect("parse checks the tokenizer only as UTF-8");
    b
}

/// `TINY_TOKENIZER` with one replacement (which must apply).
fn tiny_tokenizer_with(from: &str, to: &str) -> String {
    let tok = TINY_TOKENIZER.replacen(from, to, 1);
    assert_ne!(tok, TINY_TOKENIZER, "`{from}` is not in TINY_TOKENIZER");
    tok
}

/// `TINY_TOKENIZER` with another `"model"` (its last field).
fn tiny_tokenizer_with_model(model: &str) -> String {
    let at = TINY_TOKENIZER.find(r#""model":"#).unwrap();
    format!("{}\"model\":{model}}}", &TINY_TOKENIZER[..at])
}

const TINY_PRE_TOKENIZER: &str = r#""pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true}"#;
const TINY_DECODER: &str = r#""decoder":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}"#;

// ---------------------------------------------------------------------------------------------
// The valid blobs are valid
// ---------------------------------------------------------------------------------------------

#[test]
fn fixtures_are_valid() {
    for b in [gpt2_blob(), dense_blob(), octonion_blob(), hadamard_blob()] {
        let parsed = blob::parse(b).expect("fixture parses");
        let l = layout(b);
        assert_eq!(l.entries.len(), parsed.tensors.len());
        assert_eq!(l.data_offset + l.data_len + 32, b.len());
        // The raw builder reproduces a writer blob byte for byte.
        let raw = raw_blob(
            &b[l.config.clone()],
            &b[l.tokenizer.clone()],
            &b[l.tokenizer.end..l.table_end],
            l.entries.len() as u64,
            &b[l.data_offset..l.data_offset + l.data_len],
        );
        assert_eq!(raw, b);
        assert_eq!(writer_of(b).finish(), b);
    }
    for b in [dense_blob(), octonion_blob(), hadamard_blob()] {
        let e = Engine::load(b).expect("tiny fixture loads");
        assert_eq!(e.tokenizer.vocab_size(), 3);
    }
    // The tiny tokenizer is a usable byte-level BPE: "abc" is its three tokens, and back.
    let t = Tokenizer::from_json(TINY_TOKENIZER, 3).expect("TINY_TOKENIZER loads");
    assert_eq!(t.encode("abc").unwrap(), vec![0, 1, 2]);
    assert_eq!(t.decode(&[2, 1, 0]).unwrap(), "cba");
}

#[test]
fn gpt2_fixture_loads() {
    let e = Engine::load(gpt2_blob()).expect("loads");
    assert_eq!(e.tokenizer.vocab_size(), 50257);
}

// ---------------------------------------------------------------------------------------------
// Header errors
// ---------------------------------------------------------------------------------------------

#[test]
fn too_short() {
    for len in [0, 1, 8, 55] {
        let e = err(&gpt2_blob()[..len]);
        assert!(
            matches!(e, BlobError::TooShort { needed: 56, have } if have == len),
            "{e:?}"
        );
    }
}

#[test]
fn bad_magic() {
    let mut b = gpt2_blob().to_vec();
    b[0..8].copy_from_slice(b"WALSHBLC");
    let e = err(&b);
    assert!(matches!(e, BlobError::BadMagic { found } if &found == b"WALSHBLC"));
    assert_mentions(&e, "WALSHBLB");
    // Even a header-sized blob of zeros is judged by its magic first.
    assert!(matches!(err(&[0u8; 56]), BlobError::BadMagic { .. }));
}

#[test]
fn unsupported_version() {
    for v in [0, 3, u32::MAX] {
        let mut b = gpt2_blob().to_vec();
        set_u32(&mut b, H_VERSION, v);
        let e = err(&b);
        assert!(
            matches!(e, BlobError::UnsupportedVersion(x) if x == v),
            "{e:?}"
        );
        assert_mentions(&e, &v.to_string());
    }
}

#[test]
fn reserved_flags() {
    // Version 2 knows flag 1 (the compact tokenizer); version 1 no flag.
    for (version, f) in [(2, 2), (2, 0x8000_0001), (1, 1)] {
        let mut b = gpt2_blob().to_vec();
        set_u32(&mut b, H_VERSION, version);
        set_u32(&mut b, H_FLAGS, f);
        reseal(&mut b);
        let e = err(&b);
        assert!(
            matches!(e, BlobError::ReservedFlags(x) if x == f & !1 || version == 1 && x == f),
            "{e:?}"
        );
    }
}

#[test]
fn section_out_of_bounds() {
    let base = gpt2_blob();
    let len = base.len() as u64;
    let blob_len = len;
    // Data offset + length overflows u64.
    for (off, dlen) in [(u64::MAX, 1), (64, u64::MAX - 40), (u64::MAX - 63, 64)] {
        let mut b = base.to_vec();
        set_u64(&mut b, H_DATA_OFFSET, off);
        set_u64(&mut b, H_DATA_LEN, dlen);
        let e = err(&b);
        assert!(
            matches!(e, BlobError::SectionOutOfBounds { section: "data", offset, len, limit } if offset == off && len == dlen && limit as u64 == blob_len),
            "{e:?}"
        );
        assert_mentions(&e, "data section");
        assert_mentions(
            &e,
            &format!("runs past byte {blob_len}, the end of the space it may use"),
        );
    }
    // Config section past the end of the blob (also the overflowing length).
    for c in [len, u64::MAX] {
        let b = edited(base, |b, _| set_u64(b, H_CONFIG_LEN, c));
        let e = err(&b);
        assert!(
            matches!(e, BlobError::SectionOutOfBounds { section: "config", limit, .. } if limit as u64 == blob_len),
            "{e:?}"
        );
        assert_mentions(&e, "config section");
    }
    // Tokenizer section past the end of the blob (the limit is still the blob's end).
    for k in [len, u64::MAX - 100] {
        let b = edited(base, |b, _| set_u64(b, H_TOKENIZER_LEN, k));
        let e = err(&b);
        assert!(
            matches!(e, BlobError::SectionOutOfBounds { section: "tokenizer", limit, .. } if limit as u64 == blob_len),
            "{e:?}"
        );
        assert_mentions(&e, "tokenizer section");
    }
    // Tokenizer section running into the data section (inside the blob).
    let b = edited(base, |b, l| {
        let k = (l.data_offset + 1 - l.tokenizer.start) as u64;
        set_u64(b, H_TOKENIZER_LEN, k);
    });
    let e = err(&b);
    let data_offset = layout(base).data_offset;
    assert!(
        matches!(e, BlobError::SectionOutOfBounds { section: "tokenizer", limit, .. } if limit == data_offset),
        "{e:?}"
    );
    assert_mentions(&e, &format!("runs past byte {data_offset}, the end of"));
    // Config section running into the data section (inside the blob, tokenizer length 0): the
    // limit is the data section's start (reported for the section that then begins past it).
    let b = edited(base, |b, l| {
        set_u64(b, H_CONFIG_LEN, (l.data_offset + 1 - 56) as u64);
        set_u64(b, H_TOKENIZER_LEN, 0);
    });
    let e = err(&b);
    assert!(
        matches!(e, BlobError::SectionOutOfBounds { section: "config" | "tokenizer", limit, .. } if limit == data_offset),
        "{e:?}"
    );
}

#[test]
fn data_misaligned() {
    // Keep P + S + 32 equal to the blob's length so that the size checks pass.
    let b = edited(gpt2_blob(), |b, l| {
        set_u64(b, H_DATA_OFFSET, l.data_offset as u64 - 1);
        set_u64(b, H_DATA_LEN, l.data_len as u64 + 1);
    });
    let e = err(&b);
    let p = layout(gpt2_blob()).data_offset as u64 - 1;
    assert!(matches!(e, BlobError::DataMisaligned(x) if x == p), "{e:?}");
    assert_mentions(&e, &p.to_string());
}

#[test]
fn truncated() {
    let base = gpt2_blob();
    for cut in [1, 32, 33, base.len() - 56] {
        let b = &base[..base.len() - cut];
        let e = err(b);
        assert!(
            matches!(e, BlobError::Truncated { expected, have } if expected == base.len() as u64 && have == b.len()),
            "{e:?}"
        );
        assert_mentions(&e, "truncated");
    }
    // A data length that claims more than the blob holds.
    let mut b = base.to_vec();
    set_u64(&mut b, H_DATA_LEN, 1 << 40);
    assert!(matches!(err(&b), BlobError::Truncated { .. }));
}

#[test]
fn trailing_bytes() {
    for extra in [1usize, 64, 1000] {
        let mut b = gpt2_blob().to_vec();
        b.extend(std::iter::repeat_n(0u8, extra));
        let e = err(&b);
        assert!(
            matches!(e, BlobError::TrailingBytes { extra: x } if x == extra),
            "{e:?}"
        );
    }
}

#[test]
fn checksum_mismatch() {
    let base = gpt2_blob();
    let l = layout(base);
    // A flipped byte in the config, the tokenizer, the table, the data, the checksum itself.
    let entry = &l.entries[3];
    for at in [
        l.config.start + 3,
        l.tokenizer.start + 100,
        entry.pos + 4,
        l.data_offset + 10,
        base.len() - 1,
    ] {
        let mut b = base.to_vec();
        b[at] ^= 0x40;
        let e = err(&b);
        match &e {
            BlobError::ChecksumMismatch { stored, computed } => {
                assert_eq!(stored.len(), 64);
                assert_eq!(computed.len(), 64);
                assert_ne!(stored, computed);
                assert_eq!(*stored, blob::hex(&b[b.len() - 32..]));
            }
            other => panic!("byte {at}: {other:?}"),
        }
        assert_mentions(&e, "checksum");
    }
}

// ---------------------------------------------------------------------------------------------
// Config and tokenizer sections
// ---------------------------------------------------------------------------------------------

#[test]
fn config_errors() {
    let mut w = writer_of(gpt2_blob());
    w.config_json = "{not json".into();
    let e = err(&w.finish());
    assert!(
        matches!(e, BlobError::Config(ConfigError::Json(_))),
        "{e:?}"
    );

    let mut w = writer_of(gpt2_blob());
    w.config_json = w.config_json.replace("\"n_head\":32", "\"n_head\":3");
    let e = err(&w.finish());
    assert!(
        matches!(
            e,
            BlobError::Config(ConfigError::Invalid {
                field: "n_head",
                ..
            })
        ),
        "{e:?}"
    );
    assert_mentions(&e, "n_head");

    // An unknown field is an error, and named.
    let mut w = writer_of(gpt2_blob());
    w.config_json = w.config_json.replace("\"n_layer\"", "\"n_layers\"");
    let e = err(&w.finish());
    assert!(
        matches!(e, BlobError::Config(ConfigError::Json(_))),
        "{e:?}"
    );
    assert_mentions(&e, "n_layers");

    // A config that is not UTF-8.
    let b = edited(gpt2_blob(), |b, l| b[l.config.start + 2] = 0xff);
    assert!(matches!(err(&b), BlobError::Config(ConfigError::Json(_))));
}

#[test]
fn tokenizer_not_utf8() {
    for bad in [&[0xffu8][..], &[0xc3], &[0xed, 0xa0, 0x80]] {
        let b = edited(gpt2_blob(), |b, l| {
            let at = l.tokenizer.start + 50;
            b[at..at + bad.len()].copy_from_slice(bad);
        });
        let e = err(&b);
        assert!(matches!(e, BlobError::TokenizerNotUtf8), "{e:?}");
        assert_mentions(&e, "tokenizer");
    }
}

/// Tokenizer sections the `tokenizers` crate cannot load, or that are not a JSON object at all:
/// `TokenizerError::Load`, a one-line message.
#[test]
fn tokenizer_does_not_load() {
    for tok in [
        "this is not json",
        "",
        "[]",
        "null",
        "\"tokenizer\"",
        "{\"model\":",
        // Valid JSON with trailing garbage.
        &format!("{TINY_TOKENIZER}x"),
        // A model with no type is taken to be BPE; this one is not a model at all.
        r#"{"model":{}}"#,
        // BPE models the crate refuses: a merge of tokens not in the vocabulary, no merges, no
        // vocabulary, a field of the wrong type.
        r#"{"version":"1.0","model":{"type":"BPE","vocab":{"a":0},"merges":["a b"]}}"#,
        &tiny_tokenizer_with(r#""merges":[]"#, r#""merges":["a b"]"#),
        &tiny_tokenizer_with(r#","merges":[]"#, ""),
        &tiny_tokenizer_with(r#""vocab":{"a":0,"b":1,"c":2},"#, ""),
        &tiny_tokenizer_with(r#""dropout":null"#, r#""dropout":"high""#),
        // An allowed component with fields the crate refuses.
        &tiny_tokenizer_with(
            TINY_PRE_TOKENIZER,
            r#""pre_tokenizer":{"type":"Split","pattern":{"Str":" "},"behavior":"Isolated","invert":false}"#,
        ),
        &tiny_tokenizer_with(
            TINY_DECODER,
            r#""decoder":{"type":"ByteLevel","add_prefix_space":"yes"}"#,
        ),
    ] {
        let b = dense_blob_with_tokenizer(tok);
        let e = Engine::load(&b).unwrap_err();
        assert!(
            matches!(e, LoadError::Tokenizer(TokenizerError::Load(_))),
            "{tok}: {e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains("tokenizer"), "{msg}");
        assert!(!msg.contains('\n'), "{msg:?}");
    }
}

/// Tokenizers outside the allow-list (`ALLOWED` in canister/src/tokenizer.rs): a model other than
/// BPE, a component of another type, no type, not an object, a `Sequence` with a refused or null
/// item or without its list. `TokenizerError::Unsupported`, naming the field.
#[test]
fn tokenizer_not_supported() {
    let word_level = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,"model":{"type":"WordLevel","vocab":{"<unk>":0,"a":1,"b":2},"unk_token":"<unk>"}}"#;
    let model = r#""model":{"type":"BPE","#;
    let cases: Vec<(&str, String)> = vec![
        // No model, or a model of the wrong JSON type.
        ("model", "{}".into()),
        ("model", r#"{"not":"a tokenizer"}"#.into()),
        ("model", tiny_tokenizer_with(model, r#""model":null,"x":{"#)),
        (
            "model",
            tiny_tokenizer_with(model, r#""model":"BPE","x":{"#),
        ),
        ("model", tiny_tokenizer_with(model, r#""model":[],"x":{"#)),
        // Models other than BPE (that the crate would load).
        ("model", word_level.into()),
        (
            "model",
            tiny_tokenizer_with_model(r#"{"type":"Unigram","unk_id":0,"vocab":[["a",0.0]]}"#),
        ),
        (
            "model",
            tiny_tokenizer_with_model(r#"{"type":"WordPiece","unk_token":"a","vocab":{"a":0}}"#),
        ),
        (
            "model",
            tiny_tokenizer_with(model, r#""model":{"type":"bpe","#),
        ),
        // Components of a type outside the list.
        (
            "normalizer",
            tiny_tokenizer_with(
                r#""normalizer":null"#,
                r#""normalizer":{"type":"BertNormalizer"}"#,
            ),
        ),
        (
            "normalizer",
            tiny_tokenizer_with(
                r#""normalizer":null"#,
                r#""normalizer":{"type":"Precompiled","precompiled_charsmap":""}"#,
            ),
        ),
        (
            "pre_tokenizer",
            tiny_tokenizer_with(
                TINY_PRE_TOKENIZER,
                r#""pre_tokenizer":{"type":"FixedLength","length":5}"#,
            ),
        ),
        (
            "pre_tokenizer",
            tiny_tokenizer_with(
                TINY_PRE_TOKENIZER,
                r#""pre_tokenizer":{"type":"UnicodeScripts"}"#,
            ),
        ),
        (
            "post_processor",
            tiny_tokenizer_with(
                r#""post_processor":null"#,
                r#""post_processor":{"type":"Nope"}"#,
            ),
        ),
        (
            "decoder",
            tiny_tokenizer_with(TINY_DECODER, r#""decoder":{"type":"CTC"}"#),
        ),
        (
            "decoder",
            tiny_tokenizer_with(TINY_DECODER, r#""decoder":{"type":"WordPiece"}"#),
        ),
        // No type, a type that is not a string, not an object.
        (
            "decoder",
            tiny_tokenizer_with(TINY_DECODER, r#""decoder":{"add_prefix_space":true}"#),
        ),
        (
            "decoder",
            tiny_tokenizer_with(TINY_DECODER, r#""decoder":{"type":1}"#),
        ),
        (
            "decoder",
            tiny_tokenizer_with(TINY_DECODER, r#""decoder":"ByteLevel""#),
        ),
        (
            "pre_tokenizer",
            tiny_tokenizer_with(TINY_PRE_TOKENIZER, r#""pre_tokenizer":[]"#),
        ),
        // Sequences: a refused item (nested too), a null item, no list, a list of the wrong type.
        (
            "normalizer",
            tiny_tokenizer_with(
                r#""normalizer":null"#,
                r#""normalizer":{"type":"Sequence","normalizers":[{"type":"NFC"},{"type":"Nmt"}]}"#,
            ),
        ),
        (
            "normalizer",
            tiny_tokenizer_with(
                r#""normalizer":null"#,
                r#""normalizer":{"type":"Sequence","normalizers":[{"type":"Sequence","normalizers":[{"type":"Precompiled"}]}]}"#,
            ),
        ),
        (
            "pre_tokenizer",
            tiny_tokenizer_with(
                TINY_PRE_TOKENIZER,
                r#""pre_tokenizer":{"type":"Sequence","pretokenizers":[null]}"#,
            ),
        ),
        (
            "post_processor",
            tiny_tokenizer_with(
                r#""post_processor":null"#,
                r#""post_processor":{"type":"Sequence"}"#,
            ),
        ),
        (
            "decoder",
            tiny_tokenizer_with(
                TINY_DECODER,
                r#""decoder":{"type":"Sequence","decoders":{"type":"Fuse"}}"#,
            ),
        ),
        (
            "decoder",
            tiny_tokenizer_with(
                TINY_DECODER,
                r#""decoder":{"type":"Sequence","normalizers":[]}"#,
            ),
        ),
    ];
    for (field, tok) in &cases {
        let b = dense_blob_with_tokenizer(tok);
        let e = Engine::load(&b).unwrap_err();
        match &e {
            LoadError::Tokenizer(TokenizerError::Unsupported(why)) => {
                assert!(why.starts_with(&format!("{field}: ")), "{tok}: {why}")
            }
            other => panic!("{tok}: {other:?}"),
        }
        let msg = e.to_string();
        assert!(msg.contains("tokenizer"), "{msg}");
        assert!(!msg.contains('\n'), "{msg:?}");
    }
    // The same checks in `Tokenizer::from_json`, whatever the model's size.
    assert!(matches!(
        Tokenizer::from_json(word_level, 1 << 20),
        Err(TokenizerError::Unsupported(_))
    ));
}

/// What the allow-list lets through loads: BPE without a `"type"`, explicit nulls, allowed
/// types, and `Sequence`s of them (nested).
#[test]
fn tokenizer_allowed_components_load() {
    for tok in [
        tiny_tokenizer_with(r#""model":{"type":"BPE","#, r#""model":{"#),
        tiny_tokenizer_with(TINY_PRE_TOKENIZER, r#""pre_tokenizer":null"#),
        tiny_tokenizer_with(TINY_DECODER, r#""decoder":null"#),
        tiny_tokenizer_with(
            r#""normalizer":null"#,
            r#""normalizer":{"type":"Sequence","normalizers":[{"type":"NFC"},{"type":"Sequence","normalizers":[{"type":"Lowercase"}]}]}"#,
        ),
        tiny_tokenizer_with(
            TINY_PRE_TOKENIZER,
            r#""pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},{"type":"Whitespace"}]}"#,
        ),
        tiny_tokenizer_with(
            r#""post_processor":null"#,
            r#""post_processor":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,"use_regex":true}"#,
        ),
        tiny_tokenizer_with(
            TINY_DECODER,
            r#""decoder":{"type":"Sequence","decoders":[{"type":"ByteFallback"},{"type":"Fuse"}]}"#,
        ),
    ] {
        let b = dense_blob_with_tokenizer(&tok);
        let e = Engine::load(&b).unwrap_or_else(|e| panic!("{tok}: {e:?}"));
        assert_eq!(e.tokenizer.vocab_size(), 3);
    }
}

#[test]
fn tokenizer_vocab_too_large() {
    // GPT-2's 50257 tokens do not fit a 50000-token model.
    let mut cfg = gpt2_config();
    cfg.vocab_size = 50000;
    cfg.eos_token_id = 0;
    let tok = std::fs::read_to_string(GPT2_TOKENIZER).unwrap();
    let b = make_blob(&cfg, &tok, Packing::X4, DType::F16);
    blob::parse(&b).expect("parses");
    let e = Engine::load(&b).unwrap_err();
    assert_eq!(
        e,
        LoadError::Tokenizer(TokenizerError::VocabTooLarge {
            tokenizer: 50257,
            model: 50000
        })
    );
    assert!(!e.to_string().contains('\n'));

    // The tiny tokenizer's 3 tokens do not fit a 2-token model.
    let mut cfg = tiny_dense_config();
    cfg.vocab_size = 2;
    let b = make_blob(&cfg, TINY_TOKENIZER, Packing::X4, DType::F32);
    let e = Engine::load(&b).unwrap_err();
    assert_eq!(
        e,
        LoadError::Tokenizer(TokenizerError::VocabTooLarge {
            tokenizer: 3,
            model: 2
        })
    );
    // 3 tokens fit a 3-token model.
    let mut cfg = tiny_dense_config();
    cfg.vocab_size = 3;
    let b = make_blob(&cfg, TINY_TOKENIZER, Packing::X4, DType::F32);
    Engine::load(&b).expect("a tokenizer as large as the model fits");
}

// ---------------------------------------------------------------------------------------------
// The tensor table
// ---------------------------------------------------------------------------------------------

#[test]
fn table_truncated() {
    let base = gpt2_blob();
    let l = layout(base);
    let cfg = &base[l.config.clone()];
    let tok = std::str::from_utf8(&base[l.tokenizer.clone()]).unwrap();
    let table = &base[l.tokenizer.end..l.table_end];
    let data = &base[l.data_offset..l.data_offset + l.data_len];
    let n = l.entries.len() as u64;
    // Cut at every field of entry 3 (and before entry 0): the table ends exactly at the data
    // section, so the cursor runs out of bytes rather than into zero padding.
    let e3 = &l.entries[3];
    let t0 = l.tokenizer.end;
    for (entry, cut) in [
        (0, 0),
        (0, 1),
        (3, e3.pos - t0),
        (3, e3.pos - t0 + 1),
        (3, e3.dtype_pos - t0 - 1),
        (3, e3.dtype_pos - t0),
        (3, e3.rank_pos - t0),
        (3, e3.dims_pos - t0 + 5),
        (3, e3.offset_pos - t0 + 7),
        (3, e3.length_pos - t0 + 1),
    ] {
        let tok = padded_tokenizer(cfg.len(), tok, cut);
        let b = raw_blob(cfg, tok.as_bytes(), &table[..cut], n, data);
        let e = err(&b);
        assert!(
            matches!(e, BlobError::TableTruncated { entry: x, needed } if x == entry && needed > 0),
            "cut {cut}: {e:?}"
        );
        assert_mentions(&e, &format!("entry {entry}"));
    }
}

#[test]
fn tensor_count() {
    let base = gpt2_blob();
    let n = layout(base).entries.len() as u64;
    for count in [0, n - 1, n + 1, u64::MAX] {
        let b = edited(base, |b, _| set_u64(b, H_COUNT, count));
        let e = err(&b);
        assert!(
            matches!(e, BlobError::TensorCount { count: c, expected } if c == count && expected as u64 == n),
            "{e:?}"
        );
    }
    // Dropping a tensor from the table (header consistent) is a count error too.
    let mut w = writer_of(base);
    w.tensors.retain(|t| t.name != "norm.weight");
    assert!(matches!(err(&w.finish()), BlobError::TensorCount { .. }));
}

#[test]
fn bad_name() {
    let base = gpt2_blob();
    // Name length 0 and 257 (beyond MAX_NAME_LEN).
    for len in [0u16, 257, u16::MAX] {
        let b = edited(base, |b, l| set_u16(b, l.entries[2].pos, len));
        let e = err(&b);
        assert!(
            matches!(e, BlobError::BadName { entry: 2, why } if why.contains("length")),
            "{e:?}"
        );
        assert_mentions(&e, "entry 2");
    }
    // A name that is not UTF-8 is refused for its bytes (no UTF-8 check is left to do).
    let b = edited(base, |b, l| b[l.entries[5].pos + 2] = 0xfe);
    let e = err(&b);
    assert!(
        matches!(e, BlobError::BadName { entry: 5, why } if why == NAME_CHARS),
        "{e:?}"
    );
    assert_mentions(&e, "entry 5");
    // UTF-8 names with characters outside SPEC §3's set: control characters, a space, other
    // punctuation, non-ASCII letters, a bidi override. The message quotes none of it.
    let at = entry_index(base, "norm.weight");
    for name in [
        "norm.weight\n",
        "norm.weight\r",
        "norm\0weight",
        "norm.weight\t",
        "norm.weight ",
        " norm.weight",
        "norm-weight",
        "norm/weight",
        "layers.0.attn.q.weight`",
        "normé.weight",
        "norm.weight\u{202e}",
        "\u{7f}",
    ] {
        let mut w = writer_of(base);
        tensor_mut(&mut w, "norm.weight").name = name.into();
        let e = err(&w.finish());
        assert!(
            matches!(e, BlobError::BadName { entry, why } if entry == at && why == NAME_CHARS),
            "{name:?}: {e:?}"
        );
        assert_mentions(&e, &format!("entry {at}"));
        assert_mentions(&e, NAME_CHARS);
    }
    // Every byte value as the first byte of a name: exactly ASCII letters, digits, '.' and '_'
    // get past the name check (to be judged as tensor names).
    let base = dense_blob();
    let l = layout(base);
    let e1 = &l.entries[1];
    for v in 0..=255u8 {
        if v == e1.name.as_bytes()[0] {
            continue;
        }
        let b = edited(base, |b, _| b[e1.pos + 2] = v);
        let e = err(&b);
        if v.is_ascii_alphanumeric() || v == b'.' || v == b'_' {
            let name = format!("{}{}", v as char, &e1.name[1..]);
            assert!(
                matches!(&e, BlobError::UnexpectedTensor(t) if *t == name),
                "byte {v:#04x}: {e:?}"
            );
        } else {
            assert!(
                matches!(e, BlobError::BadName { entry: 1, why } if why == NAME_CHARS),
                "byte {v:#04x}: {e:?}"
            );
        }
    }
    // A 256-byte name is a valid name (it is just not a tensor of the model).
    let mut w = writer_of(gpt2_blob());
    w.tensors[0].name = "x".repeat(256);
    assert!(matches!(err(&w.finish()), BlobError::UnexpectedTensor(_)));
}

#[test]
fn unknown_dtype() {
    for code in [11u8, 0x80, 0xff] {
        let b = edited(gpt2_blob(), |b, l| {
            b[l.entry("norm.weight").dtype_pos] = code
        });
        let e = err(&b);
        assert!(
            matches!(&e, BlobError::UnknownDtype { tensor, code: c } if tensor == "norm.weight" && *c == code),
            "{e:?}"
        );
        assert_mentions(&e, "norm.weight");
    }
}

#[test]
fn bad_rank() {
    for rank in [0u8, 5, 255] {
        let b = edited(gpt2_blob(), |b, l| {
            b[l.entry("layers.0.attn.q.weight").rank_pos] = rank
        });
        let e = err(&b);
        assert!(
            matches!(&e, BlobError::BadRank { tensor, rank: r } if tensor == "layers.0.attn.q.weight" && *r == rank),
            "{e:?}"
        );
        assert_mentions(&e, "layers.0.attn.q.weight");
    }
}

#[test]
fn duplicate_tensor() {
    let mut w = writer_of(gpt2_blob());
    let i = w
        .tensors
        .iter()
        .position(|t| t.name == "layers.0.attn.k.alpha")
        .unwrap();
    w.tensors[i + 3] = w.tensors[i].clone(); // replaces layers.0.attn.v.alpha
    assert_eq!(w.tensors[i + 3].name, "layers.0.attn.k.alpha");
    let e = err(&w.finish());
    assert!(
        matches!(&e, BlobError::DuplicateTensor(t) if t == "layers.0.attn.k.alpha"),
        "{e:?}"
    );
    assert_mentions(&e, "layers.0.attn.k.alpha");
}

#[test]
fn unexpected_tensor() {
    // Well-formed names (ASCII letters, digits, '.' and '_') that are not tensors of this model:
    // a layer it lacks, the other embedding kind, nonsense, near misses of a real name.
    for name in [
        "layers.1.attn_norm.weight",
        "tok_emb.weight",
        "bogus",
        "norm.weight_",
        "norm.weight.",
        "Norm.weight",
        "norm.weights",
        "_",
        "0",
    ] {
        let mut w = writer_of(gpt2_blob());
        tensor_mut(&mut w, "norm.weight").name = name.into();
        let e = err(&w.finish());
        assert!(
            matches!(&e, BlobError::UnexpectedTensor(t) if t == name),
            "{e:?}"
        );
        assert_mentions(&e, name);
    }
    // A near miss with a character outside the set (a trailing space) never gets that far.
    let at = entry_index(gpt2_blob(), "norm.weight");
    let mut w = writer_of(gpt2_blob());
    tensor_mut(&mut w, "norm.weight").name = "norm.weight ".into();
    let e = err(&w.finish());
    assert!(
        matches!(e, BlobError::BadName { entry, why } if entry == at && why == NAME_CHARS),
        "{e:?}"
    );
}

/// `MissingTensor` cannot come out of `parse`: the count must equal the number of the config's
/// tensors, every entry must be one of them and none may appear twice, so all of them are there
/// (pigeonhole). The attempts that come closest fail earlier; the variant is reachable only from
/// `Model::from_blob` on a `Blob` built by hand (its fields are public).
#[test]
fn missing_tensor() {
    let base = gpt2_blob();
    let n = layout(base).entries.len() as u64;
    // One tensor dropped, the header still says n: the table runs out.
    let mut w = writer_of(base);
    w.tensors.retain(|t| t.name != "norm.weight");
    let mut b = w.finish();
    set_u64(&mut b, H_COUNT, n);
    reseal(&mut b);
    let e = err(&b);
    assert!(
        matches!(
            e,
            BlobError::BadName { .. } | BlobError::TableTruncated { .. }
        ),
        "{e:?}"
    );
    // One tensor replaced by another: a duplicate.
    let mut w = writer_of(base);
    let last = w.tensors.len() - 1;
    w.tensors[last] = w.tensors[last - 1].clone();
    assert!(matches!(err(&w.finish()), BlobError::DuplicateTensor(_)));

    // The loader names a tensor that a hand-made `Blob` lacks.
    let mut parsed = blob::parse(base).unwrap();
    parsed.tensors.retain(|t| t.name != "norm.weight");
    let e = Model::from_blob(&parsed).unwrap_err();
    assert!(
        matches!(&e, BlobError::MissingTensor(t) if t == "norm.weight"),
        "{e:?}"
    );
    assert_mentions(&e, "norm.weight");
    let mut parsed = blob::parse(base).unwrap();
    parsed
        .tensors
        .retain(|t| t.name != "layers.0.mlp.down.weight");
    assert!(matches!(
        Model::from_blob(&parsed).unwrap_err(),
        BlobError::MissingTensor(t) if t == "layers.0.mlp.down.weight"
    ));
}

#[test]
fn shape_mismatch() {
    let base = gpt2_blob();
    // A wrong dimension.
    let b = edited(base, |b, l| set_u64(b, l.entry("norm.weight").dims_pos, 65));
    let e = err(&b);
    assert!(
        matches!(&e, BlobError::ShapeMismatch { tensor, expected, found } if tensor == "norm.weight" && expected == &vec![64] && found == &vec![65]),
        "{e:?}"
    );
    assert_mentions(&e, "norm.weight");
    // A huge dimension (no overflow anywhere).
    let b = edited(base, |b, l| {
        set_u64(b, l.entry("tok_emb.hash1").dims_pos, u64::MAX)
    });
    assert!(matches!(err(&b), BlobError::ShapeMismatch { .. }));
    // A different rank, consistently written.
    let mut w = writer_of(base);
    let t = tensor_mut(&mut w, "layers.0.attn.q.weight");
    t.shape = vec![32 * 2 * 2];
    let e = err(&w.finish());
    assert!(
        matches!(&e, BlobError::ShapeMismatch { tensor, found, .. } if tensor == "layers.0.attn.q.weight" && found == &vec![128]),
        "{e:?}"
    );
    // The same elements in a transposed shape.
    let mut w = writer_of(base);
    tensor_mut(&mut w, "tok_emb.hash2").shape = vec![64, 97];
    assert!(matches!(err(&w.finish()), BlobError::ShapeMismatch { .. }));
}

#[test]
fn dtype_not_allowed() {
    let base = gpt2_blob();
    let cases: [(&str, DType, Vec<u8>); 5] = [
        // A norm gain stored as ternary.
        ("norm.weight", DType::Ternary4x, vec![0; 16]),
        // An algebra weight stored as floats.
        ("layers.0.attn.q.weight", DType::F32, vec![0; 4 * 128]),
        // An algebra scale stored as int8.
        ("layers.0.attn.q.alpha", DType::Int8, vec![0; 64 + 2]),
        // Embeddings stored as ternary.
        ("tok_emb.hash1", DType::Ternary16x, vec![0; 97 * 64 / 4]),
        // Head mixing stored as int8.
        (
            "layers.0.attn.mix.weight",
            DType::Int8,
            vec![0; 128 + 2 * 64],
        ),
    ];
    for (name, dtype, bytes) in cases {
        let mut w = writer_of(base);
        let t = tensor_mut(&mut w, name);
        t.dtype = dtype;
        t.bytes = bytes;
        let e = err(&w.finish());
        assert!(
            matches!(&e, BlobError::DtypeNotAllowed { tensor, dtype: d } if tensor == name && *d == dtype.name()),
            "{name}: {e:?}"
        );
        assert_mentions(&e, name);
        assert_mentions(&e, dtype.name());
    }
}

#[test]
fn length_mismatch() {
    let base = gpt2_blob();
    for (name, delta) in [
        ("norm.weight", -4i64),
        ("norm.weight", 4),
        ("layers.0.mlp.up.weight", 1),
        ("tok_emb.hash2", -1),
    ] {
        let mut w = writer_of(base);
        let t = tensor_mut(&mut w, name);
        let len = (t.bytes.len() as i64 + delta) as usize;
        t.bytes.resize(len, 0);
        let e = err(&w.finish());
        assert!(
            matches!(&e, BlobError::LengthMismatch { tensor, expected, found } if tensor == name && *found as i64 == *expected as i64 + delta),
            "{name}: {e:?}"
        );
        assert_mentions(&e, name);
    }
    // A length of u64::MAX (in place, the offsets untouched).
    let b = edited(base, |b, l| {
        set_u64(b, l.entry("norm.weight").length_pos, u64::MAX)
    });
    assert!(matches!(
        err(&b),
        BlobError::LengthMismatch {
            found: u64::MAX,
            ..
        }
    ));
}

#[test]
fn misaligned() {
    for delta in [1u64, 4, 32, 63] {
        let b = edited(gpt2_blob(), |b, l| {
            let e = l.entry("layers.0.attn.v.beta");
            set_u64(b, e.offset_pos, e.offset + delta);
        });
        let e = err(&b);
        assert!(
            matches!(&e, BlobError::Misaligned { tensor, offset } if tensor == "layers.0.attn.v.beta" && offset % 64 == delta),
            "{e:?}"
        );
        assert_mentions(&e, "layers.0.attn.v.beta");
    }
}

#[test]
fn overlap() {
    let base = gpt2_blob();
    let l = layout(base);
    // Entry i starts where entry i-1 starts, or at 0.
    for i in [1, 7, l.entries.len() - 1] {
        for off in [l.entries[i - 1].offset, 0] {
            let b = edited(base, |b, l| set_u64(b, l.entries[i].offset_pos, off));
            let e = err(&b);
            assert!(
                matches!(&e, BlobError::Overlap { tensor } if *tensor == l.entries[i].name),
                "{e:?}"
            );
            assert_mentions(&e, &l.entries[i].name);
        }
    }
}

#[test]
fn data_out_of_bounds() {
    let base = gpt2_blob();
    let l = layout(base);
    let last = l.entries.last().unwrap().clone();
    for off in [
        (l.data_len as u64).next_multiple_of(64),
        1 << 40,
        !63u64, // offset + length overflows
    ] {
        let b = edited(base, |b, _| set_u64(b, last.offset_pos, off));
        let e = err(&b);
        assert!(
            matches!(&e, BlobError::DataOutOfBounds { tensor, data_len, .. } if *tensor == last.name && *data_len == l.data_len as u64),
            "{e:?}"
        );
        assert_mentions(&e, &last.name);
    }
    // A shorter data section (header consistent) cuts the last tensor.
    let mut b = base[..base.len() - 32 - 64].to_vec();
    b.extend_from_slice(&[0; 32]);
    set_u64(&mut b, H_DATA_LEN, l.data_len as u64 - 64);
    reseal(&mut b);
    assert!(matches!(err(&b), BlobError::DataOutOfBounds { .. }));
}

#[test]
fn non_zero_padding() {
    let base = gpt2_blob();
    let l = layout(base);
    // Between the table and the data section.
    let mut w = writer_of(base);
    if l.table_end == l.data_offset
        && let WriterTokenizer::Json(t) = &mut w.tokenizer
    {
        t.push(' ');
    }
    let b0 = w.finish();
    let l0 = layout(&b0);
    assert!(l0.table_end < l0.data_offset);
    for at in [l0.table_end, l0.data_offset - 1] {
        let b = edited(&b0, |b, _| b[at] = 0x01);
        let e = err(&b);
        assert!(
            matches!(e, BlobError::NonZeroPadding { offset, value: 1 } if offset == at),
            "{e:?}"
        );
        assert_mentions(&e, &at.to_string());
    }
    // Between two tensors (norm gains are 256 bytes; a [2] beta... find a gap).
    let gap = l
        .entries
        .windows(2)
        .find(|w| w[0].offset + w[0].length < w[1].offset)
        .expect("some tensor is not a multiple of 64 bytes")
        .to_vec();
    let at = l.data_offset + (gap[0].offset + gap[0].length) as usize;
    let b = edited(base, |b, _| b[at] = 0x80);
    let e = err(&b);
    assert!(
        matches!(e, BlobError::NonZeroPadding { offset, value: 0x80 } if offset == at),
        "{e:?}"
    );
    // After the last tensor: a data section 64 bytes longer than the tensors need.
    let mut b = base[..base.len() - 32].to_vec();
    let at = b.len() + 10;
    b.extend_from_slice(&[0; 64]);
    b.extend_from_slice(&[0; 32]);
    set_u64(&mut b, H_DATA_LEN, l.data_len as u64 + 64);
    reseal(&mut b);
    blob::parse(&b).expect("zero tail is fine");
    b[at] = 0xaa;
    reseal(&mut b);
    let e = err(&b);
    assert!(
        matches!(e, BlobError::NonZeroPadding { offset, value: 0xaa } if offset == at),
        "{e:?}"
    );
}

#[test]
fn invalid_ternary() {
    // 4x: the gpt2 blob; 16x: the hadamard and octonion blobs.
    for (base, name, byte, element) in [
        (gpt2_blob(), "layers.0.attn.k.weight", 5usize, 20usize),
        (gpt2_blob(), "layers.0.mlp.down.weight", 0, 0),
        (hadamard_blob(), "layers.0.attn.q.weight", 0, 0),
        (octonion_blob(), "layers.1.mlp.gate.weight", 0, 0),
    ] {
        let l = layout(base);
        let at = l.data_at(name) + byte;
        let mut b = base.to_vec();
        b[at] |= 0b11; // the first code of this byte (element 4·byte in 4x) becomes 11
        reseal(&mut b);
        let e = err(&b);
        assert!(
            matches!(&e, BlobError::InvalidTernary { tensor, element: el } if tensor == name && (byte != 5 || *el == element)),
            "{name}: {e:?}"
        );
        assert_mentions(&e, name);
    }
}

#[test]
fn ternary_padding() {
    // 4x: `mlp.gate.weight` of the dense blob has 10 weights in 3 bytes; the last byte's codes
    // 2 and 3 are padding.
    let base = dense_blob();
    let name = "layers.0.mlp.gate.weight";
    let l = layout(base);
    assert_eq!(l.entry(name).length, 3);
    for bits in [0b01_00_00_00u8, 0b00_01_00_00, 0b11_00_00_00] {
        let mut b = base.to_vec();
        b[l.data_at(name) + 2] |= bits;
        reseal(&mut b);
        let e = err(&b);
        assert!(
            matches!(&e, BlobError::TernaryPadding { tensor, byte: 2 } if tensor == name),
            "{e:?}"
        );
        assert_mentions(&e, name);
    }
    // 16x: a [32, 2, 2] weight fills 2 of each tile's 4 rows and 2 of its 16 columns. Word 0 of
    // a tile is row 0; its bits 4..5 are column 2 (padding). Word 2 is row 2 (padding).
    let base = hadamard_blob();
    let name = "layers.0.attn.o.weight";
    let l = layout(base);
    for (byte, bits) in [
        (0usize, 0b0001_0000u8),
        (8, 0b01),
        (16 * 31 + 11, 0b1000_0000),
    ] {
        let mut b = base.to_vec();
        b[l.data_at(name) + byte] |= bits;
        reseal(&mut b);
        let e = err(&b);
        assert!(
            matches!(&e, BlobError::TernaryPadding { tensor, byte: x } if tensor == name && *x == byte),
            "{e:?}"
        );
    }
}

#[test]
fn not_finite() {
    // f32: a NaN / an infinity in a norm gain.
    let base = gpt2_blob();
    for bits in [0x7fc0_0000u32, 0x7f80_0000, 0xff80_0000] {
        let b = edited(base, |b, l| {
            let at = l.data_at("layers.0.mlp_norm.weight") + 4 * 7;
            b[at..at + 4].copy_from_slice(&bits.to_le_bytes());
        });
        let e = err(&b);
        assert!(
            matches!(&e, BlobError::NotFinite { tensor, element: 7 } if tensor == "layers.0.mlp_norm.weight"),
            "{e:?}"
        );
        assert_mentions(&e, "layers.0.mlp_norm.weight");
    }
    // f16: an infinity in an embedding table.
    let b = edited(base, |b, l| {
        let at = l.data_at("tok_emb.hash2") + 2 * 100;
        b[at..at + 2].copy_from_slice(&0x7c00u16.to_le_bytes());
    });
    let e = err(&b);
    assert!(
        matches!(&e, BlobError::NotFinite { tensor, element: 100 } if tensor == "tok_emb.hash2"),
        "{e:?}"
    );
    // int8: a NaN row scale (row 3 of a [32, 16] table; element = first of the row).
    let base = octonion_blob();
    let l = layout(base);
    let e_at = l.data_at("tok_emb.weight") + 32 * 16 + 2 * 3;
    let mut b = base.to_vec();
    b[e_at..e_at + 2].copy_from_slice(&0x7e00u16.to_le_bytes());
    reseal(&mut b);
    let e = err(&b);
    assert!(
        matches!(&e, BlobError::NotFinite { tensor, element: 48 } if tensor == "tok_emb.weight"),
        "{e:?}"
    );
    // f32 alpha of a 16x blob.
    let base = hadamard_blob();
    let b = edited(base, |b, l| {
        let at = l.data_at("layers.0.attn.mix.beta");
        b[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    assert!(matches!(
        err(&b),
        BlobError::NotFinite { tensor, element: 0 } if tensor == "layers.0.attn.mix.beta"
    ));
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// One example of every variant, with its Display: all single lines.
#[test]
fn display_messages_are_single_line() {
    let examples = vec![
        BlobError::TooShort {
            needed: 56,
            have: 3,
        },
        BlobError::BadMagic { found: [0xff; 8] },
        BlobError::UnsupportedVersion(2),
        BlobError::ReservedFlags(2),
        BlobError::InvalidTernaryByte {
            tensor: "t".into(),
            byte: 1,
            value: 250,
        },
        BlobError::QuantPadding {
            tensor: "t".into(),
            row: 3,
        },
        BlobError::SectionOutOfBounds {
            section: "config",
            offset: 56,
            len: u64::MAX,
            limit: 10,
        },
        BlobError::DataMisaligned(63),
        BlobError::Config(ConfigError::Json("x at line 1 column 2".into())),
        BlobError::Config(ConfigError::Invalid {
            field: "n_head",
            value: "3".into(),
            rule: "must divide n_embd",
        }),
        BlobError::TokenizerNotUtf8,
        BlobError::TableTruncated {
            entry: 1,
            needed: 2,
        },
        BlobError::TensorCount {
            count: 1,
            expected: 2,
        },
        BlobError::BadName {
            entry: 0,
            why: NAME_CHARS,
        },
        BlobError::UnknownDtype {
            tensor: "a".into(),
            code: 9,
        },
        BlobError::BadRank {
            tensor: "a".into(),
            rank: 0,
        },
        BlobError::DuplicateTensor("a".into()),
        BlobError::UnexpectedTensor("a".into()),
        BlobError::MissingTensor("a".into()),
        BlobError::ShapeMismatch {
            tensor: "a".into(),
            expected: vec![1, 2],
            found: vec![3],
        },
        BlobError::DtypeNotAllowed {
            tensor: "a".into(),
            dtype: "f32",
        },
        BlobError::LengthMismatch {
            tensor: "a".into(),
            expected: 4,
            found: 5,
        },
        BlobError::Misaligned {
            tensor: "a".into(),
            offset: 1,
        },
        BlobError::Overlap { tensor: "a".into() },
        BlobError::DataOutOfBounds {
            tensor: "a".into(),
            end: u64::MAX,
            data_len: 1,
        },
        BlobError::NonZeroPadding {
            offset: 1,
            value: 2,
        },
        BlobError::InvalidTernary {
            tensor: "a".into(),
            element: 0,
        },
        BlobError::TernaryPadding {
            tensor: "a".into(),
            byte: 0,
        },
        BlobError::NotFinite {
            tensor: "a".into(),
            element: 0,
        },
        BlobError::Truncated {
            expected: 100,
            have: 99,
        },
        BlobError::TrailingBytes { extra: 1 },
        BlobError::ChecksumMismatch {
            stored: "00".repeat(32),
            computed: "ff".repeat(32),
        },
    ];
    assert_eq!(examples.len(), 32); // 31 variants, Config twice
    for e in &examples {
        let msg = e.to_string();
        assert!(!msg.is_empty() && !msg.contains('\n'), "{e:?}: {msg:?}");
        let msg = LoadError::Blob(e.clone()).to_string();
        assert!(!msg.contains('\n'), "{msg:?}");
    }
    for e in [
        TokenizerError::Load("x".into()),
        TokenizerError::Unsupported("decoder: has no \"type\"".into()),
        TokenizerError::EosOutOfRange { eos: 10, vocab: 3 },
        TokenizerError::VocabTooLarge {
            tokenizer: 3,
            model: 2,
        },
        TokenizerError::Encode("x".into()),
        TokenizerError::Decode("x".into()),
    ] {
        assert!(!LoadError::Tokenizer(e).to_string().contains('\n'));
    }
    let msg = LoadError::TooLarge {
        needed: u64::MAX,
        limit: MAX_ENGINE_HEAP,
    }
    .to_string();
    assert!(!msg.contains('\n'), "{msg:?}");
    // Real messages from real failures: serde_json and tokenizers errors included.
    let mut w = writer_of(dense_blob());
    w.config_json = "{\n  \"vocab_size\": 16,\n  \"bogus\": 1\n}".into();
    let e = err(&w.finish());
    assert!(matches!(e, BlobError::Config(_)));
    let mut w = writer_of(dense_blob());
    w.tokenizer = WriterTokenizer::Json("{\n  \"model\": {\n    \"type\": \"Nope\"\n  }\n}".into());
    let msg = Engine::load(&w.finish()).unwrap_err().to_string();
    assert!(!msg.contains('\n'), "{msg:?}");
}

/// Text from the blob that an error message could quote: tensor names (refused unless ASCII
/// letters, digits, '.' and '_', before any message names them) and the strings serde quotes from
/// the config or tokenizer JSON (`unknown field`, `unknown variant`, `Token ... out of
/// vocabulary`, where a JSON `\n` escape becomes a real newline; the engine escapes \r, \n and
/// \0). A message must stay on one line whatever the blob holds.
#[test]
fn untrusted_text_keeps_messages_on_one_line() {
    let mut problems = Vec::new();
    let mut check = |what: &str, msg: String| {
        if msg.contains(['\n', '\r', '\0']) {
            problems.push(format!("{what}: {msg:?}"));
        }
    };
    let base = gpt2_blob();
    // A table name with a newline, a carriage return or a NUL, in an entry that would also have
    // an unknown dtype, a bad rank, or be an unexpected tensor: the name is refused first, and
    // not quoted.
    let at = entry_index(base, "norm.weight");
    for name in ["norm.weight\nsecond line", "norm.weight\r", "norm\0weight"] {
        for edit in ["dtype", "rank", "unexpected"] {
            let mut w = writer_of(base);
            tensor_mut(&mut w, "norm.weight").name = name.into();
            let mut b = w.finish();
            let l = layout(&b);
            let e = l.entry(name).clone();
            match edit {
                "dtype" => b[e.dtype_pos] = 9,
                "rank" => b[e.rank_pos] = 7,
                _ => {}
            }
            reseal(&mut b);
            let err = parse_err(&b);
            assert!(
                matches!(err, BlobError::BadName { entry, why } if entry == at && why == NAME_CHARS),
                "{name:?}, {edit}: {err:?}"
            );
            let msg = err.to_string();
            assert!(!msg.contains("weight"), "{msg}");
            check(edit, msg);
            check(edit, Engine::load(&b).unwrap_err().to_string());
        }
    }
    // Config JSON: an unknown field and an unknown variant whose names hold an escaped newline,
    // carriage return or NUL; the message shows the escape.
    for (from, to, shown) in [
        ("\"n_layer\"", "\"n_la\\nyer\"", r"n_la\nyer"),
        ("\"hadamard\"", "\"hada\\nmard\"", r"hada\nmard"),
        ("\"n_layer\"", "\"n_la\\ryer\"", r"n_la\ryer"),
        ("\"hadamard\"", "\"hada\\u0000mard\"", r"hada\0mard"),
    ] {
        let mut w = writer_of(base);
        w.config_json = w.config_json.replacen(from, to, 1);
        let e = parse_err(&w.finish());
        assert!(
            matches!(&e, BlobError::Config(ConfigError::Json(m)) if m.contains(shown)),
            "{e:?}"
        );
        check("config", e.to_string());
    }
    // Tokenizer JSON: a model type with an escaped newline (refused by the allow-list), and
    // strings the `tokenizers` crate quotes in its own errors (an unknown variant, a merge of
    // unknown tokens), with the escape shown.
    let e = Engine::load(&dense_blob_with_tokenizer(&tiny_tokenizer_with(
        "\"BPE\"",
        "\"B\\nPE\"",
    )))
    .unwrap_err();
    assert!(
        matches!(&e, LoadError::Tokenizer(TokenizerError::Unsupported(m)) if m.starts_with("model: ")),
        "{e:?}"
    );
    check("tokenizer type", e.to_string());
    for (tok, shown) in [
        (
            tiny_tokenizer_with(
                TINY_PRE_TOKENIZER,
                r#""pre_tokenizer":{"type":"Split","pattern":{"Str\nx":" "},"behavior":"Isolated","invert":false}"#,
            ),
            r"Str\nx",
        ),
        (
            tiny_tokenizer_with(
                TINY_PRE_TOKENIZER,
                r#""pre_tokenizer":{"type":"Split","pattern":{"String":" "},"behavior":"Iso\r\nlated","invert":false}"#,
            ),
            r"Iso\r\nlated",
        ),
        (
            tiny_tokenizer_with(r#""merges":[]"#, r#""merges":["a\nb c"]"#),
            r"a\nb",
        ),
        (
            tiny_tokenizer_with(r#""merges":[]"#, r#""merges":["a\u0000b c"]"#),
            r"a\0b",
        ),
    ] {
        let e = Engine::load(&dense_blob_with_tokenizer(&tok)).unwrap_err();
        assert!(
            matches!(&e, LoadError::Tokenizer(TokenizerError::Load(m)) if m.contains(shown)),
            "{tok}: {e:?}"
        );
        check("tokenizer", e.to_string());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Robustness: mutated blobs never panic
// ---------------------------------------------------------------------------------------------

/// xorshift64* — deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// An extreme or plausible value for a u64 field of a blob of `len` bytes.
fn wild_u64(rng: &mut Rng, len: usize, current: u64) -> u64 {
    let l = len as u64;
    match rng.below(16) {
        0 => 0,
        1 => 1,
        2 => u64::MAX,
        3 => u64::MAX - 31,
        4 => !63,
        5 => 1 << 63,
        6 => u64::from(u32::MAX),
        7 => l,
        8 => l.wrapping_sub(32),
        9 => l + 1,
        10 => current.wrapping_add(1 + rng.below(128) as u64),
        11 => current.wrapping_sub(1 + rng.below(128) as u64),
        12 => current.wrapping_add(64),
        13 => current.wrapping_sub(64),
        14 => rng.next() % (2 * l + 1),
        _ => rng.next(),
    }
}

/// One random mutation of `b` (whose layout, before any mutation, is `l`).
fn mutate(rng: &mut Rng, b: &mut Vec<u8>, l: &Layout) -> &'static str {
    let len = b.len();
    // The structured mutations address fields by the original layout: only while every position
    // of it is still inside the blob.
    let intact = len >= l.data_offset + l.data_len + 32;
    let kind = rng.below(12);
    if !intact && kind >= 6 {
        return "none (blob already shortened)";
    }
    match kind {
        0 | 1 => {
            // Flip bits of 1..8 random bytes.
            for _ in 0..1 + rng.below(8) {
                if !b.is_empty() {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
            }
            "bit flips"
        }
        2 => {
            // Random bytes somewhere in the data section.
            if intact && l.data_len > 0 {
                for _ in 0..1 + rng.below(4) {
                    let i = l.data_offset + rng.below(l.data_len);
                    b[i] = rng.next() as u8;
                }
            }
            "data bytes"
        }
        3 => {
            b.truncate(rng.below(len + 1));
            "truncation"
        }
        4 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(70);
            let bytes: Vec<u8> = (0..n)
                .map(|_| if rng.chance(50) { 0 } else { rng.next() as u8 })
                .collect();
            b.splice(at..at, bytes);
            "insertion"
        }
        5 => {
            if len > 0 {
                let at = rng.below(len);
                let n = 1 + rng.below(70).min(len - at - 1);
                b.drain(at..at + n);
            }
            "deletion"
        }
        6 | 7 => {
            // A header u64 field.
            let at = [
                H_CONFIG_LEN,
                H_TOKENIZER_LEN,
                H_COUNT,
                H_DATA_OFFSET,
                H_DATA_LEN,
            ][rng.below(5)];
            let v = wild_u64(rng, len, get_u64(b, at));
            set_u64(b, at, v);
            if rng.chance(30) {
                // Keep P + S + 32 = len by moving the other one.
                let p = get_u64(b, H_DATA_OFFSET);
                let s = (len as u64).wrapping_sub(32).wrapping_sub(p);
                set_u64(b, H_DATA_LEN, s);
            }
            "header field"
        }
        8 | 9 => {
            // A table entry field.
            let e = &l.entries[rng.below(l.entries.len())];
            match rng.below(7) {
                0 => set_u16(b, e.pos, rng.next() as u16 % 300),
                1 => b[e.dtype_pos] = rng.below(7) as u8,
                2 => b[e.rank_pos] = rng.below(6) as u8,
                3 => {
                    let rank = usize::from(b[e.rank_pos].min(4)).max(1);
                    let at = e.dims_pos + 8 * rng.below(rank);
                    let v = wild_u64(rng, len, get_u64(b, at));
                    set_u64(b, at, v);
                }
                4 => {
                    let v = wild_u64(rng, len, e.offset);
                    set_u64(b, e.offset_pos, v);
                }
                5 => {
                    let v = wild_u64(rng, len, e.length);
                    set_u64(b, e.length_pos, v);
                }
                _ => {
                    // Swap the names' first bytes with random ones.
                    let at = e.pos + 2;
                    b[at] = rng.next() as u8;
                }
            }
            "table field"
        }
        10 => {
            // A ternary byte set to a random value (codes 11 and padding).
            let t: Vec<&Entry> = l.entries.iter().filter(|e| e.dtype >= 3).collect();
            if let Some(e) = t.get(rng.below(t.len())) {
                let i = l.data_offset + e.offset as usize + rng.below(e.length as usize);
                b[i] = rng.next() as u8;
            }
            "ternary byte"
        }
        _ => {
            // Config or tokenizer text edits (a digit changed, a byte replaced).
            let r = if rng.chance(50) {
                l.config.clone()
            } else {
                l.tokenizer.clone()
            };
            if !r.is_empty() {
                let i = r.start + rng.below(r.len());
                b[i] = if rng.chance(50) {
                    b'0' + rng.below(10) as u8
                } else {
                    rng.next() as u8
                };
            }
            "text byte"
        }
    }
}

/// Variant name of an error, for the coverage tally.
fn variant(e: &LoadError) -> String {
    let d = format!("{e:?}");
    d.split(['{', '(', ')', ' '])
        .take(2)
        .collect::<Vec<_>>()
        .join("::")
}

#[test]
fn mutated_blobs_never_panic() {
    let started = std::time::Instant::now();
    let tiny: [(&str, &[u8]); 6] = [
        ("dense", dense_blob()),
        ("octonion", octonion_blob()),
        ("hadamard", hadamard_blob()),
        ("hash int4r 5x", hash_int4r_blob()),
        ("octonion int6 5x", octonion_int6_blob()),
        ("dense int6 5x", dense_int6_blob()),
    ];
    let mut rng = Rng(0x005e_ed0f_b10b);
    let mut panics = Vec::new();
    let mut multi_line = Vec::new();
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut run = |label: String, b: &[u8], tally: &mut BTreeMap<String, usize>| {
        let outcome = catch_unwind(AssertUnwindSafe(|| match blob::parse(b) {
            Ok(_) => Engine::load(b).map(|_| ()),
            Err(e) => Err(LoadError::Blob(e)),
        }));
        match outcome {
            Err(_) => panics.push(format!("{label}: panicked")),
            Ok(Ok(())) => *tally.entry("Ok".into()).or_default() += 1,
            Ok(Err(e)) => {
                let msg = e.to_string();
                if msg.contains('\n') {
                    multi_line.push(format!("{label}: {msg:?}"));
                }
                *tally.entry(variant(&e)).or_default() += 1;
            }
        }
    };

    // WALSH_MUTATIONS=10000000 for a long campaign (docs/BENCHMARKS.md); 20,000 in CI.
    let tiny_iterations: usize = std::env::var("WALSH_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    for i in 0..tiny_iterations {
        let (name, base) = tiny[i % tiny.len()];
        let l = layout(base);
        let mut b = base.to_vec();
        let mut what = Vec::new();
        for _ in 0..1 + rng.below(3) {
            what.push(mutate(&mut rng, &mut b, &l));
        }
        let resealed = b.len() >= 32 && rng.chance(75);
        if resealed {
            reseal(&mut b);
        }
        run(
            format!("iteration {i} ({name}, {what:?}, resealed: {resealed})"),
            &b,
            &mut tally,
        );
    }
    // A few on the GPT-2 blob (its tokenizer takes a while to load).
    const GPT2_ITERATIONS: usize = 60;
    let base = gpt2_blob();
    let l = layout(base);
    for i in 0..GPT2_ITERATIONS {
        let mut b = base.to_vec();
        let what = mutate(&mut rng, &mut b, &l);
        if b.len() >= 32 && rng.chance(75) {
            reseal(&mut b);
        }
        run(format!("gpt2 iteration {i} ({what})"), &b, &mut tally);
    }
    // Every prefix length of a tiny blob, resealed and not.
    let base = dense_blob();
    for cut in 0..base.len() {
        let mut b = base[..cut].to_vec();
        run(format!("prefix {cut}"), &b, &mut tally);
        if b.len() >= 32 {
            reseal(&mut b);
            run(format!("resealed prefix {cut}"), &b, &mut tally);
        }
    }

    eprintln!(
        "mutated blobs: {} outcomes in {:.2?}",
        tally.values().sum::<usize>(),
        started.elapsed()
    );
    for (k, v) in &tally {
        eprintln!("  {k}: {v}");
    }
    assert!(panics.is_empty(), "{}", panics.join("\n"));
    // Untrusted text in messages: see `untrusted_text_keeps_messages_on_one_line`.
    assert!(
        multi_line.is_empty(),
        "{} multi-line messages:\n{}",
        multi_line.len(),
        multi_line.join("\n")
    );
    // The mutations reach deep into the blob, not only the header and checksum checks, and
    // some mutated blobs (a changed data byte, say) still load.
    for deep in [
        "Blob::BadName",
        "Blob::InvalidTernary",
        "Blob::NotFinite",
        "Blob::TernaryPadding",
        "Blob::InvalidTernaryByte",
        "Blob::QuantPadding",
        "Blob::ShapeMismatch",
        "Tokenizer::Load",
        "Tokenizer::Unsupported",
        "Ok",
    ] {
        assert!(tally.contains_key(deep), "no {deep} among {tally:?}");
    }
}

/// SPEC §4: the tokenizer must load "with `eos_token_id` < its vocabulary size ≤ V". The second
/// half is `VocabTooLarge`; the first is `EosOutOfRange`: a model whose end-of-text token is not a
/// token of its tokenizer does not load, though its config alone is valid.
#[test]
fn eos_token_outside_the_tokenizer_vocabulary() {
    for eos in [3u32, 10, 15] {
        let mut cfg = tiny_dense_config();
        cfg.eos_token_id = eos; // < vocab_size 16, but the tokenizer has 3 tokens
        let b = make_blob(&cfg, TINY_TOKENIZER, Packing::X4, DType::F32);
        blob::parse(&b).expect("the config itself is valid");
        let e = Engine::load(&b).unwrap_err();
        assert_eq!(
            e,
            LoadError::Tokenizer(TokenizerError::EosOutOfRange { eos, vocab: 3 })
        );
        let msg = e.to_string();
        assert!(
            msg.contains("eos_token_id") && msg.contains(&eos.to_string()),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "{msg:?}");
    }
    // The last token of the tokenizer is a valid end-of-text token.
    let mut cfg = tiny_dense_config();
    cfg.eos_token_id = 2;
    let b = make_blob(&cfg, TINY_TOKENIZER, Packing::X4, DType::F32);
    assert_eq!(
        Engine::load(&b)
            .expect("eos 2 < 3 tokens")
            .config()
            .eos_token_id,
        2
    );
    // A tokenizer too large for the model is reported first, whatever the eos.
    let mut cfg = tiny_dense_config();
    cfg.vocab_size = 2;
    cfg.eos_token_id = 1;
    let b = make_blob(&cfg, TINY_TOKENIZER, Packing::X4, DType::F32);
    assert!(matches!(
        Engine::load(&b).unwrap_err(),
        LoadError::Tokenizer(TokenizerError::VocabTooLarge { .. })
    ));
}

/// A small blob can describe a model far too large to run: `Engine::load` compares
/// `Model::heap_estimate` with `MAX_ENGINE_HEAP` (3 GiB) before allocating anything. Two
/// configs whose tensors take a few hundred KiB: a long context over a wide model (activations,
/// RoPE tables, KV cache), and a huge vocabulary behind hash embeddings (the logits).
#[test]
fn model_too_large_for_the_engine() {
    let long_context = ModelConfig {
        name: "long".into(),
        vocab_size: 16,
        n_embd: 1024,
        n_layer: 1,
        n_head: 1,
        block_size: 65_536,
        algebra: Algebra::Hadamard,
        head_mixing: false,
        embedding: Embedding::Standard,
        hash_buckets: 1021,
        rope_theta: 10000.0,
        eos_token_id: 0,
    };
    let huge_vocab = ModelConfig {
        name: "vocab".into(),
        vocab_size: 16_777_216,
        n_embd: 2,
        n_layer: 1,
        n_head: 1,
        block_size: 64,
        algebra: Algebra::Dense,
        head_mixing: false,
        embedding: Embedding::Hash,
        hash_buckets: 7,
        rope_theta: 10000.0,
        eos_token_id: 0,
    };
    for cfg in [long_context, huge_vocab] {
        let needed = Model::heap_estimate(&cfg);
        assert!(needed > MAX_ENGINE_HEAP, "{}: {needed}", cfg.name);
        let b = make_blob(&cfg, TINY_TOKENIZER, Packing::X16, DType::F16);
        assert!(b.len() < 1 << 20, "{}: {} bytes", cfg.name, b.len());
        blob::parse(&b).expect("the blob itself is valid");
        let e = Engine::load(&b).unwrap_err();
        assert_eq!(
            e,
            LoadError::TooLarge {
                needed,
                limit: MAX_ENGINE_HEAP
            },
            "{}",
            cfg.name
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&needed.to_string()) && msg.contains(&MAX_ENGINE_HEAP.to_string()),
            "{msg}"
        );
        assert!(!msg.contains('\n'), "{msg:?}");
    }
    assert_eq!(MAX_ENGINE_HEAP, 3 << 30);
    // The fixtures are far below the limit.
    for cfg in [
        tiny_dense_config(),
        tiny_octonion_config(),
        tiny_hadamard_config(),
        gpt2_config(),
    ] {
        assert!(Model::heap_estimate(&cfg) < MAX_ENGINE_HEAP / 100);
    }
}

/// `Engine::load` hands the blob's tokenizer.json to the `tokenizers` crate, whose deserializers
/// (0.22) `expect` in places: a syntax error inside `"decoder"` (decoders/mod.rs: `expect("Helper")`)
/// and a `Precompiled` normalizer whose fields do not parse (normalizers/mod.rs:
/// `expect("Precompiled")`) panic instead of returning an error, and a `FixedLength` pre-tokenizer
/// of length 0 panics when it encodes. A blob must not be able to do that (in the canister, built
/// with `panic = "abort"`, it traps): the engine parses the JSON itself first (`Load`) and refuses
/// components outside its allow-list (`Unsupported`).
#[test]
fn tokenizer_json_never_panics_the_loader() {
    let cases: [(&str, &str, &str, bool); 11] = [
        // (what, from, to, whether the error is `Load` rather than `Unsupported`)
        ("decoder syntax error", TINY_DECODER, r#""decoder":x"#, true),
        (
            "decoder syntax error inside an object",
            TINY_DECODER,
            r#""decoder":{"type":"ByteLevel",}"#,
            true,
        ),
        (
            "decoder not an object",
            TINY_DECODER,
            r#""decoder":7"#,
            false,
        ),
        (
            "decoder of an unknown type",
            TINY_DECODER,
            r#""decoder":{"type":"Nope"}"#,
            false,
        ),
        (
            "Precompiled without its charsmap",
            r#""normalizer":null"#,
            r#""normalizer":{"type":"Precompiled"}"#,
            false,
        ),
        (
            "Precompiled with bad base64",
            r#""normalizer":null"#,
            r#""normalizer":{"type":"Precompiled","precompiled_charsmap":"!!"}"#,
            false,
        ),
        (
            "Precompiled inside a Sequence",
            r#""normalizer":null"#,
            r#""normalizer":{"type":"Sequence","normalizers":[{"type":"Precompiled"}]}"#,
            false,
        ),
        (
            "Precompiled without a type (legacy untagged form)",
            r#""normalizer":null"#,
            r#""normalizer":{"precompiled_charsmap":"!!"}"#,
            false,
        ),
        (
            "FixedLength of length 0",
            TINY_PRE_TOKENIZER,
            r#""pre_tokenizer":{"type":"FixedLength","length":0}"#,
            false,
        ),
        (
            "FixedLength inside a Sequence",
            TINY_PRE_TOKENIZER,
            r#""pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Whitespace"},{"type":"FixedLength","length":0}]}"#,
            false,
        ),
        (
            "null inside a Sequence",
            TINY_DECODER,
            r#""decoder":{"type":"Sequence","decoders":[{"type":"Fuse"},null]}"#,
            false,
        ),
    ];
    let mut panicked = Vec::new();
    for (what, from, to, is_load) in cases {
        let b = dense_blob_with_tokenizer(&tiny_tokenizer_with(from, to));
        match catch_unwind(|| Engine::load(&b).map(|_| ())) {
            Err(_) => panicked.push(what),
            Ok(r) => {
                if is_load {
                    assert!(
                        matches!(r, Err(LoadError::Tokenizer(TokenizerError::Load(_)))),
                        "{what}: {r:?}"
                    )
                } else {
                    assert!(
                        matches!(r, Err(LoadError::Tokenizer(TokenizerError::Unsupported(_)))),
                        "{what}: {r:?}"
                    )
                }
            }
        }
    }
    assert!(
        panicked.is_empty(),
        "Engine::load panicked on: {panicked:?}"
    );
}

/// The allow-list reads tokenizer.json with serde_json, where the last of two equal keys wins; the
/// `tokenizers` crate deserializes every occurrence in turn. So a refused component followed by
/// an allowed one under the same key passes the check and still reaches the crate: here a
/// `Precompiled` normalizer that panics in `expect("Precompiled")`.
#[test]
fn tokenizer_duplicate_keys_never_panic_the_loader() {
    let mut panicked = Vec::new();
    for (what, to) in [
        (
            "Precompiled, then null",
            r#""normalizer":{"type":"Precompiled"},"normalizer":null"#,
        ),
        (
            "Precompiled with bad base64, then NFC",
            r#""normalizer":{"type":"Precompiled","precompiled_charsmap":"!!"},"normalizer":{"type":"NFC"}"#,
        ),
    ] {
        let b = dense_blob_with_tokenizer(&tiny_tokenizer_with(r#""normalizer":null"#, to));
        // Loading (the JSON as the check reads it is valid) or refusing are both fine.
        if catch_unwind(|| Engine::load(&b).map(|_| ())).is_err() {
            panicked.push(what);
        }
    }
    assert!(
        panicked.is_empty(),
        "Engine::load panicked on: {panicked:?}"
    );
}

/// The allow-list takes a model without `"type"` for BPE, but the `tokenizers` crate reads such a
/// model by trying BPE, WordPiece, WordLevel and Unigram in turn: a BPE without merges becomes a
/// WordPiece, a Unigram's fields a Unigram. Only BPE models may load.
#[test]
fn untyped_tokenizer_model_must_be_bpe() {
    for model in [
        r#"{"unk_id":0,"vocab":[["<unk>",0.0],["a",-1.0],["b",-2.0]]}"#,
        r#"{"vocab":{"<unk>":0,"a":1,"b":2},"unk_token":"<unk>"}"#,
        r#"{"vocab":{"<unk>":0,"a":1,"b":2},"unk_token":"<unk>","continuing_subword_prefix":"@@","max_input_chars_per_word":100}"#,
    ] {
        let b = dense_blob_with_tokenizer(&tiny_tokenizer_with_model(model));
        let r = Engine::load(&b).map(|_| ());
        assert!(
            matches!(
                r,
                Err(LoadError::Tokenizer(
                    TokenizerError::Unsupported(_) | TokenizerError::Load(_)
                ))
            ),
            "{model}: {r:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The canister reaches the native verdict (wasm32: a usize is 32 bits)
// ---------------------------------------------------------------------------------------------

/// A blob of `cfg` with every tensor zero (f32 floats, 4x ternary), except those that `edit`
/// changes.
fn zero_blob(cfg: &ModelConfig, edit: impl Fn(&mut WriterTensor)) -> Vec<u8> {
    let tensors = cfg
        .tensors()
        .into_iter()
        .map(|spec| {
            let dtype = if spec.kind == walsh_spec::config::TensorKind::AlgebraWeight {
                DType::Ternary4x
            } else {
                DType::F32
            };
            let len = dtype.byte_len(&spec.shape);
            let mut t = WriterTensor {
                name: spec.name.clone(),
                dtype,
                shape: spec.shape.clone(),
                // Placeholder for tensors too large to build: `edit` must replace them.
                bytes: if len < 16 << 20 {
                    vec![0; len as usize]
                } else {
                    Vec::new()
                },
            };
            edit(&mut t);
            t
        })
        .collect();
    BlobWriter {
        config_json: cfg.to_json(),
        tokenizer: WriterTokenizer::Json(TINY_TOKENIZER.into()),
        tensors,
    }
    .finish()
}

/// Blobs whose sizes overflow 32-bit arithmetic: on wasm32 the canister once computed them in
/// usize, committed blobs the native engine refuses, and every `generate` trapped afterwards.
fn wasm32_overflow_blobs() -> Vec<(&'static str, Vec<u8>)> {
    let base = ModelConfig {
        name: "overflow".into(),
        vocab_size: 16_777_216,
        n_embd: 256,
        n_layer: 1,
        n_head: 2,
        block_size: 4,
        algebra: Algebra::Dense,
        head_mixing: false,
        embedding: Embedding::Standard,
        hash_buckets: 1021,
        rope_theta: 10000.0,
        eos_token_id: 0,
    };
    // 16,777,216 × 256 f32 embeddings are 2^34 bytes: 0 in 32 bits. The table says 0 bytes.
    let embedding = zero_blob(&base, |_| {});
    // 256 layers × 65,536 positions × 256 dimensions of KV cache: 2^32 floats, 0 in 32 bits.
    let kv = ModelConfig {
        vocab_size: 16,
        n_layer: 256,
        block_size: 65_536,
        algebra: Algebra::Hadamard,
        n_head: 8,
        ..base.clone()
    };
    // A hash-embedded vocabulary of 2^24 over a 65,536-token context: logits of 2^42 bytes.
    let logits = ModelConfig {
        n_embd: 64,
        n_head: 2,
        block_size: 65_536,
        algebra: Algebra::Hadamard,
        embedding: Embedding::Hash,
        hash_buckets: 7,
        ..base.clone()
    };
    vec![
        ("16M x 256 embeddings of 0 bytes", embedding),
        ("256 layers x 65,536 positions", zero_blob(&kv, |_| {})),
        (
            "2^24 hash vocabulary x 65,536 positions",
            zero_blob(&logits, |_| {}),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Format version 2: the compact tokenizer (SPEC §4.2), base-3 ternary and integer rows (§4.1),
// and version 1 blobs
// ---------------------------------------------------------------------------------------------

/// Dense, int6 embeddings (rows of 2 codes: 12 bits in 2 bytes, 4 of them padding) and 5x
/// ternary (`attn.q.weight` has 4 weights: one padding digit).
fn dense_int6_blob() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        packed(
            &tiny_dense_config(),
            TINY_TOKENIZER,
            Packing::X5,
            DType::Int6,
        )
    })
}

#[test]
fn newer_formats_load() {
    for (b, emb) in [
        (gpt2_compact_blob(), DType::Int4Rot),
        (hash_int4r_blob(), DType::Int4Rot),
        (octonion_int6_blob(), DType::Int6),
        (dense_int6_blob(), DType::Int6),
    ] {
        let parsed = blob::parse(b).expect("parses");
        assert_eq!(parsed.version, 2);
        assert_eq!(parsed.tokenizer.form(), "compact");
        for t in &parsed.tensors {
            match t.kind {
                walsh_spec::config::TensorKind::AlgebraWeight => {
                    assert_eq!(t.dtype, DType::Ternary5x)
                }
                walsh_spec::config::TensorKind::Embedding => assert_eq!(t.dtype, emb),
                _ => {}
            }
        }
        Engine::load(b).expect("loads");
        // The writer reproduces it from its parts.
        assert_eq!(writer_of(b).finish(), b);
    }
    // GPT-2's tokenizer: 1.48 MB as JSON, under a sixth of that compact.
    let json = blob::parse(gpt2_blob()).unwrap().tokenizer.len();
    let compact = blob::parse(gpt2_compact_blob()).unwrap().tokenizer.len();
    assert!(compact * 6 < json, "{compact} vs {json}");
}

/// Version 1 blobs (no flags, JSON tokenizer, dtype codes 0..4) still load; the codes of
/// version 2 and the compact flag are refused in them.
#[test]
fn version_1_blobs() {
    for base in [gpt2_blob(), dense_blob(), octonion_blob(), hadamard_blob()] {
        let mut b = base.to_vec();
        set_u32(&mut b, H_VERSION, 1);
        reseal(&mut b);
        assert_eq!(blob::parse(&b).expect("v1 parses").version, 1);
        Engine::load(&b).expect("v1 loads");
    }
    let mut b = with_json_tokenizer(hash_int4r_blob(), TINY_TOKENIZER);
    set_u32(&mut b, H_VERSION, 1);
    reseal(&mut b);
    let e = err(&b);
    assert!(
        matches!(e, BlobError::UnknownDtype { code: 5 | 10, .. }),
        "{e:?}"
    );
    // The committed default model.
    let default = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/walsh-default.walsh"
    ))
    .unwrap();
    Engine::load(&default).expect("models/walsh-default.walsh loads");
}

/// A compact tokenizer section that does not decode, or decodes to a tokenizer the engine
/// refuses: `parse` reads only the header flag; `Engine::load` names the problem on one line.
#[test]
fn compact_tokenizer_errors() {
    let base = hash_int4r_blob();
    let l = layout(base);
    let (start, end) = (l.tokenizer.start, l.tokenizer.end);
    type Edit = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("declared length", Box::new(move |b| b[start] ^= 0x01)),
        ("more than", Box::new(move |b| b[start + 3] = 0x7f)),
        ("corrupt", Box::new(move |b| b[start + 4] ^= 0xff)),
        ("corrupt", Box::new(move |b| b[end - 1] ^= 0x5a)),
    ];
    for (what, edit) in cases {
        let b = edited(base, |b, _| edit(b));
        blob::parse(&b).expect("parse reads the compact section's flag only");
        let e = Engine::load(&b).unwrap_err();
        assert!(
            matches!(e, LoadError::Tokenizer(TokenizerError::Load(_))),
            "{what}: {e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains("compact tokenizer"), "{what}: {msg}");
        assert!(!msg.contains('\n'), "{msg:?}");
    }
    // A JSON section flagged as compact.
    let mut b = dense_blob().to_vec();
    set_u32(&mut b, H_FLAGS, blob::FLAG_COMPACT_TOKENIZER);
    reseal(&mut b);
    let e = Engine::load(&b).unwrap_err();
    assert!(e.to_string().contains("compact tokenizer"), "{e}");
    // A well-formed compact tokenizer with a component outside the allow-list, one the crate
    // refuses, and a vocabulary larger than the model's.
    for (tok, unsupported) in [
        (
            tiny_tokenizer_with(TINY_PRE_TOKENIZER, r#""pre_tokenizer":{"type":"Nope"}"#),
            true,
        ),
        (
            tiny_tokenizer_with(
                TINY_DECODER,
                r#""decoder":{"type":"ByteLevel","add_prefix_space":"yes"}"#,
            ),
            false,
        ),
    ] {
        let compact = blob::CompactTokenizer::from_json(&tok)
            .unwrap()
            .encode()
            .unwrap();
        let mut w = writer_of(dense_blob());
        w.tokenizer = WriterTokenizer::Compact(compact);
        let e = Engine::load(&w.finish()).unwrap_err();
        match e {
            LoadError::Tokenizer(TokenizerError::Unsupported(_)) if unsupported => {}
            LoadError::Tokenizer(TokenizerError::Load(_)) if !unsupported => {}
            _ => panic!("{tok}: {e:?}"),
        }
    }
    let tok = std::fs::read_to_string(GPT2_TOKENIZER).unwrap();
    let compact = blob::CompactTokenizer::from_json(&tok)
        .unwrap()
        .encode()
        .unwrap();
    let mut w = writer_of(dense_blob());
    w.tokenizer = WriterTokenizer::Compact(compact);
    let e = Engine::load(&w.finish()).unwrap_err();
    assert!(
        matches!(
            e,
            LoadError::Tokenizer(TokenizerError::VocabTooLarge {
                tokenizer: 50257,
                model: 16
            })
        ),
        "{e:?}"
    );
}

#[test]
fn ternary5x_errors() {
    let base = dense_int6_blob();
    let l = layout(base);
    let name = "layers.0.attn.q.weight";
    assert_eq!(l.entry(name).length, 1);
    // A byte above 242 is no five trits.
    for v in [243u8, 255] {
        let b = edited(base, |b, l| b[l.data_at(name)] = v);
        let e = err(&b);
        assert!(
            matches!(&e, BlobError::InvalidTernaryByte { tensor, byte: 0, value } if tensor == name && *value == v),
            "{e:?}"
        );
        assert_mentions(&e, name);
    }
    // 4 weights: the fifth digit (81) is padding.
    let b = edited(base, |b, l| b[l.data_at(name)] = 81);
    let e = err(&b);
    assert!(
        matches!(&e, BlobError::TernaryPadding { tensor, byte: 0 } if tensor == name),
        "{e:?}"
    );
}

#[test]
fn quant_rows_errors() {
    let base = dense_int6_blob();
    let l = layout(base);
    let name = "tok_emb.weight";
    // 16 rows of 2 bytes, then 16 f16 scales.
    assert_eq!(l.entry(name).length, 16 * 2 + 16 * 2);
    for row in [0usize, 15] {
        let b = edited(base, |b, l| b[l.data_at(name) + 2 * row + 1] |= 0x10);
        let e = err(&b);
        assert!(
            matches!(&e, BlobError::QuantPadding { tensor, row: r } if tensor == name && *r == row),
            "{e:?}"
        );
        assert_mentions(&e, name);
    }
    for bits in [0x7e00u16, 0x7c00, 0xfc00] {
        let b = edited(base, |b, l| {
            let at = l.data_at(name) + 32 + 2 * 3;
            b[at..at + 2].copy_from_slice(&bits.to_le_bytes());
        });
        let e = err(&b);
        assert!(
            matches!(&e, BlobError::NotFinite { tensor, element: 6 } if tensor == name),
            "{e:?}"
        );
    }
}

/// The integer head's view of the blob (SPEC §4.1): codes and scales as stored, the rotation
/// block, and `to_f32` equal to the blockwise transform of codes × scale.
#[test]
fn quant_rows_contract() {
    let parsed = blob::parse(hash_int4r_blob()).unwrap();
    let t = parsed.tensor("tok_emb.hash1").unwrap();
    let q = t.to_quant_rows().unwrap().expect("int4r rows");
    assert_eq!((q.rows, q.cols, q.bits), (7, 64, 4));
    assert_eq!(q.rotation_block, Some(64));
    assert!(q.codes.iter().all(|c| (-8..=7).contains(c)));
    let x = t.to_f32().unwrap();
    for r in 0..q.rows {
        for i in 0..64usize {
            let want: f64 = (0..64usize)
                .map(|k| {
                    let sign = if (i & k).count_ones() % 2 == 0 {
                        1.0
                    } else {
                        -1.0
                    };
                    sign / 8.0 * f64::from(q.codes[r * 64 + k]) * f64::from(q.scales[r])
                })
                .sum();
            assert!((want - f64::from(x[r * 64 + i])).abs() < 1e-5);
        }
    }
    let parsed = blob::parse(hadamard_blob()).unwrap();
    assert_eq!(
        parsed
            .tensor("tok_emb.hash1")
            .unwrap()
            .to_quant_rows()
            .unwrap(),
        None
    );
    let parsed = blob::parse(octonion_blob()).unwrap();
    let q = parsed
        .tensor("tok_emb.weight")
        .unwrap()
        .to_quant_rows()
        .unwrap()
        .unwrap();
    assert_eq!((q.bits, q.rotation_block), (8, None));
}

mod in_the_canister {
    use super::*;
    use candid::Encode;
    use candid::Principal;
    use walsh_ic_harness::Harness;
    use walsh_interface::{
        CommitResult, GenerateResult, UploadBegin, UploadChunk, UploadError, UploadResult,
    };
    use walsh_tests::fixtures::controller;

    pub fn installed_for_tests() -> Harness {
        let mut h = Harness::new();
        h.install(
            walsh_tests::canister_wasm(),
            &Encode!().unwrap(),
            vec![controller()],
            controller(),
        )
        .expect("install");
        h
    }

    fn call<T: candid::CandidType + for<'de> candid::Deserialize<'de>>(
        h: &mut Harness,
        method: &str,
        arg: Vec<u8>,
    ) -> T {
        h.update(controller(), method, &arg)
            .unwrap_or_else(|e| panic!("{method} trapped: {e}"))
            .decode()
            .expect("decodes")
    }

    /// Uploads `bytes` in order and commits: the canister's verdict.
    pub fn commit(h: &mut Harness, bytes: &[u8]) -> Result<(), UploadError> {
        const CHUNK: u32 = 1 << 20;
        let begin = UploadBegin {
            total_size: bytes.len() as u64,
            sha256: serde_bytes::ByteBuf::from(Sha256::digest(bytes).to_vec()),
            chunk_size: CHUNK,
        };
        if let UploadResult::Err(e) = call(h, "upload_begin", Encode!(&begin).unwrap()) {
            return Err(e);
        }
        for (i, c) in bytes.chunks(CHUNK as usize).enumerate() {
            let req = UploadChunk {
                index: i as u32,
                data: serde_bytes::ByteBuf::from(c.to_vec()),
            };
            if let UploadResult::Err(e) = call(h, "upload_chunk", Encode!(&req).unwrap()) {
                return Err(e);
            }
        }
        match call(h, "upload_commit", Encode!().unwrap()) {
            CommitResult::Ok(_) => Ok(()),
            CommitResult::Err(e) => Err(e),
        }
    }

    /// The native verdict and the canister's agree on `b`, to the message; a committed model
    /// answers `generate` without trapping.
    pub fn same_verdict(h: &mut Harness, label: &str, b: &[u8]) -> bool {
        let native = Engine::load(b).map(|_| ());
        let canister = commit(h, b);
        match (&native, &canister) {
            (Ok(()), Ok(())) => {
                let r = h
                    .query(
                        Principal::anonymous(),
                        "generate",
                        &Encode!(&"ab".to_string(), &3u32).unwrap(),
                    )
                    .unwrap_or_else(|e| panic!("{label}: generate trapped: {e}"));
                r.decode::<GenerateResult>()
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                true
            }
            (Err(n), Err(UploadError::InvalidBlob(c))) => {
                assert_eq!(&n.to_string(), c, "{label}");
                false
            }
            _ => panic!("{label}: native {native:?}, canister {canister:?}"),
        }
    }
}

/// Every blob of `wasm32_overflow_blobs` and a few hundred mutated ones get the same verdict
/// natively and in the canister's wasm (upload + commit in the harness), to the message.
#[test]
fn the_canister_reaches_the_native_verdict() {
    let started = std::time::Instant::now();
    let mut h = in_the_canister::installed_for_tests();
    for (label, b) in wasm32_overflow_blobs() {
        let e = Engine::load(&b).expect_err(label);
        eprintln!("{label}: {e}");
        assert!(!in_the_canister::same_verdict(&mut h, label, &b), "{label}");
    }
    let mut rng = Rng(0x0000_ca11_57e4);
    let tiny: [&[u8]; 3] = [dense_blob(), octonion_blob(), hadamard_blob()];
    let (mut accepted, mut refused) = (0, 0);
    for (i, base) in tiny.iter().enumerate() {
        assert!(
            in_the_canister::same_verdict(&mut h, "fixture", base),
            "fixture {i}"
        );
    }
    const MUTATIONS: usize = 150;
    for i in 0..MUTATIONS {
        let base = tiny[i % tiny.len()];
        let l = layout(base);
        let mut b = base.to_vec();
        let what = mutate(&mut rng, &mut b, &l);
        if b.len() >= 32 && rng.chance(75) {
            reseal(&mut b);
        }
        if in_the_canister::same_verdict(&mut h, &format!("mutation {i} ({what})"), &b) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    eprintln!(
        "{MUTATIONS} mutated blobs: {accepted} accepted, {refused} refused alike natively and in the canister ({:.2?})",
        started.elapsed()
    );
    assert!(accepted > 0 && refused > 0);
}

/// Property: random configs (boundary values of every field, valid or not) with tensor tables
/// whose lengths are right, 0, or what 32-bit arithmetic would make of them get the same verdict
/// natively and in the canister. Bounded: 120 cases, blobs of a few MB at most.
#[test]
fn random_configs_and_tables_get_the_native_verdict_in_the_canister() {
    let mut rng = Rng(0x0057_a7e5);
    let mut h = in_the_canister::installed_for_tests();
    let pick = |rng: &mut Rng, v: &[usize]| v[rng.below(v.len())];
    let (mut accepted, mut refused) = (0, 0);
    let mut case = 0;
    while case < 120 {
        let algebra = [Algebra::Dense, Algebra::Octonion, Algebra::Hadamard][rng.below(3)];
        let cfg = ModelConfig {
            name: "prop".into(),
            vocab_size: pick(&mut rng, &[2, 3, 16, 1000, 65_536, 16_777_216, 16_777_217]),
            n_embd: pick(&mut rng, &[2, 8, 32, 64, 256, 16_384, 16_385]),
            n_layer: pick(&mut rng, &[1, 2, 3, 256, 257]),
            n_head: pick(&mut rng, &[1, 2, 4, 8, 32]),
            block_size: pick(&mut rng, &[1, 2, 4, 33, 65_536, 65_537]),
            algebra,
            head_mixing: rng.chance(30),
            embedding: if rng.chance(50) {
                Embedding::Hash
            } else {
                Embedding::Standard
            },
            hash_buckets: pick(&mut rng, &[1, 7, 1021]),
            rope_theta: 10000.0,
            eos_token_id: 0,
        };
        // Tensors too large to build here are what a hostile table declares: 0 bytes, or their
        // length modulo 2^32 (the blob stays under about 8 MB).
        let cap = (8u64 << 20) / cfg.tensors().len() as u64;
        case += 1;
        let wrap = rng.chance(50);
        let b = zero_blob(&cfg, |t| {
            let len = t.dtype.byte_len(&t.shape);
            if len > cap {
                let wrapped = len % (1 << 32);
                t.bytes = if wrap && wrapped <= cap {
                    vec![0; wrapped as usize]
                } else {
                    Vec::new()
                };
            }
        });
        let label = format!("case {case}: {}", cfg.to_json().replace('\n', ""));
        if in_the_canister::same_verdict(&mut h, &label, &b) {
            accepted += 1;
        } else {
            refused += 1;
        }
    }
    eprintln!("random configs: {accepted} accepted, {refused} refused alike");
    assert!(accepted > 0 && refused > 0);
}
