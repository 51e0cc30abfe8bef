//! `trainer sample` at scale (sequence-level distillation): batched generation stops where the
//! sampler says, a corpus is a function of the checkpoint and the seed and not of the batch size,
//! it resumes after a crash to the same bytes, `trainer prepare` reads it beside TinyStories, and
//! bad arguments get clear errors.

use crate::common::{config as config_path, data, manifest};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;
use walsh_spec::Checkpoint;
use walsh_spec::config::{Algebra, Embedding, ModelConfig};
use walsh_spec::init::random_checkpoint;
use walsh_spec::sampler::{Sampler, SamplingParams};
use walsh_trainer::backend::cpu::CpuBackend;
use walsh_trainer::corpus::{
    CorpusOptions, CorpusSettings, WriteMode, checkpoint_digest, sidecar_path, write_corpus,
};
use walsh_trainer::generate::{Sequence, Stop, generate};
use walsh_trainer::model::Model;
use walsh_trainer::prepare::{PrepareOptions, ValSplit, prepare};
use walsh_trainer::train::{TrainOptions, train_cpu};

/// The tiny config trained 3 steps on the TinyStories fixture (so its text is no longer the
/// initialisation's), once per test binary.
fn checkpoint() -> &'static Path {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &RUN.get_or_init(|| {
        let run = tempfile::tempdir().unwrap();
        let sets = [
            format!("data={}", data().display()),
            "steps=3".into(),
            "batch_size=2".into(),
            "seq_len=16".into(),
            "grad_accum=1".into(),
            "warmup_steps=1".into(),
            "lr=0.01".into(),
            "eval_every=0".into(),
            "sample_tokens=0".into(),
            "checkpoint_every=0".into(),
        ];
        let opts = TrainOptions {
            config: config_path("tiny"),
            sets: sets.to_vec(),
            out: Some(run.path().to_path_buf()),
            resume: None,
            overwrite: false,
            stop_after: None,
            progress: false,
            verbose: false,
        };
        let report = train_cpu(&opts, &AtomicBool::new(false)).unwrap();
        assert_eq!(report.steps, 3);
        (run, report.checkpoint)
    })
    .1
}

fn settings(ckpt: &Checkpoint, prompts: &[&str], seed: u64) -> CorpusSettings {
    CorpusSettings {
        checkpoint_sha256: checkpoint_digest(ckpt),
        prompts: prompts.iter().map(|p| p.to_string()).collect(),
        seed,
        temperature: 1.0,
        top_k: 40,
        top_p: 0.95,
        repeat_penalty: 1.0,
        repeat_last_n: 64,
        max_tokens: 12,
        complete_only: false,
    }
}

/// Writes a corpus of `count` stories `batch` at a time; returns its bytes.
fn corpus(
    path: &Path,
    s: &CorpusSettings,
    count: u64,
    batch: usize,
    mode: WriteMode,
) -> anyhow::Result<Vec<u8>> {
    let ckpt = Checkpoint::load(checkpoint()).unwrap();
    let tokenizer = tokenizers::Tokenizer::from_bytes(ckpt.tokenizer_json.as_bytes()).unwrap();
    let mut model = Model::new(CpuBackend::<f32>::new(), ckpt.config, &ckpt.tensors).unwrap();
    let opts = CorpusOptions {
        output: path.to_path_buf(),
        count,
        batch_size: batch,
        mode,
        progress: false,
    };
    let summary = write_corpus(&mut model, &tokenizer, s, &opts)?;
    assert_eq!(summary.total_stories, count);
    Ok(std::fs::read(path).unwrap())
}

/// A model of 16 tokens (end-of-text: 3) whose every logit is 0 (a zero embedding table): the
/// sampler draws uniformly, so the end-of-text token comes at 1/16 a step. Its tokenizer is
/// GPT-2's (ids 0-15 are punctuation), so its stories can be written as text.
fn uniform_model() -> (Checkpoint, Model<CpuBackend<f32>>) {
    let cfg = ModelConfig {
        name: "uniform".into(),
        vocab_size: 16,
        n_embd: 16,
        n_layer: 1,
        n_head: 4,
        block_size: 24,
        algebra: Algebra::Dense,
        head_mixing: false,
        embedding: Embedding::Standard,
        hash_buckets: 7,
        rope_theta: 10000.0,
        eos_token_id: 3,
    };
    let gpt2 = std::fs::read_to_string(manifest().join("../models/tokenizer-gpt2.json")).unwrap();
    let mut ckpt = random_checkpoint(&cfg, 1, gpt2);
    let table = ckpt.tensors.get_mut("tok_emb.weight").unwrap();
    table.data.iter_mut().for_each(|v| *v = 0.0);
    let model = Model::new(CpuBackend::<f32>::new(), cfg, &ckpt.tensors).unwrap();
    (ckpt, model)
}

/// Each sequence's tokens are exactly the SPEC sampler's draws on the uniform model's zero
/// logits, ending at the first end-of-text draw, at max_tokens or at the context's end, however
/// many sequences share the batch.
#[test]
fn generation_stops_at_end_of_text_max_tokens_and_the_context() {
    let (ckpt, mut model) = uniform_model();
    let cfg = ckpt.config.clone();
    let params = |seed| SamplingParams {
        temperature: 1.0,
        seed,
        ..SamplingParams::default()
    };
    let prompt = vec![3u32, 5, 7];
    let mut seen = Vec::new();
    for max_tokens in [100, 6] {
        let seqs = (0..40)
            .map(|seed| Sequence {
                context: prompt.clone(),
                sampler: Sampler::new(params(seed)),
            })
            .collect();
        let out = generate(&mut model, seqs, max_tokens).unwrap();
        for (seed, g) in out.generations.iter().enumerate() {
            // The reference: the sampler alone, on zero logits.
            let mut s = Sampler::new(params(seed as u64));
            let mut want = Vec::new();
            let stop = loop {
                if want.len() == max_tokens {
                    break Stop::MaxTokens;
                }
                if prompt.len() + want.len() == cfg.block_size {
                    break Stop::ContextFull;
                }
                match s.sample(&[0.0; 16]) {
                    3 => break Stop::EndOfText,
                    t => want.push(t),
                }
            };
            assert_eq!((&g.tokens, g.stop), (&want, stop), "seed {seed}");
            seen.push(stop);
        }
    }
    for stop in [Stop::EndOfText, Stop::MaxTokens, Stop::ContextFull] {
        assert!(seen.contains(&stop), "no story ended with {stop:?}");
    }
}

/// `complete_only` writes exactly the stories that ended with the end-of-text token, in order.
#[test]
fn complete_only_writes_the_stories_that_ended() {
    let dir = tempfile::tempdir().unwrap();
    let (ckpt, mut model) = uniform_model();
    let tokenizer = tokenizers::Tokenizer::from_bytes(ckpt.tokenizer_json.as_bytes()).unwrap();
    let s = CorpusSettings {
        max_tokens: 10,
        top_k: 0,
        top_p: 1.0,
        ..settings(&ckpt, &[], 0)
    };
    let mut write = |name: &str, complete_only| {
        let opts = CorpusOptions {
            output: dir.path().join(name),
            count: 40,
            batch_size: 16,
            mode: WriteMode::New,
            progress: false,
        };
        let s = CorpusSettings {
            complete_only,
            ..s.clone()
        };
        let summary = write_corpus(&mut model, &tokenizer, &s, &opts).unwrap();
        let text = std::fs::read_to_string(&opts.output).unwrap();
        let docs: Vec<String> = text
            .split_terminator("\n<|endoftext|>\n")
            .map(str::to_owned)
            .collect();
        (summary, docs)
    };
    let (all, every) = write("all.txt", false);
    let (ended, complete) = write("ended.txt", true);
    assert_eq!((all.stories, all.written, every.len()), (40, 40, 40));
    assert_eq!(ended.endings, all.endings);
    let n = all.endings.end_of_text;
    assert!(n > 5 && n < 35, "{n} of 40 ended");
    assert_eq!((ended.written, complete.len() as u64), (n, n));
    // In order, a subsequence of all the stories.
    let mut rest = every.iter();
    for doc in &complete {
        assert!(
            rest.any(|d| d == doc),
            "{doc:?} is not among the stories, in order"
        );
    }
}

#[test]
fn a_corpus_is_the_same_whatever_the_batch_size_and_resumes_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = Checkpoint::load(checkpoint()).unwrap();
    let s = settings(&ckpt, &[], 11);
    let path = |name: &str| dir.path().join(name);
    let one = corpus(&path("b1.txt"), &s, 7, 1, WriteMode::New).unwrap();
    let seven = corpus(&path("b7.txt"), &s, 7, 7, WriteMode::New).unwrap();
    let three = corpus(&path("b3.txt"), &s, 7, 3, WriteMode::New).unwrap();
    assert_eq!(one, seven);
    assert_eq!(one, three);
    let text = String::from_utf8(one.clone()).unwrap();
    assert_eq!(text.matches("\n<|endoftext|>\n").count(), 7, "{text}");
    // The seed matters: another gives other stories.
    let other = corpus(
        &path("s12.txt"),
        &settings(&ckpt, &[], 12),
        7,
        7,
        WriteMode::New,
    );
    assert_ne!(other.unwrap(), one);

    // Prompts: story i continues prompt i mod 2, whatever the batch.
    let p = settings(&ckpt, &["The dog", "Once upon a time"], 11);
    let a = corpus(&path("p2.txt"), &p, 5, 2, WriteMode::New).unwrap();
    let b = corpus(&path("p5.txt"), &p, 5, 5, WriteMode::New).unwrap();
    assert_eq!(a, b);
    let stories: Vec<&str> = std::str::from_utf8(&a)
        .unwrap()
        .split("<|endoftext|>")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    assert_eq!(stories.len(), 5);
    for (i, story) in stories.iter().enumerate() {
        let want = ["The dog", "Once upon a time"][i % 2];
        assert!(story.starts_with(want), "{story:?}");
    }

    // An existing file is refused without --resume or --overwrite, and is left as it was.
    let e = corpus(&path("b1.txt"), &s, 7, 7, WriteMode::New).unwrap_err();
    assert!(
        e.to_string().contains("--resume") && e.to_string().contains("--overwrite"),
        "{e}"
    );
    assert_eq!(std::fs::read(path("b1.txt")).unwrap(), one);
    assert_eq!(
        corpus(&path("b1.txt"), &s, 7, 2, WriteMode::Overwrite).unwrap(),
        one
    );

    // A run stopped after 4 stories, with half a batch written after them (a crash), resumes
    // to the bytes of the whole run.
    let part = path("part.txt");
    corpus(&part, &s, 4, 3, WriteMode::New).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&part)
        .unwrap();
    std::io::Write::write_all(&mut f, b"Once upon a ti").unwrap();
    drop(f);
    assert_eq!(corpus(&part, &s, 7, 2, WriteMode::Resume).unwrap(), one);
    // Resuming a finished corpus writes nothing.
    assert_eq!(corpus(&part, &s, 7, 2, WriteMode::Resume).unwrap(), one);
    // Other settings are refused by name.
    let hot = CorpusSettings {
        temperature: 1.5,
        ..s.clone()
    };
    let e = corpus(&part, &hot, 9, 2, WriteMode::Resume).unwrap_err();
    assert!(e.to_string().contains("temperature: 1.0 → 1.5"), "{e}");
    let e = corpus(&path("none.txt"), &s, 7, 2, WriteMode::Resume).unwrap_err();
    assert!(format!("{e:#}").contains("none.txt.json"), "{e:#}");
    let side: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sidecar_path(&part)).unwrap()).unwrap();
    assert_eq!(side["stories"], 7);
    assert_eq!(side["bytes"], one.len());
}

/// `trainer prepare` reads a corpus beside TinyStories: every story a document, tokenized as the
/// tokenizer tokenizes it.
#[test]
fn prepare_reads_a_corpus_mixed_with_tinystories() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = Checkpoint::load(checkpoint()).unwrap();
    let teacher = dir.path().join("teacher.txt");
    let bytes = corpus(&teacher, &settings(&ckpt, &[], 5), 6, 6, WriteMode::New).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let fixtures = manifest().join("tests/fixtures");
    let ts = fixtures.join("tinystories-train.txt");
    let out = dir.path().join("mixed");
    let mut opts = PrepareOptions::new(vec![ts.clone(), teacher], out);
    opts.val = ValSplit::Files(vec![fixtures.join("tinystories-val.txt")]);
    let summary = prepare(&opts).unwrap();

    let tokenizer = tokenizers::Tokenizer::from_bytes(ckpt.tokenizer_json.as_bytes()).unwrap();
    let docs =
        |t: &str| -> Vec<String> { walsh_spec::text::documents(t).map(str::to_owned).collect() };
    let ts_docs = docs(&std::fs::read_to_string(&ts).unwrap());
    let ours = docs(&text);
    assert!(!ours.is_empty());
    let tokens: usize = ts_docs
        .iter()
        .chain(&ours)
        .map(|d| tokenizer.encode(d.as_str(), false).unwrap().len() + 1)
        .sum();
    assert_eq!(summary.train.documents as usize, ts_docs.len() + ours.len());
    assert_eq!(summary.train.tokens as usize, tokens);
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
fn the_binary_writes_a_corpus_and_explains_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = checkpoint().to_str().unwrap();
    let out: PathBuf = dir.path().join("corpus.txt");
    let out_s = out.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["sample", ckpt, "--top-k", "40"];
        args.extend_from_slice(extra);
        trainer(&args)
    };
    let (ok, stdout, err) = run(&[
        "--count",
        "3",
        "--batch-size",
        "2",
        "--max-tokens",
        "6",
        "-o",
        out_s,
    ]);
    assert!(ok, "{err}");
    assert!(
        stdout.starts_with("generated 3 stories (3 written), ") && stdout.contains("stories/min"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(&out)
            .unwrap()
            .matches("<|endoftext|>")
            .count(),
        3
    );
    let (ok, stdout, err) = run(&["--count", "5", "--max-tokens", "6", "-o", out_s, "--resume"]);
    assert!(
        ok && stdout.contains("generated 2 stories") && stdout.contains("(5 stories)"),
        "{err}"
    );

    let bad: &[(&[&str], &str)] = &[
        (&["-o", out_s], "--resume"),
        (&["--count", "0", "-o", "x.txt"], "--count 0"),
        (&["--batch-size", "0", "-o", "x.txt"], "--batch-size 0"),
        (&["--max-tokens", "0", "-o", "x.txt"], "--max-tokens 0"),
        (
            &["--temperature", "0", "--count", "2", "-o", "x.txt"],
            "greedy",
        ),
        (&["--top-p", "1.5", "-o", "x.txt"], "top_p 1.5"),
        (&["--temperature=-1"], "temperature -1"),
        (&["--resume"], "--output"),
    ];
    for (args, want) in bad {
        let (ok, _, err) = run(args);
        assert!(!ok && err.contains(want), "{args:?}: {err}");
    }
    let long = "word ".repeat(100);
    let (ok, _, err) = run(&["--prompt", &long]);
    assert!(!ok && err.contains("at most 62 fit"), "{err}");
    assert!(!Path::new("x.txt").exists(), "a refused run wrote a file");
}
