//! The walsh canister's methods as typed calls over a [`Transport`], each retried on transient
//! failures and counted (the counts are what an upload costs).

use super::error::Error;
use super::retry::RetryPolicy;
use super::transport::{CallError, Transport};
use candid::utils::ArgumentEncoder;
use candid::{CandidType, Deserialize, Principal};
use std::cell::Cell;
use walsh_interface::{
    AbortResult, CommitResult, DownloadError, DownloadResult, ModelInfo, ModelInfoResult,
    NOT_CONTROLLER_RULE, UploadBegin, UploadChunk, UploadError, UploadResult, UploadStatus,
    UploadStatusResult,
};

/// What the canister's `inspect_message` says when it refuses an ingress message from a caller
/// that is not a controller (the replica rejects the call with it: text, not a Candid value).
const NOT_CONTROLLER: &str = NOT_CONTROLLER_RULE;

/// Calls made so far. Every attempt counts: a retried update that reached the canister is
/// paid for twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallStats {
    pub updates: u32,
    pub queries: u32,
    pub retries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Update,
    Query,
}

pub struct Client<'t, T> {
    transport: &'t T,
    retry: RetryPolicy,
    /// Whether the replica has answered anything yet (see [`Client::call`]).
    reached: Cell<bool>,
    stats: Cell<CallStats>,
}

impl<'t, T: Transport> Client<'t, T> {
    pub fn new(transport: &'t T, retry: RetryPolicy) -> Self {
        Client {
            transport,
            retry,
            reached: Cell::new(false),
            stats: Cell::new(CallStats::default()),
        }
    }

    pub fn caller(&self) -> Principal {
        self.transport.caller()
    }

    pub fn canister(&self) -> Principal {
        self.transport.canister()
    }

    pub fn stats(&self) -> CallStats {
        self.stats.get()
    }

    fn count(&self, f: impl FnOnce(&mut CallStats)) {
        let mut s = self.stats.get();
        f(&mut s);
        self.stats.set(s);
    }

    async fn call<R>(&self, kind: Kind, method: &str, arg: Vec<u8>) -> Result<R, Error>
    where
        R: CandidType + for<'de> Deserialize<'de>,
    {
        // A replica that never answered is reported at once (a wrong URL or a stopped replica
        // should not cost the operator the whole backoff); once it has answered, losing the
        // connection is a hiccup worth waiting out.
        let retryable = |e: &CallError| {
            e.is_transient() && (self.reached.get() || !matches!(e, CallError::Unreachable { .. }))
        };
        let bytes = self
            .retry
            .run(
                retryable,
                |_| self.count(|s| s.retries += 1),
                || async {
                    let result = match kind {
                        Kind::Update => {
                            self.count(|s| s.updates += 1);
                            self.transport.update(method, arg.clone()).await
                        }
                        Kind::Query => {
                            self.count(|s| s.queries += 1);
                            self.transport.query(method, arg.clone()).await
                        }
                    };
                    if !matches!(result, Err(CallError::Unreachable { .. })) {
                        self.reached.set(true);
                    }
                    result
                },
            )
            .await
            .map_err(|e| match e {
                CallError::Rejected(m) if m.contains(NOT_CONTROLLER) => self.not_controller(),
                e => Error::Call {
                    method: method.to_string(),
                    source: e,
                },
            })?;
        candid::decode_one(&bytes).map_err(|e| self.protocol(method, e))
    }

    fn encode(&self, method: &str, args: impl ArgumentEncoder) -> Result<Vec<u8>, Error> {
        candid::encode_args(args).map_err(|e| self.protocol(method, e))
    }

    fn protocol(&self, method: &str, e: impl std::fmt::Display) -> Error {
        Error::Protocol {
            method: method.to_string(),
            canister: self.canister(),
            detail: e.to_string(),
        }
    }

    fn not_controller(&self) -> Error {
        Error::NotController {
            caller: self.caller(),
            canister: self.canister(),
        }
    }

    /// The canister's refusal of an upload step, as an [`Error`].
    pub fn refused(&self, method: &str, e: UploadError) -> Error {
        match e {
            UploadError::NotController { .. } => self.not_controller(),
            e => Error::Refused {
                method: method.to_string(),
                message: e.to_string(),
            },
        }
    }

    fn download_refused(&self, e: DownloadError) -> Error {
        match e {
            DownloadError::NotController { .. } => self.not_controller(),
            DownloadError::NoModel => Error::NoModel(self.canister()),
            e => Error::Refused {
                method: "download_chunk".into(),
                message: e.to_string(),
            },
        }
    }

    /// The model serving now; `None` when the canister has none.
    pub async fn model_info(&self) -> Result<Option<ModelInfo>, Error> {
        let arg = self.encode("model_info", ())?;
        // `Err` means "no model is loaded", the only error model_info has.
        Ok(match self.call(Kind::Query, "model_info", arg).await? {
            ModelInfoResult::Ok(i) => Some(i),
            ModelInfoResult::Err(_) => None,
        })
    }

    pub async fn upload_status(&self) -> Result<Option<UploadStatus>, Error> {
        let arg = self.encode("upload_status", ())?;
        match self.call(Kind::Query, "upload_status", arg).await? {
            UploadStatusResult::Ok(s) => Ok(s),
            UploadStatusResult::Err(e) => Err(self.refused("upload_status", e)),
        }
    }

    pub async fn upload_begin(&self, req: UploadBegin) -> Result<UploadStatus, Error> {
        let arg = self.encode("upload_begin", (req,))?;
        match self.call(Kind::Update, "upload_begin", arg).await? {
            UploadResult::Ok(s) => Ok(s),
            UploadResult::Err(e) => Err(self.refused("upload_begin", e)),
        }
    }

    pub async fn upload_chunk(&self, index: u32, data: &[u8]) -> Result<UploadStatus, Error> {
        let req = UploadChunk {
            index,
            data: serde_bytes::ByteBuf::from(data.to_vec()),
        };
        let arg = self.encode("upload_chunk", (req,))?;
        match self.call(Kind::Update, "upload_chunk", arg).await? {
            UploadResult::Ok(s) => Ok(s),
            UploadResult::Err(e) => Err(self.refused("upload_chunk", e)),
        }
    }

    /// The canister's refusal is returned as it is: what it means depends on what the caller
    /// knows.
    pub async fn upload_commit(&self) -> Result<Result<ModelInfo, UploadError>, Error> {
        let arg = self.encode("upload_commit", ())?;
        Ok(match self.call(Kind::Update, "upload_commit", arg).await? {
            CommitResult::Ok(i) => Ok(i),
            CommitResult::Err(e) => Err(e),
        })
    }

    pub async fn upload_abort(&self) -> Result<(), Error> {
        let arg = self.encode("upload_abort", ())?;
        match self.call(Kind::Update, "upload_abort", arg).await? {
            AbortResult::Ok => Ok(()),
            AbortResult::Err(e) => Err(self.refused("upload_abort", e)),
        }
    }

    pub async fn download_chunk(&self, offset: u64, length: u32) -> Result<Vec<u8>, Error> {
        let arg = self.encode("download_chunk", (offset, length))?;
        match self.call(Kind::Query, "download_chunk", arg).await? {
            DownloadResult::Ok(b) => Ok(b.into_vec()),
            DownloadResult::Err(e) => Err(self.download_refused(e)),
        }
    }
}
