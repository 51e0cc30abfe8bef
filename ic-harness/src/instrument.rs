//! Install-time checks of a canister module (what the IC's `validation.rs` rejects) and the
//! instruction-metering instrumentation (what the IC's `instrumentation.rs` injects).
//!
//! # Instrumentation
//!
//! The module is parsed with wasmparser and re-encoded with `wasm_encoder::reencode`, adding:
//!
//! * an import `__.out_of_instructions : () -> ()`, placed after the module's own imports (the
//!   defined functions shift up by one index; calls, exports, element segments, `ref.func` and
//!   the name section are remapped);
//! * a mutable `i64` global, exported as `canister counter_instructions`, that holds the
//!   instructions *left* (the harness sets it to the message's limit before the call, as the IC
//!   does): the instructions executed are `limit - counter`;
//! * at the start of every basic block (function entry, after `loop`, `if`, `else`, `end`,
//!   `br`, `br_if`, `br_table`, `return`, `unreachable`, `return_call*`) a decrement of the
//!   counter by the static cost of the block, i.e. the sum of [`op_cost`] over its instructions
//!   up to and including the branch that ends it (function entries start at 1, not 0);
//! * after each function entry and each `loop` (the re-entrant blocks) a check
//!   `if counter < 0 { call out_of_instructions }`, which traps with
//!   [`CallError::InstructionLimit`](super::CallError::InstructionLimit); blocks that cannot
//!   loop are not checked, so the overshoot is bounded by one straight-line path, as on the IC;
//! * before each bulk operation (`memory.fill/copy/init`, `table.fill/copy/init`) a run-time
//!   decrement by its length operand, with the same check (the IC calls an injected helper
//!   function; here the code is inlined with a scratch local);
//! * exports the harness needs: memory 0 (`__walsh_harness_memory`), every mutable global
//!   (`__walsh_harness_global_<index>`, so that the harness can snapshot and roll them back) and
//!   the start function, renamed `canister_start` and run once at install/upgrade like the IC
//!   does, instead of at every instantiation.
//!
//! Differences from the IC's instrumentation: no `try_grow_wasm_memory` call after
//! `memory.grow` (the harness enforces its heap limit with a wasmtime `ResourceLimiter`), no
//! write barrier, and stable memory stays a set of host functions instead of being replaced by
//! injected Wasm code over a second memory (the host functions charge what the IC's replacement
//! code charges, see [`cost`](super::cost)).

use std::collections::{BTreeMap, BTreeSet};

use wasm_encoder::reencode::Reencode;
use wasm_encoder::{
    CodeSection, ConstExpr, EntityType, ExportKind, ExportSection, Function, GlobalSection,
    GlobalType, ImportSection, Instruction, Module, TypeSection, ValType,
};
use wasmparser::{
    DataKind, ExternalKind, FunctionBody, Operator, Parser, Payload, TypeRef, Validator,
    WasmFeatures,
};

use super::cost::op_cost;
use super::system_api::ic0_signature;

/// The export under which the instrumented module exposes its instruction counter (a name the
/// IC reserves, so no canister can export it itself).
pub(crate) const COUNTER_EXPORT: &str = "canister counter_instructions";
/// The export under which the instrumented module exposes its start function.
pub(crate) const START_EXPORT: &str = "canister_start";
/// The export under which the instrumented module exposes memory 0.
pub(crate) const MEMORY_EXPORT: &str = "__walsh_harness_memory";
/// Prefix of the exports of the mutable globals.
pub(crate) const GLOBAL_EXPORT_PREFIX: &str = "__walsh_harness_global_";
/// Prefix of the exports of the per-function counters (profiling only, [`instrument`]'s
/// `profile`): `__walsh_harness_fn_<k>` counts the instructions charged in defined function k.
pub(crate) const FUNCTION_EXPORT_PREFIX: &str = "__walsh_harness_fn_";
/// Module and name of the injected import that traps when the counter runs out.
pub(crate) const OOI_MODULE: &str = "__";
pub(crate) const OOI_NAME: &str = "out_of_instructions";

/// The system methods a canister may export (the only `canister_` names besides the three
/// method prefixes), per the interface specification.
const SYSTEM_METHODS: [&str; 7] = [
    "canister_init",
    "canister_pre_upgrade",
    "canister_post_upgrade",
    "canister_inspect_message",
    "canister_heartbeat",
    "canister_global_timer",
    "canister_on_low_wasm_memory",
];

/// Export names the IC reserves (`RESERVED_SYMBOLS` of `validation.rs`).
const RESERVED_EXPORTS: [&str; 6] = [
    "canister counter_instructions",
    "canister_start",
    "canister counter_dirty_pages",
    "canister counter_accessed_pages",
    "stable_memory",
    "stable_bytemap_memory",
];

// Limits of the IC's embedder configuration (`rs/config/src/embedders.rs`).
const MAX_FUNCTIONS: usize = 50_000;
const MAX_GLOBALS: usize = 1_000;
const MAX_EXPORTED_METHODS: usize = 1_000;
const MAX_SUM_EXPORTED_NAME_LENGTHS: usize = 20_000;
const MAX_CUSTOM_SECTIONS: usize = 16;
const MAX_CUSTOM_SECTIONS_BYTES: usize = 2 * 1024 * 1024;
/// 4 GiB: the largest heap a memory32 canister can have.
const MAX_HEAP_PAGES: u64 = 65_536;

/// A `icp:public <name>` / `icp:private <name>` custom section.
#[derive(Clone, Debug)]
pub(crate) struct MetadataSection {
    pub public: bool,
    pub data: Vec<u8>,
}

/// What the harness needs to know about a validated module.
#[derive(Clone, Debug, Default)]
pub(crate) struct ModuleInfo {
    pub updates: BTreeSet<String>,
    pub queries: BTreeSet<String>,
    pub composite_queries: BTreeSet<String>,
    /// Exported system methods (`canister_init`, ...).
    pub system_methods: BTreeSet<String>,
    /// `icp:` custom sections by name (without the `icp:public ` / `icp:private ` prefix).
    pub metadata: BTreeMap<String, MetadataSection>,
    pub has_memory: bool,
    pub has_start: bool,
    /// Indices of the mutable globals (all defined: the IC forbids importing globals).
    pub mutable_globals: Vec<u32>,
    // Index-space facts for the instrumentation.
    type_params: Vec<u32>,
    defined_func_types: Vec<u32>,
    imported_funcs: u32,
    globals: u32,
    start: Option<u32>,
}

impl ModuleInfo {
    pub fn exports(&self, system_method: &str) -> bool {
        self.system_methods.contains(system_method)
    }
}

/// The Wasm features the harness (like the IC) accepts: Wasm 2.0 — mutable globals, sign
/// extension, saturating float-to-int, multi-value, bulk memory, reference types and 128-bit
/// SIMD — and nothing else (no threads, relaxed SIMD, memory64, multi-memory, tail calls, GC,
/// exceptions).
pub(crate) fn features() -> WasmFeatures {
    WasmFeatures::WASM2
}

fn err(msg: impl Into<String>) -> String {
    msg.into()
}

fn val_type_name(t: &wasmparser::ValType) -> &'static str {
    match t {
        wasmparser::ValType::I32 => "i32",
        wasmparser::ValType::I64 => "i64",
        wasmparser::ValType::F32 => "f32",
        wasmparser::ValType::F64 => "f64",
        wasmparser::ValType::V128 => "v128",
        wasmparser::ValType::Ref(_) => "ref",
    }
}

fn signature(params: &[wasmparser::ValType], results: &[wasmparser::ValType]) -> String {
    let p: Vec<_> = params.iter().map(val_type_name).collect();
    let r: Vec<_> = results.iter().map(val_type_name).collect();
    format!("({}) -> ({})", p.join(", "), r.join(", "))
}

/// Validates `wasm` the way the IC does at install and collects what the harness needs.
pub(crate) fn validate(wasm: &[u8]) -> Result<ModuleInfo, String> {
    let mut validator = Validator::new_with_features(features());
    validator
        .validate_all(wasm)
        .map_err(|e| err(format!("invalid Wasm: {e}")))?;

    let mut info = ModuleInfo::default();
    let mut func_types: Vec<wasmparser::FuncType> = Vec::new();
    let mut memories = 0usize;
    let mut custom_bytes = 0usize;
    let mut exported_methods = 0usize;
    let mut exported_name_lengths = 0usize;
    let mut method_names: BTreeSet<String> = BTreeSet::new();

    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(|e| err(format!("invalid Wasm: {e}")))? {
            Payload::Version { encoding, .. } if encoding != wasmparser::Encoding::Module => {
                return Err(err("a component is not a canister module"));
            }
            Payload::TypeSection(reader) => {
                for ty in reader.into_iter_err_on_gc_types() {
                    let ty = ty.map_err(|e| err(format!("invalid type section: {e}")))?;
                    info.type_params.push(ty.params().len() as u32);
                    func_types.push(ty);
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader {
                    let import = import.map_err(|e| err(format!("invalid imports: {e}")))?;
                    let TypeRef::Func(ty) = import.ty else {
                        return Err(err(format!(
                            "the module imports `{}.{}`, which is not a function: only `ic0` \
                             functions may be imported",
                            import.module, import.name
                        )));
                    };
                    let ty = &func_types[ty as usize];
                    if import.module != "ic0" {
                        return Err(err(format!(
                            "the module imports function `{}.{}`: only the `ic0` System API \
                             may be imported",
                            import.module, import.name
                        )));
                    }
                    let Some((params, results)) = ic0_signature(import.name) else {
                        return Err(err(format!(
                            "the module imports `ic0.{}`, which the System API does not provide",
                            import.name
                        )));
                    };
                    if ty.params() != params || ty.results() != results {
                        return Err(err(format!(
                            "`ic0.{}` is imported with signature {}, the System API has {}",
                            import.name,
                            signature(ty.params(), ty.results()),
                            signature(params, results)
                        )));
                    }
                    info.imported_funcs += 1;
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    info.defined_func_types
                        .push(ty.map_err(|e| err(format!("invalid functions: {e}")))?);
                }
                if info.defined_func_types.len() > MAX_FUNCTIONS {
                    return Err(err(format!(
                        "the module defines {} functions, more than the {MAX_FUNCTIONS} allowed",
                        info.defined_func_types.len()
                    )));
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let memory = memory.map_err(|e| err(format!("invalid memories: {e}")))?;
                    if memory.memory64 {
                        return Err(err(
                            "64-bit memories are not supported by the harness (memory32 only)",
                        ));
                    }
                    if memory.initial > MAX_HEAP_PAGES {
                        return Err(err("the initial memory exceeds 4 GiB"));
                    }
                    memories += 1;
                }
                if memories > 1 {
                    return Err(err("the module defines more than one memory"));
                }
                info.has_memory = memories == 1;
            }
            Payload::TagSection(_) => return Err(err("exception tags are not supported")),
            Payload::GlobalSection(reader) => {
                for global in reader {
                    let global = global.map_err(|e| err(format!("invalid globals: {e}")))?;
                    match global.ty.content_type {
                        wasmparser::ValType::I32
                        | wasmparser::ValType::I64
                        | wasmparser::ValType::F32
                        | wasmparser::ValType::F64 => {}
                        other => {
                            return Err(err(format!(
                                "unsupported global type {}",
                                val_type_name(&other)
                            )));
                        }
                    }
                    if global.ty.mutable {
                        info.mutable_globals.push(info.globals);
                    }
                    info.globals += 1;
                }
                if info.globals as usize > MAX_GLOBALS {
                    return Err(err(format!(
                        "the module defines {} globals, more than the {MAX_GLOBALS} allowed",
                        info.globals
                    )));
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(|e| err(format!("invalid exports: {e}")))?;
                    let name = export.name;
                    if RESERVED_EXPORTS.contains(&name) {
                        return Err(err(format!("exporting reserved symbol `{name}`")));
                    }
                    if name == MEMORY_EXPORT || name.starts_with(GLOBAL_EXPORT_PREFIX) {
                        return Err(err(format!(
                            "the export `{name}` collides with a name the harness reserves"
                        )));
                    }
                    if export.kind != ExternalKind::Func {
                        continue;
                    }
                    let (set, method) = if let Some(m) = name.strip_prefix("canister_query ") {
                        (Some(&mut info.queries), m)
                    } else if let Some(m) = name.strip_prefix("canister_update ") {
                        (Some(&mut info.updates), m)
                    } else if let Some(m) = name.strip_prefix("canister_composite_query ") {
                        (Some(&mut info.composite_queries), m)
                    } else {
                        (None, name)
                    };
                    let is_method = set.is_some();
                    if let Some(set) = set {
                        if !method_names.insert(method.to_string()) {
                            return Err(err(format!(
                                "duplicate function `{method}` exported multiple times with \
                                 different call types: update, query, or composite_query"
                            )));
                        }
                        set.insert(method.to_string());
                        exported_methods += 1;
                        exported_name_lengths += method.len();
                    } else if name.starts_with("canister_") {
                        if !SYSTEM_METHODS.contains(&name) {
                            return Err(err(format!(
                                "exporting reserved function `{name}` with the \"canister_\" \
                                 prefix"
                            )));
                        }
                        info.system_methods.insert(name.to_string());
                    }
                    if is_method || name.starts_with("canister_") {
                        let index = export.index;
                        let ty = if index < info.imported_funcs {
                            return Err(err(format!(
                                "`{name}` re-exports an imported System API function"
                            )));
                        } else {
                            info.defined_func_types[(index - info.imported_funcs) as usize]
                        };
                        let ty = &func_types[ty as usize];
                        if !ty.params().is_empty() || !ty.results().is_empty() {
                            return Err(err(format!(
                                "`{name}` has signature {}, canister entry points must be () -> ()",
                                signature(ty.params(), ty.results())
                            )));
                        }
                    }
                }
                if exported_methods > MAX_EXPORTED_METHODS {
                    return Err(err(format!(
                        "more than {MAX_EXPORTED_METHODS} exported update/query methods"
                    )));
                }
                if exported_name_lengths > MAX_SUM_EXPORTED_NAME_LENGTHS {
                    return Err(err(format!(
                        "the exported method names sum to more than \
                         {MAX_SUM_EXPORTED_NAME_LENGTHS} bytes"
                    )));
                }
            }
            Payload::StartSection { func, .. } => {
                info.start = Some(func);
                info.has_start = true;
            }
            Payload::DataSection(reader) => {
                for data in reader {
                    let data = data.map_err(|e| err(format!("invalid data: {e}")))?;
                    if let DataKind::Active { offset_expr, .. } = data.kind {
                        let mut ops = offset_expr.get_operators_reader();
                        let first = ops.read().map_err(|e| err(format!("invalid data: {e}")))?;
                        let second = ops.read().map_err(|e| err(format!("invalid data: {e}")))?;
                        if !matches!(first, Operator::I32Const { .. })
                            || !matches!(second, Operator::End)
                        {
                            return Err(err(
                                "the offset of an active data segment must be an i32.const",
                            ));
                        }
                    }
                }
            }
            Payload::CustomSection(section) => {
                let name = section.name();
                let Some(rest) = name.strip_prefix("icp:") else {
                    continue;
                };
                let (public, short) = if let Some(n) = rest.strip_prefix("public ") {
                    (true, n)
                } else if let Some(n) = rest.strip_prefix("private ") {
                    (false, n)
                } else {
                    return Err(err(format!(
                        "invalid custom section `{name}`: `icp:` sections must be named \
                         `icp:public <name>` or `icp:private <name>`"
                    )));
                };
                if info.metadata.contains_key(short) {
                    return Err(err(format!("duplicate custom section `{short}`")));
                }
                custom_bytes += section.data().len() + short.len();
                info.metadata.insert(
                    short.to_string(),
                    MetadataSection {
                        public,
                        data: section.data().to_vec(),
                    },
                );
                if info.metadata.len() > MAX_CUSTOM_SECTIONS {
                    return Err(err(format!(
                        "more than {MAX_CUSTOM_SECTIONS} `icp:` custom sections"
                    )));
                }
                if custom_bytes > MAX_CUSTOM_SECTIONS_BYTES {
                    return Err(err("the `icp:` custom sections exceed 2 MiB in total"));
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

/// The names of the defined functions (the `name` section's, else `func[<index>]`), by defined
/// index: what a profile ([`instrument`]'s `profile`) reports its counters under.
pub(crate) fn function_names(wasm: &[u8], info: &ModuleInfo) -> Vec<String> {
    let imported = info.imported_funcs;
    let mut names: Vec<String> = (0..info.defined_func_types.len() as u32)
        .map(|k| format!("func[{}]", imported + k))
        .collect();
    for payload in Parser::new(0).parse_all(wasm).flatten() {
        if let Payload::CustomSection(section) = payload
            && let wasmparser::KnownCustom::Name(reader) = section.as_known()
        {
            for sub in reader.flatten() {
                if let wasmparser::Name::Function(map) = sub {
                    for naming in map.into_iter().flatten() {
                        if let Some(k) = naming.index.checked_sub(imported)
                            && let Some(slot) = names.get_mut(k as usize)
                        {
                            *slot = naming.name.to_string();
                        }
                    }
                }
            }
        }
    }
    names
}

/// One instrumentation point of a function body (the IC's `InjectionPoint`).
#[derive(Clone, Copy, Debug)]
struct Point {
    /// Index of the instruction the code is inserted before.
    at: usize,
    kind: PointKind,
}

#[derive(Clone, Copy, Debug)]
enum PointKind {
    /// Subtract a static cost; `check` for re-entrant blocks (function entry, loop body).
    Static { cost: u64, check: bool },
    /// Subtract the `i32` on top of the stack (the length operand of a bulk operation).
    Dynamic,
}

/// The IC's basic-block analysis: a block starts at the function entry and after every
/// instruction that may transfer control; its cost includes that instruction.
fn points(ops: &[Operator<'_>]) -> Vec<Point> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let mut check = true;
    let mut cost = 1u64; // function entry
    for (i, op) in ops.iter().enumerate() {
        cost += op_cost(op);
        let next_check = match op {
            Operator::Loop { .. } => Some(true),
            Operator::If { .. }
            | Operator::Else
            | Operator::End
            | Operator::Br { .. }
            | Operator::BrIf { .. }
            | Operator::BrTable { .. }
            | Operator::Return
            | Operator::Unreachable
            | Operator::ReturnCall { .. }
            | Operator::ReturnCallIndirect { .. } => Some(false),
            Operator::MemoryFill { .. }
            | Operator::MemoryCopy { .. }
            | Operator::MemoryInit { .. }
            | Operator::TableFill { .. }
            | Operator::TableCopy { .. }
            | Operator::TableInit { .. } => {
                out.push(Point {
                    at: i,
                    kind: PointKind::Dynamic,
                });
                None
            }
            _ => None,
        };
        if let Some(next_check) = next_check {
            if check || cost > 0 {
                out.push(Point {
                    at,
                    kind: PointKind::Static { cost, check },
                });
            }
            at = i + 1;
            cost = 0;
            check = next_check;
        }
    }
    // A stable sort keeps a bulk operation's charge before the static charge of a block that
    // starts at the same instruction, as on the IC.
    out.sort_by_key(|p| p.at);
    out
}

fn is_bulk(op: &Operator<'_>) -> bool {
    matches!(
        op,
        Operator::MemoryFill { .. }
            | Operator::MemoryCopy { .. }
            | Operator::MemoryInit { .. }
            | Operator::TableFill { .. }
            | Operator::TableCopy { .. }
            | Operator::TableInit { .. }
    )
}

/// Re-encodes the module with the metering added. `info` must come from [`validate`] of the
/// same bytes. With `profile`, every charge is also added to a counter of the function it is
/// charged in (one exported `i64` global a defined function, [`FUNCTION_EXPORT_PREFIX`]): the
/// instructions a function executed itself, its callees not included. The extra code is not
/// metered, so the instruction counts are the same either way.
pub(crate) fn instrument(wasm: &[u8], info: &ModuleInfo, profile: bool) -> Result<Vec<u8>, String> {
    let mut ins = Instrumenter {
        info,
        profile,
        ooi_type: info.type_params.len() as u32,
        ooi_func: info.imported_funcs,
        counter: info.globals,
        has_types: false,
        has_imports: false,
        has_globals: false,
        has_exports: false,
        next_body: 0,
        code: None,
        remaining_bodies: 0,
    };
    ins.run(wasm)
        .map_err(|e| err(format!("instrumentation failed: {e}")))
}

struct Instrumenter<'a> {
    info: &'a ModuleInfo,
    profile: bool,
    ooi_type: u32,
    ooi_func: u32,
    counter: u32,
    has_types: bool,
    has_imports: bool,
    has_globals: bool,
    has_exports: bool,
    next_body: usize,
    code: Option<CodeSection>,
    remaining_bodies: u32,
}

/// Position of a section in the module (the binary format's order).
fn rank(id: wasm_encoder::SectionId) -> u8 {
    use wasm_encoder::SectionId::*;
    match id {
        Custom => 0,
        Type => 1,
        Import => 2,
        Function => 3,
        Table => 4,
        Memory => 5,
        Tag => 6,
        Global => 7,
        Export => 8,
        Start => 9,
        Element => 10,
        DataCount => 11,
        Code => 12,
        Data => 13,
    }
}

type ReError = wasm_encoder::reencode::Error;

impl Reencode for Instrumenter<'_> {
    type Error = std::convert::Infallible;

    fn function_index(&mut self, func: u32) -> Result<u32, ReError> {
        Ok(if func >= self.info.imported_funcs {
            func + 1
        } else {
            func
        })
    }
}

impl Instrumenter<'_> {
    fn run(&mut self, wasm: &[u8]) -> Result<Vec<u8>, ReError> {
        let mut module = Module::new();
        for payload in Parser::new(0).parse_all(wasm) {
            let payload = payload?;
            if let Some((id, _)) = payload.as_section() {
                let id = match id {
                    0 => None,
                    1 => Some(wasm_encoder::SectionId::Type),
                    2 => Some(wasm_encoder::SectionId::Import),
                    3 => Some(wasm_encoder::SectionId::Function),
                    4 => Some(wasm_encoder::SectionId::Table),
                    5 => Some(wasm_encoder::SectionId::Memory),
                    6 => Some(wasm_encoder::SectionId::Global),
                    7 => Some(wasm_encoder::SectionId::Export),
                    8 => Some(wasm_encoder::SectionId::Start),
                    9 => Some(wasm_encoder::SectionId::Element),
                    10 => Some(wasm_encoder::SectionId::Code),
                    11 => Some(wasm_encoder::SectionId::Data),
                    12 => Some(wasm_encoder::SectionId::DataCount),
                    13 => Some(wasm_encoder::SectionId::Tag),
                    _ => None,
                };
                if let Some(id) = id {
                    self.add_missing_sections(&mut module, rank(id))?;
                }
            }
            match payload {
                Payload::TypeSection(reader) => {
                    let mut types = TypeSection::new();
                    self.parse_type_section(&mut types, reader)?;
                    types.ty().function([], []);
                    module.section(&types);
                    self.has_types = true;
                }
                Payload::ImportSection(reader) => {
                    let mut imports = ImportSection::new();
                    self.parse_import_section(&mut imports, reader)?;
                    imports.import(OOI_MODULE, OOI_NAME, EntityType::Function(self.ooi_type));
                    module.section(&imports);
                    self.has_imports = true;
                }
                Payload::FunctionSection(reader) => {
                    let mut functions = wasm_encoder::FunctionSection::new();
                    self.parse_function_section(&mut functions, reader)?;
                    module.section(&functions);
                }
                Payload::TableSection(reader) => {
                    let mut tables = wasm_encoder::TableSection::new();
                    self.parse_table_section(&mut tables, reader)?;
                    module.section(&tables);
                }
                Payload::MemorySection(reader) => {
                    let mut memories = wasm_encoder::MemorySection::new();
                    self.parse_memory_section(&mut memories, reader)?;
                    module.section(&memories);
                }
                Payload::GlobalSection(reader) => {
                    let mut globals = GlobalSection::new();
                    self.parse_global_section(&mut globals, reader)?;
                    self.add_counter(&mut globals);
                    module.section(&globals);
                    self.has_globals = true;
                }
                Payload::ExportSection(reader) => {
                    let mut exports = ExportSection::new();
                    self.parse_export_section(&mut exports, reader)?;
                    self.add_exports(&mut exports)?;
                    module.section(&exports);
                    self.has_exports = true;
                }
                // The start function becomes the `canister_start` export.
                Payload::StartSection { .. } => {}
                Payload::ElementSection(reader) => {
                    let mut elements = wasm_encoder::ElementSection::new();
                    self.parse_element_section(&mut elements, reader)?;
                    module.section(&elements);
                }
                Payload::DataCountSection { count, .. } => {
                    module.section(&wasm_encoder::DataCountSection { count });
                }
                Payload::CodeSectionStart { count, .. } => {
                    self.code = Some(CodeSection::new());
                    self.remaining_bodies = count;
                    if count == 0 {
                        module.section(&self.code.take().unwrap_or_default());
                    }
                }
                Payload::CodeSectionEntry(body) => {
                    let function = self.instrument_body(body)?;
                    if let Some(code) = self.code.as_mut() {
                        code.function(&function);
                    }
                    self.remaining_bodies -= 1;
                    if self.remaining_bodies == 0
                        && let Some(code) = self.code.take()
                    {
                        module.section(&code);
                    }
                }
                Payload::DataSection(reader) => {
                    let mut data = wasm_encoder::DataSection::new();
                    self.parse_data_section(&mut data, reader)?;
                    module.section(&data);
                }
                Payload::CustomSection(section) => match section.as_known() {
                    // Function names (for backtraces) are remapped; a malformed name section,
                    // which the IC would ignore, is dropped.
                    wasmparser::KnownCustom::Name(names) => {
                        if let Ok(names) = self.custom_name_section(names) {
                            module.section(&names);
                        }
                    }
                    _ => {
                        module.section(&wasm_encoder::CustomSection {
                            name: section.name().into(),
                            data: section.data().into(),
                        });
                    }
                },
                Payload::End(_) => self.add_missing_sections(&mut module, u8::MAX)?,
                _ => {}
            }
        }
        Ok(module.finish())
    }

    /// Emits the sections the instrumentation needs that the module lacks, before a section of
    /// rank `before`.
    fn add_missing_sections(&mut self, module: &mut Module, before: u8) -> Result<(), ReError> {
        use wasm_encoder::SectionId;
        if !self.has_types && rank(SectionId::Type) < before {
            let mut types = TypeSection::new();
            types.ty().function([], []);
            module.section(&types);
            self.has_types = true;
        }
        if !self.has_imports && rank(SectionId::Import) < before {
            let mut imports = ImportSection::new();
            imports.import(OOI_MODULE, OOI_NAME, EntityType::Function(self.ooi_type));
            module.section(&imports);
            self.has_imports = true;
        }
        if !self.has_globals && rank(SectionId::Global) < before {
            let mut globals = GlobalSection::new();
            self.add_counter(&mut globals);
            module.section(&globals);
            self.has_globals = true;
        }
        if !self.has_exports && rank(SectionId::Export) < before {
            let mut exports = ExportSection::new();
            self.add_exports(&mut exports)?;
            module.section(&exports);
            self.has_exports = true;
        }
        Ok(())
    }

    fn add_counter(&self, globals: &mut GlobalSection) {
        let extra = if self.profile {
            self.info.defined_func_types.len()
        } else {
            0
        };
        // The counter, then (profiling) one counter a defined function.
        for _ in 0..=extra {
            globals.global(
                GlobalType {
                    val_type: ValType::I64,
                    mutable: true,
                    shared: false,
                },
                &ConstExpr::i64_const(0),
            );
        }
    }

    /// The global counting defined function `k`'s instructions (profiling only).
    fn function_counter(&self, k: usize) -> Option<u32> {
        self.profile.then(|| self.counter + 1 + k as u32)
    }

    fn add_exports(&mut self, exports: &mut ExportSection) -> Result<(), ReError> {
        exports.export(COUNTER_EXPORT, ExportKind::Global, self.counter);
        if self.profile {
            for k in 0..self.info.defined_func_types.len() {
                let g = self.counter + 1 + k as u32;
                exports.export(
                    &format!("{FUNCTION_EXPORT_PREFIX}{k}"),
                    ExportKind::Global,
                    g,
                );
            }
        }
        if self.info.has_memory {
            exports.export(MEMORY_EXPORT, ExportKind::Memory, 0);
        }
        for &g in &self.info.mutable_globals {
            exports.export(&format!("{GLOBAL_EXPORT_PREFIX}{g}"), ExportKind::Global, g);
        }
        if let Some(start) = self.info.start {
            let start = self.function_index(start)?;
            exports.export(START_EXPORT, ExportKind::Func, start);
        }
        Ok(())
    }

    fn instrument_body(&mut self, body: FunctionBody<'_>) -> Result<Function, ReError> {
        let ty = self.info.defined_func_types[self.next_body];
        let own = self.function_counter(self.next_body);
        self.next_body += 1;
        let params = self.info.type_params[ty as usize];

        let mut locals = Vec::new();
        let mut declared = 0u32;
        for local in body.get_locals_reader()? {
            let (count, ty) = local?;
            declared += count;
            locals.push((count, self.val_type(ty)?));
        }
        let mut ops = Vec::new();
        let mut reader = body.get_operators_reader()?;
        while !reader.eof() {
            ops.push(reader.read()?);
        }

        let scratch = params + declared;
        if ops.iter().any(is_bulk) {
            locals.push((1, ValType::I32));
        }
        let mut f = Function::new(locals);
        let points = points(&ops);
        let mut next = points.iter().peekable();
        for (i, op) in ops.into_iter().enumerate() {
            while let Some(p) = next.next_if(|p| p.at == i) {
                self.emit(&mut f, p.kind, scratch, own);
            }
            f.instruction(&self.instruction(op)?);
        }
        Ok(f)
    }

    fn emit(&self, f: &mut Function, kind: PointKind, scratch: u32, own: Option<u32>) {
        let counter = self.counter;
        let check = |f: &mut Function| {
            f.instruction(&Instruction::GlobalGet(counter));
            f.instruction(&Instruction::I64Const(0));
            f.instruction(&Instruction::I64LtS);
            f.instruction(&Instruction::If(wasm_encoder::BlockType::Empty));
            f.instruction(&Instruction::Call(self.ooi_func));
            f.instruction(&Instruction::End);
        };
        match kind {
            PointKind::Static { cost, check: c } => {
                if cost > 0 {
                    f.instruction(&Instruction::GlobalGet(counter));
                    f.instruction(&Instruction::I64Const(cost as i64));
                    f.instruction(&Instruction::I64Sub);
                    f.instruction(&Instruction::GlobalSet(counter));
                    if let Some(g) = own {
                        f.instruction(&Instruction::GlobalGet(g));
                        f.instruction(&Instruction::I64Const(cost as i64));
                        f.instruction(&Instruction::I64Add);
                        f.instruction(&Instruction::GlobalSet(g));
                    }
                }
                if c {
                    check(f);
                }
            }
            PointKind::Dynamic => {
                f.instruction(&Instruction::LocalTee(scratch));
                f.instruction(&Instruction::GlobalGet(counter));
                f.instruction(&Instruction::LocalGet(scratch));
                f.instruction(&Instruction::I64ExtendI32U);
                f.instruction(&Instruction::I64Sub);
                f.instruction(&Instruction::GlobalSet(counter));
                if let Some(g) = own {
                    f.instruction(&Instruction::GlobalGet(g));
                    f.instruction(&Instruction::LocalGet(scratch));
                    f.instruction(&Instruction::I64ExtendI32U);
                    f.instruction(&Instruction::I64Add);
                    f.instruction(&Instruction::GlobalSet(g));
                }
                check(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(wat_body: &[Operator<'static>]) -> Vec<Point> {
        points(wat_body)
    }

    #[test]
    fn straight_line_function_is_one_checked_block() {
        let body = [
            Operator::I32Const { value: 1 },
            Operator::Drop,
            Operator::End,
        ];
        let p = ops(&body);
        assert_eq!(p.len(), 1);
        assert!(matches!(
            p[0].kind,
            PointKind::Static {
                cost: 3,
                check: true
            }
        ));
    }
}
