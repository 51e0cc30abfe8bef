//! The text convention (SPEC §5.1): documents in a `.txt` file are separated by the end-of-text
//! marker, every document is followed by the end-of-text token when tokenized, and a prompt
//! starts after an implicit end-of-text token. `trainer prepare`, `packer eval` and the engine
//! all split and mark text through this module, so they agree on what a document is.

/// The end-of-text marker: the text of the eos token in GPT-2's tokenizer and in every tokenizer
/// `trainer prepare --train-tokenizer` makes, and the separator of documents in `.txt` files.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// The document a piece of text between two separators holds: trimmed of surrounding
/// whitespace, `None` if nothing is left. Streaming readers that find the separators themselves
/// (`trainer prepare` on gigabytes) call this on each piece.
pub fn document(piece: &str) -> Option<&str> {
    let d = piece.trim();
    (!d.is_empty()).then_some(d)
}

/// The documents of a `.txt` file's text: split at [`END_OF_TEXT`], each a [`document`].
pub fn documents(text: &str) -> impl Iterator<Item = &str> {
    text.split(END_OF_TEXT).filter_map(document)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_trims_and_skips_empty_documents() {
        let text =
            "one\ntwo\n<|endoftext|>\n three<|endoftext|>four<|endoftext|>\n\n<|endoftext|>\nfive";
        let docs: Vec<&str> = documents(text).collect();
        assert_eq!(docs, ["one\ntwo", "three", "four", "five"]);
        assert_eq!(documents("\n<|endoftext|>\n  \n").count(), 0);
        assert_eq!(documents("").count(), 0);
    }
}
