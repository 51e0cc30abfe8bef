//! `packer download`: read the blob a canister serves back through `download_chunk` queries and
//! check it against the checksum `model_info` reports, so an operator can verify or back up what
//! is deployed.

use super::client::Client;
use super::error::Error;
use super::transport::Transport;
use futures_util::{StreamExt, stream};
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};
use walsh_interface::ModelInfo;
use walsh_spec::blob::{self, hex};
use walsh_spec::upload::MAX_BLOB_SIZE;
use walsh_spec::upload::MAX_DOWNLOAD_CHUNK;

/// Reads the active blob, `concurrency` queries at a time, advancing `progress` (whose length
/// it sets). Returns the bytes only once they match `model_info`.
pub async fn download<T: Transport>(
    client: &Client<'_, T>,
    concurrency: usize,
    progress: &ProgressBar,
) -> Result<(ModelInfo, Vec<u8>), Error> {
    let info = client
        .model_info()
        .await?
        .ok_or(Error::NoModel(client.canister()))?;
    if info.blob_size > MAX_BLOB_SIZE {
        return Err(Error::Protocol {
            method: "model_info".into(),
            canister: client.canister(),
            detail: format!("a blob of {} bytes", info.blob_size),
        });
    }
    let size = info.blob_size;
    progress.set_length(size);
    let mut bytes = vec![0u8; size as usize];
    let step = u64::from(MAX_DOWNLOAD_CHUNK);
    let mut chunks = stream::iter((0..size).step_by(step as usize))
        .map(|offset| {
            let length = (size - offset).min(step) as u32;
            async move {
                client
                    .download_chunk(offset, length)
                    .await
                    .map(|data| (offset, length, data))
            }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some(r) = chunks.next().await {
        let (offset, length, data) = r?;
        if data.len() != length as usize {
            return Err(Error::Protocol {
                method: "download_chunk".into(),
                canister: client.canister(),
                detail: format!("{} bytes for a request of {length}", data.len()),
            });
        }
        bytes[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
        progress.inc(u64::from(length));
    }
    if let Err(detail) = verify(&bytes, &info) {
        // A model committed between two chunks mixes two blobs: say so rather than "corrupt".
        if let Some(now) = client.model_info().await?
            && now.sha256 != info.sha256
        {
            return Err(Error::ModelChanged {
                before: info.sha256,
                after: now.sha256,
            });
        }
        return Err(Error::DownloadMismatch { detail });
    }
    Ok((info, bytes))
}

/// Whether `bytes` are the blob `info` describes: its size, its checksum (SPEC §4: the SHA-256
/// of all bytes but the last 32, which are that digest) recomputed, and the engine's reader.
pub fn verify(bytes: &[u8], info: &ModelInfo) -> Result<(), String> {
    if bytes.len() as u64 != info.blob_size || bytes.len() < 32 {
        return Err(format!(
            "{} bytes, model_info says {}",
            bytes.len(),
            info.blob_size
        ));
    }
    let (content, stored) = bytes.split_at(bytes.len() - 32);
    let digest = Sha256::digest(content);
    if hex(&digest) != info.sha256 || digest.as_slice() != stored {
        return Err(format!(
            "SHA-256 of the content is {}, model_info says {}",
            hex(&digest),
            info.sha256
        ));
    }
    blob::parse(bytes)
        .map(|_| ())
        .map_err(|e| format!("the engine's reader refuses it: {e}"))
}
