//! `packer upload` / `packer download` with the real ic-agent transport, against local HTTP
//! endpoints that are not a working replica: each ends at once with one clear line. (The upload
//! logic itself runs against the canister in `tests/tests/integration/upload.rs`; a real replica in
//! `deploy/local.sh`.)
#![cfg(feature = "ic")]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A throwaway secp256k1 key (it controls nothing).
const PEM: &str = "-----BEGIN EC PRIVATE KEY-----
MHQCAQEEIMBNtQOkBStWYPdL0ZQor5A2ckb+PsomaaJm8FIozWQroAcGBSuBBAAK
oUQDQgAEvuRRxYxg4yyYs6SkhkEVPEW5CaclUwiJVRO5tj/Y/nGJ1nxPb/CG2w6e
EH3K5urMnRrPTNPVELC6sf+U6Pa/rg==
-----END EC PRIVATE KEY-----
";
const CANISTER: &str = "bkyz2-fmaaa-aaaaa-qaaaq-cai";

fn default_blob() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/walsh-default.walsh")
}

/// Runs packer in `dir` with a HOME of its own (no dfx identities but the test's), and says
/// how long it took.
fn packer(dir: &Path, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_packer"))
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("DFX_CONFIG_ROOT")
        .env_remove("XDG_DATA_HOME")
        .args(args)
        .output()
        .expect("packer runs");
    (out, started.elapsed())
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let (out, took) = packer(dir, args);
    assert!(!out.status.success(), "packer {args:?} should fail");
    // No hang: a refused or wrong endpoint is reported at once, not after the backoff.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one clear line: {err}");
    err
}

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = dir.path().join("key.pem");
    std::fs::write(&pem, PEM).expect("write");
    (dir, pem)
}

/// A port nothing listens on: bound, then released.
fn refused_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

#[test]
fn a_refused_connection_is_a_clear_error_without_a_hang() {
    let (dir, pem) = setup();
    let url = refused_url();
    let blob = default_blob();
    let pem = pem.to_str().expect("utf-8");
    let blob = blob.to_str().expect("utf-8");
    let args = ["--canister", CANISTER, "--network", &url, "--pem", pem];
    let e = fails(dir.path(), &[&["upload", blob][..], &args].concat());
    assert!(
        e.contains(&format!("cannot reach the replica at {url}")),
        "{e}"
    );
    let out = dir.path().join("back.walsh");
    let out = out.to_str().expect("utf-8");
    let e = fails(dir.path(), &[&["download", "-o", out][..], &args].concat());
    assert!(e.contains("cannot reach the replica"), "{e}");
    assert!(!Path::new(out).exists());

    // The same through dfx's names: the project's local network and canister id, dfx's
    // default identity (here one with an encrypted key, which is said plainly).
    let project = dir.path();
    std::fs::write(
        project.join("dfx.json"),
        format!(
            r#"{{"networks": {{"local": {{"bind": "{}"}}}}}}"#,
            url.trim_start_matches("http://")
        ),
    )
    .expect("dfx.json");
    let ids = project.join(".dfx/local");
    std::fs::create_dir_all(&ids).expect("mkdir");
    std::fs::write(
        ids.join("canister_ids.json"),
        format!(r#"{{"walsh": {{"local": "{CANISTER}"}}}}"#),
    )
    .expect("ids");
    let identity = project.join(".config/dfx/identity/default");
    std::fs::create_dir_all(&identity).expect("mkdir");
    std::fs::write(identity.join("identity.pem"), PEM).expect("pem");
    let e = fails(project, &["upload", blob, "--canister", "walsh"]);
    assert!(
        e.contains(&format!("cannot reach the replica at {url}")),
        "{e}"
    );
    std::fs::write(
        identity.join("identity.json"),
        r#"{"encryption": {"pw_salt": "x", "file_nonce": [1]}}"#,
    )
    .expect("identity.json");
    let e = fails(project, &["upload", blob, "--canister", "walsh"]);
    assert!(
        e.contains("encrypted") && e.contains("dfx identity export default"),
        "{e}"
    );
    // A name deployed only locally, asked for on mainnet: a network mismatch.
    let e = fails(
        project,
        &["upload", blob, "--canister", "walsh", "--network", "ic"],
    );
    assert!(e.contains("never deployed to network ic"), "{e}");
}

#[test]
fn an_invalid_blob_is_refused_before_connecting() {
    let (dir, pem) = setup();
    let mut bytes = std::fs::read(default_blob()).expect("default blob");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    let bad = dir.path().join("bad.walsh");
    std::fs::write(&bad, &bytes).expect("write");
    let e = fails(
        dir.path(),
        &[
            "upload",
            bad.to_str().expect("utf-8"),
            "--canister",
            CANISTER,
            "--network",
            &refused_url(),
            "--pem",
            pem.to_str().expect("utf-8"),
        ],
    );
    assert!(
        e.contains("nothing was sent") && e.contains("checksum"),
        "{e}"
    );
    assert!(!e.contains("cannot reach"), "{e}");
}

/// An HTTP answer: status line, content type, body.
type Answer = (&'static str, &'static str, Vec<u8>);

/// Serves every HTTP request with what `answer` gives for its request line (`GET /api/v2/status
/// HTTP/1.1`) until the test ends. Each request is read whole, body included, before the answer.
fn serve_with(answer: impl Fn(&str) -> Answer + Send + 'static) -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", l.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for mut conn in l.incoming().flatten() {
            let mut req = Vec::new();
            let mut buf = [0u8; 65536];
            let head_end = loop {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
                if let Some(i) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                    break Some(i + 4);
                }
            };
            let Some(head_end) = head_end else { continue };
            let head = String::from_utf8_lossy(&req[..head_end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while req.len() < head_end + length {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let (status, content_type, body) = answer(head.lines().next().unwrap_or(""));
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
        }
    });
    url
}

/// Serves every HTTP request with `status` and a CBOR `body`.
fn serve(status: &'static str, body: Vec<u8>) -> String {
    serve_with(move |_| (status, "application/cbor", body.clone()))
}

/// A replica's status as self-described CBOR: {"ic_api_version": "0.18.0"}, and a root key
/// (three made-up bytes) when `root_key`.
fn status_cbor(root_key: bool) -> Vec<u8> {
    let mut status = vec![0xd9, 0xd9, 0xf7, if root_key { 0xa2 } else { 0xa1 }, 0x6e];
    status.extend_from_slice(b"ic_api_version");
    status.push(0x66);
    status.extend_from_slice(b"0.18.0");
    if root_key {
        status.push(0x68);
        status.extend_from_slice(b"root_key");
        status.extend_from_slice(&[0x43, 1, 2, 3]);
    }
    status
}

fn upload_to(dir: &Path, pem: &Path, url: &str) -> String {
    let blob = default_blob();
    fails(
        dir,
        &[
            "upload",
            blob.to_str().expect("utf-8"),
            "--canister",
            CANISTER,
            "--network",
            url,
            "--pem",
            pem.to_str().expect("utf-8"),
        ],
    )
}

/// A web server's "404 Not Found" is not a missing canister: packer says the URL is not a
/// replica. Only the IC's own answer for a missing canister says the canister does not exist.
#[test]
fn a_web_server_is_not_a_replica_and_its_404_is_not_a_missing_canister() {
    let (dir, pem) = setup();
    let page = || {
        b"<!DOCTYPE HTML>\n<html><head><title>Error response</title></head><body><h1>Error response</h1><p>Error code: 404</p><p>Message: File not found.</p></body></html>".to_vec()
    };
    // Python's http.server: an HTML 404 for every path.
    let url = serve_with(move |_| ("404 File not found", "text/html;charset=utf-8", page()));
    let e = upload_to(dir.path(), &pem, &url);
    assert!(
        e.contains(&format!("{url} is not an IC replica"))
            && e.contains("HTTP 404 with a web page"),
        "{e}"
    );
    assert!(!e.contains("does not exist"), "{e}");
    // Go's net/http: "404 page not found" in plain text.
    let url = serve_with(|_| {
        (
            "404 Not Found",
            "text/plain; charset=utf-8",
            b"404 page not found\n".to_vec(),
        )
    });
    let e = upload_to(dir.path(), &pem, &url);
    assert!(
        e.contains("is not an IC replica") && e.contains("HTTP 404 (404 page not found)"),
        "{e}"
    );
    assert!(!e.contains("does not exist"), "{e}");
    // Something that answers the status like a local replica, and its API with web pages.
    let url = serve_with(move |line| {
        if line.starts_with("GET /api/v2/status") {
            ("200 OK", "application/cbor", status_cbor(true))
        } else {
            ("404 File not found", "text/html", page())
        }
    });
    let e = upload_to(dir.path(), &pem, &url);
    assert!(
        e.contains("is not an IC replica") && e.contains("HTTP 404"),
        "{e}"
    );
    assert!(!e.contains("does not exist"), "{e}");
    // The IC's own answer (a boundary node's, dfx's gateway's) for a canister that is not there.
    let url = serve_with(|line| {
        if line.starts_with("GET /api/v2/status") {
            ("200 OK", "application/cbor", status_cbor(true))
        } else {
            (
                "400 Bad Request",
                "text/plain; charset=utf-8",
                b"error: canister_not_found\ndetails: The specified canister does not exist."
                    .to_vec(),
            )
        }
    });
    let e = upload_to(dir.path(), &pem, &url);
    assert!(
        e.contains(&format!(
            "canister {CANISTER} does not exist on network {url}"
        )),
        "{e}"
    );
}

#[test]
fn an_endpoint_that_is_not_a_local_replica_is_a_network_mismatch() {
    let (dir, pem) = setup();
    // A status without a root key: what a replica that is not a local one answers.
    let url = serve("200 OK", status_cbor(false));
    let blob = default_blob();
    let e = fails(
        dir.path(),
        &[
            "upload",
            blob.to_str().expect("utf-8"),
            "--canister",
            CANISTER,
            "--network",
            &url,
            "--pem",
            pem.to_str().expect("utf-8"),
        ],
    );
    assert!(
        e.contains("network mismatch") && e.contains("did not report a root key"),
        "{e}"
    );
    // Something that does not speak the IC's protocol at all.
    let url = serve("200 OK", b"<html>hello</html>".to_vec());
    let e = fails(
        dir.path(),
        &[
            "download",
            "-o",
            dir.path().join("x.walsh").to_str().expect("utf-8"),
            "--canister",
            CANISTER,
            "--network",
            &url,
            "--pem",
            pem.to_str().expect("utf-8"),
        ],
    );
    assert!(
        e.contains(&format!("{url} is not an IC replica"))
            && e.contains("not the CBOR a replica sends"),
        "{e}"
    );
}
