//! Cold reads: data no longer in the batch cache, read from the segment file with
//! asynchronous O_DIRECT reads several blocks deep, ahead of the reader.
//!
//! Log files are written with O_DIRECT, so their data is not in the page cache and
//! a `sendfile` of it would read the disk synchronously on the shard. Instead each
//! segment keeps a small window of aligned blocks ([`BLOCK_BYTES`]): a read waits
//! only for the blocks that hold what it returns, and starts reads of the blocks
//! after them (as deep as the reader asks for at a time, a few times over), so the
//! next read of a sequential reader (a consumer catching up, a follower) finds its
//! data read or in flight. Every read is a task on the shard's reactor; nothing here
//! blocks the shard. Blocks behind a reader are dropped once it has taken them; all
//! blocks of a shard together are bounded by [`SHARD_MAX_BYTES`], oldest out first.
//!
//! A block is read up to the segment's `written_size` at the time (bytes below it
//! never change); a later read past that end reads the block again. A truncation
//! replaces the segment and with it the window.
//!
//! Ranges the page cache already holds (someone read the file through a buffered
//! descriptor) are probed with `cachestat(2)` and left to `sendfile`.

use std::cell::{Cell, RefCell};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::rc::{Rc, Weak};

use bytes::Bytes;
use futures::future::{FutureExt, LocalBoxFuture, Shared};
use glommio::io::{DmaFile, ReadResult as DmaRead};

use crate::error::{Error, Result};
use crate::failpoint;

/// Size and alignment of one read (fio's reference reads are this size too).
pub(crate) const BLOCK_BYTES: u64 = 1 << 20;

/// Bytes of blocks one shard holds, read or in flight, over all its segments; the
/// oldest blocks go first beyond it. Blocks a read needs are read whatever this
/// says; reads ahead stop at three quarters of it.
pub(crate) const SHARD_MAX_BYTES: u64 = 64 << 20;

/// Most bytes read ahead for one reader (and at least [`BLOCK_BYTES`] times 2).
const AHEAD_MAX_BYTES: u64 = 16 << 20;

/// Reads of one shard in flight beyond which no read ahead starts. The disk
/// serves requests in order: a deep queue of reads makes every write and fdatasync
/// behind it wait (a producer's latency tripled while a consumer caught up with 16
/// reads in flight). Four 1 MiB reads keep this machine's disk at its read speed.
const AHEAD_IN_FLIGHT_PER_SHARD: u64 = 4;

type BlockRead = Shared<LocalBoxFuture<'static, std::result::Result<DmaRead, Rc<std::io::Error>>>>;

struct Block {
    /// Bytes of the block that were in the file when it was read: `[start, end)`.
    end: u64,
    read: BlockRead,
    /// The block's entry in the shard's ledger.
    id: u64,
    _charge: Charge,
}

/// One block's share of the shard's bytes, given back when the block is dropped.
struct Charge {
    ledger: Rc<Ledger>,
    bytes: u64,
}

impl Drop for Charge {
    fn drop(&mut self) {
        let held = &self.ledger.bytes;
        held.set(held.get().saturating_sub(self.bytes));
    }
}

/// Every block a shard's segments hold, oldest first, and their bytes: bounds the
/// memory of every window together (one per segment read cold).
#[derive(Default)]
pub(crate) struct Ledger {
    order: RefCell<VecDeque<(Weak<ReadAhead>, u64, u64)>>,
    bytes: Cell<u64>,
    next_id: Cell<u64>,
    /// Block reads submitted and not yet completed.
    in_flight: Rc<Cell<u64>>,
}

impl Ledger {
    /// Bytes held.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.get()
    }

    fn charge(self: &Rc<Self>, window: &Rc<ReadAhead>, start: u64) -> (u64, Charge) {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.bytes.set(self.bytes.get() + BLOCK_BYTES);
        self.order
            .borrow_mut()
            .push_back((Rc::downgrade(window), start, id));
        let charge = Charge {
            ledger: self.clone(),
            bytes: BLOCK_BYTES,
        };
        (id, charge)
    }

    /// Drops the oldest blocks until the shard is within its bound. A read that
    /// already waits for a dropped block still gets it.
    fn trim(&self) {
        // Bounded: every pass pops an entry.
        while self.bytes.get() > SHARD_MAX_BYTES {
            let Some((window, start, id)) = self.order.borrow_mut().pop_front() else {
                return;
            };
            if let Some(w) = window.upgrade() {
                let doomed = {
                    let mut blocks = w.blocks.borrow_mut();
                    match blocks.entry(start) {
                        Entry::Occupied(e) if e.get().id == id => Some(e.remove()),
                        _ => None,
                    }
                };
                drop(doomed);
            }
        }
        // Entries of blocks already gone (released behind a reader, replaced) stand
        // for nothing. They are dropped in bulk once they outnumber the blocks held,
        // so the ledger stays proportional to the blocks even when a block that is
        // kept for long (an idle reader's) sits at its front.
        let mut order = self.order.borrow_mut();
        let held = usize::try_from(self.bytes.get() / BLOCK_BYTES).unwrap_or(usize::MAX);
        if order.len() > 2 * held + 16 {
            order.retain(|(w, start, id)| {
                w.upgrade()
                    .is_some_and(|w| w.blocks.borrow().get(start).is_some_and(|b| b.id == *id))
            });
        }
    }

    /// Entries in the ledger, for tests.
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.order.borrow().len()
    }
}

/// One read counted in flight until it completes or is dropped.
struct InFlight(Rc<Cell<u64>>);

impl InFlight {
    fn new(count: &Rc<Cell<u64>>) -> InFlight {
        count.set(count.get() + 1);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// The read-ahead window of one segment file.
#[derive(Default)]
pub(crate) struct ReadAhead {
    blocks: RefCell<BTreeMap<u64, Block>>,
}

/// What a read of a file range needs besides the range.
pub(crate) struct Source<'a> {
    pub file: &'a Rc<DmaFile>,
    pub path: &'a Path,
    pub window: &'a Rc<ReadAhead>,
    /// Bytes below this are in the file.
    pub written: u64,
    /// How much the reader asks for at a time (sizes the read-ahead).
    pub reader_bytes: u64,
    /// The shard's blocks.
    pub ledger: &'a Rc<Ledger>,
}

impl Source<'_> {
    /// Bytes `[pos, pos + len)` of the file (all below `written`), copied out of
    /// the blocks that hold them, after starting reads of the blocks ahead.
    pub async fn bytes(&self, pos: u64, len: u64) -> Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let end = pos + len;
        if end > self.written {
            return Err(short(self.path, pos, end));
        }
        let reads = self.window.plan(self, pos, end);
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        for (start, read) in reads {
            let data = read.await.map_err(|e| {
                Error::io(
                    "read",
                    self.path,
                    std::io::Error::new(e.kind(), e.to_string()),
                )
            })?;
            let from = pos.max(start) - start;
            let to = end.min(start + BLOCK_BYTES) - start;
            let (Ok(from), Ok(to)) = (usize::try_from(from), usize::try_from(to)) else {
                return Err(short(self.path, pos, end));
            };
            let Some(piece) = data.get(from..to) else {
                self.window.forget(start);
                return Err(short(self.path, pos, end));
            };
            out.extend_from_slice(piece);
        }
        Ok(Bytes::from(out))
    }

    /// A reader is done with everything below `end`: blocks wholly below it are
    /// dropped (a sequential reader does not come back for them).
    pub fn consumed(&self, end: u64) {
        let behind: Vec<Block> = {
            let mut blocks = self.window.blocks.borrow_mut();
            let keep = blocks.split_off(&align_down(end));
            std::mem::replace(&mut *blocks, keep)
                .into_values()
                .collect()
        };
        drop(behind);
    }
}

fn short(path: &Path, pos: u64, end: u64) -> Error {
    Error::io(
        "read",
        path,
        std::io::Error::other(format!(
            "segment shorter than its index says (bytes {pos}..{end})"
        )),
    )
}

impl ReadAhead {
    /// The reads of the blocks holding `[pos, end)`, in order, after making sure
    /// they and the blocks ahead of them are read or in flight.
    fn plan(self: &Rc<Self>, src: &Source<'_>, pos: u64, end: u64) -> Vec<(u64, BlockRead)> {
        let first = align_down(pos);
        let last = align_down(end - 1);
        let mut needed = Vec::new();
        {
            let mut blocks = self.blocks.borrow_mut();
            let mut start = first;
            while start <= last {
                let want_end = (start + BLOCK_BYTES).min(src.written);
                let need_end = (start + BLOCK_BYTES).min(end);
                let b = match blocks.entry(start) {
                    Entry::Occupied(e) if e.get().end >= need_end => e.into_mut(),
                    Entry::Occupied(mut e) => {
                        e.insert(self.start_read(src, start, want_end));
                        e.into_mut()
                    }
                    Entry::Vacant(e) => e.insert(self.start_read(src, start, want_end)),
                };
                needed.push((start, b.read.clone()));
                start += BLOCK_BYTES;
            }
            // Ahead: a few of the reader's reads, in whole blocks, within the file.
            let ahead = (src.reader_bytes.saturating_mul(4))
                .clamp(2 * BLOCK_BYTES, AHEAD_MAX_BYTES)
                .div_ceil(BLOCK_BYTES);
            for i in 1..=ahead {
                let start = last + i * BLOCK_BYTES;
                if start >= src.written {
                    break;
                }
                if blocks.contains_key(&start) {
                    continue;
                }
                if src.ledger.bytes() + BLOCK_BYTES > SHARD_MAX_BYTES / 4 * 3
                    || src.ledger.in_flight.get() >= AHEAD_IN_FLIGHT_PER_SHARD
                {
                    break;
                }
                let want_end = (start + BLOCK_BYTES).min(src.written);
                blocks.insert(start, self.start_read(src, start, want_end));
            }
        }
        src.ledger.trim();
        needed
    }

    /// Starts reading `[start, end)` (`start` aligned) as a task of its own, so that
    /// it proceeds whether or not anyone is waiting for it yet.
    fn start_read(self: &Rc<Self>, src: &Source<'_>, start: u64, end: u64) -> Block {
        let file = src.file.clone();
        let path = src.path.to_path_buf();
        let len = usize::try_from(crate::disk::align_up(end - start)).unwrap_or(usize::MAX);
        let in_flight = InFlight::new(&src.ledger.in_flight);
        let task = glommio::spawn_local(async move {
            let r = async {
                failpoint::check("segment.read", &path).map_err(Rc::new)?;
                file.read_at_aligned(start, len)
                    .await
                    .map_err(|e| Rc::new(std::io::Error::from(e)))
            }
            .await;
            drop(in_flight);
            let r = r?;
            crate::metrics::cold_read_done(r.len() as u64);
            Ok(r)
        });
        let (id, charge) = src.ledger.charge(self, start);
        Block {
            end,
            read: task.boxed_local().shared(),
            id,
            _charge: charge,
        }
    }

    /// Drops a block whose read failed or came back short, so the next read
    /// reads it again.
    fn forget(&self, start: u64) {
        let doomed = self.blocks.borrow_mut().remove(&start);
        drop(doomed);
    }

    /// Blocks held (read or in flight).
    #[cfg(test)]
    pub(crate) fn blocks(&self) -> usize {
        self.blocks.borrow().len()
    }
}

fn align_down(pos: u64) -> u64 {
    pos - pos % BLOCK_BYTES
}

/// Whether the page cache holds every page of `[pos, pos + len)` of the file, so
/// that `sendfile` of the range reads memory, not the disk. `cachestat(2)` (Linux
/// 6.5+); on older kernels every range counts as not resident and is read with
/// O_DIRECT, which is always correct.
pub(crate) fn resident(fd: std::os::fd::RawFd, pos: u64, len: u64) -> bool {
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    /// `struct cachestat` of the kernel's uapi.
    #[repr(C)]
    #[derive(Default)]
    #[allow(clippy::struct_field_names)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    /// The same number on every architecture (added after the syscall tables were
    /// unified).
    const SYS_CACHESTAT: nix::libc::c_long = 451;
    if len == 0 {
        return false;
    }
    let first_page = pos / 4096;
    let pages = (pos + len).div_ceil(4096) - first_page;
    let range = Range {
        off: first_page * 4096,
        len: pages * 4096,
    };
    let mut stat = Stat::default();
    // SAFETY: both pointers are to live, properly laid out structs; the call only
    // writes `stat`.
    let rc =
        unsafe { nix::libc::syscall(SYS_CACHESTAT, fd, &raw const range, &raw mut stat, 0u32) };
    rc == 0 && stat.nr_cache >= pages
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::io::OpenOptions;
    use glommio::LocalExecutorBuilder;

    fn pattern(pos: u64) -> u8 {
        u8::try_from((pos * 7 + pos / 4096) % 251).unwrap_or(0)
    }

    /// Runs `f` on a glommio executor with a 5.5 MiB patterned file.
    fn with_file(f: impl AsyncFnOnce(Rc<DmaFile>, &Path) + Send + 'static) {
        // Registered buffers within this machine's 8 MiB of lockable memory, as the
        // engine's shards have.
        LocalExecutorBuilder::default()
            .io_memory(1 << 20)
            .spawn(move || async move {
                let dir = tempfile::tempdir().unwrap();
                // As a shard does before its first DMA open (see `disk::probe_direct_io`).
                crate::disk::write_probe_file(dir.path()).unwrap();
                crate::disk::probe_direct_io(dir.path()).await.unwrap();
                let path = dir.path().join("00000000000000000000.log");
                let file = OpenOptions::new()
                    .create(true)
                    .read(true)
                    .write(true)
                    .dma_open(&path)
                    .await
                    .unwrap();
                let size = 5 * BLOCK_BYTES + BLOCK_BYTES / 2;
                let mut buf = file.alloc_dma_buffer(usize::try_from(size).unwrap());
                for (i, b) in buf.as_bytes_mut().iter_mut().enumerate() {
                    *b = pattern(i as u64);
                }
                file.write_at(buf, 0).await.unwrap();
                f(Rc::new(file), &path).await;
            })
            .unwrap()
            .join()
            .unwrap();
    }

    fn expected(pos: u64, len: u64) -> Vec<u8> {
        (pos..pos + len).map(pattern).collect()
    }

    #[test]
    fn reads_come_back_intact_and_the_blocks_ahead_are_read_once() {
        with_file(async |file, path| {
            let window = Rc::new(ReadAhead::default());
            let ledger = Rc::new(Ledger::default());
            let src = Source {
                file: &file,
                path,
                window: &window,
                written: 5 * BLOCK_BYTES + 1000,
                reader_bytes: 300_000,
                ledger: &ledger,
            };
            let before = crate::metrics::snapshot(0).cold_block_reads;
            // Across a block boundary.
            let got = src.bytes(BLOCK_BYTES - 10, 300_000).await.unwrap();
            assert_eq!(&got[..], &expected(BLOCK_BYTES - 10, 300_000)[..]);
            // Two blocks needed, two read ahead (4 x 300 kB rounds up to 2 MiB).
            assert_eq!(window.blocks(), 4);
            assert_eq!(ledger.bytes(), 4 * BLOCK_BYTES);
            src.consumed(BLOCK_BYTES - 10 + 300_000);
            assert_eq!(window.blocks(), 3, "block 0 is behind the reader");
            // The next sequential reads find their blocks already read or in flight.
            let mut pos = BLOCK_BYTES - 10 + 300_000;
            while pos + 300_000 <= src.written {
                let got = src.bytes(pos, 300_000).await.unwrap();
                assert_eq!(&got[..], &expected(pos, 300_000)[..], "at {pos}");
                pos += 300_000;
                src.consumed(pos);
            }
            let tail = src.bytes(src.written - 100, 100).await.unwrap();
            assert_eq!(&tail[..], &expected(src.written - 100, 100)[..]);
            let reads = crate::metrics::snapshot(0).cold_block_reads.0 - before.0;
            // Blocks 0..=5, each read once, the last one only up to `written`.
            assert_eq!(reads, 6);
            src.consumed(src.written);
            assert_eq!(window.blocks(), 1, "only the block the reader is in");
            assert_eq!(ledger.bytes(), BLOCK_BYTES);
            // Past what is written: refused, nothing read.
            assert!(src.bytes(src.written - 10, 11).await.is_err());
            drop(window);
            assert_eq!(ledger.bytes(), 0, "a dropped segment gives its blocks back");
        });
    }

    #[test]
    fn the_ledger_stays_proportional_to_the_blocks_held() {
        with_file(async |file, path| {
            let ledger = Rc::new(Ledger::default());
            // An idle reader's block stays at the front of the ledger throughout.
            let idle = Rc::new(ReadAhead::default());
            let src = |window| Source {
                file: &file,
                path,
                window,
                written: 5 * BLOCK_BYTES,
                reader_bytes: BLOCK_BYTES,
                ledger: &ledger,
            };
            src(&idle).bytes(0, 10).await.unwrap();
            src(&idle).consumed(0);
            // Another reader goes over the file again and again.
            let busy = Rc::new(ReadAhead::default());
            for _ in 0..40 {
                let mut pos = 0;
                while pos < 5 * BLOCK_BYTES {
                    let len = (5 * BLOCK_BYTES - pos).min(BLOCK_BYTES);
                    src(&busy).bytes(pos, len).await.unwrap();
                    src(&busy).consumed(pos);
                    pos += len;
                }
                src(&busy).consumed(5 * BLOCK_BYTES);
            }
            let held = usize::try_from(ledger.bytes() / BLOCK_BYTES).unwrap();
            assert!(idle.blocks() >= 1, "the idle reader kept its block");
            assert!(
                ledger.entries() <= 2 * held + 16 + 8,
                "{} ledger entries for {held} blocks",
                ledger.entries()
            );
        });
    }

    #[test]
    fn a_block_read_before_the_file_grew_is_read_again() {
        with_file(async |file, path| {
            let window = Rc::new(ReadAhead::default());
            let ledger = Rc::new(Ledger::default());
            let mut src = Source {
                file: &file,
                path,
                window: &window,
                written: 100,
                reader_bytes: 100,
                ledger: &ledger,
            };
            assert_eq!(&src.bytes(0, 100).await.unwrap()[..], &expected(0, 100)[..]);
            src.written = 3 * BLOCK_BYTES;
            let got = src.bytes(50, 200_000).await.unwrap();
            assert_eq!(&got[..], &expected(50, 200_000)[..]);
        });
    }

    #[test]
    fn the_shard_bound_stops_reads_ahead_and_drops_the_oldest_blocks() {
        with_file(async |file, path| {
            let ledger = Rc::new(Ledger::default());
            // Many windows (segments) read once each at random places.
            let windows: Vec<Rc<ReadAhead>> = (0..80).map(|_| Rc::default()).collect();
            for (i, window) in windows.iter().enumerate() {
                let src = Source {
                    file: &file,
                    path,
                    window,
                    written: 5 * BLOCK_BYTES,
                    reader_bytes: 1 << 20,
                    ledger: &ledger,
                };
                let pos = (i as u64 % 5) * BLOCK_BYTES + 7;
                let got = src.bytes(pos, 1000).await.unwrap();
                assert_eq!(&got[..], &expected(pos, 1000)[..]);
                assert!(ledger.bytes() <= SHARD_MAX_BYTES, "{} held", ledger.bytes());
            }
            let held: usize = windows.iter().map(|w| w.blocks()).sum();
            assert_eq!(held as u64 * BLOCK_BYTES, ledger.bytes());
            // The first windows lost their blocks to the later ones.
            assert_eq!(windows[0].blocks(), 0);
            assert!(windows[79].blocks() >= 1);
            // A needed read goes ahead even with the shard at its bound.
            let window = Rc::new(ReadAhead::default());
            let src = Source {
                file: &file,
                path,
                window: &window,
                written: 5 * BLOCK_BYTES,
                reader_bytes: 1 << 20,
                ledger: &ledger,
            };
            let got = src.bytes(3 * BLOCK_BYTES, 10).await.unwrap();
            assert_eq!(&got[..], &expected(3 * BLOCK_BYTES, 10)[..]);
        });
    }

    #[test]
    fn residency_is_probed_without_reading() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, &vec![1u8; 64 << 10]).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(f.as_file());
        // Just written through the page cache: resident (where cachestat exists).
        let probe_works = resident(fd, 0, 64 << 10);
        if probe_works {
            assert!(resident(fd, 4096, 100));
        }
        // Past the end of the file nothing is cached.
        assert!(!resident(fd, 1 << 30, 4096));
        assert!(!resident(fd, 0, 0));
    }
}
