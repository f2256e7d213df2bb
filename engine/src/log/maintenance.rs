//! Disk work on a partition other than appending: side files (checkpoints, producer
//! snapshots, leader-epoch cache), truncation, deleting records, retention, and the
//! clean close. Everything here holds the partition's I/O lock.

use std::rc::Rc;

use crate::disk::{self, replace_file};
use crate::error::{Error, Result};
use crate::log::checkpoint::{self, Offsets};
use crate::log::segment::{self, Segment, SegmentState};
use crate::log::{read, Partition};
use crate::now_ms;

/// Producer snapshots kept per partition; older ones are removed.
const SNAPSHOTS_KEPT: usize = 2;

pub(crate) fn snapshot_path(dir: &std::path::Path, offset: u64) -> std::path::PathBuf {
    dir.join(format!("{offset:020}.snapshot"))
}

impl Partition {
    /// Writes the leader-epoch checkpoint if it changed.
    pub(crate) async fn write_side_files_locked(self: &Rc<Self>) -> Result<()> {
        let epochs = {
            let mut st = self.st.borrow_mut();
            if !std::mem::take(&mut st.epochs_dirty) {
                return Ok(());
            }
            checkpoint::encode_epochs(&st.leader_epochs)
        };
        let path = self.dir.join(checkpoint::LEADER_EPOCH_FILE);
        replace_file(&path, epochs.as_bytes(), "checkpoint.write").await
    }

    /// Saves the producer-state table, labelled with the log end it reflects.
    pub(crate) async fn take_producer_snapshot_locked(self: &Rc<Self>) -> Result<()> {
        let (offset, bytes) = {
            let st = self.st.borrow();
            if st.snapshots.last() == Some(&st.next_offset) {
                return Ok(());
            }
            (st.next_offset, st.producers.encode())
        };
        replace_file(&snapshot_path(&self.dir, offset), &bytes, "snapshot.write").await?;
        let old: Vec<u64> = {
            let mut st = self.st.borrow_mut();
            st.snapshots.retain(|&o| o != offset);
            st.snapshots.push(offset);
            st.snapshots.sort_unstable();
            let excess = st.snapshots.len().saturating_sub(SNAPSHOTS_KEPT);
            st.snapshots.drain(..excess).collect()
        };
        for o in old {
            disk::remove_file(&snapshot_path(&self.dir, o)).await?;
        }
        Ok(())
    }

    /// Writes the offsets checkpoint if it changed.
    pub async fn checkpoint(self: &Rc<Self>) -> Result<()> {
        let _permit = self
            .io_lock
            .acquire_permit(1)
            .await
            .map_err(|_| Error::ShuttingDown(self.ctx.id))?;
        if self.st.borrow().offline.is_some() {
            return Ok(());
        }
        self.checkpoint_locked(false).await
    }

    pub(crate) async fn checkpoint_locked(self: &Rc<Self>, force: bool) -> Result<()> {
        let offsets = {
            let st = self.st.borrow();
            let o = st.offsets();
            if !force && o == st.checkpointed {
                return Ok(());
            }
            o
        };
        let path = self.dir.join(checkpoint::OFFSETS_FILE);
        replace_file(
            &path,
            checkpoint::encode_offsets(&offsets).as_bytes(),
            "checkpoint.write",
        )
        .await?;
        self.st.borrow_mut().checkpointed = offsets;
        Ok(())
    }

    /// Removes every batch from the one holding `offset` on (Kafka's truncation of a
    /// follower to its leader's history). The log end becomes the base offset of
    /// that batch. Below the log start the log is emptied and restarts at `offset`.
    pub async fn truncate_to(self: &Rc<Self>, offset: u64) -> Result<()> {
        let _permit = self
            .io_lock
            .acquire_permit(1)
            .await
            .map_err(|_| Error::ShuttingDown(self.ctx.id))?;
        let result = self.truncate_locked(offset).await;
        if let Err(e) = &result {
            self.fail(e);
        }
        result
    }

    /// Empties the log and restarts it at `offset` (a follower whose log ends
    /// before its leader's log start: what it has is gone on the leader).
    pub async fn reset_to(self: &Rc<Self>, offset: u64) -> Result<()> {
        let _permit = self
            .io_lock
            .acquire_permit(1)
            .await
            .map_err(|_| Error::ShuttingDown(self.ctx.id))?;
        self.online(&self.st.borrow())?;
        self.write_out_locked(true).await?;
        let result = self.truncate_fully_locked(offset).await;
        if let Err(e) = &result {
            self.fail(e);
        }
        result
    }

    async fn truncate_locked(self: &Rc<Self>, offset: u64) -> Result<()> {
        {
            let mut st = self.st.borrow_mut();
            self.online(&st)?;
            if offset >= st.next_offset {
                // Nothing to cut, but epochs begun at the end with nothing written
                // in them (a leader that lost its leadership) go.
                let before = st.leader_epochs.len();
                let end = st.next_offset;
                st.leader_epochs.retain(|&(_, start)| start < end);
                st.epochs_dirty |= st.leader_epochs.len() != before;
                return Ok(());
            }
        }
        self.write_out_locked(true).await?;
        let (log_start, first_base) = {
            let st = self.st.borrow();
            (st.log_start_offset, st.segments[0].base_offset)
        };
        if offset <= log_start || offset <= first_base {
            return self
                .truncate_fully_locked(offset.max(log_start.min(offset)))
                .await;
        }
        // Drop whole segments at or above the offset's segment start.
        let doomed: Vec<Segment> = {
            let mut st = self.st.borrow_mut();
            let keep = st.segments.partition_point(|s| s.base_offset <= offset);
            st.segments.split_off(keep)
        };
        for s in doomed {
            delete_segment_files(&self.dir, s).await?;
        }
        let (file, path, size, base, start_hint) = {
            let st = self.st.borrow();
            let seg = st.active();
            let rel = u32::try_from(offset - seg.base_offset).unwrap_or(u32::MAX);
            (
                seg.file.clone(),
                seg.path.clone(),
                seg.size,
                seg.base_offset,
                u64::from(seg.index.lookup(rel)),
            )
        };
        let Some(file) = file else {
            return Err(Error::InvalidRequest(
                "segment without a file cannot be truncated".into(),
            ));
        };
        let target = i64::try_from(offset).unwrap_or(i64::MAX);
        let cut = read::find_batch(&read::Walk::Direct(&file, &path), start_hint, size, |h| {
            h.last_offset() >= target
        })
        .await?;
        let (cut_pos, new_end) = match cut {
            Some((pos, h)) => (pos, u64::try_from(h.base_offset).unwrap_or(offset)),
            None => (size, offset),
        };
        if cut_pos == 0 && base > 0 && self.st.borrow().segments.len() > 1 {
            let s = self.st.borrow_mut().segments.pop();
            if let Some(s) = s {
                delete_segment_files(&self.dir, s).await?;
            }
        } else {
            segment::truncate(&file, &path, cut_pos).await?;
            segment::fdatasync(&file, &path).await?;
            self.st.borrow_mut().active_mut().size = cut_pos;
        }
        self.reset_end_locked(new_end).await
    }

    /// After a truncation: reopen the last segment for appends at its new size,
    /// rebuild its indexes from the file, and bring every offset and cache in line.
    async fn reset_end_locked(self: &Rc<Self>, new_end: u64) -> Result<()> {
        let buffer_bytes = self.ctx.config.write_buffer_bytes;
        let interval = self.st.borrow().config.index_interval_bytes;
        let (file, path, base, size) = {
            let st = self.st.borrow();
            let seg = st.active();
            (
                seg.file.clone(),
                seg.path.clone(),
                seg.base_offset,
                seg.size,
            )
        };
        let mut fresh = Segment::new(&self.dir, base);
        fresh.file = file.clone();
        if let Some(file) = &file {
            let end = segment::scan(file, &path, 0, size, base, |h, pos, bytes| {
                super::open::index_batch(&mut fresh, h, pos, bytes.len(), interval);
            })
            .await?;
            fresh.size = end.valid_end;
            fresh.file_pos = end.valid_end;
            fresh.written_size = end.valid_end;
            fresh.next_offset = end.next_offset.max(base);
            fresh.written_next_offset = fresh.next_offset;
            fresh.roll_base_ms = Some(now_ms());
            fresh.load_tail(buffer_bytes).await?;
        }
        let new_end = fresh.next_offset.max(new_end.min(fresh.next_offset));
        let removed_cache: usize;
        {
            let mut st = self.st.borrow_mut();
            *st.active_mut() = fresh;
            st.next_offset = new_end;
            st.high_watermark = st.high_watermark.min(new_end);
            st.durable_offset = st.durable_offset.min(new_end);
            st.log_start_offset = st.log_start_offset.min(new_end);
            st.leader_epochs.retain(|&(_, start)| start < new_end);
            st.epochs_dirty = true;
            let before: usize = st.cache.iter().map(|b| b.bytes.len()).sum();
            st.cache.retain(|b| b.last_offset < new_end);
            let after: usize = st.cache.iter().map(|b| b.bytes.len()).sum();
            removed_cache = before - after;
            st.pending_bytes = 0;
            st.unwritten_since = None;
        }
        self.ctx.cache_removed(removed_cache);
        self.rebuild_producer_state_locked().await?;
        self.write_side_files_locked().await?;
        self.checkpoint_locked(true).await?;
        tracing::info!(partition = %self.tp, log_end_offset = new_end, "truncated log");
        Ok(())
    }

    /// Deletes every segment and restarts the log empty at `offset`.
    async fn truncate_fully_locked(self: &Rc<Self>, offset: u64) -> Result<()> {
        let doomed: Vec<Segment> = std::mem::take(&mut self.st.borrow_mut().segments);
        for s in doomed {
            delete_segment_files(&self.dir, s).await?;
        }
        let removed: usize;
        {
            let mut st = self.st.borrow_mut();
            st.segments.push(Segment::new(&self.dir, offset));
            st.next_offset = offset;
            st.log_start_offset = offset;
            st.high_watermark = offset;
            st.durable_offset = offset;
            st.leader_epochs.clear();
            st.epochs_dirty = true;
            removed = st.cache.drain(..).map(|b| b.bytes.len()).sum();
            st.pending_bytes = 0;
            st.unwritten_since = None;
            st.producers = super::producer_state::ProducerStateTable::default();
        }
        self.ctx.cache_removed(removed);
        let snaps: Vec<u64> = std::mem::take(&mut self.st.borrow_mut().snapshots);
        for o in snaps {
            disk::remove_file(&snapshot_path(&self.dir, o)).await?;
        }
        self.write_side_files_locked().await?;
        self.checkpoint_locked(true).await?;
        tracing::info!(partition = %self.tp, offset, "truncated log fully");
        Ok(())
    }

    /// Rebuilds the producer table from the latest snapshot at or below the log end,
    /// replaying the batches after it; snapshots above the log end are removed.
    pub(crate) async fn rebuild_producer_state_locked(self: &Rc<Self>) -> Result<()> {
        let end = self.st.borrow().next_offset;
        let above: Vec<u64> = {
            let mut st = self.st.borrow_mut();
            let (keep, drop): (Vec<u64>, Vec<u64>) = st.snapshots.iter().partition(|&&o| o <= end);
            st.snapshots = keep;
            drop
        };
        for o in above {
            disk::remove_file(&snapshot_path(&self.dir, o)).await?;
        }
        super::open::load_producer_state(self).await
    }

    /// Moves the log start offset up to `offset` (Kafka's DeleteRecords), deleting
    /// segments that fall wholly below it. `offset` may not pass the high watermark.
    pub async fn delete_records_before(self: &Rc<Self>, offset: u64) -> Result<u64> {
        let _permit = self
            .io_lock
            .acquire_permit(1)
            .await
            .map_err(|_| Error::ShuttingDown(self.ctx.id))?;
        {
            let mut st = self.st.borrow_mut();
            self.online(&st)?;
            if offset > st.high_watermark {
                return Err(Error::OffsetOutOfRange {
                    offset: i64::try_from(offset).unwrap_or(i64::MAX),
                    log_start_offset: st.log_start_offset,
                    log_end_offset: st.high_watermark,
                });
            }
            st.log_start_offset = st.log_start_offset.max(offset);
        }
        // Rolled segments are finished first, so whole segments below the new start go.
        let result = match self.write_out_locked(false).await {
            Ok(()) => self.delete_below_log_start_locked().await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            self.fail(e);
        }
        result?;
        self.checkpoint_locked(false).await?;
        Ok(self.st.borrow().log_start_offset)
    }

    /// Deletes closed segments whose every offset is below the log start.
    async fn delete_below_log_start_locked(self: &Rc<Self>) -> Result<()> {
        loop {
            let doomed = {
                let mut st = self.st.borrow_mut();
                let start = st.log_start_offset;
                let removable = st.segments.len() > 1
                    && st.segments[1].base_offset <= start
                    && st.segments[0].state == SegmentState::Closed;
                if !removable {
                    break;
                }
                st.segments.remove(0)
            };
            delete_segment_files(&self.dir, doomed).await?;
        }
        let removed: usize = {
            let mut st = self.st.borrow_mut();
            let start = st.log_start_offset;
            let mut n = 0;
            while st.cache.front().is_some_and(|b| b.last_offset < start) {
                n += st.cache.pop_front().map_or(0, |b| b.bytes.len());
            }
            n
        };
        self.ctx.cache_removed(removed);
        Ok(())
    }

    /// Applies `segment.ms` to an idle active segment, `retention.ms` and
    /// `retention.bytes`: deletes whole old segments, never data at or above the high
    /// watermark. Returns the number of segments deleted.
    pub async fn apply_retention(self: &Rc<Self>) -> Result<usize> {
        let now = now_ms();
        {
            let mut st = self.st.borrow_mut();
            if st.offline.is_some() {
                return Ok(0);
            }
            let seg = st.active();
            let retention_expired = st.config.retention_ms.is_some_and(|ms| {
                !seg.is_empty()
                    && seg.max_timestamp >= 0
                    && now.saturating_sub(seg.max_timestamp) > i64::try_from(ms).unwrap_or(i64::MAX)
            });
            let roll_due = seg.roll_base_ms.is_some_and(|t| {
                now.saturating_sub(t) > i64::try_from(st.config.segment_ms).unwrap_or(i64::MAX)
            });
            if !seg.is_empty()
                && (retention_expired || roll_due)
                && st.high_watermark >= st.next_offset
            {
                self.roll(&mut st);
            }
        }
        let _permit = self
            .io_lock
            .acquire_permit(1)
            .await
            .map_err(|_| Error::ShuttingDown(self.ctx.id))?;
        let result = self.retention_locked(now).await;
        if let Err(e) = &result {
            self.fail(e);
        }
        result
    }

    async fn retention_locked(self: &Rc<Self>, now: i64) -> Result<usize> {
        self.write_out_locked(false).await?;
        let mut deleted = 0;
        loop {
            let doomed = {
                let mut st = self.st.borrow_mut();
                if st.segments.len() < 2 || st.segments[0].state != SegmentState::Closed {
                    break;
                }
                let first = &st.segments[0];
                let below_hw = st.segments[1].base_offset <= st.high_watermark;
                let by_time = st.config.retention_ms.is_some_and(|ms| {
                    now.saturating_sub(first.max_timestamp) > i64::try_from(ms).unwrap_or(i64::MAX)
                });
                let total: u64 = st.segments.iter().map(|s| s.size).sum();
                let by_size = st
                    .config
                    .retention_bytes
                    .is_some_and(|max| total.saturating_sub(first.size) >= max);
                if !below_hw || !(by_time || by_size) {
                    break;
                }
                let s = st.segments.remove(0);
                st.log_start_offset = st.log_start_offset.max(st.segments[0].base_offset);
                s
            };
            tracing::info!(partition = %self.tp, base_offset = doomed.base_offset, "retention deletes segment");
            delete_segment_files(&self.dir, doomed).await?;
            deleted += 1;
        }
        if deleted > 0 {
            self.delete_below_log_start_locked().await?;
            self.checkpoint_locked(false).await?;
        }
        Ok(deleted)
    }

    /// Clean close: everything written and fdatasync'ed, the active segment truncated
    /// to its logical size with its index files, a producer snapshot, checkpoints,
    /// and the clean-shutdown marker. An offline partition is left as it is.
    pub(crate) async fn close(self: &Rc<Self>) -> Result<()> {
        let _permit = self
            .io_lock
            .acquire_permit(1)
            .await
            .map_err(|_| Error::ShuttingDown(self.ctx.id))?;
        if self.st.borrow().offline.is_some() {
            return Ok(());
        }
        let result = self.close_locked().await;
        if let Err(e) = &result {
            self.fail(e);
        }
        self.io_lock.close();
        result
    }

    async fn close_locked(self: &Rc<Self>) -> Result<()> {
        self.write_out_locked(true).await?;
        let (file, path, size, base, index, time_index) = {
            let st = self.st.borrow();
            let s = st.active();
            (
                s.file.clone(),
                s.path.clone(),
                s.size,
                s.base_offset,
                s.index.encode(),
                s.time_index_with_final_entry().encode(),
            )
        };
        if let Some(file) = &file {
            segment::truncate(file, &path, size).await?;
            segment::fdatasync(file, &path).await?;
            replace_file(&segment::index_path(&self.dir, base), &index, "index.write").await?;
            replace_file(
                &segment::time_index_path(&self.dir, base),
                &time_index,
                "index.write",
            )
            .await?;
        }
        {
            let mut st = self.st.borrow_mut();
            st.durable_offset = st.next_offset;
        }
        self.complete_waiters();
        self.take_producer_snapshot_locked().await?;
        self.write_side_files_locked().await?;
        self.checkpoint_locked(true).await?;
        replace_file(
            &self.dir.join(checkpoint::CLEAN_SHUTDOWN_FILE),
            b"",
            "checkpoint.write",
        )
        .await?;
        let files: Vec<_> = self
            .st
            .borrow_mut()
            .segments
            .iter_mut()
            .filter_map(|s| s.file.take())
            .collect();
        for f in files {
            if let Ok(f) = Rc::try_unwrap(f) {
                let _ = f.close().await;
            }
        }
        Ok(())
    }

    /// Offsets as last checkpointed.
    pub fn checkpointed_offsets(&self) -> Offsets {
        self.st.borrow().checkpointed
    }
}

/// Closes and unlinks a segment's files.
pub(crate) async fn delete_segment_files(dir: &std::path::Path, mut s: Segment) -> Result<()> {
    if let Some(f) = s.file.take() {
        if let Ok(f) = Rc::try_unwrap(f) {
            let _ = f.close().await;
        }
    }
    disk::remove_file(&segment::log_path(dir, s.base_offset)).await?;
    disk::remove_file(&segment::index_path(dir, s.base_offset)).await?;
    disk::remove_file(&segment::time_index_path(dir, s.base_offset)).await?;
    disk::sync_dir(dir).await
}
