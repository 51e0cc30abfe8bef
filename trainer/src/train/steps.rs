//! The training loop: optimizer steps from a [`Start`] to `train.steps` (or a stop), with a
//! metrics row every `log_every` steps, an evaluation every `eval_every`, and a checkpoint every
//! `checkpoint_every` steps, at the last step and when stopped.

use super::checkpointing;
use super::distill::Teacher;
use super::evaluation::evaluate_and_sample;
use super::metrics::{Metrics, Row};
use super::state::TrainState;
use super::{RunData, Start, TrainConfig, TrainOptions, batches, schedule, state};
use crate::backend::{AdamW, Backend};
use crate::eval::EvalResult;
use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use walsh_spec::config::ModelConfig;

/// What the loop works with.
pub struct Run<'a> {
    pub mcfg: &'a ModelConfig,
    pub tcfg: &'a TrainConfig,
    /// Positions per training window.
    pub seq: usize,
    pub data: &'a RunData,
    pub ckpt_dir: &'a Path,
    pub best_dir: &'a Path,
    pub opts: &'a TrainOptions,
}

/// Where the loop ended.
pub struct End {
    pub step: u64,
    pub interrupted: bool,
    /// Mean loss of the last logged interval.
    pub train_loss: f64,
    pub last_eval: Option<EvalResult>,
    pub tokens_per_second: f64,
}

fn progress_bar(show: bool, steps: u64, start: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise}, ETA {eta}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(start);
    bar
}

/// Runs the steps from `start`; `stop` (Ctrl-C) ends the run after the current step with a
/// checkpoint. `best_val` is the validation loss of the run's `best/` so far.
pub fn run<B: Backend<Elem = f32>>(
    run: &Run,
    start: Start<B>,
    mut teacher: Option<Teacher<B>>,
    mut metrics: Metrics,
    mut best_val: f64,
    stop: &AtomicBool,
) -> Result<End> {
    let Run {
        tcfg,
        seq,
        data,
        ckpt_dir,
        best_dir,
        opts,
        ..
    } = *run;
    let Start {
        mut model,
        mut opt,
        step: first,
        tokens: mut tokens_seen,
        elapsed_seconds: elapsed_before,
    } = start;
    let say = |s: &str| {
        if opts.verbose {
            println!("{s}");
        }
    };
    let bar = progress_bar(opts.progress, tcfg.steps, first);
    let decay = model.layout.decay_ranges();
    let tokens_per_step = (tcfg.batch_size * seq * tcfg.grad_accum) as u64;
    let (mut interval_loss, mut interval_steps) = (0.0, 0u64);
    let mut interval_start = Instant::now();
    let run_start = Instant::now();
    let mut last_eval = None;
    let (mut train_loss, mut tokens_per_second) = (f64::NAN, 0.0);
    let mut step = first;
    let mut interrupted = false;
    while step < tcfg.steps {
        let lr = schedule::lr_at(tcfg, step);
        model.zero_grads()?;
        let mut loss = 0.0;
        for micro in 0..tcfg.grad_accum {
            let b = batches::train_batch(&data.train, tcfg.seed, step, micro, tcfg.batch_size, seq);
            // Distilled: the teacher's targets for the same windows (its forward first).
            let distill = match teacher.as_mut() {
                Some(t) => Some(t.targets(&model.backend, &b.inputs, tcfg.batch_size, seq)?),
                None => None,
            };
            let l = model
                .forward(&b.inputs, Some(&b.targets), tcfg.batch_size, seq)?
                .unwrap_or(f64::NAN);
            // The logged loss stays the cross-entropy, comparable with undistilled runs; the
            // KL term joins the divergence check.
            let kl = match &distill {
                Some(d) => model.distill_forward(d)?,
                None => 0.0,
            };
            if !kl.is_finite() {
                bail!(
                    "step {}: distillation loss {kl}: training diverged",
                    step + 1
                );
            }
            model.backward_distilled(1.0 / tcfg.grad_accum as f64, distill.as_ref())?;
            loss += l / tcfg.grad_accum as f64;
        }
        let grad_norm = model.backend.sum_squares(&model.grads)?.sqrt();
        if !loss.is_finite() || !grad_norm.is_finite() {
            let last = if ckpt_dir.join(state::STATE_FILE).exists() {
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
            let val = match (&data.val, eval_now) {
                (Some(v), true) if v.len() >= 2 => {
                    let (r, lines) = evaluate_and_sample(
                        &mut model,
                        v,
                        &data.tokenizer,
                        tcfg,
                        seq,
                        step,
                        train_loss,
                    )?;
                    bar.suspend(|| lines.iter().for_each(|l| say(l)));
                    last_eval = Some(r);
                    Some(r)
                }
                _ => None,
            };
            metrics.write(&Row {
                step,
                tokens: tokens_seen,
                lr,
                train_loss,
                grad_norm,
                tokens_per_s: tokens_per_second,
                val,
            })?;
            bar.set_message(format!(
                "loss {train_loss:.4}  |g| {grad_norm:.3}  lr {lr:.2e}  {:.0} tok/s",
                tokens_per_second
            ));
            (interval_loss, interval_steps) = (0.0, 0);
            interval_start = Instant::now();
        }
        bar.set_position(step);
        let state_now = |val_loss| TrainState {
            format: state::FORMAT.into(),
            step,
            tokens: tokens_seen,
            train: tcfg.clone(),
            elapsed_seconds: elapsed_before + run_start.elapsed().as_secs_f64(),
            val_loss,
            model: Some(run.mcfg.clone()),
        };
        if let Some(r) = last_eval.filter(|r| eval_now && r.loss < best_val) {
            best_val = r.loss;
            checkpointing::save(
                best_dir,
                &model,
                &opt,
                &state_now(Some(r.loss)),
                &data.tokenizer_json,
            )?;
            interval_start = Instant::now();
        }
        let ckpt_now = last
            || interrupted
            || (tcfg.checkpoint_every > 0 && step.is_multiple_of(tcfg.checkpoint_every));
        if ckpt_now {
            let val_loss = last_eval.filter(|_| eval_now).map(|r| r.loss);
            checkpointing::save(
                ckpt_dir,
                &model,
                &opt,
                &state_now(val_loss),
                &data.tokenizer_json,
            )?;
            // Saving is not training: keep it out of the next interval's tokens/s.
            interval_start = Instant::now();
        }
        if interrupted {
            break;
        }
    }
    bar.finish_and_clear();
    say(&format!(
        "{} at step {step}: checkpoint {}, metrics {}",
        if interrupted { "stopped" } else { "finished" },
        ckpt_dir.display(),
        metrics.path().display()
    ));
    Ok(End {
        step,
        interrupted,
        train_loss,
        last_eval,
        tokens_per_second,
    })
}
