//! `sluice serve`'s configuration: one TOML file, every key optional, defaults for a
//! single-node development broker. Unknown keys and values of the wrong type are
//! refused by the parser with the key's name; values out of range are refused by
//! [`Config::check`] with the key's name.

use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sluice_engine::{EngineConfig, LogConfig};
use sluice_net::BrokerSettings;

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// The admin HTTP endpoint (health checks, node information).
    pub admin: AdminSection,
    /// Several nodes as one cluster (unset `voters`: a single node).
    pub cluster: ClusterSection,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// Kafka's `controller.quorum.voters`: `ID@HOST:PORT,...`; unset: one node.
    pub voters: Option<String>,
    /// Where this node answers its peers; default: its own entry in `voters`.
    pub listen: Option<String>,
    /// Kafka's `broker.rack`.
    pub rack: Option<String>,
    /// A broker not heard from for this long is fenced, in milliseconds.
    pub session_timeout_ms: u64,
    /// Kafka's `replica.lag.time.max.ms`.
    pub replica_lag_time_max_ms: u64,
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            voters: None,
            listen: None,
            rack: None,
            session_timeout_ms: 9000,
            replica_lag_time_max_ms: 30_000,
        }
    }
}

/// How long a metadata change may wait for the quorum before the client is told
/// to retry (REQUEST_TIMED_OUT).
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// `cluster.voters`: `ID@HOST:PORT` entries separated by commas.
fn parse_voters(text: &str) -> Result<std::collections::BTreeMap<u64, String>, ConfigError> {
    let key = "cluster.voters";
    let mut out = std::collections::BTreeMap::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, addr) = entry
            .split_once('@')
            .ok_or_else(|| bad(key, format!("`{entry}`: use ID@HOST:PORT")))?;
        let id: u64 = id
            .parse()
            .ok()
            .filter(|id| i32::try_from(*id).is_ok())
            .ok_or_else(|| bad(key, format!("`{entry}`: `{id}` is not a node id")))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| bad(key, format!("`{entry}`: `{addr}` has no :PORT")))?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad(key, format!("`{entry}`: `{addr}` is not HOST:PORT")));
        }
        if out.insert(id, addr.to_string()).is_some() {
            return Err(bad(key, format!("node {id} is listed twice")));
        }
    }
    if out.is_empty() {
        return Err(bad(
            key,
            "lists no voter (leave it unset for a single node)",
        ));
    }
    Ok(out)
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Address of the admin HTTP endpoint (`host:port`).
    pub listen: String,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: "127.0.0.1:9644".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
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

#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// How long a stop (SIGTERM) may take, in milliseconds: connections get half
    /// of it to finish what they read, then the logs are flushed.
    pub shutdown_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// Shards (one pinned thread per core); default: one per CPU this process may use.
    pub shards: Option<usize>,
    /// Recent batches each shard keeps in memory for consumers, in MiB.
    pub cache_mib_per_shard: usize,
    /// How often acks=1 data still in memory is written to the file, in milliseconds.
    pub writeback_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
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
            admin: AdminSection::default(),
            cluster: ClusterSection::default(),
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
            shutdown_timeout_ms: u64::try_from(b.drain_timeout.as_millis() * 2).unwrap_or(30_000),
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
    /// The admin HTTP endpoint.
    pub admin: SocketAddr,
    pub broker: BrokerSettings,
}

/// Every key of the file: (section, key, what it means). The reference for
/// `sluice config defaults`, the `SLUICE_*` environment variables and `--set`.
pub const KEYS: &[(&str, &str, &str)] = &[
    (
        "",
        "data_dir",
        "where partitions, the metadata store (metadata/) and __consumer_offsets live",
    ),
    ("", "node_id", "Kafka's node.id"),
    (
        "kafka",
        "listen",
        "address the Kafka listener binds (host:port)",
    ),
    (
        "kafka",
        "advertised_host",
        "host clients are told to connect to (default: the listen host)",
    ),
    (
        "kafka",
        "advertised_port",
        "port clients are told to connect to (default: the listen port)",
    ),
    ("kafka", "auto_create_topics", "auto.create.topics.enable"),
    (
        "kafka",
        "num_partitions",
        "num.partitions of auto-created topics (1 to 100000)",
    ),
    (
        "kafka",
        "request_max_bytes",
        "socket.request.max.bytes (1 KiB to 1 GiB)",
    ),
    (
        "kafka",
        "fetch_wait_max_ms",
        "longest a Fetch may long-poll, in milliseconds",
    ),
    (
        "kafka",
        "shutdown_timeout_ms",
        "how long a stop (SIGTERM) may take, ms (1000 to 3600000): connections get half to finish what they read, then logs are flushed; past it the process exits with status 1",
    ),
    (
        "storage",
        "shards",
        "shards, one pinned thread per core (default: one per CPU this process may use)",
    ),
    (
        "storage",
        "cache_mib_per_shard",
        "recent batches each shard keeps in memory for consumers, MiB (taken at start)",
    ),
    (
        "storage",
        "writeback_interval_ms",
        "how often acks=1 data still in memory is written, ms",
    ),
    (
        "log",
        "retention_ms",
        "log.retention.ms; -1 keeps data forever",
    ),
    (
        "log",
        "retention_bytes",
        "log.retention.bytes; -1 for no size limit",
    ),
    ("log", "segment_bytes", "log.segment.bytes"),
    ("log", "segment_ms", "log.roll.ms"),
    ("log", "max_message_bytes", "message.max.bytes"),
    (
        "group",
        "initial_rebalance_delay_ms",
        "group.initial.rebalance.delay.ms (at most 300000)",
    ),
    (
        "group",
        "min_session_timeout_ms",
        "group.min.session.timeout.ms",
    ),
    (
        "group",
        "max_session_timeout_ms",
        "group.max.session.timeout.ms",
    ),
    ("group", "max_size", "group.max.size (default: no limit)"),
    (
        "group",
        "offsets_topic_partitions",
        "offsets.topic.num.partitions, when __consumer_offsets is created (1 to 1000)",
    ),
    (
        "group",
        "offsets_retention_minutes",
        "offsets.retention.minutes",
    ),
    (
        "group",
        "offsets_retention_check_interval_ms",
        "offsets.retention.check.interval.ms",
    ),
    (
        "group",
        "offset_metadata_max_bytes",
        "offset.metadata.max.bytes (at most 32767: the record stores it with an i16 length)",
    ),
    (
        "admin",
        "listen",
        "address of the admin HTTP endpoint: /metrics, /v1/health/live, /v1/health/ready, /v1/node, /v1/partitions",
    ),
    (
        "cluster",
        "voters",
        "controller.quorum.voters: the metadata quorum as ID@HOST:PORT,...; a node not among them joins as a broker (Raft learner) and needs cluster.listen; unset: a single node",
    ),
    (
        "cluster",
        "listen",
        "HOST:PORT this node answers its peers on, and where they reach it (default: its own entry in cluster.voters; required on a node that is not a voter)",
    ),
    ("cluster", "rack", "broker.rack: replicas of a partition go to different racks"),
    (
        "cluster",
        "session_timeout_ms",
        "a broker not heard from for this long is fenced, ms (1000 to 600000)",
    ),
    (
        "cluster",
        "replica_lag_time_max_ms",
        "replica.lag.time.max.ms: a follower not caught up for this long leaves the ISR, ms (100 to 3600000)",
    ),
];

/// Checks that the data directory can be used without changing anything in it:
/// an existing one must be a directory this process can create files in; a
/// missing one must have an existing ancestor directory it can create it under.
pub fn check_data_dir(dir: &Path) -> Result<(), ConfigError> {
    let mut probe_in = dir.to_path_buf();
    loop {
        match std::fs::metadata(&probe_in) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(bad(
                    "data_dir",
                    format!(
                        "{}: {} is not a directory",
                        dir.display(),
                        probe_in.display()
                    ),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(parent) = probe_in.parent().filter(|p| !p.as_os_str().is_empty()) else {
                    probe_in = PathBuf::from(".");
                    break;
                };
                probe_in = parent.to_path_buf();
            }
            Err(e) if probe_in == dir => {
                return Err(bad("data_dir", format!("{}: {e}", dir.display())));
            }
            Err(e) => {
                return Err(bad(
                    "data_dir",
                    format!("{}: {}: {e}", dir.display(), probe_in.display()),
                ))
            }
        }
    }
    // A file of our own, created and removed: nothing that was there is touched.
    let probe = probe_in.join(format!(".sluice-write-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(bad(
            "data_dir",
            format!(
                "{}: cannot write in {}: {e}",
                dir.display(),
                probe_in.display()
            ),
        )),
    }
}

/// `section.key` (or `key` at the top).
fn dotted(section: &str, key: &str) -> String {
    if section.is_empty() {
        key.to_string()
    } else {
        format!("{section}.{key}")
    }
}

/// The environment variable that overrides a key: `SLUICE_KAFKA_LISTEN`.
pub fn env_name(section: &str, key: &str) -> String {
    format!(
        "SLUICE_{}",
        dotted(section, key).replace('.', "_").to_ascii_uppercase()
    )
}

/// A value given outside the file: TOML if it parses as a TOML value (`5`, `true`,
/// `"x"`), else the text as a string.
fn override_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

impl Config {
    /// The configuration from a file (or the defaults), then the `SLUICE_*`
    /// variables among `env`, then `--set section.key=value` pairs, later ones
    /// winning. Unknown keys and wrong types are refused naming the key and where it
    /// came from.
    pub fn assemble(
        file: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
        sets: &[String],
    ) -> Result<Config, ConfigError> {
        let (text, source) = match file {
            Some(p) => (
                std::fs::read_to_string(p)
                    .map_err(|e| ConfigError(format!("cannot read {}: {e}", p.display())))?,
                p.display().to_string(),
            ),
            None => (String::new(), "defaults".to_string()),
        };
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| ConfigError(format!("{source}: {e}")))?;
        // Check the file alone first, so its errors point into it.
        toml::from_str::<Config>(&text).map_err(|e| ConfigError(format!("{source}: {e}")))?;
        let mut overrides = Vec::new();
        for (name, raw) in env {
            if let Some((sec, key, _)) = KEYS.iter().find(|(s, k, _)| env_name(s, k) == name) {
                overrides.push((format!("environment {name}"), *sec, *key, raw));
            }
        }
        for set in sets {
            let (path, raw) = set
                .split_once('=')
                .ok_or_else(|| ConfigError(format!("--set {set}: use section.key=value")))?;
            let (sec, key) = path.rsplit_once('.').unwrap_or(("", path));
            let Some((sec, key, _)) = KEYS.iter().find(|(s, k, _)| *s == sec && *k == key) else {
                return Err(ConfigError(format!(
                    "--set {set}: unknown config key `{path}`"
                )));
            };
            overrides.push((format!("--set {path}"), *sec, *key, raw.to_string()));
        }
        for (from, sec, key, raw) in overrides {
            let value = override_value(&raw);
            let slot = if sec.is_empty() {
                &mut table
            } else {
                let entry = table
                    .entry(sec.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                entry.as_table_mut().ok_or_else(|| {
                    ConfigError(format!("invalid config `{sec}`: must be a table"))
                })?
            };
            slot.insert(key.to_string(), value);
            // Each override is checked as it lands, so the error says which one.
            toml::Value::Table(table.clone())
                .try_into::<Config>()
                .map_err(|e| bad(&dotted(sec, key), format!("from {from}: {}", e.message())))?;
        }
        toml::Value::Table(table)
            .try_into::<Config>()
            .map_err(|e| ConfigError(format!("{source}: {e}")))
    }

    /// A complete configuration file with every key at its default, each with a
    /// comment saying what it means (`sluice config defaults`).
    pub fn defaults_file() -> String {
        let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();
        let mut out = String::from(
            "# sluice serve configuration: every key with its default.\n\
             # Each key can also be set with an environment variable SLUICE_<SECTION>_<KEY>\n\
             # (for example SLUICE_KAFKA_LISTEN) or `sluice serve --set section.key=value`.\n",
        );
        let mut section = None;
        for (sec, key, doc) in KEYS {
            if section != Some(*sec) {
                section = Some(*sec);
                if !sec.is_empty() {
                    let _ = write!(out, "\n[{sec}]\n");
                }
            }
            let value = if sec.is_empty() {
                defaults.get(*key)
            } else {
                defaults.get(*sec).and_then(|t| t.get(*key))
            };
            let _ = writeln!(out, "# {doc}");
            let _ = match value {
                Some(v) => writeln!(out, "{key} = {v}"),
                None => writeln!(out, "# {key} ="),
            };
        }
        out
    }

    /// The configuration reference (Markdown): every key with its type, default,
    /// environment variable and meaning. `ops/CONFIGURATION.md` is this text; a test
    /// keeps the two the same.
    pub fn reference() -> String {
        let defaults = toml::Table::try_from(Config::default()).unwrap_or_default();
        let full = toml::Table::try_from(Config::with_every_option()).unwrap_or_default();
        let get = |t: &toml::Table, sec: &str, key: &str| -> Option<toml::Value> {
            if sec.is_empty() {
                t.get(key).cloned()
            } else {
                t.get(sec).and_then(|s| s.get(key)).cloned()
            }
        };
        let mut out = String::from(
            "# Sluice configuration reference\n\n\
             Generated from `KEYS` in `ops/src/config.rs` (`sluice config reference` prints \
             it; a test fails when this file and the code differ).\n\n\
             `sluice serve` needs no configuration. Values come from, later winning: the \
             TOML file (`--config FILE`), environment variables `SLUICE_<SECTION>_<KEY>`, \
             `--set section.key=value`, then `--data-dir` and `--listen`. Unknown keys, \
             wrong types and values out of range are refused at start, naming the key \
             (`sluice config check FILE` checks without starting; exit status 2). \
             `sluice config defaults` prints a complete file with every default.\n",
        );
        let mut section = None;
        for (sec, key, doc) in KEYS {
            if section != Some(*sec) {
                section = Some(*sec);
                let title = if sec.is_empty() {
                    "Top level".to_string()
                } else {
                    format!("`[{sec}]`")
                };
                let _ = write!(
                    out,
                    "\n## {title}\n\n| Key | Type | Default | Environment | Meaning |\n|---|---|---|---|---|\n"
                );
            }
            let ty = match get(&full, sec, key) {
                Some(toml::Value::Integer(_)) => "integer",
                Some(toml::Value::Boolean(_)) => "boolean",
                Some(toml::Value::Float(_)) => "float",
                _ => "string",
            };
            let default = get(&defaults, sec, key)
                .map_or_else(|| "(unset)".to_string(), |v| format!("`{v}`"));
            let _ = writeln!(
                out,
                "| `{}` | {ty} | {default} | `{}` | {} |",
                dotted(sec, key),
                env_name(sec, key),
                doc.replace('|', "\\|")
            );
        }
        out.push_str(&sluice_net::topic_config::reference());
        out
    }

    /// The defaults with every optional key set (to see every key's type).
    fn with_every_option() -> Config {
        let mut full = Config::default();
        full.kafka.advertised_host = Some("h".into());
        full.kafka.advertised_port = Some(1);
        full.storage.shards = Some(1);
        full.group.max_size = Some(1);
        full.cluster.voters = Some("1@h:9095".into());
        full.cluster.listen = Some("h:9095".into());
        full.cluster.rack = Some("r".into());
        full
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
        if !(1000..=3_600_000).contains(&self.kafka.shutdown_timeout_ms) {
            return Err(bad("kafka.shutdown_timeout_ms", "must be 1000 to 3600000"));
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
            drain_timeout: Duration::from_millis(self.kafka.shutdown_timeout_ms / 2),
            groups: self.group.check()?,
            cluster: self.cluster.check(self.node_id)?,
        };
        let admin = self
            .admin
            .listen
            .to_socket_addrs()
            .map_err(|e| bad("admin.listen", format!("`{}`: {e}", self.admin.listen)))?
            .next()
            .ok_or_else(|| bad("admin.listen", "resolves to no address"))?;
        Ok(Resolved {
            engine,
            listen,
            admin,
            broker,
        })
    }
}

impl ClusterSection {
    fn check(&self, node_id: i32) -> Result<Option<sluice_net::ClusterSettings>, ConfigError> {
        if !(1000..=600_000).contains(&self.session_timeout_ms) {
            return Err(bad("cluster.session_timeout_ms", "must be 1000 to 600000"));
        }
        if !(100..=3_600_000).contains(&self.replica_lag_time_max_ms) {
            return Err(bad(
                "cluster.replica_lag_time_max_ms",
                "must be 100 to 3600000 (an hour)",
            ));
        }
        if self.rack.as_deref().is_some_and(str::is_empty) {
            return Err(bad("cluster.rack", "must not be empty (leave it unset)"));
        }
        let Some(voters) = &self.voters else {
            if self.listen.is_some() {
                return Err(bad(
                    "cluster.listen",
                    "is only used with cluster.voters (a single node has no peers)",
                ));
            }
            return Ok(None);
        };
        let voters = parse_voters(voters)?;
        let me = u64::try_from(node_id).unwrap_or(u64::MAX);
        // A node that is not a voter joins as a broker (a Raft learner); its peers
        // reach it at cluster.listen, which it must then name.
        let listen = match (voters.get(&me), &self.listen) {
            (_, Some(l)) => l.clone(),
            (Some(own), None) => own.clone(),
            (None, None) => {
                return Err(bad(
                    "cluster.listen",
                    format!(
                        "must be set (HOST:PORT its peers reach it at) on node {node_id}, \
                         which is not among cluster.voters ({}) and joins as a broker",
                        voters
                            .keys()
                            .map(u64::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
        };
        listen
            .to_socket_addrs()
            .map_err(|e| bad("cluster.listen", format!("`{listen}`: {e}")))?
            .next()
            .ok_or_else(|| {
                bad(
                    "cluster.listen",
                    format!("`{listen}` resolves to no address"),
                )
            })?;
        Ok(Some(sluice_net::ClusterSettings {
            quorum: sluice_raft::QuorumSettings {
                node_id: me,
                voters,
                listen,
                // Set by the broker to <data_dir>/metadata.
                dir: PathBuf::new(),
                config: quorum_config(),
                propose_timeout: PROPOSE_TIMEOUT,
                session_timeout: Duration::from_millis(self.session_timeout_ms),
            },
            rack: self.rack.clone(),
            session_timeout: Duration::from_millis(self.session_timeout_ms),
            replica_lag_time_max: Duration::from_millis(self.replica_lag_time_max_ms),
        }))
    }
}

/// The quorum's timers and snapshot policy. Test hook:
/// `SLUICE_TEST_SNAPSHOT_EVERY=N` snapshots every N entries (to see a wiped node
/// catch up by snapshot). Not for production use.
fn quorum_config() -> sluice_raft::quorum::node::RaftConfig {
    let mut c = sluice_raft::quorum::node::default_config();
    if let Some(n) = std::env::var("SLUICE_TEST_SNAPSHOT_EVERY")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        c.snapshot_policy = sluice_raft::quorum::node::snapshot_every(n);
        // And the log behind a snapshot purged at once.
        c.max_in_snapshot_log_to_keep = 0;
    }
    c
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
        // The __consumer_offsets record stores metadata with an i16 length.
        if !(1..=32_767).contains(&self.offset_metadata_max_bytes) {
            return Err(bad("group.offset_metadata_max_bytes", "must be 1 to 32767"));
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
            ..sluice_net::group::coordinator::GroupSettings::default()
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
    fn the_defaults_file_names_every_key_and_reads_back_as_the_defaults() {
        let text = Config::defaults_file();
        let back: Config = toml::from_str(&text).expect("the defaults file parses");
        assert_eq!(
            toml::Table::try_from(&back).unwrap(),
            toml::Table::try_from(Config::default()).unwrap()
        );
        // Every field of the config, optional ones set, is in KEYS and in the file.
        let table = toml::Table::try_from(Config::with_every_option()).unwrap();
        let mut fields = Vec::new();
        for (k, v) in &table {
            match v.as_table() {
                Some(t) => fields.extend(t.keys().map(|x| format!("{k}.{x}"))),
                None => fields.push(k.clone()),
            }
        }
        let mut keys: Vec<String> = KEYS.iter().map(|(s, k, _)| dotted(s, k)).collect();
        fields.sort();
        keys.sort();
        assert_eq!(fields, keys);
        for (_, k, _) in KEYS {
            assert!(
                text.contains(&format!("{k} =")),
                "{k} missing from the defaults file"
            );
        }
    }

    #[test]
    fn reference_page_is_current() {
        let page = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("CONFIGURATION.md");
        let text = Config::reference();
        if std::env::var_os("SLUICE_WRITE_REFERENCE").is_some() {
            std::fs::write(&page, &text).unwrap();
        }
        let on_disk = std::fs::read_to_string(&page).unwrap_or_default();
        assert!(
            on_disk == text,
            "ops/CONFIGURATION.md differs from `sluice config reference`; regenerate it with \
             SLUICE_WRITE_REFERENCE=1 cargo test -p sluice --bin sluice reference_page_is_current"
        );
        for (sec, key, _) in KEYS {
            assert!(text.contains(&format!("| `{}` |", dotted(sec, key))));
        }
        assert!(text.contains("| `kafka.num_partitions` | integer | `1` |"));
        assert!(text.contains("| `kafka.auto_create_topics` | boolean | `true` |"));
        assert!(text.contains("| `storage.shards` | integer | (unset) |"));
    }

    #[test]
    fn environment_and_set_override_the_file_in_order() {
        let env = vec![
            ("SLUICE_KAFKA_NUM_PARTITIONS".to_string(), "3".to_string()),
            ("SLUICE_DATA_DIR".to_string(), "/tmp/x".to_string()),
            ("SLUICE_UNRELATED".to_string(), "ignored".to_string()),
        ];
        let c = Config::assemble(
            None,
            env.clone().into_iter(),
            &["kafka.num_partitions=4".into()],
        )
        .unwrap();
        assert_eq!(c.kafka.num_partitions, 4, "--set wins over the environment");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        let c = Config::assemble(None, env.into_iter(), &[]).unwrap();
        assert_eq!(c.kafka.num_partitions, 3);
        let e = Config::assemble(
            None,
            vec![("SLUICE_GROUP_MAX_SIZE".to_string(), "many".to_string())].into_iter(),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("group.max_size") && e.contains("SLUICE_GROUP_MAX_SIZE"),
            "{e}"
        );
        let e = Config::assemble(None, std::iter::empty(), &["nope=1".into()]).unwrap_err();
        assert!(e.to_string().contains("`nope`"), "{e}");
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
                "[group]\noffset_metadata_max_bytes = 40000",
                "group.offset_metadata_max_bytes",
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
