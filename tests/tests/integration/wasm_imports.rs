//! The canister's wasm imports nothing the Internet Computer does not provide (every import comes
//! from `ic0`, with the signatures the IC defines — the harness validates those on install), and
//! the engine's arithmetic uses simd128.

#[test]
fn canister_wasm_imports_only_ic0_and_uses_simd() {
    let wasm = walsh_tests::canister_wasm();
    let mut imports = Vec::new();
    let mut simd = false;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload.expect("valid wasm") {
            wasmparser::Payload::ImportSection(reader) => {
                for imp in reader {
                    let imp = imp.expect("import");
                    imports.push(format!("{}.{}", imp.module, imp.name));
                }
            }
            wasmparser::Payload::CodeSectionEntry(body) => {
                let mut ops = body.get_operators_reader().expect("ops");
                while !ops.eof() {
                    if matches!(
                        ops.read().expect("op"),
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
        "the canister imports functions the IC does not provide: {foreign:?}"
    );
    assert!(
        imports.iter().any(|i| i == "ic0.performance_counter"),
        "{imports:?}"
    );
    assert!(
        simd,
        "no f32x4 arithmetic found: is +simd128 enabled for wasm32?"
    );
    let known: Vec<String> = walsh_ic_harness::ic0_function_names()
        .map(|n| format!("ic0.{n}"))
        .collect();
    for i in &imports {
        assert!(known.contains(i), "{i} is not an ic0 function");
    }
}
