//! `packer`: the operator's command line. Logic lives in the library; this file parses arguments
//! and turns errors into one clear line.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use walsh_engine::{Engine, SamplingParams};
use walsh_packer::{inspect, run};
use walsh_spec::blob::{self, DType};
use walsh_spec::{Checkpoint, PackOptions, Packing, config_file, init, pack};

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
}

#[derive(Clone, Copy, ValueEnum)]
enum EmbeddingArg {
    F32,
    F16,
    Int8,
}

#[derive(Subcommand)]
enum Command {
    /// Pack a checkpoint directory (config.json, model.safetensors, tokenizer.json) into a blob.
    Pack {
        checkpoint: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Ternary layout: 4 weights per byte, or 16 per u32 in SIMD tiles.
        #[arg(long, value_enum, default_value = "4x")]
        packing: PackingArg,
        /// How to store the embedding tables.
        #[arg(long, value_enum, default_value = "f16")]
        embeddings: EmbeddingArg,
    },
    /// Write a randomly initialised checkpoint of a config (SPEC §3.1).
    Init {
        #[arg(long)]
        config: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
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
        blob: PathBuf,
        /// List every tensor.
        #[arg(long)]
        tensors: bool,
    },
    /// Generate text with the canister's engine, natively.
    Run {
        blob: PathBuf,
        prompt: String,
        #[arg(long, default_value_t = 100)]
        max_tokens: usize,
        /// 0 = greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// 0 = off.
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
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
        blob: PathBuf,
        #[arg(required = true, value_name = "TEXT")]
        text: Vec<PathBuf>,
        /// Positions per window (default and most: the model's context).
        #[arg(long)]
        window: Option<usize>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Upload a blob to a running walsh canister (controllers only); resumes an interrupted
    /// upload, and the model serves when it returns.
    #[cfg(feature = "ic")]
    Upload {
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
        #[arg(short, long)]
        output: PathBuf,
    },
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

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    match Cli::parse().command {
        Command::Pack {
            checkpoint,
            output,
            packing,
            embeddings,
        } => {
            let ckpt = Checkpoint::load(&checkpoint)?;
            let opts = PackOptions {
                packing: match packing {
                    PackingArg::X4 => Packing::X4,
                    PackingArg::X16 => Packing::X16,
                },
                embeddings: match embeddings {
                    EmbeddingArg::F32 => DType::F32,
                    EmbeddingArg::F16 => DType::F16,
                    EmbeddingArg::Int8 => DType::Int8,
                },
            };
            let bytes = pack(&ckpt, opts)?;
            // Check what we wrote with the engine that will run it, before anyone uploads it.
            Engine::load(&bytes).context("the packed blob does not load (a packer bug)")?;
            let tmp = output.with_extension("walsh.tmp");
            std::fs::write(&tmp, &bytes)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, &output)
                .with_context(|| format!("cannot write {}", output.display()))?;
            let parsed = blob::parse(&bytes)?;
            println!("wrote {} ({} bytes)", output.display(), bytes.len());
            print!("{}", inspect::report(&parsed, false));
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
            println!(
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
            print!("{}", inspect::report(&parsed, tensors));
        }
        Command::Eval {
            blob: path,
            text,
            window,
            json,
        } => {
            let engine = load_engine(&path)?;
            let t0 = std::time::Instant::now();
            let tokens = walsh_engine::eval::read_text(&engine, &text)?;
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let window = window.unwrap_or(engine.config().block_size);
            let r = walsh_engine::eval::evaluate(&engine, &tokens, window, threads)?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
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
            logprobs,
            json,
        } => {
            let engine = load_engine(&path)?;
            let params = SamplingParams {
                temperature,
                top_k,
                top_p,
                seed,
            };
            if max_tokens > engine.config().block_size {
                eprintln!(
                    "note: --max-tokens {max_tokens} exceeds the model's context of {}; generation stops when it is full",
                    engine.config().block_size
                );
            }
            let mut shown = 0usize;
            let mut ids = Vec::new();
            let stream = !json && logprobs == 0;
            if stream {
                print!("{prompt}");
            }
            let result = run::run(&engine, &prompt, max_tokens, params, logprobs, |tok| {
                if !stream {
                    return;
                }
                ids.push(tok);
                // Decode the whole tail each time: one token can end in the middle of a UTF-8
                // character, and only complete text should reach the terminal.
                if let Ok(text) = engine.tokenizer.decode(&ids)
                    && text.len() > shown
                    && !text.ends_with('\u{FFFD}')
                {
                    print!("{}", &text[shown..]);
                    let _ = std::io::stdout().flush();
                    shown = text.len();
                }
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                if stream {
                    if result.text.len() > shown {
                        print!("{}", &result.text[shown..]);
                    }
                    println!();
                } else {
                    println!("{prompt}{}", result.text);
                    for (i, s) in result.steps.iter().enumerate() {
                        println!("step {i:>3}: {:?} ({:.3})", s.text, s.logprob);
                        for t in &s.top {
                            println!("          {:>7.3}  {:>6}  {:?}", t.logprob, t.token, t.text);
                        }
                    }
                }
                let _ = std::io::stdout().flush();
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
            if result.generated_tokens == 0 && max_tokens > 0 && result.finish_reason != "eos" {
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
