//! Shared parts of the workspace integration tests (the tests themselves are in `tests/tests/`):
//! the canister build they run in the IC emulation harness (`walsh-ic-harness`), and the
//! packer's upload client over the harness.

pub mod browser;
pub mod fixtures;
pub mod harness_transport;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where test-built wasm goes: its own target directory, since the `cargo test` that runs the
/// tests may hold the lock on the main one.
pub fn wasm_target_dir() -> PathBuf {
    root().join("target/wasm-check")
}

/// The canister's wasm as deployed (`cargo build --release --target wasm32-unknown-unknown -p
/// walsh-canister`, default features: IC entry points and the embedded model), built once per
/// test process.
pub fn canister_wasm() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| build_canister(&[], &wasm_target_dir()))
}

/// The canister built with its `profile` feature (a `profile` query reporting instructions per
/// engine phase), in a target directory of its own so that it never replaces the deployed build.
pub fn canister_wasm_profile() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| {
        build_canister(
            &["--features", "profile"],
            &root().join("target/wasm-profile"),
        )
    })
}

fn build_canister(features: &[&str], target_dir: &Path) -> Vec<u8> {
    {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(root())
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-unknown-unknown",
                "-p",
                "walsh-canister",
            ])
            .args(features)
            .env("CARGO_TARGET_DIR", target_dir)
            .status()
            .expect("cargo runs");
        assert!(
            status.success(),
            "building the canister for wasm32 failed (is the target installed? `rustup target add wasm32-unknown-unknown`)"
        );
        std::fs::read(target_dir.join("wasm32-unknown-unknown/release/walsh_canister.wasm"))
            .expect("canister wasm")
    }
}

/// The story page's in-browser engine (`web/build.sh`: walsh-web for wasm32, then
/// wasm-bindgen's glue) in `target/wasm-check/web-pkg`, built once per test process. It shares
/// the canister's target directory, so the engine's dependencies compile once for both.
pub fn web_pkg() -> &'static Path {
    static PKG: OnceLock<PathBuf> = OnceLock::new();
    PKG.get_or_init(|| {
        let out = wasm_target_dir().join("web-pkg");
        let status = Command::new("bash")
            .arg(root().join("web/build.sh"))
            .arg(&out)
            .env("CARGO_TARGET_DIR", wasm_target_dir())
            .status()
            .expect("bash runs");
        assert!(status.success(), "web/build.sh failed");
        out
    })
}
