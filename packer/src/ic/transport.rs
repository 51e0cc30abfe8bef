//! How the upload client reaches a canister: Candid bytes in, Candid bytes out. The ic-agent
//! transport (`agent.rs`) talks to a replica; the workspace tests implement the same trait over
//! the IC emulation harness, so every line of the upload logic runs against the real canister.

use candid::Principal;
use std::future::Future;
use thiserror::Error;

/// Why a call did not return the canister's reply. Transports sort their failures into these
/// so that the client knows what to retry and the operator reads what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CallError {
    /// No connection to the replica (refused, DNS, TLS, connect timeout).
    #[error(
        "cannot reach the replica at {url}: {detail} (for a local network, is `dfx start --background` running?)"
    )]
    Unreachable { url: String, detail: String },
    /// A failure that may pass: HTTP 429/5xx, a reply lost on the way back, a transient reject.
    #[error("{0}")]
    Transient(String),
    /// The canister does not exist on that network.
    #[error(
        "canister {canister} does not exist on network {network} (is it deployed there? check --network and --canister)"
    )]
    CanisterNotFound {
        canister: Principal,
        network: String,
    },
    /// The canister (or its `canister_inspect_message`) refused the call; the canister's words.
    #[error("{0}")]
    Rejected(String),
    /// The replica's answer does not verify with the root key in use: the replica is not part
    /// of the network the operator named.
    #[error(
        "network mismatch: {detail} (use --network local for a dfx replica on this machine, --network ic for mainnet)"
    )]
    NetworkMismatch { detail: String },
    /// The URL does not answer like an IC replica: a web server, another service, a wrong port.
    #[error(
        "{url} is not an IC replica: {detail} (--network takes `local`, `ic` or the URL of a replica's HTTP API, e.g. http://127.0.0.1:4943)"
    )]
    NotAReplica { url: String, detail: String },
    /// Anything else; not retried.
    #[error("{0}")]
    Other(String),
}

impl CallError {
    /// Whether trying the same call again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CallError::Unreachable { .. } | CallError::Transient(_)
        )
    }
}

/// One canister, as one caller, over some network.
///
/// The futures need not be `Send`: the client drives all calls in flight from one task.
pub trait Transport {
    /// The principal the calls are signed as.
    fn caller(&self) -> Principal;
    /// The canister called.
    fn canister(&self) -> Principal;
    /// An update (ingress) call; the reply's Candid bytes.
    fn update(
        &self,
        method: &str,
        arg: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, CallError>>;
    /// A query call; the reply's Candid bytes.
    fn query(&self, method: &str, arg: Vec<u8>)
    -> impl Future<Output = Result<Vec<u8>, CallError>>;
}
