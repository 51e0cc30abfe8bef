//! The compact tokenizer of SPEC §4.2: a byte-level BPE tokenizer.json stored as its small parts
//! (the JSON without `model.vocab` and `model.merges`), its base tokens, its merges as pairs of
//! indices and the token ids, all DEFLATE-compressed. GPT-2's 1.48 MB of minified JSON becomes
//! about 184 KiB. The engine rebuilds the `tokenizers` tokenizer from [`CompactTokenizer`] without
//! going through JSON; [`CompactTokenizer::to_json`] gives the equivalent tokenizer.json.
//!
//! Every merge makes a new token, the concatenation of its two operands (the right one without
//! `continuing_subword_prefix`, as the `tokenizers` crate builds it). Tokens that no merge makes
//! are the base tokens. In index space, base token j is index j and the token merge k makes is
//! index B + k; a merge's operands are indices made before it, so merges are small numbers that
//! compress well, and one list maps token ids to indices (a frequency-ordered vocabulary is a
//! permutation of GPT-2's).

use serde_json::{Map, Value};
use std::collections::HashMap;
use thiserror::Error;

/// The most bytes the compressed payload may inflate to, and the most bytes of token text it may
/// describe: far above a 50K-token vocabulary's 330 KB and 0.4 MB, and a bound that keeps an
/// untrusted blob from asking for gigabytes (a merge can double a token's length).
pub const MAX_PAYLOAD: usize = 64 << 20;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CompactTokenizerError {
    #[error("compact tokenizer: {0}")]
    Invalid(String),
    #[error("tokenizer cannot be stored in compact form: {0}")]
    NotCompactible(String),
}

fn invalid(why: impl Into<String>) -> CompactTokenizerError {
    CompactTokenizerError::Invalid(why.into())
}

fn not_compactible(why: impl Into<String>) -> CompactTokenizerError {
    CompactTokenizerError::NotCompactible(why.into())
}

/// A byte-level BPE tokenizer in parts, as the compact form holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactTokenizer {
    /// tokenizer.json without `model.vocab` and `model.merges` (the other fields of `model` kept).
    pub skeleton: Map<String, Value>,
    /// Token strings by id (ids 0..n, each once).
    pub vocab: Vec<String>,
    /// Merges in rank order, as token ids (left, right).
    pub merges: Vec<(u32, u32)>,
}

impl CompactTokenizer {
    /// The model's `continuing_subword_prefix`: its bytes are dropped from a merge's right
    /// operand when the merged token is formed.
    pub fn prefix_len(&self) -> usize {
        prefix_len(&self.skeleton)
    }

    /// The equivalent tokenizer.json (merges in the `[left, right]` form).
    pub fn to_json(&self) -> Value {
        let mut root = self.skeleton.clone();
        let vocab: Map<String, Value> = self
            .vocab
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), Value::from(i)))
            .collect();
        let merges: Vec<Value> = self
            .merges
            .iter()
            .map(|&(a, b)| {
                Value::Array(vec![
                    Value::String(self.vocab[a as usize].clone()),
                    Value::String(self.vocab[b as usize].clone()),
                ])
            })
            .collect();
        if let Some(Value::Object(model)) = root.get_mut("model") {
            model.insert("vocab".into(), Value::Object(vocab));
            model.insert("merges".into(), Value::Array(merges));
        }
        Value::Object(root)
    }
}

fn prefix_len(skeleton: &Map<String, Value>) -> usize {
    skeleton
        .get("model")
        .and_then(|m| m.get("continuing_subword_prefix"))
        .and_then(Value::as_str)
        .map_or(0, str::len)
}

/// The token a merge makes: `left` followed by `right` less its first `prefix` bytes.
fn merged(left: &str, right: &str, prefix: usize) -> Option<String> {
    let tail = right.get(prefix..)?;
    let mut s = String::with_capacity(left.len() + tail.len());
    s.push_str(left);
    s.push_str(tail);
    Some(s)
}

/// tokenizer.json's merges in either form: `[["a", "b"], …]` or the legacy `["a b", …]`.
fn json_merges(merges: &Value) -> Result<Vec<(String, String)>, CompactTokenizerError> {
    let list = merges
        .as_array()
        .ok_or_else(|| not_compactible("model.merges is not a list"))?;
    list.iter()
        .enumerate()
        .map(|(i, m)| match m {
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(a), Value::String(b)] => Ok((a.clone(), b.clone())),
                _ => Err(not_compactible(format!("merge {i} is not two strings"))),
            },
            Value::String(s) => {
                let parts: Vec<&str> = s.split(' ').collect();
                match parts.as_slice() {
                    [a, b] => Ok((a.to_string(), b.to_string())),
                    _ => Err(not_compactible(format!(
                        "merge {i} is not two tokens separated by one space"
                    ))),
                }
            }
            _ => Err(not_compactible(format!(
                "merge {i} is neither a pair nor a string"
            ))),
        })
        .collect()
}

impl CompactTokenizer {
    /// Splits a tokenizer.json into parts; fails (naming why) for anything but a BPE model whose
    /// ids are 0..n, each once, and whose merges each make a distinct token of the vocabulary
    /// from tokens that exist before it.
    pub fn from_json(json: &str) -> Result<Self, CompactTokenizerError> {
        let root: Value =
            serde_json::from_str(json).map_err(|e| not_compactible(format!("not JSON: {e}")))?;
        let Value::Object(mut skeleton) = root else {
            return Err(not_compactible("not a JSON object"));
        };
        let Some(Value::Object(model)) = skeleton.get_mut("model") else {
            return Err(not_compactible("no model object"));
        };
        if model.get("type").is_some_and(|t| t != "BPE") {
            return Err(not_compactible("the model is not BPE"));
        }
        let vocab_json = model
            .remove("vocab")
            .ok_or_else(|| not_compactible("model has no vocab"))?;
        let merges_json = model
            .remove("merges")
            .ok_or_else(|| not_compactible("model has no merges"))?;
        let Value::Object(vocab_map) = vocab_json else {
            return Err(not_compactible("model.vocab is not an object"));
        };
        let n = vocab_map.len();
        let mut vocab: Vec<Option<String>> = vec![None; n];
        for (s, id) in vocab_map {
            let id =
                id.as_u64().filter(|&i| (i as usize) < n).ok_or_else(|| {
                    not_compactible(format!("token {s:?} has an id outside 0..{n}"))
                })? as usize;
            if vocab[id].replace(s).is_some() {
                return Err(not_compactible(format!("id {id} is given to two tokens")));
            }
        }
        // n ids in 0..n, none twice: every slot is filled.
        let vocab: Vec<String> = vocab.into_iter().flatten().collect();
        let ids: HashMap<&str, u32> = vocab
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), i as u32))
            .collect();
        let prefix = prefix_len(&skeleton);
        let pairs = json_merges(&merges_json)?;
        let mut made: HashMap<String, usize> = HashMap::with_capacity(pairs.len());
        for (k, (a, b)) in pairs.iter().enumerate() {
            let m = merged(a, b, prefix).ok_or_else(|| {
                not_compactible(format!("merge {k}: {b:?} does not start with the prefix"))
            })?;
            if made.insert(m.clone(), k).is_some() {
                return Err(not_compactible(format!("two merges make {m:?}")));
            }
        }
        let mut merges = Vec::with_capacity(pairs.len());
        for (k, (a, b)) in pairs.iter().enumerate() {
            let id = |t: &str| {
                ids.get(t).copied().ok_or_else(|| {
                    not_compactible(format!("merge {k} uses {t:?}, which is not in the vocab"))
                })
            };
            let (ia, ib) = (id(a)?, id(b)?);
            for t in [a, b] {
                if made.get(t.as_str()).is_some_and(|&j| j >= k) {
                    return Err(not_compactible(format!(
                        "merge {k} uses {t:?} before the merge that makes it"
                    )));
                }
            }
            // The token it makes is in the vocabulary (made above, so it splits).
            id(&merged(a, b, prefix).unwrap_or_default())?;
            merges.push((ia, ib));
        }
        Ok(CompactTokenizer {
            skeleton,
            vocab,
            merges,
        })
    }

    /// The compact payload: inflated length (u32 LE), then the raw DEFLATE stream (SPEC §4.2).
    pub fn encode(&self) -> Result<Vec<u8>, CompactTokenizerError> {
        let n = self.vocab.len();
        let prefix = self.prefix_len();
        // Index space: base tokens in id order, then the token each merge makes.
        let mut made: HashMap<String, usize> = HashMap::with_capacity(self.merges.len());
        for (k, &(a, b)) in self.merges.iter().enumerate() {
            let m = merged(&self.vocab[a as usize], &self.vocab[b as usize], prefix)
                .ok_or_else(|| not_compactible(format!("merge {k} has a short right operand")))?;
            made.insert(m, k);
        }
        let base: Vec<usize> = (0..n)
            .filter(|&i| !made.contains_key(&self.vocab[i]))
            .collect();
        let nb = base.len();
        if nb + self.merges.len() != n {
            return Err(not_compactible(
                "the vocabulary is not its base tokens plus one token per merge",
            ));
        }
        let mut index = vec![0u32; n];
        for (j, &i) in base.iter().enumerate() {
            index[i] = j as u32;
        }
        for (i, s) in self.vocab.iter().enumerate() {
            if let Some(&k) = made.get(s) {
                index[i] = (nb + k) as u32;
            }
        }
        let skeleton = serde_json::to_string(&self.skeleton)
            .map_err(|e| not_compactible(format!("skeleton does not serialize: {e}")))?;
        let mut out = Vec::new();
        put_varint(&mut out, skeleton.len() as u32);
        out.extend_from_slice(skeleton.as_bytes());
        put_varint(&mut out, nb as u32);
        put_varint(&mut out, self.merges.len() as u32);
        for &i in &base {
            put_varint(&mut out, self.vocab[i].len() as u32);
            out.extend_from_slice(self.vocab[i].as_bytes());
        }
        // Byte planes: the high bytes of small indices are runs of zeros DEFLATE all but drops.
        for side in 0..2 {
            for byte in 0..4 {
                out.extend(self.merges.iter().map(|&(a, b)| {
                    let id = if side == 0 { a } else { b };
                    (index[id as usize] >> (8 * byte)) as u8
                }));
            }
        }
        let mut prev = 0i64;
        for &ix in &index {
            put_varint(&mut out, zigzag(i64::from(ix) - prev));
            prev = i64::from(ix);
        }
        if out.len() > MAX_PAYLOAD {
            return Err(not_compactible(format!(
                "its payload is {} bytes, more than {MAX_PAYLOAD}",
                out.len()
            )));
        }
        let mut section = (out.len() as u32).to_le_bytes().to_vec();
        section.extend(miniz_oxide::deflate::compress_to_vec(&out, 10));
        Ok(section)
    }

    /// Reads a compact payload; every count, length, index and string is checked (it comes from
    /// an untrusted blob), and the inflated and token text are bounded by [`MAX_PAYLOAD`].
    pub fn decode(section: &[u8]) -> Result<Self, CompactTokenizerError> {
        let (len, stream) = section
            .split_first_chunk::<4>()
            .ok_or_else(|| invalid("shorter than its 4-byte length"))?;
        let len = u32::from_le_bytes(*len) as usize;
        if len > MAX_PAYLOAD {
            return Err(invalid(format!(
                "inflates to {len} bytes, more than {MAX_PAYLOAD}"
            )));
        }
        let payload = inflate(stream, len)?;
        let mut r = Reader {
            bytes: &payload,
            pos: 0,
        };
        let skeleton_len = r.varint("skeleton length")? as usize;
        let skeleton: Value =
            serde_json::from_slice(r.take(skeleton_len, "skeleton")?).map_err(|e| {
                invalid(format!(
                    "skeleton is not JSON: {}",
                    crate::config::one_line(&e.to_string())
                ))
            })?;
        let Value::Object(skeleton) = skeleton else {
            return Err(invalid("skeleton is not a JSON object"));
        };
        if !skeleton.get("model").is_some_and(Value::is_object) {
            return Err(invalid("skeleton has no model object"));
        }
        let nb = r.varint("base token count")? as usize;
        let nm = r.varint("merge count")? as usize;
        // Each base token takes a byte at least, each merge 8 bytes of planes, and each id a
        // byte: counts beyond what remains are refused before anything is allocated.
        let remaining = payload.len() - r.pos;
        if nb > remaining || nm > remaining / 9 {
            return Err(invalid(format!(
                "{nb} base tokens and {nm} merges do not fit in {remaining} bytes"
            )));
        }
        let n = nb + nm;
        let prefix = prefix_len(&skeleton);
        let mut text = 0usize;
        let mut strings: Vec<String> = Vec::with_capacity(n);
        for j in 0..nb {
            let l = r.varint("base token length")? as usize;
            let s = std::str::from_utf8(r.take(l, "base token")?)
                .map_err(|_| invalid(format!("base token {j} is not UTF-8")))?;
            text += l;
            strings.push(s.to_string());
        }
        let planes = r.take(8 * nm, "merge indices")?;
        let index_at = |side: usize, k: usize| {
            (0..4).fold(0u32, |v, byte| {
                v | u32::from(planes[(side * 4 + byte) * nm + k]) << (8 * byte)
            })
        };
        let mut merge_ix = Vec::with_capacity(nm);
        for k in 0..nm {
            let (a, b) = (index_at(0, k) as usize, index_at(1, k) as usize);
            if a >= nb + k || b >= nb + k {
                return Err(invalid(format!(
                    "merge {k} uses index {}, not made before it (indices below {})",
                    a.max(b),
                    nb + k
                )));
            }
            // Bounded before the string is built: each merge can double a token's length.
            text += strings[a].len() + strings[b].len();
            if text > MAX_PAYLOAD {
                return Err(invalid(format!(
                    "its tokens hold more than {MAX_PAYLOAD} bytes of text"
                )));
            }
            let m = merged(&strings[a], &strings[b], prefix).ok_or_else(|| {
                invalid(format!(
                    "merge {k}: its right operand is shorter than the prefix or splits a character"
                ))
            })?;
            strings.push(m);
            merge_ix.push((a, b));
        }
        let mut id_of = vec![u32::MAX; n];
        let mut index_of = Vec::with_capacity(n);
        let mut prev = 0i64;
        for i in 0..n {
            let ix = prev + unzigzag(r.varint("token index")?);
            if !(0..n as i64).contains(&ix) {
                return Err(invalid(format!("token {i} has index {ix}, outside 0..{n}")));
            }
            if id_of[ix as usize] != u32::MAX {
                return Err(invalid(format!("index {ix} is given to two tokens")));
            }
            id_of[ix as usize] = i as u32;
            index_of.push(ix as usize);
            prev = ix;
        }
        if r.pos != payload.len() {
            return Err(invalid(format!(
                "{} bytes after the token ids",
                payload.len() - r.pos
            )));
        }
        let mut vocab: Vec<String> = Vec::with_capacity(n);
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(n);
        for (i, &ix) in index_of.iter().enumerate() {
            if let Some(j) = seen.insert(strings[ix].as_str(), i) {
                return Err(invalid(format!(
                    "tokens {j} and {i} are both {:?}",
                    crate::config::one_line(&strings[ix])
                )));
            }
        }
        for &ix in &index_of {
            vocab.push(strings[ix].clone());
        }
        let merges = merge_ix
            .iter()
            .map(|&(a, b)| (id_of[a], id_of[b]))
            .collect();
        Ok(CompactTokenizer {
            skeleton,
            vocab,
            merges,
        })
    }
}

/// Raw DEFLATE that must produce exactly `len` bytes and use every input byte.
fn inflate(stream: &[u8], len: usize) -> Result<Vec<u8>, CompactTokenizerError> {
    use miniz_oxide::inflate::TINFLStatus;
    use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};
    let mut out = vec![0u8; len];
    let mut state = Box::<DecompressorOxide>::default();
    let (status, read, written) = decompress(
        &mut state,
        stream,
        &mut out,
        0,
        inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
    );
    match status {
        TINFLStatus::Done if written == len && read == stream.len() => Ok(out),
        TINFLStatus::Done if written != len => Err(invalid(format!(
            "inflates to {written} bytes, not the {len} it declares"
        ))),
        TINFLStatus::Done => Err(invalid(format!(
            "{} bytes after the end of the DEFLATE stream",
            stream.len() - read
        ))),
        TINFLStatus::HasMoreOutput => Err(invalid(format!(
            "inflates to more than the {len} bytes it declares"
        ))),
        other => Err(invalid(format!(
            "the DEFLATE stream is corrupt ({other:?})"
        ))),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], CompactTokenizerError> {
        if self.bytes.len() - self.pos < n {
            return Err(invalid(format!("payload ends inside the {what}")));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// LEB128, at most 5 bytes, no bits beyond 32.
    fn varint(&mut self, what: &str) -> Result<u32, CompactTokenizerError> {
        let mut v = 0u32;
        for i in 0..5 {
            let b = self.take(1, what)?[0];
            if i == 4 && b > 0x0f {
                return Err(invalid(format!("the {what} overflows 32 bits")));
            }
            v |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(invalid(format!("the {what} overflows 32 bits")))
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(d: i64) -> u32 {
    ((d << 1) ^ (d >> 63)) as u32
}

fn unzigzag(v: u32) -> i64 {
    i64::from(v >> 1) ^ -i64::from(v & 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = r#"{"version":"1.0","added_tokens":[],"model":{"type":"BPE","continuing_subword_prefix":"","vocab":{"b":0,"ab":1,"a":2,"abab":3,"c":4},"merges":[["a","b"],"ab ab"]}}"#;

    #[test]
    fn round_trips_and_rebuilds_the_json() {
        let t = CompactTokenizer::from_json(TINY).unwrap();
        assert_eq!(t.vocab, ["b", "ab", "a", "abab", "c"]);
        assert_eq!(t.merges, [(2, 0), (1, 1)]);
        let bytes = t.encode().unwrap();
        let back = CompactTokenizer::decode(&bytes).unwrap();
        assert_eq!(back, t);
        let json = back.to_json();
        assert_eq!(json["model"]["vocab"]["abab"], 3);
        assert_eq!(json["model"]["merges"][1], serde_json::json!(["ab", "ab"]));
        assert_eq!(json["version"], "1.0");
    }

    #[test]
    fn varints_and_zigzag_round_trip() {
        for v in [0u32, 1, 127, 128, 300, u32::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(
                Reader {
                    bytes: &out,
                    pos: 0
                }
                .varint("x")
                .unwrap(),
                v
            );
        }
        for d in [0i64, 1, -1, 5000, -50000] {
            assert_eq!(unzigzag(zigzag(d)), d);
        }
        let e = Reader {
            bytes: &[0xff, 0xff, 0xff, 0xff, 0x1f],
            pos: 0,
        }
        .varint("count")
        .unwrap_err();
        assert!(e.to_string().contains("overflows"), "{e}");
    }

    #[test]
    fn what_cannot_be_compacted_is_named() {
        let cases = [
            (TINY.replace("\"c\":4", "\"c\":7"), "outside 0..5"),
            (TINY.replace("\"c\":4", "\"c\":3"), "two tokens"),
            (TINY.replace("\"abab\":3", "\"abcd\":3"), "not in the vocab"),
            (
                TINY.replace(r#"["a","b"],"ab ab""#, r#""ab ab",["a","b"]"#),
                "before the merge",
            ),
            (TINY.replace("\"BPE\"", "\"WordPiece\""), "not BPE"),
        ];
        for (json, what) in cases {
            let e = CompactTokenizer::from_json(&json).unwrap_err().to_string();
            assert!(e.contains(what), "{json}: {e}");
        }
    }

    #[test]
    fn corrupt_payloads_are_refused() {
        let good = CompactTokenizer::from_json(TINY).unwrap().encode().unwrap();
        let mut long = good.clone();
        long[..4].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        let mut short = good.clone();
        short[0] -= 1;
        let mut trailing = good.clone();
        trailing.push(0);
        for (bytes, what) in [
            (&good[..3], "shorter"),
            (&long[..], "more than"),
            (&short[..], "more than the"),
            (&trailing[..], "after the end"),
            (&good[..good.len() - 2], "corrupt"),
        ] {
            let e = CompactTokenizer::decode(bytes).unwrap_err().to_string();
            assert!(e.contains(what), "{what}: {e}");
        }
    }

    /// A payload with `body` inflated, for the checks behind the DEFLATE layer.
    fn payload(body: &[u8]) -> Vec<u8> {
        let mut s = (body.len() as u32).to_le_bytes().to_vec();
        s.extend(miniz_oxide::deflate::compress_to_vec(body, 1));
        s
    }

    #[test]
    fn corrupt_contents_are_refused() {
        let sk = br#"{"model":{}}"#;
        let head = |nb: u8, nm: u8| {
            let mut v = vec![sk.len() as u8];
            v.extend_from_slice(sk);
            v.extend([nb, nm]);
            v
        };
        // One base token "a", one merge (0, 1): index 1 is not made before merge 0.
        let mut forward = head(1, 1);
        forward.extend([1, b'a', 0, 0, 0, 0, 1, 0, 0, 0, 0, 2]);
        // Doubling merges whose text passes the bound.
        let mut bomb = head(1, 40);
        bomb.extend([1, b'a']);
        for side in 0..2 {
            for byte in 0..4 {
                bomb.extend((0..40).map(|k| if byte == 0 { k as u8 } else { 0 }));
                let _ = side;
            }
        }
        bomb.extend([0; 41]);
        let mut ids_twice = head(2, 0);
        ids_twice.extend([1, b'a', 1, b'b', 0, 0]);
        let mut same_text = head(2, 0);
        same_text.extend([1, b'a', 1, b'a', 0, 2]);
        let mut big_counts = head(0, 0);
        big_counts.truncate(big_counts.len() - 2);
        big_counts.extend([0xff, 0xff, 0x03, 0]);
        for (body, what) in [
            (forward, "not made before it"),
            (bomb, "bytes of text"),
            (ids_twice, "given to two tokens"),
            (same_text, "are both"),
            (big_counts, "do not fit"),
        ] {
            let e = CompactTokenizer::decode(&payload(&body))
                .unwrap_err()
                .to_string();
            assert!(e.contains(what), "{what}: {e}");
        }
    }
}
