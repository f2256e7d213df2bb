//! Kafka's topic configs: every key Kafka 3.x/4.x accept ([`keys::TOPIC_KEYS`]),
//! parsed and checked as Kafka does, and what they amount to for the engine and the
//! produce path ([`TopicSettings`]).
//!
//! A topic stores only its overrides (key -> value, as the client sent them); the
//! effective settings are the broker defaults with the overrides applied. Every
//! value is parsed and checked here, so a bad value is refused with Kafka's message
//! (`Invalid value V for configuration K: ...`, `Unknown topic config name: K`)
//! before anything is stored. Keys without an effect yet are stored and described
//! like the rest; the table says which and why.

pub mod keys;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sluice_engine::{LogConfig, TimestampType};

use crate::compression::{Codec, Target};
use keys::{Check, Effect, Kind, TopicKey, TOPIC_KEYS};

/// A refused config: the key and Kafka's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a topic's configs amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSettings {
    /// The engine's settings (retention off unless `cleanup.policy` has `delete`).
    pub log: LogConfig,
    /// `min.insync.replicas`: acks=all is refused with `NOT_ENOUGH_REPLICAS` while
    /// fewer replicas are in sync.
    pub min_insync_replicas: i32,
    /// `cleanup.policy` has `compact`: every record must have a key.
    pub compact: bool,
    /// `compression.type` with its codec's level.
    pub compression: Target,
    /// CreateTime records more than this behind (before) or ahead of (after) the
    /// broker's clock are refused; `i64::MAX`: no check.
    pub timestamp_before_max_ms: i64,
    pub timestamp_after_max_ms: i64,
}

/// A value parsed as its key's kind.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Bool(bool),
    Integer(i64),
    Real(f64),
    Text(String),
    List(Vec<String>),
}

fn invalid(key: &TopicKey, raw: &str, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError {
        key: key.name.to_string(),
        message: format!(
            "Invalid value {} for configuration {}: {reason}",
            raw.trim(),
            key.name
        ),
    }
}

/// Parses a value as Kafka's `ConfigDef` does (trimmed; booleans in any case;
/// lists split at commas, an empty string being the empty list), then checks it.
fn parse(key: &TopicKey, raw: &str) -> Result<Value, ConfigError> {
    let text = raw.trim();
    let value = match key.kind {
        Kind::Boolean => match text.to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => {
                return Err(invalid(
                    key,
                    raw,
                    "Expected value to be either true or false",
                ))
            }
        },
        Kind::Int => Value::Integer(
            text.parse::<i32>()
                .map(i64::from)
                .map_err(|_| invalid(key, raw, "Not a number of type INT"))?,
        ),
        Kind::Long => Value::Integer(
            text.parse::<i64>()
                .map_err(|_| invalid(key, raw, "Not a number of type LONG"))?,
        ),
        Kind::Double => {
            // Java also takes a type suffix (`0.5d`).
            let number = text.trim_end_matches(['d', 'D', 'f', 'F']);
            match number.parse::<f64>() {
                Ok(v) if !v.is_nan() => Value::Real(v),
                _ => return Err(invalid(key, raw, "Not a number of type DOUBLE")),
            }
        }
        Kind::String => Value::Text(text.to_string()),
        Kind::List if text.is_empty() => Value::List(Vec::new()),
        Kind::List => Value::List(text.split(',').map(|s| s.trim().to_string()).collect()),
    };
    check(key, raw, &value)?;
    Ok(value)
}

fn check(key: &TopicKey, raw: &str, value: &Value) -> Result<(), ConfigError> {
    let fail = |reason: String| Err(invalid(key, raw, reason));
    match (key.check, value) {
        (Check::AtLeast(min), Value::Integer(v)) if *v < min => {
            fail(format!("Value must be at least {min}"))
        }
        (Check::Between(min, _), Value::Integer(v)) if *v < min => {
            fail(format!("Value must be at least {min}"))
        }
        (Check::Between(_, max), Value::Integer(v)) if *v > max => {
            fail(format!("Value must be no more than {max}"))
        }
        (Check::BetweenReal(min, _), Value::Real(v)) if *v < min => {
            fail(format!("Value must be at least {min}"))
        }
        (Check::BetweenReal(_, max), Value::Real(v)) if *v > max => {
            fail(format!("Value must be no more than {max}"))
        }
        (Check::GzipLevel, Value::Integer(v)) if !(*v == -1 || (1..=9).contains(v)) => {
            fail("Value must be between 1 and 9 or equal to -1".into())
        }
        (Check::OneOf(allowed), Value::Text(v)) if !allowed.contains(&v.as_str()) => {
            fail(format!("String must be one of: {}", allowed.join(", ")))
        }
        (Check::EachOneOf(allowed), Value::List(items)) => {
            match items.iter().find(|i| !allowed.contains(&i.as_str())) {
                Some(bad) => Err(ConfigError {
                    key: key.name.to_string(),
                    message: format!(
                        "Invalid value {bad} for configuration {}: String must be one of: {}",
                        key.name,
                        allowed.join(", ")
                    ),
                }),
                None => Ok(()),
            }
        }
        (Check::ThrottledReplicas, Value::List(items)) => {
            let pair = |i: &str| {
                i.is_empty()
                    || i.split_once(':').is_some_and(|(p, b)| {
                        [p, b]
                            .iter()
                            .all(|s| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
                    })
            };
            if items.iter().all(|i| pair(i)) || items.concat() == "*" {
                Ok(())
            } else {
                fail(format!(
                    "{} must be the literal '*' or a list of replicas in the following format: \
                     [partitionId]:[brokerId],[partitionId]:[brokerId],...",
                    key.name
                ))
            }
        }
        (Check::Version, Value::Text(v)) if !is_kafka_version(v) => {
            fail(format!("Version {v} is not a valid version"))
        }
        (Check::OnlyFalse, Value::Bool(true)) => Err(ConfigError {
            key: key.name.to_string(),
            message: "Tiered Storage functionality is disabled in the broker. Topic cannot be \
                      configured with remote log storage."
                .into(),
        }),
        _ => Ok(()),
    }
}

/// A Kafka release as `message.format.version` names one: `0.8.0` to `3.9`, with
/// an optional `-IVn` (`2.8`, `3.0-IV1`, `0.10.2`).
fn is_kafka_version(v: &str) -> bool {
    let (release, iv) = v.split_once("-IV").unwrap_or((v, "0"));
    if iv.is_empty() || !iv.bytes().all(|c| c.is_ascii_digit()) {
        return false;
    }
    let parts: Vec<&str> = release.split('.').collect();
    let numbers: Option<Vec<u32>> = parts.iter().map(|p| p.parse().ok()).collect();
    match numbers.as_deref() {
        Some([0, minor, patch]) => (8..=11).contains(minor) && *patch <= 2,
        Some([0, minor]) => (8..=11).contains(minor),
        Some([major @ 1..=3, minor] | [major @ 1..=3, minor, _]) => match major {
            1 => *minor <= 1,
            2 => *minor <= 8,
            _ => *minor <= 9,
        },
        _ => false,
    }
}

/// Every override parsed and checked: unknown names first, as Kafka does.
fn parse_all(
    overrides: &BTreeMap<String, String>,
) -> Result<BTreeMap<&'static str, Value>, ConfigError> {
    if let Some(unknown) = overrides.keys().find(|k| keys::find(k).is_none()) {
        return Err(ConfigError {
            key: unknown.clone(),
            message: format!("Unknown topic config name: {unknown}"),
        });
    }
    let mut out = BTreeMap::new();
    for key in TOPIC_KEYS {
        if let Some(raw) = overrides.get(key.name) {
            out.insert(key.name, parse(key, raw)?);
        }
    }
    Ok(out)
}

fn integer(values: &BTreeMap<&str, Value>, name: &str) -> Option<i64> {
    match values.get(name) {
        Some(Value::Integer(v)) => Some(*v),
        _ => None,
    }
}

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The effective settings of a topic: `defaults` with `overrides` applied, checked.
/// Broker configs that may change at run time (Kafka's dynamic broker configs,
/// AlterConfigs on a BROKER resource), each with the topic config it is the
/// default of.
pub const DYNAMIC_BROKER_KEYS: &[(&str, &str)] = &[
    ("log.retention.ms", "retention.ms"),
    ("log.retention.bytes", "retention.bytes"),
    ("log.segment.bytes", "segment.bytes"),
    ("log.roll.ms", "segment.ms"),
    ("message.max.bytes", "max.message.bytes"),
];

/// The topic defaults with dynamic broker configs applied, later layers winning
/// (the cluster-wide default, then the broker's own). A key that is not dynamic,
/// or a value the topic config would refuse, is an error naming the broker key.
pub fn dynamic_defaults(
    static_defaults: &LogConfig,
    layers: &[&BTreeMap<String, String>],
) -> Result<LogConfig, ConfigError> {
    let mut topic_keys = BTreeMap::new();
    for layer in layers {
        for (k, v) in *layer {
            let Some((_, t)) = DYNAMIC_BROKER_KEYS.iter().find(|(b, _)| b == k) else {
                return Err(ConfigError {
                    key: k.clone(),
                    message: format!(
                        "Cannot update the broker config {k} at run time: dynamic broker \
                         configs are {}; the others come from the config file",
                        DYNAMIC_BROKER_KEYS
                            .iter()
                            .map(|(b, _)| *b)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            };
            topic_keys.insert((*t).to_string(), v.clone());
        }
    }
    settings(static_defaults, &topic_keys)
        .map(|s| s.log)
        .map_err(|e| {
            let broker_key = DYNAMIC_BROKER_KEYS
                .iter()
                .find(|(_, t)| *t == e.key)
                .map_or(e.key.clone(), |(b, _)| (*b).to_string());
            ConfigError {
                message: e.message.replace(&e.key, &broker_key),
                key: broker_key,
            }
        })
}

pub fn settings(
    defaults: &LogConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<TopicSettings, ConfigError> {
    let values = parse_all(overrides)?;
    let int = |name: &str| integer(&values, name);
    let mut log = defaults.clone();
    if let Some(v) = int("flush.messages") {
        log.flush_messages = (v != i64::MAX).then(|| unsigned(v));
    }
    if let Some(v) = int("flush.ms") {
        log.flush_ms = (v != i64::MAX).then(|| unsigned(v));
    }
    if let Some(v) = int("index.interval.bytes") {
        log.index_interval_bytes = unsigned(v);
    }
    if let Some(v) = int("max.message.bytes") {
        log.max_message_bytes = unsigned(v);
    }
    if let Some(Value::Text(t)) = values.get("message.timestamp.type") {
        log.message_timestamp_type = if t == "LogAppendTime" {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        };
    }
    if let Some(v) = int("retention.bytes") {
        log.retention_bytes = u64::try_from(v).ok();
    }
    if let Some(v) = int("retention.ms") {
        log.retention_ms = u64::try_from(v).ok();
    }
    if let Some(v) = int("segment.bytes") {
        log.segment_bytes = unsigned(v);
    }
    if let Some(v) = int("segment.index.bytes") {
        log.segment_index_bytes = unsigned(v);
    }
    if let Some(v) = int("segment.ms") {
        log.segment_ms = unsigned(v);
    }
    let policy = match values.get("cleanup.policy") {
        Some(Value::List(items)) => items.clone(),
        _ => vec!["delete".to_string()],
    };
    // Retention deletes only under the `delete` policy, as in Kafka.
    if !policy.iter().any(|p| p == "delete") {
        log.retention_ms = None;
        log.retention_bytes = None;
    }
    let (min_lag, max_lag) = (
        int("min.compaction.lag.ms").unwrap_or(0),
        int("max.compaction.lag.ms").unwrap_or(i64::MAX),
    );
    if min_lag > max_lag {
        return Err(ConfigError {
            key: "min.compaction.lag.ms".into(),
            message: format!(
                "conflict topic config setting min.compaction.lag.ms ({min_lag}) > \
                 max.compaction.lag.ms ({max_lag})"
            ),
        });
    }
    log.validate().map_err(|e| match e {
        sluice_engine::Error::InvalidConfig { key, reason } => ConfigError {
            message: format!("Invalid value for configuration {key}: {reason}"),
            key,
        },
        other => ConfigError {
            key: "?".into(),
            message: other.to_string(),
        },
    })?;
    let difference = int("message.timestamp.difference.max.ms").unwrap_or(i64::MAX);
    let or_difference = |v: Option<i64>| match v {
        Some(v) if v != i64::MAX => v,
        _ => difference,
    };
    Ok(TopicSettings {
        log,
        min_insync_replicas: int("min.insync.replicas")
            .and_then(|v| i32::try_from(v).ok())
            .unwrap_or(1),
        compact: policy.iter().any(|p| p == "compact"),
        compression: compression(&values),
        timestamp_before_max_ms: or_difference(int("message.timestamp.before.max.ms")),
        timestamp_after_max_ms: or_difference(int("message.timestamp.after.max.ms")),
    })
}

/// [`settings`] for overrides stored by an earlier version, which may hold values
/// this one refuses (before the Kafka-exact checks, `index.interval.bytes` and
/// `segment.index.bytes` took any positive 64-bit number): each refused key is
/// dropped, so its default applies, and returned with why; the rest is kept. A
/// start never fails on a stored config.
pub fn settings_of_stored(
    defaults: &LogConfig,
    overrides: &BTreeMap<String, String>,
) -> (TopicSettings, BTreeMap<String, String>, Vec<ConfigError>) {
    let mut kept = overrides.clone();
    let mut dropped = Vec::new();
    loop {
        match settings(defaults, &kept) {
            Ok(s) => return (s, kept, dropped),
            Err(e) if kept.remove(&e.key).is_some() => dropped.push(e),
            Err(e) => {
                // Not one key's fault (the defaults themselves): keep none.
                dropped.push(e);
                kept.clear();
                if let Ok(s) = settings(defaults, &kept) {
                    return (s, kept, dropped);
                }
                let s = TopicSettings {
                    log: defaults.clone(),
                    min_insync_replicas: 1,
                    compact: false,
                    compression: Target::Producer,
                    timestamp_before_max_ms: i64::MAX,
                    timestamp_after_max_ms: i64::MAX,
                };
                return (s, kept, dropped);
            }
        }
    }
}

/// `compression.type` and the level configured for its codec.
fn compression(values: &BTreeMap<&str, Value>) -> Target {
    let level = |name: &str, default: i64| {
        i32::try_from(integer(values, name).unwrap_or(default)).unwrap_or(0)
    };
    match values.get("compression.type") {
        Some(Value::Text(t)) => match t.as_str() {
            "uncompressed" => Target::Codec(Codec::None, 0),
            "gzip" => Target::Codec(Codec::Gzip, level("compression.gzip.level", -1)),
            "snappy" => Target::Codec(Codec::Snappy, 0),
            "lz4" => Target::Codec(Codec::Lz4, level("compression.lz4.level", 9)),
            "zstd" => Target::Codec(Codec::Zstd, level("compression.zstd.level", 3)),
            _ => Target::Producer,
        },
        _ => Target::Producer,
    }
}

/// The value of `key` for a topic with these overrides, as Kafka shows it: the
/// override as given, else the default (the broker's, for keys it sets).
pub fn value_of(
    defaults: &LogConfig,
    overrides: &BTreeMap<String, String>,
    key: &str,
) -> Option<String> {
    if let Some(v) = overrides.get(key) {
        return Some(v.clone());
    }
    let limit = |v: Option<u64>| v.map_or_else(|| "-1".to_string(), |v| v.to_string());
    let or_max = |v: Option<u64>| v.map_or_else(|| i64::MAX.to_string(), |v| v.to_string());
    Some(match key {
        "flush.messages" => or_max(defaults.flush_messages),
        "flush.ms" => or_max(defaults.flush_ms),
        "index.interval.bytes" => defaults.index_interval_bytes.to_string(),
        "max.message.bytes" => defaults.max_message_bytes.to_string(),
        "message.timestamp.type" => match defaults.message_timestamp_type {
            TimestampType::CreateTime => "CreateTime".into(),
            TimestampType::LogAppendTime => "LogAppendTime".into(),
        },
        "retention.bytes" => limit(defaults.retention_bytes),
        "retention.ms" => limit(defaults.retention_ms),
        "segment.bytes" => defaults.segment_bytes.to_string(),
        "segment.index.bytes" => defaults.segment_index_bytes.to_string(),
        "segment.ms" => defaults.segment_ms.to_string(),
        other => keys::find(other)?.default.to_string(),
    })
}

/// Every topic config with its value and whether the topic overrides it, in
/// DescribeConfigs' order.
pub fn describe(
    defaults: &LogConfig,
    overrides: &BTreeMap<String, String>,
) -> Vec<(&'static TopicKey, String, bool)> {
    TOPIC_KEYS
        .iter()
        .filter_map(|k| {
            let value = value_of(defaults, overrides, k.name)?;
            Some((k, value, overrides.contains_key(k.name)))
        })
        .collect()
}

/// Whether `key` is a list (IncrementalAlterConfigs APPEND and SUBTRACT apply).
pub fn is_list(key: &str) -> bool {
    keys::find(key).is_some_and(|k| k.kind == Kind::List)
}

/// The topic configs section of the configuration reference (Markdown).
pub fn reference() -> String {
    let mut out = String::from(
        "\n## Topic configs\n\nSet per topic with CreateTopics, AlterConfigs or \
         IncrementalAlterConfigs (`sluice topic create|alter --config key=value`, \
         kcat, any admin client). Every topic config Kafka 3.x and 4.x accept is \
         accepted, with Kafka's parsing, checks and messages (INVALID_CONFIG); a name \
         Kafka does not know is refused (`Unknown topic config name`). Keys marked \
         *stored* are kept and described but have no effect yet.\n\n\
         | Key | Type | Default | Accepts | Here |\n|---|---|---|---|---|\n",
    );
    for k in TOPIC_KEYS {
        let accepts = match k.check {
            Check::Any => "any".to_string(),
            Check::AtLeast(n) => format!("at least {n}"),
            Check::Between(a, b) => format!("{a} to {b}"),
            Check::BetweenReal(a, b) => format!("{a} to {b}"),
            Check::OneOf(v) | Check::EachOneOf(v) => v.join(", "),
            Check::GzipLevel => "1 to 9, or -1".to_string(),
            Check::ThrottledReplicas => "`*` or `partition:broker,...`".to_string(),
            Check::Version => "a Kafka version (`2.8`, `3.0-IV1`)".to_string(),
            Check::OnlyFalse => "false".to_string(),
        };
        let effect = match k.effect {
            Effect::Applied => format!("applied: {}", k.doc),
            Effect::Stored(why) => format!("*stored* ({why}): {}", k.doc),
        };
        let default = if k.default.is_empty() {
            "(empty)".to_string()
        } else {
            format!("`{}`", k.default)
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {default} | {accepts} | {} |",
            k.name,
            k.kind.name(),
            effect.replace('|', "\\|")
        );
    }
    out.push_str(
        "\nDefaults shown are Kafka's; `retention.ms`, `retention.bytes`, `segment.bytes`, \
         `segment.ms` and `max.message.bytes` default to the broker's `[log]` settings.\n",
    );
    out
}

#[cfg(test)]
mod tests;
