//! `prepare --frequency-order`: the tokenizer's vocabulary renumbered by how often each token
//! occurs in the training documents, most frequent first; special tokens (`<|endoftext|>`) keep
//! their ids, so a model config's `eos_token_id` stays right.
//!
//! Why: hash embeddings (SPEC §2) give token t the rows t mod B and ⌊t/B⌋ mod B of two tables,
//! and the tied logits are then s1[t mod B] + s2[⌊t/B⌋ mod B], so the predicted distribution is a
//! product of one over t mod B and one over ⌊t/B⌋. Tokens sharing ⌊t/B⌋ compete in one exact
//! softmax; tokens of different ⌊t/B⌋ drag each other's partners along. Numbered by frequency,
//! the B most common tokens all have ⌊t/B⌋ = 0: in TinyStories that is 91% of the text with
//! B = 1021, against 59% in GPT-2's own numbering. The text → token segmentation is unchanged.

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

/// The new id of every old id (`map[old] = new`): the ids not in `fixed` go, by descending count
/// (ties by old id), to the ids not in `fixed` in ascending order.
pub fn frequency_order(counts: &[u64], fixed: &[u32]) -> Vec<u32> {
    let is_fixed = |id: usize| fixed.iter().any(|&f| f as usize == id);
    let mut movable: Vec<usize> = (0..counts.len()).filter(|&i| !is_fixed(i)).collect();
    let slots = movable.clone();
    movable.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
    let mut map: Vec<u32> = (0..counts.len() as u32).collect();
    for (old, new) in movable.into_iter().zip(slots) {
        map[old] = new as u32;
    }
    map
}

/// The ids of the special added tokens of a `tokenizer.json`.
pub fn special_ids(json: &[u8]) -> Result<Vec<u32>> {
    let v: Value = serde_json::from_slice(json).context("tokenizer.json is not JSON")?;
    let mut ids = Vec::new();
    for t in v["added_tokens"].as_array().into_iter().flatten() {
        if t["special"].as_bool() == Some(true) {
            let id = t["id"]
                .as_u64()
                .ok_or_else(|| anyhow!("tokenizer.json: an added token without an id"))?;
            ids.push(id as u32);
        }
    }
    Ok(ids)
}

/// `json` with every token id replaced by `map[id]`: the model's vocabulary, the added tokens and
/// a template post-processor's special-token ids. Only vocabularies that are a token → id map
/// (BPE, WordPiece, WordLevel) can be renumbered.
pub fn renumber_tokenizer(json: &[u8], map: &[u32]) -> Result<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(json).context("tokenizer.json is not JSON")?;
    let remap = |id: &mut Value, what: &str| -> Result<()> {
        let old = id
            .as_u64()
            .ok_or_else(|| anyhow!("tokenizer.json: {what} has a non-integer id {id}"))?;
        let new = map.get(old as usize).ok_or_else(|| {
            anyhow!("tokenizer.json: {what} has id {old}, outside the vocabulary")
        })?;
        *id = Value::from(*new);
        Ok(())
    };
    let kind = v["model"]["type"].to_string();
    let vocab = v["model"]["vocab"].as_object_mut().ok_or_else(|| {
        anyhow!(
            "--frequency-order: the tokenizer's model ({kind}) has no token → id vocabulary to \
             renumber"
        )
    })?;
    for (token, id) in vocab.iter_mut() {
        remap(id, &format!("vocabulary token {token:?}"))?;
    }
    for t in v["added_tokens"].as_array_mut().into_iter().flatten() {
        remap(&mut t["id"], "an added token")?;
    }
    if let Some(specials) = v["post_processor"]["special_tokens"].as_object_mut() {
        for (name, s) in specials.iter_mut() {
            for id in s["ids"].as_array_mut().into_iter().flatten() {
                remap(id, &format!("post-processor token {name:?}"))?;
            }
        }
    }
    let out = serde_json::to_vec(&v)?;
    if out.is_empty() {
        bail!("renumbered tokenizer.json is empty");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_frequent_first_and_special_ids_stay() {
        // ids 0..6, id 5 special; counts favour 4, then 1 and 3 (tie: lower old id first).
        let counts = [0, 7, 1, 7, 9, 100, 0];
        let map = frequency_order(&counts, &[5]);
        assert_eq!(map, vec![4, 1, 3, 2, 0, 5, 6]);
        let mut seen = map.clone();
        seen.sort();
        assert_eq!(seen, (0..7).collect::<Vec<u32>>(), "a permutation");
    }
}
