//! `packer`: the operator's command line. Logic lives in the library; this file parses arguments
//! and turns errors into one clear line.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use walsh_engine::{Engine, SamplingParams};
use walsh_packer::{inspect, run};
use walsh_spec::blob::{self, DType};
use walsh_spec::{Checkpoint, PackOptions, Packing, config_file, init, pack};

/// `println!` that returns the write's error instead of panicking (a closed pipe, `| head`).
macro_rules! outln {
    ($($arg:tt)*) => {
        std::io::Write::write_fmt(&mut std::io::stdout().lock(), format_args!("{}\n", format_args!($($arg)*)))?
    };
}

/// `print!` likewise.
macro_rules! out {
    ($($arg:tt)*) => {
        std::io::Write::write_fmt(&mut std::io::stdout().lock(), format_args!($($arg)*))?
    };
}

#[cfg(feature = "ic")]
mod ic_cli;

#[derive(Parser)]
#[command(
    name = "packer",
    version,
    about = "Walsh checkpoints → .walsh blobs, tools for blobs, and their upload to the canister"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum PackingArg {
    #[value(name = "4x")]
    X4,
    #[value(name = "16x")]
    X16,
    #[value(name = "5x")]
    X5,
}

#[derive(Clone, Copy, ValueEnum)]
enum FloatArg {
    F32,
    F16,
}

#[derive(Clone, Copy, ValueEnum)]
enum EmbeddingArg {
    F32,
    F16,
    Int8,
    Int6,
    Int4,
}

#[derive(Subcommand)]
enum Command {
    /// Pack a checkpoint directory (config.json, model.safetensors, tokenizer.json) into a blob.
    Pack {
        /// The checkpoint directory (`trainer train` writes them; `packer init` writes random ones).
        checkpoint: PathBuf,
        /// The .walsh file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Ternary layout: 4 weights per byte, 16 per u32 in SIMD tiles, or 5 per byte in base 3
        /// (1.6 bits a weight; unpacked at load).
        #[arg(long, value_enum, default_value = "4x")]
        packing: PackingArg,
        /// How to store the embedding tables (the tied head too): f16 holds magnitudes up to
        /// 65504, f32 anything finite; int8 / int6 / int4 are integer codes with an f16 scale per
        /// row (int8: rows up to about 8.3e6).
        #[arg(long, value_enum, default_value = "f16")]
        embeddings: EmbeddingArg,
        /// Rotate each embedding row by the Walsh–Hadamard transform (blocks of the largest
        /// power of two dividing n_embd) before int8 / int6 / int4 quantization.
        #[arg(long)]
        rotate: bool,
        /// How to store the brain's float tensors (α and β scales, head mixing, norm gains).
        #[arg(long, value_enum, default_value = "f32")]
        floats: FloatArg,
    },
    /// Re-encode a blob without its checkpoint (a version 1 blob into format 2, say): ternary
    /// weights in another layout (lossless), embeddings in another format (from their stored
    /// values), the tokenizer in compact form; every other tensor as it is.
    Repack {
        /// The .walsh file to read.
        blob: PathBuf,
        /// The .walsh file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Ternary layout of the new blob.
        #[arg(long, value_enum, default_value = "4x")]
        packing: PackingArg,
        /// Embedding format of the new blob (default: as stored). Narrower than the stored
        /// format, it adds its rounding to the blob's: pack the checkpoint instead when you have it.
        #[arg(long, value_enum)]
        embeddings: Option<EmbeddingArg>,
        /// Rotate the embedding rows before quantizing (with --embeddings int8, int6 or int4).
        #[arg(long)]
        rotate: bool,
        /// Format of the brain's float tensors (α and β scales, head mixing, norm gains) in the
        /// new blob (default: as stored).
        #[arg(long, value_enum)]
        floats: Option<FloatArg>,
    },
    /// Write a randomly initialised checkpoint of a config (SPEC §3.1).
    Init {
        /// A TOML config whose [model] table is the model (configs/*.toml).
        #[arg(long)]
        config: PathBuf,
        /// The checkpoint directory to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Seed of the random weights: the same seed gives the same checkpoint.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// tokenizer.json to ship with it (default: models/tokenizer-gpt2.json).
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// Override a [model] field, e.g. --set n_layer=2.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Show a blob's config, parameter counts, tensors and sizes.
    Inspect {
        /// The .walsh file.
        blob: PathBuf,
        /// List every tensor.
        #[arg(long)]
        tensors: bool,
    },
    /// Generate text with the canister's engine, natively.
    Run {
        /// The .walsh file.
        blob: PathBuf,
        /// The text to continue.
        prompt: String,
        /// Tokens to generate at most (fewer if the model ends the text or its context fills).
        #[arg(long, default_value_t = 100, value_parser = at_least_one)]
        max_tokens: usize,
        /// Sampling temperature, a finite number >= 0; 0 = greedy (always the likeliest token).
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// Sample only from the K likeliest tokens; 0 = off.
        #[arg(long, default_value_t = 0, value_name = "K")]
        top_k: usize,
        /// Sample only from the likeliest tokens whose probabilities add up to P, in (0, 1]; 1 = off.
        #[arg(long, default_value_t = 1.0, value_name = "P")]
        top_p: f32,
        /// Seed of the sampler (with a temperature above 0): the same seed gives the same text.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// llama.cpp's repetition penalty (SPEC §5.2): the logits of the last N tokens' ids are
        /// divided by R when positive, multiplied by R otherwise; 1 = off. The default is the
        /// canister's `generate`'s, so that both write the same text.
        #[arg(long, default_value_t = walsh_spec::sampler::DEFAULT_DECODING_REPEAT_PENALTY, value_name = "R")]
        repeat_penalty: f32,
        /// How many of the context's last tokens the repetition penalty looks at; 0 = off.
        #[arg(long, default_value_t = walsh_spec::sampler::DEFAULT_REPEAT_LAST_N, value_name = "N")]
        repeat_last_n: usize,
        /// Print the K most likely next tokens and their log-probabilities at every step.
        #[arg(long, default_value_t = 0, value_name = "K")]
        logprobs: usize,
        /// Print the whole result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Loss and bits per byte of a blob on text (.txt, documents separated by <|endoftext|>),
    /// through the canister's engine: what the packed model scores.
    Eval {
        /// The .walsh file.
        blob: PathBuf,
        /// Text files to score (.txt, documents separated by <|endoftext|>), as one text.
        #[arg(required = true, value_name = "TEXT")]
        text: Vec<PathBuf>,
        /// Positions per window, 1 to the model's context (the default).
        #[arg(long, value_name = "N", value_parser = at_least_one)]
        window: Option<usize>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Upload a blob to a running walsh canister (controllers only); resumes an interrupted
    /// upload, and the model serves when it returns.
    #[cfg(feature = "ic")]
    Upload {
        /// The .walsh file (checked with the engine before a byte is sent).
        blob: PathBuf,
        #[command(flatten)]
        target: ic_cli::Target,
        /// Bytes per upload_chunk call (an ingress message is at most 2 MiB).
        #[arg(long, default_value_t = walsh_spec::upload::MAX_CHUNK_SIZE, value_parser = ic_cli::chunk_size_parser())]
        chunk_size: u32,
        /// Upload even if the canister already serves this blob.
        #[arg(long)]
        force: bool,
    },
    /// Read back the blob a walsh canister serves (controllers only), verified by its SHA-256.
    #[cfg(feature = "ic")]
    Download {
        #[command(flatten)]
        target: ic_cli::Target,
        /// The .walsh file to write (only once the download is verified).
        #[arg(short, long)]
        output: PathBuf,
    },
}

/// A count that must be at least 1, said plainly (clap's ranged parser names u64::MAX).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a whole number ({e})")),
    }
}

fn default_tokenizer() -> Result<PathBuf> {
    let candidates = [
        PathBuf::from("models/tokenizer-gpt2.json"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tokenizer-gpt2.json"),
    ];
    candidates
        .into_iter()
        .find(|p| p.exists())
        .context("no --tokenizer given and models/tokenizer-gpt2.json not found (run from the repository root or pass --tokenizer PATH)")
}

fn read_blob(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The canister's engine on the blob at `path`, checked as an upload would be.
fn load_engine(path: &Path) -> Result<Engine> {
    Engine::load(&read_blob(path)?).with_context(|| format!("cannot load {}", path.display()))
}

impl From<FloatArg> for DType {
    fn from(f: FloatArg) -> Self {
        match f {
            FloatArg::F32 => DType::F32,
            FloatArg::F16 => DType::F16,
        }
    }
}

impl From<PackingArg> for Packing {
    fn from(p: PackingArg) -> Self {
        match p {
            PackingArg::X4 => Packing::X4,
            PackingArg::X16 => Packing::X16,
            PackingArg::X5 => Packing::X5,
        }
    }
}

/// The dtype of `--embeddings` with `--rotate`.
fn embedding_dtype(e: EmbeddingArg, rotate: bool) -> Result<DType> {
    let bits = match e {
        EmbeddingArg::F32 | EmbeddingArg::F16 if rotate => {
            bail!("--rotate applies to --embeddings int8, int6 or int4")
        }
        EmbeddingArg::F32 => return Ok(DType::F32),
        EmbeddingArg::F16 => return Ok(DType::F16),
        EmbeddingArg::Int8 => 8,
        EmbeddingArg::Int6 => 6,
        EmbeddingArg::Int4 => 4,
    };
    DType::quant_of(bits, rotate).context("no such integer-rows dtype")
}

/// Checks a new blob with the engine that will run it, before anyone uploads it, then writes it
/// (through a temporary file, so a failure leaves no half blob) and reports what it holds.
fn write_blob(bytes: &[u8], output: &Path) -> Result<()> {
    Engine::load(bytes).context("the packed blob does not load (a packer bug)")?;
    let tmp = output.with_extension("walsh.tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, output).with_context(|| format!("cannot write {}", output.display()))?;
    let parsed = blob::parse(bytes)?;
    outln!("wrote {} ({} bytes)", output.display(), bytes.len());
    out!("{}", inspect::report(&parsed, bytes, false));
    Ok(())
}

fn main() {
    if let Err(e) = real_main() {
        if is_broken_pipe(&e) {
            // The reader went away (`packer run … | head`): what it wanted it has. Exit quietly
            // and successfully, as ripgrep does.
            std::process::exit(0);
        }
        eprintln!("error: {}", one_line(&e));
        std::process::exit(1);
    }
}

/// Whether writing to stdout failed because nobody reads it any more.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes on one line, each once: some errors (the engine's `invalid blob:
/// {0}` among them) quote their cause in their own message and also return it as their source.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        if line.ends_with(&cause) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&cause);
    }
    line.replace('\n', " ")
}

fn real_main() -> Result<()> {
    match Cli::parse().command {
        Command::Pack {
            checkpoint,
            output,
            packing,
            embeddings,
            rotate,
            floats,
        } => {
            let ckpt = Checkpoint::load(&checkpoint)?;
            let opts = PackOptions {
                packing: packing.into(),
                embeddings: embedding_dtype(embeddings, rotate)?,
                floats: floats.into(),
            };
            if let (_, Some(why)) = walsh_spec::pack::tokenizer_section(&ckpt.tokenizer_json)? {
                eprintln!("note: the tokenizer is stored as JSON: {why}");
            }
            write_blob(&pack(&ckpt, opts)?, &output)?;
        }
        Command::Repack {
            blob: path,
            output,
            packing,
            embeddings,
            rotate,
            floats,
        } => {
            let bytes = read_blob(&path)?;
            let parsed = blob::parse(&bytes)
                .with_context(|| format!("{} is not a valid blob", path.display()))?;
            let embeddings = match embeddings {
                Some(e) => Some(embedding_dtype(e, rotate)?),
                None if rotate => bail!("--rotate needs --embeddings int8, int6 or int4"),
                None => None,
            };
            write_blob(
                &walsh_spec::pack::repack(
                    &parsed,
                    packing.into(),
                    embeddings,
                    floats.map(DType::from),
                )?,
                &output,
            )?;
        }
        Command::Init {
            config,
            output,
            seed,
            tokenizer,
            overrides,
        } => {
            let cfg = config_file::load_model_config(&config, &overrides)?;
            let tok_path = match tokenizer {
                Some(p) => p,
                None => default_tokenizer()?,
            };
            let tok = std::fs::read_to_string(&tok_path)
                .with_context(|| format!("cannot read {}", tok_path.display()))?;
            walsh_engine::Tokenizer::from_json(&tok, cfg.vocab_size)
                .with_context(|| format!("{} does not suit this config", tok_path.display()))?;
            let ckpt = init::random_checkpoint(&cfg, seed, tok);
            ckpt.save(&output)?;
            let (emb, brain) = cfg.param_counts();
            outln!(
                "wrote {} ({} parameters: {} brain, {} embedding; seed {seed})",
                output.display(),
                emb + brain,
                brain,
                emb
            );
        }
        Command::Inspect {
            blob: path,
            tensors,
        } => {
            let bytes = read_blob(&path)?;
            let parsed = blob::parse(&bytes)
                .with_context(|| format!("{} is not a valid blob", path.display()))?;
            out!("{}", inspect::report(&parsed, &bytes, tensors));
        }
        Command::Eval {
            blob: path,
            text,
            window,
            json,
        } => {
            let engine = load_engine(&path)?;
            let block_size = engine.config().block_size;
            let window = window.unwrap_or(block_size);
            if window > block_size {
                bail!("--window {window} exceeds the model's context of {block_size} positions");
            }
            let t0 = std::time::Instant::now();
            let bar = eval_bar(json);
            bar.set_message("reading and tokenizing the text");
            let scored = (|| {
                let tokens = walsh_engine::eval::read_text(&engine, &text)?;
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                bar.set_length(walsh_engine::eval::positions(&tokens, window) as u64);
                bar.set_message("tokens scored");
                let r = walsh_engine::eval::evaluate(&engine, &tokens, window, threads, &|k| {
                    bar.inc(k as u64)
                })?;
                Ok::<_, walsh_engine::eval::EvalError>((tokens, r))
            })();
            // Cleared on failure too, so that the error line stands alone.
            bar.finish_and_clear();
            let (tokens, r) = scored?;
            if json {
                outln!("{}", serde_json::to_string(&r)?);
            } else {
                outln!(
                    "loss {:.4} nats/token, {:.4} bits/byte over {} tokens ({} windows; {} documents, {} tokens, {} bytes) in {:.1} s",
                    r.loss,
                    r.bits_per_byte,
                    r.predicted,
                    r.windows,
                    tokens.documents,
                    tokens.tokens.len(),
                    tokens.bytes,
                    t0.elapsed().as_secs_f64()
                );
            }
        }
        Command::Run {
            blob: path,
            prompt,
            max_tokens,
            temperature,
            top_k,
            top_p,
            seed,
            repeat_penalty,
            repeat_last_n,
            logprobs,
            json,
        } => {
            let engine = load_engine(&path)?;
            let params = SamplingParams {
                temperature,
                top_k,
                top_p,
                seed,
                repeat_penalty,
                repeat_last_n,
            };
            // Everything that can be refused (the sampling settings, the prompt's length) is,
            // before a byte is printed.
            let started = run::start(&engine, &prompt, max_tokens, params)?;
            if max_tokens > engine.config().block_size {
                eprintln!(
                    "note: --max-tokens {max_tokens} exceeds the model's context of {}; generation stops when it is full",
                    engine.config().block_size
                );
            }
            let mut shown = 0usize;
            let mut ids = Vec::new();
            let stream = !json && logprobs == 0;
            let mut stdout = std::io::stdout().lock();
            if stream {
                write!(stdout, "{prompt}")?;
                stdout.flush()?;
            }
            let mut write_error = None;
            let result = started.finish(logprobs, |tok| {
                if !stream {
                    return ControlFlow::Continue(());
                }
                ids.push(tok);
                // Decode the whole tail each time: one token can end in the middle of a UTF-8
                // character, and only complete text should reach the terminal.
                if let Ok(text) = engine.tokenizer.decode(&ids)
                    && text.len() > shown
                    && !text.ends_with('\u{FFFD}')
                {
                    if let Err(e) =
                        write!(stdout, "{}", &text[shown..]).and_then(|()| stdout.flush())
                    {
                        // Nobody reads any more (or the disk is full): stop generating.
                        write_error = Some(e);
                        return ControlFlow::Break(());
                    }
                    shown = text.len();
                }
                ControlFlow::Continue(())
            })?;
            if let Some(e) = write_error {
                return Err(e.into());
            }
            if json {
                writeln!(stdout, "{}", serde_json::to_string_pretty(&result)?)?;
            } else {
                if stream {
                    if result.text.len() > shown {
                        write!(stdout, "{}", &result.text[shown..])?;
                    }
                    writeln!(stdout)?;
                } else {
                    writeln!(stdout, "{prompt}{}", result.text)?;
                    for (i, s) in result.steps.iter().enumerate() {
                        writeln!(stdout, "step {i:>3}: {:?} ({:.3})", s.text, s.logprob)?;
                        for t in &s.top {
                            writeln!(
                                stdout,
                                "          {:>7.3}  {:>6}  {:?}",
                                t.logprob, t.token, t.text
                            )?;
                        }
                    }
                }
                stdout.flush()?;
                eprintln!(
                    "[{} prompt tokens prefilled in {:.1} ms; {} tokens generated in {:.2} s = {:.1} tokens/s; finish: {}]",
                    result.prompt_tokens,
                    result.prefill_seconds * 1e3,
                    result.generated_tokens,
                    result.decode_seconds,
                    result.tokens_per_second,
                    result.finish_reason
                );
            }
            if result.generated_tokens == 0 && result.finish_reason != "eos" {
                bail!("no tokens were generated");
            }
        }
        #[cfg(feature = "ic")]
        Command::Upload {
            blob,
            target,
            chunk_size,
            force,
        } => ic_cli::upload(&blob, &target, chunk_size, force)?,
        #[cfg(feature = "ic")]
        Command::Download { target, output } => ic_cli::download(&target, &output)?,
    }
    Ok(())
}

/// `packer eval`'s progress on stderr: drawn only when stderr is a terminal, never with --json.
fn eval_bar(json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "[{elapsed_precise}] {wide_bar} {human_pos}/{human_len} {msg} ({per_sec}, ETA {eta})",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// `--help` describes every argument of every command.
    #[test]
    fn every_argument_is_documented() {
        let mut undocumented = Vec::new();
        let mut cli = Cli::command();
        cli.build();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    undocumented.push(format!("packer {} {}", sub.get_name(), arg.get_id()));
                }
            }
        }
        assert!(undocumented.is_empty(), "undocumented: {undocumented:?}");
    }

    #[test]
    fn a_cause_quoted_by_its_error_is_printed_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("invalid blob: {0}")]
        struct Quoting(#[source] std::io::Error);
        let e = anyhow::Error::new(Quoting(std::io::Error::other("truncated")))
            .context("cannot load x.walsh");
        assert_eq!(one_line(&e), "cannot load x.walsh: invalid blob: truncated");
    }
}
