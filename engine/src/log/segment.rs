//! One segment of a partition log: the `.log` file written with O_DIRECT, its
//! in-memory indexes, and the buffers of appended bytes not yet in the file.
//!
//! Writes and the tail block. O_DIRECT writes start and end on 4 KiB boundaries, but
//! batches do not. Appended bytes go into [`WriteBuf`]s that each cover an aligned
//! range of the file. When buffers are written, a partly filled last block is copied
//! into a fresh buffer that appends continue into, so the next write rewrites that
//! block with more data. Only one write of a segment is in flight at a time (the
//! partition's I/O lock), so an older copy of the tail block can never land after a
//! newer one. The bytes of the file past the logical size are zeroes until the
//! segment closes, when the file is truncated to its logical size, so closed
//! segments are byte-for-byte Kafka's format.
//!
//! Sizes: `size` counts bytes appended; `file_pos` bytes handed to the file by
//! completed writes; `written_size` the largest batch boundary that is in the file.
//! `written_size <= file_pos <= size` always. `boundaries` holds the ends of the
//! batches appended but not yet wholly in the file, so `written_size` follows
//! `file_pos` batch by batch while full buffers stream out (and the batch cache
//! can let go of what is in the file) without waiting for the tail block.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};

use crate::batch::{check_stored, BatchHeader, StoredBatchError};
use crate::config::BLOCK_BYTES;
use crate::disk::{align_down, align_up};
use crate::error::{Error, Result};
use crate::failpoint::{self, Action};
use crate::log::index::{OffsetIndex, TimeIndex};
use crate::log::read_ahead::ReadAhead;

/// Bytes read at a time when scanning a segment.
const SCAN_CHUNK_BYTES: usize = 1 << 20;
/// Largest batch a scan will believe: Kafka's `max.message.bytes` cannot exceed the
/// 32-bit length, and a bit-flipped length must not make us allocate gigabytes.
const SCAN_BATCH_BYTES_MAX: usize = 256 << 20;

/// File names of a segment.
pub fn log_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(format!("{base_offset:020}.log"))
}
pub fn index_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(format!("{base_offset:020}.index"))
}
pub fn time_index_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(format!("{base_offset:020}.timeindex"))
}

/// A buffer of appended bytes covering the aligned file range starting at `start`.
pub(crate) struct WriteBuf {
    pub buf: DmaBuffer,
    pub start: u64,
    /// Valid bytes from the buffer's start.
    pub len: usize,
}

/// Smallest buffer allocated for appends: idle partitions hold at most this (or one
/// block) in memory, so thousands of partitions stay cheap.
const FIRST_BUFFER_BYTES: usize = 16 << 10;
const _: () = assert!(FIRST_BUFFER_BYTES.is_multiple_of(BLOCK_BYTES));

/// Full-size write buffers kept per shard for reuse. Fresh large aligned buffers
/// come from `mmap` and cost page faults on first touch; recycling them keeps
/// streaming appends at memory speed. 128 x 1 MiB bounds the pool per shard: enough
/// to cover the buffers in flight of 16 busy partitions.
const POOLED_BUFFERS_MAX: usize = 128;

thread_local! {
    static BUFFER_POOL: std::cell::RefCell<Vec<DmaBuffer>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A write buffer of `size` bytes, recycled when one of that size is pooled.
fn alloc_buffer(size: usize) -> DmaBuffer {
    BUFFER_POOL
        .with(|p| {
            let mut pool = p.borrow_mut();
            let i = pool.iter().position(|b| b.len() == size)?;
            Some(pool.swap_remove(i))
        })
        .unwrap_or_else(|| glommio::allocate_dma_buffer(size))
}

/// Returns a full-size buffer to the shard's pool (others are dropped).
fn release_buffer(buf: DmaBuffer, buffer_bytes: usize) {
    if buf.len() != buffer_bytes {
        return;
    }
    BUFFER_POOL.with(|p| {
        let mut pool = p.borrow_mut();
        if pool.len() < POOLED_BUFFERS_MAX {
            pool.push(buf);
        }
    });
}

fn aligned_capacity(bytes: usize, buffer_bytes: usize) -> usize {
    let b = BLOCK_BYTES;
    (bytes.div_ceil(b) * b).clamp(b, buffer_bytes.max(b))
}

/// Where a segment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SegmentState {
    /// Appends go here.
    Active,
    /// Rolled: no more appends; waiting for its last write, truncate and index files.
    Closing,
    /// In Kafka's final format on disk.
    Closed,
}

pub(crate) struct Segment {
    pub base_offset: u64,
    pub path: PathBuf,
    /// `None` until the first write creates the file.
    pub file: Option<Rc<DmaFile>>,
    pub size: u64,
    pub file_pos: u64,
    pub written_size: u64,
    /// Offset after the last batch that is wholly in the file.
    pub written_next_offset: u64,
    pub pending: VecDeque<WriteBuf>,
    /// (end position, next offset) of each batch past `written_size`, in order.
    pub boundaries: VecDeque<(u64, u64)>,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    pub bytes_since_index: u64,
    /// Offset after the last batch (== `base_offset` when empty).
    pub next_offset: u64,
    pub max_timestamp: i64,
    pub offset_of_max_timestamp: u64,
    /// Max timestamp of the first batch, or creation time: `segment.ms` counts from it.
    pub roll_base_ms: Option<i64>,
    pub state: SegmentState,
    /// The file holds writes that are not yet fdatasync'ed.
    pub unsynced: bool,
    /// Recovery rebuilt the indexes from the log; their files are rewritten.
    pub index_rebuilt: bool,
    /// Bytes of the file reserved with `fallocate` (the file's size until it closes).
    pub allocated: u64,
    /// Blocks of the file read ahead of cold readers.
    pub ahead: Rc<ReadAhead>,
}

impl Segment {
    /// A segment with no file yet; the writer creates it.
    pub fn new(dir: &Path, base_offset: u64) -> Segment {
        Segment {
            base_offset,
            path: log_path(dir, base_offset),
            file: None,
            size: 0,
            file_pos: 0,
            written_size: 0,
            written_next_offset: base_offset,
            pending: VecDeque::new(),
            boundaries: VecDeque::new(),
            index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            roll_base_ms: None,
            state: SegmentState::Active,
            unsynced: false,
            index_rebuilt: false,
            allocated: 0,
            ahead: Rc::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub fn pending_bytes(&self) -> u64 {
        self.size - self.file_pos
    }

    /// Moves `file_pos` to `end` (if further) and `written_size` /
    /// `written_next_offset` to the last batch boundary the file now holds.
    pub fn advance_file_pos(&mut self, end: u64) {
        self.file_pos = self.file_pos.max(end);
        while let Some(&(b_end, b_next)) = self.boundaries.front() {
            if b_end > self.file_pos {
                break;
            }
            self.written_size = b_end;
            self.written_next_offset = b_next;
            self.boundaries.pop_front();
        }
    }

    /// Copies `data` (whole batches) to the end of the segment's buffers. The last
    /// buffer grows (by copying) up to `buffer_bytes`; then a new one is started.
    pub fn push(&mut self, mut data: &[u8], buffer_bytes: usize) {
        while !data.is_empty() {
            let last_is_open = self
                .pending
                .back()
                .is_some_and(|b| b.buf.len() < buffer_bytes || b.len < b.buf.len());
            if !last_is_open {
                // The end is block-aligned when the last buffer is full or absent: a
                // partial block always sits in a buffer.
                debug_assert_eq!(self.size % BLOCK_BYTES as u64, 0);
                // A busy partition (its last buffer filled up) gets a full-size buffer
                // from the pool; a quiet one starts small.
                let busy = self.pending.back().is_some();
                let cap = if busy {
                    buffer_bytes
                } else {
                    aligned_capacity(data.len().max(FIRST_BUFFER_BYTES), buffer_bytes)
                };
                let buf = alloc_buffer(cap);
                self.pending.push_back(WriteBuf {
                    buf,
                    start: self.size,
                    len: 0,
                });
            }
            let Some(last) = self.pending.back_mut() else {
                return;
            };
            if last.buf.len() - last.len < data.len() && last.buf.len() < buffer_bytes {
                let cap = aligned_capacity(
                    (last.len + data.len()).max(last.buf.len() * 2),
                    buffer_bytes,
                );
                let mut grown = glommio::allocate_dma_buffer(cap);
                grown.as_bytes_mut()[..last.len].copy_from_slice(&last.buf.as_bytes()[..last.len]);
                last.buf = grown;
            }
            let room = last.buf.len() - last.len;
            let n = room.min(data.len());
            last.buf.as_bytes_mut()[last.len..last.len + n].copy_from_slice(&data[..n]);
            last.len += n;
            self.size += n as u64;
            data = &data[n..];
        }
    }

    /// A buffer has reached `buffer_bytes` and can be written without waiting.
    pub fn has_full_buffer(&self, buffer_bytes: usize) -> bool {
        self.pending.front().is_some_and(|b| b.len >= buffer_bytes)
    }

    /// Takes the buffers to write now: the full ones, and with `all` the last, partial
    /// one too, whose partial tail block is then copied into a new one-block buffer
    /// that appends continue into.
    pub fn take_writes(&mut self, all: bool, buffer_bytes: usize) -> Vec<WriteBuf> {
        let mut out = Vec::new();
        while let Some(front) = self.pending.front() {
            if front.len < buffer_bytes && !all {
                break;
            }
            let Some(wb) = self.pending.pop_front() else {
                break;
            };
            let end = wb.start + wb.len as u64;
            let carry_tail = !wb.len.is_multiple_of(BLOCK_BYTES) && self.pending.is_empty();
            if carry_tail {
                let tail_start = align_down(end);
                let tail_len = usize::try_from(end - tail_start).unwrap_or(0);
                let mut buf = glommio::allocate_dma_buffer(BLOCK_BYTES);
                let from = usize::try_from(tail_start - wb.start).unwrap_or(0);
                buf.as_bytes_mut()[..tail_len]
                    .copy_from_slice(&wb.buf.as_bytes()[from..from + tail_len]);
                self.pending.push_back(WriteBuf {
                    buf,
                    start: tail_start,
                    len: tail_len,
                });
            }
            out.push(wb);
            if carry_tail {
                break;
            }
        }
        out
    }

    /// Creates the file if needed and returns it.
    pub async fn ensure_file(&mut self) -> Result<Rc<DmaFile>> {
        if let Some(f) = &self.file {
            return Ok(f.clone());
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .dma_open(&self.path)
            .await
            .map_err(|e| Error::io("create", &self.path, e))?;
        let file = Rc::new(file);
        self.file = Some(file.clone());
        Ok(file)
    }

    /// Fills the tail block of a reopened segment so appends can continue into it.
    pub async fn load_tail(&mut self, buffer_bytes: usize) -> Result<()> {
        self.pending.clear();
        let tail_start = align_down(self.size);
        let tail_len = usize::try_from(self.size - tail_start).unwrap_or(0);
        if tail_len == 0 {
            return Ok(());
        }
        let file = self.ensure_file().await?;
        let read = read_exact_at(&file, &self.path, tail_start, tail_len).await?;
        let mut buf = glommio::allocate_dma_buffer(aligned_capacity(tail_len, buffer_bytes));
        buf.as_bytes_mut()[..tail_len].copy_from_slice(&read);
        self.pending.push_back(WriteBuf {
            buf,
            start: tail_start,
            len: tail_len,
        });
        Ok(())
    }
}

/// Smallest and largest step by which a segment file's allocation grows.
const ALLOCATION_STEP_MIN: u64 = 1 << 20;
const ALLOCATION_STEP_MAX: u64 = 64 << 20;

/// The allocation to reserve so a write ending at `end` lands in allocated blocks:
/// `None` if `allocated` already covers it. Writing into allocated blocks avoids
/// the filesystem's slow path for O_DIRECT writes that extend a file (block
/// allocation and size updates under the inode lock); the step grows with the
/// file, from 1 MiB to 64 MiB, and never reserves past the segment size by more
/// than one step.
pub(crate) fn allocation_for(allocated: u64, end: u64, segment_bytes: u64) -> Option<u64> {
    if end <= allocated {
        return None;
    }
    let step = allocated.clamp(ALLOCATION_STEP_MIN, ALLOCATION_STEP_MAX);
    let want = end.max(allocated + step).div_ceil(ALLOCATION_STEP_MIN) * ALLOCATION_STEP_MIN;
    let cap = segment_bytes.div_ceil(ALLOCATION_STEP_MIN) * ALLOCATION_STEP_MIN;
    Some(want.min(cap.max(align_up(end))))
}

/// Reserves `size` bytes for the file (its size becomes `size`; the part past the
/// data reads as zeroes, which recovery treats as the end of the log).
pub(crate) async fn allocate(file: &DmaFile, path: &Path, size: u64) -> Result<()> {
    failpoint::check("segment.write", path).map_err(|e| Error::io("fallocate", path, e))?;
    file.pre_allocate(size, false)
        .await
        .map_err(|e| Error::io("fallocate", path, e))
}

/// Writes one buffer at its place, honouring the `segment.write` failpoint.
/// `fresh_from` is where bytes not yet in the file start in the buffer: a torn write
/// keeps what the file already had, as sector-atomic devices do.
pub(crate) async fn write_buf(
    file: &DmaFile,
    path: &Path,
    mut wb: WriteBuf,
    fresh_from: usize,
    buffer_bytes: usize,
) -> Result<u64> {
    let end = wb.start + wb.len as u64;
    let aligned = usize::try_from(align_up(wb.len as u64)).unwrap_or(wb.buf.len());
    wb.buf.as_bytes_mut()[wb.len..aligned].fill(0);
    match failpoint::hit("segment.write", path) {
        Some(Action::Error) => {
            return Err(Error::io(
                "write",
                path,
                failpoint::injected("segment.write"),
            ))
        }
        Some(Action::TornWrite { keep_bytes }) => {
            let keep = fresh_from.saturating_add(keep_bytes).min(wb.len);
            wb.buf.as_bytes_mut()[keep..aligned].fill(0);
            let torn = usize::try_from(align_up(keep as u64))
                .unwrap_or(0)
                .max(BLOCK_BYTES)
                .min(aligned);
            wb.buf.trim_to_size(torn);
            let _ = file.write_at(wb.buf, wb.start).await;
            return Err(Error::io(
                "write",
                path,
                failpoint::injected("segment.write (torn)"),
            ));
        }
        None => {}
    }
    let whole = aligned == wb.buf.len();
    if !whole {
        wb.buf.trim_to_size(aligned);
    }
    let buf = Rc::new(wb.buf);
    let n = file
        .write_rc_at(buf.clone(), wb.start)
        .await
        .map_err(|e| Error::io("write", path, e))?;
    if n < aligned {
        return Err(Error::io(
            "write",
            path,
            std::io::Error::other(format!("short write: {n} of {aligned} bytes")),
        ));
    }
    if whole {
        if let Ok(buf) = Rc::try_unwrap(buf) {
            release_buffer(buf, buffer_bytes);
        }
    }
    Ok(end)
}

pub(crate) async fn fdatasync(file: &DmaFile, path: &Path) -> Result<()> {
    failpoint::check("segment.flush", path).map_err(|e| Error::io("fdatasync", path, e))?;
    let t0 = std::time::Instant::now();
    let r = file
        .fdatasync()
        .await
        .map_err(|e| Error::io("fdatasync", path, e));
    crate::metrics::fdatasync_done(t0.elapsed());
    r
}

pub(crate) async fn truncate(file: &DmaFile, path: &Path, size: u64) -> Result<()> {
    failpoint::check("segment.truncate", path).map_err(|e| Error::io("truncate", path, e))?;
    file.truncate(size)
        .await
        .map_err(|e| Error::io("truncate", path, e))
}

/// Reads exactly `len` bytes at `pos` (short only at end of file).
pub(crate) async fn read_exact_at(
    file: &DmaFile,
    path: &Path,
    pos: u64,
    len: usize,
) -> Result<Vec<u8>> {
    failpoint::check("segment.read", path).map_err(|e| Error::io("read", path, e))?;
    let r = file
        .read_at(pos, len)
        .await
        .map_err(|e| Error::io("read", path, e))?;
    Ok(r.to_vec())
}

/// How a scan of a segment ended.
#[derive(Debug)]
pub(crate) struct ScanEnd {
    /// Position after the last good batch.
    pub valid_end: u64,
    /// Offset after the last good batch.
    pub next_offset: u64,
    /// Why the scan stopped before the end of the file, if it did: position and reason.
    pub problem: Option<(u64, String)>,
}

/// Walks the batches of a segment file from `from_pos` to `file_len`, checking each
/// (framing, magic, CRC-32C, offsets not going back) and calling `visit` with its
/// header, position and bytes. Stops at the first bad or torn batch.
pub(crate) async fn scan(
    file: &DmaFile,
    path: &Path,
    from_pos: u64,
    file_len: u64,
    next_offset: u64,
    mut visit: impl FnMut(&BatchHeader, u64, &[u8]),
) -> Result<ScanEnd> {
    let mut pos = from_pos;
    let mut next = next_offset;
    let mut chunk: Vec<u8> = Vec::new();
    let mut chunk_start = pos;
    loop {
        if pos >= file_len {
            return Ok(ScanEnd {
                valid_end: pos,
                next_offset: next,
                problem: None,
            });
        }
        let in_chunk = usize::try_from(pos - chunk_start).unwrap_or(usize::MAX);
        let avail = chunk.len().saturating_sub(in_chunk);
        let need = match BatchHeader::parse(&chunk[in_chunk.min(chunk.len())..]) {
            Some(h) => h.total_bytes().unwrap_or(crate::batch::HEADER_BYTES),
            None => crate::batch::HEADER_BYTES,
        };
        if avail < need && pos + (avail as u64) < file_len {
            if need > SCAN_BATCH_BYTES_MAX {
                let reason = format!("batch length of {need} bytes is not believable");
                return Ok(ScanEnd {
                    valid_end: pos,
                    next_offset: next,
                    problem: Some((pos, reason)),
                });
            }
            let want = need.max(SCAN_CHUNK_BYTES);
            let left = usize::try_from(file_len - pos).unwrap_or(usize::MAX);
            chunk = read_exact_at(file, path, pos, want.min(left)).await?;
            chunk_start = pos;
            continue;
        }
        let here = &chunk[in_chunk.min(chunk.len())..];
        match check_stored(here, next) {
            Ok((h, size)) => {
                visit(&h, pos, &here[..size]);
                pos += size as u64;
                next = u64::try_from(h.last_offset()).unwrap_or(next) + 1;
            }
            Err(StoredBatchError::Truncated) => {
                let reason = format!(
                    "torn or zeroed tail: {} bytes after the last whole batch",
                    file_len - pos
                );
                return Ok(ScanEnd {
                    valid_end: pos,
                    next_offset: next,
                    problem: Some((pos, reason)),
                });
            }
            Err(StoredBatchError::Corrupt(reason)) => {
                return Ok(ScanEnd {
                    valid_end: pos,
                    next_offset: next,
                    problem: Some((pos, reason)),
                });
            }
        }
    }
}
