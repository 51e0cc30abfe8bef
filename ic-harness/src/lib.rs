//! An Internet Computer emulation harness for one canister: loads the canister's real `.wasm`
//! in wasmtime and implements the `ic0` System API after the IC interface specification, so
//! that the Walsh canister can be installed, called, upgraded and *metered* without dfx or
//! PocketIC.
//!
//! ```no_run
//! use walsh_ic_harness::{Harness, Principal};
//! let wasm = std::fs::read("target/wasm32-unknown-unknown/release/walsh_canister.wasm").unwrap();
//! let admin = Principal::from_slice(&[1; 29]);
//! let mut ic = Harness::new();
//! ic.install(&wasm, &candid::encode_args(()).unwrap(), vec![admin], admin).unwrap();
//! let arg = candid::encode_args(("Once upon a time", 8u32)).unwrap();
//! let r = ic.query(admin, "generate", &arg).unwrap();
//! println!("{} instructions, heap {} bytes", r.instructions, r.heap_bytes);
//! ```
//!
//! # What is emulated
//!
//! * **Install** validates the module like the IC (only `ic0` function imports with the
//!   System API's signatures; exports `canister_query|update|composite_query <name>` and the
//!   system methods only, all `() -> ()`, no method exported twice; one memory32 memory of at
//!   most 4 GiB; `icp:public|private <name>` custom sections; the IC's limits on functions,
//!   globals, exports and custom sections), runs the start function and `canister_init`.
//! * **Updates** (ingress): the argument is limited to 2 MiB; `canister_inspect_message` runs
//!   first if exported (200 M instruction limit, its state changes discarded, the call is
//!   refused unless it calls `ic0.accept_message`); then the method runs with a 40 B
//!   instruction limit. A trap rolls back the heap, the mutable globals, stable memory,
//!   certified data, the timer and the cycle balance; a reply, a reject or no reply at all
//!   commit them. A query method called as an update runs as a replicated query (5 B limit,
//!   changes discarded).
//! * **Queries**: 5 B instruction limit, reply at most 3 MiB, every change discarded.
//! * **Upgrades**: `canister_pre_upgrade` on the old instance, then a fresh instance of the new
//!   module (fresh heap, same stable memory and certified data, timer cleared), its start
//!   function and `canister_post_upgrade(arg)`, all within one 300 B budget; any failure leaves
//!   the old module and its state untouched.
//! * **System tasks**: [`Harness::run_global_timer`] and [`Harness::run_heartbeat`] (40 B).
//!
//! # The System API
//!
//! Every function of the `ic0` crate 1.2 (what ic-cdk 0.20 may import) and the older ones the
//! replica still links — see [`ic0_function_names`] — with the spec's availability rules (e.g.
//! `msg_reply` traps in `canister_init`, `accept_message` outside `canister_inspect_message`):
//!
//! * `msg_arg_data_*`, `msg_caller_*`, `msg_method_name_*`, `canister_self_*`,
//!   `subnet_self_*`: copy the argument, the caller, the method name (inspect only), the
//!   canister id ([`Harness::set_canister_id`]), a fixed subnet id; out-of-range copies trap.
//!   `msg_caller_info_*` are empty (ingress carries no caller info).
//! * `msg_reply_data_append`, `msg_reply`, `msg_reject`: build the [`Reply`]; replying twice
//!   traps; a reply above the limit traps with [`CallError::ReplyTooLarge`]. `msg_reject_code`
//!   and `msg_reject_msg_*` exist only in callbacks, which the harness has none of: they trap.
//! * `accept_message`: accepts the message in `canister_inspect_message` (twice traps).
//! * `stable64_size/grow/read/write` and the 32-bit `stable_*`: 64 KiB pages, grow returns the
//!   old size or -1 beyond the limit ([`Limits::max_stable_bytes`], 500 GiB by default; 4 GiB
//!   for the 32-bit API), out-of-bounds reads and writes trap.
//! * `performance_counter(0|1)`: the instructions executed so far in this execution, counted
//!   as described below (type 1, the call context, is the same number: no awaits here); other
//!   types trap.
//! * `time`: the harness clock ([`Harness::set_time`], [`Harness::advance_time`]), constant
//!   during a message. `global_timer_set`: sets the timer, returns the previous one;
//!   [`Harness::run_global_timer`] fires it. `canister_version`: see below.
//!   `canister_status`: 1 (running).
//! * `is_controller`: whether the principal is one of [`Harness::controllers`].
//! * `debug_print`: appended to [`Harness::debug_log`] (kept even if the message traps).
//! * `trap`: ends the execution with [`CallError::Trap`] carrying the message — which is how
//!   ic-cdk reports Rust panics.
//! * `certified_data_set`: stored (at most 32 bytes), [`Harness::certified_data`]. Non-replicated
//!   queries get a data certificate (`data_certificate_present` 1, `size/copy`): a certificate
//!   of the certified data and the time, signed by the harness's root key
//!   ([`Harness::root_key_der`]; `certificate.rs`). Elsewhere none, as on the IC.
//! * Cycles: `canister_cycle_balance128` (and liquid) return [`Harness::set_cycle_balance`]'s
//!   balance (0 by default), `msg_cycles_available128`/`accept128` 0 (ingress carries no
//!   cycles), `cycles_burn128` burns from the balance; `cost_*` report 0 cycles.
//! * `env_var_*`: the variables set with [`Harness::set_env_var`].
//! * `in_replicated_execution`: 0 in queries and inspect, 1 elsewhere.
//! * `call_*` (inter-canister calls), `root_key_*` and `mint_cycles128` link, so a module
//!   importing them installs, but trap with [`CallError::Unsupported`] (or a contract
//!   violation) when actually called.
//!
//! # Instruction counting
//!
//! The harness meters like the IC, not with wasmtime fuel: the module is instrumented before
//! compilation (`instrument.rs` in this directory) with a counter that every basic block
//! decrements by its static cost, using the IC's per-instruction weights ([`cost`] lists them
//! with their source), checks at function entries and loop headers, and a trap when the
//! message's limit is exceeded ([`CallError::InstructionLimit`]). System API calls add the
//! IC's fixed overheads and per-byte costs. Both numbers a canister and a test see come from
//! this one counter: `ic0.performance_counter(0)` inside the canister (instructions so far,
//! including the 200 the call itself costs and the whole current basic block, as on the IC)
//! and [`CallReport::instructions`] after it (everything up to the end of the method,
//! including the reply's cost). **`CallReport::instructions` is the figure to publish.**
//!
//! ## How the count differs from the real IC
//!
//! The weights, the basic-block rules and the System API charges are taken from the IC's
//! source (`cost` cites the files), so on the same module the two counts should agree to
//! within a fraction of a percent, but they are not guaranteed identical:
//!
//! * the IC meters bulk memory operations through an injected helper function and replaces the
//!   stable-memory calls with injected (unmetered) Wasm code; the harness charges the same
//!   amounts (length + 100; 20 + length + 1_000 per newly dirtied 4 KiB page; 100 per grow)
//!   inline and in the host;
//! * the `debug_print`/`trap` log charge is capped at the 4 KiB log capacity (the IC caps at the
//!   space left in the canister log) and assumes an application subnet (no extra charge for
//!   printing to the replica log);
//! * not counted: the compilation charge at install (`cost_to_compile_wasm_instruction` per
//!   instruction), per-execution and per-round scheduler overheads (they count against round
//!   limits, not the message), and anything the IC may charge that is newer than the source
//!   read (`cost` names the commit);
//! * deterministic time slicing is not modelled: an update simply runs up to its 40 B limit.
//!
//! ## Other differences
//!
//! * Ingress size: only the argument is compared with the 2 MiB limit (the IC counts the whole
//!   signed message). Query arguments are not limited. Modules must be raw Wasm (no gzip).
//! * A query called as an update (replicated query) gets the 5 B query limit.
//! * System tasks (timer, heartbeat) see the management canister (`aaaaa-aa`) as caller.
//! * `canister_version` is 1 during and after install, +1 per upgrade (visible in
//!   post_upgrade) and after each successful update or system task.
//! * The harness keeps one instance and snapshots the heap (a copy) before every execution to
//!   roll it back; the IC instead re-instantiates per message, so Wasm table mutations would
//!   persist here (Rust canisters never make any). The copy costs time proportional to the
//!   heap: about 40 ms per query for the Walsh canister's 36 MB heap.
//! * Not emulated: inter-canister calls, certificates, cycle charging and the freezing
//!   threshold, per-message dirty/accessed page limits, heap-delta rate limits, Wasm64.

mod certificate;
pub mod cost;
mod instrument;
mod stable;
mod system_api;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub use candid::Principal;
use wasmtime::{Config, Engine, Global, Instance, InstancePre, Memory, Store, Val};

pub use system_api::{CANISTER_REJECT, ic0_function_names, ic0_functions};

use instrument::{
    COUNTER_EXPORT, FUNCTION_EXPORT_PREFIX, GLOBAL_EXPORT_PREFIX, MEMORY_EXPORT, ModuleInfo,
    START_EXPORT,
};
use stable::PAGE;
use system_api::{Env, ExecCtx, HeapLimiter, HostState, HostTrap, Kind, SysState};

/// The IC's limit on the Wasm stack of a canister (`MAX_WASM_STACK_SIZE`, 5 MiB).
const MAX_WASM_STACK: usize = 5 * 1024 * 1024;
/// The stack of the thread each execution runs on (Wasm stack plus room for the host).
const EXEC_THREAD_STACK: usize = MAX_WASM_STACK + 8 * 1024 * 1024;

/// Instruction and size limits. [`Limits::default`] has the IC's values for an application
/// subnet; tests may lower them with [`Harness::set_limits`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Instructions for an update (and heartbeat/timer) execution: 40 B.
    pub update: u64,
    /// Instructions for a query: 5 B.
    pub query: u64,
    /// Instructions for `canister_inspect_message`: 200 M.
    pub inspect: u64,
    /// Instructions for an install or an upgrade (start + init, or pre_upgrade + start +
    /// post_upgrade): 300 B.
    pub install: u64,
    /// Largest ingress argument: 2 MiB.
    pub max_ingress_bytes: usize,
    /// Largest reply of an update: 2 MiB.
    pub max_update_reply_bytes: u64,
    /// Largest reply of a query: 3 MiB.
    pub max_query_reply_bytes: u64,
    /// Largest heap: 4 GiB (the memory32 maximum).
    pub max_heap_bytes: u64,
    /// Largest stable memory: 500 GiB.
    pub max_stable_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        const MIB: u64 = 1024 * 1024;
        Limits {
            update: 40_000_000_000,
            query: 5_000_000_000,
            inspect: 200_000_000,
            install: 300_000_000_000,
            max_ingress_bytes: 2 * MIB as usize,
            max_update_reply_bytes: 2 * MIB,
            max_query_reply_bytes: 3 * MIB,
            max_heap_bytes: 4 * 1024 * MIB,
            max_stable_bytes: 500 * 1024 * MIB,
        }
    }
}

/// The response of a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `ic0.msg_reply` with these bytes (empty for install and upgrade).
    Data(Vec<u8>),
    /// `ic0.msg_reject`: `code` is [`CANISTER_REJECT`] (4).
    Reject { code: u32, message: String },
}

/// The result of a successful call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallReport {
    pub reply: Reply,
    /// Instructions the execution used, counted like the IC (see the module docs). For an
    /// update this excludes `canister_inspect_message`; for an install it is start + init; for
    /// an upgrade pre_upgrade + start + post_upgrade.
    pub instructions: u64,
    /// Size of the heap (Wasm memory) at the end of the execution, in bytes.
    pub heap_bytes: u64,
    /// Size of stable memory at the end of the execution, in bytes.
    pub stable_bytes: u64,
}

impl CallReport {
    /// The reply bytes; `None` for a reject.
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.reply {
            Reply::Data(d) => Some(d),
            Reply::Reject { .. } => None,
        }
    }

    /// Decodes a single Candid value from the reply.
    pub fn decode<T>(&self) -> candid::Result<T>
    where
        T: candid::CandidType + for<'de> candid::Deserialize<'de>,
    {
        match &self.reply {
            Reply::Data(d) => candid::decode_one(d),
            Reply::Reject { code, message } => Err(candid::Error::msg(format!(
                "the call was rejected (code {code}): {message}"
            ))),
        }
    }
}

/// Why a call failed. State changes of the failed execution are rolled back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The canister called `ic0.trap` (a Rust panic under ic-cdk) with this message.
    #[error("canister trapped: {0}")]
    Trap(String),
    /// A Wasm trap (unreachable, out-of-bounds access, division by zero, stack overflow, ...)
    /// or an out-of-bounds heap/stable-memory range given to the System API.
    #[error("canister trapped: {0}")]
    WasmTrap(String),
    /// The execution ran past its instruction limit.
    #[error("instruction limit of {limit} exceeded")]
    InstructionLimit { limit: u64 },
    /// The canister broke the System API contract (e.g. replied twice, called an API not
    /// available in this kind of execution).
    #[error("System API contract violation: {0}")]
    ContractViolation(String),
    /// The canister used something the harness does not emulate (inter-canister calls).
    #[error("not supported by the harness: {0}")]
    Unsupported(String),
    /// `canister_inspect_message` trapped or did not accept the message.
    #[error("the canister refused the message: {0}")]
    InspectRejected(String),
    /// The ingress argument is larger than [`Limits::max_ingress_bytes`].
    #[error("ingress argument of {size} bytes exceeds {limit} bytes")]
    IngressTooLarge { size: usize, limit: usize },
    /// The reply is larger than allowed (2 MiB for updates, 3 MiB for queries).
    #[error("reply of {size} bytes exceeds {limit} bytes")]
    ReplyTooLarge { size: u64, limit: u64 },
    /// The canister exports no method of that name and kind.
    #[error("{0}")]
    NoSuchMethod(String),
    /// The method returned without replying or rejecting.
    #[error("the canister did not reply to the call")]
    NoReply,
    /// The module failed validation or compilation.
    #[error("invalid canister module: {0}")]
    InvalidModule(String),
    /// No module is installed.
    #[error("no canister module is installed")]
    NotInstalled,
    /// `install` on a canister that already has a module.
    #[error("a module is already installed; use upgrade or reinstall")]
    AlreadyInstalled,
    /// Install, reinstall and upgrade need a controller.
    #[error("{0} is not a controller of the canister")]
    NotController(Principal),
    /// An internal wasmtime failure (a bug in the harness).
    #[error("harness error: {0}")]
    Harness(String),
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config
            .wasm_simd(true)
            .wasm_relaxed_simd(false)
            .wasm_bulk_memory(true)
            .wasm_multi_value(true)
            .wasm_multi_memory(false)
            .wasm_memory64(false)
            .wasm_tail_call(false)
            .cranelift_nan_canonicalization(true)
            .max_wasm_stack(MAX_WASM_STACK);
        Engine::new(&config).expect("the wasmtime configuration is valid")
    })
}

fn linker() -> &'static wasmtime::Linker<HostState> {
    static LINKER: OnceLock<wasmtime::Linker<HostState>> = OnceLock::new();
    LINKER.get_or_init(|| system_api::linker(engine()).expect("the ic0 host functions link"))
}

/// A validated, instrumented and compiled module.
struct Compiled {
    pre: InstancePre<HostState>,
    info: ModuleInfo,
    /// With per-function counters ([`Harness::set_function_profile`]): the defined functions'
    /// names, by defined index.
    profile: Option<Vec<String>>,
}

/// Validates, instruments (with per-function counters if `profile`) and compiles `wasm`, reusing
/// earlier compilations of the same bytes (across harnesses: compiling a large canister takes
/// seconds).
fn compile(wasm: &[u8], profile: bool) -> Result<Arc<Compiled>, CallError> {
    type Cache = Mutex<HashMap<(Vec<u8>, bool), Arc<Compiled>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (wasm.to_vec(), profile);
    if let Some(c) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(c.clone());
    }
    let info = instrument::validate(wasm).map_err(CallError::InvalidModule)?;
    let instrumented =
        instrument::instrument(wasm, &info, profile).map_err(CallError::InvalidModule)?;
    let profile = profile.then(|| instrument::function_names(wasm, &info));
    let module = wasmtime::Module::new(engine(), &instrumented)
        .map_err(|e| CallError::InvalidModule(format!("wasmtime rejected the module: {e:#}")))?;
    let pre = linker()
        .instantiate_pre(&module)
        .map_err(|e| CallError::InvalidModule(format!("linking failed: {e:#}")))?;
    let compiled = Arc::new(Compiled { pre, info, profile });
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, compiled.clone());
    Ok(compiled)
}

/// Heap, globals and rollback-able system state at one point.
struct Snapshot {
    heap: Vec<u8>,
    globals: Vec<Val>,
    sys: SysState,
}

/// What one execution did.
struct Outcome {
    result: Result<(), CallError>,
    response: Option<Reply>,
    accepted: bool,
    instructions: u64,
}

/// An instantiated canister module.
struct Live {
    compiled: Arc<Compiled>,
    store: Store<HostState>,
    instance: Instance,
    counter: Global,
    memory: Option<Memory>,
    globals: Vec<Global>,
    /// The per-function counters (profiling only), by defined index.
    functions: Vec<Global>,
}

impl Live {
    fn new(compiled: Arc<Compiled>, state: HostState) -> Result<Live, String> {
        debug_assert!(
            state.limiter.max_heap_bytes > 0,
            "the heap limit must be set"
        );
        let mut store = Store::new(engine(), state);
        store.limiter(|s| &mut s.limiter);
        let instance = compiled
            .pre
            .instantiate(&mut store)
            .map_err(|e| format!("instantiation failed: {e:#}"))?;
        let counter = instance
            .get_global(&mut store, COUNTER_EXPORT)
            .ok_or("the instruction counter is missing")?;
        let memory = instance.get_memory(&mut store, MEMORY_EXPORT);
        let mut globals = Vec::new();
        for g in &compiled.info.mutable_globals {
            let name = format!("{GLOBAL_EXPORT_PREFIX}{g}");
            globals.push(
                instance
                    .get_global(&mut store, &name)
                    .ok_or("a mutable global export is missing")?,
            );
        }
        let mut functions = Vec::new();
        for k in 0..compiled.profile.as_ref().map_or(0, Vec::len) {
            let name = format!("{FUNCTION_EXPORT_PREFIX}{k}");
            functions.push(
                instance
                    .get_global(&mut store, &name)
                    .ok_or("a function counter export is missing")?,
            );
        }
        store.data_mut().counter = Some(counter);
        store.data_mut().memory = memory;
        Ok(Live {
            compiled,
            store,
            instance,
            counter,
            memory,
            globals,
            functions,
        })
    }

    fn info(&self) -> &ModuleInfo {
        &self.compiled.info
    }

    fn heap_bytes(&self) -> u64 {
        self.memory.map_or(0, |m| m.data_size(&self.store) as u64)
    }

    fn stable_bytes(&self) -> u64 {
        self.store.data().sys.stable.len()
    }

    fn snapshot(&mut self) -> Snapshot {
        let heap = self
            .memory
            .map_or_else(Vec::new, |m| m.data(&self.store).to_vec());
        let globals = self
            .globals
            .iter()
            .map(|g| g.get(&mut self.store))
            .collect();
        Snapshot {
            heap,
            globals,
            sys: self.store.data().sys.clone(),
        }
    }

    fn restore(&mut self, snap: &Snapshot) -> Result<(), CallError> {
        if self.heap_bytes() != snap.heap.len() as u64 {
            // Wasm memories cannot shrink: continue on a fresh instance of the same module.
            let state = std::mem::take(self.store.data_mut());
            *self = Live::new(self.compiled.clone(), state).map_err(CallError::Harness)?;
            if let Some(m) = self.memory {
                let have = m.data_size(&self.store) as u64;
                let want = snap.heap.len() as u64;
                if want > have {
                    m.grow(&mut self.store, (want - have) / PAGE)
                        .map_err(|e| CallError::Harness(format!("restoring the heap: {e:#}")))?;
                }
            }
            if self.heap_bytes() != snap.heap.len() as u64 {
                return Err(CallError::Harness(
                    "the restored heap has the wrong size".into(),
                ));
            }
        }
        if let Some(m) = self.memory {
            m.data_mut(&mut self.store).copy_from_slice(&snap.heap);
        }
        for (g, v) in self.globals.iter().zip(&snap.globals) {
            g.set(&mut self.store, *v)
                .map_err(|e| CallError::Harness(format!("restoring a global: {e:#}")))?;
        }
        self.store.data_mut().sys = snap.sys.clone();
        Ok(())
    }

    fn exports(&self, export: &str) -> bool {
        match export {
            START_EXPORT => self.info().has_start,
            _ => self.info().exports(export),
        }
    }

    /// Runs `export` with `ctx` (whose `limit` is the instruction limit) on a thread with a
    /// stack large enough for the IC's 5 MiB Wasm stack.
    fn execute(&mut self, env: &Env, limits: &Limits, export: &str, ctx: ExecCtx) -> Outcome {
        let limit = ctx.limit;
        {
            let state = self.store.data_mut();
            state.env = env.clone();
            state.limiter = HeapLimiter {
                max_heap_bytes: limits.max_heap_bytes,
            };
            state.ctx = ctx;
        }
        let run = |live: &mut Live| -> wasmtime::Result<()> {
            let start = i64::try_from(limit).unwrap_or(i64::MAX);
            live.counter.set(&mut live.store, Val::I64(start))?;
            let f = live
                .instance
                .get_typed_func::<(), ()>(&mut live.store, export)?;
            f.call(&mut live.store, ())
        };
        let result = std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("ic-canister".into())
                .stack_size(EXEC_THREAD_STACK)
                .spawn_scoped(s, || run(self))
                .expect("spawning the execution thread")
                .join()
        })
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let left = self.counter.get(&mut self.store).unwrap_i64();
        // Move the per-function counts into the profile (the counters restart at 0 for the
        // next execution, whatever rollback follows).
        if !self.functions.is_empty() {
            let mut counts = std::mem::take(&mut self.store.data_mut().function_profile);
            counts.resize(self.functions.len(), 0);
            for (g, total) in self.functions.iter().zip(&mut counts) {
                *total += g.get(&mut self.store).unwrap_i64().max(0) as u64;
                let _ = g.set(&mut self.store, Val::I64(0));
            }
            self.store.data_mut().function_profile = counts;
        }
        let used = (i64::try_from(limit).unwrap_or(i64::MAX))
            .saturating_sub(left)
            .max(0) as u64;
        let ctx = std::mem::take(&mut self.store.data_mut().ctx);
        Outcome {
            result: result.map_err(|e| classify(e, limit)),
            response: ctx.response,
            accepted: ctx.accepted,
            instructions: used.min(limit),
        }
    }
}

fn classify(e: wasmtime::Error, limit: u64) -> CallError {
    if let Some(t) = e.downcast_ref::<HostTrap>() {
        return match t {
            HostTrap::Trap(m) => CallError::Trap(m.clone()),
            HostTrap::OutOfInstructions => CallError::InstructionLimit { limit },
            HostTrap::ReplyTooLarge { size, limit } => CallError::ReplyTooLarge {
                size: *size,
                limit: *limit,
            },
            HostTrap::ContractViolation(m) => CallError::ContractViolation(m.clone()),
            HostTrap::OutOfBounds(m) => CallError::WasmTrap(m.clone()),
            HostTrap::Unsupported(m) => CallError::Unsupported(m.clone()),
        };
    }
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        let backtrace = e
            .downcast_ref::<wasmtime::WasmBacktrace>()
            .map(|b| format!("\n{b}"))
            .unwrap_or_default();
        return CallError::WasmTrap(format!("{trap}{backtrace}"));
    }
    CallError::WasmTrap(format!("{e:#}"))
}

/// One canister on an emulated Internet Computer.
pub struct Harness {
    limits: Limits,
    env: Env,
    cycles: u128,
    canister: Option<Live>,
    log: Vec<String>,
    root_key: certificate::RootKey,
    /// Whether modules installed from now on count instructions per function.
    function_profile: bool,
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// 2025-01-01T00:00:00Z in nanoseconds: the harness clock's default.
const DEFAULT_TIME_NANOS: u64 = 1_735_689_600_000_000_000;

impl Harness {
    /// An empty canister (`rrkah-fqaaa-aaaaa-aaaaq-cai`) with the IC's default limits.
    pub fn new() -> Self {
        let limits = Limits::default();
        let mut subnet = vec![0x5a; 28];
        subnet.push(0x02); // self-authenticating, like a subnet id
        Harness {
            env: Env {
                canister_id: vec![0, 0, 0, 0, 0, 0, 0, 1, 1, 1],
                subnet_id: subnet,
                controllers: Vec::new(),
                time: DEFAULT_TIME_NANOS,
                version: 0,
                env_vars: Default::default(),
                max_stable_pages: limits.max_stable_bytes / PAGE,
            },
            limits,
            cycles: 0,
            canister: None,
            log: Vec::new(),
            root_key: certificate::RootKey::default(),
            function_profile: false,
        }
    }

    /// The root public key (DER) that signs the data certificates queries get: what an HTTP
    /// gateway or agent checks certificates against, as the IC's root key on mainnet.
    pub fn root_key_der(&self) -> Vec<u8> {
        self.root_key.public_key_der()
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Replaces the limits (e.g. a lower query limit so that a runaway-loop test is quick).
    pub fn set_limits(&mut self, limits: Limits) {
        self.env.max_stable_pages = limits.max_stable_bytes / PAGE;
        self.limits = limits;
    }

    /// The canister's id.
    pub fn canister_id(&self) -> Principal {
        Principal::from_slice(&self.env.canister_id)
    }

    /// Sets the canister's id (`ic0.canister_self_*`).
    pub fn set_canister_id(&mut self, id: Principal) {
        self.env.canister_id = id.as_slice().to_vec();
    }

    /// The controllers.
    pub fn controllers(&self) -> Vec<Principal> {
        self.env
            .controllers
            .iter()
            .map(|c| Principal::from_slice(c))
            .collect()
    }

    /// Replaces the controllers (as `update_settings` would).
    pub fn set_controllers(&mut self, controllers: Vec<Principal>) {
        self.env.controllers = controllers.iter().map(|p| p.as_slice().to_vec()).collect();
    }

    /// The clock, in nanoseconds since the Unix epoch.
    pub fn time(&self) -> u64 {
        self.env.time
    }

    /// Sets the clock (nanoseconds since the Unix epoch).
    pub fn set_time(&mut self, nanos: u64) {
        self.env.time = nanos;
    }

    /// Moves the clock forward.
    pub fn advance_time(&mut self, by: Duration) {
        self.env.time = self.env.time.saturating_add(by.as_nanos() as u64);
    }

    /// Sets an environment variable (`ic0.env_var_*`).
    pub fn set_env_var(&mut self, name: &str, value: &str) {
        self.env.env_vars.insert(name.into(), value.into());
    }

    /// The canister version (`ic0.canister_version`).
    pub fn canister_version(&self) -> u64 {
        self.env.version
    }

    /// The cycle balance.
    pub fn cycle_balance(&self) -> u128 {
        match &self.canister {
            Some(live) => live.store.data().sys.cycles,
            None => self.cycles,
        }
    }

    /// Sets the cycle balance.
    pub fn set_cycle_balance(&mut self, cycles: u128) {
        self.cycles = cycles;
        if let Some(live) = &mut self.canister {
            live.store.data_mut().sys.cycles = cycles;
        }
    }

    /// Lines the canister printed with `ic0.debug_print`, oldest first.
    pub fn debug_log(&self) -> &[String] {
        &self.log
    }

    /// Takes the debug log, leaving it empty.
    pub fn take_debug_log(&mut self) -> Vec<String> {
        std::mem::take(&mut self.log)
    }

    /// Whether a module is installed.
    pub fn is_installed(&self) -> bool {
        self.canister.is_some()
    }

    /// The `candid:service` metadata (the `icp:public candid:service` or
    /// `icp:private candid:service` custom section), if the module has it.
    pub fn candid_service_metadata(&self) -> Option<String> {
        self.metadata("candid:service")
            .map(|d| String::from_utf8_lossy(d).into_owned())
    }

    /// An `icp:public <name>` / `icp:private <name>` custom section of the module.
    pub fn metadata(&self, name: &str) -> Option<&[u8]> {
        self.canister
            .as_ref()?
            .info()
            .metadata
            .get(name)
            .map(|s| s.data.as_slice())
    }

    /// Whether the metadata section `name` is public (`icp:public`).
    pub fn metadata_is_public(&self, name: &str) -> Option<bool> {
        Some(self.canister.as_ref()?.info().metadata.get(name)?.public)
    }

    /// The update methods the module exports.
    pub fn update_methods(&self) -> Vec<String> {
        self.canister
            .as_ref()
            .map_or_else(Vec::new, |c| c.info().updates.iter().cloned().collect())
    }

    /// The query (and composite query) methods the module exports.
    pub fn query_methods(&self) -> Vec<String> {
        self.canister.as_ref().map_or_else(Vec::new, |c| {
            let info = c.info();
            info.queries
                .iter()
                .chain(&info.composite_queries)
                .cloned()
                .collect()
        })
    }

    /// The heap size in bytes (0 when nothing is installed).
    pub fn heap_bytes(&self) -> u64 {
        self.canister.as_ref().map_or(0, Live::heap_bytes)
    }

    /// The stable memory size in bytes.
    pub fn stable_bytes(&self) -> u64 {
        self.canister.as_ref().map_or(0, Live::stable_bytes)
    }

    /// Reads stable memory (for assertions); `None` if out of bounds or not installed.
    pub fn read_stable(&self, offset: u64, len: usize) -> Option<Vec<u8>> {
        let stable = &self.canister.as_ref()?.store.data().sys.stable;
        if !stable.in_bounds(offset, len as u64) {
            return None;
        }
        let mut out = vec![0; len];
        stable.read(offset, &mut out);
        Some(out)
    }

    /// The certified data last set with `ic0.certified_data_set`.
    pub fn certified_data(&self) -> Vec<u8> {
        self.canister
            .as_ref()
            .map_or_else(Vec::new, |c| c.store.data().sys.certified_data.clone())
    }

    /// The global timer's deadline (nanoseconds), if set.
    pub fn global_timer(&self) -> Option<u64> {
        let t = self.canister.as_ref()?.store.data().sys.global_timer;
        (t != 0).then_some(t)
    }

    fn heap_limiter(&self) -> HeapLimiter {
        HeapLimiter {
            max_heap_bytes: self.limits.max_heap_bytes,
        }
    }

    fn check_controller(&self, caller: Principal) -> Result<(), CallError> {
        if self.env.controllers.iter().any(|c| c == caller.as_slice()) {
            Ok(())
        } else {
            Err(CallError::NotController(caller))
        }
    }

    fn ctx(&self, kind: Kind, caller: &[u8], method: &str, arg: &[u8], limit: u64) -> ExecCtx {
        let max_reply = match kind {
            Kind::Query | Kind::CompositeQuery => self.limits.max_query_reply_bytes,
            _ => self.limits.max_update_reply_bytes,
        };
        ExecCtx {
            kind,
            caller: caller.to_vec(),
            method: method.to_string(),
            arg: arg.to_vec(),
            limit,
            max_reply,
            ..Default::default()
        }
    }

    fn drain_log(&mut self, live: &mut Live) {
        self.log.append(&mut live.store.data_mut().log);
    }

    /// Counts, from the next install, reinstall or upgrade on, the instructions each function
    /// of the module executes itself (its callees not included), over all executions until
    /// [`take_function_profile`](Self::take_function_profile). The counts add up to the
    /// metered instructions, less the fixed costs of system API calls; the metering itself is
    /// unchanged. Compiling a profiled module takes longer (one counter a function).
    pub fn set_function_profile(&mut self, on: bool) {
        self.function_profile = on;
    }

    /// The instructions each function executed since profiling started or the last take,
    /// largest first (functions that executed none are left out), and restarts the counts.
    /// Empty unless the installed module was compiled with [`set_function_profile`](Self::set_function_profile).
    pub fn take_function_profile(&mut self) -> Vec<(String, u64)> {
        let Some(live) = self.canister.as_mut() else {
            return Vec::new();
        };
        let counts = std::mem::take(&mut live.store.data_mut().function_profile);
        let names = live.compiled.profile.as_deref().unwrap_or(&[]);
        let mut out: Vec<(String, u64)> = names
            .iter()
            .zip(counts)
            .filter(|(_, c)| *c > 0)
            .map(|(n, c)| (n.clone(), c))
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// Installs `wasm` on the empty canister with these controllers and runs its start
    /// function and `canister_init(arg)` as `caller`, which must be a controller. On failure
    /// the canister stays empty.
    pub fn install(
        &mut self,
        wasm: &[u8],
        arg: &[u8],
        controllers: Vec<Principal>,
        caller: Principal,
    ) -> Result<CallReport, CallError> {
        if self.canister.is_some() {
            return Err(CallError::AlreadyInstalled);
        }
        let previous = std::mem::take(&mut self.env.controllers);
        self.set_controllers(controllers);
        let result = self.install_fresh(wasm, arg, caller);
        if result.is_err() {
            self.env.controllers = previous;
        }
        result
    }

    /// Replaces the module and wipes the heap and stable memory (install mode `reinstall`).
    /// On failure the old module and state are kept.
    pub fn reinstall(
        &mut self,
        wasm: &[u8],
        arg: &[u8],
        caller: Principal,
    ) -> Result<CallReport, CallError> {
        self.check_controller(caller)?;
        self.cycles = self.cycle_balance();
        let old = self.canister.take();
        let result = self.install_fresh(wasm, arg, caller);
        if result.is_err() {
            self.canister = old;
        }
        result
    }

    fn install_fresh(
        &mut self,
        wasm: &[u8],
        arg: &[u8],
        caller: Principal,
    ) -> Result<CallReport, CallError> {
        self.check_controller(caller)?;
        let compiled = compile(wasm, self.function_profile)?;
        let mut env = self.env.clone();
        env.version += 1;
        let state = HostState {
            sys: SysState {
                cycles: self.cycle_balance(),
                ..Default::default()
            },
            limiter: self.heap_limiter(),
            ..Default::default()
        };
        let mut live = Live::new(compiled, state).map_err(CallError::InvalidModule)?;
        let mut budget = self.limits.install;
        let mut total = 0;
        for (export, kind, arg) in [
            (START_EXPORT, Kind::Start, &[][..]),
            ("canister_init", Kind::Init, arg),
        ] {
            if !live.exports(export) {
                continue;
            }
            let ctx = self.ctx(kind, caller.as_slice(), "", arg, budget);
            let out = live.execute(&env, &self.limits, export, ctx);
            self.drain_log(&mut live);
            total += out.instructions;
            budget -= out.instructions;
            out.result?;
        }
        self.env.version = env.version;
        let report = CallReport {
            reply: Reply::Data(Vec::new()),
            instructions: total,
            heap_bytes: live.heap_bytes(),
            stable_bytes: live.stable_bytes(),
        };
        self.canister = Some(live);
        Ok(report)
    }

    /// Upgrades to `new_wasm`: `canister_pre_upgrade` on the old instance, a fresh instance of
    /// the new module with the same stable memory, its start function, then
    /// `canister_post_upgrade(arg)`. `caller` must be a controller. Any failure (a trap, the
    /// 300 B instruction limit, an invalid module) leaves the old module and state in place.
    pub fn upgrade(
        &mut self,
        new_wasm: &[u8],
        arg: &[u8],
        caller: Principal,
    ) -> Result<CallReport, CallError> {
        self.check_controller(caller)?;
        let compiled = compile(new_wasm, self.function_profile)?;
        let mut old = self.canister.take().ok_or(CallError::NotInstalled)?;
        let snap = old.snapshot();
        match self.upgrade_to(&mut old, compiled, arg, caller) {
            Ok((new, report)) => {
                self.canister = Some(new);
                Ok(report)
            }
            Err(e) => {
                let restored = old.restore(&snap);
                self.canister = Some(old);
                restored?;
                Err(e)
            }
        }
    }

    fn upgrade_to(
        &mut self,
        old: &mut Live,
        compiled: Arc<Compiled>,
        arg: &[u8],
        caller: Principal,
    ) -> Result<(Live, CallReport), CallError> {
        let mut budget = self.limits.install;
        let mut total = 0;
        if old.exports("canister_pre_upgrade") {
            let ctx = self.ctx(Kind::PreUpgrade, caller.as_slice(), "", &[], budget);
            let env = self.env.clone();
            let out = old.execute(&env, &self.limits, "canister_pre_upgrade", ctx);
            self.drain_log(old);
            total += out.instructions;
            budget -= out.instructions;
            out.result?;
        }
        let mut sys = old.store.data().sys.clone();
        sys.global_timer = 0;
        let state = HostState {
            sys,
            limiter: self.heap_limiter(),
            ..Default::default()
        };
        let mut new = Live::new(compiled, state).map_err(CallError::InvalidModule)?;
        let mut env = self.env.clone();
        env.version += 1;
        for (export, kind, arg) in [
            (START_EXPORT, Kind::Start, &[][..]),
            ("canister_post_upgrade", Kind::Init, arg),
        ] {
            if !new.exports(export) {
                continue;
            }
            let ctx = self.ctx(kind, caller.as_slice(), "", arg, budget);
            let out = new.execute(&env, &self.limits, export, ctx);
            self.drain_log(&mut new);
            total += out.instructions;
            budget -= out.instructions;
            out.result?;
        }
        self.env.version = env.version;
        let report = CallReport {
            reply: Reply::Data(Vec::new()),
            instructions: total,
            heap_bytes: new.heap_bytes(),
            stable_bytes: new.stable_bytes(),
        };
        Ok((new, report))
    }

    /// An ingress update call of `method` by `caller` (see the module docs for the steps).
    pub fn update(
        &mut self,
        caller: Principal,
        method: &str,
        arg: &[u8],
    ) -> Result<CallReport, CallError> {
        if arg.len() > self.limits.max_ingress_bytes {
            return Err(CallError::IngressTooLarge {
                size: arg.len(),
                limit: self.limits.max_ingress_bytes,
            });
        }
        let mut live = self.canister.take().ok_or(CallError::NotInstalled)?;
        let result = self.update_on(&mut live, caller, method, arg);
        self.canister = Some(live);
        result
    }

    fn update_on(
        &mut self,
        live: &mut Live,
        caller: Principal,
        method: &str,
        arg: &[u8],
    ) -> Result<CallReport, CallError> {
        let info = live.info();
        let kind = if info.updates.contains(method) {
            Kind::Update
        } else if info.queries.contains(method) {
            Kind::ReplicatedQuery
        } else if info.composite_queries.contains(method) {
            return Err(CallError::NoSuchMethod(format!(
                "composite query method `{method}` cannot be called in replicated mode"
            )));
        } else {
            return Err(CallError::NoSuchMethod(format!(
                "the canister has no update method `{method}`"
            )));
        };
        let snap = live.snapshot();
        if live.exports("canister_inspect_message") {
            let ctx = self.ctx(
                Kind::Inspect,
                caller.as_slice(),
                method,
                arg,
                self.limits.inspect,
            );
            let out = live.execute(&self.env, &self.limits, "canister_inspect_message", ctx);
            self.drain_log(live);
            live.restore(&snap)?;
            match out.result {
                Err(e) => {
                    return Err(CallError::InspectRejected(format!(
                        "canister_inspect_message failed: {e}"
                    )));
                }
                Ok(()) if !out.accepted => {
                    return Err(CallError::InspectRejected(
                        "canister_inspect_message did not call ic0.accept_message".into(),
                    ));
                }
                Ok(()) => {}
            }
        }
        let (export, limit) = match kind {
            Kind::Update => (format!("canister_update {method}"), self.limits.update),
            _ => (format!("canister_query {method}"), self.limits.query),
        };
        let ctx = self.ctx(kind, caller.as_slice(), method, arg, limit);
        let out = live.execute(&self.env, &self.limits, &export, ctx);
        self.drain_log(live);
        let heap_bytes = live.heap_bytes();
        let stable_bytes = live.stable_bytes();
        if out.result.is_err() || kind == Kind::ReplicatedQuery {
            live.restore(&snap)?;
        }
        out.result?;
        if kind == Kind::Update {
            self.env.version += 1;
        }
        let reply = out.response.ok_or(CallError::NoReply)?;
        Ok(CallReport {
            reply,
            instructions: out.instructions,
            heap_bytes,
            stable_bytes,
        })
    }

    /// A query call of `method` (a query or composite query) by `caller`. All changes are
    /// discarded.
    pub fn query(
        &mut self,
        caller: Principal,
        method: &str,
        arg: &[u8],
    ) -> Result<CallReport, CallError> {
        let mut live = self.canister.take().ok_or(CallError::NotInstalled)?;
        let result = self.query_on(&mut live, caller, method, arg);
        self.canister = Some(live);
        result
    }

    fn query_on(
        &mut self,
        live: &mut Live,
        caller: Principal,
        method: &str,
        arg: &[u8],
    ) -> Result<CallReport, CallError> {
        let info = live.info();
        let (kind, export) = if info.queries.contains(method) {
            (Kind::Query, format!("canister_query {method}"))
        } else if info.composite_queries.contains(method) {
            (
                Kind::CompositeQuery,
                format!("canister_composite_query {method}"),
            )
        } else {
            return Err(CallError::NoSuchMethod(format!(
                "the canister has no query method `{method}`"
            )));
        };
        let snap = live.snapshot();
        let mut ctx = self.ctx(kind, caller.as_slice(), method, arg, self.limits.query);
        ctx.data_certificate = Some(self.root_key.data_certificate(
            &self.env.canister_id,
            &live.store.data().sys.certified_data,
            self.env.time,
        ));
        let out = live.execute(&self.env, &self.limits, &export, ctx);
        self.drain_log(live);
        let heap_bytes = live.heap_bytes();
        let stable_bytes = live.stable_bytes();
        live.restore(&snap)?;
        out.result?;
        let reply = out.response.ok_or(CallError::NoReply)?;
        Ok(CallReport {
            reply,
            instructions: out.instructions,
            heap_bytes,
            stable_bytes,
        })
    }

    /// Runs `canister_global_timer` if the module exports it and the timer is due
    /// (`time >= deadline`); the timer is cleared first, as on the IC. `Ok(None)` when nothing
    /// ran.
    pub fn run_global_timer(&mut self) -> Result<Option<CallReport>, CallError> {
        let mut live = self.canister.take().ok_or(CallError::NotInstalled)?;
        let deadline = live.store.data().sys.global_timer;
        let due =
            live.exports("canister_global_timer") && deadline != 0 && self.env.time >= deadline;
        let result = if due {
            live.store.data_mut().sys.global_timer = 0;
            self.system_task(&mut live, "canister_global_timer")
                .map(Some)
        } else {
            Ok(None)
        };
        self.canister = Some(live);
        result
    }

    /// Runs `canister_heartbeat` if the module exports it. `Ok(None)` when it does not.
    pub fn run_heartbeat(&mut self) -> Result<Option<CallReport>, CallError> {
        let mut live = self.canister.take().ok_or(CallError::NotInstalled)?;
        let result = if live.exports("canister_heartbeat") {
            self.system_task(&mut live, "canister_heartbeat").map(Some)
        } else {
            Ok(None)
        };
        self.canister = Some(live);
        result
    }

    fn system_task(&mut self, live: &mut Live, export: &str) -> Result<CallReport, CallError> {
        let snap = live.snapshot();
        // The caller of a system task is the management canister (`aaaaa-aa`).
        let ctx = self.ctx(Kind::SystemTask, &[], "", &[], self.limits.update);
        let out = live.execute(&self.env, &self.limits, export, ctx);
        self.drain_log(live);
        let heap_bytes = live.heap_bytes();
        let stable_bytes = live.stable_bytes();
        if let Err(e) = out.result {
            live.restore(&snap)?;
            return Err(e);
        }
        self.env.version += 1;
        Ok(CallReport {
            reply: Reply::Data(Vec::new()),
            instructions: out.instructions,
            heap_bytes,
            stable_bytes,
        })
    }
}
