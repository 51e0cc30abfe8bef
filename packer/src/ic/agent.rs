//! The [`Transport`] to a real replica: ic-agent over HTTPS (HTTP for a local replica), with
//! its failures sorted into [`CallError`]s that name the likely cause.

use super::dfx::Network;
use super::transport::{CallError, Transport};
use candid::Principal;
use ic_agent::agent::RejectCode;
use ic_agent::agent_error::HttpErrorPayload;
use ic_agent::{Agent, AgentError, Identity};
use std::sync::Arc;
use std::time::Duration;

/// How long to wait for a TCP connection: a replica that does not answer by then is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one HTTP request may take. Update calls answer synchronously within a few seconds
/// on mainnet, and ic-agent polls for longer ones with fresh requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

pub struct AgentTransport {
    agent: Agent,
    network: Network,
    canister: Principal,
    caller: Principal,
}

impl AgentTransport {
    /// An agent for `network`, signing as `identity`; fetches the root key of a local replica
    /// (which also tells at once whether the replica is there).
    pub async fn connect(
        network: Network,
        canister: Principal,
        identity: Arc<dyn Identity>,
    ) -> Result<Self, CallError> {
        let caller = identity.sender().map_err(CallError::Other)?;
        let client = reqwest::Client::builder()
            .tls_backend_rustls()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| CallError::Other(format!("cannot set up HTTP: {e}")))?;
        let agent = Agent::builder()
            .with_url(network.url.clone())
            .with_http_client(client)
            .with_arc_identity(identity)
            .build()
            .map_err(|e| classify(e, &network, canister))?;
        if network.fetch_root_key {
            agent
                .fetch_root_key()
                .await
                .map_err(|e| classify(e, &network, canister))?;
        }
        Ok(AgentTransport {
            agent,
            network,
            canister,
            caller,
        })
    }
}

impl Transport for AgentTransport {
    fn caller(&self) -> Principal {
        self.caller
    }

    fn canister(&self) -> Principal {
        self.canister
    }

    async fn update(&self, method: &str, arg: Vec<u8>) -> Result<Vec<u8>, CallError> {
        self.agent
            .update(&self.canister, method)
            .with_arg(arg)
            .call_and_wait()
            .await
            .map_err(|e| classify(e, &self.network, self.canister))
    }

    async fn query(&self, method: &str, arg: Vec<u8>) -> Result<Vec<u8>, CallError> {
        self.agent
            .query(&self.canister, method)
            .with_arg(arg)
            .call()
            .await
            .map_err(|e| classify(e, &self.network, self.canister))
    }
}

fn http_text(p: &HttpErrorPayload) -> String {
    String::from_utf8_lossy(&p.content).trim().to_string()
}

/// The code of an error answer in the IC's own plain-text format — `error: <code>` then
/// `details: <text>` (API boundary nodes, and dfx's and PocketIC's gateways), or the bare code —
/// if the answer is one.
fn ic_error_code(text: &str) -> Option<&str> {
    let first = text.lines().next()?.trim();
    let code = first.strip_prefix("error: ").unwrap_or(first);
    let is_code = !code.is_empty()
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    is_code.then_some(code)
}

/// Whether an HTTP answer is a web page: replicas and boundary nodes answer their API in CBOR and
/// their errors in plain text, never in HTML.
fn is_html(p: &HttpErrorPayload) -> bool {
    p.content_type
        .as_deref()
        .is_some_and(|t| t.to_ascii_lowercase().contains("html"))
        || String::from_utf8_lossy(&p.content)
            .trim_start()
            .starts_with('<')
}

/// The start of an answer, on one line and short, to quote in an error.
fn excerpt(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line,
    }
}

/// An HTTP error status from `network`, sorted by who answered: the replica (or the boundary
/// node in front of it) in its own format, or something that is not a replica at all.
fn classify_http(p: &HttpErrorPayload, network: &Network, canister: Principal) -> CallError {
    let text = http_text(p);
    let not_a_replica = |what: String| CallError::NotAReplica {
        url: network.url.clone(),
        detail: what,
    };
    if ic_error_code(&text) == Some("canister_not_found") {
        return CallError::CanisterNotFound {
            canister,
            network: network.name.clone(),
        };
    }
    if is_html(p) {
        // A proxy's own error page in front of a replica that is down or overloaded may pass.
        if matches!(p.status, 502..=504) {
            return CallError::Transient(format!(
                "{} answered HTTP {} with a web page (a proxy whose replica is down?)",
                network.url, p.status
            ));
        }
        return not_a_replica(format!(
            "it answered HTTP {} with a web page ({})",
            p.status,
            excerpt(&text)
        ));
    }
    match p.status {
        429 | 500 | 502..=599 => {
            CallError::Transient(format!("the replica answered HTTP {}: {text}", p.status))
        }
        // A replica answers 404 only for a path it does not serve: not its API at all, or an API
        // older than this client's (ic-agent 0.49 calls /api/v4).
        404 | 405 | 501 => not_a_replica(format!(
            "it answered HTTP {} ({}) where a replica serves its API",
            p.status,
            if text.is_empty() {
                "no text".to_string()
            } else {
                excerpt(&text)
            }
        )),
        _ => CallError::Rejected(format!("HTTP {}: {text}", p.status)),
    }
}

/// Sorts an ic-agent error by what the operator should do about it.
pub fn classify(e: AgentError, network: &Network, canister: Principal) -> CallError {
    let not_found = || CallError::CanisterNotFound {
        canister,
        network: network.name.clone(),
    };
    match e {
        AgentError::TransportError(t) => {
            let detail = match &t {
                ic_agent::agent_error::TransportError::Reqwest(r) if r.is_connect() => {
                    // reqwest's own text ("error sending request") hides the cause.
                    let mut cause = String::new();
                    let mut source = std::error::Error::source(r);
                    while let Some(s) = source {
                        cause = s.to_string();
                        source = s.source();
                    }
                    return CallError::Unreachable {
                        url: network.url.clone(),
                        detail: if cause.is_empty() {
                            r.to_string()
                        } else {
                            cause
                        },
                    };
                }
                ic_agent::agent_error::TransportError::Reqwest(r) if r.is_timeout() => {
                    return CallError::Unreachable {
                        url: network.url.clone(),
                        detail: format!("no answer within {}s", REQUEST_TIMEOUT.as_secs()),
                    };
                }
                other => other.to_string(),
            };
            CallError::Transient(format!("HTTP failed: {detail}"))
        }
        AgentError::TimeoutWaitingForResponse() => {
            CallError::Transient("the replica did not answer the call in time".into())
        }
        AgentError::HttpError(p) => classify_http(&p, network, canister),
        AgentError::CertifiedReject { reject, .. }
        | AgentError::UncertifiedReject { reject, .. } => {
            let code = reject.error_code.as_deref().unwrap_or("");
            match reject.reject_code {
                // IC0301: canister not found.
                RejectCode::DestinationInvalid if code == "IC0301" || code.is_empty() => {
                    not_found()
                }
                RejectCode::SysTransient => CallError::Transient(reject.reject_message),
                _ => CallError::Rejected(if code.is_empty() {
                    reject.reject_message
                } else {
                    format!("{} ({code})", reject.reject_message)
                }),
            }
        }
        AgentError::NoRootKeyInStatus(_) => CallError::NetworkMismatch {
            detail: format!(
                "{} did not report a root key, so it is not a local replica",
                network.url
            ),
        },
        e @ (AgentError::CertificateVerificationFailed()
        | AgentError::CertificateNotAuthorized()
        | AgentError::QuerySignatureVerificationFailed
        | AgentError::CertificateHasTooManyDelegations
        | AgentError::DerKeyLengthMismatch { .. }
        | AgentError::DerPrefixMismatch { .. }) => CallError::NetworkMismatch {
            detail: format!(
                "the answer from {} does not verify with {} ({e})",
                network.url,
                if network.fetch_root_key {
                    "the root key it reported"
                } else {
                    "the Internet Computer's root key"
                }
            ),
        },
        AgentError::InvalidReplicaStatus | AgentError::InvalidCborData(_) => {
            CallError::NotAReplica {
                url: network.url.clone(),
                detail: format!("its answer is not the CBOR a replica sends ({e})"),
            }
        }
        other => CallError::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ic_agent::agent::RejectResponse;

    fn local() -> Network {
        Network {
            name: "local".into(),
            url: "http://127.0.0.1:4943".into(),
            fetch_root_key: true,
        }
    }

    fn reject(code: RejectCode, message: &str, error_code: Option<&str>) -> AgentError {
        AgentError::UncertifiedReject {
            reject: RejectResponse {
                reject_code: code,
                reject_message: message.into(),
                error_code: error_code.map(String::from),
            },
            operation: None,
        }
    }

    #[test]
    fn errors_are_sorted_by_what_to_do() {
        let c = Principal::management_canister();
        let n = local();
        assert!(matches!(
            classify(
                reject(
                    RejectCode::DestinationInvalid,
                    "Canister x not found",
                    Some("IC0301")
                ),
                &n,
                c
            ),
            CallError::CanisterNotFound { .. }
        ));
        assert!(classify(reject(RejectCode::SysTransient, "busy", None), &n, c).is_transient());
        match classify(
            reject(
                RejectCode::CanisterError,
                "Canister called `ic0.trap` with message: 'caller x is not a controller'",
                Some("IC0503"),
            ),
            &n,
            c,
        ) {
            CallError::Rejected(m) => {
                assert!(m.contains("not a controller") && m.contains("IC0503"))
            }
            other => panic!("{other:?}"),
        }
        let http = |status: u16, body: &str| {
            AgentError::HttpError(HttpErrorPayload {
                status,
                content_type: None,
                content: body.as_bytes().to_vec(),
            })
        };
        assert!(classify(http(503, "overloaded"), &n, c).is_transient());
        assert!(classify(http(429, "slow down"), &n, c).is_transient());
        assert!(matches!(
            classify(http(400, "canister_not_found"), &n, c),
            CallError::CanisterNotFound { .. }
        ));
        assert!(matches!(
            classify(http(403, "no"), &n, c),
            CallError::Rejected(_)
        ));
        // The boundary node's (and dfx's gateway's) answer for a canister that does not exist.
        assert!(matches!(
            classify(
                http(
                    400,
                    "error: canister_not_found\ndetails: The specified canister does not exist."
                ),
                &n,
                c
            ),
            CallError::CanisterNotFound { .. }
        ));
        // A web server's "not found" is not a missing canister.
        for (status, body) in [
            (
                404,
                "<html><body><h1>404 Not Found</h1>File not found</body></html>",
            ),
            (404, "404 page not found"),
            (
                501,
                "<!DOCTYPE HTML><title>Error response</title>Unsupported method ('POST')",
            ),
        ] {
            let e = classify(http(status, body), &n, c);
            assert!(
                matches!(e, CallError::NotAReplica { .. }),
                "{status} {body}: {e:?}"
            );
        }
        assert!(classify(http(502, "<html>Bad Gateway</html>"), &n, c).is_transient());
        let e = classify(AgentError::CertificateVerificationFailed(), &n, c).to_string();
        assert!(
            e.contains("network mismatch") && e.contains("root key it reported"),
            "{e}"
        );
        assert!(classify(AgentError::TimeoutWaitingForResponse(), &n, c).is_transient());
    }
}
