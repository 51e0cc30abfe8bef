//! The evaluation during training: the loss and bits per byte on val.bin and a greedy sample,
//! printed as one progress line.

use super::TrainConfig;
use crate::TokenFile;
use crate::backend::Backend;
use crate::eval::{EvalResult, evaluate, sample};
use crate::model::Model;
use anyhow::Result;
use walsh_spec::sampler::SamplingParams;

/// Evaluates `model` on the first `eval_batches` batches of `val`, samples `sample_tokens`
/// tokens after `sample_prompt`, and returns the result with the lines to print.
pub fn evaluate_and_sample<B: Backend<Elem = f32>>(
    model: &mut Model<B>,
    val: &TokenFile,
    tokenizer: &tokenizers::Tokenizer,
    tcfg: &TrainConfig,
    seq: usize,
    step: u64,
    train_loss: f64,
) -> Result<(EvalResult, Vec<String>)> {
    let r = evaluate(model, val, tcfg.batch_size, seq, Some(tcfg.eval_batches))?;
    let text = if tcfg.sample_tokens > 0 {
        sample(
            model,
            tokenizer,
            &tcfg.sample_prompt,
            tcfg.sample_tokens,
            SamplingParams::default(),
        )?
    } else {
        String::new()
    };
    let mut lines = vec![format!(
        "step {step}: train loss {train_loss:.4}, val loss {:.4}, val {}",
        r.loss,
        r.bpb
            .map(|b| format!("{b:.4} bits/byte"))
            .unwrap_or_else(|| "bits/byte unknown".into())
    )];
    if !text.is_empty() {
        lines.push(format!("  sample: {}", text.replace('\n', " ")));
    }
    Ok((r, lines))
}
