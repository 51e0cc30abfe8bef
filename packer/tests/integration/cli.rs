//! The `packer` command line end to end: init → pack → inspect → run, and the errors a user sees.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use walsh_spec::Checkpoint;
use walsh_spec::config::TensorKind;

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
    said_once(&err);
    err
}

/// No part of an error line is said twice ("…(os error 2): No such file or directory (os
/// error 2)").
fn said_once(err: &str) {
    let parts: Vec<&str> = err.trim_end().split(": ").collect();
    for (i, a) in parts.iter().enumerate() {
        for b in &parts[i + 1..] {
            assert!(a.len() < 12 || a != b, "{a:?} said twice: {err}");
        }
    }
}

/// Fails before printing anything on stdout; the error line.
fn fails_silently(args: &[&str]) -> String {
    let out = packer(args);
    assert!(!out.status.success(), "packer {args:?} should fail");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "packer {args:?} printed before it failed"
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.starts_with("error: "), "{err}");
    said_once(&err);
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

    // "word " 300 times: 302 tokens with the default model's 4,096-token BPE.
    let long = "word ".repeat(300);
    let e = fails(&["run", "models/walsh-default.walsh", &long]);
    assert!(
        e.contains("prompt is 302 tokens") && e.contains("holds 255"),
        "{e}"
    );
    let e = fails(&["run", "models/walsh-default.walsh", "Hi", "--top-p", "0"]);
    assert!(e.contains("top_p"), "{e}");
    let e = fails(&[
        "run",
        "models/walsh-default.walsh",
        "Hi",
        "--repeat-penalty",
        "0",
    ]);
    assert!(e.contains("repeat_penalty"), "{e}");

    // A missing file is said once, not "(os error 2): No such file or directory (os error 2)".
    let e = fails(&[
        "eval",
        "models/walsh-default.walsh",
        "/nonexistent/valid.txt",
    ]);
    assert!(
        e.contains("cannot read /nonexistent/valid.txt: No such file"),
        "{e}"
    );
    let e = fails(&["init", "--config", "/nonexistent.toml", "-o", "/tmp/never"]);
    assert!(
        e.contains("cannot read /nonexistent.toml: No such file"),
        "{e}"
    );
}

/// The engine's errors quote their cause and also chain it; the line says it once.
#[test]
fn a_truncated_blob_is_said_once() {
    let bytes = std::fs::read(root().join("models/walsh-default.walsh")).unwrap();
    let cut = tmp("cut.walsh");
    std::fs::write(&cut, &bytes[..100_000]).unwrap();
    let e = fails(&["run", cut.to_str().unwrap(), "Hi"]);
    assert_eq!(e.matches("header says").count(), 1, "{e}");
    let _ = std::fs::remove_file(&cut);
}

/// Sampling settings and the prompt's length are checked before the prompt is echoed.
#[test]
fn run_refuses_before_it_prints() {
    let blob = "models/walsh-default.walsh";
    let e = fails_silently(&["run", blob, "Hi", "--top-p", "2"]);
    assert!(e.contains("top_p 2"), "{e}");
    let e = fails_silently(&["run", blob, "Hi", "--temperature", "NaN"]);
    assert!(e.contains("temperature NaN"), "{e}");
    let e = fails_silently(&["run", blob, "Hi", "--temperature=-1"]);
    assert!(e.contains("temperature -1"), "{e}");
    let e = fails_silently(&["run", blob, &"word ".repeat(300)]);
    assert!(e.contains("prompt is 302 tokens"), "{e}");
    let e = fails_silently(&["run", blob, "Hi", "--max-tokens", "0"]);
    assert!(e.contains("must be at least 1"), "{e}");
}

/// `packer run … | head`: the reader leaves, and packer stops quietly with status 0.
#[test]
fn a_closed_pipe_ends_run_quietly() {
    for extra in [&[][..], &["--json"][..], &["--logprobs", "3"][..]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_packer"))
            .current_dir(root())
            .args(["run", "models/walsh-default.walsh", "Once upon a time"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("packer runs");
        // Close the read end before packer writes its first byte.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("packer ends");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {err}");
        assert!(!err.contains("panicked") && !err.contains("error"), "{err}");
    }
    // `packer inspect … | head` likewise.
    let mut child = Command::new(env!("CARGO_BIN_EXE_packer"))
        .current_dir(root())
        .args(["inspect", "models/walsh-default.walsh", "--tensors"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("packer runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("packer ends");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// A finite value beyond f16's or int8's range is named before anything is written, with the
/// embedding format that holds it.
#[test]
fn pack_names_a_value_its_embedding_format_cannot_hold() {
    let ck = tmp("range");
    let ck_s = ck.to_str().unwrap();
    ok(&["init", "--config", "configs/tiny.toml", "-o", ck_s]);
    let mut ckpt = Checkpoint::load(&ck).unwrap();
    let emb = ckpt
        .config
        .tensors()
        .into_iter()
        .find(|t| t.kind == TensorKind::Embedding)
        .expect("an embedding table")
        .name;
    let out = ck.with_extension("walsh");
    let out_s = out.to_str().unwrap();
    let mut set = |v: f32| {
        ckpt.tensors.get_mut(&emb).unwrap().data[70] = v;
        ckpt.save(&ck).unwrap();
    };

    set(1.0e5);
    let e = fails(&["pack", ck_s, "-o", out_s]);
    assert!(
        e.contains(&format!("tensor `{emb}` element 70 is 1e5"))
            && e.contains("f16 holds magnitudes up to 65504")
            && e.contains("--embeddings int8"),
        "{e}"
    );
    assert!(!e.contains("packer bug"), "{e}");
    assert!(!out.exists());
    ok(&["pack", ck_s, "-o", out_s, "--embeddings", "int8"]);

    set(-2.0e7);
    let e = fails(&["pack", ck_s, "-o", out_s, "--embeddings", "int8"]);
    assert!(
        e.contains("element 70 is -2e7") && e.contains("--embeddings f32"),
        "{e}"
    );
    ok(&["pack", ck_s, "-o", out_s, "--embeddings", "f32"]);
    ok(&["inspect", out_s]);

    let _ = std::fs::remove_dir_all(&ck);
    let _ = std::fs::remove_file(&out);
}

/// `packer eval`'s numbers are checked: a window of 0 or beyond the context is refused.
#[test]
fn eval_refuses_windows_it_cannot_score() {
    let text = root().join("trainer/tests/fixtures/tinystories-val.txt");
    let text = text.to_str().unwrap();
    let out = packer(&["eval", "models/walsh-default.walsh", text, "--window", "0"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--window") && err.contains("must be at least 1"),
        "{err}"
    );
    let e = fails(&[
        "eval",
        "models/walsh-default.walsh",
        text,
        "--window",
        "257",
    ]);
    assert!(
        e.contains("--window 257 exceeds the model's context of 256"),
        "{e}"
    );
}

/// Progress goes to stderr only when it is a terminal: piped, stderr stays empty.
#[test]
fn eval_shows_progress_only_on_a_terminal() {
    // The fixture's first lines (about 4 KB, a few hundred tokens): enough windows of 64 for a
    // bar, a fifth of the fixture's evaluation time.
    let fixture =
        std::fs::read_to_string(root().join("trainer/tests/fixtures/tinystories-val.txt")).unwrap();
    let mut head = String::new();
    for line in fixture.lines() {
        if head.len() >= 4000 {
            break;
        }
        head.push_str(line);
        head.push('\n');
    }
    let path = tmp("progress.txt");
    std::fs::write(&path, &head).unwrap();
    let text = path.to_str().unwrap();
    let out = packer(&["eval", "models/walsh-default.walsh", text, "--window", "64"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    // On a terminal (util-linux `script` gives it one), the bar shows tokens scored.
    let bin = env!("CARGO_BIN_EXE_packer");
    let cmd = format!("{bin} eval models/walsh-default.walsh {text} --window 64");
    match Command::new("script")
        .current_dir(root())
        .args(["-qec", &cmd, "/dev/null"])
        .output()
    {
        Ok(out) => {
            let all = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{all}");
            assert!(all.contains("tokens scored"), "{all}");
            assert!(all.contains("loss "), "{all}");
        }
        Err(e) => eprintln!("skipped the terminal half: no `script` ({e})"),
    }
    let _ = std::fs::remove_file(&path);
}

/// Issue 20's bar for the default decoding (docs/MODELS.md): `generate("Once upon a time", 200)`
/// — `packer run` with its defaults writes the same tokens — repeats no sentence. A sentence ends
/// at a line end or at whitespace after `.`, `!` or `?` (so `"Help!" she said.` is one).
#[test]
fn the_default_story_repeats_no_sentence() {
    let out = ok(&[
        "run",
        "models/walsh-default.walsh",
        "Once upon a time",
        "--max-tokens",
        "200",
    ]);
    let story = out
        .lines()
        .take_while(|l| !l.starts_with('['))
        .collect::<Vec<_>>()
        .join("\n");
    let (mut seen, mut start, mut prev) = (std::collections::HashSet::new(), 0, ' ');
    for (i, c) in story.char_indices().chain([(story.len(), '\n')]) {
        if c == '\n' || (c.is_whitespace() && matches!(prev, '.' | '!' | '?')) {
            let s = story[start..i].trim();
            assert!(s.is_empty() || seen.insert(s), "{s:?} twice in: {story}");
            start = i;
        }
        prev = c;
    }
    assert!(seen.len() >= 10, "{story}");
}

/// The shipped default is the trained model docs/MODELS.md describes (its SHA-256 is recorded
/// there), and through the canister's engine it writes TinyStories English.
#[test]
fn default_model_is_the_documented_trained_one() {
    let info = ok(&["inspect", "models/walsh-default.walsh"]);
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("inspect prints the {name}: {info}"))
            .to_string()
    };
    // `sha256` is the file's, as sha256sum prints it; `checksum` the blob's own (SPEC §4).
    let bytes = std::fs::read(root().join("models/walsh-default.walsh")).unwrap();
    let sha = field("sha256");
    assert_eq!(
        sha,
        walsh_spec::blob::hex(&walsh_packer::inspect::sha256(&bytes))
    );
    let checksum = field("checksum");
    assert_eq!(
        checksum,
        walsh_spec::blob::hex(&walsh_packer::inspect::sha256(&bytes[..bytes.len() - 32]))
    );
    assert!(info.contains("bits per parameter"), "{info}");
    assert!(info.contains("bpe4k-octonion-14x288"), "{info}");
    let doc = std::fs::read_to_string(root().join("docs/MODELS.md")).unwrap();
    for (what, value) in [("sha256", &sha), ("checksum", &checksum)] {
        assert!(
            doc.contains(value.as_str()),
            "models/walsh-default.walsh ({what} {value}) is not the model docs/MODELS.md describes"
        );
    }
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

/// The repetition penalty (SPEC §5.2) changes greedy text, deterministically; with a window of 0
/// tokens it is off; without options `run` applies the default decoding's (1.1 over 64 tokens).
#[test]
fn run_repeat_penalty_changes_greedy_text() {
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "models/walsh-default.walsh",
            "Once upon a time",
            "--max-tokens",
            "60",
        ];
        args.extend_from_slice(extra);
        ok(&args)
    };
    let text = |s: String| {
        s.lines()
            .take_while(|l| !l.starts_with('['))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let plain = text(run(&["--repeat-penalty", "1"]));
    // The default decoding is the canister's `generate`'s: the penalty 1.1 over 64 tokens.
    let default = text(run(&[]));
    assert_eq!(
        default,
        text(run(&["--repeat-penalty", "1.1", "--repeat-last-n", "64"]))
    );
    assert_ne!(plain, default);
    let penalized = text(run(&["--repeat-penalty", "1.3"]));
    assert_ne!(plain, penalized);
    assert_eq!(penalized, text(run(&["--repeat-penalty", "1.3"])));
    let windowless = text(run(&["--repeat-penalty", "1.3", "--repeat-last-n", "0"]));
    assert_eq!(plain, windowless);
}
