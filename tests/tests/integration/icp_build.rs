//! Builds the canister through `icp.yaml` with the real icp-cli (from the npm registry, offline
//! build) and checks the wasm it produces: only `ic0` imports, the canister's methods exported,
//! and the Candid interface in its `candid:service` metadata.
//!
//! icp-cli comes only from npm, so this test needs Node.js and npm, which a machine with only the
//! Rust toolchain lacks: it is `#[ignore]`d, and `tests/run-all.sh` runs it (`--ignored`) where
//! `npm` is on PATH and says plainly that it did not where not.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

const PACKAGES: [&str; 2] = [
    "@icp-sdk/icp-cli-linux-x64@1.5.0",
    "@icp-sdk/ic-wasm-linux-x64@0.11.1",
];

/// icp-cli and ic-wasm into target/icp-tools (npm packages carrying the binaries).
fn tools() -> Option<(PathBuf, PathBuf)> {
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        eprintln!("skipped: the icp-cli npm binaries used here are for linux-x64");
        return None;
    }
    let dir = root().join("target/icp-tools");
    let icp = dir.join("node_modules/@icp-sdk/icp-cli-linux-x64/bin/icp");
    let ic_wasm = dir.join("node_modules/@icp-sdk/ic-wasm-linux-x64/bin/ic-wasm");
    if !(icp.exists() && ic_wasm.exists()) {
        std::fs::create_dir_all(&dir).expect("target/icp-tools");
        let status = Command::new("npm")
            .args([
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
            ])
            .arg(&dir)
            .args(PACKAGES)
            .status()
            .expect("npm runs (Node.js is part of the development machine)");
        assert!(status.success(), "npm install {PACKAGES:?} failed");
    }
    Some((icp, ic_wasm))
}

#[test]
#[ignore = "needs Node.js and npm (icp-cli comes from npm): tests/run-all.sh runs it where npm exists"]
fn icp_build_produces_a_valid_canister() {
    let Some((icp, ic_wasm)) = tools() else {
        return;
    };
    let root = root();
    let status = Command::new(&icp)
        .current_dir(&root)
        .args(["build", "walsh"])
        .env("DO_NOT_TRACK", "1")
        .env("IC_WASM", &ic_wasm)
        // Shares compiled dependencies with the other wasm tests.
        .env("CARGO_TARGET_DIR", root.join("target/wasm-check"))
        // Without the in-browser engine (web/build.sh and its wasm-bindgen-cli cost CI minutes;
        // the browser test builds and runs it).
        .env("WALSH_NO_WEB_PKG", "1")
        .status()
        .expect("icp runs");
    assert!(status.success(), "icp build walsh failed");
    let wasm =
        std::fs::read(root.join(".icp/cache/artifacts/walsh")).expect("icp build's artifact");

    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut candid = None;
    for payload in wasmparser::Parser::new(0).parse_all(&wasm) {
        match payload.expect("valid wasm") {
            wasmparser::Payload::ImportSection(reader) => {
                for imp in reader {
                    let imp = imp.expect("import");
                    imports.push(format!("{}.{}", imp.module, imp.name));
                }
            }
            wasmparser::Payload::ExportSection(reader) => {
                for exp in reader {
                    exports.push(exp.expect("export").name.to_string());
                }
            }
            wasmparser::Payload::CustomSection(s) if s.name() == "icp:public candid:service" => {
                candid = Some(String::from_utf8(s.data().to_vec()).expect("UTF-8 Candid"));
            }
            _ => {}
        }
    }
    let foreign: Vec<&String> = imports.iter().filter(|i| !i.starts_with("ic0.")).collect();
    assert!(
        foreign.is_empty(),
        "imports the IC does not provide: {foreign:?}"
    );
    for m in [
        "canister_query generate",
        "canister_query generate_with",
        "canister_query model_info",
        "canister_query http_request",
        "canister_update upload_commit",
        "canister_inspect_message",
        "canister_post_upgrade",
    ] {
        assert!(
            exports.iter().any(|e| e == m),
            "{m} not exported: {exports:?}"
        );
    }
    let did = std::fs::read_to_string(root.join("candid/walsh.did")).expect("candid/walsh.did");
    assert_eq!(
        candid.as_deref(),
        Some(did.as_str()),
        "candid:service metadata"
    );
}
