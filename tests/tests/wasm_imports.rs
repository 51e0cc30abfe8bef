//! The engine compiled to wasm32-unknown-unknown imports nothing the Internet Computer does not
//! provide: every import must come from the `ic0` module. (The probe module links the engine's
//! whole load-and-generate path; the canister's own wasm gets the same check with its entry points.)

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn build_probe() -> Vec<u8> {
    let root = workspace_root();
    // A separate target directory: the outer `cargo test` may hold the lock on the main one.
    let target_dir = root.join("target/wasm-check");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
            "-p",
            "walsh-wasm-probe",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building the wasm32 probe failed (is the wasm32-unknown-unknown target installed? `rustup target add wasm32-unknown-unknown`)"
    );
    std::fs::read(target_dir.join("wasm32-unknown-unknown/release/walsh_wasm_probe.wasm"))
        .expect("probe wasm exists")
}

#[test]
fn engine_wasm_imports_only_ic0() {
    let wasm = build_probe();
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    let mut simd = false;
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
            wasmparser::Payload::CodeSectionEntry(body) => {
                let mut ops = body.get_operators_reader().expect("ops");
                while !ops.eof() {
                    let op = ops.read().expect("op");
                    if matches!(
                        op,
                        wasmparser::Operator::F32x4Mul | wasmparser::Operator::F32x4Add
                    ) {
                        simd = true;
                    }
                }
            }
            _ => {}
        }
    }
    let foreign: Vec<&String> = imports.iter().filter(|i| !i.starts_with("ic0.")).collect();
    assert!(
        foreign.is_empty(),
        "the engine's wasm imports functions the IC does not provide: {foreign:?}"
    );
    assert!(exports.iter().any(|e| e == "probe_generate"), "{exports:?}");
    // The dot products vectorize to simd128 (enabled in .cargo/config.toml for wasm32).
    assert!(
        simd,
        "no f32x4 arithmetic found: is +simd128 enabled for wasm32?"
    );
}
