//! `trainer train`: AdamW over random windows of a token file, with warmup + cosine learning
//! rate, global-norm clipping and gradient accumulation; metrics.csv, evaluations with a sample,
//! and atomic checkpoints that resume exactly.
//!
//! [`train`] sets a run up (config, data, run directory, starting point) and hands it to
//! [`steps`], the loop; [`evaluation`], [`checkpointing`] and [`metrics`] are what the loop calls.

pub mod batches;
pub mod checkpointing;
pub mod config;
pub mod distill;
pub mod evaluation;
pub mod metrics;
pub mod schedule;
pub mod state;
pub mod steps;

use crate::TokenFile;
use crate::backend::Backend;
use crate::eval::EvalResult;
use crate::model::Model;
use anyhow::{Context, Result, bail};
use checkpointing::{BEST, CHECKPOINT, METRICS};
pub use config::{TrainConfig, load_run_config};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use walsh_spec::Checkpoint;
use walsh_spec::config::ModelConfig;

/// What `trainer train` was asked to do.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub config: PathBuf,
    pub sets: Vec<String>,
    /// The run directory (metrics.csv, checkpoint/); default `runs/<model name>`.
    pub out: Option<PathBuf>,
    /// A checkpoint written by an earlier run of the same config.
    pub resume: Option<PathBuf>,
    /// Start afresh in a run directory that holds an earlier run, deleting its outputs
    /// (without it, such a directory is refused unless the run resumes).
    pub overwrite: bool,
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

/// Trains on the CPU backend (f32). `stop` is set by Ctrl-C: the run checkpoints and returns.
pub fn train_cpu(opts: &TrainOptions, stop: &AtomicBool) -> Result<TrainReport> {
    train(crate::backend::cpu::CpuBackend::<f32>::new(), opts, stop)
}

/// The token files and tokenizer of a run (the `data` directory of its `[train]` table).
pub struct RunData {
    pub train: TokenFile,
    pub val: Option<TokenFile>,
    pub tokenizer_json: String,
    pub tokenizer: tokenizers::Tokenizer,
}

impl RunData {
    /// Opens `tcfg.data` and checks it fits `mcfg` with windows of `seq` positions.
    pub fn open(tcfg: &TrainConfig, mcfg: &ModelConfig, seq: usize) -> Result<RunData> {
        let data_dir = &tcfg.data;
        let train = TokenFile::open(data_dir.join("train.bin")).with_context(|| {
            format!(
                "training data: run `trainer prepare … -o {}` first, or set train.data",
                data_dir.display()
            )
        })?;
        check_data(&train, mcfg, seq, "train.bin")?;
        let val_path = data_dir.join("val.bin");
        let val = if token_file_exists(&val_path) {
            let v = TokenFile::open(&val_path)?;
            check_data(&v, mcfg, 1, "val.bin")?;
            Some(v)
        } else {
            None
        };
        let tok_path = data_dir.join("tokenizer.json");
        let tokenizer_json = std::fs::read_to_string(&tok_path)
            .with_context(|| format!("cannot read {}", tok_path.display()))?;
        let tokenizer = tokenizers::Tokenizer::from_bytes(tokenizer_json.as_bytes())
            .map_err(|e| anyhow::anyhow!("{}: {e}", tok_path.display()))?;
        Ok(RunData {
            train,
            val,
            tokenizer_json,
            tokenizer,
        })
    }
}

/// Where a run starts: the model, its optimizer state and the loop's position.
pub struct Start<B: Backend> {
    pub model: Model<B>,
    pub opt: state::Optimizer<B>,
    pub step: u64,
    pub tokens: u64,
    pub elapsed_seconds: f64,
}

/// The run's starting point from checkpoint `dir` (recovered from an interrupted save if it is
/// missing), checked against the run's config and tokenizer.
fn resume_from<B: Backend<Elem = f32>>(
    backend: B,
    dir: &Path,
    opts: &TrainOptions,
    mcfg: &ModelConfig,
    tcfg: &TrainConfig,
    data: &RunData,
) -> Result<Start<B>> {
    let dir = checkpointing::resume_dir(dir)?;
    let ckpt =
        Checkpoint::load(&dir).with_context(|| format!("cannot resume from {}", dir.display()))?;
    let st = state::read_state(&dir)?;
    checkpointing::check_resumed_model(&dir, &ckpt.config, &st, mcfg, &opts.config)?;
    if ckpt.tokenizer_json != data.tokenizer_json {
        bail!(
            "{} was trained with another tokenizer than {} holds",
            dir.display(),
            tcfg.data.join("tokenizer.json").display()
        );
    }
    let mut model = Model::new(backend, mcfg.clone(), &ckpt.tensors)?;
    let opt = state::load_optimizer(&dir, &mut model)?;
    let changed = st.train.trajectory_changes(tcfg);
    if !changed.is_empty() && opts.verbose {
        eprintln!(
            "warning: resuming with a different {} than the run so far: the result will \
             not equal an unbroken run",
            changed.join(", ")
        );
    }
    Ok(Start {
        model,
        opt,
        step: st.step,
        tokens: st.tokens,
        elapsed_seconds: st.elapsed_seconds,
    })
}

/// SPEC §3.1's initialisation, seeded by `train.seed`.
fn fresh_start<B: Backend<Elem = f32>>(
    backend: B,
    mcfg: &ModelConfig,
    tcfg: &TrainConfig,
    data: &RunData,
) -> Result<Start<B>> {
    let ckpt = walsh_spec::init::random_checkpoint(mcfg, tcfg.seed, data.tokenizer_json.clone());
    let model = Model::new(backend, mcfg.clone(), &ckpt.tensors)?;
    let opt = state::Optimizer::new(&model)?;
    Ok(Start {
        model,
        opt,
        step: 0,
        tokens: 0,
        elapsed_seconds: 0.0,
    })
}

pub fn train<B: Backend<Elem = f32>>(
    backend: B,
    opts: &TrainOptions,
    stop: &AtomicBool,
) -> Result<TrainReport> {
    let (mcfg, tcfg) = load_run_config(&opts.config, &opts.sets)?;
    let seq = tcfg.seq_len_for(mcfg.block_size);
    let data = RunData::open(&tcfg, &mcfg, seq)?;
    let run_dir = opts.out.clone().unwrap_or_else(|| {
        PathBuf::from("runs").join(if mcfg.name.is_empty() {
            "run"
        } else {
            &mcfg.name
        })
    });
    let ckpt_dir = run_dir.join(CHECKPOINT);
    // The checkpoint of the lowest validation loss so far: long runs on small data overfit, and
    // the last checkpoint is then not the one to ship. A resumed run keeps the earlier best.
    let best_dir = run_dir.join(BEST);

    // The teacher of a distilled run, on a backend of its own (read before anything is written).
    let teacher = distill::Teacher::load(backend.another()?, &tcfg, &mcfg, seq, &data)?;
    // The starting point, read and checked before anything is written.
    let start = match &opts.resume {
        Some(_) if opts.overwrite => {
            bail!("--resume continues a run and --overwrite deletes one: give only one of them")
        }
        Some(dir) => {
            let start = resume_from(backend, dir, opts, &mcfg, &tcfg, &data)?;
            if let Some((from, step)) = checkpointing::recover(&best_dir)? {
                eprintln!(
                    "recovered the best checkpoint (step {step}) from {} into {}",
                    from.display(),
                    best_dir.display()
                );
            }
            for d in [dir.as_path(), &ckpt_dir, &best_dir] {
                checkpointing::remove_leftovers(d)?;
            }
            start
        }
        None => {
            checkpointing::claim_run_dir(&run_dir, opts.overwrite)?;
            fresh_start(backend, &mcfg, &tcfg, &data)?
        }
    };
    if start.step >= tcfg.steps {
        bail!(
            "the checkpoint is at step {}; train.steps is {} — raise it to train further",
            start.step,
            tcfg.steps
        );
    }

    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    // The run's model, beside metrics.csv (what `trainer plot` titles the picture with).
    std::fs::write(run_dir.join("config.json"), mcfg.to_json())
        .with_context(|| format!("cannot write {}", run_dir.join("config.json").display()))?;
    let best_val = state::recorded_val_loss(&best_dir).unwrap_or(f64::INFINITY);
    let metrics = metrics::Metrics::open(&run_dir.join(METRICS))?;
    if opts.verbose {
        let (emb, brain) = mcfg.param_counts();
        println!(
            "model {} ({} embedding + {} brain parameters) on {}; {} steps of {}×{}×{} tokens from step {}",
            mcfg.name,
            emb,
            brain,
            start.model.backend.describe(),
            tcfg.steps,
            tcfg.grad_accum,
            tcfg.batch_size,
            seq,
            start.step
        );
    }
    let run = steps::Run {
        mcfg: &mcfg,
        tcfg: &tcfg,
        seq,
        data: &data,
        ckpt_dir: &ckpt_dir,
        best_dir: &best_dir,
        opts,
    };
    let end = steps::run(&run, start, teacher, metrics, best_val, stop)?;
    Ok(TrainReport {
        run_dir,
        checkpoint: ckpt_dir,
        steps: end.step,
        interrupted: end.interrupted,
        train_loss: end.train_loss,
        last_eval: end.last_eval,
        tokens_per_second: end.tokens_per_second,
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
