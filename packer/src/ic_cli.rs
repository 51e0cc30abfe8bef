//! `packer upload` and `packer download` on the command line: which canister and identity, the
//! async runtime, the progress bar and what is printed. The logic is `walsh_packer::ic`.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use walsh_packer::ic::agent::AgentTransport;
use walsh_packer::ic::dfx::{self, Dirs, IdentityChoice};
use walsh_packer::ic::upload::{self, LocalBlob, Plan, UploadOptions};
use walsh_packer::ic::{Client, RetryPolicy, Transport, download, report};
use walsh_spec::blob::hex;
use walsh_spec::upload::{MAX_CHUNK_SIZE, MIN_CHUNK_SIZE};

/// Which canister, over which network, as whom.
#[derive(clap::Args)]
pub struct Target {
    /// The canister: its name in the dfx project (canister_ids.json) or its id.
    #[arg(long)]
    canister: String,
    /// `local` (dfx's local replica), `ic` (mainnet) or a replica's URL.
    #[arg(long, default_value = "local")]
    network: String,
    /// The dfx identity to sign with (default: dfx's default identity).
    #[arg(long, conflicts_with = "pem")]
    identity: Option<String>,
    /// A PEM private key to sign with instead of a dfx identity.
    #[arg(long, value_name = "FILE")]
    pem: Option<PathBuf>,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
    concurrency: u16,
    /// Retries of a failure that may pass (backoff from 0.5 s, doubling up to 8 s).
    #[arg(long, default_value_t = 5)]
    retries: u32,
}

pub fn chunk_size_parser() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(i64::from(MIN_CHUNK_SIZE)..=i64::from(MAX_CHUNK_SIZE))
}

impl Target {
    fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            retries: self.retries,
            ..RetryPolicy::default()
        }
    }

    /// Resolves names like dfx and connects (a local replica's root key is fetched here).
    async fn connect(&self) -> Result<AgentTransport> {
        let dirs = Dirs::from_env();
        let cwd = std::env::current_dir().context("no current directory")?;
        let project = dfx::project_root(&cwd);
        let network = dfx::network(&self.network, project.as_deref(), &dirs)?;
        let canister = dfx::canister_id(&self.canister, &network, project.as_deref(), &cwd)?;
        let choice = match (&self.identity, &self.pem) {
            (_, Some(pem)) => IdentityChoice::Pem(pem.clone()),
            (Some(name), None) => IdentityChoice::Dfx(name.clone()),
            (None, None) => IdentityChoice::DfxDefault,
        };
        let id = dfx::identity(&choice, &dirs)?;
        let caller = id.identity.sender().map_err(anyhow::Error::msg)?;
        let on = if network.name == network.url {
            network.url.clone()
        } else {
            format!("{} ({})", network.name, network.url)
        };
        outln!("canister {canister} on {on}, as {} ({caller})", id.name);
        Ok(AgentTransport::connect(network, canister, id.identity).await?)
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    // One thread: the calls in flight are driven by one task, and HTTP is I/O-bound.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "[{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

fn summary<T: Transport>(client: &Client<'_, T>, bytes: u64, started: Instant) -> String {
    let s = client.stats();
    let secs = started.elapsed().as_secs_f64();
    format!(
        "{} update calls, {} queries, {} retries; {bytes} bytes in {secs:.1} s ({:.2} MB/s)",
        s.updates,
        s.queries,
        s.retries,
        bytes as f64 / secs.max(1e-9) / 1e6
    )
}

pub fn upload(path: &Path, target: &Target, chunk_size: u32, force: bool) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let blob = LocalBlob::new(bytes).with_context(|| path.display().to_string())?;
    outln!(
        "{}: {} bytes, sha256 {}, model {} ({} parameters): valid",
        path.display(),
        blob.bytes.len(),
        hex(&blob.sha256),
        blob.config_name,
        blob.params
    );
    let opts = UploadOptions {
        chunk_size,
        concurrency: usize::from(target.concurrency),
        force,
    };
    runtime()?.block_on(async {
        let transport = target.connect().await?;
        let client = Client::new(&transport, target.retry());
        let started = Instant::now();
        let mut sent = 0;
        match upload::plan(&client, &blob, &opts).await? {
            Plan::AlreadyActive(_) => {
                outln!(
                    "the canister already serves this blob: nothing to send (--force uploads it again)"
                )
            }
            Plan::Send(plan) => {
                if let Some(r) = &plan.replaced {
                    outln!(
                        "replaced an unfinished upload of another blob (sha256 {}, {} of {} chunks had arrived)",
                        r.sha256, r.received, r.chunks
                    );
                }
                if plan.resumed {
                    outln!(
                        "resuming: {} of {} chunks are already on the canister",
                        plan.chunks - plan.missing.len() as u32,
                        plan.chunks
                    );
                }
                outln!(
                    "sending {} chunks of up to {} bytes, {} at a time",
                    plan.missing.len(),
                    plan.chunk_size,
                    opts.concurrency
                );
                let bar = progress_bar();
                let result = upload::send(&client, &blob, &plan, opts.concurrency, &bar).await;
                bar.finish();
                if let Err(e) = result {
                    let resume = if e.is_network() {
                        "; the chunks that arrived stay on the canister: run the same command again to send only the missing ones"
                    } else {
                        ""
                    };
                    anyhow::bail!("{e}{resume}");
                }
                sent = plan.missing_bytes();
                outln!("committing: the canister checks the SHA-256 and loads the model");
                upload::commit(&client, &blob).await?;
            }
        }
        let info = client
            .model_info()
            .await?
            .context("the canister reports no model after the commit")?;
        outln!(
            "live on canister {}:\n{}",
            client.canister(),
            report::model_info(&info)
        );
        outln!("{}", summary(&client, sent, started));
        Ok(())
    })
}

pub fn download(target: &Target, output: &Path) -> Result<()> {
    runtime()?.block_on(async {
        let transport = target.connect().await?;
        let client = Client::new(&transport, target.retry());
        let started = Instant::now();
        let bar = progress_bar();
        let result = download::download(&client, usize::from(target.concurrency), &bar).await;
        bar.finish();
        let (info, bytes) = result?;
        let tmp = output.with_extension("walsh.tmp");
        std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, output)
            .with_context(|| format!("cannot write {}", output.display()))?;
        outln!(
            "wrote {} ({} bytes, sha256 {}): the blob canister {} serves, checksum verified\n{}",
            output.display(),
            bytes.len(),
            hex(&walsh_packer::inspect::sha256(&bytes)),
            client.canister(),
            report::model_info(&info)
        );
        outln!("{}", summary(&client, bytes.len() as u64, started));
        Ok(())
    })
}
