//! The IC emulation harness (`walsh_ic_harness`) on small canisters written in WAT: the System
//! API, rollback of traps and queries, inspect_message, upgrades, module validation and the
//! IC-style instruction metering.

use std::time::{Duration, Instant};

use walsh_ic_harness::{CallError, Harness, Limits, Principal, Reply, ic0_functions};

/// A canister exercising most of the System API. Memory layout: 16..76 constant strings,
/// 1024.. cells for `poke`/`peek`, 2048 the argument size of init/post_upgrade, 4096 a cell
/// `canister_inspect_message` scribbles on, 65536.. the copied argument.
const TEST_CANISTER: &str = r#"
(module
  (import "ic0" "msg_arg_data_size" (func $arg_size (result i32)))
  (import "ic0" "msg_arg_data_copy" (func $arg_copy (param i32 i32 i32)))
  (import "ic0" "msg_caller_size" (func $caller_size (result i32)))
  (import "ic0" "msg_caller_copy" (func $caller_copy (param i32 i32 i32)))
  (import "ic0" "msg_reply_data_append" (func $append (param i32 i32)))
  (import "ic0" "msg_reply" (func $reply))
  (import "ic0" "msg_reject" (func $reject (param i32 i32)))
  (import "ic0" "msg_method_name_size" (func $name_size (result i32)))
  (import "ic0" "msg_method_name_copy" (func $name_copy (param i32 i32 i32)))
  (import "ic0" "accept_message" (func $accept))
  (import "ic0" "is_controller" (func $is_controller (param i32 i32) (result i32)))
  (import "ic0" "stable64_size" (func $stable_size (result i64)))
  (import "ic0" "stable64_grow" (func $stable_grow (param i64) (result i64)))
  (import "ic0" "stable64_read" (func $stable_read (param i64 i64 i64)))
  (import "ic0" "stable64_write" (func $stable_write (param i64 i64 i64)))
  (import "ic0" "performance_counter" (func $perf (param i32) (result i64)))
  (import "ic0" "debug_print" (func $print (param i32 i32)))
  (import "ic0" "trap" (func $trap (param i32 i32)))
  (import "ic0" "time" (func $time (result i64)))
  (import "ic0" "global_timer_set" (func $timer_set (param i64) (result i64)))
  (import "ic0" "canister_version" (func $version (result i64)))
  (import "ic0" "call_new" (func $call_new (param i32 i32 i32 i32 i32 i32 i32 i32)))
  (memory 80)
  (global $g (mut i32) (i32.const 0))
  (data (i32.const 16) "init called")
  (data (i32.const 32) "boom")
  (data (i32.const 40) "forbidden")
  (data (i32.const 52) "pre_upgrade")
  (data (i32.const 64) "post_upgrade")
  (@custom "icp:public candid:service" "service : { echo : (blob) -> (blob) }")
  (@custom "icp:private git_commit" "abc")

  (func $load_arg (result i32)
    (call $arg_copy (i32.const 65536) (i32.const 0) (call $arg_size))
    (call $arg_size))
  (func $reply_bytes (param $ptr i32) (param $len i32)
    (call $append (local.get $ptr) (local.get $len))
    (call $reply))
  (func $reply_u64 (param $v i64)
    (i64.store (i32.const 0) (local.get $v))
    (call $reply_bytes (i32.const 0) (i32.const 8)))
  (func $ensure_stable (param $end i64)
    (local $need i64)
    (local.set $need
      (i64.div_u (i64.add (local.get $end) (i64.const 65535)) (i64.const 65536)))
    (if (i64.gt_u (local.get $need) (call $stable_size))
      (then (drop (call $stable_grow (i64.sub (local.get $need) (call $stable_size)))))))

  (func (export "canister_init")
    (call $print (i32.const 16) (i32.const 11))
    (i32.store (i32.const 2048) (call $arg_size)))
  (func (export "canister_pre_upgrade")
    (call $print (i32.const 52) (i32.const 11))
    (call $ensure_stable (i64.const 16))
    (call $stable_write (i64.const 8) (i64.const 52) (i64.const 3)))
  (func (export "canister_post_upgrade")
    (call $print (i32.const 64) (i32.const 12))
    (i32.store (i32.const 2048) (call $arg_size)))
  (func (export "canister_inspect_message")
    (i32.store (i32.const 4096) (i32.const 0x5555))
    (call $name_copy (i32.const 200) (i32.const 0) (call $name_size))
    (if (i32.and (i32.eq (call $name_size) (i32.const 9))
                 (i64.eq (i64.load (i32.const 200)) (i64.load (i32.const 40))))
      (then (return)))
    (call $accept))
  (func (export "canister_global_timer")
    (i32.store (i32.const 1028) (i32.add (i32.load (i32.const 1028)) (i32.const 1))))

  (func (export "canister_update echo")
    (call $reply_bytes (i32.const 65536) (call $load_arg)))
  (func (export "canister_query echo_q")
    (call $reply_bytes (i32.const 65536) (call $load_arg)))
  (func (export "canister_update forbidden")
    (call $reply))
  (func (export "canister_query whoami")
    (call $caller_copy (i32.const 0) (i32.const 0) (call $caller_size))
    (call $reply_bytes (i32.const 0) (call $caller_size)))
  (func (export "canister_query am_i_controller")
    (call $caller_copy (i32.const 0) (i32.const 0) (call $caller_size))
    (i32.store8 (i32.const 100) (call $is_controller (i32.const 0) (call $caller_size)))
    (call $reply_bytes (i32.const 100) (i32.const 1)))

  ;; poke: arg = [address u32][value u32]; peek: arg = [address u32] -> 4 bytes.
  (func $poke
    (drop (call $load_arg))
    (i32.store (i32.load (i32.const 65536)) (i32.load (i32.const 65540))))
  (func (export "canister_update poke") (call $poke) (call $reply))
  (func (export "canister_query poke_q") (call $poke) (call $reply))
  (func (export "canister_update poke_then_trap")
    (call $poke)
    (call $ensure_stable (i64.const 8))
    (call $stable_write (i64.const 0) (i64.const 65536) (i64.const 8))
    (call $trap (i32.const 32) (i32.const 4)))
  (func (export "canister_query peek")
    (drop (call $load_arg))
    (call $reply_bytes (i32.load (i32.const 65536)) (i32.const 4)))
  (func (export "canister_update grow")
    (drop (memory.grow (i32.const 3)))
    (call $reply))
  (func (export "canister_update grow_then_trap")
    (drop (memory.grow (i32.const 3)))
    (i32.store (i32.const 1024) (i32.const 0xdead))
    (unreachable))

  ;; stable_put: arg = [offset u64][data]; stable_get: arg = [offset u64][len u32].
  (func (export "canister_update stable_put")
    (local $n i64)
    (local.set $n (i64.extend_i32_u (i32.sub (call $load_arg) (i32.const 8))))
    (call $ensure_stable (i64.add (i64.load (i32.const 65536)) (local.get $n)))
    (call $stable_write (i64.load (i32.const 65536)) (i64.const 65544) (local.get $n))
    (call $reply))
  (func (export "canister_query stable_get")
    (drop (call $load_arg))
    (call $stable_read (i64.const 0) (i64.load (i32.const 65536))
                       (i64.load32_u (i32.const 65544)))
    (call $reply_bytes (i32.const 0) (i32.load (i32.const 65544))))
  (func (export "canister_query stable_pages")
    (call $reply_u64 (call $stable_size)))
  (func (export "canister_query stable_oob")
    (call $stable_read (i64.const 0) (i64.mul (call $stable_size) (i64.const 65536))
                       (i64.const 1))
    (call $reply))

  (func $bump (result i32)
    (global.set $g (i32.add (global.get $g) (i32.const 1)))
    (global.get $g))
  (func (export "canister_update bump")
    (call $reply_u64 (i64.extend_i32_u (call $bump))))
  (func (export "canister_query bump_q")
    (call $reply_u64 (i64.extend_i32_u (call $bump))))
  (func (export "canister_update bump_then_trap")
    (drop (call $bump))
    (unreachable))

  ;; The metered loops: see `metered_loop_count_is_exact`.
  (func (export "canister_query count_1000")
    (local $i i32)
    i32.const 0
    local.set $i
    loop $l
      local.get $i
      i32.const 1
      i32.add
      local.tee $i
      i32.const 1000
      i32.lt_u
      br_if $l
    end
    i32.const 0
    i32.const 0
    call $perf
    i64.store
    i32.const 0
    i32.const 8
    call $append
    call $reply)
  (func (export "canister_update count_10000")
    (local $i i32)
    i32.const 0
    local.set $i
    loop $l
      local.get $i
      i32.const 1
      i32.add
      local.tee $i
      i32.const 10000
      i32.lt_u
      br_if $l
    end
    i32.const 0
    i32.const 0
    call $perf
    i64.store
    i32.const 0
    i32.const 8
    call $append
    call $reply)
  (func (export "canister_query spin")
    (loop $l (br $l)))
  (func (export "canister_update spin_update")
    (i32.store (i32.const 1024) (i32.const 77))
    (loop $l (br $l)))
  ;; 10 x (1 + 1 + 18 + 1) + 2 = 212 instructions per iteration.
  (func (export "canister_query spin_heavy")
    (loop $l
      (drop (f64.min (f64.const 1) (f64.const 2)))
      (drop (f64.min (f64.const 1) (f64.const 2)))
      (drop (f64.min (f64.const 1) (f64.const 2)))
      (drop (f64.min (f64.const 1) (f64.const 2)))
      (drop (f64.min (f64.const 1) (f64.const 2)))
      (drop (f64.min (f64.const 1) (f64.const 2)))
      (drop (f64.min (f64.const 1) (f64.const 2)))
      (drop (f64.min (f64.const 1) (f64.const 2)))
      (drop (f64.min (f64.const 1) (f64.const 2)))
      (drop (f64.min (f64.const 1) (f64.const 2)))
      (br $l)))
  ;; Copies 1 MiB with memory.copy: the length is charged at run time.
  (func (export "canister_query bulk_copy")
    (memory.copy (i32.const 1048576) (i32.const 65536) (i32.const 1048576))
    (call $reply_u64 (call $perf (i32.const 0))))

  (func (export "canister_update reject")
    (call $reject (i32.const 40) (i32.const 9)))
  (func (export "canister_update no_reply"))
  (func (export "canister_update reply_twice")
    (call $reply)
    (call $reply))
  (func (export "canister_update panic")
    (call $trap (i32.const 32) (i32.const 4)))
  (func (export "canister_update call_other")
    (call $call_new (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
                    (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
    (call $reply))
  (func (export "canister_query accept_in_query")
    (call $accept)
    (call $reply))
  (func (export "canister_query time")
    (call $reply_u64 (call $time)))
  (func (export "canister_query version")
    (call $reply_u64 (call $version)))
  (func (export "canister_update arm_timer")
    (drop (call $load_arg))
    (drop (call $timer_set (i64.load (i32.const 65536))))
    (call $reply))
  (func (export "canister_query simd")
    (v128.store (i32.const 0)
      (i32x4.add (v128.const i32x4 1 2 3 4) (v128.const i32x4 10 20 30 40)))
    (call $reply_bytes (i32.const 0) (i32.const 16)))
)
"#;

/// A module whose `canister_post_upgrade` traps.
const FAILING_POST_UPGRADE: &str = r#"
(module
  (import "ic0" "trap" (func $trap (param i32 i32)))
  (memory 1)
  (data (i32.const 0) "post_upgrade failed")
  (func (export "canister_post_upgrade")
    (call $trap (i32.const 0) (i32.const 19)))
  (func (export "canister_query peek") unreachable)
)
"#;

fn wasm(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).expect("valid WAT")
}

fn admin() -> Principal {
    Principal::from_slice(&[7; 29])
}

fn user() -> Principal {
    Principal::from_slice(&[9; 10])
}

fn installed() -> Harness {
    let mut ic = Harness::new();
    ic.install(&wasm(TEST_CANISTER), b"xyz", vec![admin()], admin())
        .expect("install");
    ic
}

fn bytes(r: Result<walsh_ic_harness::CallReport, CallError>) -> Vec<u8> {
    match r.expect("call succeeds").reply {
        Reply::Data(d) => d,
        Reply::Reject { code, message } => panic!("rejected ({code}): {message}"),
    }
}

fn u64_of(b: &[u8]) -> u64 {
    u64::from_le_bytes(b.try_into().expect("8 bytes"))
}

fn poke(ic: &mut Harness, addr: u32, value: u32) {
    let mut arg = addr.to_le_bytes().to_vec();
    arg.extend(value.to_le_bytes());
    bytes(ic.update(user(), "poke", &arg));
}

fn peek(ic: &mut Harness, addr: u32) -> u32 {
    let b = bytes(ic.query(user(), "peek", &addr.to_le_bytes()));
    u32::from_le_bytes(b.try_into().unwrap())
}

fn stable_put(ic: &mut Harness, offset: u64, data: &[u8]) {
    let mut arg = offset.to_le_bytes().to_vec();
    arg.extend(data);
    bytes(ic.update(user(), "stable_put", &arg));
}

fn stable_get(ic: &mut Harness, offset: u64, len: u32) -> Vec<u8> {
    let mut arg = offset.to_le_bytes().to_vec();
    arg.extend(len.to_le_bytes());
    bytes(ic.query(user(), "stable_get", &arg))
}

#[test]
fn install_runs_init_and_exposes_metadata() {
    let ic = installed();
    assert_eq!(ic.debug_log(), ["init called"]);
    assert_eq!(
        ic.candid_service_metadata().as_deref(),
        Some("service : { echo : (blob) -> (blob) }")
    );
    assert_eq!(ic.metadata("git_commit"), Some(&b"abc"[..]));
    assert_eq!(ic.metadata_is_public("git_commit"), Some(false));
    assert_eq!(ic.canister_version(), 1);
    assert!(ic.update_methods().contains(&"echo".to_string()));
    assert!(ic.query_methods().contains(&"peek".to_string()));
    let mut ic = ic;
    assert_eq!(peek(&mut ic, 2048), 3, "init saw its 3-byte argument");
}

#[test]
fn echo_update_and_query() {
    let mut ic = installed();
    let r = ic.update(user(), "echo", b"hello").unwrap();
    assert_eq!(r.reply, Reply::Data(b"hello".to_vec()));
    assert!(r.instructions > 0);
    assert_eq!(r.heap_bytes, 80 * 65536);
    assert_eq!(bytes(ic.query(user(), "echo_q", b"")), b"");
    let v = ic.canister_version();
    bytes(ic.update(user(), "echo", b"x"));
    assert_eq!(
        ic.canister_version(),
        v + 1,
        "a successful update bumps the version"
    );
}

#[test]
fn caller_and_is_controller() {
    let mut ic = installed();
    assert_eq!(bytes(ic.query(user(), "whoami", b"")), user().as_slice());
    assert_eq!(
        bytes(ic.query(Principal::anonymous(), "whoami", b"")),
        Principal::anonymous().as_slice()
    );
    assert_eq!(bytes(ic.query(admin(), "am_i_controller", b"")), [1]);
    assert_eq!(bytes(ic.query(user(), "am_i_controller", b"")), [0]);
    ic.set_controllers(vec![admin(), user()]);
    assert_eq!(bytes(ic.query(user(), "am_i_controller", b"")), [1]);
}

#[test]
fn reject_no_reply_and_contract_violations() {
    let mut ic = installed();
    let r = ic.update(user(), "reject", b"").unwrap();
    assert_eq!(
        r.reply,
        Reply::Reject {
            code: 4,
            message: "forbidden".into()
        }
    );
    assert_eq!(ic.update(user(), "no_reply", b""), Err(CallError::NoReply));
    assert!(matches!(
        ic.update(user(), "reply_twice", b""),
        Err(CallError::ContractViolation(_))
    ));
    // accept_message is only available in canister_inspect_message.
    assert!(matches!(
        ic.query(user(), "accept_in_query", b""),
        Err(CallError::ContractViolation(m)) if m.contains("accept_message")
    ));
    assert_eq!(
        ic.update(user(), "panic", b""),
        Err(CallError::Trap("boom".into()))
    );
    assert!(matches!(
        ic.update(user(), "call_other", b""),
        Err(CallError::Unsupported(m)) if m.contains("call_new")
    ));
    assert!(matches!(
        ic.update(user(), "nope", b""),
        Err(CallError::NoSuchMethod(_))
    ));
    assert!(matches!(
        ic.query(user(), "echo", b""),
        Err(CallError::NoSuchMethod(_))
    ));
    // A query method may be called as an update (replicated query): changes are discarded.
    let mut arg = 1032u32.to_le_bytes().to_vec();
    arg.extend(5u32.to_le_bytes());
    bytes(ic.update(user(), "poke_q", &arg));
    assert_eq!(peek(&mut ic, 1032), 0);
}

#[test]
fn stable_memory_persists_across_updates() {
    let mut ic = installed();
    assert_eq!(u64_of(&bytes(ic.query(user(), "stable_pages", b""))), 0);
    stable_put(&mut ic, 70_000, b"walsh");
    assert_eq!(u64_of(&bytes(ic.query(user(), "stable_pages", b""))), 2);
    stable_put(&mut ic, 10, b"abc");
    assert_eq!(stable_get(&mut ic, 70_000, 5), b"walsh");
    assert_eq!(stable_get(&mut ic, 9, 5), [0, b'a', b'b', b'c', 0]);
    assert_eq!(ic.read_stable(70_000, 5).as_deref(), Some(&b"walsh"[..]));
    assert_eq!(ic.stable_bytes(), 2 * 65536);
    // Reading past the end traps.
    assert!(matches!(
        ic.query(user(), "stable_oob", b""),
        Err(CallError::WasmTrap(m)) if m.contains("out of bounds")
    ));
}

#[test]
fn query_changes_are_discarded() {
    let mut ic = installed();
    poke(&mut ic, 1024, 41);
    let mut arg = 1024u32.to_le_bytes().to_vec();
    arg.extend(99u32.to_le_bytes());
    bytes(ic.query(user(), "poke_q", &arg));
    assert_eq!(peek(&mut ic, 1024), 41, "a query's heap write is discarded");
    assert_eq!(u64_of(&bytes(ic.query(user(), "bump_q", b""))), 1);
    assert_eq!(
        u64_of(&bytes(ic.query(user(), "bump_q", b""))),
        1,
        "globals too"
    );
    assert_eq!(u64_of(&bytes(ic.update(user(), "bump", b""))), 1);
    assert_eq!(
        u64_of(&bytes(ic.update(user(), "bump", b""))),
        2,
        "updates persist"
    );
}

#[test]
fn trap_rolls_back_heap_stable_and_globals() {
    let mut ic = installed();
    poke(&mut ic, 1024, 5);
    stable_put(&mut ic, 0, b"original");
    let mut arg = 1024u32.to_le_bytes().to_vec();
    arg.extend(6u32.to_le_bytes());
    assert_eq!(
        ic.update(user(), "poke_then_trap", &arg),
        Err(CallError::Trap("boom".into()))
    );
    assert_eq!(peek(&mut ic, 1024), 5);
    assert_eq!(stable_get(&mut ic, 0, 8), b"original");

    bytes(ic.update(user(), "bump", b""));
    assert!(matches!(
        ic.update(user(), "bump_then_trap", b""),
        Err(CallError::WasmTrap(m)) if m.contains("unreachable")
    ));
    assert_eq!(u64_of(&bytes(ic.update(user(), "bump", b""))), 2);

    // A trap after memory.grow also undoes the growth.
    let heap = ic.heap_bytes();
    assert!(matches!(
        ic.update(user(), "grow_then_trap", b""),
        Err(CallError::WasmTrap(_))
    ));
    assert_eq!(ic.heap_bytes(), heap);
    assert_eq!(peek(&mut ic, 1024), 5);
    assert_eq!(u64_of(&bytes(ic.update(user(), "bump", b""))), 3);
    bytes(ic.update(user(), "grow", b""));
    assert_eq!(ic.heap_bytes(), heap + 3 * 65536);
    assert_eq!(peek(&mut ic, 1024), 5);
}

#[test]
fn inspect_message_accepts_only_some_methods() {
    let mut ic = installed();
    assert!(matches!(
        ic.update(user(), "forbidden", b""),
        Err(CallError::InspectRejected(m)) if m.contains("accept_message")
    ));
    assert_eq!(bytes(ic.update(user(), "echo", b"ok")), b"ok");
    // What canister_inspect_message wrote is discarded.
    assert_eq!(peek(&mut ic, 4096), 0);
    // Queries do not go through inspect_message.
    assert_eq!(bytes(ic.query(user(), "echo_q", b"q")), b"q");
}

/// The loop of `count_1000`/`count_10000` (see `cost.rs` for the weights):
/// entry block `1 + i32.const + local.set + loop` = 3; loop body `local.get, i32.const,
/// i32.add, local.tee, i32.const, i32.lt_u` (1 each) + `br_if` (2) = 8 per iteration; the
/// block after the loop `2 x i32.const + call + i64.store + 2 x i32.const + call + call`
/// = 20, charged on entry, before `performance_counter` (200) reads the counter. The reply
/// then costs 500 + 50 x 8 (`msg_reply_data_append`) + 500 (`msg_reply`).
#[test]
fn metered_loop_count_is_exact() {
    let mut ic = installed();
    let r = ic.query(user(), "count_1000", b"").unwrap();
    let counter = u64_of(r.bytes().unwrap());
    assert_eq!(counter, 3 + 8 * 1000 + 20 + 200);
    assert_eq!(r.instructions, counter + 900 + 500);

    let r = ic.update(user(), "count_10000", b"").unwrap();
    let counter = u64_of(r.bytes().unwrap());
    assert_eq!(counter, 3 + 8 * 10_000 + 20 + 200);
    assert_eq!(r.instructions, counter + 900 + 500);

    // memory.copy: 100 static + 1 per byte, on top of the block's other instructions.
    let r = ic.query(user(), "bulk_copy", b"").unwrap();
    let counter = u64_of(r.bytes().unwrap());
    assert!(counter > 1_048_576 + 100, "{counter}");
    assert!(counter < 1_048_576 + 400, "{counter}");
}

#[test]
fn runaway_query_hits_the_instruction_limit() {
    let mut ic = installed();
    ic.set_limits(Limits {
        query: 1_000_000,
        update: 2_000_000,
        ..Limits::default()
    });
    assert_eq!(
        ic.query(user(), "spin", b""),
        Err(CallError::InstructionLimit { limit: 1_000_000 })
    );
    poke(&mut ic, 1024, 1);
    assert_eq!(
        ic.update(user(), "spin_update", b""),
        Err(CallError::InstructionLimit { limit: 2_000_000 })
    );
    assert_eq!(peek(&mut ic, 1024), 1, "the runaway update was rolled back");
    // The canister still works afterwards.
    assert_eq!(bytes(ic.query(user(), "echo_q", b"alive")), b"alive");
}

#[test]
fn runaway_query_stops_at_five_billion() {
    let mut ic = installed();
    assert_eq!(ic.limits().query, 5_000_000_000);
    let start = Instant::now();
    assert_eq!(
        ic.query(user(), "spin_heavy", b""),
        Err(CallError::InstructionLimit {
            limit: 5_000_000_000
        })
    );
    eprintln!("5 B instructions metered in {:?}", start.elapsed());
}

#[test]
fn ingress_and_reply_size_limits() {
    let mut ic = installed();
    let two_mib = vec![0xab; 2 * 1024 * 1024];
    assert_eq!(
        bytes(ic.update(user(), "echo", &two_mib)).len(),
        two_mib.len()
    );
    let too_big = vec![0; 2 * 1024 * 1024 + 1];
    assert_eq!(
        ic.update(user(), "echo", &too_big),
        Err(CallError::IngressTooLarge {
            size: too_big.len(),
            limit: 2 * 1024 * 1024
        })
    );
    let three_mib = vec![1; 3 * 1024 * 1024];
    assert_eq!(
        bytes(ic.query(user(), "echo_q", &three_mib)).len(),
        three_mib.len()
    );
    let over = vec![1; 3 * 1024 * 1024 + 1];
    assert_eq!(
        ic.query(user(), "echo_q", &over),
        Err(CallError::ReplyTooLarge {
            size: over.len() as u64,
            limit: 3 * 1024 * 1024
        })
    );
}

#[test]
fn upgrade_keeps_stable_memory_and_starts_a_fresh_heap() {
    let mut ic = installed();
    poke(&mut ic, 1024, 7);
    stable_put(&mut ic, 100, b"hello");
    bytes(ic.update(user(), "bump", b""));
    let v = ic.canister_version();
    assert!(matches!(
        ic.upgrade(&wasm(TEST_CANISTER), b"up", user()),
        Err(CallError::NotController(_))
    ));
    let r = ic
        .upgrade(&wasm(TEST_CANISTER), b"up", admin())
        .expect("upgrade");
    assert!(r.instructions > 0);
    assert_eq!(ic.canister_version(), v + 1);
    assert_eq!(peek(&mut ic, 1024), 0, "fresh heap");
    assert_eq!(peek(&mut ic, 2048), 2, "post_upgrade got its argument");
    assert_eq!(
        u64_of(&bytes(ic.update(user(), "bump", b""))),
        1,
        "fresh globals"
    );
    assert_eq!(stable_get(&mut ic, 100, 5), b"hello");
    assert_eq!(
        stable_get(&mut ic, 8, 3),
        b"pre",
        "pre_upgrade ran on the old instance"
    );
    let log = ic.debug_log();
    assert_eq!(&log[log.len() - 2..], ["pre_upgrade", "post_upgrade"]);
}

#[test]
fn failed_post_upgrade_keeps_the_old_module() {
    let mut ic = installed();
    poke(&mut ic, 1024, 9);
    stable_put(&mut ic, 0, b"keep");
    let v = ic.canister_version();
    assert_eq!(
        ic.upgrade(&wasm(FAILING_POST_UPGRADE), b"", admin()),
        Err(CallError::Trap("post_upgrade failed".into()))
    );
    assert_eq!(peek(&mut ic, 1024), 9, "old module, old heap");
    assert_eq!(stable_get(&mut ic, 0, 4), b"keep");
    // pre_upgrade's stable write ("pre" at 8) was rolled back with the failed upgrade.
    assert_eq!(stable_get(&mut ic, 8, 3), [0, 0, 0]);
    assert_eq!(ic.canister_version(), v);
    assert_eq!(
        bytes(ic.update(user(), "echo", b"still here")),
        b"still here"
    );
}

#[test]
fn timer_fires_when_due() {
    let mut ic = installed();
    let deadline = ic.time() + 1_000_000_000;
    bytes(ic.update(user(), "arm_timer", &deadline.to_le_bytes()));
    assert_eq!(ic.global_timer(), Some(deadline));
    assert!(ic.run_global_timer().unwrap().is_none(), "not yet due");
    ic.advance_time(Duration::from_secs(1));
    assert_eq!(u64_of(&bytes(ic.query(user(), "time", b""))), deadline);
    assert!(ic.run_global_timer().unwrap().is_some());
    assert_eq!(ic.global_timer(), None);
    assert_eq!(peek(&mut ic, 1028), 1);
}

#[test]
fn simd_is_supported() {
    let mut ic = installed();
    let b = bytes(ic.query(user(), "simd", b""));
    let lanes: Vec<u32> = b
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(lanes, [11, 22, 33, 44]);
}

fn install_err(wat: &str) -> String {
    let mut ic = Harness::new();
    match ic.install(&wasm(wat), b"", vec![admin()], admin()) {
        Err(CallError::InvalidModule(m)) => m,
        other => panic!("expected InvalidModule, got {other:?}"),
    }
}

#[test]
fn invalid_modules_are_rejected() {
    let m = install_err(r#"(module (import "env" "foo" (func)) (memory 1))"#);
    assert!(m.contains("env.foo"), "{m}");
    let m = install_err(r#"(module (import "ic0" "launch_rockets" (func)))"#);
    assert!(m.contains("launch_rockets"), "{m}");
    let m = install_err(r#"(module (import "ic0" "msg_reply" (func (param i32))))"#);
    assert!(m.contains("signature"), "{m}");
    let m = install_err(r#"(module (import "ic0" "msg_reply" (global i32)))"#);
    assert!(m.contains("not a function"), "{m}");
    let m = install_err(
        r#"(module (func $f) (export "canister_query x" (func $f))
                   (export "canister_update x" (func $f)))"#,
    );
    assert!(m.contains("duplicate"), "{m}");
    let m = install_err(r#"(module (func $f) (export "canister_fly" (func $f)))"#);
    assert!(m.contains("canister_fly"), "{m}");
    let m = install_err(r#"(module (func $f (param i32)) (export "canister_update x" (func $f)))"#);
    assert!(m.contains("() -> ()"), "{m}");
    let m = install_err(r#"(module (memory i64 1))"#);
    assert!(m.contains("memory64") || m.contains("64-bit"), "{m}");
    let m = install_err(r#"(module (@custom "icp:secret x" ""))"#);
    assert!(m.contains("icp:"), "{m}");
    let m = install_err(
        r#"(module (global (export "canister counter_instructions") i64 (i64.const 0)))"#,
    );
    assert!(m.contains("reserved"), "{m}");
}

#[test]
fn every_system_api_function_links() {
    let mut imports = String::new();
    for (name, params, results) in ic0_functions() {
        let ty = |t: &wasmparser::ValType| match t {
            wasmparser::ValType::I32 => "i32",
            wasmparser::ValType::I64 => "i64",
            other => panic!("unexpected {other:?}"),
        };
        let params: Vec<_> = params.iter().map(ty).collect();
        let results: Vec<_> = results.iter().map(ty).collect();
        imports.push_str(&format!(
            "(import \"ic0\" \"{name}\" (func (param {}) (result {})))\n",
            params.join(" "),
            results.join(" ")
        ));
    }
    assert!(imports.contains("stable64_write"));
    assert!(imports.contains("env_var_value_copy"));
    let module = format!("(module {imports} (memory 1) (func (export \"canister_init\")))");
    let mut ic = Harness::new();
    ic.install(&wasm(&module), b"", vec![admin()], admin())
        .expect("a module importing the whole System API installs");
}

#[test]
fn install_requires_a_controller_and_an_empty_canister() {
    let mut ic = Harness::new();
    assert_eq!(
        ic.install(&wasm(TEST_CANISTER), b"", vec![admin()], user()),
        Err(CallError::NotController(user()))
    );
    assert!(!ic.is_installed());
    ic.install(&wasm(TEST_CANISTER), b"", vec![admin()], admin())
        .unwrap();
    assert_eq!(
        ic.install(&wasm(TEST_CANISTER), b"", vec![admin()], admin()),
        Err(CallError::AlreadyInstalled)
    );
    stable_put(&mut ic, 0, b"gone");
    ic.reinstall(&wasm(TEST_CANISTER), b"", admin()).unwrap();
    assert_eq!(ic.stable_bytes(), 0, "reinstall wipes stable memory");
}

/// A module of two named functions for the per-function profile.
const TWO_FUNCTIONS: &str = r#"
(module
  (import "ic0" "msg_reply" (func $reply))
  (memory 1)
  (func $inner (param i32) (result i32)
    local.get 0
    i32.const 1
    i32.add)
  (func $outer (export "canister_query two")
    (drop (call $inner (i32.const 1)))
    (drop (call $inner (i32.const 2)))
    (memory.fill (i32.const 0) (i32.const 0) (i32.const 1000))
    (call $reply))
)
"#;

#[test]
fn function_profile_splits_the_metered_instructions_by_function() {
    let module = wasm(TWO_FUNCTIONS);
    let mut plain = Harness::new();
    plain.install(&module, b"", vec![admin()], admin()).unwrap();
    let unprofiled = plain.query(user(), "two", b"").unwrap().instructions;
    assert!(plain.take_function_profile().is_empty());

    let mut ic = Harness::new();
    ic.set_function_profile(true);
    ic.install(&module, b"", vec![admin()], admin()).unwrap();
    ic.take_function_profile();
    let r = ic.query(user(), "two", b"").unwrap();
    // The counters are not metered: the same instructions as without them.
    assert_eq!(r.instructions, unprofiled);
    let profile = ic.take_function_profile();
    let get = |name: &str| {
        profile
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| *c)
            .unwrap_or_else(|| panic!("{name} missing from {profile:?}"))
    };
    // `inner` ran twice (entry 1 + local.get + i32.const + i32.add + end, each time);
    // `outer` holds its own instructions and the memory.fill's 1,000 bytes.
    assert_eq!(get("inner") % 2, 0);
    assert!(get("outer") > 1000 + 100, "{profile:?}");
    // Everything metered is in some function but msg_reply's fixed cost (500).
    assert_eq!(
        get("inner") + get("outer") + 500,
        r.instructions,
        "{profile:?}"
    );
    // Taking restarts the counts; a second query counts the same again.
    assert!(ic.take_function_profile().is_empty());
    ic.query(user(), "two", b"").unwrap();
    assert_eq!(ic.take_function_profile(), profile);
}
