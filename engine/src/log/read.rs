//! Reads: whole batches from an offset, from the shard's cache of recent batches,
//! from segment files through their read-ahead windows, or as file ranges the
//! network layer can `sendfile` when the page cache holds them; timestamp lookups.
//!
//! A file range never reaches past `written_size` of its segment, the last batch
//! boundary known to be in the file. Batches not yet written are always in the cache
//! (the cache never evicts them), so every offset below the log end can be read.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use glommio::io::DmaFile;

use crate::batch::{self, BatchHeader, HEADER_BYTES};
use crate::error::{Error, Result};
use crate::log::read_ahead::{self, ReadAhead, Source};
use crate::log::{segment, Partition};

/// Bytes read at a time while walking batch headers in a file.
const HEADER_WALK_CHUNK_BYTES: usize = 64 << 10;

/// Part of a read: bytes in memory, or a range of a segment file.
#[derive(Clone)]
pub enum ReadChunk {
    /// Whole batches from the cache (a reference, not a copy).
    Memory(Bytes),
    /// Whole batches in a segment file that the page cache held when it was read,
    /// for `sendfile`. The file is open O_DIRECT; `sendfile` needs a buffered
    /// descriptor of `path`.
    File {
        file: Rc<DmaFile>,
        path: PathBuf,
        position: u64,
        length: u64,
    },
}

impl std::fmt::Debug for ReadChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadChunk::Memory(b) => write!(f, "Memory({} bytes)", b.len()),
            ReadChunk::File {
                path,
                position,
                length,
                ..
            } => {
                write!(f, "File({}, {position}+{length})", path.display())
            }
        }
    }
}

impl ReadChunk {
    pub fn len(&self) -> u64 {
        match self {
            ReadChunk::Memory(b) => b.len() as u64,
            ReadChunk::File { length, .. } => *length,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The answer to a read.
#[derive(Debug, Clone)]
pub struct ReadResult {
    pub chunks: Vec<ReadChunk>,
    pub log_start_offset: u64,
    pub high_watermark: u64,
    pub log_end_offset: u64,
}

impl ReadResult {
    pub fn bytes_len(&self) -> u64 {
        self.chunks.iter().map(ReadChunk::len).sum()
    }

    /// The data as bytes in memory, reading file ranges (for TLS, tests, tools).
    pub async fn materialize(&self) -> Result<Bytes> {
        let mut out = Vec::with_capacity(usize::try_from(self.bytes_len()).unwrap_or(0));
        for c in &self.chunks {
            match c {
                ReadChunk::Memory(b) => out.extend_from_slice(b),
                ReadChunk::File {
                    file,
                    path,
                    position,
                    length,
                } => {
                    let len = usize::try_from(*length).unwrap_or(usize::MAX);
                    let data = segment::read_exact_at(file, path, *position, len).await?;
                    if data.len() != len {
                        return Err(Error::io(
                            "read",
                            path,
                            std::io::Error::other("segment shorter than its index says"),
                        ));
                    }
                    out.extend_from_slice(&data);
                }
            }
        }
        Ok(Bytes::from(out))
    }
}

enum Plan {
    Done(ReadResult),
    File {
        file: Rc<DmaFile>,
        path: PathBuf,
        start_hint: u64,
        jump: u64,
        limit: u64,
        window: Rc<ReadAhead>,
    },
}

/// Where a walk over a segment file gets its bytes.
pub(crate) enum Walk<'a> {
    /// One O_DIRECT read per request (small reads; truncation, resident ranges).
    Direct(&'a DmaFile, &'a Path),
    /// The segment's read-ahead window.
    Ahead(Source<'a>),
}

impl Walk<'_> {
    fn path(&self) -> &Path {
        match self {
            Walk::Direct(_, path) => path,
            Walk::Ahead(src) => src.path,
        }
    }

    async fn bytes(&self, pos: u64, len: usize) -> Result<Bytes> {
        match self {
            Walk::Direct(file, path) => Ok(Bytes::from(
                segment::read_exact_at(file, path, pos, len).await?,
            )),
            Walk::Ahead(src) => src.bytes(pos, len as u64).await,
        }
    }
}

impl Partition {
    /// Reads whole batches starting with the one holding `offset`, up to `max_bytes`
    /// (at least one batch, even a larger one), and only batches wholly below
    /// `upper` (the high watermark for consumers; `None`: the log end).
    ///
    /// Batches in the cache are answered from it. Older ones come from the segment
    /// file: as a file range for `sendfile` when the page cache holds it, otherwise
    /// read into memory through the segment's read-ahead window (asynchronous
    /// O_DIRECT reads, see [`super::read_ahead`]).
    pub async fn read(
        self: &Rc<Self>,
        offset: u64,
        max_bytes: usize,
        upper: Option<u64>,
    ) -> Result<ReadResult> {
        let plan = self.plan_read(offset, max_bytes, upper)?;
        let (file, path, start_hint, jump, limit, window) = match plan {
            Plan::Done(r) => return Ok(r),
            Plan::File {
                file,
                path,
                start_hint,
                jump,
                limit,
                window,
            } => (file, path, start_hint, jump, limit, window),
        };
        let resident = read_ahead::resident(
            file.as_raw_fd(),
            start_hint,
            (max_bytes as u64).min(limit - start_hint),
        );
        let walk = if resident {
            Walk::Direct(&file, &path)
        } else {
            Walk::Ahead(Source {
                file: &file,
                path: &path,
                window: &window,
                written: limit,
                reader_bytes: max_bytes as u64,
                ledger: &self.ctx.read_ahead,
            })
        };
        let upper = upper.unwrap_or(u64::MAX);
        let target = i64::try_from(offset).unwrap_or(i64::MAX);
        let Some((start, _)) =
            find_batch(&walk, start_hint, limit, |h| h.last_offset() >= target).await?
        else {
            return Ok(self.empty_result());
        };
        let end = batch_end(
            &walk,
            jump.max(start),
            start,
            limit,
            max_bytes as u64,
            upper,
        )
        .await?;
        let mut r = self.empty_result();
        if end > start {
            if resident {
                crate::metrics::resident_read_served(end - start);
                r.chunks.push(ReadChunk::File {
                    file,
                    path,
                    position: start,
                    length: end - start,
                });
            } else {
                let len = usize::try_from(end - start).unwrap_or(usize::MAX);
                r.chunks
                    .push(ReadChunk::Memory(walk.bytes(start, len).await?));
                // The next read starts at the index entry at or below the next
                // offset: within this range (Kafka's index names a batch's last
                // offset), so keep the blocks from its start.
                if let Walk::Ahead(src) = &walk {
                    src.consumed(start);
                }
                crate::metrics::cold_read_served(end - start);
            }
        }
        Ok(r)
    }

    fn empty_result(&self) -> ReadResult {
        let st = self.st.borrow();
        ReadResult {
            chunks: Vec::new(),
            log_start_offset: st.log_start_offset,
            high_watermark: st.high_watermark,
            log_end_offset: st.next_offset,
        }
    }

    fn plan_read(&self, offset: u64, max_bytes: usize, upper: Option<u64>) -> Result<Plan> {
        let st = self.st.borrow();
        self.online(&st)?;
        if offset < st.log_start_offset || offset > st.next_offset {
            return Err(Error::OffsetOutOfRange {
                offset: i64::try_from(offset).unwrap_or(i64::MAX),
                log_start_offset: st.log_start_offset,
                log_end_offset: st.next_offset,
            });
        }
        let upper = upper.unwrap_or(st.next_offset).min(st.next_offset);
        let mut result = ReadResult {
            chunks: Vec::new(),
            log_start_offset: st.log_start_offset,
            high_watermark: st.high_watermark,
            log_end_offset: st.next_offset,
        };
        if offset >= upper {
            return Ok(Plan::Done(result));
        }
        // The cache holds a suffix of the log; use it when the offset is in it.
        let first = st.cache.partition_point(|b| b.last_offset < offset);
        if st.cache.get(first).is_some_and(|b| b.base_offset <= offset) {
            let mut total = 0usize;
            for b in st.cache.range(first..) {
                if b.last_offset >= upper || (total > 0 && total + b.bytes.len() > max_bytes) {
                    break;
                }
                total += b.bytes.len();
                result.chunks.push(ReadChunk::Memory(b.bytes.clone()));
            }
            return Ok(Plan::Done(result));
        }
        let i = st.segments.partition_point(|s| s.base_offset <= offset);
        let Some(seg) = i.checked_sub(1).map(|i| &st.segments[i]) else {
            return Ok(Plan::Done(result));
        };
        let Some(file) = seg.file.clone() else {
            return Ok(Plan::Done(result));
        };
        if offset >= seg.written_next_offset {
            // Not in the file yet and not cached: cannot happen while the cache keeps
            // unwritten batches; answer empty rather than guess.
            return Ok(Plan::Done(result));
        }
        let rel = u32::try_from(offset - seg.base_offset).unwrap_or(u32::MAX);
        let start_hint = u64::from(seg.index.lookup(rel));
        let budget = u32::try_from((start_hint + max_bytes as u64).min(seg.written_size))
            .unwrap_or(u32::MAX);
        let rel_upper = u32::try_from(upper - seg.base_offset).unwrap_or(u32::MAX);
        let jump = seg
            .index
            .batch_start_below(budget, rel_upper)
            .map_or(0, u64::from);
        Ok(Plan::File {
            file,
            path: seg.path.clone(),
            start_hint,
            jump,
            limit: seg.written_size,
            window: seg.ahead.clone(),
        })
    }

    /// The offset and timestamp of the first record with timestamp `>= target_ms`
    /// (Kafka's ListOffsets by timestamp); `None` when every record is older.
    pub async fn offset_for_timestamp(
        self: &Rc<Self>,
        target_ms: i64,
    ) -> Result<Option<(u64, i64)>> {
        let start = {
            let st = self.st.borrow();
            self.online(&st)?;
            let Some(seg) = st
                .segments
                .iter()
                .find(|s| !s.is_empty() && s.max_timestamp >= target_ms)
            else {
                return Ok(None);
            };
            let rel = seg.time_index.lookup(target_ms);
            (seg.base_offset + u64::from(rel)).max(st.log_start_offset)
        };
        let mut offset = start;
        // Bounded: every pass moves `offset` forward by at least one batch.
        loop {
            let r = match self.read(offset, 256 << 10, None).await {
                Ok(r) => r,
                Err(Error::OffsetOutOfRange { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            if r.chunks.is_empty() {
                if offset >= r.log_end_offset {
                    return Ok(None);
                }
                // The segment ended; continue in the next one.
                offset = self.next_segment_base(offset).unwrap_or(r.log_end_offset);
                continue;
            }
            let data = r.materialize().await?;
            for b in batch::split_batches_of(&data) {
                if let Some((o, ts)) = batch::first_offset_at_or_after(&b, target_ms) {
                    let o = u64::try_from(o).unwrap_or(0).max(offset);
                    return Ok(Some((o, ts)));
                }
                if let Some(h) = BatchHeader::parse(&b) {
                    offset = u64::try_from(h.last_offset()).unwrap_or(offset) + 1;
                }
            }
        }
    }

    fn next_segment_base(&self, offset: u64) -> Option<u64> {
        let st = self.st.borrow();
        st.segments
            .iter()
            .map(|s| s.base_offset)
            .find(|&b| b > offset)
    }

    /// The largest timestamp in the log and the offset of its record (Kafka's
    /// `MAX_TIMESTAMP` ListOffsets, KIP-734).
    pub fn max_timestamp(&self) -> Option<(i64, u64)> {
        let st = self.st.borrow();
        st.segments
            .iter()
            .filter(|s| !s.is_empty() && s.max_timestamp >= 0)
            .map(|s| (s.max_timestamp, s.offset_of_max_timestamp))
            .fold(None, |best: Option<(i64, u64)>, c| match best {
                Some(b) if b.0 >= c.0 => Some(b),
                _ => Some(c),
            })
    }
}

/// Walks batch headers from `pos` (a batch start) below `limit`, returning the first
/// batch for which `want` holds.
pub(crate) async fn find_batch(
    walk: &Walk<'_>,
    mut pos: u64,
    limit: u64,
    want: impl Fn(&BatchHeader) -> bool,
) -> Result<Option<(u64, BatchHeader)>> {
    let mut chunk = Bytes::new();
    let mut chunk_start = pos;
    while pos + HEADER_BYTES as u64 <= limit {
        let at = usize::try_from(pos - chunk_start).unwrap_or(usize::MAX);
        if at.saturating_add(HEADER_BYTES) > chunk.len() {
            let len = usize::try_from((limit - pos).min(HEADER_WALK_CHUNK_BYTES as u64))
                .unwrap_or(HEADER_BYTES);
            chunk = walk.bytes(pos, len).await?;
            chunk_start = pos;
            continue;
        }
        let Some(h) = BatchHeader::parse(&chunk[at..]) else {
            break;
        };
        let Some(size) = h.total_bytes() else {
            return Err(corrupt(walk.path(), pos, "bad batch length"));
        };
        if want(&h) {
            return Ok(Some((pos, h)));
        }
        pos += size as u64;
    }
    Ok(None)
}

/// The end (exclusive) of the run of whole batches from `start` that fits in
/// `max_bytes` (at least one batch), stays below `limit`, and whose batches are all
/// below offset `upper`. Uses the offset index to jump, then walks headers.
async fn batch_end(
    walk: &Walk<'_>,
    jump: u64,
    start: u64,
    limit: u64,
    max_bytes: u64,
    upper: u64,
) -> Result<u64> {
    let budget_end = start.saturating_add(max_bytes).min(limit);
    // `jump` is an indexed batch start no further than the budget whose batches
    // before it are all below `upper` (see `OffsetIndex::batch_start_below`).
    let mut pos = if jump <= budget_end { jump } else { start };
    let mut first = pos == start;
    loop {
        if pos + HEADER_BYTES as u64 > limit {
            return Ok(pos);
        }
        let head = walk.bytes(pos, HEADER_BYTES).await?;
        let Some(h) = BatchHeader::parse(&head) else {
            return Ok(pos);
        };
        let Some(size) = h.total_bytes() else {
            return Err(corrupt(walk.path(), pos, "bad batch length"));
        };
        let end = pos + size as u64;
        if end > limit
            || u64::try_from(h.last_offset()).unwrap_or(u64::MAX) >= upper
            || (!first && end > budget_end)
        {
            return Ok(pos);
        }
        first = false;
        pos = end;
    }
}

fn corrupt(path: &std::path::Path, pos: u64, what: &str) -> Error {
    Error::io(
        "read",
        path,
        std::io::Error::other(format!("{what} at byte {pos}")),
    )
}
