//! The `packer` command line end to end: init → pack → inspect → run, and the errors a user sees.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn packer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_packer"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("packer runs")
}

fn ok(args: &[&str]) -> String {
    let out = packer(args);
    assert!(
        out.status.success(),
        "packer {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(args: &[&str]) -> String {
    let out = packer(args);
    assert!(!out.status.success(), "packer {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one clear line: {err}");
    err
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("walsh-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn init_pack_inspect_run() {
    let ck = tmp("ck");
    let ck_s = ck.to_str().unwrap();
    ok(&[
        "init",
        "--config",
        "configs/tiny.toml",
        "-o",
        ck_s,
        "--seed",
        "3",
    ]);
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(ck.join(f).exists(), "{f}");
    }
    let blob4 = ck.with_extension("4x.walsh");
    let blob16 = ck.with_extension("16x.walsh");
    ok(&["pack", ck_s, "-o", blob4.to_str().unwrap()]);
    ok(&[
        "pack",
        ck_s,
        "-o",
        blob16.to_str().unwrap(),
        "--packing",
        "16x",
    ]);

    let report = ok(&["inspect", blob16.to_str().unwrap(), "--tensors"]);
    assert!(report.contains("parameters   0.28M total"), "{report}");
    assert!(report.contains("ternary16x"), "{report}");
    assert!(report.contains("layers.1.mlp.down.weight"), "{report}");

    let json = ok(&[
        "run",
        blob4.to_str().unwrap(),
        "Once upon a time",
        "--max-tokens",
        "12",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    let n = v["generated_tokens"].as_u64().unwrap();
    assert!((1..=12).contains(&n));
    assert!(["eos", "length"].contains(&v["finish_reason"].as_str().unwrap()));
    assert_eq!(v["prompt_tokens"], 4);
    // Both layouts give the same tokens.
    let json16 = ok(&[
        "run",
        blob16.to_str().unwrap(),
        "Once upon a time",
        "--max-tokens",
        "12",
        "--json",
    ]);
    let v16: serde_json::Value = serde_json::from_str(&json16).unwrap();
    assert_eq!(v["tokens"], v16["tokens"]);

    let lp = ok(&[
        "run",
        blob4.to_str().unwrap(),
        "Hi",
        "--max-tokens",
        "3",
        "--logprobs",
        "2",
        "--temperature",
        "0.8",
        "--seed",
        "5",
    ]);
    assert!(lp.contains("step   0:"), "{lp}");

    let _ = std::fs::remove_dir_all(&ck);
    let _ = std::fs::remove_file(&blob4);
    let _ = std::fs::remove_file(&blob16);
}

#[test]
fn errors_are_one_clear_line() {
    let e = fails(&["pack", "/nonexistent/ckpt", "-o", "/tmp/x.walsh"]);
    assert!(e.contains("/nonexistent/ckpt/config.json"), "{e}");

    let not_blob = tmp("notblob");
    std::fs::write(
        &not_blob,
        b"hello, this is not a blob at all, but long enough for a header......",
    )
    .unwrap();
    let e = fails(&["inspect", not_blob.to_str().unwrap()]);
    assert!(e.contains("not a .walsh blob"), "{e}");

    let mut bytes = std::fs::read(root().join("models/walsh-default.walsh")).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&not_blob, &bytes).unwrap();
    let e = fails(&["run", not_blob.to_str().unwrap(), "Hi"]);
    assert!(e.contains("checksum mismatch"), "{e}");
    bytes.truncate(mid);
    std::fs::write(&not_blob, &bytes).unwrap();
    let e = fails(&["run", not_blob.to_str().unwrap(), "Hi"]);
    assert!(e.contains("truncated"), "{e}");
    let _ = std::fs::remove_file(&not_blob);

    let e = fails(&[
        "init",
        "--config",
        "configs/tiny.toml",
        "-o",
        "/tmp/never",
        "--set",
        "n_head=3",
    ]);
    assert!(e.contains("n_head"), "{e}");
    let e = fails(&[
        "init",
        "--config",
        "configs/tiny.toml",
        "-o",
        "/tmp/never",
        "--set",
        "n_layers=3",
    ]);
    assert!(e.contains("n_layers"), "{e}");

    let long = "word ".repeat(300);
    let e = fails(&["run", "models/walsh-default.walsh", &long]);
    assert!(
        e.contains("prompt is 301 tokens") && e.contains("holds 255"),
        "{e}"
    );
    let e = fails(&["run", "models/walsh-default.walsh", "Hi", "--top-p", "0"]);
    assert!(e.contains("top_p"), "{e}");
}

/// The shipped default is the trained model docs/MODELS.md describes (its SHA-256 is recorded
/// there), and through the canister's engine it writes TinyStories English.
#[test]
fn default_model_is_the_documented_trained_one() {
    let info = ok(&["inspect", "models/walsh-default.walsh"]);
    let sha = info
        .lines()
        .find_map(|l| l.strip_prefix("sha256"))
        .map(str::trim)
        .expect("inspect prints the sha256");
    assert!(info.contains("tinystories-hadamard-hash"), "{info}");
    let doc = std::fs::read_to_string(root().join("docs/MODELS.md")).unwrap();
    assert!(
        doc.contains(sha),
        "models/walsh-default.walsh (sha256 {sha}) is not the model docs/MODELS.md describes"
    );
    let text = ok(&[
        "run",
        "models/walsh-default.walsh",
        "Once upon a time",
        "--max-tokens",
        "24",
    ]);
    assert!(
        text.starts_with("Once upon a time, there was a little girl named Lily. She loved to play"),
        "{text}"
    );
}
