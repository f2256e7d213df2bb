//! The batch cache's memory: chunks of [`CHUNK_BYTES`] that are mapped and written
//! once (when the shard starts) and then used again and again.
//!
//! Appended batches are copied out of the request (and stamped with their offsets)
//! into the shard's current chunk, one after another, and cached as [`Bytes`] that
//! share the chunk. When every batch of a chunk has left the cache and every answer
//! that carried one has been sent, the chunk goes back to its shard's free list.
//!
//! Why: taking fresh memory from the kernel costs a page fault and a page zeroed
//! for every 4 KiB (about 0.6-1 s of CPU per GiB on a VM). With the allocator
//! alone, a shard's batch cache takes fresh memory until it has filled its budget
//! once, so a large cache (1 GiB) made produce more than twice as slow for the
//! first gigabytes. Here the budget is mapped and populated with
//! `MADV_POPULATE_WRITE` before the shard serves, and the append path only ever
//! finds memory that is already there.

use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// One chunk of cache memory. Batches larger than this are cached in memory of
/// their own.
pub(crate) const CHUNK_BYTES: usize = 8 << 20;

/// Chunks beyond the budget's (an eighth more, at least one) kept for the moments
/// when answers still hold evicted batches, and for the last, partly used chunk.
fn spare_chunks(budget_chunks: usize) -> usize {
    (budget_chunks / 8).max(1)
}

/// A private anonymous mapping of [`CHUNK_BYTES`].
struct Mem(NonNull<u8>);

// SAFETY: the mapping is plain memory owned by this value; which thread unmaps it
// does not matter.
unsafe impl Send for Mem {}
// SAFETY: shared access only ever reads (see `Slice`).
unsafe impl Sync for Mem {}

impl Mem {
    fn map(populate: bool) -> Option<Mem> {
        // SAFETY: an anonymous private mapping has no preconditions; failure is
        // checked.
        let p = unsafe {
            nix::libc::mmap(
                std::ptr::null_mut(),
                CHUNK_BYTES,
                nix::libc::PROT_READ | nix::libc::PROT_WRITE,
                nix::libc::MAP_PRIVATE | nix::libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == nix::libc::MAP_FAILED {
            return None;
        }
        if populate {
            /// Linux 5.14+; older kernels fault the pages in at first use instead.
            const MADV_POPULATE_WRITE: nix::libc::c_int = 23;
            // SAFETY: `p` is the mapping just made, of this length.
            let _ = unsafe { nix::libc::madvise(p, CHUNK_BYTES, MADV_POPULATE_WRITE) };
        }
        NonNull::new(p.cast::<u8>()).map(Mem)
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `map` with this length and nothing refers
        // to it any more (its chunk is gone).
        unsafe {
            nix::libc::munmap(self.0.as_ptr().cast(), CHUNK_BYTES);
        }
    }
}

type FreeList = Arc<Mutex<Vec<Mem>>>;

/// A chunk in use: shared by the batches cut from it.
struct Chunk {
    mem: Option<Mem>,
    /// Where the memory goes when the last batch is dropped; `None`: unmapped.
    home: Option<FreeList>,
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let (Some(mem), Some(home)) = (self.mem.take(), &self.home) {
            if let Ok(mut free) = home.lock() {
                free.push(mem);
            }
        }
    }
}

/// One batch: a range of a chunk, written once before it was shared.
struct Slice {
    chunk: Arc<Chunk>,
    start: usize,
    len: usize,
}

impl AsRef<[u8]> for Slice {
    fn as_ref(&self) -> &[u8] {
        let Some(mem) = &self.chunk.mem else {
            return &[];
        };
        // SAFETY: `start + len <= CHUNK_BYTES` (checked when cut), the range was
        // written before the slice existed and is never written again while the
        // chunk is alive.
        unsafe { std::slice::from_raw_parts(mem.0.as_ptr().add(self.start), self.len) }
    }
}

/// One shard's cache memory.
pub(crate) struct Arena {
    free: FreeList,
    /// The chunk batches are being cut from, and how much of it is used.
    current: Option<(Arc<Chunk>, usize)>,
    /// Chunks that belong to the free list (in use or free); more are mapped
    /// only for the moment.
    pooled: usize,
    max_pooled: usize,
}

impl Arena {
    pub(crate) fn new(cache_bytes: usize) -> Arena {
        Arena {
            free: FreeList::default(),
            current: None,
            pooled: 0,
            max_pooled: cache_bytes.div_ceil(CHUNK_BYTES)
                + spare_chunks(cache_bytes.div_ceil(CHUNK_BYTES)),
        }
    }

    /// Maps and populates one more chunk for the free list; `false` once the
    /// budget is mapped (or mapping fails).
    pub(crate) fn grow(&mut self) -> bool {
        if self.pooled >= self.max_pooled {
            return false;
        }
        let Some(mem) = Mem::map(true) else {
            return false;
        };
        self.pooled += 1;
        if let Ok(mut free) = self.free.lock() {
            free.push(mem);
        }
        true
    }

    /// Copies `data` into cache memory, lets `stamp` change the copy, and returns
    /// it. `None` when `data` is larger than a chunk.
    pub(crate) fn copy(&mut self, data: &[u8], stamp: impl FnOnce(&mut [u8])) -> Option<Bytes> {
        let len = data.len();
        if len > CHUNK_BYTES {
            return None;
        }
        if self
            .current
            .as_ref()
            .is_none_or(|(_, used)| used + len > CHUNK_BYTES)
        {
            self.current = Some((self.next_chunk()?, 0));
        }
        let (chunk, used) = self.current.as_mut()?;
        let mem = chunk.mem.as_ref()?;
        let start = *used;
        // SAFETY: `[start, start + len)` lies within the mapping and is not part of
        // any slice yet (slices are cut from `used` upwards), so this is the only
        // reference to it.
        let dst = unsafe { std::slice::from_raw_parts_mut(mem.0.as_ptr().add(start), len) };
        dst.copy_from_slice(data);
        stamp(dst);
        *used += len;
        Some(Bytes::from_owner(Slice {
            chunk: chunk.clone(),
            start,
            len,
        }))
    }

    fn next_chunk(&mut self) -> Option<Arc<Chunk>> {
        let reused = self.free.lock().ok().and_then(|mut f| f.pop());
        let (mem, home) = match reused {
            Some(mem) => (mem, Some(self.free.clone())),
            None if self.pooled < self.max_pooled => {
                self.pooled += 1;
                (Mem::map(true)?, Some(self.free.clone()))
            }
            // Every pooled chunk is in use (answers still hold evicted batches, or
            // unwritten batches keep the cache over its budget): one for now.
            None => (Mem::map(false)?, None),
        };
        Some(Arc::new(Chunk {
            mem: Some(mem),
            home,
        }))
    }

    /// Free chunks, for tests.
    #[cfg(test)]
    fn free_chunks(&self) -> usize {
        self.free.lock().map_or(0, |f| f.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPARE_CHUNKS: usize = 1;

    #[test]
    fn batches_are_cut_from_chunks_that_come_back_when_the_last_is_dropped() {
        assert_eq!(spare_chunks(2), SPARE_CHUNKS);
        assert_eq!(spare_chunks(128), 16);
        let mut a = Arena::new(2 * CHUNK_BYTES);
        while a.grow() {}
        assert_eq!(a.free_chunks(), 2 + SPARE_CHUNKS);
        let one = a.copy(&[1u8; 1000], |b| b[0] = 9).unwrap();
        let two = a.copy(&[2u8; 3000], |_| {}).unwrap();
        assert_eq!(one.len(), 1000);
        assert_eq!((one[0], one[1], one[999]), (9, 1, 1));
        assert!(two.iter().all(|&b| b == 2));
        assert_eq!(a.free_chunks(), 1 + SPARE_CHUNKS, "both in one chunk");
        // A batch that does not fit the rest of the chunk starts a new one.
        let big = a.copy(&vec![3u8; CHUNK_BYTES - 1000], |_| {}).unwrap();
        assert_eq!(a.free_chunks(), SPARE_CHUNKS);
        assert!(big.iter().all(|&b| b == 3));
        assert!(a.copy(&vec![0u8; CHUNK_BYTES + 1], |_| {}).is_none());
        // The first chunk returns once both of its batches are gone (a clone sent
        // to another thread counts too).
        let held = one.clone();
        drop((one, two));
        assert_eq!(a.free_chunks(), SPARE_CHUNKS);
        std::thread::spawn(move || drop(held)).join().unwrap();
        assert_eq!(a.free_chunks(), 1 + SPARE_CHUNKS);
        drop(big);
        // The current chunk stays current while the arena cuts from it.
        assert_eq!(a.free_chunks(), 1 + SPARE_CHUNKS);
    }

    #[test]
    fn past_the_budget_chunks_are_mapped_for_the_moment() {
        let mut a = Arena::new(CHUNK_BYTES);
        let held: Vec<Bytes> = (0..2 + SPARE_CHUNKS + 2)
            .map(|i| {
                a.copy(&vec![u8::try_from(i).unwrap(); CHUNK_BYTES], |_| {})
                    .unwrap()
            })
            .collect();
        for (i, b) in held.iter().enumerate() {
            assert!(b.iter().all(|&x| usize::from(x) == i));
        }
        assert_eq!(a.pooled, 1 + SPARE_CHUNKS);
        drop(held);
        assert_eq!(
            a.free_chunks(),
            1 + SPARE_CHUNKS,
            "the extra ones were unmapped"
        );
    }
}
