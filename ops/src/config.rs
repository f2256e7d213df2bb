//! `sluice serve`'s configuration: one TOML file, every key optional, defaults for a
//! single-node development broker. Unknown keys and values of the wrong type are
//! refused by the parser with the key's name; values out of range are refused by
//! [`Config::check`] with the key's name.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sluice_engine::{EngineConfig, LogConfig};
use sluice_net::BrokerSettings;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where partitions and the topic registry live.
    pub data_dir: PathBuf,
    /// Kafka's `node.id`.
    pub node_id: i32,
    pub kafka: KafkaSection,
    pub storage: StorageSection,
    /// Defaults for topics that do not override them (Kafka's `log.*` settings).
    pub log: LogSection,
    /// Consumer groups and committed offsets (Kafka's `group.*` and `offsets.*`).
    pub group: GroupSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupSection {
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty
    /// group waits for more members.
    pub initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.max.size`: members per group; default: no limit.
    pub max_size: Option<usize>,
    /// `offsets.topic.num.partitions` (when `__consumer_offsets` is created).
    pub offsets_topic_partitions: i32,
    /// `offsets.retention.minutes`: offsets of a group empty this long are deleted.
    pub offsets_retention_minutes: u64,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.check.interval.ms`: how often expired offsets are looked for.
    pub offsets_retention_check_interval_ms: u64,
}

impl Default for GroupSection {
    fn default() -> Self {
        let g = sluice_net::group::coordinator::GroupSettings::default();
        GroupSection {
            initial_rebalance_delay_ms: u64::try_from(g.limits.initial_rebalance_delay.as_millis())
                .unwrap_or(3000),
            min_session_timeout_ms: g.limits.min_session_timeout_ms,
            max_session_timeout_ms: g.limits.max_session_timeout_ms,
            max_size: None,
            offsets_topic_partitions: g.offsets_topic_partitions,
            offsets_retention_minutes: g.offsets_retention.as_secs() / 60,
            offset_metadata_max_bytes: g.offset_metadata_max_bytes,
            offsets_retention_check_interval_ms: u64::try_from(
                g.offsets_retention_check.as_millis(),
            )
            .unwrap_or(600_000),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSection {
    /// Address the Kafka listener binds (`host:port`).
    pub listen: String,
    /// Host clients are told to connect to; default: the listen host.
    pub advertised_host: Option<String>,
    /// Port clients are told to connect to; default: the listen port.
    pub advertised_port: Option<u16>,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `num.partitions` of auto-created topics.
    pub num_partitions: i32,
    /// `socket.request.max.bytes`.
    pub request_max_bytes: usize,
    /// Longest a Fetch may long-poll, in milliseconds.
    pub fetch_wait_max_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// Shards (one pinned thread per core); default: one per CPU this process may use.
    pub shards: Option<usize>,
    /// Recent batches each shard keeps in memory for consumers, in MiB.
    pub cache_mib_per_shard: usize,
    /// How often acks=1 data still in memory is written to the file, in milliseconds.
    pub writeback_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `log.retention.ms`; -1 keeps data forever.
    pub retention_ms: i64,
    /// `log.retention.bytes`; -1 for no size limit.
    pub retention_bytes: i64,
    /// `log.segment.bytes`.
    pub segment_bytes: u64,
    /// `log.roll.ms`.
    pub segment_ms: u64,
    /// `message.max.bytes`.
    pub max_message_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./sluice-data"),
            node_id: 1,
            kafka: KafkaSection::default(),
            storage: StorageSection::default(),
            log: LogSection::default(),
            group: GroupSection::default(),
        }
    }
}

impl Default for KafkaSection {
    fn default() -> Self {
        let b = BrokerSettings::default();
        KafkaSection {
            listen: "127.0.0.1:9092".into(),
            advertised_host: None,
            advertised_port: None,
            auto_create_topics: b.auto_create_topics,
            num_partitions: b.default_partitions,
            request_max_bytes: b.request_max_bytes,
            fetch_wait_max_ms: b.fetch_wait_max_ms,
        }
    }
}

impl Default for StorageSection {
    fn default() -> Self {
        let e = EngineConfig::new(".");
        StorageSection {
            shards: None,
            cache_mib_per_shard: e.cache_bytes_per_shard >> 20,
            writeback_interval_ms: u64::try_from(e.writeback_interval.as_millis()).unwrap_or(5),
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        let l = LogConfig::default();
        let signed = |v: Option<u64>| v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        LogSection {
            retention_ms: signed(l.retention_ms),
            retention_bytes: signed(l.retention_bytes),
            segment_bytes: l.segment_bytes,
            segment_ms: l.segment_ms,
            max_message_bytes: l.max_message_bytes,
        }
    }
}

/// A configuration problem, naming the key.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(key: &str, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("invalid config `{key}`: {reason}"))
}

/// What `sluice serve` runs with.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub engine: EngineConfig,
    pub listen: SocketAddr,
    pub broker: BrokerSettings,
}

impl Config {
    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
    }

    /// Checks every value and builds the engine and broker settings.
    pub fn check(&self) -> Result<Resolved, ConfigError> {
        let listen = self
            .kafka
            .listen
            .to_socket_addrs()
            .map_err(|e| bad("kafka.listen", format!("`{}`: {e}", self.kafka.listen)))?
            .next()
            .ok_or_else(|| bad("kafka.listen", "resolves to no address"))?;
        if self.node_id < 0 {
            return Err(bad("node_id", "must not be negative"));
        }
        if !(1..=100_000).contains(&self.kafka.num_partitions) {
            return Err(bad("kafka.num_partitions", "must be 1 to 100000"));
        }
        if !(1024..=(1 << 30)).contains(&self.kafka.request_max_bytes) {
            return Err(bad("kafka.request_max_bytes", "must be 1 KiB to 1 GiB"));
        }
        let limit = |key: &str, v: i64| -> Result<Option<u64>, ConfigError> {
            match v {
                -1 => Ok(None),
                v => u64::try_from(v)
                    .map(Some)
                    .map_err(|_| bad(key, "must be -1 or at least 0")),
            }
        };
        let mut engine = EngineConfig::new(&self.data_dir);
        engine.shards = self.storage.shards;
        engine.cache_bytes_per_shard = self
            .storage
            .cache_mib_per_shard
            .checked_mul(1 << 20)
            .ok_or_else(|| bad("storage.cache_mib_per_shard", "too large"))?;
        engine.writeback_interval = Duration::from_millis(self.storage.writeback_interval_ms);
        engine.log_defaults.retention_ms = limit("log.retention_ms", self.log.retention_ms)?;
        engine.log_defaults.retention_bytes =
            limit("log.retention_bytes", self.log.retention_bytes)?;
        engine.log_defaults.segment_bytes = self.log.segment_bytes;
        engine.log_defaults.segment_ms = self.log.segment_ms;
        engine.log_defaults.max_message_bytes = self.log.max_message_bytes;
        engine.validate().map_err(|e| match e {
            sluice_engine::Error::InvalidConfig { key, reason } => {
                let key = match key.as_str() {
                    "segment.bytes" => "log.segment_bytes".to_string(),
                    "segment.ms" => "log.segment_ms".to_string(),
                    "max.message.bytes" => "log.max_message_bytes".to_string(),
                    "shards" => "storage.shards".to_string(),
                    "writeback_interval" => "storage.writeback_interval_ms".to_string(),
                    other => other.to_string(),
                };
                bad(&key, reason)
            }
            other => ConfigError(other.to_string()),
        })?;
        let broker = BrokerSettings {
            node_id: self.node_id,
            advertised_host: self
                .kafka
                .advertised_host
                .clone()
                .unwrap_or_else(|| listen.ip().to_string()),
            advertised_port: self.kafka.advertised_port.unwrap_or(listen.port()),
            request_max_bytes: self.kafka.request_max_bytes,
            auto_create_topics: self.kafka.auto_create_topics,
            default_partitions: self.kafka.num_partitions,
            fetch_wait_max_ms: self.kafka.fetch_wait_max_ms,
            groups: self.group.check()?,
        };
        Ok(Resolved {
            engine,
            listen,
            broker,
        })
    }
}

impl GroupSection {
    fn check(&self) -> Result<sluice_net::group::coordinator::GroupSettings, ConfigError> {
        if self.initial_rebalance_delay_ms > 300_000 {
            return Err(bad(
                "group.initial_rebalance_delay_ms",
                "must be at most 300000",
            ));
        }
        if self.min_session_timeout_ms < 1 {
            return Err(bad("group.min_session_timeout_ms", "must be at least 1"));
        }
        if self.max_session_timeout_ms < self.min_session_timeout_ms {
            return Err(bad(
                "group.max_session_timeout_ms",
                "must be at least group.min_session_timeout_ms",
            ));
        }
        if self.max_size == Some(0) {
            return Err(bad("group.max_size", "must be at least 1"));
        }
        if !(1..=1000).contains(&self.offsets_topic_partitions) {
            return Err(bad("group.offsets_topic_partitions", "must be 1 to 1000"));
        }
        if !(1..=52_560_000).contains(&self.offsets_retention_minutes) {
            return Err(bad(
                "group.offsets_retention_minutes",
                "must be 1 to 52560000 (100 years)",
            ));
        }
        if !(1..=(1 << 20)).contains(&self.offset_metadata_max_bytes) {
            return Err(bad(
                "group.offset_metadata_max_bytes",
                "must be 1 to 1048576",
            ));
        }
        if !(100..=86_400_000).contains(&self.offsets_retention_check_interval_ms) {
            return Err(bad(
                "group.offsets_retention_check_interval_ms",
                "must be 100 to 86400000 (a day)",
            ));
        }
        Ok(sluice_net::group::coordinator::GroupSettings {
            limits: sluice_net::group::state::GroupLimits {
                min_session_timeout_ms: self.min_session_timeout_ms,
                max_session_timeout_ms: self.max_session_timeout_ms,
                initial_rebalance_delay: Duration::from_millis(self.initial_rebalance_delay_ms),
                max_size: self.max_size.unwrap_or(usize::MAX),
            },
            offsets_topic_partitions: self.offsets_topic_partitions,
            offsets_retention: Duration::from_secs(self.offsets_retention_minutes * 60),
            offset_metadata_max_bytes: self.offset_metadata_max_bytes,
            offsets_retention_check: Duration::from_millis(
                self.offsets_retention_check_interval_ms,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Resolved, ConfigError> {
        toml::from_str::<Config>(text)
            .map_err(|e| ConfigError(e.to_string()))
            .and_then(|c| c.check())
    }

    #[test]
    fn an_empty_file_is_the_embedded_default() {
        let r = parse("").unwrap();
        assert_eq!(r.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(r.engine.data_dir, PathBuf::from("./sluice-data"));
        assert!(r.broker.auto_create_topics);
        assert_eq!(r.broker.groups.offsets_topic_partitions, 50);
        assert_eq!(
            r.broker.groups.limits.initial_rebalance_delay,
            Duration::from_secs(3)
        );
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            ("nope = 1", "nope"),
            ("[kafka]\nlisten = 5", "listen"),
            ("[kafka]\nlisten = \"not an address\"", "kafka.listen"),
            ("[kafka]\nnum_partitions = 0", "kafka.num_partitions"),
            ("[log]\nsegment_bytes = 3", "log.segment_bytes"),
            ("[log]\nretention_ms = -7", "log.retention_ms"),
            ("[storage]\nshards = 0", "storage.shards"),
            ("[kafka]\nextra = true", "extra"),
            (
                "[group]\nmax_session_timeout_ms = 10",
                "group.max_session_timeout_ms",
            ),
            (
                "[group]\noffsets_topic_partitions = 0",
                "group.offsets_topic_partitions",
            ),
            (
                "[group]\ninitial_rebalance_delay_ms = \"soon\"",
                "initial_rebalance_delay_ms",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?}: {e}");
        }
    }
}
