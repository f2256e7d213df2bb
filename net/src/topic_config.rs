//! Kafka's topic configs: the keys a topic may override, how each maps onto the
//! engine's [`LogConfig`], and what DescribeConfigs shows for each.
//!
//! A topic stores only its overrides (key -> value, as the client sent them); the
//! effective settings are the broker defaults with the overrides applied. Every value
//! is parsed and checked here, so a bad value is refused with the key's name before
//! anything is stored.

use std::collections::BTreeMap;

use sluice_engine::{LogConfig, TimestampType};

/// A refused config: the key and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid config `{}`: {}", self.key, self.reason)
    }
}

/// The topic settings beyond the engine's log settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSettings {
    pub log: LogConfig,
    /// `min.insync.replicas`: acks=all is refused with `NOT_ENOUGH_REPLICAS` while
    /// fewer replicas are in sync.
    pub min_insync_replicas: i32,
    /// `cleanup.policy` as given (`delete`, `compact` or both).
    pub cleanup_policy: String,
}

/// Every key a topic accepts, in the order DescribeConfigs lists them.
pub const KEYS: &[&str] = &[
    "cleanup.policy",
    "compression.type",
    "flush.messages",
    "flush.ms",
    "index.interval.bytes",
    "max.message.bytes",
    "message.timestamp.type",
    "min.insync.replicas",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.ms",
];

fn err(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

fn parse_i64(key: &str, value: &str) -> Result<i64, ConfigError> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| err(key, format!("`{value}` is not an integer")))
}

fn positive(key: &str, value: &str) -> Result<u64, ConfigError> {
    let v = parse_i64(key, value)?;
    u64::try_from(v)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| err(key, format!("{v} must be positive")))
}

/// `-1` means "no limit", as in Kafka.
fn limit(key: &str, value: &str) -> Result<Option<u64>, ConfigError> {
    let v = parse_i64(key, value)?;
    if v == -1 {
        return Ok(None);
    }
    u64::try_from(v)
        .map(Some)
        .map_err(|_| err(key, format!("{v} must be -1 (no limit) or at least 0")))
}

/// Applies one override to `s`.
fn apply(s: &mut TopicSettings, key: &str, value: &str) -> Result<(), ConfigError> {
    match key {
        "cleanup.policy" => {
            let parts: Vec<&str> = value.split(',').map(str::trim).collect();
            if parts.is_empty() || parts.iter().any(|p| !matches!(*p, "delete" | "compact")) {
                return Err(err(
                    key,
                    format!("`{value}` is not `delete`, `compact` or `compact,delete`"),
                ));
            }
            s.cleanup_policy = parts.join(",");
        }
        "compression.type" => {
            if value != "producer" {
                return Err(err(
                    key,
                    "only `producer` is supported: batches are stored as the producer \
                     compressed them",
                ));
            }
        }
        "flush.messages" => s.log.flush_messages = Some(positive(key, value)?),
        "flush.ms" => s.log.flush_ms = Some(positive(key, value)?),
        "index.interval.bytes" => s.log.index_interval_bytes = positive(key, value)?,
        "max.message.bytes" => s.log.max_message_bytes = positive(key, value)?,
        "message.timestamp.type" => {
            s.log.message_timestamp_type = match value {
                "CreateTime" => TimestampType::CreateTime,
                "LogAppendTime" => TimestampType::LogAppendTime,
                _ => {
                    return Err(err(
                        key,
                        format!("`{value}` is not `CreateTime` or `LogAppendTime`"),
                    ))
                }
            }
        }
        "min.insync.replicas" => {
            let v = parse_i64(key, value)?;
            s.min_insync_replicas = i32::try_from(v)
                .ok()
                .filter(|&v| v >= 1)
                .ok_or_else(|| err(key, format!("{v} must be at least 1")))?;
        }
        "retention.bytes" => s.log.retention_bytes = limit(key, value)?,
        "retention.ms" => s.log.retention_ms = limit(key, value)?,
        "segment.bytes" => s.log.segment_bytes = positive(key, value)?,
        "segment.index.bytes" => s.log.segment_index_bytes = positive(key, value)?,
        "segment.ms" => s.log.segment_ms = positive(key, value)?,
        _ => return Err(err(key, "unknown topic config")),
    }
    Ok(())
}

/// The effective settings of a topic: `defaults` with `overrides` applied, checked.
pub fn settings(
    defaults: &LogConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<TopicSettings, ConfigError> {
    let mut s = TopicSettings {
        log: defaults.clone(),
        min_insync_replicas: 1,
        cleanup_policy: "delete".into(),
    };
    for (k, v) in overrides {
        apply(&mut s, k, v)?;
    }
    s.log.validate().map_err(|e| match e {
        sluice_engine::Error::InvalidConfig { key, reason } => err(&key, reason),
        other => err("?", other.to_string()),
    })?;
    Ok(s)
}

/// The value of `key` in `s`, as Kafka prints it.
pub fn value_of(s: &TopicSettings, key: &str) -> Option<String> {
    let opt = |v: Option<u64>| v.map_or_else(|| "-1".to_string(), |v| v.to_string());
    Some(match key {
        "cleanup.policy" => s.cleanup_policy.clone(),
        "compression.type" => "producer".into(),
        "flush.messages" => s
            .log
            .flush_messages
            .map_or_else(|| i64::MAX.to_string(), |v| v.to_string()),
        "flush.ms" => s
            .log
            .flush_ms
            .map_or_else(|| i64::MAX.to_string(), |v| v.to_string()),
        "index.interval.bytes" => s.log.index_interval_bytes.to_string(),
        "max.message.bytes" => s.log.max_message_bytes.to_string(),
        "message.timestamp.type" => match s.log.message_timestamp_type {
            TimestampType::CreateTime => "CreateTime".into(),
            TimestampType::LogAppendTime => "LogAppendTime".into(),
        },
        "min.insync.replicas" => s.min_insync_replicas.to_string(),
        "retention.bytes" => opt(s.log.retention_bytes),
        "retention.ms" => opt(s.log.retention_ms),
        "segment.bytes" => s.log.segment_bytes.to_string(),
        "segment.index.bytes" => s.log.segment_index_bytes.to_string(),
        "segment.ms" => s.log.segment_ms.to_string(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn over(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn overrides_map_onto_the_log_settings() {
        let s = settings(
            &LogConfig::default(),
            &over(&[
                ("retention.ms", "-1"),
                ("retention.bytes", "1048576"),
                ("segment.bytes", "4096"),
                ("message.timestamp.type", "LogAppendTime"),
                ("min.insync.replicas", "2"),
                ("cleanup.policy", "compact,delete"),
            ]),
        )
        .unwrap();
        assert_eq!(s.log.retention_ms, None);
        assert_eq!(s.log.retention_bytes, Some(1 << 20));
        assert_eq!(s.log.segment_bytes, 4096);
        assert_eq!(s.log.message_timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(s.min_insync_replicas, 2);
        assert_eq!(value_of(&s, "retention.ms").as_deref(), Some("-1"));
        assert_eq!(
            value_of(&s, "cleanup.policy").as_deref(),
            Some("compact,delete")
        );
    }

    #[test]
    fn bad_keys_and_values_are_refused_by_name() {
        for (k, v) in [
            ("retention.ms", "soon"),
            ("segment.bytes", "0"),
            ("segment.bytes", "10"),
            ("cleanup.policy", "forever"),
            ("min.insync.replicas", "0"),
            ("message.timestamp.type", "Now"),
            ("no.such.key", "1"),
        ] {
            let e = settings(&LogConfig::default(), &over(&[(k, v)])).unwrap_err();
            assert_eq!(e.key, k, "{k}={v}: {e}");
        }
    }

    #[test]
    fn every_listed_key_has_a_value() {
        let s = settings(&LogConfig::default(), &BTreeMap::new()).unwrap();
        for k in KEYS {
            assert!(value_of(&s, k).is_some(), "{k}");
        }
    }
}
