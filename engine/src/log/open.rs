//! Opening a partition: listing its directory, reading checkpoints, and recovering
//! its segments (Kafka's `LogLoader`).
//!
//! Fault model: a process can die at any instant, so the tail of the active segment
//! may be torn (half a batch, zeroes from a padded block, or garbage) and side files
//! may be stale, missing or damaged. Data below the recovery point was fdatasync'ed
//! and must be intact. Hence:
//! - after an unclean stop, every batch from the segment holding the recovery point
//!   on is checked (framing, CRC-32C, offsets increasing); the first bad one ends the
//!   log, the file is truncated there and a log line says what was cut;
//! - a bad batch *below* the recovery point, or a log that ends below it, takes this
//!   partition offline with an error naming segment and byte; other partitions are
//!   not affected;
//! - an index that does not pass its checks is rebuilt from the log;
//! - a checkpoint with nonsense in it is reported and repaired: offsets fall back to
//!   a full recovery, the leader-epoch cache is rebuilt from batch headers, a damaged
//!   producer snapshot is skipped and the log replayed instead.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaFile, OpenOptions};

use crate::batch::BatchHeader;
use crate::config::LogConfig;
use crate::disk;
use crate::error::{Error, Result};
use crate::log::checkpoint::{self, Offsets};
use crate::log::index::{OffsetIndex, TimeIndex};
use crate::log::maintenance::snapshot_path;
use crate::log::producer_state::ProducerStateTable;
use crate::log::segment::{self, Segment, SegmentState};
use crate::log::{LogState, Partition};
use crate::shard::ShardCtx;
use crate::{now_ms, TopicPartition};

/// Creates a segment file and makes its directory entry durable.
pub(crate) async fn create_segment_file(path: &Path) -> Result<Rc<DmaFile>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .dma_open(path)
        .await
        .map_err(|e| Error::io("create", path, e))?;
    disk::sync_dir(disk::parent(path)).await?;
    Ok(Rc::new(file))
}

/// Updates a segment's indexes and end for a batch found by a scan at `pos`.
pub(crate) fn index_batch(
    seg: &mut Segment,
    h: &BatchHeader,
    pos: u64,
    size: usize,
    index_interval_bytes: u64,
) {
    let last = u64::try_from(h.last_offset()).unwrap_or(seg.next_offset);
    if seg.bytes_since_index > index_interval_bytes {
        let rel = u32::try_from(last - seg.base_offset).unwrap_or(u32::MAX);
        seg.index
            .append(rel, u32::try_from(pos).unwrap_or(u32::MAX));
        let rel_max =
            u32::try_from(seg.offset_of_max_timestamp.saturating_sub(seg.base_offset)).unwrap_or(0);
        seg.time_index.maybe_append(seg.max_timestamp, rel_max);
        seg.bytes_since_index = 0;
    }
    seg.bytes_since_index += size as u64;
    if h.max_timestamp > seg.max_timestamp {
        seg.max_timestamp = h.max_timestamp;
        seg.offset_of_max_timestamp = last;
    }
    seg.next_offset = last + 1;
}

impl Partition {
    fn new_empty(
        ctx: Rc<ShardCtx>,
        dir: PathBuf,
        tp: TopicPartition,
        config: LogConfig,
        base: u64,
    ) -> Partition {
        Partition {
            st: std::cell::RefCell::new(LogState {
                config,
                segments: vec![Segment::new(&dir, base)],
                log_start_offset: base,
                high_watermark: base,
                next_offset: base,
                durable_offset: base,
                leader_epochs: Vec::new(),
                writers: super::Writers::Any,
                epochs_dirty: false,
                producers: ProducerStateTable::default(),
                snapshots: Vec::new(),
                offline: None,
                cache: std::collections::VecDeque::new(),
                unflushed_batches: 0,
                unflushed_since: None,
                unwritten_since: None,
                checkpointed: Offsets {
                    recovery_point: base,
                    high_watermark: base,
                    log_start_offset: base,
                },
                pending_bytes: 0,
            }),
            tp,
            dir,
            ctx,
            io_lock: glommio::sync::Semaphore::new(1),
            durable_waiters: std::cell::RefCell::new(Vec::new()),
            space: crate::sync::Notify::default(),
            appended: crate::sync::Notify::default(),
            writer_running: std::cell::Cell::new(false),
            sync_waiting: std::cell::Cell::new(false),
            in_dirty_list: std::cell::Cell::new(false),
        }
    }

    /// Creates the directory of a new, empty partition.
    pub(crate) async fn create(
        ctx: Rc<ShardCtx>,
        tp: TopicPartition,
        config: LogConfig,
    ) -> Result<Rc<Partition>> {
        let dir = ctx.config.data_dir.join(tp.dir_name());
        let d = dir.clone();
        let made = glommio::executor()
            .spawn_blocking(move || std::fs::create_dir(&d))
            .await;
        match made {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::PartitionExists(tp))
            }
            Err(e) => return Err(Error::io("mkdir", &dir, e)),
        }
        disk::sync_dir(&ctx.config.data_dir).await?;
        let p = Rc::new(Partition::new_empty(ctx, dir, tp, config, 0));
        let permit = p
            .io_lock
            .acquire_permit(1)
            .await
            .map_err(|_| Error::ShuttingDown(p.ctx.id))?;
        p.checkpoint_locked(true).await?;
        drop(permit);
        Ok(p)
    }

    /// Opens an existing partition directory and recovers it. Never fails: a
    /// partition that cannot be recovered comes back offline, with the reason.
    pub(crate) async fn open(
        ctx: Rc<ShardCtx>,
        tp: TopicPartition,
        config: LogConfig,
    ) -> Rc<Partition> {
        let dir = ctx.config.data_dir.join(tp.dir_name());
        let p = Rc::new(Partition::new_empty(ctx, dir, tp, config, 0));
        let started = std::time::Instant::now();
        match p.recover().await {
            Ok(()) => {
                let o = p.offsets();
                tracing::info!(
                    partition = %p.tp,
                    log_start_offset = o.log_start_offset,
                    log_end_offset = o.log_end_offset,
                    segments = p.segment_count(),
                    ms = started.elapsed().as_millis(),
                    "partition recovered"
                );
            }
            Err(e) => {
                tracing::error!(partition = %p.tp, error = %e, "partition stays offline");
                p.st.borrow_mut().offline = Some(e.to_string());
            }
        }
        p
    }

    async fn recover(self: &Rc<Self>) -> Result<()> {
        let listing = list_dir(&self.dir).await?;
        let clean = listing.clean;
        if clean {
            disk::remove_file(&self.dir.join(checkpoint::CLEAN_SHUTDOWN_FILE)).await?;
            disk::sync_dir(&self.dir).await?;
        }
        for tmp in &listing.tmp_files {
            disk::remove_file(tmp).await?;
        }
        let (offsets, offsets_ok) = self.read_offsets_checkpoint().await?;
        let clean = clean && offsets_ok;
        let (epochs, epochs_ok) = self.read_epochs_checkpoint().await?;
        {
            let mut st = self.st.borrow_mut();
            st.leader_epochs = epochs;
            st.epochs_dirty = !epochs_ok;
            st.snapshots = listing.snapshots.iter().copied().collect();
        }
        if listing.bases.is_empty() {
            let start = offsets.log_start_offset;
            let mut st = self.st.borrow_mut();
            st.segments = vec![Segment::new(&self.dir, start)];
            st.log_start_offset = start;
            st.high_watermark = start;
            st.next_offset = start;
            st.durable_offset = start;
            st.checkpointed = offsets;
            return Ok(());
        }
        let segments = self
            .recover_segments(&listing.bases, &offsets, clean)
            .await?;
        let end = segments.last().map_or(0, |s| s.next_offset);
        let first_base = segments.first().map_or(0, |s| s.base_offset);
        let active_file;
        {
            let mut st = self.st.borrow_mut();
            st.segments = segments;
            st.next_offset = end;
            st.log_start_offset = offsets.log_start_offset.clamp(first_base, end);
            st.high_watermark = offsets.high_watermark.clamp(st.log_start_offset, end);
            st.leader_epochs.retain(|&(_, start)| start < end);
            active_file = st
                .active()
                .file
                .clone()
                .map(|f| (f, st.active().path.clone()));
        }
        if let Some((f, path)) = active_file {
            // What recovery kept is now known durable, so the recovery point is the end.
            segment::fdatasync(&f, &path).await?;
        }
        {
            let mut st = self.st.borrow_mut();
            st.durable_offset = end;
            let seg = st.active_mut();
            seg.state = SegmentState::Active;
            seg.roll_base_ms = Some(now_ms());
        }
        self.finish_recovery(end).await
    }

    /// The last steps of recovery: reload the tail block for appends, rebuild the
    /// producer state, rewrite rebuilt index files and the checkpoints.
    async fn finish_recovery(self: &Rc<Self>, end: u64) -> Result<()> {
        let buffer_bytes = self.ctx.config.write_buffer_bytes;
        {
            // Reading the tail block needs the segment across an await: take it out.
            let mut seg = {
                let mut st = self.st.borrow_mut();
                let dir = self.dir.clone();
                let placeholder = Segment::new(&dir, end);
                std::mem::replace(st.active_mut(), placeholder)
            };
            let r = seg.load_tail(buffer_bytes).await;
            *self.st.borrow_mut().active_mut() = seg;
            r?;
        }
        load_producer_state(self).await?;
        let _permit = self
            .io_lock
            .acquire_permit(1)
            .await
            .map_err(|_| Error::ShuttingDown(self.ctx.id))?;
        let rebuilt: Vec<(u64, Vec<u8>, Vec<u8>)> = self
            .st
            .borrow()
            .segments
            .iter()
            .filter(|s| s.index_rebuilt && s.state == SegmentState::Closed)
            .map(|s| {
                (
                    s.base_offset,
                    s.index.encode(),
                    s.time_index_with_final_entry().encode(),
                )
            })
            .collect();
        for (base, index, time_index) in rebuilt {
            disk::replace_file(&segment::index_path(&self.dir, base), &index, "index.write")
                .await?;
            disk::replace_file(
                &segment::time_index_path(&self.dir, base),
                &time_index,
                "index.write",
            )
            .await?;
        }
        self.write_side_files_locked().await?;
        self.checkpoint_locked(true).await?;
        Ok(())
    }

    async fn read_offsets_checkpoint(&self) -> Result<(Offsets, bool)> {
        let path = self.dir.join(checkpoint::OFFSETS_FILE);
        match disk::read_file(&path).await? {
            Some(bytes) => match checkpoint::decode_offsets(&bytes) {
                Ok(o) => Ok((o, true)),
                Err(reason) => {
                    tracing::warn!(partition = %self.tp, path = %path.display(), %reason, "offsets checkpoint is damaged; repairing by recovering the whole log");
                    Ok((Offsets::default(), false))
                }
            },
            None => Ok((Offsets::default(), false)),
        }
    }

    async fn read_epochs_checkpoint(&self) -> Result<(Vec<(i32, u64)>, bool)> {
        let path = self.dir.join(checkpoint::LEADER_EPOCH_FILE);
        match disk::read_file(&path).await? {
            Some(bytes) => match checkpoint::decode_epochs(&bytes) {
                Ok(e) => Ok((e, true)),
                Err(reason) => {
                    tracing::warn!(partition = %self.tp, path = %path.display(), %reason, "leader-epoch checkpoint is damaged; rebuilding it from batch headers");
                    Ok((Vec::new(), false))
                }
            },
            None => Ok((Vec::new(), true)),
        }
    }

    /// Opens and checks the segments; returns them with the last one active.
    async fn recover_segments(
        self: &Rc<Self>,
        bases: &[u64],
        offsets: &Offsets,
        clean: bool,
    ) -> Result<Vec<Segment>> {
        let rebuild_epochs = self.st.borrow().epochs_dirty;
        let recovery_point = offsets.recovery_point;
        let last = bases.len() - 1;
        // After an unclean stop, check from the segment holding the recovery point on.
        let check_from = if clean {
            last
        } else {
            bases
                .partition_point(|&b| b <= recovery_point)
                .saturating_sub(1)
        };
        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
        for (i, &base) in bases.iter().enumerate() {
            let mut seg = open_segment(&self.dir, base).await?;
            let next_base = bases.get(i + 1).copied();
            let full_check = i >= check_from && !clean;
            let indexes_ok = !full_check && self.load_indexes(&mut seg, next_base).await?;
            let scan_from = if full_check || !indexes_ok {
                0
            } else if i == last {
                // Clean stop: only walk the tail after the last index entry, for the end.
                seg.index.last().map_or(0, |(_, p)| u64::from(p))
            } else {
                seg.next_offset = next_base.unwrap_or(seg.next_offset);
                segments.push(seg);
                continue;
            };
            if scan_from == 0 {
                seg.index_rebuilt = true;
                seg.index = OffsetIndex::default();
                seg.time_index = TimeIndex::default();
                seg.max_timestamp = -1;
            }
            let (end, epochs_seen) = self.scan_segment(&mut seg, scan_from).await?;
            if let Some((pos, reason)) = end.problem {
                let below_recovery = clean || end.next_offset < recovery_point || i < check_from;
                if below_recovery {
                    return Err(Error::CorruptLog {
                        partition: self.tp.clone(),
                        segment: seg.path.clone(),
                        position: pos,
                        reason,
                    });
                }
                self.cut_tail(&mut seg, pos, end.next_offset, &reason, &bases[i + 1..])
                    .await?;
                self.merge_epochs(&epochs_seen);
                segments.push(seg);
                break;
            }
            if let Some(nb) = next_base {
                if end.next_offset > nb {
                    return Err(Error::CorruptLog {
                        partition: self.tp.clone(),
                        segment: seg.path.clone(),
                        position: end.valid_end,
                        reason: format!(
                            "segment runs to offset {} past the next segment's base {nb}",
                            end.next_offset
                        ),
                    });
                }
            }
            self.merge_epochs(&epochs_seen);
            let gap_after = next_base.filter(|&nb| end.next_offset < nb);
            segments.push(seg);
            if let Some(nb) = gap_after {
                self.drop_after_gap(
                    &segments,
                    end.next_offset,
                    end.valid_end,
                    nb,
                    recovery_point,
                    &bases[i + 1..],
                )
                .await?;
                break;
            }
        }
        if rebuild_epochs {
            self.rebuild_epochs_from(&segments, check_from).await?;
        }
        let end = segments.last().map_or(0, |s| s.next_offset);
        if end < recovery_point
            && segments
                .first()
                .is_some_and(|s| s.base_offset < recovery_point)
        {
            let seg = segments.last().map(|s| s.path.clone()).unwrap_or_default();
            return Err(Error::CorruptLog {
                partition: self.tp.clone(),
                segment: seg,
                position: segments.last().map_or(0, |s| s.size),
                reason: format!("log ends at offset {end}, below the recovery point {recovery_point}: flushed data is missing"),
            });
        }
        for s in &mut segments {
            s.written_next_offset = s.next_offset;
        }
        Ok(segments)
    }

    /// The segment ends at `end_offset` but the next starts at `next_base`: what lies
    /// between never reached the disk, so nothing after the gap may be visible. Below
    /// the recovery point that is corruption; above it the later segments go.
    async fn drop_after_gap(
        &self,
        segments: &[Segment],
        end_offset: u64,
        end_position: u64,
        next_base: u64,
        recovery_point: u64,
        later: &[u64],
    ) -> Result<()> {
        let reason =
            format!("offsets {end_offset}..{next_base} are missing before the next segment");
        if end_offset < recovery_point {
            let segment = segments.last().map(|s| s.path.clone()).unwrap_or_default();
            return Err(Error::CorruptLog {
                partition: self.tp.clone(),
                segment,
                position: end_position,
                reason,
            });
        }
        tracing::warn!(partition = %self.tp, %reason, "recovery drops the segments after a gap");
        for &doomed in later {
            super::maintenance::delete_segment_files(&self.dir, Segment::new(&self.dir, doomed))
                .await?;
        }
        Ok(())
    }

    /// Truncates a segment after its last good batch and deletes the segments after
    /// it, saying in a log line what was cut.
    async fn cut_tail(
        &self,
        seg: &mut Segment,
        pos: u64,
        next_offset: u64,
        reason: &str,
        later: &[u64],
    ) -> Result<()> {
        tracing::warn!(
            partition = %self.tp,
            segment = %seg.path.display(),
            position = pos,
            bytes_cut = seg.size - pos,
            next_offset,
            %reason,
            "recovery truncates the log after its last good batch"
        );
        if let Some(f) = &seg.file {
            segment::truncate(f, &seg.path, pos).await?;
            segment::fdatasync(f, &seg.path).await?;
        }
        seg.size = pos;
        seg.allocated = pos;
        seg.file_pos = pos;
        seg.written_size = pos;
        for &doomed in later {
            tracing::warn!(partition = %self.tp, base_offset = doomed, "recovery deletes a segment after the cut");
            super::maintenance::delete_segment_files(&self.dir, Segment::new(&self.dir, doomed))
                .await?;
        }
        Ok(())
    }

    /// Loads `.index` and `.timeindex`; `false` if either is missing or fails its checks.
    async fn load_indexes(&self, seg: &mut Segment, next_base: Option<u64>) -> Result<bool> {
        let ip = segment::index_path(&self.dir, seg.base_offset);
        let tp = segment::time_index_path(&self.dir, seg.base_offset);
        let (Some(ib), Some(tb)) = (disk::read_file(&ip).await?, disk::read_file(&tp).await?)
        else {
            tracing::info!(partition = %self.tp, segment = %seg.path.display(), "index missing; rebuilding it");
            return Ok(false);
        };
        let span = next_base.map_or(u64::from(u32::MAX), |nb| nb.saturating_sub(seg.base_offset));
        match (
            OffsetIndex::decode(&ib, seg.size.max(1)),
            TimeIndex::decode(&tb, span),
        ) {
            (Ok(i), Ok(t)) => {
                if let Some((ts, rel)) = t.last() {
                    seg.max_timestamp = ts;
                    seg.offset_of_max_timestamp = seg.base_offset + u64::from(rel);
                }
                if let Some((rel, _)) = i.last() {
                    seg.next_offset = seg.base_offset + u64::from(rel) + 1;
                }
                seg.index = i;
                seg.time_index = t;
                Ok(true)
            }
            (Err(reason), _) | (_, Err(reason)) => {
                tracing::warn!(partition = %self.tp, segment = %seg.path.display(), %reason, "index is damaged; rebuilding it");
                Ok(false)
            }
        }
    }

    /// Checks batches from `from` to the end of the file, updating the segment's
    /// indexes and end; returns how the scan ended and the epochs seen.
    async fn scan_segment(
        &self,
        seg: &mut Segment,
        from: u64,
    ) -> Result<(segment::ScanEnd, Vec<(i32, u64)>)> {
        let interval = self.st.borrow().config.index_interval_bytes;
        let Some(file) = seg.file.clone() else {
            return Ok((
                segment::ScanEnd {
                    valid_end: 0,
                    next_offset: seg.base_offset,
                    problem: None,
                },
                Vec::new(),
            ));
        };
        let mut epochs: Vec<(i32, u64)> = Vec::new();
        let path = seg.path.clone();
        let size = seg.size;
        let lower = seg.base_offset;
        let end = segment::scan(&file, &path, from, size, lower, |h, pos, bytes| {
            index_batch(seg, h, pos, bytes.len(), interval);
            if epochs
                .last()
                .is_none_or(|&(e, _)| h.partition_leader_epoch > e)
                && h.partition_leader_epoch >= 0
            {
                epochs.push((
                    h.partition_leader_epoch,
                    u64::try_from(h.base_offset).unwrap_or(0),
                ));
            }
        })
        .await?;
        if end.problem.is_none() && end.valid_end == from {
            seg.next_offset = seg.next_offset.max(seg.base_offset);
        }
        Ok((end, epochs))
    }

    fn merge_epochs(&self, seen: &[(i32, u64)]) {
        let mut st = self.st.borrow_mut();
        for &(e, o) in seen {
            if st
                .leader_epochs
                .last()
                .is_none_or(|&(le, lo)| e > le && o >= lo)
            {
                st.leader_epochs.push((e, o));
                st.epochs_dirty = true;
            }
        }
    }

    /// Rebuilds the leader-epoch cache by reading the headers of segments that the
    /// recovery did not scan.
    async fn rebuild_epochs_from(&self, segments: &[Segment], scanned_from: usize) -> Result<()> {
        let mut seen: Vec<(i32, u64)> = Vec::new();
        for seg in segments.iter().take(scanned_from) {
            let Some(file) = seg.file.clone() else {
                continue;
            };
            segment::scan(&file, &seg.path, 0, seg.size, seg.base_offset, |h, _, _| {
                if h.partition_leader_epoch >= 0
                    && seen
                        .last()
                        .is_none_or(|&(e, _)| h.partition_leader_epoch > e)
                {
                    seen.push((
                        h.partition_leader_epoch,
                        u64::try_from(h.base_offset).unwrap_or(0),
                    ));
                }
            })
            .await?;
        }
        let mut st = self.st.borrow_mut();
        let later = std::mem::take(&mut st.leader_epochs);
        st.leader_epochs = seen;
        drop(st);
        self.merge_epochs(&later);
        self.st.borrow_mut().epochs_dirty = true;
        Ok(())
    }
}

async fn open_segment(dir: &Path, base: u64) -> Result<Segment> {
    let mut seg = Segment::new(dir, base);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .dma_open(&seg.path)
        .await
        .map_err(|e| Error::io("open", &seg.path, e))?;
    let size = file
        .file_size()
        .await
        .map_err(|e| Error::io("stat", &seg.path, e))?;
    seg.file = Some(Rc::new(file));
    seg.allocated = size;
    seg.size = size;
    seg.file_pos = size;
    seg.written_size = size;
    seg.state = SegmentState::Closed;
    Ok(seg)
}

/// Loads the producer table from the newest good snapshot at or below the log end
/// and replays the batches after it.
pub(crate) async fn load_producer_state(p: &Rc<Partition>) -> Result<()> {
    let (end, mut candidates, log_start) = {
        let st = p.st.borrow();
        let c: Vec<u64> = st
            .snapshots
            .iter()
            .copied()
            .filter(|&o| o <= st.next_offset)
            .collect();
        (
            st.next_offset,
            c,
            st.segments.first().map_or(0, |s| s.base_offset),
        )
    };
    let mut table = ProducerStateTable::default();
    let mut from = log_start;
    while let Some(o) = candidates.pop() {
        let path = snapshot_path(&p.dir, o);
        match disk::read_file(&path).await? {
            Some(bytes) => match ProducerStateTable::decode(&bytes) {
                Ok(t) => {
                    table = t;
                    from = o;
                    break;
                }
                Err(reason) => {
                    tracing::warn!(partition = %p.tp, path = %path.display(), %reason, "producer snapshot is damaged; replaying the log instead");
                    disk::remove_file(&path).await?;
                    p.st.borrow_mut().snapshots.retain(|&s| s != o);
                }
            },
            None => p.st.borrow_mut().snapshots.retain(|&s| s != o),
        }
    }
    if from < end {
        let segs: Vec<(Rc<DmaFile>, PathBuf, u64, u64)> = {
            let st = p.st.borrow();
            st.segments
                .iter()
                .filter(|s| s.next_offset > from)
                .filter_map(|s| {
                    let rel = u32::try_from(from.saturating_sub(s.base_offset)).unwrap_or(u32::MAX);
                    let start = if from > s.base_offset {
                        u64::from(s.index.lookup(rel))
                    } else {
                        0
                    };
                    s.file
                        .clone()
                        .map(|f| (f, s.path.clone(), start, s.file_pos))
                })
                .collect()
        };
        for (file, path, start, size) in segs {
            segment::scan(&file, &path, start, size, 0, |h, _, _| {
                let base = u64::try_from(h.base_offset).unwrap_or(0);
                if base >= from {
                    table.record(h, base, u64::try_from(h.last_offset()).unwrap_or(base));
                }
            })
            .await?;
        }
    }
    p.st.borrow_mut().producers = table;
    Ok(())
}

struct Listing {
    bases: Vec<u64>,
    snapshots: BTreeSet<u64>,
    tmp_files: Vec<PathBuf>,
    clean: bool,
}

/// Lists a partition directory (off the shard thread: `readdir` blocks).
async fn list_dir(dir: &Path) -> Result<Listing> {
    let d = dir.to_path_buf();
    let names = glommio::executor()
        .spawn_blocking(move || -> std::io::Result<Vec<String>> {
            let mut out = Vec::new();
            for e in std::fs::read_dir(&d)? {
                out.push(e?.file_name().to_string_lossy().into_owned());
            }
            Ok(out)
        })
        .await
        .map_err(|e| Error::io("list", dir, e))?;
    let mut bases = BTreeSet::new();
    let mut snapshots = BTreeSet::new();
    let mut tmp_files = Vec::new();
    let mut clean = false;
    for name in names {
        let parse = |suffix: &str| {
            name.strip_suffix(suffix)
                .filter(|s| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
        };
        if let Some(b) = parse(".log") {
            bases.insert(b);
        } else if let Some(o) = parse(".snapshot") {
            snapshots.insert(o);
        } else if std::path::Path::new(&name)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("tmp"))
        {
            tmp_files.push(dir.join(&name));
        } else if name == checkpoint::CLEAN_SHUTDOWN_FILE {
            clean = true;
        } else if parse(".index").is_none()
            && parse(".timeindex").is_none()
            && name != checkpoint::OFFSETS_FILE
            && name != checkpoint::LEADER_EPOCH_FILE
        {
            tracing::warn!(dir = %dir.display(), file = %name, "ignoring an unknown file in a partition directory");
        }
    }
    Ok(Listing {
        bases: bases.into_iter().collect(),
        snapshots,
        tmp_files,
        clean,
    })
}
