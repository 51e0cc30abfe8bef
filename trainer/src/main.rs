//! `trainer`: the command line. Logic lives in the library; this file parses arguments and turns
//! errors into one clear line.

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;
use walsh_trainer::prepare::{
    self, DEFAULT_BATCH_DOCUMENTS, DEFAULT_VAL_FRACTION, PrepareOptions, TokenizerChoice, ValSplit,
};

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
        #[arg(long, value_name = "F", default_value_t = DEFAULT_VAL_FRACTION)]
        val_fraction: f64,
        /// Documents tokenized together in parallel.
        #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH_DOCUMENTS)]
        batch_size: usize,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        let message = format!("{e:#}").replace('\n', " ");
        eprintln!("error: {message}");
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
        } => {
            let mut opts = PrepareOptions::new(inputs, output);
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
    }
}
