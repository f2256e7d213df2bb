//! Settings of the engine (per process) and of one partition log (per topic, like
//! Kafka's topic configs). Every value has a bound and [`LogConfig::validate`] /
//! [`EngineConfig::validate`] refuse values outside it, naming the key.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// Block size for O_DIRECT I/O. Every write starts and ends on this boundary.
pub const BLOCK_BYTES: usize = 4096;

/// Kafka's `message.timestamp.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Keep the producer's timestamps.
    CreateTime,
    /// Stamp every batch with the broker's clock on append.
    LogAppendTime,
}

/// Per-partition settings, named after Kafka's topic configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment when it would grow past this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment once its first batch is this old.
    pub segment_ms: u64,
    /// `retention.ms`: delete whole segments whose newest record is older. `None`: keep.
    pub retention_ms: Option<u64>,
    /// `retention.bytes`: delete oldest segments while the log is larger. `None`: keep.
    pub retention_bytes: Option<u64>,
    /// `flush.messages`: fdatasync after this many appended batches even with no waiter.
    pub flush_messages: Option<u64>,
    /// `flush.ms`: fdatasync data older than this even with no waiter.
    pub flush_ms: Option<u64>,
    /// `index.interval.bytes`: bytes of log between two offset-index entries (0: an
    /// entry for every batch).
    pub index_interval_bytes: u64,
    /// `segment.index.bytes`: a segment rolls when its offset index reaches this size.
    pub segment_index_bytes: u64,
    /// `max.message.bytes`: largest record batch accepted.
    pub max_message_bytes: u64,
    /// `message.timestamp.type`.
    pub message_timestamp_type: TimestampType,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            flush_messages: None,
            flush_ms: None,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 << 20,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
        }
    }
}

/// Smallest segment Kafka accepts (3.x: 14 bytes, the smallest legacy record). A
/// segment always takes at least one batch, so a tiny one holds one batch each.
const SEGMENT_BYTES_MIN: u64 = 14;
/// Relative offsets and positions in the index are 32-bit, as in Kafka.
const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;
/// Kafka's floor for `segment.index.bytes`. The offset index holds 8-byte entries,
/// so below 8 it holds none and, as in Kafka, every batch rolls the segment.
const SEGMENT_INDEX_BYTES_MIN: u64 = 4;
/// A batch must fit the 32-bit length field and a segment.
const MAX_MESSAGE_BYTES_MAX: u64 = i32::MAX as u64;

impl LogConfig {
    /// Checks every value against its bound; the error names the Kafka key.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, reason: String| {
            Err(Error::InvalidConfig {
                key: key.into(),
                reason,
            })
        };
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return bad(
                "segment.bytes",
                format!(
                    "{} is outside [{SEGMENT_BYTES_MIN}, {SEGMENT_BYTES_MAX}]",
                    self.segment_bytes
                ),
            );
        }
        if self.segment_ms == 0 {
            return bad("segment.ms", "must be at least 1".into());
        }
        if self.segment_index_bytes < SEGMENT_INDEX_BYTES_MIN {
            return bad(
                "segment.index.bytes",
                format!(
                    "{} is below {SEGMENT_INDEX_BYTES_MIN}",
                    self.segment_index_bytes
                ),
            );
        }
        // 0 is Kafka's floor: every batch is refused as too large.
        if self.max_message_bytes > MAX_MESSAGE_BYTES_MAX {
            return bad(
                "max.message.bytes",
                format!(
                    "{} is outside [0, {MAX_MESSAGE_BYTES_MAX}]",
                    self.max_message_bytes
                ),
            );
        }
        if self.flush_messages == Some(0) {
            return bad("flush.messages", "must be at least 1".into());
        }
        Ok(())
    }

    pub(crate) fn index_entries_max(&self) -> usize {
        usize::try_from(self.segment_index_bytes / 8).unwrap_or(usize::MAX)
    }
}

/// Process-wide settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Directory holding one sub-directory per partition.
    pub data_dir: PathBuf,
    /// Number of shards (one pinned executor per core). `None`: one per online CPU.
    pub shards: Option<usize>,
    /// Pin shard `i` to CPU `cpus[i % len]`; `None`: shard `i` on the `i`-th online CPU.
    pub cpus: Option<Vec<usize>>,
    /// Defaults for partitions created without their own config.
    pub log_defaults: LogConfig,
    /// Bytes of recent batches each shard keeps in memory for fetches.
    pub cache_bytes_per_shard: usize,
    /// Size of one O_DIRECT write buffer; a full buffer is written at once.
    pub write_buffer_bytes: usize,
    /// Most bytes a partition may hold unwritten before appends wait for the disk.
    pub pending_bytes_max: usize,
    /// Written-but-buffered data older than this is written to the file (not synced),
    /// so a killed process loses at most this much of acks=1 data.
    pub writeback_interval: Duration,
    /// How often recovery points, high watermarks and log start offsets are
    /// checkpointed (Kafka `log.flush.offset.checkpoint.interval.ms`).
    pub checkpoint_interval: Duration,
    /// How often retention and `segment.ms` are checked
    /// (Kafka `log.retention.check.interval.ms`).
    pub retention_check_interval: Duration,
    /// Bound on messages queued to one shard from the router.
    pub shard_inbox_capacity: usize,
    /// io_uring registered buffer memory per shard (glommio `io_memory`).
    pub io_memory_bytes: usize,
    /// Longest a shard runs tasks before it polls for I/O (glommio's preempt timer,
    /// Seastar's task quota). Queued disk writes are submitted only when the shard
    /// polls, so a long quota can leave the disk idle behind a burst of requests.
    /// 500 µs by default. Short quotas need the vendored glommio's fix
    /// (vendor/glommio/VENDORED.md): glommio 0.9.0 parks a shard whose preempt timer
    /// fired before it ran anything, even with runnable tasks, and a shard doing only
    /// its own work (recovery) then slept forever.
    pub task_quota: Duration,
}

impl EngineConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            shards: None,
            cpus: None,
            log_defaults: LogConfig::default(),
            cache_bytes_per_shard: 64 << 20,
            write_buffer_bytes: 1 << 20,
            pending_bytes_max: 8 << 20,
            writeback_interval: Duration::from_millis(5),
            task_quota: Duration::from_micros(500),
            checkpoint_interval: Duration::from_mins(1),
            retention_check_interval: Duration::from_mins(5),
            shard_inbox_capacity: 1024,
            io_memory_bytes: 4 << 20,
        }
    }

    /// Checks every value against its bound; the error names the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, reason: String| {
            Err(Error::InvalidConfig {
                key: key.into(),
                reason,
            })
        };
        self.log_defaults.validate()?;
        if self.shards == Some(0) {
            return bad("shards", "must be at least 1".into());
        }
        if self.shards.is_some_and(|n| n > 1024) {
            return bad("shards", "at most 1024 shards are supported".into());
        }
        if self.write_buffer_bytes < BLOCK_BYTES
            || !self.write_buffer_bytes.is_multiple_of(BLOCK_BYTES)
        {
            return bad(
                "write_buffer_bytes",
                format!("must be a multiple of {BLOCK_BYTES}"),
            );
        }
        if self.write_buffer_bytes > 64 << 20 {
            return bad("write_buffer_bytes", "must be at most 64 MiB".into());
        }
        if self.pending_bytes_max < self.write_buffer_bytes {
            return bad(
                "pending_bytes_max",
                "must be at least write_buffer_bytes".into(),
            );
        }
        if self.shard_inbox_capacity == 0 {
            return bad("shard_inbox_capacity", "must be at least 1".into());
        }
        if self.task_quota < Duration::from_micros(50) || self.task_quota > Duration::from_secs(1) {
            return bad(
                "task_quota",
                format!("{:?} is outside 50 µs ..= 1 s", self.task_quota),
            );
        }
        if self.writeback_interval.is_zero() {
            return bad("writeback_interval", "must be positive".into());
        }
        Ok(())
    }
}
