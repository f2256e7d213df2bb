//! The engine's one error type. Every variant says whether the caller can recover,
//! and the network layer turns each into exactly one Kafka error code
//! ([`Error::kafka_code`]), so the mapping lives in one place.

use std::io;
use std::path::PathBuf;

use crate::TopicPartition;

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A record batch failed its CRC or its framing is broken. Nothing was written;
    /// the client may resend. Kafka: `CORRUPT_MESSAGE` (2).
    #[error("corrupt record batch at byte {position}: {reason}")]
    CorruptBatch { position: usize, reason: String },

    /// A record batch is well framed but not acceptable (wrong magic, bad record
    /// count, control batch from a client). Nothing was written; resending the same
    /// bytes fails again. Kafka: `INVALID_RECORD` (87).
    #[error("invalid record batch at byte {position}: {reason}")]
    InvalidBatch { position: usize, reason: String },

    /// A batch is larger than the partition's `max.message.bytes`. Nothing was
    /// written. Kafka: `MESSAGE_TOO_LARGE` (10).
    #[error("record batch of {size} bytes exceeds max.message.bytes ({max})")]
    BatchTooLarge { size: usize, max: usize },

    /// An idempotent producer skipped a sequence number. Nothing was written.
    /// Kafka: `OUT_OF_ORDER_SEQUENCE_NUMBER` (45).
    #[error("out of order sequence for producer {producer_id}: expected {expected}, got {got}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        got: i32,
    },

    /// An idempotent producer used an epoch older than the partition has seen; it has
    /// been fenced. Kafka: `INVALID_PRODUCER_EPOCH` (47).
    #[error("producer {producer_id} epoch {epoch} is older than current epoch {current}")]
    ProducerFenced {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },

    /// The requested offset is outside `[log start, log end]`. Kafka:
    /// `OFFSET_OUT_OF_RANGE` (1).
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: u64,
        log_end_offset: u64,
    },

    /// The partition is not hosted here. Kafka: `UNKNOWN_TOPIC_OR_PARTITION` (3).
    #[error("unknown partition {0}")]
    UnknownPartition(TopicPartition),

    /// A leader's append in an epoch the partition no longer takes writes in (it
    /// lost its leadership, or the epoch is stale). Kafka:
    /// `NOT_LEADER_OR_FOLLOWER` (6).
    #[error("partition {partition} takes no writes in leader epoch {epoch}")]
    NotLeader {
        partition: TopicPartition,
        epoch: i32,
    },

    /// The partition already exists. Kafka: `TOPIC_ALREADY_EXISTS` (36).
    #[error("partition {0} already exists")]
    PartitionExists(TopicPartition),

    /// The partition cannot be used because its storage failed or is corrupt.
    /// Not recoverable without an operator. Kafka: `KAFKA_STORAGE_ERROR` (56).
    #[error("partition {partition} is offline: {reason}")]
    PartitionOffline {
        partition: TopicPartition,
        reason: String,
    },

    /// A disk operation failed. The partition that issued it goes offline.
    /// Kafka: `KAFKA_STORAGE_ERROR` (56).
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    /// Stored data is corrupt where it was known to be durable (before the recovery
    /// point). The partition stays offline. Kafka: `KAFKA_STORAGE_ERROR` (56).
    #[error(
        "partition {partition}: corrupt log in segment {segment} at byte {position}: {reason}"
    )]
    CorruptLog {
        partition: TopicPartition,
        segment: PathBuf,
        position: u64,
        reason: String,
    },

    /// A configuration value is wrong; names the key. Not recoverable at runtime.
    /// Kafka: `INVALID_CONFIG` (40).
    #[error("invalid config `{key}`: {reason}")]
    InvalidConfig { key: String, reason: String },

    /// A topic name or partition number is not acceptable. Kafka:
    /// `INVALID_TOPIC_EXCEPTION` (17).
    #[error("invalid topic partition `{name}`: {reason}")]
    InvalidTopic { name: String, reason: String },

    /// The host cannot run the engine (io_uring off, memlock too small). The message
    /// names the fix. Not recoverable without an operator.
    #[error("{0}")]
    Preflight(String),

    /// The engine or the shard is shutting down; the request was not done.
    /// Kafka: `NOT_LEADER_OR_FOLLOWER` (6), so clients retry elsewhere.
    #[error("shard {0} is shutting down")]
    ShuttingDown(usize),

    /// The caller asked for something the log cannot do in its state (for example
    /// deleting records above the high watermark). Kafka: `OFFSET_OUT_OF_RANGE` or
    /// `INVALID_REQUEST`, see [`Error::kafka_code`].
    #[error("{0}")]
    InvalidRequest(String),
}

impl Error {
    /// Wraps an I/O error with the operation and path that failed.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source: source.into(),
        }
    }

    /// The Kafka protocol error code for this error. This is the one place the
    /// mapping lives; the network layer calls it and nothing else.
    pub fn kafka_code(&self) -> i16 {
        match self {
            Error::OffsetOutOfRange { .. } => 1,
            Error::CorruptBatch { .. } => 2,
            Error::UnknownPartition(_) => 3,
            Error::ShuttingDown(_) | Error::NotLeader { .. } => 6,
            Error::BatchTooLarge { .. } => 10,
            Error::InvalidTopic { .. } => 17,
            Error::PartitionExists(_) => 36,
            Error::InvalidConfig { .. } => 40,
            Error::InvalidRequest(_) => 42,
            Error::OutOfOrderSequence { .. } => 45,
            Error::ProducerFenced { .. } => 47,
            Error::PartitionOffline { .. }
            | Error::Io { .. }
            | Error::CorruptLog { .. }
            | Error::Preflight(_) => 56,
            Error::InvalidBatch { .. } => 87,
        }
    }

    /// A copy for each waiter of one failed flush, keeping the Kafka code of the
    /// errors that can fail a flush.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Io { op, path, source } => Error::Io {
                op,
                path: path.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            Error::UnknownPartition(tp) => Error::UnknownPartition(tp.clone()),
            Error::ShuttingDown(shard) => Error::ShuttingDown(*shard),
            Error::PartitionOffline { partition, reason } => Error::PartitionOffline {
                partition: partition.clone(),
                reason: reason.clone(),
            },
            Error::CorruptLog {
                partition,
                segment,
                position,
                reason,
            } => Error::CorruptLog {
                partition: partition.clone(),
                segment: segment.clone(),
                position: *position,
                reason: reason.clone(),
            },
            // Only storage errors reach waiters; anything else keeps its text.
            other => Error::InvalidRequest(other.to_string()),
        }
    }
}
