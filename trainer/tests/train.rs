//! `trainer train` and the commands around it, on the tiny config and the TinyStories fixture:
//! exact resume, the checkpoint contents, metrics.csv, the error messages, and the binary's
//! eval / sample / plot / bench commands.

mod common;

use common::data;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use walsh_packer::Checkpoint;
use walsh_trainer::train::{TrainOptions, train_cpu};

fn tiny() -> PathBuf {
    common::config("tiny")
}

/// A short run of the tiny model: 6 steps of 2 micro-batches of 2×16 tokens.
fn opts(out: &Path, extra: &[&str]) -> TrainOptions {
    let mut sets: Vec<String> = [
        "steps=6",
        "batch_size=2",
        "seq_len=16",
        "grad_accum=2",
        "warmup_steps=2",
        "eval_every=3",
        "eval_batches=2",
        "sample_tokens=4",
        "checkpoint_every=0",
        "log_every=1",
    ]
    .map(String::from)
    .to_vec();
    sets.push(format!("data={}", data().display()));
    sets.extend(extra.iter().map(|s| s.to_string()));
    TrainOptions {
        config: tiny(),
        sets,
        out: Some(out.to_path_buf()),
        resume: None,
        overwrite: false,
        stop_after: None,
        progress: false,
        verbose: false,
    }
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_resumed_run_equals_an_unbroken_one_bit_for_bit() {
    let no_stop = AtomicBool::new(false);
    let whole = tempfile::tempdir().unwrap();
    let a = train_cpu(&opts(whole.path(), &[]), &no_stop).unwrap();
    assert_eq!((a.steps, a.interrupted), (6, false));

    let broken = tempfile::tempdir().unwrap();
    let mut first = opts(broken.path(), &[]);
    first.stop_after = Some(3);
    let b = train_cpu(&first, &no_stop).unwrap();
    assert_eq!((b.steps, b.interrupted), (3, true));
    let mut second = opts(broken.path(), &[]);
    second.resume = Some(b.checkpoint.clone());
    let c = train_cpu(&second, &no_stop).unwrap();
    assert_eq!((c.steps, c.interrupted), (6, false));

    let (fa, fc) = (files(&a.checkpoint), files(&c.checkpoint));
    let names: Vec<&str> = fa.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "config.json",
            "model.safetensors",
            "optimizer.safetensors",
            "tokenizer.json",
            "train_state.json"
        ]
    );
    for ((name, x), (_, y)) in fa.iter().zip(&fc) {
        if name == "train_state.json" {
            let s = |b: &[u8]| -> serde_json::Value { serde_json::from_slice(b).unwrap() };
            let (sx, sy) = (s(x), s(y));
            assert_eq!((&sx["step"], &sx["tokens"]), (&sy["step"], &sy["tokens"]));
            assert_eq!(sx["step"], 6);
        } else {
            assert!(
                x == y,
                "{name} differs between the unbroken and the resumed run"
            );
        }
    }
    // Training moved the weights: the comparison above is not between two initialisations.
    let init = tempfile::tempdir().unwrap();
    let mut zero = opts(init.path(), &[]);
    zero.stop_after = Some(1);
    let one = train_cpu(&zero, &no_stop).unwrap();
    assert_ne!(
        std::fs::read(one.checkpoint.join("model.safetensors")).unwrap(),
        std::fs::read(a.checkpoint.join("model.safetensors")).unwrap()
    );
    // The checkpoint is what packer reads, and nothing temporary is left beside it.
    let ckpt = Checkpoint::load(&a.checkpoint).unwrap();
    assert_eq!(ckpt.config.name, "tiny");
    let leftovers: Vec<_> = std::fs::read_dir(whole.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // metrics.csv: a row per step; evaluations at steps 3 and 6; the resumed run appended.
    let csv = std::fs::read_to_string(whole.path().join("metrics.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(
        csv.lines().next(),
        Some("step,tokens,lr,train_loss,grad_norm,tokens_per_s,val_loss,val_bpb")
    );
    assert_eq!(rows.len(), 6);
    for r in &rows {
        let step: u64 = r[0].parse().unwrap();
        assert_eq!(r[1].parse::<u64>().unwrap(), step * 64);
        assert!(r[3].parse::<f64>().unwrap() > 0.0);
        assert_eq!(r[6].is_empty(), !step.is_multiple_of(3), "row {r:?}");
        if step.is_multiple_of(3) {
            let (loss, bpb): (f64, f64) = (r[6].parse().unwrap(), r[7].parse().unwrap());
            assert!(loss > 0.0 && bpb > 0.0 && bpb < loss * 2.0);
        }
    }
    // best/: the checkpoint of the lowest of those evaluations, recording its loss, in both runs.
    let evals: Vec<(u64, f64)> = rows
        .iter()
        .filter(|r| !r[6].is_empty())
        .map(|r| (r[0].parse().unwrap(), r[6].parse().unwrap()))
        .collect();
    let lowest = evals
        .iter()
        .fold((0, f64::INFINITY), |b, &e| if e.1 < b.1 { e } else { b });
    for run in [whole.path(), broken.path()] {
        let best: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("best/train_state.json")).unwrap())
                .unwrap();
        assert_eq!(best["step"], lowest.0);
        let recorded = best["val_loss"].as_f64().unwrap();
        assert!(
            (recorded - lowest.1).abs() <= 1e-4 * lowest.1,
            "{recorded} vs {lowest:?}"
        );
        assert!(Checkpoint::load(&run.join("best")).is_ok());
    }
    let resumed = std::fs::read_to_string(broken.path().join("metrics.csv")).unwrap();
    assert_eq!(resumed.lines().count(), 1 + 6, "{resumed}");
    // The unbroken and resumed runs logged the same losses (tokens/s, column 5, is a clock).
    let without_speed = |l: Option<&str>| -> Vec<String> {
        let mut f: Vec<String> = l.unwrap().split(',').map(String::from).collect();
        f.remove(5);
        f
    };
    assert_eq!(
        without_speed(csv.lines().nth(6)),
        without_speed(resumed.lines().nth(6))
    );
}

#[test]
fn mistakes_get_clear_errors() {
    let no_stop = AtomicBool::new(false);
    let dir = tempfile::tempdir().unwrap();
    let err = |o: TrainOptions| format!("{:#}", train_cpu(&o, &no_stop).unwrap_err());

    let e = err(opts(dir.path(), &["data=/nonexistent/walsh"]));
    assert!(e.contains("trainer prepare"), "{e}");

    let e = err(opts(dir.path(), &["seq_len=65"]));
    assert!(e.contains("seq_len 65 exceeds"), "{e}");

    let done = train_cpu(&opts(dir.path(), &["steps=1"]), &no_stop).unwrap();
    let mut again = opts(dir.path(), &["steps=1"]);
    again.resume = Some(done.checkpoint.clone());
    let e = err(again);
    assert!(e.contains("at step 1") && e.contains("raise it"), "{e}");

    let mut other = opts(dir.path(), &["n_layer=3"]);
    other.resume = Some(done.checkpoint.clone());
    let e = err(other);
    assert!(e.contains("different model"), "{e}");

    let mut missing = opts(dir.path(), &[]);
    missing.resume = Some(dir.path().join("nope"));
    let e = err(missing);
    assert!(e.contains("cannot resume from"), "{e}");
}

fn trainer(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_binary_trains_evaluates_samples_plots_and_benches() {
    let run = tempfile::tempdir().unwrap();
    let run_s = run.path().to_str().unwrap();
    let data_set = format!("data={}", data().display());
    let tiny = tiny();
    let tiny = tiny.to_str().unwrap();
    let (ok, out, err) = trainer(&[
        "train",
        "--config",
        tiny,
        "--set",
        &data_set,
        "--set",
        "steps=4",
        "--set",
        "batch_size=2",
        "--set",
        "seq_len=16",
        "--set",
        "eval_every=2",
        "--set",
        "sample_tokens=3",
        "--out",
        run_s,
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("step 2: train loss") && out.contains("bits/byte"),
        "{out}"
    );
    assert!(out.contains("sample: Once upon a time"), "{out}");
    assert!(out.contains("4 steps, last train loss"), "{out}");

    let ckpt = run.path().join("checkpoint");
    let val = data().join("val.bin");
    let (ok, out, err) = trainer(&[
        "eval",
        ckpt.to_str().unwrap(),
        "--data",
        val.to_str().unwrap(),
        "--seq-len",
        "32",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("loss ") && out.contains("bits/byte over"),
        "{out}"
    );

    let (ok, out, err) = trainer(&[
        "sample",
        ckpt.to_str().unwrap(),
        "--prompt",
        "The dog",
        "--max-tokens",
        "5",
        "--temperature",
        "0.8",
        "--count",
        "2",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("The dog")).count(),
        2,
        "{out}"
    );

    let (ok, out, err) = trainer(&["plot", run_s]);
    assert!(ok, "{err}");
    assert!(out.trim().ends_with("loss.png") && run.path().join("loss.png").exists());

    let (ok, out, err) = trainer(&[
        "bench",
        "--config",
        tiny,
        "--steps",
        "1",
        "--set",
        "batch_size=2",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("tokens/s") && out.contains("algebra linear bwd"),
        "{out}"
    );

    let (ok, _, err) = trainer(&["bench", "--config", tiny, "--device", "cuda"]);
    assert!(!ok && err.contains("built without CUDA"), "{err}");
    let (ok, _, err) = trainer(&[
        "eval",
        data().to_str().unwrap(),
        "--data",
        val.to_str().unwrap(),
    ]);
    assert!(
        !ok && err.starts_with("error: ") && err.contains("config.json"),
        "{err}"
    );
}
