//! Stable memory layout: virtual memory 0 holds the metadata (which slot is active, the upload in
//! progress), memories 1 and 2 are two blob slots. The active model lives in one slot; uploads go
//! to the other, so a commit is a switch of one field and a failed upload never touches the model
//! that is serving.

use super::upload::{BlobStore, UploadSession};
use candid::{CandidType, Decode, Deserialize, Encode, Principal};
use ic_stable_structures::memory_manager::{MemoryId, MemoryManager, VirtualMemory};
use ic_stable_structures::storable::Bound;
use ic_stable_structures::{DefaultMemoryImpl, Memory, StableCell, Storable};
use std::borrow::Cow;
use std::cell::RefCell;

type VMem = VirtualMemory<DefaultMemoryImpl>;

const META: MemoryId = MemoryId::new(0);
const SLOTS: [MemoryId; 2] = [MemoryId::new(1), MemoryId::new(2)];
const PAGE: u64 = 65536;

#[derive(Debug, Clone, PartialEq, Eq, CandidType, Deserialize)]
pub struct ActiveBlob {
    pub slot: u8,
    pub size: u64,
    pub sha256: Vec<u8>,
    pub at_ns: u64,
    pub by: Principal,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, CandidType, Deserialize)]
pub struct Meta {
    /// None: the embedded default model serves.
    pub active: Option<ActiveBlob>,
    pub upload: Option<UploadSession>,
}

impl Meta {
    /// The slot an upload may write: never the active one.
    pub fn free_slot(&self) -> u8 {
        match &self.active {
            Some(a) => 1 - a.slot,
            None => 0,
        }
    }
}

/// The part of [`Meta`] every version has written the same way (Candid skips the other fields).
#[derive(CandidType, Deserialize)]
struct ActiveOnly {
    active: Option<ActiveBlob>,
}

impl Storable for Meta {
    fn to_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.clone().into_bytes())
    }

    fn into_bytes(self) -> Vec<u8> {
        // Encoding plain records cannot fail.
        Encode!(&self).unwrap_or_default()
    }

    fn from_bytes(bytes: Cow<'_, [u8]>) -> Self {
        // Written only by this canister. Should it ever fail to decode, trapping here makes an
        // upgrade fail and keeps the previous version running, with its model.
        match Decode!(&bytes, Meta) {
            Ok(m) => m,
            // An upload in progress written by an earlier version (another session layout): the
            // active model is kept, the upload is dropped (the next `packer upload` starts anew).
            Err(e) => match Decode!(&bytes, ActiveOnly) {
                Ok(a) => Meta {
                    active: a.active,
                    upload: None,
                },
                Err(_) => ic_cdk::trap(format!("stable metadata is unreadable: {e}")),
            },
        }
    }

    const BOUND: Bound = Bound::Unbounded;
}

thread_local! {
    static MANAGER: RefCell<MemoryManager<DefaultMemoryImpl>> =
        RefCell::new(MemoryManager::init(DefaultMemoryImpl::default()));
    static META_CELL: RefCell<StableCell<Meta, VMem>> = RefCell::new(StableCell::init(
        MANAGER.with(|m| m.borrow().get(META)),
        Meta::default(),
    ));
}

pub fn meta() -> Meta {
    META_CELL.with(|c| c.borrow().get().clone())
}

pub fn set_meta(meta: Meta) {
    META_CELL.with(|c| {
        c.borrow_mut().set(meta);
    });
}

/// The two blob slots in stable memory.
pub struct StableSlots;

fn slot_memory(slot: u8) -> VMem {
    MANAGER.with(|m| m.borrow().get(SLOTS[slot as usize & 1]))
}

impl BlobStore for StableSlots {
    fn reserve(&mut self, slot: u8, size: u64) -> Result<(), String> {
        let mem = slot_memory(slot);
        let have = mem.size() * PAGE;
        if have < size {
            let pages = (size - have).div_ceil(PAGE);
            if mem.grow(pages) < 0 {
                return Err(format!(
                    "stable memory cannot grow by {pages} pages of 64 KiB (canister memory limit?)"
                ));
            }
        }
        Ok(())
    }

    fn write(&mut self, slot: u8, offset: u64, data: &[u8]) {
        slot_memory(slot).write(offset, data);
    }

    fn read(&self, slot: u8, offset: u64, len: u64) -> Vec<u8> {
        let mut buf = vec![0u8; len as usize];
        slot_memory(slot).read(offset, &mut buf);
        buf
    }
}
