//! The compact tokenizer (SPEC §4.2) is the same tokenizer as its tokenizer.json: for GPT-2's
//! and for the default model's frequency-ordered one, identical token ids on all of TinyStories'
//! valid.txt (where the shared data has it; the trainer's validation fixture otherwise) and on a
//! stress text, identical decodings of every token and of the whole text.

use std::path::{Path, PathBuf};
use walsh_engine::Tokenizer;
use walsh_spec::blob::{self, TokenizerSection, WriterTokenizer};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn valid_text() -> String {
    let shared = root().join("../shared/data/tinystories/valid.txt");
    let path = if shared.exists() {
        shared
    } else {
        root().join("trainer/tests/fixtures/tinystories-val.txt")
    };
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Unicode of many scripts, emoji (with joiners and modifiers), every ASCII control character,
/// long runs of spaces, tabs and newlines, the end-of-text marker, and lone combining marks.
fn stress_text() -> String {
    let mut s = String::new();
    s.push_str("Once upon a time — “quotes”, ‘single’, «guillemets» … naïve café Æsir ß ﬁ ½ ℃\n");
    s.push_str("日本語のテキスト、中文文本，한국어 텍스트. Ελληνικά, русский, עברית, العربية, हिन्दी, ไทย\n");
    s.push_str("emoji: 😀🙃👍🏽👨‍👩‍👧‍👦🏳️‍🌈🇫🇷 ✨🔥💯 \u{1F9D1}\u{200D}\u{1F680}\n");
    for c in 0u8..0x20 {
        s.push(char::from(c));
        s.push('x');
    }
    s.push('\u{7f}');
    s.push_str(&" ".repeat(300));
    s.push_str("end of spaces");
    s.push_str(&"\t".repeat(40));
    s.push_str(&"\n".repeat(50));
    s.push_str(
        "  two  spaces   three    four\u{a0}nbsp\u{3000}ideographic space\u{200b}zero width",
    );
    s.push_str("<|endoftext|>after the marker<|endoftext|><|endoftext|>");
    s.push_str("\u{301}\u{302} lone marks, \u{fffd} replacement, \u{10ffff} last code point, ");
    s.push_str("digits 0123456789 1,234,567.89 and symbols ~!@#$%^&*()_+-=[]{}|;':\",./<>?`\\");
    s.push_str(&"aaaa".repeat(200));
    s
}

/// Both forms of `json`'s tokenizer, loaded by the engine; asserts the packer chose the compact
/// form.
fn both_forms(json: &str) -> (Tokenizer, Tokenizer, usize) {
    let (section, why) = walsh_spec::pack::tokenizer_section(json).expect("tokenizer.json parses");
    let WriterTokenizer::Compact(bytes) = section else {
        panic!("not compacted: {why:?}");
    };
    let from_json = Tokenizer::from_json(json, 1 << 20).expect("JSON loads");
    let compact = Tokenizer::from_compact(&bytes, 1 << 20).expect("compact form loads");
    (from_json, compact, bytes.len())
}

fn assert_same(json: &str, name: &str) {
    let (a, b, len) = both_forms(json);
    assert_eq!(a.vocab_size(), b.vocab_size(), "{name}");
    // 1.48 MB of JSON; the compact form is about an eighth of it.
    assert!(len < json.len() / 6, "{name}: compact form is {len} bytes");
    for text in [valid_text(), stress_text()] {
        let ids = a.encode(&text).unwrap();
        assert_eq!(ids, b.encode(&text).unwrap(), "{name}: encodings differ");
        assert!(ids.len() > 100);
        assert_eq!(a.decode(&ids).unwrap(), b.decode(&ids).unwrap(), "{name}");
        assert_eq!(
            a.decode(&ids).unwrap(),
            text,
            "{name}: byte-level BPE round-trips"
        );
    }
    for id in 0..a.vocab_size() as u32 {
        assert_eq!(
            a.decode(&[id]).ok(),
            b.decode(&[id]).ok(),
            "{name}: token {id}"
        );
    }
}

#[test]
fn gpt2_compact_tokenizer_encodes_identically() {
    let json = std::fs::read_to_string(root().join("models/tokenizer-gpt2.json")).unwrap();
    assert_same(&json, "gpt2");
}

#[test]
fn default_models_compact_tokenizer_encodes_identically() {
    let bytes = std::fs::read(root().join("models/walsh-default.walsh")).unwrap();
    let parsed = blob::parse(&bytes).unwrap();
    let json = match parsed.tokenizer {
        TokenizerSection::Json(j) => j.to_string(),
        TokenizerSection::Compact(c) => blob::CompactTokenizer::decode(c)
            .unwrap()
            .to_json()
            .to_string(),
    };
    assert_same(&json, "default model");
}
