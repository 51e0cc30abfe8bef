//! `packer upload`: validate the blob, find out what the canister already has, send the missing
//! chunks (several in flight), commit.
//!
//! Resuming needs no local state: the canister keeps the upload (its declared SHA-256, chunk size
//! and which chunks arrived) in stable memory, and `upload_status` tells a second run what is
//! missing.

use super::client::Client;
use super::error::Error;
use super::transport::Transport;
use futures_util::{StreamExt, stream};
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};
use std::ops::Range;
use walsh_engine::Engine;
use walsh_interface::UploadError;
use walsh_interface::{ModelInfo, UploadBegin, UploadStatus};
use walsh_spec::blob::hex;
use walsh_spec::upload::{MAX_BLOB_SIZE, MAX_CHUNK_SIZE, chunk_range};

/// A blob checked with the engine the canister runs.
pub struct LocalBlob {
    pub bytes: Vec<u8>,
    /// SHA-256 of the whole file: what `upload_begin` declares and `upload_commit` checks.
    pub sha256: [u8; 32],
    /// The blob's own checksum (SPEC §4: SHA-256 of all bytes but the last 32), hex: what
    /// `model_info` reports as `sha256`.
    pub checksum: String,
    pub config_name: String,
    pub params: u64,
}

impl LocalBlob {
    /// Loads the blob like `upload_commit` will, so that a blob the canister would refuse is
    /// refused here, before a byte is sent.
    pub fn new(bytes: Vec<u8>) -> Result<Self, Error> {
        if bytes.len() as u64 > MAX_BLOB_SIZE {
            return Err(Error::InvalidBlob(format!(
                "{} bytes is more than the canister accepts ({MAX_BLOB_SIZE})",
                bytes.len()
            )));
        }
        let engine = Engine::load(&bytes).map_err(|e| Error::InvalidBlob(e.to_string()))?;
        let (emb, brain) = engine.config().param_counts();
        Ok(LocalBlob {
            sha256: Sha256::digest(&bytes).into(),
            checksum: hex(&engine.sha256),
            config_name: engine.config().name.clone(),
            params: emb + brain,
            bytes,
        })
    }

    /// Whether `info` describes this very blob.
    pub fn is(&self, info: &ModelInfo) -> bool {
        info.sha256 == self.checksum && info.blob_size == self.bytes.len() as u64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadOptions {
    /// Bytes per `upload_chunk` (at most [`MAX_CHUNK_SIZE`]: an ingress message is 2 MiB).
    pub chunk_size: u32,
    /// Chunks in flight at once.
    pub concurrency: usize,
    /// Upload even if the canister already serves this blob.
    pub force: bool,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            chunk_size: MAX_CHUNK_SIZE,
            concurrency: 4,
            force: false,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Plan {
    /// The canister already serves this blob: nothing to send.
    AlreadyActive(Box<ModelInfo>),
    Send(SendPlan),
}

#[derive(Debug, Clone)]
pub struct SendPlan {
    pub total_size: u64,
    pub chunk_size: u32,
    pub chunks: u32,
    pub missing: Vec<u32>,
    /// An unfinished upload of this blob was found and is continued.
    pub resumed: bool,
    /// An unfinished upload of another blob that this one replaced.
    pub replaced: Option<UploadStatus>,
}

impl SendPlan {
    fn range(&self, index: u32) -> Range<usize> {
        // Indices come from the canister's reply: one past the end is an empty range here, and
        // the canister refuses it when it is sent.
        let r = chunk_range(self.total_size, self.chunk_size, u64::from(index)).unwrap_or(0..0);
        r.start as usize..r.end as usize
    }

    /// Bytes still to send.
    pub fn missing_bytes(&self) -> u64 {
        self.missing
            .iter()
            .map(|&i| self.range(i).len() as u64)
            .sum()
    }
}

/// Asks the canister what it has: this blob already serving, an unfinished upload of it to
/// resume, or nothing (then `upload_begin` starts one, replacing any other unfinished upload).
pub async fn plan<T: Transport>(
    client: &Client<'_, T>,
    blob: &LocalBlob,
    opts: &UploadOptions,
) -> Result<Plan, Error> {
    let status = client.upload_status().await?;
    if !opts.force
        && let Some(info) = client.model_info().await?
        && blob.is(&info)
    {
        return Ok(Plan::AlreadyActive(Box::new(info)));
    }
    let total_size = blob.bytes.len() as u64;
    let replaced = match status {
        Some(s) if s.sha256 == hex(&blob.sha256) && s.total_size == total_size => {
            return Ok(Plan::Send(SendPlan {
                total_size,
                chunk_size: s.chunk_size,
                chunks: s.chunks,
                missing: s.missing_chunks().collect(),
                resumed: true,
                replaced: None,
            }));
        }
        other => other,
    };
    let s = client
        .upload_begin(UploadBegin {
            total_size,
            sha256: serde_bytes::ByteBuf::from(blob.sha256.to_vec()),
            chunk_size: opts.chunk_size,
        })
        .await?;
    Ok(Plan::Send(SendPlan {
        total_size,
        chunk_size: s.chunk_size,
        chunks: s.chunks,
        missing: s.missing_chunks().collect(),
        resumed: false,
        replaced,
    }))
}

/// Sends the missing chunks, `concurrency` at a time, advancing `progress` (whose length it
/// sets) by each chunk's bytes. The first failure that outlives its retries ends the run; what
/// arrived stays on the canister for the next run.
pub async fn send<T: Transport>(
    client: &Client<'_, T>,
    blob: &LocalBlob,
    plan: &SendPlan,
    concurrency: usize,
    progress: &ProgressBar,
) -> Result<(), Error> {
    progress.set_length(plan.total_size);
    progress.set_position(plan.total_size - plan.missing_bytes());
    progress.reset_eta();
    let mut sent = stream::iter(plan.missing.iter().copied())
        .map(|i| {
            let range = plan.range(i);
            async move {
                client
                    .upload_chunk(i, &blob.bytes[range.clone()])
                    .await
                    .map(|_| range.len())
            }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some(r) = sent.next().await {
        progress.inc(r? as u64);
    }
    Ok(())
}

/// `upload_commit`: the canister checks the SHA-256 and loads the blob, and it serves from then
/// on; on any refusal the previous model keeps serving.
pub async fn commit<T: Transport>(
    client: &Client<'_, T>,
    blob: &LocalBlob,
) -> Result<ModelInfo, Error> {
    loop {
        match client.upload_commit().await? {
            Ok(info) => return Ok(info),
            // Chunks that arrived out of order are hashed a bounded part per call.
            Err(UploadError::Hashing { .. }) => continue,
            Err(UploadError::ShaMismatch { declared, received }) => {
                // Which chunk was damaged is unknowable, and committing the same bytes again
                // would fail again: drop the upload so that the next run sends everything.
                client.upload_abort().await?;
                return Err(Error::ShaMismatch {
                    detail: format!("declared {declared}, received bytes hash to {received}"),
                });
            }
            Err(UploadError::NoUpload) => {
                // A commit retried after its reply was lost finds no upload: the first attempt
                // went through if the canister now serves this blob.
                if let Some(info) = client.model_info().await?
                    && blob.is(&info)
                {
                    return Ok(info);
                }
                return Err(client.refused("upload_commit", UploadError::NoUpload));
            }
            Err(e) => return Err(client.refused("upload_commit", e)),
        }
    }
}

/// What one upload did.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub info: ModelInfo,
    /// `None` when the canister already served the blob.
    pub plan: Option<SendPlan>,
}

/// Plan, send and commit in one go.
pub async fn upload<T: Transport>(
    client: &Client<'_, T>,
    blob: &LocalBlob,
    opts: &UploadOptions,
    progress: &ProgressBar,
) -> Result<Uploaded, Error> {
    match plan(client, blob, opts).await? {
        Plan::AlreadyActive(info) => Ok(Uploaded {
            info: *info,
            plan: None,
        }),
        Plan::Send(p) => {
            send(client, blob, &p, opts.concurrency, progress).await?;
            let info = commit(client, blob).await?;
            Ok(Uploaded {
                info,
                plan: Some(p),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ranges_cover_the_blob_once() {
        let p = SendPlan {
            total_size: 5000,
            chunk_size: 1024,
            chunks: 5,
            missing: vec![4, 0, 2],
            resumed: true,
            replaced: None,
        };
        assert_eq!(p.range(0), 0..1024);
        assert_eq!(p.range(4), 4096..5000);
        assert_eq!(p.missing_bytes(), 1024 + 1024 + 904);
        let covered: usize = (0..p.chunks).map(|i| p.range(i).len()).sum();
        assert_eq!(covered, 5000);
    }

    #[test]
    fn invalid_blobs_are_refused_before_anything_is_sent() {
        match LocalBlob::new(b"not a blob".to_vec()) {
            Err(Error::InvalidBlob(e)) => assert!(!e.is_empty()),
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("garbage accepted"),
        }
    }
}
