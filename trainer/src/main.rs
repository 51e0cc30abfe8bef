//! `trainer`: the command line. Logic lives in the library; this file parses arguments and turns
//! errors into one clear line.

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use walsh_spec::Checkpoint;
use walsh_trainer::backend::cpu::CpuBackend;
use walsh_trainer::corpus::{self, CorpusOptions, CorpusSettings, WriteMode};
use walsh_trainer::eval::evaluate;
use walsh_trainer::model::Model;
use walsh_trainer::prepare::{
    self, DEFAULT_BATCH_DOCUMENTS, DEFAULT_VAL_FRACTION, PrepareOptions, TokenizerChoice, ValSplit,
};
use walsh_trainer::train::{TrainOptions, train};
use walsh_trainer::{TokenFile, bench, frontier, plot};

#[derive(Parser)]
#[command(name = "trainer", version, about = "Trains Walsh models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Tokenize text into train.bin / val.bin (+ .json sidecars and tokenizer.json).
    ///
    /// Inputs: .txt files (documents separated by <|endoftext|>), .jsonl files (a string field
    /// "text" per line), or directories of them (recursively, in sorted order).
    Prepare {
        /// Input files or directories.
        #[arg(required = true, value_name = "INPUT")]
        inputs: Vec<PathBuf>,
        /// Output directory.
        #[arg(short, long, value_name = "DIR")]
        output: PathBuf,
        /// A tokenizer.json (default: the project's GPT-2 tokenizer, models/tokenizer-gpt2.json).
        #[arg(long, value_name = "PATH", conflicts_with = "train_tokenizer")]
        tokenizer: Option<PathBuf>,
        /// Train a byte-level BPE of VOCAB ids on the training documents instead.
        #[arg(long, value_name = "VOCAB")]
        train_tokenizer: Option<u32>,
        /// Validation inputs (files or directories), instead of a fraction of the inputs. It takes
        /// every value up to the next option: put it after the inputs, or repeat it.
        #[arg(long, value_name = "FILES", num_args = 1.., conflicts_with = "val_fraction")]
        val: Vec<PathBuf>,
        /// Fraction of the input documents for validation: every round(1/F)-th, from the first.
        /// Inputs of fewer than 1/(2F) documents (or one, e.g. a book) are split by position
        /// instead: the last F of the tokens.
        #[arg(long, value_name = "F", default_value_t = DEFAULT_VAL_FRACTION)]
        val_fraction: f64,
        /// Documents tokenized together in parallel.
        #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH_DOCUMENTS)]
        batch_size: usize,
        /// Renumber the tokenizer's vocabulary by frequency in the training documents, most
        /// frequent first (special tokens keep their ids): what hash embeddings want.
        #[arg(long)]
        frequency_order: bool,
    },
    /// Train a model: AdamW on random windows of a prepared token file (see docs/TRAINING.md).
    Train {
        /// A config with [model] and [train] tables (configs/*.toml).
        #[arg(long, value_name = "TOML")]
        config: PathBuf,
        /// Override a config value: train.lr=1e-3, n_layer=4, data=path … (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Run directory for metrics.csv and checkpoint/ (default runs/<model name>).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Continue from a checkpoint of this config (e.g. runs/NAME/checkpoint); a checkpoint
        /// lost in an interrupted save is recovered from its leftovers.
        #[arg(long, value_name = "CKPT")]
        resume: Option<PathBuf>,
        /// Start afresh in a run directory that holds an earlier run (a checkpoint, best/ or
        /// metrics.csv), deleting that run's outputs first; without it such a directory is
        /// refused unless the run resumes.
        #[arg(long, conflicts_with = "resume")]
        overwrite: bool,
        /// Stop with a checkpoint after this step, as Ctrl-C would.
        #[arg(long, value_name = "STEP")]
        stop_after: Option<u64>,
        #[command(flatten)]
        device: DeviceArg,
    },
    /// Loss and bits per byte of a checkpoint on a token file.
    Eval {
        /// Checkpoint directory.
        checkpoint: PathBuf,
        /// A token file written by `trainer prepare` (val.bin).
        #[arg(long, value_name = "BIN")]
        data: PathBuf,
        /// Sequences per batch.
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        /// Positions per sequence (default: the model's block_size).
        #[arg(long)]
        seq_len: Option<usize>,
        /// Evaluate at most this many batches (default: the whole file).
        #[arg(long)]
        max_batches: Option<usize>,
        #[command(flatten)]
        device: DeviceArg,
    },
    /// Continue prompts with a checkpoint (the trainer's own forward, before packing), many
    /// sequences at once; with --output, write a corpus of stories in `trainer prepare`'s text
    /// format (sequence-level distillation: docs/TRAINING.md §8).
    Sample {
        /// Checkpoint directory.
        checkpoint: PathBuf,
        /// The text to continue (repeatable: sample i continues prompt i mod the number given).
        /// Without it: "Once upon a time" when printing; unconditional stories (the end-of-text
        /// token alone) with --output.
        #[arg(long)]
        prompt: Vec<String>,
        /// Tokens to generate at most (generation also stops at the end-of-text token or when
        /// the context is full).
        #[arg(long, default_value_t = 100)]
        max_tokens: usize,
        /// Sampling temperature; 0 = greedy (default: 0 when printing, 1 with --output).
        #[arg(long)]
        temperature: Option<f32>,
        /// Sample among the K most likely tokens only (0 = all).
        #[arg(long, value_name = "K", default_value_t = 0)]
        top_k: usize,
        /// Sample among the most likely tokens whose probabilities sum to P (1 = all).
        #[arg(long, value_name = "P", default_value_t = 1.0)]
        top_p: f32,
        /// The repetition penalty of SPEC §5.2 (1 = off).
        #[arg(long, value_name = "R", default_value_t = 1.0)]
        repeat_penalty: f32,
        /// How many of the last tokens the repetition penalty looks at.
        #[arg(long, value_name = "N", default_value_t = walsh_spec::sampler::DEFAULT_REPEAT_LAST_N)]
        repeat_last_n: usize,
        /// Seed of the sampler's random numbers: sample i uses seed + i.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Number of samples; with --output, the stories the file holds when done.
        #[arg(long, default_value_t = 1)]
        count: u64,
        /// Sequences generated at once (the same text whatever the size on the CPU).
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        /// Write the stories to this text file (a story, then a line <|endoftext|>), a batch at
        /// a time, with a sidecar FILE.json; summary on stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Continue the --output corpus from its sidecar (same settings; --count is the total).
        #[arg(long, requires = "output", conflicts_with = "overwrite")]
        resume: bool,
        /// Replace an existing --output corpus.
        #[arg(long, requires = "output")]
        overwrite: bool,
        /// With --output, write only the stories that ended with <|endoftext|> (not those cut
        /// at --max-tokens or at the context's end).
        #[arg(long, requires = "output")]
        complete_only: bool,
        #[command(flatten)]
        device: DeviceArg,
    },
    /// Draw RUN_DIR/metrics.csv as RUN_DIR/loss.png, or (--frontier) a table of models as
    /// bits per byte against blob bytes with the Pareto front marked.
    Plot {
        /// A run directory (`trainer train --out`).
        #[arg(required_unless_present = "frontier")]
        run_dir: Option<PathBuf>,
        /// A CSV table `name,params,blob_bytes,bpb` (docs/models/frontier.csv).
        #[arg(long, conflicts_with = "run_dir")]
        frontier: Option<PathBuf>,
        /// The PNG to write with --frontier (default: the table's path with .png).
        #[arg(short, long, requires = "frontier")]
        output: Option<PathBuf>,
    },
    /// Time training steps on random tokens: tokens/s and the time per op.
    ///
    /// On the CPU it first times one step of a single sequence and prints the estimated memory
    /// and time of the run (a warning when they are large: lower --set batch_size=… or --steps).
    Bench {
        /// A config with [model] and [train] tables (configs/*.toml); train.batch_size and
        /// seq_len size the steps.
        #[arg(long, value_name = "TOML", required_unless_present = "ceilings")]
        config: Option<PathBuf>,
        /// First measure the GPU's memory bandwidth and GEMM rates (a large copy and 8192³
        /// products, checked), the ceilings that docs/BENCHMARKS.md's floors divide by.
        #[arg(long)]
        ceilings: bool,
        /// Override a config value: batch_size=4, n_layer=4 … (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Timed steps (after one untimed warmup step).
        #[arg(long, default_value_t = 3)]
        steps: usize,
        #[command(flatten)]
        device: DeviceArg,
    },
}

#[derive(clap::Args)]
struct DeviceArg {
    /// cpu, or cuda[:N] (builds with the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// CUDA GEMM operands: bf16 (the fastest) or tf32 (tensor cores, f32 accumulation; weights,
    /// optimizer state and activations stay f32 in memory either way), or f32 (IEEE, slower).
    #[arg(long, default_value = "bf16")]
    matmul: String,
}

enum Device {
    Cpu,
    #[cfg(feature = "cuda")]
    Cuda(usize, walsh_trainer::backend::cuda::Matmul),
}

impl DeviceArg {
    /// The device, if this build can run it.
    fn parse(&self) -> Result<Device> {
        let d = self.device.as_str();
        let ordinal = match d {
            "cpu" => return Ok(Device::Cpu),
            "cuda" => 0,
            _ => match d.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => n,
                _ => anyhow::bail!("--device {d}: expected cpu, cuda or cuda:N"),
            },
        };
        #[cfg(feature = "cuda")]
        return Ok(Device::Cuda(
            ordinal,
            self.matmul
                .parse()
                .map_err(|e| anyhow::anyhow!("--matmul: {e}"))?,
        ));
        #[cfg(not(feature = "cuda"))]
        anyhow::bail!(
            "--device {d}: this trainer was built without CUDA (GPU {ordinal}); rebuild with \
             `cargo build --release -p walsh-trainer --features cuda`, or use --device cpu"
        )
    }
}

/// Runs `$body` with `$b` bound to the backend of `$dev`.
macro_rules! on_device {
    ($dev:expr, $b:ident => $body:expr) => {
        match $dev {
            Device::Cpu => {
                let $b = CpuBackend::<f32>::new();
                $body
            }
            #[cfg(feature = "cuda")]
            Device::Cuda(n, matmul) => {
                let $b = walsh_trainer::backend::cuda::CudaBackend::new(n, matmul)?;
                $body
            }
        }
    };
}

/// `trainer bench --ceilings`: a CUDA device's measured ceilings.
fn print_ceilings(device: &Device) -> Result<()> {
    match device {
        Device::Cpu => anyhow::bail!("--ceilings measures a CUDA GPU: add --device cuda[:N]"),
        #[cfg(feature = "cuda")]
        Device::Cuda(n, matmul) => {
            let b = walsh_trainer::backend::cuda::CudaBackend::new(*n, *matmul)?;
            print!("{}", b.ceilings()?);
            Ok(())
        }
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        // The chain, each cause once (some errors of other crates also quote their source).
        // Line breaks stay: a TOML error points at the line with a caret under it.
        let mut message = String::new();
        for cause in e.chain().map(|c| c.to_string()) {
            if !message.contains(&cause) {
                if !message.is_empty() {
                    message.push_str(": ");
                }
                message.push_str(&cause);
            }
        }
        eprintln!("error: {}", message.trim_end());
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Prepare {
            inputs,
            output,
            tokenizer,
            train_tokenizer,
            val,
            val_fraction,
            batch_size,
            frequency_order,
        } => {
            let mut opts = PrepareOptions::new(inputs, output);
            opts.frequency_order = frequency_order;
            opts.tokenizer = match (tokenizer, train_tokenizer) {
                (Some(path), _) => TokenizerChoice::File(path),
                (None, Some(vocab)) => TokenizerChoice::Train(vocab),
                (None, None) => TokenizerChoice::Gpt2,
            };
            opts.val = if val.is_empty() {
                ValSplit::Fraction(val_fraction)
            } else {
                ValSplit::Files(val)
            };
            opts.batch_documents = batch_size;
            opts.progress = std::io::stderr().is_terminal();
            let start = Instant::now();
            let summary = prepare::prepare(&opts)?;
            let secs = start.elapsed().as_secs_f64();
            if summary.split_by_position {
                println!(
                    "split by position: the inputs hold too few documents for --val-fraction \
                     {val_fraction} (fewer than 1/(2F), or one), so val is their last \
                     {val_fraction} of the tokens"
                );
            }
            for (name, s, path) in [
                ("train", &summary.train, &summary.train_path),
                ("val", &summary.val, &summary.val_path),
            ] {
                let per_token = if s.tokens > 0 {
                    s.bytes as f64 / s.tokens as f64
                } else {
                    0.0
                };
                println!(
                    "{name:5} {} documents, {} tokens, {} bytes ({per_token:.2} bytes/token) -> {}",
                    s.documents,
                    s.tokens,
                    s.bytes,
                    path.display()
                );
            }
            println!(
                "tokenizer {} (vocab {}, eos {}, {}, sha256 {})",
                summary.tokenizer_path.display(),
                summary.train.vocab_size,
                summary.train.eos_token_id,
                summary.train.dtype,
                summary.train.tokenizer_sha256
            );
            println!(
                "read {} bytes in {secs:.1} s ({:.1} MB/s)",
                summary.input_bytes,
                summary.input_bytes as f64 / secs.max(1e-9) / 1e6
            );
            Ok(())
        }
        Command::Train {
            config,
            sets,
            out,
            resume,
            overwrite,
            stop_after,
            device,
        } => {
            let device = device.parse()?;
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            ctrlc::set_handler(move || {
                if flag.swap(true, Ordering::SeqCst) {
                    // A second Ctrl-C: the user does not want to wait for the checkpoint.
                    std::process::exit(130);
                }
                eprintln!("\nCtrl-C: stopping after this step with a checkpoint (again to abort)");
            })?;
            let out = out.or_else(|| resume.as_deref().and_then(walsh_trainer::train::run_dir_of));
            let opts = TrainOptions {
                config,
                sets,
                out,
                resume,
                overwrite,
                stop_after,
                progress: std::io::stderr().is_terminal(),
                verbose: true,
            };
            let report = on_device!(device, b => train(b, &opts, &stop))?;
            println!(
                "{} steps, last train loss {:.4}, {:.0} tokens/s",
                report.steps, report.train_loss, report.tokens_per_second
            );
            Ok(())
        }
        Command::Eval {
            checkpoint,
            data,
            batch_size,
            seq_len,
            max_batches,
            device,
        } => {
            let device = device.parse()?;
            let ckpt = Checkpoint::load(&checkpoint)?;
            let seq = seq_len.unwrap_or(ckpt.config.block_size);
            let data = TokenFile::open(&data)?;
            let start = Instant::now();
            let r = on_device!(device, b => {
                let mut model = Model::new(b, ckpt.config, &ckpt.tensors)?;
                evaluate(&mut model, &data, batch_size, seq, max_batches)?
            });
            println!(
                "loss {:.4} nats/token, {} over {} tokens ({:.1} s)",
                r.loss,
                r.bpb
                    .map(|b| format!("{b:.4} bits/byte"))
                    .unwrap_or_else(|| "bits/byte unknown (the sidecar counts no bytes)".into()),
                r.tokens,
                start.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Sample {
            checkpoint,
            prompt,
            max_tokens,
            temperature,
            top_k,
            top_p,
            repeat_penalty,
            repeat_last_n,
            seed,
            count,
            batch_size,
            output,
            resume,
            overwrite,
            complete_only,
            device,
        } => {
            let device = device.parse()?;
            let ckpt = Checkpoint::load(&checkpoint)?;
            let tokenizer = tokenizers::Tokenizer::from_bytes(ckpt.tokenizer_json.as_bytes())
                .map_err(|e| anyhow::anyhow!("{}: tokenizer.json: {e}", checkpoint.display()))?;
            let printing = output.is_none();
            let prompts = if prompt.is_empty() && printing {
                vec!["Once upon a time".to_string()]
            } else {
                prompt
            };
            let settings = CorpusSettings {
                checkpoint_sha256: corpus::checkpoint_digest(&ckpt),
                prompts,
                seed,
                temperature: temperature.unwrap_or(if printing { 0.0 } else { 1.0 }),
                top_k,
                top_p,
                repeat_penalty,
                repeat_last_n,
                max_tokens,
                complete_only,
            };
            let opts = CorpusOptions {
                output: output.unwrap_or_default(),
                count,
                batch_size,
                mode: match (resume, overwrite) {
                    (true, _) => WriteMode::Resume,
                    (_, true) => WriteMode::Overwrite,
                    _ => WriteMode::New,
                },
                progress: std::io::stderr().is_terminal(),
            };
            on_device!(device, b => {
                let mut model = Model::new(b, ckpt.config, &ckpt.tensors)?;
                if printing {
                    for text in corpus::sample_texts(&mut model, &tokenizer, &settings, &opts)? {
                        println!("{text}");
                    }
                } else {
                    let s = corpus::write_corpus(&mut model, &tokenizer, &settings, &opts)?;
                    println!("{}", s.line(&opts.output));
                }
            });
            Ok(())
        }
        Command::Plot {
            run_dir,
            frontier: Some(table),
            output,
        } => {
            let _ = run_dir;
            let png = output.unwrap_or_else(|| table.with_extension("png"));
            let front = frontier::plot_frontier(&table, &png)?;
            println!("{} (Pareto front: {})", png.display(), front.join(", "));
            Ok(())
        }
        Command::Plot {
            run_dir: Some(run_dir),
            ..
        } => {
            let png = plot::plot_run(&run_dir)?;
            println!("{}", png.display());
            Ok(())
        }
        Command::Plot { .. } => unreachable!("clap requires a run directory or --frontier"),
        Command::Bench {
            config,
            ceilings,
            sets,
            steps,
            device,
        } => {
            let device = device.parse()?;
            if ceilings {
                print_ceilings(&device)?;
            }
            if let Some(config) = config {
                if matches!(device, Device::Cpu) {
                    eprintln!("{}", bench::cpu_estimate(&config, &sets, steps)?);
                }
                let report = on_device!(device, b => bench::bench(b, &config, &sets, steps))?;
                print!("{report}");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every subcommand and every argument of `--help` says what it is.
    #[test]
    fn every_help_entry_has_a_description() {
        let cli = Cli::command();
        let mut missing = Vec::new();
        for sub in cli.get_subcommands() {
            if sub.get_about().is_none() {
                missing.push(sub.get_name().to_string());
            }
            for arg in sub.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() {
                    missing.push(format!("{} {}", sub.get_name(), arg.get_id()));
                }
            }
        }
        assert!(missing.is_empty(), "no description: {missing:?}");
    }
}
