//! A partition log: the segments of one `<topic>-<partition>` directory and the
//! state around them (offsets, leader epochs, producer state, recent batches).
//!
//! Concurrency on the owning shard: all in-memory state sits in one `RefCell`
//! borrowed only between awaits. Appends are synchronous in-memory work (check,
//! assign offsets, copy into write buffers) so they are ordered by arrival; all disk
//! work (writes, closing a rolled segment, fdatasync, truncation, retention,
//! checkpoints) holds the partition's I/O lock, so at most one such operation runs at
//! a time and writes of the same tail block can never be reordered.
//!
//! Offsets: `log_start_offset <= high_watermark <= log_end_offset`, and
//! `durable_offset` (the recovery point) `<= log_end_offset`: everything below it
//! has been fdatasync'ed. An append waiting for durability completes only when
//! `durable_offset` passes its last offset.

pub mod checkpoint;
pub mod index;
mod maintenance;
mod open;
pub mod producer_state;
mod read;
pub(crate) mod read_ahead;
pub mod segment;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::channel::oneshot;
use glommio::sync::Semaphore;

use crate::batch::{self, CheckedBatch};
use crate::config::{LogConfig, TimestampType};
use crate::error::{Error, Result};
use crate::log::producer_state::{ProducerStateTable, SequenceCheck};
use crate::log::segment::{Segment, SegmentState};
use crate::shard::ShardCtx;
use crate::sync::Notify;
use crate::{now_ms, TopicPartition};

pub use checkpoint::Offsets;
pub use read::{ReadChunk, ReadResult};

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Once the batch is in the partition's write buffer (Kafka acks=0/1).
    Buffered,
    /// Once an fdatasync covering the batch completed (acks=all).
    Durable,
}

/// Options of one append.
#[derive(Debug, Clone, Copy)]
pub struct AppendOptions {
    /// The leader epoch stamped into each batch's `partitionLeaderEpoch`.
    pub leader_epoch: i32,
    pub durability: Durability,
}

impl Default for AppendOptions {
    fn default() -> Self {
        AppendOptions {
            leader_epoch: 0,
            durability: Durability::Buffered,
        }
    }
}

/// Who may append produced batches (stamped by this node as their leader).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writers {
    /// Anyone, in any epoch: the engine alone, without replication above it.
    Any,
    /// The leader in this epoch only.
    Leader(i32),
    /// Nobody: this replica follows another, or none leads.
    Nobody,
}

/// Whose batches an append stores.
#[derive(Debug, Clone, Copy)]
enum Stamping {
    /// A produce request's: offsets, the leader epoch and (for LogAppendTime
    /// topics) the append time are written into them.
    Leader(AppendOptions),
    /// A leader's, copied by a follower: stored byte for byte.
    Replica,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: u64,
    pub last_offset: u64,
    /// Broker time stamped on the batches (`LogAppendTime` topics), else -1.
    pub log_append_time_ms: i64,
    pub log_start_offset: u64,
    /// The batch was a resend of one already in the log; nothing was appended and
    /// the offsets are the original ones.
    pub duplicate: bool,
    pub record_count: u64,
}

/// A recent batch kept in memory for fetches.
pub(crate) struct CachedBatch {
    pub base_offset: u64,
    pub last_offset: u64,
    pub bytes: Bytes,
}

/// Offsets of the log as seen by a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOffsets {
    pub log_start_offset: u64,
    pub high_watermark: u64,
    pub log_end_offset: u64,
    /// Everything below this is fdatasync'ed (the recovery point).
    pub durable_offset: u64,
}

pub(crate) struct LogState {
    pub config: LogConfig,
    /// Oldest first; the last one takes appends.
    pub segments: Vec<Segment>,
    pub log_start_offset: u64,
    pub high_watermark: u64,
    pub next_offset: u64,
    pub durable_offset: u64,
    pub leader_epochs: Vec<(i32, u64)>,
    pub epochs_dirty: bool,
    pub producers: ProducerStateTable,
    /// Offsets of the producer snapshots on disk, ascending.
    pub snapshots: Vec<u64>,
    pub offline: Option<String>,
    pub cache: VecDeque<CachedBatch>,
    /// Batches appended since the last fdatasync (for `flush.messages`).
    pub unflushed_batches: u64,
    /// When the oldest data not yet fdatasync'ed was appended (for `flush.ms`).
    pub unflushed_since: Option<Instant>,
    /// When the oldest data not yet written to the file was appended.
    pub unwritten_since: Option<Instant>,
    /// Offsets last written to the checkpoint file.
    pub checkpointed: Offsets,
    pub pending_bytes: u64,
    /// Who may append as leader, checked in the same step as the append.
    pub writers: Writers,
}

impl LogState {
    pub fn active(&self) -> &Segment {
        let last = self.segments.len() - 1;
        &self.segments[last]
    }

    pub fn active_mut(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    pub fn offsets(&self) -> Offsets {
        Offsets {
            recovery_point: self.durable_offset,
            high_watermark: self.high_watermark,
            log_start_offset: self.log_start_offset,
        }
    }
}

/// One partition log, owned by one shard.
pub struct Partition {
    pub(crate) tp: TopicPartition,
    pub(crate) dir: PathBuf,
    pub(crate) ctx: Rc<ShardCtx>,
    pub(crate) st: RefCell<LogState>,
    /// Serialises disk work; see the module docs.
    pub(crate) io_lock: Semaphore,
    pub(crate) durable_waiters: RefCell<Vec<(u64, oneshot::Sender<Result<()>>)>>,
    /// Woken when buffered bytes have been written (appends waiting for room).
    pub(crate) space: Notify,
    /// Woken after every append (fetches waiting for data).
    pub(crate) appended: Notify,
    pub(crate) writer_running: Cell<bool>,
    /// A sync waits for the I/O lock: the streaming writer yields it soon.
    pub(crate) sync_waiting: Cell<bool>,
    pub(crate) in_dirty_list: Cell<bool>,
}

impl Partition {
    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn offsets(&self) -> LogOffsets {
        let st = self.st.borrow();
        LogOffsets {
            log_start_offset: st.log_start_offset,
            high_watermark: st.high_watermark,
            log_end_offset: st.next_offset,
            durable_offset: st.durable_offset,
        }
    }

    pub fn config(&self) -> LogConfig {
        self.st.borrow().config.clone()
    }

    /// Replaces the partition's settings (Kafka's AlterConfigs on a topic).
    pub fn set_config(&self, config: LogConfig) -> Result<()> {
        config.validate()?;
        self.st.borrow_mut().config = config;
        Ok(())
    }

    /// Completes at the next append or high-watermark move after this call (a
    /// long-polling fetch waits here).
    pub fn appended(&self) -> crate::sync::Notified<'_> {
        self.appended.notified()
    }

    /// Why the partition is offline, if it is.
    pub fn offline_reason(&self) -> Option<String> {
        self.st.borrow().offline.clone()
    }

    pub fn segment_count(&self) -> usize {
        self.st.borrow().segments.len()
    }

    /// `(base offset, logical size in bytes)` of every segment, oldest first.
    pub fn segments(&self) -> Vec<(u64, u64)> {
        self.st
            .borrow()
            .segments
            .iter()
            .map(|s| (s.base_offset, s.size))
            .collect()
    }

    /// Bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.st.borrow().segments.iter().map(|s| s.size).sum()
    }

    /// Leader-epoch cache entries `(epoch, start offset)`.
    pub fn leader_epochs(&self) -> Vec<(i32, u64)> {
        self.st.borrow().leader_epochs.clone()
    }

    /// Sets the high watermark (the replication layer owns it). It must lie between
    /// the log start and the log end: a value outside is a bug in the caller, which
    /// fails debug builds (the tests) and is logged and bounded in release builds.
    /// Fetches waiting on [`Partition::appended`] are woken when it moves.
    pub fn set_high_watermark(&self, offset: u64) {
        let moved = {
            let mut st = self.st.borrow_mut();
            let (start, end) = (st.log_start_offset, st.next_offset);
            let inside = (start..=end).contains(&offset);
            debug_assert!(
                inside,
                "{}: high watermark {offset} outside the log [{start}, {end}]",
                self.tp
            );
            if !inside {
                tracing::error!(partition = %self.tp, offset, log_start_offset = start,
                    log_end_offset = end, "high watermark outside the log; bounded");
            }
            let before = st.high_watermark;
            st.high_watermark = offset.clamp(start, end);
            st.high_watermark != before
        };
        if moved {
            self.appended.notify_all();
        }
    }

    /// A leader starting `epoch`: the leader-epoch cache gets `(epoch, log end)`
    /// unless it already has this epoch or a newer one, so that OffsetForLeaderEpoch
    /// answers a follower of an older epoch where that epoch ended here, before
    /// anything is written in the new one (Kafka's leader does the same).
    pub fn begin_leader_epoch(&self, epoch: i32) {
        let mut st = self.st.borrow_mut();
        let end = st.next_offset;
        if epoch >= 0 && st.leader_epochs.last().is_none_or(|&(e, _)| epoch > e) {
            st.leader_epochs.push((epoch, end));
            st.epochs_dirty = true;
        }
    }

    /// Who may append as leader from now on (the replication layer sets it when
    /// the replica's role changes; an append already waiting for buffer space is
    /// checked when it is taken).
    pub fn set_writers(&self, writers: Writers) {
        self.st.borrow_mut().writers = writers;
    }

    /// The newest leader epoch in the log's epoch cache, or -1.
    pub fn last_leader_epoch(&self) -> i32 {
        self.st
            .borrow()
            .leader_epochs
            .last()
            .map_or(-1, |&(e, _)| e)
    }

    fn online(&self, st: &LogState) -> Result<()> {
        if let Some(reason) = &st.offline {
            return Err(Error::PartitionOffline {
                partition: self.tp.clone(),
                reason: reason.clone(),
            });
        }
        if self.ctx.stopping.get() {
            return Err(Error::ShuttingDown(self.ctx.id));
        }
        Ok(())
    }

    /// Appends the record batches of one produce request. Every batch is checked
    /// first; if any is refused nothing is written. With [`Durability::Durable`] the
    /// call returns once an fdatasync covering the batches completed.
    pub async fn append(
        self: &Rc<Self>,
        records: Bytes,
        opts: AppendOptions,
    ) -> Result<AppendInfo> {
        let max = usize::try_from(self.st.borrow().config.max_message_bytes).unwrap_or(usize::MAX);
        let checked = batch::check_append(&records, max)?;
        self.wait_for_buffer_space().await?;
        let info = {
            let mut st = self.st.borrow_mut();
            self.online(&st)?;
            if !matches!(st.writers, Writers::Any)
                && st.writers != Writers::Leader(opts.leader_epoch)
            {
                return Err(Error::NotLeader {
                    partition: self.tp.clone(),
                    epoch: opts.leader_epoch,
                });
            }
            if let Some(duplicate) = Self::check_sequences(&st, &checked)? {
                duplicate
            } else {
                self.append_in_memory(&mut st, &records, &checked, Stamping::Leader(opts))
            }
        };
        self.after_append(&info, opts.durability).await?;
        Ok(info)
    }

    /// A follower's append: the leader's batches stored byte for byte, with the
    /// leader's offsets and epochs. They must continue the log (first offset at the
    /// log end, contiguous, leader epochs never going back) and pass the CRC and
    /// framing checks; otherwise nothing is written. Control batches are taken,
    /// `max.message.bytes` is not checked and producer sequences are recorded, not
    /// checked: the leader did that.
    pub async fn append_replicated(
        self: &Rc<Self>,
        records: Bytes,
        durability: Durability,
    ) -> Result<AppendInfo> {
        self.wait_for_buffer_space().await?;
        let info = {
            let mut st = self.st.borrow_mut();
            self.online(&st)?;
            let last_epoch = st.leader_epochs.last().map_or(-1, |&(e, _)| e);
            let checked = batch::check_replicated(&records, st.next_offset, last_epoch)?;
            self.append_in_memory(&mut st, &records, &checked, Stamping::Replica)
        };
        self.after_append(&info, durability).await?;
        Ok(info)
    }

    /// Waits while the partition's unwritten bytes are over the limit.
    async fn wait_for_buffer_space(self: &Rc<Self>) -> Result<()> {
        loop {
            {
                let st = self.st.borrow();
                self.online(&st)?;
                if st.pending_bytes < self.ctx.config.pending_bytes_max as u64 {
                    return Ok(());
                }
            }
            let wait = self.space.notified();
            self.start_writer();
            wait.await;
        }
    }

    /// Wakes readers, schedules the write, and waits for durability if asked.
    async fn after_append(
        self: &Rc<Self>,
        info: &AppendInfo,
        durability: Durability,
    ) -> Result<()> {
        if !info.duplicate {
            self.appended.notify_all();
            self.mark_dirty();
            if self
                .st
                .borrow()
                .active()
                .has_full_buffer(self.ctx.config.write_buffer_bytes)
            {
                self.start_writer();
            }
            self.ctx.evict_cache();
        }
        if durability == Durability::Durable {
            self.wait_durable(info.last_offset + 1).await?;
        }
        Ok(())
    }

    /// Puts checked batches in the active segment's buffer, the cache and the
    /// indexes (the caller checked that the partition is online).
    fn append_in_memory(
        self: &Rc<Self>,
        st: &mut LogState,
        records: &[u8],
        checked: &[CheckedBatch],
        stamping: Stamping,
    ) -> AppendInfo {
        let total: u64 = checked.iter().map(|c| c.size as u64).sum();
        let records_total: u64 = checked
            .iter()
            .map(|c| u64::from(c.header.last_offset_delta.unsigned_abs()) + 1)
            .sum();
        let now = now_ms();
        self.maybe_roll(st, total, records_total, now);
        let (data, base_offset, next_offset, log_append_time) =
            self.stamp_and_index(st, records, checked, stamping, now);
        let buffer_bytes = self.ctx.config.write_buffer_bytes;
        let seg = st.active_mut();
        seg.push(&data, buffer_bytes);
        seg.next_offset = next_offset;
        st.next_offset = next_offset;
        st.pending_bytes += total;
        st.unflushed_batches += checked.len() as u64;
        let now_i = Instant::now();
        st.unflushed_since.get_or_insert(now_i);
        st.unwritten_since.get_or_insert(now_i);
        let mut batch_base = base_offset;
        for c in checked {
            let last = batch_base + u64::from(c.header.last_offset_delta.unsigned_abs());
            st.cache.push_back(CachedBatch {
                base_offset: batch_base,
                last_offset: last,
                bytes: data.slice(c.position..c.position + c.size),
            });
            self.ctx.cache_added(self, batch_base, c.size);
            batch_base = last + 1;
        }
        AppendInfo {
            base_offset,
            last_offset: next_offset - 1,
            log_append_time_ms: if log_append_time { now } else { -1 },
            log_start_offset: st.log_start_offset,
            duplicate: false,
            record_count: next_offset - base_offset,
        }
    }

    /// Checks idempotent producers' sequences against a scratch copy of the table,
    /// so a multi-batch append is checked batch after batch and nothing changes on
    /// refusal. `Some` answers a resent batch with its original offsets.
    fn check_sequences(st: &LogState, checked: &[CheckedBatch]) -> Result<Option<AppendInfo>> {
        let mut scratch: Option<ProducerStateTable> = None;
        for c in checked {
            if c.header.producer_id == batch::NO_PRODUCER_ID {
                continue;
            }
            let table = scratch.get_or_insert_with(|| st.producers.clone());
            match table.check(&c.header)? {
                SequenceCheck::Append => {
                    table.record(&c.header, 0, 0);
                }
                SequenceCheck::Duplicate {
                    base_offset,
                    last_offset,
                } => {
                    if checked.len() > 1 {
                        return Err(Error::InvalidBatch {
                            position: c.position,
                            reason: "a resent batch arrived together with other batches".into(),
                        });
                    }
                    return Ok(Some(AppendInfo {
                        base_offset,
                        last_offset,
                        log_append_time_ms: -1,
                        log_start_offset: st.log_start_offset,
                        duplicate: true,
                        record_count: last_offset - base_offset + 1,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Assigns offsets, the leader epoch and (for LogAppendTime) timestamps in place
    /// and updates the active segment's indexes. Returns the stamped bytes, the first
    /// offset, the next offset and whether LogAppendTime was applied.
    /// Copies the batches into the shard's cache memory, stamped with their
    /// offsets (and the append time), and indexes them.
    fn stamp_and_index(
        &self,
        st: &mut LogState,
        records: &[u8],
        checked: &[CheckedBatch],
        stamping: Stamping,
        now: i64,
    ) -> (Bytes, u64, u64, bool) {
        let mut stamped = None;
        let mut stamp =
            |data: &mut [u8]| stamped = Some(Self::stamp(st, data, checked, stamping, now));
        let copied = self.ctx.arena.borrow_mut().copy(records, &mut stamp);
        let data = copied.unwrap_or_else(|| {
            // Larger than a chunk of cache memory: memory of its own.
            let mut data = BytesMut::from(records);
            stamp(&mut data);
            data.freeze()
        });
        let (base_offset, next_offset, log_append_time) = stamped.unwrap_or_default();
        (data, base_offset, next_offset, log_append_time)
    }

    /// Stamps the batches in `data` (a leader's append; a replica's are stored as
    /// they are) and indexes them: (base offset, next offset, whether the append
    /// time was stamped).
    fn stamp(
        st: &mut LogState,
        data: &mut [u8],
        checked: &[CheckedBatch],
        stamping: Stamping,
        now: i64,
    ) -> (u64, u64, bool) {
        let leader = match stamping {
            Stamping::Leader(opts) => Some(opts),
            Stamping::Replica => None,
        };
        let log_append_time =
            leader.is_some() && st.config.message_timestamp_type == TimestampType::LogAppendTime;
        let base_offset = st.next_offset;
        let mut offset = base_offset;
        let index_interval = st.config.index_interval_bytes;
        let seg_start = st.active().size;
        for c in checked {
            let epoch = leader.map_or(c.header.partition_leader_epoch, |o| o.leader_epoch);
            if epoch >= 0 && st.leader_epochs.last().is_none_or(|&(e, _)| epoch > e) {
                st.leader_epochs.push((epoch, offset));
                st.epochs_dirty = true;
            }
            let slice = &mut data[c.position..c.position + c.size];
            if let Some(opts) = leader {
                batch::assign(slice, offset, opts.leader_epoch);
            }
            let (max_ts, max_ts_delta) = if log_append_time {
                batch::set_log_append_time(slice, now);
                (now, c.header.last_offset_delta)
            } else {
                (c.header.max_timestamp, c.max_timestamp_delta)
            };
            let last = offset + u64::from(c.header.last_offset_delta.unsigned_abs());
            let seg = st.active_mut();
            let position = seg_start + c.position as u64;
            let rel_last = u32::try_from(last - seg.base_offset).unwrap_or(u32::MAX);
            if seg.bytes_since_index > index_interval {
                seg.index
                    .append(rel_last, u32::try_from(position).unwrap_or(u32::MAX));
                let rel_max =
                    u32::try_from(seg.offset_of_max_timestamp - seg.base_offset).unwrap_or(0);
                seg.time_index.maybe_append(seg.max_timestamp, rel_max);
                seg.bytes_since_index = 0;
            }
            seg.bytes_since_index += c.size as u64;
            if max_ts > seg.max_timestamp {
                seg.max_timestamp = max_ts;
                seg.offset_of_max_timestamp = offset + u64::from(max_ts_delta.unsigned_abs());
            }
            if seg.roll_base_ms.is_none() {
                seg.roll_base_ms = Some(now);
            }
            seg.boundaries
                .push_back((position + c.size as u64, last + 1));
            st.producers.record(&c.header, offset, last);
            offset = last + 1;
        }
        (base_offset, offset, log_append_time)
    }

    /// Rolls the active segment if the append would break one of Kafka's roll rules:
    /// `segment.bytes`, `segment.ms`, a full offset index, or 32-bit relative offsets.
    fn maybe_roll(&self, st: &mut LogState, add_bytes: u64, add_records: u64, now: i64) {
        let config = st.config.clone();
        let next = st.next_offset;
        let seg = st.active();
        if seg.is_empty() {
            return;
        }
        let too_big = seg.size + add_bytes > config.segment_bytes;
        let too_old = seg.roll_base_ms.is_some_and(|t| {
            now.saturating_sub(t) > i64::try_from(config.segment_ms).unwrap_or(i64::MAX)
        });
        let index_full = seg.index.len() >= config.index_entries_max();
        let offsets_overflow = next + add_records - seg.base_offset > u64::from(u32::MAX >> 1);
        if too_big || too_old || index_full || offsets_overflow {
            self.roll(st);
        }
    }

    /// Closes the active segment for appends and starts a new one at the log end.
    /// The writer finishes the old one (last write, truncate, index files, fdatasync).
    pub(crate) fn roll(&self, st: &mut LogState) {
        let next = st.next_offset;
        let seg = st.active_mut();
        if seg.is_empty() {
            return;
        }
        seg.state = SegmentState::Closing;
        st.segments.push(Segment::new(&self.dir, next));
        tracing::debug!(partition = %self.tp, base_offset = next, "rolled to a new segment");
    }

    /// Waits until every offset below `offset` is durable.
    pub(crate) async fn wait_durable(self: &Rc<Self>, offset: u64) -> Result<()> {
        let rx = {
            let st = self.st.borrow();
            if st.durable_offset >= offset {
                return Ok(());
            }
            self.online(&st)?;
            let (tx, rx) = oneshot::channel();
            self.durable_waiters.borrow_mut().push((offset, tx));
            rx
        };
        self.mark_dirty();
        self.ctx.flush_signal.notify_all();
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(Error::ShuttingDown(self.ctx.id)),
        }
    }

    /// Waits until everything appended so far is durable.
    pub async fn flush(self: &Rc<Self>) -> Result<()> {
        let end = self.st.borrow().next_offset;
        self.wait_durable(end).await
    }

    pub(crate) fn has_durable_waiters(&self) -> bool {
        !self.durable_waiters.borrow().is_empty()
    }

    fn complete_waiters(&self) {
        let durable = self.st.borrow().durable_offset;
        let mut waiters = self.durable_waiters.borrow_mut();
        let mut i = 0;
        while i < waiters.len() {
            if waiters[i].0 <= durable {
                let (_, tx) = waiters.swap_remove(i);
                let _ = tx.send(Ok(()));
            } else {
                i += 1;
            }
        }
    }

    /// Takes the partition offline after a disk error: every waiter gets the error,
    /// and nothing more is written until it is reopened.
    pub(crate) fn fail(&self, err: &Error) {
        tracing::error!(partition = %self.tp, error = %err, "partition goes offline after a storage error");
        self.go_offline(err);
    }

    /// Takes the partition offline without a storage error (it is being deleted):
    /// waiters get `err`, nothing more is written.
    pub(crate) fn retire(&self, err: &Error) {
        tracing::debug!(partition = %self.tp, "partition retired");
        self.go_offline(err);
    }

    fn go_offline(&self, err: &Error) {
        self.st
            .borrow_mut()
            .offline
            .get_or_insert_with(|| err.to_string());
        for (_, tx) in self.durable_waiters.borrow_mut().drain(..) {
            let _ = tx.send(Err(err.duplicate()));
        }
        self.space.notify_all();
    }

    pub(crate) fn mark_dirty(self: &Rc<Self>) {
        if !self.in_dirty_list.replace(true) {
            self.ctx.dirty.borrow_mut().push(self.clone());
            self.ctx.flush_signal.notify_all();
        }
    }

    /// Starts a background task writing full buffers, if none runs.
    fn start_writer(self: &Rc<Self>) {
        if self.writer_running.replace(true) {
            return;
        }
        let me = self.clone();
        glommio::spawn_local(async move {
            let all = me.st.borrow().pending_bytes >= me.ctx.config.pending_bytes_max as u64;
            let written = if all {
                me.write_out(true).await
            } else {
                me.stream_full_buffers().await
            };
            if let Err(e) = written {
                me.fail(&e);
            }
            me.writer_running.set(false);
        })
        .detach();
    }

    /// Writes full buffers of the active segment as they fill, with up to
    /// [`WRITES_IN_FLIGHT_MAX`] writes in flight so the disk never idles between
    /// them. Full buffers cover whole blocks, so these writes never overlap each other
    /// or the tail block; completions are taken in submission order, so `file_pos`
    /// only moves over a written prefix. Stops when no full buffer is left, when a
    /// sync waits for the I/O lock, or after [`STREAM_WRITES_MAX`] writes.
    async fn stream_full_buffers(self: &Rc<Self>) -> Result<()> {
        let _permit = self
            .io_lock
            .acquire_permit(1)
            .await
            .map_err(|_| Error::ShuttingDown(self.ctx.id))?;
        let buffer_bytes = self.ctx.config.write_buffer_bytes;
        let mut in_flight = futures::stream::FuturesOrdered::new();
        let mut issued = 0usize;
        loop {
            while in_flight.len() < WRITES_IN_FLIGHT_MAX
                && issued < STREAM_WRITES_MAX
                && !self.sync_waiting.get()
            {
                let next = {
                    let mut st = self.st.borrow_mut();
                    if st.offline.is_some() {
                        break;
                    }
                    let seg = st.active_mut();
                    match &seg.file {
                        Some(file) if seg.has_full_buffer(buffer_bytes) => {
                            let file = file.clone();
                            let fresh_from = seg
                                .pending
                                .front()
                                .map_or(0, |wb| seg.file_pos.saturating_sub(wb.start));
                            seg.pending
                                .pop_front()
                                .map(|wb| (seg.base_offset, file, seg.path.clone(), wb, fresh_from))
                        }
                        _ => None,
                    }
                };
                let Some((base, file, path, wb, fresh_from)) = next else {
                    break;
                };
                self.reserve(base, &file, &path, wb.start + wb.len as u64)
                    .await?;
                let fresh_from = usize::try_from(fresh_from).unwrap_or(0);
                in_flight.push_back(async move {
                    let r = segment::write_buf(&file, &path, wb, fresh_from, buffer_bytes).await;
                    (base, r)
                });
                issued += 1;
            }
            let Some((base, r)) = futures::StreamExt::next(&mut in_flight).await else {
                break;
            };
            let end = r?;
            {
                let mut st = self.st.borrow_mut();
                if let Some(seg) = st.segments.iter_mut().find(|s| s.base_offset == base) {
                    seg.advance_file_pos(end);
                    seg.unsynced = true;
                }
                st.pending_bytes = st.segments.iter().map(Segment::pending_bytes).sum();
            }
            self.space.notify_all();
        }
        // Anything else (a rolled segment, a segment without its file yet) the usual way.
        self.write_out_locked(false).await
    }

    /// Makes sure the blocks up to `end` of segment `base` are allocated.
    async fn reserve(
        &self,
        base: u64,
        file: &glommio::io::DmaFile,
        path: &Path,
        end: u64,
    ) -> Result<()> {
        let want = {
            let st = self.st.borrow();
            let segment_bytes = st.config.segment_bytes;
            st.segments
                .iter()
                .find(|s| s.base_offset == base)
                .and_then(|s| segment::allocation_for(s.allocated, end, segment_bytes))
        };
        if let Some(size) = want {
            segment::allocate(file, path, size).await?;
            let mut st = self.st.borrow_mut();
            if let Some(s) = st.segments.iter_mut().find(|s| s.base_offset == base) {
                s.allocated = s.allocated.max(size);
            }
        }
        Ok(())
    }

    /// Writes buffered bytes to the files (all of them with `all`, else only full
    /// buffers) and finishes rolled segments. Holds the I/O lock.
    pub(crate) async fn write_out(self: &Rc<Self>, all: bool) -> Result<()> {
        let _permit = self
            .io_lock
            .acquire_permit(1)
            .await
            .map_err(|_| Error::ShuttingDown(self.ctx.id))?;
        self.write_out_locked(all).await
    }

    pub(crate) async fn write_out_locked(self: &Rc<Self>, all: bool) -> Result<()> {
        let buffer_bytes = self.ctx.config.write_buffer_bytes;
        loop {
            let (idx, writes, file, path, closing, target_size, target_next, file_pos) = {
                let mut st = self.st.borrow_mut();
                if let Some(reason) = &st.offline {
                    return Err(Error::PartitionOffline {
                        partition: self.tp.clone(),
                        reason: reason.clone(),
                    });
                }
                let Some(idx) = st.segments.iter().position(|s| {
                    s.state == SegmentState::Closing
                        || (all && !s.pending.is_empty() && s.pending_bytes() > 0)
                        || s.has_full_buffer(buffer_bytes)
                }) else {
                    break;
                };
                let seg = &mut st.segments[idx];
                let closing = seg.state == SegmentState::Closing;
                let take_all = all || closing;
                let writes = seg.take_writes(take_all, buffer_bytes);
                (
                    idx,
                    writes,
                    seg.file.clone(),
                    seg.path.clone(),
                    closing,
                    seg.size,
                    seg.next_offset,
                    seg.file_pos,
                )
            };
            let file = if let Some(f) = file {
                f
            } else {
                let f = open::create_segment_file(&path).await?;
                self.st.borrow_mut().segments[idx].file = Some(f.clone());
                f
            };
            let base = self.st.borrow().segments[idx].base_offset;
            if let Some(last_end) = writes.iter().map(|wb| wb.start + wb.len as u64).max() {
                self.reserve(base, &file, &path, last_end).await?;
            }
            let mut end = None;
            let results = futures::future::join_all(writes.into_iter().map(|wb| {
                let fresh_from = usize::try_from(file_pos.saturating_sub(wb.start)).unwrap_or(0);
                segment::write_buf(&file, &path, wb, fresh_from, buffer_bytes)
            }))
            .await;
            for r in results {
                let e = r?;
                end = Some(end.map_or(e, |x: u64| x.max(e)));
            }
            let took_all = {
                let mut st = self.st.borrow_mut();
                let seg = &mut st.segments[idx];
                if let Some(end) = end {
                    seg.advance_file_pos(end);
                    seg.unsynced = true;
                }
                let took_all = seg.file_pos >= target_size;
                if took_all {
                    seg.written_size = seg.written_size.max(target_size);
                    seg.written_next_offset = seg.written_next_offset.max(target_next);
                }
                let pending: u64 = st.segments.iter().map(Segment::pending_bytes).sum();
                st.pending_bytes = pending;
                if pending == 0 {
                    st.unwritten_since = None;
                }
                took_all
            };
            self.space.notify_all();
            if closing && took_all {
                self.finish_segment(idx, &file, &path).await?;
            }
        }
        self.write_side_files_locked().await
    }

    /// Puts a rolled segment in its final form: truncated to its logical size, index
    /// files written, everything fdatasync'ed; then a producer snapshot is taken.
    async fn finish_segment(
        self: &Rc<Self>,
        idx: usize,
        file: &Rc<glommio::io::DmaFile>,
        path: &Path,
    ) -> Result<()> {
        let (size, base, index, time_index, next) = {
            let st = self.st.borrow();
            let s = &st.segments[idx];
            (
                s.size,
                s.base_offset,
                s.index.encode(),
                s.time_index_with_final_entry().encode(),
                s.next_offset,
            )
        };
        segment::truncate(file, path, size).await?;
        segment::fdatasync(file, path).await?;
        crate::disk::replace_file(&segment::index_path(&self.dir, base), &index, "index.write")
            .await?;
        crate::disk::replace_file(
            &segment::time_index_path(&self.dir, base),
            &time_index,
            "index.write",
        )
        .await?;
        {
            let mut st = self.st.borrow_mut();
            if let Some(s) = st.segments.iter_mut().find(|s| s.base_offset == base) {
                s.state = SegmentState::Closed;
                s.unsynced = false;
            }
            if st
                .segments
                .iter()
                .take_while(|s| s.base_offset <= base)
                .all(|s| s.state == SegmentState::Closed)
            {
                st.durable_offset = st.durable_offset.max(next);
            }
        }
        self.complete_waiters();
        self.take_producer_snapshot_locked().await
    }

    /// Makes everything appended so far durable: writes all buffers, then
    /// fdatasyncs the active segment. Called by the shard's flusher.
    pub(crate) async fn sync(self: &Rc<Self>) -> Result<()> {
        let target = self.st.borrow().next_offset;
        self.sync_waiting.set(true);
        let permit = self.io_lock.acquire_permit(1).await;
        self.sync_waiting.set(false);
        let permit = permit.map_err(|_| Error::ShuttingDown(self.ctx.id))?;
        self.write_out_locked(true).await?;
        let (file, path) = {
            let mut st = self.st.borrow_mut();
            let seg = st.active_mut();
            let unsynced = std::mem::take(&mut seg.unsynced);
            (seg.file.clone().filter(|_| unsynced), seg.path.clone())
        };
        drop(permit);
        if let Some(file) = file {
            segment::fdatasync(&file, &path).await?;
        }
        {
            let mut st = self.st.borrow_mut();
            st.durable_offset = st.durable_offset.max(target);
            if st.durable_offset >= st.next_offset {
                st.unflushed_batches = 0;
                st.unflushed_since = None;
            }
        }
        self.complete_waiters();
        Ok(())
    }

    /// What the flusher should do with this partition now.
    pub(crate) fn flush_need(&self, now: Instant) -> FlushNeed {
        let st = self.st.borrow();
        if st.offline.is_some() {
            return FlushNeed::Nothing;
        }
        let unsynced = st.durable_offset < st.next_offset;
        let by_count = st
            .config
            .flush_messages
            .is_some_and(|n| st.unflushed_batches >= n);
        let by_time = st.config.flush_ms.is_some_and(|ms| {
            st.unflushed_since
                .is_some_and(|t| now.duration_since(t).as_millis() >= u128::from(ms))
        });
        if unsynced && (self.has_durable_waiters() || by_count || by_time) {
            return FlushNeed::Sync;
        }
        let writeback = self.ctx.config.writeback_interval;
        if st
            .unwritten_since
            .is_some_and(|t| now.duration_since(t) >= writeback)
            || st.segments.iter().any(|s| s.state == SegmentState::Closing)
        {
            return FlushNeed::Write;
        }
        if st.pending_bytes > 0
            || (unsynced && (st.config.flush_ms.is_some() || st.config.flush_messages.is_some()))
        {
            return FlushNeed::Later;
        }
        FlushNeed::Nothing
    }
}

/// Full-buffer writes one partition keeps in flight while streaming.
const WRITES_IN_FLIGHT_MAX: usize = 4;
/// Writes one streaming pass issues before it lets other disk work take the lock.
const STREAM_WRITES_MAX: usize = 64;

/// The flusher's decision for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlushNeed {
    /// Clean, or unsynced with nothing asking for a sync.
    Nothing,
    /// Needs nothing now but will (buffered bytes, or a flush policy pending).
    Later,
    /// Buffered bytes are old enough to write (without fdatasync).
    Write,
    /// Someone waits for durability, or a flush policy is due.
    Sync,
}

impl Segment {
    /// The time index as it is written when the segment closes: with a last entry
    /// for the segment's max timestamp, as Kafka does, so retention can use it.
    pub(crate) fn time_index_with_final_entry(&self) -> index::TimeIndex {
        let mut ti = self.time_index.clone();
        if self.max_timestamp >= 0 {
            let rel = u32::try_from(self.offset_of_max_timestamp - self.base_offset).unwrap_or(0);
            ti.maybe_append(self.max_timestamp, rel);
        }
        ti
    }
}
