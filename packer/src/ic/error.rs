//! What can go wrong talking to a walsh canister, worded for the operator.

use super::transport::CallError;
use candid::Principal;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// The engine's reader refuses the blob; nothing was sent.
    #[error("the blob is not valid, nothing was sent: {0}")]
    InvalidBlob(String),
    #[error(
        "{caller} is not a controller of canister {canister}: only controllers may upload or download models (a controller can add it with `dfx canister update-settings {canister} --add-controller {caller}`)"
    )]
    NotController {
        caller: Principal,
        canister: Principal,
    },
    /// The network, the replica or the canister refused the call (see [`CallError`]).
    #[error("{method}: {source}")]
    Call {
        method: String,
        #[source]
        source: CallError,
    },
    /// The bytes the canister assembled do not hash to the blob's SHA-256.
    #[error(
        "SHA-256 mismatch at commit: the canister received bytes that are not this blob's ({detail}). The previous model is still serving. The upload was discarded: run the command again to send every chunk afresh"
    )]
    ShaMismatch { detail: String },
    /// The canister answered the call with an error of its own.
    #[error("the canister refused {method}: {message}")]
    Refused { method: String, message: String },
    /// The reply is not what a walsh canister answers.
    #[error(
        "{method} returned something this client does not understand ({detail}): is {canister} a walsh canister of this version?"
    )]
    Protocol {
        method: String,
        canister: Principal,
        detail: String,
    },
    #[error("canister {0} has no model loaded: there is nothing to download")]
    NoModel(Principal),
    /// The downloaded bytes are not the blob `model_info` describes.
    #[error(
        "the downloaded blob does not match the canister's model_info ({detail}); nothing was written"
    )]
    DownloadMismatch { detail: String },
    #[error(
        "the canister's active model changed during the download (checksum {before} became {after}); nothing was written: run it again"
    )]
    ModelChanged { before: String, after: String },
}

impl Error {
    /// Whether the network failed (as opposed to the canister or the blob): an interrupted run
    /// that a second run resumes.
    pub fn is_network(&self) -> bool {
        matches!(self, Error::Call { source, .. } if source.is_transient())
    }
}
