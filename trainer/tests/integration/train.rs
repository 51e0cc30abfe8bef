//! `trainer train` and the commands around it, on the tiny config and the TinyStories fixture:
//! exact resume, the checkpoint contents, metrics.csv, the error messages, and the binary's
//! eval / sample / plot / bench commands.

use crate::common::data;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use walsh_spec::Checkpoint;
use walsh_trainer::train::{TrainOptions, train_cpu};

fn tiny() -> PathBuf {
    crate::common::config("tiny")
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

    // A different model: the field and both values, not two JSON documents.
    let mut other = opts(dir.path(), &["n_layer=3"]);
    other.resume = Some(done.checkpoint.clone());
    let e = err(other);
    assert!(e.contains("different model"), "{e}");
    assert!(e.contains("n_layer = 2 in the checkpoint, 3 in"), "{e}");
    assert!(!e.contains('{') && !e.contains("vocab_size"), "{e}");

    let mut missing = opts(dir.path(), &[]);
    missing.resume = Some(dir.path().join("nope"));
    let e = err(missing);
    assert!(e.contains("cannot resume from"), "{e}");
}

/// Distillation (docs/TRAINING.md §4.6) on the tiny model with a standard embedding: a student
/// distilled with weight 0 is bit for bit the undistilled one (the teacher's forward changes
/// nothing else), a weighted one trains to other weights, and a hash student or a teacher of
/// another vocabulary is refused by name.
#[test]
fn distillation_trains_and_weight_zero_changes_nothing() {
    let no_stop = AtomicBool::new(false);
    let std_emb = "embedding=standard";
    // Short: the standard embedding's 50,257-row softmax is most of the tiny model's time.
    let short = |out: &Path, extra: &[&str]| {
        let mut all = vec!["steps=2", "grad_accum=1", "eval_every=0", "sample_tokens=0"];
        all.extend_from_slice(extra);
        opts(out, &all)
    };
    let teacher_dir = tempfile::tempdir().unwrap();
    let teacher = train_cpu(&short(teacher_dir.path(), &[std_emb, "seed=5"]), &no_stop).unwrap();
    let t = format!("teacher={}", teacher.checkpoint.display());
    let model = |o: TrainOptions| {
        let r = train_cpu(&o, &no_stop).unwrap();
        assert!(r.train_loss.is_finite());
        std::fs::read(r.checkpoint.join("model.safetensors")).unwrap()
    };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let plain = model(short(dirs[0].path(), &[std_emb]));
    let zero = model(short(dirs[1].path(), &[std_emb, &t, "distill_weight=0"]));
    assert!(plain == zero, "distill_weight = 0 changed the student");
    let sets = [
        std_emb,
        &t,
        "distill_weight=0.7",
        "distill_temperature=2",
        "distill_top_k=5",
    ];
    let distilled = model(short(dirs[2].path(), &sets));
    assert!(plain != distilled, "distillation changed nothing");

    let dir = tempfile::tempdir().unwrap();
    let err = |o: TrainOptions| format!("{:#}", train_cpu(&o, &no_stop).unwrap_err());
    let e = err(short(dir.path(), &[&t]));
    assert!(e.contains("standard embedding"), "{e}");
    let e = err(short(dir.path(), &[std_emb, &t, "vocab_size=50258"]));
    assert!(e.contains("must share the student's tokenizer"), "{e}");
    let e = err(short(dir.path(), &[std_emb, &t, "distill_top_k=0"]));
    assert!(e.contains("distill_top_k 0"), "{e}");
}

#[test]
fn a_missing_checkpoint_to_resume_leaves_nothing_behind() {
    let no_stop = AtomicBool::new(false);
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let mut o = opts(&run, &[]);
    o.resume = Some(run.join("checkpoint"));
    let e = format!("{:#}", train_cpu(&o, &no_stop).unwrap_err());
    assert!(e.contains("cannot resume from"), "{e}");
    let left: Vec<_> = std::fs::read_dir(&run).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn errors_name_their_cause_once() {
    let no_stop = AtomicBool::new(false);
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path(), &[]);
    o.config = dir.path().join("missing.toml");
    let e = format!("{:#}", train_cpu(&o, &no_stop).unwrap_err());
    assert_eq!(e.matches("os error").count(), 1, "{e}");
    assert!(
        e.contains("cannot read") && e.contains("missing.toml"),
        "{e}"
    );
}

/// The names in `dir` that start with a dot (swap leftovers).
fn hidden(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    v.sort();
    v
}

#[test]
fn a_run_directory_in_use_needs_resume_or_overwrite() {
    let no_stop = AtomicBool::new(false);
    let dir = tempfile::tempdir().unwrap();
    let first = train_cpu(&opts(dir.path(), &["steps=3"]), &no_stop).unwrap();
    let metrics = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
    let model = std::fs::read(first.checkpoint.join("model.safetensors")).unwrap();

    // Again without --resume: refused, naming the directory and both flags; nothing touched.
    let e = format!(
        "{:#}",
        train_cpu(&opts(dir.path(), &["steps=3", "seed=7"]), &no_stop).unwrap_err()
    );
    assert!(e.contains(&dir.path().display().to_string()), "{e}");
    assert!(e.contains("--resume") && e.contains("--overwrite"), "{e}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap(),
        metrics
    );
    assert_eq!(
        std::fs::read(first.checkpoint.join("model.safetensors")).unwrap(),
        model
    );

    // --overwrite: a new run from scratch, none of the old one's outputs left.
    let mut o = opts(dir.path(), &["steps=2", "eval_every=0", "seed=7"]);
    o.overwrite = true;
    let second = train_cpu(&o, &no_stop).unwrap();
    assert_eq!(second.steps, 2);
    let csv = std::fs::read_to_string(dir.path().join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2, "{csv}");
    let best: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("best/train_state.json")).unwrap())
            .unwrap();
    assert_eq!(best["step"], 2, "best/ is the new run's");

    // --resume and --overwrite together make no sense.
    let mut both = opts(dir.path(), &["steps=3"]);
    both.overwrite = true;
    both.resume = Some(second.checkpoint.clone());
    let e = format!("{:#}", train_cpu(&both, &no_stop).unwrap_err());
    assert!(e.contains("only one"), "{e}");
}

#[test]
fn a_checkpoint_lost_between_the_swap_renames_is_recovered() {
    let no_stop = AtomicBool::new(false);
    let whole = tempfile::tempdir().unwrap();
    let unbroken = train_cpu(&opts(whole.path(), &[]), &no_stop).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let run = dir.path();
    let mut o = opts(run, &[]);
    o.stop_after = Some(2);
    let at2 = train_cpu(&o, &no_stop).unwrap();
    let copy = |from: &Path, to: &Path| {
        std::fs::create_dir(to).unwrap();
        for (name, bytes) in files(from) {
            std::fs::write(to.join(name), bytes).unwrap();
        }
    };
    copy(&at2.checkpoint, &run.join("step2"));
    let mut o = opts(run, &[]);
    o.resume = Some(at2.checkpoint.clone());
    o.stop_after = Some(3);
    let at3 = train_cpu(&o, &no_stop).unwrap();
    assert_eq!(at3.steps, 3);

    // The crash: step 3's checkpoint written as .tmp, step 2's renamed to .old, no checkpoint/.
    // Beside them a killed save of a later step, cut short (an incomplete model file).
    std::fs::rename(&at3.checkpoint, run.join(".checkpoint.tmp-4242")).unwrap();
    std::fs::rename(run.join("step2"), run.join(".checkpoint.old-4242")).unwrap();
    let cut = run.join(".checkpoint.tmp-777");
    copy(&run.join(".checkpoint.tmp-4242"), &cut);
    let st = std::fs::read_to_string(cut.join("train_state.json")).unwrap();
    std::fs::write(
        cut.join("train_state.json"),
        st.replace("\"step\": 3", "\"step\": 5"),
    )
    .unwrap();
    let model = std::fs::read(cut.join("model.safetensors")).unwrap();
    std::fs::write(cut.join("model.safetensors"), &model[..model.len() / 2]).unwrap();

    let mut o = opts(run, &[]);
    o.resume = Some(run.join("checkpoint"));
    let end = train_cpu(&o, &no_stop).unwrap();
    assert_eq!((end.steps, end.interrupted), (6, false));
    // It resumed from step 3 (the newest complete one): the unbroken run's weights exactly.
    assert!(
        std::fs::read(end.checkpoint.join("model.safetensors")).unwrap()
            == std::fs::read(unbroken.checkpoint.join("model.safetensors")).unwrap()
    );
    // And the leftovers are gone.
    assert!(hidden(run).is_empty(), "{:?}", hidden(run));
}

#[test]
fn a_config_json_changed_behind_the_weights_is_refused_on_resume() {
    let no_stop = AtomicBool::new(false);
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path(), &[]);
    o.stop_after = Some(1);
    let done = train_cpu(&o, &no_stop).unwrap();
    let path = done.checkpoint.join("config.json");
    let original = std::fs::read_to_string(&path).unwrap();
    for (field, from, to) in [
        ("block_size", "64", "128"),
        ("rope_theta", "10000.0", "500000.0"),
    ] {
        let edited = original.replace(
            &format!("\"{field}\": {from}"),
            &format!("\"{field}\": {to}"),
        );
        assert_ne!(edited, original, "{field} not found in {original}");
        std::fs::write(&path, edited).unwrap();
        // The config agrees with the edited config.json: only the train state can tell.
        let mut again = opts(dir.path(), &[&format!("{field}={to}")]);
        again.resume = Some(done.checkpoint.clone());
        let e = format!("{:#}", train_cpu(&again, &no_stop).unwrap_err());
        assert!(
            e.contains(&format!(
                "{field} = {from} in train_state.json, {to} in config.json"
            )),
            "{e}"
        );
    }
    std::fs::write(&path, original).unwrap();
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
    // On the CPU it says first what the run will cost.
    assert!(
        err.contains("CPU estimate: about") && err.contains("GB of memory"),
        "{err}"
    );

    // A TOML error keeps its lines: the line quoted, a caret under the mistake.
    let bad = run.path().join("bad.toml");
    std::fs::write(&bad, "[model]\nn_embd = = 3\n").unwrap();
    let (ok, _, err) = trainer(&["train", "--config", bad.to_str().unwrap()]);
    assert!(!ok && err.starts_with("error: "), "{err}");
    assert!(err.lines().count() > 2 && err.contains('^'), "{err}");
    // A rule of SPEC §1 broken by a --set: said once.
    let (ok, _, err) = trainer(&[
        "train", "--config", tiny, "--set", &data_set, "--set", "n_head=5",
    ]);
    assert!(!ok && err.matches("must divide").count() == 1, "{err}");

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
