//! What the trainer's integration tests share: the TinyStories fixture, tokenized once per test
//! binary.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use walsh_trainer::prepare::{PrepareOptions, ValSplit, prepare};

pub fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `configs/NAME.toml`.
pub fn config(name: &str) -> PathBuf {
    manifest().join("../configs").join(format!("{name}.toml"))
}

/// A `trainer prepare` output of the fixture (train.bin, val.bin, tokenizer.json).
pub fn data() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let fixtures = manifest().join("tests/fixtures");
        let mut opts = PrepareOptions::new(
            vec![fixtures.join("tinystories-train.txt")],
            dir.path().to_path_buf(),
        );
        opts.val = ValSplit::Files(vec![fixtures.join("tinystories-val.txt")]);
        prepare(&opts).unwrap();
        dir
    })
    .path()
}
