//! The process allocator for the broker: the system allocator, except that very
//! large blocks are reserved lazily with `mmap(MAP_NORESERVE)`.
//!
//! Why: the Kafka codecs size a `Vec` from the element count a request announces
//! before reading the elements. A 17-byte request can announce two billion
//! elements; the codec asks for hundreds of GiB, the system allocator refuses, and
//! Rust aborts the process. With this allocator such a block is only address space:
//! no page is touched, the codec finds the buffer too short on the next element,
//! drops the `Vec`, and the request is refused like any other malformed one. Honest
//! large blocks work the same way (their pages are committed as they are written).
//! Found by the `request_frame` fuzz target.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks at least this large are mapped lazily.
pub const LAZY_FROM_BYTES: usize = 256 << 20;

/// Page size assumed for mapped blocks (alignment up to this is honoured).
const PAGE_BYTES: usize = 4096;

/// See the module docs. Install with `#[global_allocator]`.
#[derive(Debug, Default, Clone, Copy)]
pub struct LazyHugeAlloc;

fn lazy(layout: Layout) -> bool {
    layout.size() >= LAZY_FROM_BYTES && layout.align() <= PAGE_BYTES
}

fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping has no preconditions; failure is checked.
    let p = unsafe {
        nix::libc::mmap(
            std::ptr::null_mut(),
            size,
            nix::libc::PROT_READ | nix::libc::PROT_WRITE,
            nix::libc::MAP_PRIVATE | nix::libc::MAP_ANONYMOUS | nix::libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == nix::libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

// SAFETY: blocks below the threshold come from `System` and go back to it; blocks at
// or above it come from `mmap` with the layout's size and go back to `munmap` with
// the same size (a layout's size decides which path a block took, both ways).
unsafe impl GlobalAlloc for LazyHugeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if lazy(layout) {
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if lazy(layout) {
            // Fresh anonymous pages are zero.
            map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if lazy(layout) {
            // SAFETY: `ptr` was mapped with exactly this size by `map`.
            unsafe {
                nix::libc::munmap(ptr.cast(), layout.size());
            }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !lazy(layout) && !lazy(new_layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: `new_layout` is valid and non-zero (at least one side is huge or
        // the caller's old block was non-zero).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller of the two sizes and do
            // not overlap; the old one is then released with its own layout.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_blocks_are_address_space_until_written() {
        let a = LazyHugeAlloc;
        // 64 GiB: more than this machine has, yet no page is committed.
        let layout = Layout::from_size_align(64 << 30, 8).unwrap();
        // SAFETY: non-zero layout; the block is released with the same layout.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            *p = 7;
            *p.add((64 << 30) - 1) = 9;
            assert_eq!((*p, *p.add((64 << 30) - 1)), (7, 9));
            a.dealloc(p, layout);
        }
        // Small blocks and growth across the threshold keep their bytes.
        let small = Layout::from_size_align(16, 8).unwrap();
        // SAFETY: as above; realloc keeps the alignment.
        unsafe {
            let p = a.alloc(small);
            p.write_bytes(5, 16);
            let q = a.realloc(p, small, LAZY_FROM_BYTES + 1);
            assert!(!q.is_null());
            assert_eq!(std::slice::from_raw_parts(q, 16), &[5; 16]);
            let r = a.realloc(
                q,
                Layout::from_size_align(LAZY_FROM_BYTES + 1, 8).unwrap(),
                32,
            );
            assert_eq!(std::slice::from_raw_parts(r, 16), &[5; 16]);
            a.dealloc(r, Layout::from_size_align(32, 8).unwrap());
        }
    }
}
