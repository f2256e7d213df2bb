//! Every topic config Kafka 3.x and 4.x accept: its type, Kafka's default, the
//! check Kafka applies, and what it does here. The one table that validation,
//! DescribeConfigs, CreateTopics' answer, the list operations of
//! IncrementalAlterConfigs and the configuration reference read.

/// Kafka's `ConfigDef` types (their ids are DescribeConfigs' `config_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Boolean => "boolean",
            Kind::String => "string",
            Kind::Int => "int",
            Kind::Long => "long",
            Kind::Double => "double",
            Kind::List => "list",
        }
    }
}

/// The check after a value parsed as its kind (Kafka's validators).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Check {
    Any,
    AtLeast(i64),
    Between(i64, i64),
    BetweenReal(f64, f64),
    OneOf(&'static [&'static str]),
    /// A list whose every item is one of these.
    EachOneOf(&'static [&'static str]),
    /// 1 to 9, or -1 (`compression.gzip.level`).
    GzipLevel,
    /// `*`, or `partition:broker` pairs (the replication throttle lists).
    ThrottledReplicas,
    /// A Kafka version (`message.format.version`).
    Version,
    /// Only `false`: tiered storage is not available here, as on a Kafka broker
    /// without `remote.log.storage.system.enable`.
    OnlyFalse,
}

/// What a config does on this broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Applied as Kafka applies it.
    Applied,
    /// Accepted, checked, stored and described, but without effect yet; says why.
    Stored(&'static str),
}

/// One topic config.
#[derive(Debug, Clone, Copy)]
pub struct TopicKey {
    pub name: &'static str,
    pub kind: Kind,
    /// Kafka's default; for keys with a broker setting here (`[log]`), the broker's
    /// value is the default instead.
    pub default: &'static str,
    pub check: Check,
    pub effect: Effect,
    pub doc: &'static str,
}

const LONG_MAX: &str = "9223372036854775807";
const CODECS: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];
const NO_COMPACTION: &str = "compaction is not implemented yet";
const NO_REPLICATION: &str = "replication throttles are not applied yet";
const NO_TIERED: &str = "no tiered storage";

macro_rules! key {
    ($name:literal, $kind:ident, $default:expr, $check:expr, $effect:expr, $doc:literal) => {
        TopicKey {
            name: $name,
            kind: Kind::$kind,
            default: $default,
            check: $check,
            effect: $effect,
            doc: $doc,
        }
    };
}

/// In Kafka's (alphabetical) order, the order DescribeConfigs lists them.
pub const TOPIC_KEYS: &[TopicKey] = &[
    key!("cleanup.policy", List, "delete", Check::EachOneOf(&["compact", "delete"]), Effect::Applied,
        "`delete`: retention removes old segments; `compact`: every record needs a key (keyless batches are refused with INVALID_RECORD) and retention does not delete (compaction itself is not implemented yet, so nothing is removed); both: keys required, retention deletes; empty: keep everything"),
    key!("compression.type", String, "producer", Check::OneOf(CODECS), Effect::Applied,
        "`producer` keeps batches as sent; a codec (or `uncompressed`) makes the owning shard recompress batches that arrive in another codec"),
    key!("compression.gzip.level", Int, "-1", Check::GzipLevel, Effect::Applied,
        "gzip level of recompressed batches: 1-9, -1 for zlib's default (6)"),
    key!("compression.lz4.level", Int, "9", Check::Between(1, 17), Effect::Applied,
        "lz4 level of recompressed batches (liblz4 caps it at 12)"),
    key!("compression.zstd.level", Int, "3", Check::Between(-131_072, 22), Effect::Applied,
        "zstd level of recompressed batches"),
    key!("delete.retention.ms", Long, "86400000", Check::AtLeast(0), Effect::Stored(NO_COMPACTION),
        "how long tombstones stay in a compacted log"),
    key!("file.delete.delay.ms", Long, "60000", Check::AtLeast(0), Effect::Stored("segments are deleted at once"),
        "delay before a deleted segment's file is removed"),
    key!("flush.messages", Long, LONG_MAX, Check::AtLeast(1), Effect::Applied,
        "fdatasync after this many batches even when no producer waits"),
    key!("flush.ms", Long, LONG_MAX, Check::AtLeast(0), Effect::Applied,
        "fdatasync data older than this even when no producer waits"),
    key!("follower.replication.throttled.replicas", List, "", Check::ThrottledReplicas, Effect::Stored(NO_REPLICATION),
        "replicas whose follower fetches are throttled"),
    key!("index.interval.bytes", Int, "4096", Check::AtLeast(0), Effect::Applied,
        "bytes of log between two offset-index entries (0: every batch)"),
    key!("leader.replication.throttled.replicas", List, "", Check::ThrottledReplicas, Effect::Stored(NO_REPLICATION),
        "replicas whose leader answers to followers are throttled"),
    key!("local.retention.bytes", Long, "-2", Check::AtLeast(-2), Effect::Stored(NO_TIERED),
        "local part of the retention with tiered storage"),
    key!("local.retention.ms", Long, "-2", Check::AtLeast(-2), Effect::Stored(NO_TIERED),
        "local part of the retention with tiered storage"),
    key!("max.compaction.lag.ms", Long, LONG_MAX, Check::AtLeast(1), Effect::Stored(NO_COMPACTION),
        "longest a record stays uncompacted (at least min.compaction.lag.ms)"),
    key!("max.message.bytes", Int, "1048588", Check::AtLeast(0), Effect::Applied,
        "largest record batch accepted (MESSAGE_TOO_LARGE above)"),
    key!("message.downconversion.enable", Boolean, "true", Check::Any, Effect::Stored("no down-conversion: Fetch v4+ only, as in Kafka 4"),
        "down-conversion for old consumers"),
    key!("message.format.version", String, "3.0-IV1", Check::Version, Effect::Stored("batches are always magic 2, as in Kafka 3 on KRaft"),
        "record format version (Kafka 3.x; removed in 4.0)"),
    key!("message.timestamp.after.max.ms", Long, LONG_MAX, Check::AtLeast(0), Effect::Applied,
        "CreateTime records further ahead of the broker's clock are refused (INVALID_TIMESTAMP)"),
    key!("message.timestamp.before.max.ms", Long, LONG_MAX, Check::AtLeast(0), Effect::Applied,
        "CreateTime records further behind the broker's clock are refused (INVALID_TIMESTAMP)"),
    key!("message.timestamp.difference.max.ms", Long, LONG_MAX, Check::AtLeast(0), Effect::Applied,
        "both of the above when they are not set (Kafka 3.x; removed in 4.0)"),
    key!("message.timestamp.type", String, "CreateTime", Check::OneOf(&["CreateTime", "LogAppendTime"]), Effect::Applied,
        "`LogAppendTime` stamps batches with the broker's clock"),
    key!("min.cleanable.dirty.ratio", Double, "0.5", Check::BetweenReal(0.0, 1.0), Effect::Stored(NO_COMPACTION),
        "share of a compacted log that must be dirty before it is cleaned"),
    key!("min.compaction.lag.ms", Long, "0", Check::AtLeast(0), Effect::Stored(NO_COMPACTION),
        "shortest a record stays uncompacted"),
    key!("min.insync.replicas", Int, "1", Check::AtLeast(1), Effect::Applied,
        "acks=all is refused (NOT_ENOUGH_REPLICAS) with fewer replicas in sync"),
    key!("preallocate", Boolean, "false", Check::Any, Effect::Stored("segment files grow in 1-64 MiB steps"),
        "preallocate whole segment files"),
    key!("remote.log.copy.disable", Boolean, "false", Check::Any, Effect::Stored(NO_TIERED),
        "stop copying to tiered storage"),
    key!("remote.log.delete.on.disable", Boolean, "false", Check::Any, Effect::Stored(NO_TIERED),
        "delete tiered data when tiered storage is turned off"),
    key!("remote.storage.enable", Boolean, "false", Check::OnlyFalse, Effect::Stored(NO_TIERED),
        "tiered storage; `true` is refused, as by a Kafka broker without it"),
    key!("retention.bytes", Long, "-1", Check::Any, Effect::Applied,
        "delete the oldest segments while the partition is larger (negative: no limit)"),
    key!("retention.ms", Long, "604800000", Check::AtLeast(-1), Effect::Applied,
        "delete segments whose newest record is older (-1: keep)"),
    key!("segment.bytes", Int, "1073741824", Check::AtLeast(14), Effect::Applied,
        "roll the active segment before it grows past this"),
    key!("segment.index.bytes", Int, "10485760", Check::AtLeast(4), Effect::Applied,
        "offset index size; a full index rolls the segment"),
    key!("segment.jitter.ms", Long, "0", Check::AtLeast(0), Effect::Stored("segments roll at segment.ms exactly"),
        "random jitter subtracted from segment.ms"),
    key!("segment.ms", Long, "604800000", Check::AtLeast(1), Effect::Applied,
        "roll the active segment once its first record is this old"),
    key!("unclean.leader.election.enable", Boolean, "false", Check::Any, Effect::Applied,
        "elect an out-of-sync replica when no in-sync one is left"),
];

/// The entry of `name`, if Kafka knows it as a topic config.
pub fn find(name: &str) -> Option<&'static TopicKey> {
    TOPIC_KEYS.iter().find(|k| k.name == name)
}
