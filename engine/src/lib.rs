//! Sluice's storage engine and shard runtime.
//!
//! How the parts fit:
//! - [`engine::Engine`] starts one pinned glommio executor per core (a *shard*), after
//!   [`preflight`] has checked that io_uring and locked memory are usable. Each shard
//!   owns a set of partitions; [`shard::router::ShardRouter`] carries work to the
//!   owning shard (one hop per request and shard) and brings the answer back.
//! - A [`log::Partition`] is a Kafka-format log directory: segments of v2 record
//!   batches ([`batch`]) with their `.index`/`.timeindex`, checkpoints and producer
//!   snapshots. Appends are validated, stamped with offsets in place, copied into
//!   O_DIRECT buffers and written by io_uring; durability comes from the shard's
//!   group-commit flusher ([`shard::flusher`]).
//! - Recovery on open checks every batch after the recovery point and cuts a torn
//!   tail; corruption before it takes only that partition offline.
//!
//! Invariants kept everywhere: an append is acknowledged as durable only after an
//! fdatasync that covered it completed; nothing is written for a refused append; no
//! input from disk or network can make the engine panic.

pub mod batch;
pub mod config;
pub mod disk;
pub mod engine;
pub mod error;
pub mod failpoint;
pub mod log;
pub mod metrics;
pub mod preflight;
pub mod shard;
pub mod sync;

use std::fmt;
use std::sync::Arc;

pub use config::{EngineConfig, LogConfig, TimestampType};
pub use engine::Engine;
pub use error::{Error, Result};
pub use log::{
    AppendInfo, AppendOptions, Durability, Offsets, Partition, ReadChunk, ReadResult, Writers,
};
pub use shard::router::ShardRouter;
pub use shard::Shard;

/// Kafka's limit on topic name length.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// A topic partition, named as Kafka names its directory: `<topic>-<partition>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: Arc<str>,
    pub partition: i32,
}

impl TopicPartition {
    /// Checks the name as Kafka does: 1..=249 of `[a-zA-Z0-9._-]`, not `.` or `..`,
    /// and a non-negative partition.
    pub fn new(topic: &str, partition: i32) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidTopic {
            name: format!("{topic}-{partition}"),
            reason: reason.into(),
        };
        if topic.is_empty() || topic.len() > TOPIC_NAME_BYTES_MAX {
            return Err(invalid("topic names are 1 to 249 characters"));
        }
        if topic == "." || topic == ".." {
            return Err(invalid("`.` and `..` are not topic names"));
        }
        if !topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        {
            return Err(invalid(
                "topic names use only ASCII letters, digits, `.`, `_` and `-`",
            ));
        }
        if partition < 0 {
            return Err(invalid("partition numbers are not negative"));
        }
        Ok(TopicPartition {
            topic: topic.into(),
            partition,
        })
    }

    /// The directory name, `<topic>-<partition>`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }

    /// Parses a directory name; `None` for anything that is not a partition directory.
    pub fn from_dir_name(name: &str) -> Option<Self> {
        let (topic, partition) = name.rsplit_once('-')?;
        if partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        TopicPartition::new(topic, partition.parse().ok()?).ok()
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Milliseconds since the Unix epoch, Kafka's timestamp unit.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(TopicPartition::new("orders.v1_x-y", 0).is_ok());
        assert!(TopicPartition::new("", 0).is_err());
        assert!(TopicPartition::new("..", 0).is_err());
        assert!(TopicPartition::new("a/b", 0).is_err());
        assert!(TopicPartition::new(&"x".repeat(250), 0).is_err());
        assert!(TopicPartition::new("t", -1).is_err());
        let tp = TopicPartition::from_dir_name("my-topic-12").unwrap();
        assert_eq!((&*tp.topic, tp.partition), ("my-topic", 12));
        assert!(TopicPartition::from_dir_name("nodash").is_none());
        assert!(TopicPartition::from_dir_name("t-x1").is_none());
    }
}
