//! Stable memory: 64 KiB pages held as shared, copy-on-write chunks, so that a snapshot for
//! rollback is a cheap clone of the page table and a write copies only the pages it touches.

use std::sync::Arc;

/// Bytes per Wasm (and stable memory) page.
pub const PAGE: u64 = 65_536;

type Chunk = [u8; PAGE as usize];

/// A canister's stable memory. Pages never written read as zeros and take no memory.
#[derive(Clone, Default)]
pub struct StableMemory {
    pages: Vec<Option<Arc<Chunk>>>,
}

impl std::fmt::Debug for StableMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StableMemory")
            .field("pages", &self.pages.len())
            .finish()
    }
}

impl StableMemory {
    /// Size in 64 KiB pages.
    pub fn pages(&self) -> u64 {
        self.pages.len() as u64
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.pages() * PAGE
    }

    /// Adds `delta` zeroed pages.
    pub fn grow(&mut self, delta: u64) {
        let new_len = self.pages.len() + delta as usize;
        self.pages.resize(new_len, None);
    }

    /// Whether `[offset, offset + len)` lies within the memory.
    pub fn in_bounds(&self, offset: u64, len: u64) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.len())
    }

    /// Copies `dst.len()` bytes starting at `offset` into `dst`. The range must be in bounds.
    pub fn read(&self, mut offset: u64, dst: &mut [u8]) {
        let mut done = 0usize;
        while done < dst.len() {
            let page = (offset / PAGE) as usize;
            let within = (offset % PAGE) as usize;
            let n = (PAGE as usize - within).min(dst.len() - done);
            match &self.pages[page] {
                Some(chunk) => dst[done..done + n].copy_from_slice(&chunk[within..within + n]),
                None => dst[done..done + n].fill(0),
            }
            done += n;
            offset += n as u64;
        }
    }

    /// Copies `src` to `offset`. The range must be in bounds.
    pub fn write(&mut self, mut offset: u64, src: &[u8]) {
        let mut done = 0usize;
        while done < src.len() {
            let page = (offset / PAGE) as usize;
            let within = (offset % PAGE) as usize;
            let n = (PAGE as usize - within).min(src.len() - done);
            let chunk = self.pages[page].get_or_insert_with(|| Arc::new([0u8; PAGE as usize]));
            Arc::make_mut(chunk)[within..within + n].copy_from_slice(&src[done..done + n]);
            done += n;
            offset += n as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cow_snapshot_is_independent() {
        let mut m = StableMemory::default();
        m.grow(2);
        m.write(PAGE - 2, &[1, 2, 3, 4]);
        let snap = m.clone();
        m.write(PAGE - 1, &[9]);
        let mut a = [0u8; 4];
        snap.read(PAGE - 2, &mut a);
        assert_eq!(a, [1, 2, 3, 4]);
        m.read(PAGE - 2, &mut a);
        assert_eq!(a, [1, 9, 3, 4]);
        assert!(m.in_bounds(0, 2 * PAGE));
        assert!(!m.in_bounds(1, 2 * PAGE));
    }
}
