//! The `ic0` System API as wasmtime host functions, with the IC's availability rules (which
//! entry point may call what), bounds checks and instruction charges.

use std::collections::{BTreeMap, HashSet};

use wasmparser::ValType::{I32, I64};
use wasmtime::{Caller, Global, Linker, Memory, ResourceLimiter, Val};

use super::cost::{self, overhead};
use super::stable::StableMemory;
use super::{Reply, instrument};

/// Reject code of a canister's `ic0.msg_reject` (`CANISTER_REJECT`).
pub const CANISTER_REJECT: u32 = 4;

type Res<T> = wasmtime::Result<T>;

/// The kind of execution, which decides what the System API allows (the spec's `I`, `G`, `U`,
/// `RQ`, `NRQ`, `CQ`, `F`, `T` and `s` contexts; the harness has no reply/reject/cleanup
/// callbacks since it does not perform inter-canister calls).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `canister_start`.
    Start,
    /// `canister_init` or `canister_post_upgrade` (the spec's `I`).
    #[default]
    Init,
    /// `canister_pre_upgrade`.
    PreUpgrade,
    /// An update method.
    Update,
    /// A query method called as an update (replicated query).
    ReplicatedQuery,
    /// A query method called as a query (non-replicated query).
    Query,
    /// A composite query called as a query.
    CompositeQuery,
    /// `canister_inspect_message`.
    Inspect,
    /// `canister_heartbeat`, `canister_global_timer`.
    SystemTask,
}

impl Kind {
    fn bit(self) -> u16 {
        match self {
            Kind::Start => S,
            Kind::Init => I,
            Kind::PreUpgrade => G,
            Kind::Update => U,
            Kind::ReplicatedQuery => RQ,
            Kind::Query => NRQ,
            Kind::CompositeQuery => CQ,
            Kind::Inspect => F,
            Kind::SystemTask => T,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::Init => "init/post_upgrade",
            Kind::PreUpgrade => "pre_upgrade",
            Kind::Update => "update",
            Kind::ReplicatedQuery => "replicated query",
            Kind::Query => "non-replicated query",
            Kind::CompositeQuery => "composite query",
            Kind::Inspect => "inspect_message",
            Kind::SystemTask => "system task",
        }
    }
}

const S: u16 = 1;
const I: u16 = 1 << 1;
const G: u16 = 1 << 2;
const U: u16 = 1 << 3;
const RQ: u16 = 1 << 4;
const NRQ: u16 = 1 << 5;
const CQ: u16 = 1 << 6;
const F: u16 = 1 << 7;
const T: u16 = 1 << 8;
/// The spec's `*`: everywhere but `canister_start`.
const ALL: u16 = I | G | U | RQ | NRQ | CQ | F | T;
/// Contexts that can reply (`U RQ NRQ CQ` and the callbacks).
const REPLY: u16 = U | RQ | NRQ | CQ;

/// Per-execution state.
#[derive(Debug, Default)]
pub(crate) struct ExecCtx {
    pub kind: Kind,
    pub caller: Vec<u8>,
    pub method: String,
    pub arg: Vec<u8>,
    pub limit: u64,
    pub max_reply: u64,
    pub reply_buf: Vec<u8>,
    pub response: Option<Reply>,
    pub accepted: bool,
    /// 4 KiB stable-memory pages written in this execution (for the dirty-page charge).
    pub dirty_pages: HashSet<u64>,
    /// The data certificate a non-replicated query gets (`certificate.rs`).
    pub data_certificate: Option<Vec<u8>>,
}

/// Canister state that a failed or discarded execution rolls back.
#[derive(Clone, Debug, Default)]
pub(crate) struct SysState {
    pub stable: StableMemory,
    pub certified_data: Vec<u8>,
    /// 0 = no timer.
    pub global_timer: u64,
    pub cycles: u128,
}

/// Environment the harness controls (not rolled back).
#[derive(Clone, Debug, Default)]
pub(crate) struct Env {
    pub canister_id: Vec<u8>,
    pub subnet_id: Vec<u8>,
    pub controllers: Vec<Vec<u8>>,
    pub time: u64,
    pub version: u64,
    pub env_vars: BTreeMap<String, String>,
    pub max_stable_pages: u64,
}

/// Caps the heap at the configured size (the IC's `wasm_memory_limit`/4 GiB for memory32).
#[derive(Debug, Default)]
pub(crate) struct HeapLimiter {
    pub max_heap_bytes: u64,
}

impl ResourceLimiter for HeapLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Res<bool> {
        Ok(desired as u64 <= self.max_heap_bytes)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Res<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The data of a canister's wasmtime store.
#[derive(Debug, Default)]
pub(crate) struct HostState {
    pub ctx: ExecCtx,
    pub sys: SysState,
    pub env: Env,
    pub log: Vec<String>,
    pub counter: Option<Global>,
    pub memory: Option<Memory>,
    pub limiter: HeapLimiter,
    /// Instructions per defined function, summed over executions (profiling only).
    pub function_profile: Vec<u64>,
}

/// Why a host function stopped the execution.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostTrap {
    /// `ic0.trap` (and so a Rust panic under ic-cdk).
    #[error("canister called ic0.trap: {0}")]
    Trap(String),
    /// The instruction counter went below zero.
    #[error("instruction limit exceeded")]
    OutOfInstructions,
    /// The reply (or reject message) outgrew the limit.
    #[error("reply of {size} bytes exceeds the limit of {limit} bytes")]
    ReplyTooLarge { size: u64, limit: u64 },
    /// The canister broke the System API contract.
    #[error("{0}")]
    ContractViolation(String),
    /// An out-of-bounds heap or stable-memory access by a System API call.
    #[error("{0}")]
    OutOfBounds(String),
    /// Something the harness does not emulate.
    #[error("{0}")]
    Unsupported(String),
}

fn violation<T>(msg: impl Into<String>) -> Res<T> {
    Err(HostTrap::ContractViolation(msg.into()).into())
}

fn oob<T>(msg: impl Into<String>) -> Res<T> {
    Err(HostTrap::OutOfBounds(msg.into()).into())
}

fn unsupported<T>(msg: impl Into<String>) -> Res<T> {
    Err(HostTrap::Unsupported(msg.into()).into())
}

/// Subtracts `fee` from the instruction counter; traps when it goes negative (the IC's
/// `charge_direct_fee`).
fn charge(c: &mut Caller<'_, HostState>, fee: u64) -> Res<()> {
    let Some(counter) = c.data().counter else {
        return Ok(());
    };
    let left = counter.get(&mut *c).unwrap_i64();
    if left < 0 {
        return Err(HostTrap::OutOfInstructions.into());
    }
    let left = left.saturating_sub(i64::try_from(fee).unwrap_or(i64::MAX));
    counter.set(&mut *c, Val::I64(left))?;
    if left < 0 {
        return Err(HostTrap::OutOfInstructions.into());
    }
    Ok(())
}

/// Instructions executed so far in this execution.
fn executed(c: &mut Caller<'_, HostState>) -> u64 {
    let limit = c.data().ctx.limit;
    match c.data().counter {
        Some(counter) => {
            let left = counter.get(&mut *c).unwrap_i64();
            (limit as i64).saturating_sub(left).max(0) as u64
        }
        None => 0,
    }
}

/// Traps unless the current execution kind is in `allowed`.
fn require(c: &Caller<'_, HostState>, name: &str, allowed: u16) -> Res<()> {
    let kind = c.data().ctx.kind;
    if kind.bit() & allowed == 0 {
        return violation(format!(
            "\"ic0.{name}\" cannot be executed in {} mode",
            kind.name()
        ));
    }
    Ok(())
}

fn u(x: i32) -> u64 {
    x as u32 as u64
}

fn memory(c: &Caller<'_, HostState>, name: &str) -> Res<Memory> {
    match c.data().memory {
        Some(m) => Ok(m),
        None => violation(format!(
            "ic0.{name}: the module has no memory to read from or write to"
        )),
    }
}

/// Reads `[src, src + size)` of the heap.
fn read_heap(c: &mut Caller<'_, HostState>, name: &str, src: u64, size: u64) -> Res<Vec<u8>> {
    let mem = memory(c, name)?;
    let heap = mem.data(&*c);
    match src.checked_add(size) {
        Some(end) if end <= heap.len() as u64 => Ok(heap[src as usize..end as usize].to_vec()),
        _ => oob(format!(
            "ic0.{name}: heap range {src}+{size} is out of bounds (heap size {})",
            heap.len()
        )),
    }
}

/// Writes `data` to the heap at `dst`.
fn write_heap(c: &mut Caller<'_, HostState>, name: &str, dst: u64, data: &[u8]) -> Res<()> {
    let mem = memory(c, name)?;
    let heap = mem.data_mut(&mut *c);
    match dst.checked_add(data.len() as u64) {
        Some(end) if end <= heap.len() as u64 => {
            heap[dst as usize..end as usize].copy_from_slice(data);
            Ok(())
        }
        _ => oob(format!(
            "ic0.{name}: heap range {dst}+{} is out of bounds (heap size {})",
            data.len(),
            heap.len()
        )),
    }
}

/// The `(dst, offset, size)` copy functions: copies `source[offset..offset + size]` to the
/// heap at `dst`.
fn copy_out(
    c: &mut Caller<'_, HostState>,
    name: &str,
    (dst, offset, size): (i32, i32, i32),
    source: fn(&HostState) -> &[u8],
) -> Res<()> {
    let (dst, offset, size) = (u(dst), u(offset), u(size));
    let mem = memory(c, name)?;
    let (heap, state) = mem.data_and_store_mut(&mut *c);
    let src = source(state);
    let Some(end) = offset.checked_add(size).filter(|&e| e <= src.len() as u64) else {
        return oob(format!(
            "ic0.{name}: offset {offset} + size {size} is out of bounds of the {} bytes",
            src.len()
        ));
    };
    let Some(dst_end) = dst.checked_add(size).filter(|&e| e <= heap.len() as u64) else {
        return oob(format!(
            "ic0.{name}: heap range {dst}+{size} is out of bounds (heap size {})",
            heap.len()
        ));
    };
    heap[dst as usize..dst_end as usize].copy_from_slice(&src[offset as usize..end as usize]);
    Ok(())
}

fn write_u128(c: &mut Caller<'_, HostState>, name: &str, dst: i32, v: u128) -> Res<()> {
    write_heap(c, name, u(dst), &v.to_le_bytes())
}

/// Signatures of every `ic0` function the harness provides (memory32: the spec's `I` is
/// `i32`). This is the list of the `ic0` crate 1.2 (ic-cdk 0.20) plus the older functions the
/// replica still links (`stable_*`, the 64-bit cycles calls, `mint_cycles128`).
const IC0: &[(&str, &[wasmparser::ValType], &[wasmparser::ValType])] = &[
    ("msg_arg_data_size", &[], &[I32]),
    ("msg_arg_data_copy", &[I32, I32, I32], &[]),
    ("msg_caller_size", &[], &[I32]),
    ("msg_caller_copy", &[I32, I32, I32], &[]),
    ("msg_caller_info_data_size", &[], &[I32]),
    ("msg_caller_info_data_copy", &[I32, I32, I32], &[]),
    ("msg_caller_info_signer_size", &[], &[I32]),
    ("msg_caller_info_signer_copy", &[I32, I32, I32], &[]),
    ("msg_reject_code", &[], &[I32]),
    ("msg_reject_msg_size", &[], &[I32]),
    ("msg_reject_msg_copy", &[I32, I32, I32], &[]),
    ("msg_deadline", &[], &[I64]),
    ("msg_reply_data_append", &[I32, I32], &[]),
    ("msg_reply", &[], &[]),
    ("msg_reject", &[I32, I32], &[]),
    ("msg_cycles_available128", &[I32], &[]),
    ("msg_cycles_refunded128", &[I32], &[]),
    ("msg_cycles_accept128", &[I64, I64, I32], &[]),
    ("cycles_burn128", &[I64, I64, I32], &[]),
    ("canister_self_size", &[], &[I32]),
    ("canister_self_copy", &[I32, I32, I32], &[]),
    ("canister_cycle_balance128", &[I32], &[]),
    ("canister_liquid_cycle_balance128", &[I32], &[]),
    ("canister_status", &[], &[I32]),
    ("canister_version", &[], &[I64]),
    ("subnet_self_size", &[], &[I32]),
    ("subnet_self_copy", &[I32, I32, I32], &[]),
    ("subnet_self_node_count", &[], &[I32]),
    ("msg_method_name_size", &[], &[I32]),
    ("msg_method_name_copy", &[I32, I32, I32], &[]),
    ("accept_message", &[], &[]),
    ("call_new", &[I32, I32, I32, I32, I32, I32, I32, I32], &[]),
    ("call_on_cleanup", &[I32, I32], &[]),
    ("call_data_append", &[I32, I32], &[]),
    ("call_with_best_effort_response", &[I32], &[]),
    ("call_cycles_add128", &[I64, I64], &[]),
    ("call_perform", &[], &[I32]),
    ("stable64_size", &[], &[I64]),
    ("stable64_grow", &[I64], &[I64]),
    ("stable64_write", &[I64, I64, I64], &[]),
    ("stable64_read", &[I64, I64, I64], &[]),
    ("root_key_size", &[], &[I32]),
    ("root_key_copy", &[I32, I32, I32], &[]),
    ("certified_data_set", &[I32, I32], &[]),
    ("data_certificate_present", &[], &[I32]),
    ("data_certificate_size", &[], &[I32]),
    ("data_certificate_copy", &[I32, I32, I32], &[]),
    ("time", &[], &[I64]),
    ("global_timer_set", &[I64], &[I64]),
    ("performance_counter", &[I32], &[I64]),
    ("is_controller", &[I32, I32], &[I32]),
    ("in_replicated_execution", &[], &[I32]),
    ("cost_call", &[I64, I64, I32], &[]),
    ("cost_create_canister", &[I32], &[]),
    ("cost_http_request", &[I64, I64, I32], &[]),
    ("cost_http_request_v2", &[I32, I32, I32], &[]),
    ("cost_sign_with_ecdsa", &[I32, I32, I32, I32], &[I32]),
    ("cost_sign_with_schnorr", &[I32, I32, I32, I32], &[I32]),
    ("cost_vetkd_derive_key", &[I32, I32, I32, I32], &[I32]),
    ("env_var_count", &[], &[I32]),
    ("env_var_name_size", &[I32], &[I32]),
    ("env_var_name_copy", &[I32, I32, I32, I32], &[]),
    ("env_var_name_exists", &[I32, I32], &[I32]),
    ("env_var_value_size", &[I32, I32], &[I32]),
    ("env_var_value_copy", &[I32, I32, I32, I32, I32], &[]),
    ("debug_print", &[I32, I32], &[]),
    ("trap", &[I32, I32], &[]),
    // Older functions the replica still provides.
    ("stable_size", &[], &[I32]),
    ("stable_grow", &[I32], &[I32]),
    ("stable_write", &[I32, I32, I32], &[]),
    ("stable_read", &[I32, I32, I32], &[]),
    ("canister_cycle_balance", &[], &[I64]),
    ("msg_cycles_available", &[], &[I64]),
    ("msg_cycles_refunded", &[], &[I64]),
    ("msg_cycles_accept", &[I64], &[I64]),
    ("call_cycles_add", &[I64], &[]),
    ("mint_cycles128", &[I64, I64, I32], &[]),
];

/// The System API signature of `ic0.<name>`, if the harness provides it.
pub(crate) fn ic0_signature(
    name: &str,
) -> Option<(
    &'static [wasmparser::ValType],
    &'static [wasmparser::ValType],
)> {
    IC0.iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, p, r)| (*p, *r))
}

/// Names of all `ic0` functions the harness provides.
pub fn ic0_function_names() -> impl Iterator<Item = &'static str> {
    IC0.iter().map(|(n, _, _)| *n)
}

/// Every `ic0` function the harness provides with its parameter and result types.
pub fn ic0_functions() -> impl Iterator<
    Item = (
        &'static str,
        &'static [wasmparser::ValType],
        &'static [wasmparser::ValType],
    ),
> {
    IC0.iter().copied()
}

/// 32-bit stable memory API limit: 4 GiB.
const STABLE32_MAX_PAGES: u64 = 65_536;

fn stable_grow(c: &mut Caller<'_, HostState>, delta: u64, max_pages: u64) -> i64 {
    let state = c.data_mut();
    let old = state.sys.stable.pages();
    let limit = max_pages.min(state.env.max_stable_pages);
    match old.checked_add(delta) {
        Some(new) if new <= limit => {
            state.sys.stable.grow(delta);
            old as i64
        }
        _ => -1,
    }
}

/// Charges the per-byte and dirty-page cost of a stable write and performs it.
fn stable_write(
    c: &mut Caller<'_, HostState>,
    name: &str,
    offset: u64,
    src: u64,
    size: u64,
) -> Res<()> {
    charge(c, overhead::STABLE_READ_WRITE.saturating_add(size))?;
    if !c.data().sys.stable.in_bounds(offset, size) {
        return oob(format!(
            "ic0.{name}: stable memory range {offset}+{size} is out of bounds (stable memory \
             size {} bytes)",
            c.data().sys.stable.len()
        ));
    }
    if size == 0 {
        return Ok(());
    }
    let first = offset / 4096;
    let last = (offset + size - 1) / 4096;
    let new_dirty = (first..=last)
        .filter(|p| !c.data().ctx.dirty_pages.contains(p))
        .count() as u64;
    charge(c, new_dirty * cost::DIRTY_PAGE_OVERHEAD)?;
    let data = read_heap(c, name, src, size)?;
    let state = c.data_mut();
    state.ctx.dirty_pages.extend(first..=last);
    state.sys.stable.write(offset, &data);
    Ok(())
}

fn stable_read(
    c: &mut Caller<'_, HostState>,
    name: &str,
    dst: u64,
    offset: u64,
    size: u64,
) -> Res<()> {
    charge(c, overhead::STABLE_READ_WRITE.saturating_add(size))?;
    if !c.data().sys.stable.in_bounds(offset, size) {
        return oob(format!(
            "ic0.{name}: stable memory range {offset}+{size} is out of bounds (stable memory \
             size {} bytes)",
            c.data().sys.stable.len()
        ));
    }
    let mem = memory(c, name)?;
    let (heap, state) = mem.data_and_store_mut(&mut *c);
    let Some(end) = dst.checked_add(size).filter(|&e| e <= heap.len() as u64) else {
        return oob(format!(
            "ic0.{name}: heap range {dst}+{size} is out of bounds (heap size {})",
            heap.len()
        ));
    };
    state
        .sys
        .stable
        .read(offset, &mut heap[dst as usize..end as usize]);
    Ok(())
}

fn env_var_name(c: &mut Caller<'_, HostState>, name: &str, src: i32, size: i32) -> Res<String> {
    let bytes = read_heap(c, name, u(src), u(size))?;
    match String::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(_) => violation(format!("ic0.{name}: the variable name is not valid UTF-8")),
    }
}

fn env_var_value(c: &mut Caller<'_, HostState>, name: &str, src: i32, size: i32) -> Res<Vec<u8>> {
    let key = env_var_name(c, name, src, size)?;
    match c.data().env.env_vars.get(&key) {
        Some(v) => Ok(v.as_bytes().to_vec()),
        None => violation(format!("ic0.{name}: no environment variable `{key}`")),
    }
}

fn not_in_harness<T>(name: &str) -> Res<T> {
    unsupported(format!(
        "ic0.{name}: inter-canister calls are not supported by the Walsh IC harness"
    ))
}

/// Builds the linker with every function of [`IC0`] plus the injected
/// `__.out_of_instructions`.
/// A `*_size` / `*_copy` pair over bytes of the host state, callable in the `allowed` contexts:
/// the size costs the base fee, the copy the base fee plus one per byte.
fn link_bytes(
    l: &mut Linker<HostState>,
    size_name: &'static str,
    copy_name: &'static str,
    allowed: u16,
    source: fn(&HostState) -> &[u8],
) -> Res<()> {
    l.func_wrap("ic0", size_name, move |mut c: Caller<'_, HostState>| {
        charge(&mut c, overhead::DEFAULT)?;
        require(&c, size_name, allowed)?;
        Ok(source(c.data()).len() as i32)
    })?;
    l.func_wrap(
        "ic0",
        copy_name,
        move |mut c: Caller<'_, HostState>, dst: i32, off: i32, size: i32| {
            charge(&mut c, overhead::DEFAULT + u(size))?;
            require(&c, copy_name, allowed)?;
            copy_out(&mut c, copy_name, (dst, off, size), source)
        },
    )?;
    Ok(())
}

pub(crate) fn linker(engine: &wasmtime::Engine) -> Res<Linker<HostState>> {
    let mut l = Linker::new(engine);
    l.func_wrap(
        instrument::OOI_MODULE,
        instrument::OOI_NAME,
        |_: Caller<'_, HostState>| -> Res<()> { Err(HostTrap::OutOfInstructions.into()) },
    )?;

    // Message arguments and caller.
    link_bytes(
        &mut l,
        "msg_arg_data_size",
        "msg_arg_data_copy",
        I | U | RQ | NRQ | CQ | F,
        |s| &s.ctx.arg,
    )?;
    link_bytes(&mut l, "msg_caller_size", "msg_caller_copy", ALL, |s| {
        &s.ctx.caller
    })?;
    for (size_name, copy_name) in [
        ("msg_caller_info_data_size", "msg_caller_info_data_copy"),
        ("msg_caller_info_signer_size", "msg_caller_info_signer_copy"),
    ] {
        // Ingress messages carry no caller info: both are empty.
        l.func_wrap("ic0", size_name, move |mut c: Caller<'_, HostState>| {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, size_name, U | RQ | NRQ | CQ | F)?;
            Ok(0i32)
        })?;
        l.func_wrap(
            "ic0",
            copy_name,
            move |mut c: Caller<'_, HostState>, dst: i32, off: i32, size: i32| {
                charge(&mut c, overhead::DEFAULT + u(size))?;
                require(&c, copy_name, U | RQ | NRQ | CQ | F)?;
                copy_out(&mut c, copy_name, (dst, off, size), |_| &[])
            },
        )?;
    }
    l.func_wrap(
        "ic0",
        "msg_reject_code",
        |mut c: Caller<'_, HostState>| -> Res<i32> {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "msg_reject_code", 0)?;
            Ok(0)
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_reject_msg_size",
        |mut c: Caller<'_, HostState>| -> Res<i32> {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "msg_reject_msg_size", 0)?;
            Ok(0)
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_reject_msg_copy",
        |mut c: Caller<'_, HostState>, _dst: i32, _off: i32, size: i32| -> Res<()> {
            charge(&mut c, overhead::DEFAULT + u(size))?;
            require(&c, "msg_reject_msg_copy", 0)
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_deadline",
        |mut c: Caller<'_, HostState>| -> Res<i64> {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "msg_deadline", U | RQ | NRQ | CQ)?;
            // Ingress messages have guaranteed responses: no deadline.
            Ok(0)
        },
    )?;

    // Replies.
    l.func_wrap(
        "ic0",
        "msg_reply_data_append",
        |mut c: Caller<'_, HostState>, src: i32, size: i32| {
            charge(
                &mut c,
                overhead::DEFAULT + cost::BYTE_TRANSMISSION_COST_FACTOR * u(size),
            )?;
            require(&c, "msg_reply_data_append", REPLY)?;
            if c.data().ctx.response.is_some() {
                return violation("ic0.msg_reply_data_append: the message was already replied");
            }
            let total = c.data().ctx.reply_buf.len() as u64 + u(size);
            let limit = c.data().ctx.max_reply;
            if total > limit {
                return Err(HostTrap::ReplyTooLarge { size: total, limit }.into());
            }
            let data = read_heap(&mut c, "msg_reply_data_append", u(src), u(size))?;
            c.data_mut().ctx.reply_buf.extend_from_slice(&data);
            Ok(())
        },
    )?;
    l.func_wrap("ic0", "msg_reply", |mut c: Caller<'_, HostState>| {
        charge(&mut c, overhead::DEFAULT)?;
        require(&c, "msg_reply", REPLY)?;
        let ctx = &mut c.data_mut().ctx;
        if ctx.response.is_some() {
            return violation("ic0.msg_reply: the message was already replied");
        }
        ctx.response = Some(Reply::Data(std::mem::take(&mut ctx.reply_buf)));
        Ok(())
    })?;
    l.func_wrap(
        "ic0",
        "msg_reject",
        |mut c: Caller<'_, HostState>, src: i32, size: i32| {
            charge(
                &mut c,
                overhead::DEFAULT + cost::BYTE_TRANSMISSION_COST_FACTOR * u(size),
            )?;
            require(&c, "msg_reject", REPLY)?;
            if c.data().ctx.response.is_some() {
                return violation("ic0.msg_reject: the message was already replied");
            }
            let limit = c.data().ctx.max_reply;
            if u(size) > limit {
                return Err(HostTrap::ReplyTooLarge {
                    size: u(size),
                    limit,
                }
                .into());
            }
            let data = read_heap(&mut c, "msg_reject", u(src), u(size))?;
            let message = String::from_utf8_lossy(&data).into_owned();
            c.data_mut().ctx.response = Some(Reply::Reject {
                code: CANISTER_REJECT,
                message,
            });
            Ok(())
        },
    )?;

    // Cycles: the harness keeps a balance (default 0) and ingress messages carry none.
    l.func_wrap(
        "ic0",
        "msg_cycles_available128",
        |mut c: Caller<'_, HostState>, dst: i32| {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "msg_cycles_available128", U | RQ)?;
            write_u128(&mut c, "msg_cycles_available128", dst, 0)
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_cycles_refunded128",
        |mut c: Caller<'_, HostState>, _dst: i32| -> Res<()> {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "msg_cycles_refunded128", 0)
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_cycles_accept128",
        |mut c: Caller<'_, HostState>, _hi: i64, _lo: i64, dst: i32| {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "msg_cycles_accept128", U | RQ)?;
            write_u128(&mut c, "msg_cycles_accept128", dst, 0)
        },
    )?;
    l.func_wrap(
        "ic0",
        "cycles_burn128",
        |mut c: Caller<'_, HostState>, hi: i64, lo: i64, dst: i32| {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "cycles_burn128", I | G | U | RQ | T)?;
            let amount = ((hi as u64 as u128) << 64) | lo as u64 as u128;
            let burned = amount.min(c.data().sys.cycles);
            c.data_mut().sys.cycles -= burned;
            write_u128(&mut c, "cycles_burn128", dst, burned)
        },
    )?;
    for name in [
        "canister_cycle_balance128",
        "canister_liquid_cycle_balance128",
    ] {
        l.func_wrap(
            "ic0",
            name,
            move |mut c: Caller<'_, HostState>, dst: i32| {
                charge(&mut c, overhead::DEFAULT)?;
                require(&c, name, ALL)?;
                let balance = c.data().sys.cycles;
                write_u128(&mut c, name, dst, balance)
            },
        )?;
    }
    l.func_wrap(
        "ic0",
        "canister_cycle_balance",
        |mut c: Caller<'_, HostState>| {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "canister_cycle_balance", ALL)?;
            match u64::try_from(c.data().sys.cycles) {
                Ok(b) => Ok(b as i64),
                Err(_) => {
                    violation("ic0.canister_cycle_balance: the balance does not fit in 64 bits")
                }
            }
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_cycles_available",
        |mut c: Caller<'_, HostState>| {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "msg_cycles_available", U | RQ)?;
            Ok(0i64)
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_cycles_refunded",
        |mut c: Caller<'_, HostState>| -> Res<i64> {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "msg_cycles_refunded", 0)?;
            Ok(0)
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_cycles_accept",
        |mut c: Caller<'_, HostState>, _max: i64| {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "msg_cycles_accept", U | RQ)?;
            Ok(0i64)
        },
    )?;
    l.func_wrap(
        "ic0",
        "mint_cycles128",
        |mut c: Caller<'_, HostState>, _hi: i64, _lo: i64, _dst: i32| -> Res<()> {
            charge(&mut c, overhead::DEFAULT)?;
            violation("ic0.mint_cycles128 may only be called by the cycles minting canister")
        },
    )?;

    // Canister and subnet identity, status, version.
    link_bytes(
        &mut l,
        "canister_self_size",
        "canister_self_copy",
        ALL,
        |s| &s.env.canister_id,
    )?;
    link_bytes(&mut l, "subnet_self_size", "subnet_self_copy", ALL, |s| {
        &s.env.subnet_id
    })?;
    l.func_wrap(
        "ic0",
        "subnet_self_node_count",
        |mut c: Caller<'_, HostState>| {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "subnet_self_node_count", ALL)?;
            Ok(13i32)
        },
    )?;
    l.func_wrap("ic0", "canister_status", |mut c: Caller<'_, HostState>| {
        charge(&mut c, overhead::DEFAULT)?;
        require(&c, "canister_status", ALL)?;
        Ok(1i32) // running
    })?;
    l.func_wrap("ic0", "canister_version", |mut c: Caller<'_, HostState>| {
        charge(&mut c, overhead::DEFAULT)?;
        require(&c, "canister_version", ALL)?;
        Ok(c.data().env.version as i64)
    })?;

    // Inspect message.
    l.func_wrap(
        "ic0",
        "msg_method_name_size",
        |mut c: Caller<'_, HostState>| {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "msg_method_name_size", F)?;
            Ok(c.data().ctx.method.len() as i32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "msg_method_name_copy",
        |mut c: Caller<'_, HostState>, dst: i32, off: i32, size: i32| {
            charge(&mut c, overhead::DEFAULT + u(size))?;
            require(&c, "msg_method_name_copy", F)?;
            copy_out(&mut c, "msg_method_name_copy", (dst, off, size), |s| {
                s.ctx.method.as_bytes()
            })
        },
    )?;
    l.func_wrap("ic0", "accept_message", |mut c: Caller<'_, HostState>| {
        charge(&mut c, overhead::DEFAULT)?;
        require(&c, "accept_message", F)?;
        if c.data().ctx.accepted {
            return violation("ic0.accept_message: the message was already accepted");
        }
        c.data_mut().ctx.accepted = true;
        Ok(())
    })?;

    // Inter-canister calls: not emulated; they trap when used.
    const CALL: u16 = U | CQ | T;
    l.func_wrap(
        "ic0",
        "call_new",
        |mut c: Caller<'_, HostState>,
         _callee: i32,
         callee_size: i32,
         _name: i32,
         name_size: i32,
         _a: i32,
         _b: i32,
         _d: i32,
         _e: i32|
         -> Res<()> {
            charge(&mut c, overhead::CALL_NEW + u(callee_size) + u(name_size))?;
            require(&c, "call_new", CALL)?;
            not_in_harness("call_new")
        },
    )?;
    l.func_wrap(
        "ic0",
        "call_on_cleanup",
        |mut c: Caller<'_, HostState>, _f: i32, _e: i32| -> Res<()> {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "call_on_cleanup", CALL)?;
            not_in_harness("call_on_cleanup")
        },
    )?;
    l.func_wrap(
        "ic0",
        "call_data_append",
        |mut c: Caller<'_, HostState>, _src: i32, size: i32| -> Res<()> {
            charge(
                &mut c,
                overhead::DEFAULT + cost::BYTE_TRANSMISSION_COST_FACTOR * u(size),
            )?;
            require(&c, "call_data_append", CALL)?;
            not_in_harness("call_data_append")
        },
    )?;
    l.func_wrap(
        "ic0",
        "call_with_best_effort_response",
        |mut c: Caller<'_, HostState>, _t: i32| -> Res<()> {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "call_with_best_effort_response", CALL)?;
            not_in_harness("call_with_best_effort_response")
        },
    )?;
    l.func_wrap(
        "ic0",
        "call_cycles_add128",
        |mut c: Caller<'_, HostState>, _hi: i64, _lo: i64| -> Res<()> {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "call_cycles_add128", U | T)?;
            not_in_harness("call_cycles_add128")
        },
    )?;
    l.func_wrap(
        "ic0",
        "call_cycles_add",
        |mut c: Caller<'_, HostState>, _amount: i64| -> Res<()> {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "call_cycles_add", U | T)?;
            not_in_harness("call_cycles_add")
        },
    )?;
    l.func_wrap(
        "ic0",
        "call_perform",
        |mut c: Caller<'_, HostState>| -> Res<i32> {
            charge(&mut c, overhead::CALL_PERFORM)?;
            require(&c, "call_perform", CALL)?;
            not_in_harness("call_perform")
        },
    )?;

    // Stable memory (64-bit API).
    l.func_wrap("ic0", "stable64_size", |mut c: Caller<'_, HostState>| {
        charge(&mut c, overhead::STABLE_SIZE)?;
        Ok(c.data().sys.stable.pages() as i64)
    })?;
    l.func_wrap(
        "ic0",
        "stable64_grow",
        |mut c: Caller<'_, HostState>, delta: i64| {
            charge(&mut c, overhead::STABLE_GROW)?;
            Ok(stable_grow(&mut c, delta as u64, u64::MAX))
        },
    )?;
    l.func_wrap(
        "ic0",
        "stable64_write",
        |mut c: Caller<'_, HostState>, offset: i64, src: i64, size: i64| {
            stable_write(
                &mut c,
                "stable64_write",
                offset as u64,
                src as u64,
                size as u64,
            )
        },
    )?;
    l.func_wrap(
        "ic0",
        "stable64_read",
        |mut c: Caller<'_, HostState>, dst: i64, offset: i64, size: i64| {
            stable_read(
                &mut c,
                "stable64_read",
                dst as u64,
                offset as u64,
                size as u64,
            )
        },
    )?;

    // Stable memory (32-bit API): traps once the memory is larger than 4 GiB.
    fn check32(c: &Caller<'_, HostState>, name: &str) -> Res<()> {
        if c.data().sys.stable.pages() > STABLE32_MAX_PAGES {
            return violation(format!(
                "ic0.{name}: stable memory is larger than 4 GiB, use the 64-bit API"
            ));
        }
        Ok(())
    }
    l.func_wrap("ic0", "stable_size", |mut c: Caller<'_, HostState>| {
        charge(&mut c, overhead::STABLE_SIZE)?;
        check32(&c, "stable_size")?;
        Ok(c.data().sys.stable.pages() as i32)
    })?;
    l.func_wrap(
        "ic0",
        "stable_grow",
        |mut c: Caller<'_, HostState>, delta: i32| {
            charge(&mut c, overhead::STABLE_GROW)?;
            check32(&c, "stable_grow")?;
            Ok(stable_grow(&mut c, u(delta), STABLE32_MAX_PAGES) as i32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "stable_write",
        |mut c: Caller<'_, HostState>, offset: i32, src: i32, size: i32| {
            check32(&c, "stable_write")?;
            stable_write(&mut c, "stable_write", u(offset), u(src), u(size))
        },
    )?;
    l.func_wrap(
        "ic0",
        "stable_read",
        |mut c: Caller<'_, HostState>, dst: i32, offset: i32, size: i32| {
            check32(&c, "stable_read")?;
            stable_read(&mut c, "stable_read", u(dst), u(offset), u(size))
        },
    )?;

    // Certification: non-replicated queries get a data certificate; there is no root key
    // to read from the canister.
    l.func_wrap(
        "ic0",
        "root_key_size",
        |mut c: Caller<'_, HostState>| -> Res<i32> {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "root_key_size", I | G | U | RQ | T)?;
            unsupported("ic0.root_key_size: the Walsh IC harness has no root key")
        },
    )?;
    l.func_wrap(
        "ic0",
        "root_key_copy",
        |mut c: Caller<'_, HostState>, _dst: i32, _off: i32, size: i32| -> Res<()> {
            charge(&mut c, overhead::DEFAULT + u(size))?;
            require(&c, "root_key_copy", I | G | U | RQ | T)?;
            unsupported("ic0.root_key_copy: the Walsh IC harness has no root key")
        },
    )?;
    l.func_wrap(
        "ic0",
        "certified_data_set",
        |mut c: Caller<'_, HostState>, src: i32, size: i32| {
            charge(&mut c, overhead::DEFAULT + u(size))?;
            require(&c, "certified_data_set", I | G | U | T)?;
            if u(size) > 32 {
                return violation(format!(
                    "ic0.certified_data_set: {} bytes given, at most 32 allowed",
                    u(size)
                ));
            }
            let data = read_heap(&mut c, "certified_data_set", u(src), u(size))?;
            c.data_mut().sys.certified_data = data;
            Ok(())
        },
    )?;
    l.func_wrap(
        "ic0",
        "data_certificate_present",
        |mut c: Caller<'_, HostState>| {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "data_certificate_present", ALL)?;
            Ok(i32::from(c.data().ctx.data_certificate.is_some()))
        },
    )?;
    l.func_wrap(
        "ic0",
        "data_certificate_size",
        |mut c: Caller<'_, HostState>| -> Res<i32> {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "data_certificate_size", NRQ | CQ)?;
            match &c.data().ctx.data_certificate {
                Some(cert) => Ok(cert.len() as i32),
                None => violation("ic0.data_certificate_size: no data certificate is present"),
            }
        },
    )?;
    l.func_wrap(
        "ic0",
        "data_certificate_copy",
        |mut c: Caller<'_, HostState>, dst: i32, off: i32, size: i32| -> Res<()> {
            charge(&mut c, overhead::DEFAULT + u(size))?;
            require(&c, "data_certificate_copy", NRQ | CQ)?;
            if c.data().ctx.data_certificate.is_none() {
                return violation("ic0.data_certificate_copy: no data certificate is present");
            }
            copy_out(&mut c, "data_certificate_copy", (dst, off, size), |s| {
                s.ctx.data_certificate.as_deref().unwrap_or_default()
            })
        },
    )?;

    // Time, timers, counters, controllers.
    l.func_wrap("ic0", "time", |mut c: Caller<'_, HostState>| {
        charge(&mut c, overhead::DEFAULT)?;
        require(&c, "time", ALL)?;
        Ok(c.data().env.time as i64)
    })?;
    l.func_wrap(
        "ic0",
        "global_timer_set",
        |mut c: Caller<'_, HostState>, ts: i64| {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "global_timer_set", I | G | U | T)?;
            let old = std::mem::replace(&mut c.data_mut().sys.global_timer, ts as u64);
            Ok(old as i64)
        },
    )?;
    l.func_wrap(
        "ic0",
        "performance_counter",
        |mut c: Caller<'_, HostState>, ty: i32| {
            charge(&mut c, overhead::PERFORMANCE_COUNTER)?;
            match ty {
                // Without inter-canister calls the call context is this one message.
                0 | 1 => Ok(executed(&mut c) as i64),
                _ => violation(format!(
                    "ic0.performance_counter: unknown counter type {ty}"
                )),
            }
        },
    )?;
    l.func_wrap(
        "ic0",
        "is_controller",
        |mut c: Caller<'_, HostState>, src: i32, size: i32| {
            charge(&mut c, overhead::IS_CONTROLLER + u(size))?;
            if u(size) > 29 {
                return violation(format!(
                    "ic0.is_controller: {} bytes are not a valid principal",
                    u(size)
                ));
            }
            let principal = read_heap(&mut c, "is_controller", u(src), u(size))?;
            Ok(c.data().env.controllers.contains(&principal) as i32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "in_replicated_execution",
        |mut c: Caller<'_, HostState>| {
            charge(&mut c, overhead::DEFAULT)?;
            let kind = c.data().ctx.kind;
            Ok(!matches!(kind, Kind::Query | Kind::CompositeQuery | Kind::Inspect) as i32)
        },
    )?;

    // Cost queries: the harness charges no cycles and reports every cost as 0.
    l.func_wrap(
        "ic0",
        "cost_call",
        |mut c: Caller<'_, HostState>, _m: i64, _p: i64, dst: i32| {
            charge(&mut c, overhead::DEFAULT)?;
            write_u128(&mut c, "cost_call", dst, 0)
        },
    )?;
    l.func_wrap(
        "ic0",
        "cost_create_canister",
        |mut c: Caller<'_, HostState>, dst: i32| {
            charge(&mut c, overhead::DEFAULT)?;
            write_u128(&mut c, "cost_create_canister", dst, 0)
        },
    )?;
    l.func_wrap(
        "ic0",
        "cost_http_request",
        |mut c: Caller<'_, HostState>, _r: i64, _m: i64, dst: i32| {
            charge(&mut c, overhead::DEFAULT)?;
            write_u128(&mut c, "cost_http_request", dst, 0)
        },
    )?;
    l.func_wrap(
        "ic0",
        "cost_http_request_v2",
        |mut c: Caller<'_, HostState>, src: i32, size: i32, dst: i32| {
            charge(&mut c, overhead::COST_HTTP_REQUEST_V2)?;
            read_heap(&mut c, "cost_http_request_v2", u(src), u(size))?;
            write_u128(&mut c, "cost_http_request_v2", dst, 0)
        },
    )?;
    for name in [
        "cost_sign_with_ecdsa",
        "cost_sign_with_schnorr",
        "cost_vetkd_derive_key",
    ] {
        l.func_wrap(
            "ic0",
            name,
            move |mut c: Caller<'_, HostState>, src: i32, size: i32, _k: i32, dst: i32| {
                charge(&mut c, overhead::DEFAULT + u(size))?;
                read_heap(&mut c, name, u(src), u(size))?;
                write_u128(&mut c, name, dst, 0)?;
                Ok(0i32)
            },
        )?;
    }

    // Environment variables (set with `Harness::set_env_var`).
    l.func_wrap("ic0", "env_var_count", |mut c: Caller<'_, HostState>| {
        charge(&mut c, overhead::DEFAULT)?;
        require(&c, "env_var_count", ALL)?;
        Ok(c.data().env.env_vars.len() as i32)
    })?;
    fn nth_name(c: &Caller<'_, HostState>, name: &str, index: i32) -> Res<Vec<u8>> {
        match c.data().env.env_vars.keys().nth(u(index) as usize) {
            Some(k) => Ok(k.as_bytes().to_vec()),
            None => violation(format!(
                "ic0.{name}: environment variable index {} is out of bounds",
                u(index)
            )),
        }
    }
    l.func_wrap(
        "ic0",
        "env_var_name_size",
        |mut c: Caller<'_, HostState>, index: i32| {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "env_var_name_size", ALL)?;
            Ok(nth_name(&c, "env_var_name_size", index)?.len() as i32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "env_var_name_copy",
        |mut c: Caller<'_, HostState>, index: i32, dst: i32, off: i32, size: i32| {
            charge(&mut c, overhead::DEFAULT + u(size))?;
            require(&c, "env_var_name_copy", ALL)?;
            let key = nth_name(&c, "env_var_name_copy", index)?;
            let Some(part) = key.get(u(off) as usize..(u(off) + u(size)) as usize) else {
                return oob("ic0.env_var_name_copy: offset + size is out of bounds of the name");
            };
            let part = part.to_vec();
            write_heap(&mut c, "env_var_name_copy", u(dst), &part)
        },
    )?;
    l.func_wrap(
        "ic0",
        "env_var_name_exists",
        |mut c: Caller<'_, HostState>, src: i32, size: i32| {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "env_var_name_exists", ALL)?;
            let key = env_var_name(&mut c, "env_var_name_exists", src, size)?;
            Ok(c.data().env.env_vars.contains_key(&key) as i32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "env_var_value_size",
        |mut c: Caller<'_, HostState>, src: i32, size: i32| {
            charge(&mut c, overhead::DEFAULT)?;
            require(&c, "env_var_value_size", ALL)?;
            Ok(env_var_value(&mut c, "env_var_value_size", src, size)?.len() as i32)
        },
    )?;
    l.func_wrap(
        "ic0",
        "env_var_value_copy",
        |mut c: Caller<'_, HostState>, src: i32, size: i32, dst: i32, off: i32, len: i32| {
            charge(&mut c, overhead::DEFAULT + u(len))?;
            require(&c, "env_var_value_copy", ALL)?;
            let value = env_var_value(&mut c, "env_var_value_copy", src, size)?;
            let Some(part) = value.get(u(off) as usize..(u(off) + u(len)) as usize) else {
                return oob("ic0.env_var_value_copy: offset + size is out of bounds of the value");
            };
            let part = part.to_vec();
            write_heap(&mut c, "env_var_value_copy", u(dst), &part)
        },
    )?;

    // Debugging.
    l.func_wrap(
        "ic0",
        "debug_print",
        |mut c: Caller<'_, HostState>, src: i32, size: i32| {
            charge(
                &mut c,
                overhead::DEBUG_PRINT + cost::logging_charge(u(size)),
            )?;
            let data = read_heap(&mut c, "debug_print", u(src), u(size))?;
            let line = String::from_utf8_lossy(&data).into_owned();
            c.data_mut().log.push(line);
            Ok(())
        },
    )?;
    l.func_wrap(
        "ic0",
        "trap",
        |mut c: Caller<'_, HostState>, src: i32, size: i32| -> Res<()> {
            charge(
                &mut c,
                overhead::DEFAULT + u(size) + cost::logging_charge(u(size)),
            )?;
            let data = read_heap(&mut c, "trap", u(src), u(size))?;
            Err(HostTrap::Trap(String::from_utf8_lossy(&data).into_owned()).into())
        },
    )?;

    Ok(l)
}
