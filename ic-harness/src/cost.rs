//! The instruction weights of the Internet Computer, as the harness charges them.
//!
//! # Wasm instructions
//!
//! [`op_cost`] gives the static weight of one Wasm instruction. The weights are those of
//! `instruction_to_cost` in `rs/embedders/src/wasm_utils/instrumentation.rs` of dfinity/ic
//! (read at commit `002d5530aeb1`, the wasmparser-based instrumentation of the "new" metering
//! that mainnet uses), for a 32-bit main memory (a Wasm64 canister pays 2 instead of 1 for
//! loads and stores; the harness accepts only memory32). In short: almost everything costs 1;
//! block markers (`block`, `loop`, `else`, `end`) cost 0; branches and `if` 2, `call` 5,
//! `call_indirect` 10; integer division and remainder 10; `f32`/`f64` add/sub/mul 2, `f32.div`
//! 3, `f64.div` 5, `fN.min`/`fN.max` 18, float comparisons 3, float truncations 20, unsigned
//! int-to-float conversions 16; `global.get`/`global.set` 2; `memory.size` 20, `memory.grow`
//! 300; bulk memory and table operations 100 plus one per byte/element (charged at run time,
//! see `instrument.rs`); SIMD mostly 1 with the exceptions listed in [`op_cost`] (4 for
//! `i64x2.mul`, 10 for `f32x4.div`, 12 for `f64x2.div`, 14 for `f64x2.sqrt`, ...). An
//! instruction the IC table does not name costs 1, as on the IC (its default arm).
//!
//! The instrumentation also charges **1 extra per function entry** (every function body starts
//! a block whose cost is initialised to 1, as on the IC), and nothing for the instructions it
//! injects itself.
//!
//! # System API calls
//!
//! The [`overhead`] constants are the fixed costs of the `ic0` calls from the `overhead` module
//! of `rs/embedders/src/wasmtime_embedder/system_api_complexity.rs` (read at commit
//! `023cfe84513a`, where they are `overhead::new`, the "new" metering values; later versions
//! keep only these values, under `overhead`): 500 for most calls, 200 for
//! `performance_counter`, 100 for `debug_print`, 1_000 for `is_controller`, 1_500 for
//! `call_new`, 5_000 for `call_perform`, 10_000 for `cost_http_request_v2`. To these
//! `rs/embedders/src/wasmtime_embedder/linker.rs` (read at commit `0048d8c4f881`) adds a
//! variable part: one instruction per byte copied between the heap and the system (arg data,
//! caller, method name, principal arguments, certified data, ...), and
//! `BYTE_TRANSMISSION_COST_FACTOR` = 50 per byte for data that leaves the canister
//! (`msg_reply_data_append`, `msg_reject`, `call_data_append`). `debug_print` and `trap` add the
//! canister-log charge `2 * bytes + 50 * bytes` (capped at the 4 KiB log capacity here; the IC
//! caps at the log's remaining space), `trap` one more per byte.
//!
//! The stable-memory calls are Wasm-native on the IC (`overhead_native`, and the replacement
//! code in `rs/embedders/src/wasm_utils/system_api_replacements.rs`): `stable*_read` and
//! `stable*_write` cost 20 + 1 per byte, writes 1_000 more per 4 KiB page they dirty for the
//! first time in the message (`DEFAULT_DIRTY_PAGE_OVERHEAD` of the IC's subnet configuration),
//! `stable*_grow` costs 100 and `stable*_size` nothing beyond the `call` instruction (5).
//!
//! Every `ic0` call is also a Wasm `call` instruction, so it costs 5 more in the caller's block.

use wasmparser::Operator;

/// The static cost of one Wasm instruction (see the module documentation for the source).
pub fn op_cost(op: &Operator<'_>) -> u64 {
    use Operator::*;
    match op {
        // Block structure: free, the branches pay.
        Block { .. } | Loop { .. } | Else | End => 0,

        If { .. } | Br { .. } | BrIf { .. } | BrTable { .. } => 2,
        Call { .. } => 5,
        CallIndirect { .. } => 10,
        ReturnCall { .. } => 3,
        ReturnCallIndirect { .. } => 60,

        GlobalGet { .. } | GlobalSet { .. } => 2,
        TableGet { .. } | TableSet { .. } => 5,
        RefIsNull => 5,
        RefFunc { .. } => 130,

        MemorySize { .. } => 20,
        TableSize { .. } => 100,
        MemoryGrow { .. } | TableGrow { .. } => 300,
        DataDrop { .. } | ElemDrop { .. } => 300,
        MemoryFill { .. }
        | MemoryCopy { .. }
        | MemoryInit { .. }
        | TableFill { .. }
        | TableCopy { .. }
        | TableInit { .. } => 100,

        // Integer division and remainder.
        I32DivS | I32DivU | I32RemS | I32RemU | I64DivS | I64DivU | I64RemS | I64RemU => 10,

        // Scalar floating point.
        F32Add | F32Sub | F32Mul | F64Add | F64Sub | F64Mul => 2,
        F32Ceil | F32Floor | F32Trunc | F32Nearest | F64Ceil | F64Floor | F64Trunc | F64Nearest => {
            2
        }
        F32Copysign => 2,
        F64Copysign => 3,
        F32Div => 3,
        F64Div => 5,
        F32Sqrt => 5,
        F64Sqrt => 8,
        F32Min | F32Max | F64Min | F64Max => 18,
        F32Eq | F32Ne | F32Lt | F32Gt | F32Le | F32Ge | F64Eq | F64Ne | F64Lt | F64Gt | F64Le
        | F64Ge => 3,
        F32ConvertI32S | F32ConvertI64S | F64ConvertI32S | F64ConvertI64S => 3,
        F32ConvertI32U | F32ConvertI64U | F64ConvertI32U | F64ConvertI64U => 16,
        I32TruncF32S | I32TruncF32U | I32TruncF64S | I32TruncF64U | I64TruncF32S | I64TruncF32U
        | I64TruncF64S | I64TruncF64U => 20,
        I32TruncSatF32S | I32TruncSatF32U | I32TruncSatF64S | I32TruncSatF64U | I64TruncSatF32S
        | I64TruncSatF32U | I64TruncSatF64S | I64TruncSatF64U => 20,

        // SIMD: everything not listed here costs 1.
        I8x16LtU | I8x16GtU | I16x8LtU | I16x8GtU | I32x4LtU | I32x4GtU => 2,
        I8x16ShrU | I16x8Shl | I16x8ShrS | I16x8ShrU | I32x4Shl | I32x4ShrS | I32x4ShrU
        | I64x2Shl | I64x2ShrU => 2,
        I16x8ExtAddPairwiseI8x16U | I16x8ExtMulHighI8x16S | I16x8ExtMulHighI8x16U => 2,
        I32x4Mul
        | I32x4ExtMulLowI16x8S
        | I32x4ExtMulHighI16x8S
        | I32x4ExtMulLowI16x8U
        | I32x4ExtMulHighI16x8U => 2,
        F32x4Ceil | F32x4Floor | F32x4Trunc | F32x4Nearest | F32x4Abs | F32x4Neg | F32x4Add
        | F32x4Sub | F32x4Mul => 2,
        F64x2Ceil | F64x2Floor | F64x2Trunc | F64x2Nearest | F64x2Abs | F64x2Neg | F64x2Add
        | F64x2Sub | F64x2Mul => 2,
        I32x4TruncSatF32x4S | I32x4TruncSatF64x2SZero => 2,
        I8x16Shuffle { .. } | I8x16Popcnt | I8x16Shl | I8x16ShrS | I64x2ShrS => 3,
        I32x4ExtAddPairwiseI16x8U | I32x4TruncSatF64x2UZero => 3,
        I64x2Mul | F32x4Min | F32x4Max | F64x2Min => 4,
        I32x4TruncSatF32x4U | F32x4ConvertI32x4U => 4,
        F32x4Sqrt | F64x2Max => 5,
        F32x4Div => 10,
        F64x2Div => 12,
        F64x2Sqrt => 14,

        // Constants, integer arithmetic and comparisons, loads and stores (memory32), locals,
        // `select`, `drop`, `nop`, `return`, `unreachable`, conversions not listed above, SIMD
        // not listed above, and anything the IC table does not name.
        _ => 1,
    }
}

/// `BYTE_TRANSMISSION_COST_FACTOR` of the IC's `linker.rs`: instructions per byte that leaves
/// the canister (reply, reject, outgoing call payload).
pub const BYTE_TRANSMISSION_COST_FACTOR: u64 = 50;

/// The canister-log capacity the `debug_print`/`trap` charge is capped at (4 KiB, the IC's
/// default log size).
pub const LOG_CAPACITY_BYTES: u64 = 4096;

/// Cost per 4 KiB stable-memory page dirtied for the first time in a message.
pub const DIRTY_PAGE_OVERHEAD: u64 = 1_000;

/// Fixed costs of the `ic0` calls (`system_api_complexity::overhead`, "new" metering).
pub mod overhead {
    /// Most `ic0` calls.
    pub const DEFAULT: u64 = 500;
    /// `ic0.performance_counter`.
    pub const PERFORMANCE_COUNTER: u64 = 200;
    /// `ic0.debug_print`.
    pub const DEBUG_PRINT: u64 = 100;
    /// `ic0.is_controller`.
    pub const IS_CONTROLLER: u64 = 1_000;
    /// `ic0.call_new`.
    pub const CALL_NEW: u64 = 1_500;
    /// `ic0.call_perform`.
    pub const CALL_PERFORM: u64 = 5_000;
    /// `ic0.cost_http_request_v2`.
    pub const COST_HTTP_REQUEST_V2: u64 = 10_000;
    /// Wasm-native `stable*_read` / `stable*_write` (`overhead_native`).
    pub const STABLE_READ_WRITE: u64 = 20;
    /// Wasm-native `stable*_grow` (`overhead_native::STABLE_GROW`).
    pub const STABLE_GROW: u64 = 100;
    /// Wasm-native `stable*_size`: a `memory.size` in injected, unmetered code.
    pub const STABLE_SIZE: u64 = 0;
}

/// The canister-log part of the `debug_print`/`trap` charge for a message of `len` bytes.
pub fn logging_charge(len: u64) -> u64 {
    let logged = len.min(LOG_CAPACITY_BYTES);
    2 * logged + BYTE_TRANSMISSION_COST_FACTOR * logged
}
