//! `trainer train`: AdamW over random windows of a token file, with warmup + cosine learning
//! rate, global-norm clipping and gradient accumulation; metrics.csv, evaluations with a sample,
//! and atomic checkpoints that resume exactly.

pub mod batches;
pub mod config;
pub mod schedule;
pub mod state;

use crate::TokenFile;
use crate::backend::{AdamW, Backend};
use crate::eval::{EvalResult, evaluate, sample};
use crate::model::Model;
use crate::plot::METRICS_HEADER;
use anyhow::{Context, Result, bail};
pub use config::{TrainConfig, load_run_config};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use walsh_spec::Checkpoint;
use walsh_spec::config::ModelConfig;
use walsh_spec::sampler::SamplingParams;

/// What `trainer train` was asked to do.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub config: PathBuf,
    pub sets: Vec<String>,
    /// The run directory (metrics.csv, checkpoint/); default `runs/<model name>`.
    pub out: Option<PathBuf>,
    /// A checkpoint written by an earlier run of the same config.
    pub resume: Option<PathBuf>,
    /// Stop (with a checkpoint) after this step, as Ctrl-C would.
    pub stop_after: Option<u64>,
    pub progress: bool,
    /// Print evaluations and samples to stdout.
    pub verbose: bool,
}

#[derive(Debug, Clone)]
pub struct TrainReport {
    pub run_dir: PathBuf,
    pub checkpoint: PathBuf,
    /// Optimizer steps completed, in total (earlier runs included when resumed).
    pub steps: u64,
    pub interrupted: bool,
    /// Mean loss of the last logged interval.
    pub train_loss: f64,
    pub last_eval: Option<EvalResult>,
    pub tokens_per_second: f64,
}

/// One metrics.csv row.
struct Row {
    step: u64,
    tokens: u64,
    lr: f64,
    train_loss: f64,
    grad_norm: f64,
    tokens_per_s: f64,
    val: Option<EvalResult>,
}

fn write_row(file: &mut std::fs::File, r: &Row) -> std::io::Result<()> {
    let (vl, vb) = match r.val {
        Some(e) => (
            format!("{:.6}", e.loss),
            e.bpb.map(|b| format!("{b:.6}")).unwrap_or_default(),
        ),
        None => (String::new(), String::new()),
    };
    writeln!(
        file,
        "{},{},{:.6e},{:.6},{:.6},{:.1},{vl},{vb}",
        r.step, r.tokens, r.lr, r.train_loss, r.grad_norm, r.tokens_per_s
    )?;
    file.flush()
}

/// Trains on the CPU backend (f32). `stop` is set by Ctrl-C: the run checkpoints and returns.
pub fn train_cpu(opts: &TrainOptions, stop: &AtomicBool) -> Result<TrainReport> {
    train(crate::backend::cpu::CpuBackend::<f32>::new(), opts, stop)
}

pub fn train<B: Backend<Elem = f32>>(
    backend: B,
    opts: &TrainOptions,
    stop: &AtomicBool,
) -> Result<TrainReport> {
    let (mcfg, tcfg) = load_run_config(&opts.config, &opts.sets)?;
    let seq = tcfg.seq_len_for(mcfg.block_size);
    let data_dir = &tcfg.data;
    let train_data = TokenFile::open(data_dir.join("train.bin")).with_context(|| {
        format!(
            "training data: run `trainer prepare … -o {}` first, or set train.data",
            data_dir.display()
        )
    })?;
    check_data(&train_data, &mcfg, seq, "train.bin")?;
    let val_path = data_dir.join("val.bin");
    let val_data = if token_file_exists(&val_path) {
        let v = TokenFile::open(&val_path)?;
        check_data(&v, &mcfg, 1, "val.bin")?;
        Some(v)
    } else {
        None
    };
    let tokenizer_json = std::fs::read_to_string(data_dir.join("tokenizer.json"))
        .with_context(|| format!("cannot read {}", data_dir.join("tokenizer.json").display()))?;
    let tokenizer = tokenizers::Tokenizer::from_bytes(tokenizer_json.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", data_dir.join("tokenizer.json").display()))?;

    let run_dir = opts.out.clone().unwrap_or_else(|| {
        PathBuf::from("runs").join(if mcfg.name.is_empty() {
            "run"
        } else {
            &mcfg.name
        })
    });
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    // The run's model, beside metrics.csv (what `trainer plot` titles the picture with).
    std::fs::write(run_dir.join("config.json"), mcfg.to_json())
        .with_context(|| format!("cannot write {}", run_dir.join("config.json").display()))?;
    let ckpt_dir = run_dir.join("checkpoint");
    // The checkpoint of the lowest validation loss so far: long runs on small data overfit, and
    // the last checkpoint is then not the one to ship. A resumed run keeps the earlier best.
    let best_dir = run_dir.join("best");
    let mut best_val = state::recorded_val_loss(&best_dir).unwrap_or(f64::INFINITY);

    // The starting point: a checkpoint and its optimizer state, or SPEC §3.1's initialisation.
    let (mut model, mut opt, start, mut tokens_seen, elapsed_before) = match &opts.resume {
        Some(dir) => {
            let ckpt = Checkpoint::load(dir)
                .with_context(|| format!("cannot resume from {}", dir.display()))?;
            if ckpt.config != mcfg {
                bail!(
                    "{} holds a different model than {} (checkpoint: {}; config: {})",
                    dir.display(),
                    opts.config.display(),
                    ckpt.config.to_json(),
                    mcfg.to_json()
                );
            }
            if ckpt.tokenizer_json != tokenizer_json {
                bail!(
                    "{} was trained with another tokenizer than {} holds",
                    dir.display(),
                    data_dir.join("tokenizer.json").display()
                );
            }
            let mut model = Model::new(backend, mcfg.clone(), &ckpt.tensors)?;
            let (opt, st) = state::load(dir, &mut model)?;
            let changed = st.train.trajectory_changes(&tcfg);
            if !changed.is_empty() && opts.verbose {
                eprintln!(
                    "warning: resuming with a different {} than the run so far: the result will \
                     not equal an unbroken run",
                    changed.join(", ")
                );
            }
            (model, opt, st.step, st.tokens, st.elapsed_seconds)
        }
        None => {
            let ckpt =
                walsh_spec::init::random_checkpoint(&mcfg, tcfg.seed, tokenizer_json.clone());
            let model = Model::new(backend, mcfg.clone(), &ckpt.tensors)?;
            let opt = state::Optimizer::new(&model)?;
            (model, opt, 0, 0, 0.0)
        }
    };
    if start >= tcfg.steps {
        bail!(
            "the checkpoint is at step {start}; train.steps is {} — raise it to train further",
            tcfg.steps
        );
    }

    let metrics_path = run_dir.join("metrics.csv");
    let new_file = !metrics_path.exists();
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .with_context(|| format!("cannot open {}", metrics_path.display()))?;
    if new_file {
        writeln!(metrics, "{METRICS_HEADER}")?;
    }
    let (emb, brain) = mcfg.param_counts();
    let say = |s: String| {
        if opts.verbose {
            println!("{s}");
        }
    };
    say(format!(
        "model {} ({} embedding + {} brain parameters) on {}; {} steps of {}×{}×{} tokens from step {start}",
        mcfg.name,
        emb,
        brain,
        model.backend.describe(),
        tcfg.steps,
        tcfg.grad_accum,
        tcfg.batch_size,
        seq
    ));

    let bar = if opts.progress {
        let bar = ProgressBar::new(tcfg.steps);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise}, ETA {eta}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_position(start);
        bar
    } else {
        ProgressBar::hidden()
    };
    let decay = model.layout.decay_ranges();
    let tokens_per_step = (tcfg.batch_size * seq * tcfg.grad_accum) as u64;
    let (mut interval_loss, mut interval_steps) = (0.0, 0u64);
    let mut interval_start = Instant::now();
    let run_start = Instant::now();
    let mut last_eval = None;
    let (mut train_loss, mut tokens_per_second) = (f64::NAN, 0.0);
    let mut step = start;
    let mut interrupted = false;
    while step < tcfg.steps {
        let lr = schedule::lr_at(&tcfg, step);
        model.zero_grads()?;
        let mut loss = 0.0;
        for micro in 0..tcfg.grad_accum {
            let b = batches::train_batch(&train_data, tcfg.seed, step, micro, tcfg.batch_size, seq);
            let l = model
                .forward(&b.inputs, Some(&b.targets), tcfg.batch_size, seq)?
                .unwrap_or(f64::NAN);
            model.backward(1.0 / tcfg.grad_accum as f64)?;
            loss += l / tcfg.grad_accum as f64;
        }
        let grad_norm = model.backend.sum_squares(&model.grads)?.sqrt();
        if !loss.is_finite() || !grad_norm.is_finite() {
            let last = if ckpt_dir.join("train_state.json").exists() {
                format!("the last checkpoint is {}", ckpt_dir.display())
            } else {
                "no checkpoint was written".into()
            };
            bail!(
                "step {}: loss {loss}, gradient norm {grad_norm}: training diverged (lower \
                 train.lr?); {last}",
                step + 1
            );
        }
        let scale = if tcfg.grad_clip > 0.0 && grad_norm > tcfg.grad_clip {
            tcfg.grad_clip / grad_norm
        } else {
            1.0
        };
        let hp = AdamW {
            lr,
            beta1: tcfg.beta1,
            beta2: tcfg.beta2,
            eps: tcfg.eps,
            weight_decay: tcfg.weight_decay,
            step: step + 1,
        };
        opt.step(&mut model, &decay, scale, hp)?;
        model.quantize()?;
        step += 1;
        tokens_seen += tokens_per_step;
        interval_loss += loss;
        interval_steps += 1;

        let last = step == tcfg.steps;
        interrupted = stop.load(Ordering::SeqCst) || opts.stop_after.is_some_and(|s| step >= s);
        let eval_now = last || (tcfg.eval_every > 0 && step.is_multiple_of(tcfg.eval_every));
        let log_now = eval_now || interrupted || step.is_multiple_of(tcfg.log_every);
        if log_now {
            let secs = interval_start.elapsed().as_secs_f64().max(1e-9);
            tokens_per_second = (interval_steps * tokens_per_step) as f64 / secs;
            train_loss = interval_loss / interval_steps as f64;
            let val = match (&val_data, eval_now) {
                (Some(v), true) if v.len() >= 2 => {
                    let r = evaluate(&mut model, v, tcfg.batch_size, seq, Some(tcfg.eval_batches))?;
                    let text = if tcfg.sample_tokens > 0 {
                        sample(
                            &mut model,
                            &tokenizer,
                            &tcfg.sample_prompt,
                            tcfg.sample_tokens,
                            SamplingParams::default(),
                        )?
                    } else {
                        String::new()
                    };
                    bar.suspend(|| {
                        say(format!(
                            "step {step}: train loss {train_loss:.4}, val loss {:.4}, val {}",
                            r.loss,
                            r.bpb
                                .map(|b| format!("{b:.4} bits/byte"))
                                .unwrap_or_else(|| "bits/byte unknown".into())
                        ));
                        if !text.is_empty() {
                            say(format!("  sample: {}", text.replace('\n', " ")));
                        }
                    });
                    last_eval = Some(r);
                    Some(r)
                }
                _ => None,
            };
            write_row(
                &mut metrics,
                &Row {
                    step,
                    tokens: tokens_seen,
                    lr,
                    train_loss,
                    grad_norm,
                    tokens_per_s: tokens_per_second,
                    val,
                },
            )
            .with_context(|| format!("cannot write {}", metrics_path.display()))?;
            bar.set_message(format!(
                "loss {train_loss:.4}  |g| {grad_norm:.3}  lr {lr:.2e}  {:.0} tok/s",
                tokens_per_second
            ));
            (interval_loss, interval_steps) = (0.0, 0);
            interval_start = Instant::now();
        }
        bar.set_position(step);
        let state_now = |val_loss| state::TrainState {
            format: state::FORMAT.into(),
            step,
            tokens: tokens_seen,
            train: tcfg.clone(),
            elapsed_seconds: elapsed_before + run_start.elapsed().as_secs_f64(),
            val_loss,
        };
        if let Some(r) = last_eval.filter(|r| eval_now && r.loss < best_val) {
            best_val = r.loss;
            state::save(
                &best_dir,
                &model,
                &opt,
                &state_now(Some(r.loss)),
                &tokenizer_json,
            )
            .with_context(|| format!("cannot write the checkpoint {}", best_dir.display()))?;
            interval_start = Instant::now();
        }
        let ckpt_now = last
            || interrupted
            || (tcfg.checkpoint_every > 0 && step.is_multiple_of(tcfg.checkpoint_every));
        if ckpt_now {
            let val_loss = last_eval.filter(|_| eval_now).map(|r| r.loss);
            state::save(
                &ckpt_dir,
                &model,
                &opt,
                &state_now(val_loss),
                &tokenizer_json,
            )
            .with_context(|| format!("cannot write the checkpoint {}", ckpt_dir.display()))?;
            // Saving is not training: keep it out of the next interval's tokens/s.
            interval_start = Instant::now();
        }
        if interrupted {
            break;
        }
    }
    bar.finish_and_clear();
    say(format!(
        "{} at step {step}: checkpoint {}, metrics {}",
        if interrupted { "stopped" } else { "finished" },
        ckpt_dir.display(),
        metrics_path.display()
    ));
    Ok(TrainReport {
        run_dir,
        checkpoint: ckpt_dir,
        steps: step,
        interrupted,
        train_loss,
        last_eval,
        tokens_per_second,
    })
}

/// A token file the model can train on: long enough for one window, ids inside the vocabulary.
fn check_data(data: &TokenFile, cfg: &ModelConfig, seq: usize, name: &str) -> Result<()> {
    if data.len() < seq + 1 {
        bail!(
            "{name} holds {} tokens; one training window needs seq_len + 1 = {}",
            data.len(),
            seq + 1
        );
    }
    let vocab = data.sidecar().vocab_size;
    if vocab > cfg.vocab_size as u64 {
        bail!(
            "{name} was tokenized with a vocabulary of {vocab}; the model's vocab_size is {}",
            cfg.vocab_size
        );
    }
    let eos = data.sidecar().eos_token_id;
    if eos != cfg.eos_token_id {
        bail!(
            "{name} separates documents with token {eos}; the model's eos_token_id is {}",
            cfg.eos_token_id
        );
    }
    Ok(())
}

/// Whether `prepare` wrote this token file (its .bin or its sidecar is there).
fn token_file_exists(bin: &Path) -> bool {
    bin.exists() || bin.with_extension("json").exists()
}

/// The run directory a resumed run appends to: the checkpoint's parent (`RUN/checkpoint`).
pub fn run_dir_of(checkpoint: &Path) -> Option<PathBuf> {
    checkpoint.parent().map(Path::to_path_buf)
}
