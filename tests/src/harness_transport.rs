//! The packer's upload client ([`walsh_packer::ic::Transport`]) over the IC emulation harness:
//! `packer upload` / `packer download` logic against the canister's real wasm, with the
//! network's failures (a dropped connection, a lost reply, a damaged chunk) injected where a
//! test asks for them. Nothing of the canister is stood in for.

use candid::Principal;
use std::cell::RefCell;
use std::collections::HashMap;
use walsh_ic_harness::{CallError as HarnessError, Harness, Reply};
use walsh_interface::UploadChunk;
use walsh_packer::ic::{CallError, Transport};

/// A network failure, injected into one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call never reaches the replica: the connection fails.
    Unreachable,
    /// The canister executes the call, but the reply is lost on the way back.
    LostReply,
    /// One byte of an `upload_chunk`'s data is flipped on the way in.
    CorruptChunk,
}

/// Per method: calls attempted, calls that reached the canister, their instructions and (for
/// updates) the ingress bytes mainnet charges for: the argument and the method name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MethodCount {
    pub attempted: u32,
    pub executed: u32,
    pub instructions: u64,
    pub ingress_bytes: u64,
}

const UPDATES: [&str; 4] = [
    "upload_begin",
    "upload_chunk",
    "upload_commit",
    "upload_abort",
];

pub struct HarnessTransport<'h> {
    harness: &'h RefCell<Harness>,
    caller: Principal,
    /// (method, 0-based attempt of that method) → the fault to inject.
    faults: RefCell<HashMap<(String, u32), Fault>>,
    counts: RefCell<HashMap<String, MethodCount>>,
}

impl<'h> HarnessTransport<'h> {
    pub fn new(harness: &'h RefCell<Harness>, caller: Principal) -> Self {
        HarnessTransport {
            harness,
            caller,
            faults: RefCell::new(HashMap::new()),
            counts: RefCell::new(HashMap::new()),
        }
    }

    /// Injects `fault` into attempt `nth` (0-based, counting every attempt) of `method`.
    pub fn fail(&self, method: &str, nth: u32, fault: Fault) {
        self.faults
            .borrow_mut()
            .insert((method.to_string(), nth), fault);
    }

    pub fn count(&self, method: &str) -> MethodCount {
        self.counts
            .borrow()
            .get(method)
            .copied()
            .unwrap_or_default()
    }

    /// Update calls that reached the canister, and their instructions, over all methods.
    pub fn updates_executed(&self) -> (u32, u64) {
        UPDATES
            .iter()
            .map(|m| self.count(m))
            .fold((0, 0), |(n, i), c| (n + c.executed, i + c.instructions))
    }

    /// Ingress bytes of the update calls that reached the canister.
    pub fn ingress_bytes(&self) -> u64 {
        UPDATES.iter().map(|m| self.count(m).ingress_bytes).sum()
    }

    fn call(&self, update: bool, method: &str, mut arg: Vec<u8>) -> Result<Vec<u8>, CallError> {
        let attempt = {
            let mut counts = self.counts.borrow_mut();
            let c = counts.entry(method.to_string()).or_default();
            c.attempted += 1;
            c.attempted - 1
        };
        let fault = self
            .faults
            .borrow_mut()
            .remove(&(method.to_string(), attempt));
        match fault {
            Some(Fault::Unreachable) => {
                return Err(CallError::Unreachable {
                    url: "harness".into(),
                    detail: "connection refused (injected)".into(),
                });
            }
            Some(Fault::CorruptChunk) => arg = corrupt_chunk(&arg),
            _ => {}
        }
        let result = {
            let mut h = self.harness.borrow_mut();
            if update {
                h.update(self.caller, method, &arg)
            } else {
                h.query(self.caller, method, &arg)
            }
        };
        let report = result.map_err(|e| self.sort(e))?;
        {
            let mut counts = self.counts.borrow_mut();
            let c = counts.entry(method.to_string()).or_default();
            c.executed += 1;
            c.instructions += report.instructions;
            if update {
                c.ingress_bytes += (arg.len() + method.len()) as u64;
            }
        }
        if fault == Some(Fault::LostReply) {
            return Err(CallError::Transient("the reply was lost (injected)".into()));
        }
        match report.reply {
            Reply::Data(bytes) => Ok(bytes),
            Reply::Reject { message, .. } => Err(CallError::Rejected(message)),
        }
    }

    /// The harness's failures as the ic-agent transport reports the replica's.
    fn sort(&self, e: HarnessError) -> CallError {
        match e {
            HarnessError::InspectRejected(m) | HarnessError::Trap(m) => CallError::Rejected(m),
            HarnessError::NoSuchMethod(m) => CallError::Rejected(m),
            HarnessError::NotInstalled => CallError::CanisterNotFound {
                canister: self.canister(),
                network: "harness".into(),
            },
            other => CallError::Other(other.to_string()),
        }
    }
}

/// `arg` (an encoded `UploadChunk`) with one byte of its data flipped.
fn corrupt_chunk(arg: &[u8]) -> Vec<u8> {
    let mut chunk: UploadChunk = candid::decode_one(arg).expect("an upload_chunk argument");
    let data = chunk.data.as_mut_slice();
    let mid = data.len() / 2;
    data[mid] ^= 0x01;
    candid::encode_one(&chunk).expect("encodes")
}

impl Transport for HarnessTransport<'_> {
    fn caller(&self) -> Principal {
        self.caller
    }

    fn canister(&self) -> Principal {
        self.harness.borrow().canister_id()
    }

    async fn update(&self, method: &str, arg: Vec<u8>) -> Result<Vec<u8>, CallError> {
        self.call(true, method, arg)
    }

    async fn query(&self, method: &str, arg: Vec<u8>) -> Result<Vec<u8>, CallError> {
        self.call(false, method, arg)
    }
}
