//! `/metrics`: one job per shard copies its counters, partitions and committed
//! offsets ([`sluice_net::stats`]); this module merges the copies on the admin
//! thread and encodes them with prometheus-client, as OpenMetrics when the scraper
//! asks for it, else in the classic Prometheus text format.
//!
//! A shard that does not answer within the scrape's timeout is reported with
//! `sluice_shard_up 0` and its series are left out; the scrape does not wait longer.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;
use kafka_protocol::ResponseError;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelValue, LabelValueEncoder, MetricEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use sluice_engine::metrics::Histogram;
use sluice_engine::ShardRouter;
use sluice_net::stats::ShardReport;

/// How long a scrape waits for the shards.
pub const SHARD_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs `f` on this (non-shard) thread until it finishes or `timeout` passes.
pub fn block_on_timeout<F: Future>(f: F, timeout: Duration) -> Option<F::Output> {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let deadline = Instant::now() + timeout;
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return Some(v);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        std::thread::park_timeout(left);
    }
}

/// Runs `job` on every shard side by side, from this (non-shard) thread: each
/// shard's answer, `None` for a shard that did not answer within `timeout` (or is
/// shutting down).
pub fn on_every_shard<T, F, Fut>(router: &ShardRouter, timeout: Duration, job: F) -> Vec<Option<T>>
where
    F: FnOnce(std::rc::Rc<sluice_engine::Shard>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let mut pending: Vec<_> = (0..router.shard_count())
        .map(|s| {
            let (router, job) = (router.clone(), job.clone());
            Box::pin(async move { router.call(s, job).await.ok() })
        })
        .collect();
    let mut out: Vec<Option<T>> = pending.iter().map(|_| None).collect();
    // A finished call is never polled again (an async block panics if it is).
    let mut finished = vec![false; pending.len()];
    let all = std::future::poll_fn(|cx| {
        for (i, f) in pending.iter_mut().enumerate() {
            if !finished[i] {
                if let Poll::Ready(r) = f.as_mut().poll(cx) {
                    out[i] = r;
                    finished[i] = true;
                }
            }
        }
        if finished.iter().all(|d| *d) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    });
    let _ = block_on_timeout(all, timeout);
    out
}

/// Every shard's report, `None` for a shard that did not answer in time.
pub fn collect(router: &ShardRouter, timeout: Duration) -> Vec<Option<ShardReport>> {
    on_every_shard(router, timeout, |shard| async move {
        sluice_net::stats::shard_report(&shard).await
    })
}

/// Facts about the process and its disk, read at the scrape.
pub struct Process {
    pub start_time_seconds: f64,
    pub data_dir: std::path::PathBuf,
    /// The metadata quorum as this node sees it (`None`: a single node).
    pub quorum: Option<sluice_raft::QuorumStatus>,
    /// The metadata version this node applied, and its brokers (alive, fenced).
    pub metadata: Option<(u64, usize, usize)>,
    /// Partitions of the cluster without a leader, as this node's image has them.
    pub offline_partitions: Option<usize>,
}

/// A label value, escaped as the exposition formats require (group ids may hold
/// any character).
#[derive(Debug, Clone)]
struct Esc(Arc<str>);

impl EncodeLabelValue for Esc {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

type Labels = Vec<(&'static str, Esc)>;

/// Reads one per-shard value.
type Get = fn(&sluice_engine::metrics::ShardMetrics) -> f64;

#[derive(Debug)]
enum Value {
    Counter(f64),
    Gauge(f64),
    Histogram(Histogram),
}

#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Labels, Value)>,
}

#[derive(Debug, Default)]
struct Families(Vec<Family>);

impl Families {
    fn add(&mut self, name: &'static str, help: &'static str, kind: MetricType) -> &mut Family {
        self.0.push(Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        });
        let last = self.0.len() - 1;
        &mut self.0[last]
    }
}

impl Family {
    fn push(&mut self, labels: Labels, value: Value) -> &mut Self {
        self.samples.push((labels, value));
        self
    }
}

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            let mut m = encoder.encode_descriptor(f.name, f.help, None, f.kind)?;
            for (labels, value) in &f.samples {
                if labels.is_empty() {
                    encode_value(&mut m, value)?;
                } else {
                    encode_value(&mut m.encode_family(labels)?, value)?;
                }
            }
        }
        Ok(())
    }
}

fn encode_value(e: &mut MetricEncoder, value: &Value) -> Result<(), std::fmt::Error> {
    use prometheus_client::encoding::NoLabelSet;
    match value {
        Value::Counter(v) => e.encode_counter::<NoLabelSet, _, f64>(v, None),
        Value::Gauge(v) => e.encode_gauge(v),
        Value::Histogram(h) => {
            e.encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &h.per_bucket(), None)
        }
    }
}

fn l(pairs: &[(&'static str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (*k, Esc(Arc::from(*v))))
        .collect()
}

fn api_name(key: i16) -> String {
    ApiKey::try_from(key).map_or_else(|()| "Unknown".to_string(), |k| format!("{k:?}"))
}

fn version_label(v: i16) -> String {
    if v == sluice_engine::metrics::UNSERVED {
        "unsupported".into()
    } else {
        v.to_string()
    }
}

fn error_name(code: i16) -> String {
    if code == sluice_engine::metrics::NOT_ANSWERED {
        return "ConnectionClosed".into();
    }
    ResponseError::try_from_code(code).map_or_else(|| format!("Code{code}"), |e| format!("{e:?}"))
}

#[allow(clippy::cast_precision_loss)]
fn f(v: u64) -> f64 {
    v as f64
}

/// Merges the shards' reports into metric families.
#[allow(clippy::too_many_lines)]
fn families(reports: &[Option<ShardReport>], process: &Process) -> Families {
    let mut fam = Families::default();
    let answered: Vec<&ShardReport> = reports.iter().flatten().collect();

    let mut requests: BTreeMap<(i16, i16), u64> = BTreeMap::new();
    let mut errors: BTreeMap<(i16, i16, i16), u64> = BTreeMap::new();
    let mut latency: BTreeMap<i16, Histogram> = BTreeMap::new();
    let mut topics: BTreeMap<&str, sluice_engine::metrics::TopicTraffic> = BTreeMap::new();
    for r in &answered {
        let m = &r.metrics;
        for (k, n) in &m.requests {
            *requests.entry(*k).or_default() += n;
        }
        for (k, n) in &m.errors {
            *errors.entry(*k).or_default() += n;
        }
        for (k, h) in &m.latency {
            latency.entry(*k).or_default().merge(h);
        }
        for (t, c) in &m.topics {
            let e = topics.entry(t.as_str()).or_default();
            e.bytes_in += c.bytes_in;
            e.records_in += c.records_in;
            e.bytes_out += c.bytes_out;
        }
    }

    let fm = fam.add(
        "sluice_requests",
        "Kafka requests read, by API and version.",
        MetricType::Counter,
    );
    for ((api, v), n) in &requests {
        fm.push(
            l(&[("api", &api_name(*api)), ("version", &version_label(*v))]),
            Value::Counter(f(*n)),
        );
    }
    let fm = fam.add(
        "sluice_request_errors",
        "Error codes answered, by API, version and error (ConnectionClosed: the request was refused by closing the connection).",
        MetricType::Counter,
    );
    for ((api, v, code), n) in &errors {
        fm.push(
            l(&[
                ("api", &api_name(*api)),
                ("version", &version_label(*v)),
                ("error", &error_name(*code)),
            ]),
            Value::Counter(f(*n)),
        );
    }
    let fm = fam.add(
        "sluice_request_duration_seconds",
        "Time from reading a request to its answer being ready, by API.",
        MetricType::Histogram,
    );
    for (api, h) in latency {
        fm.push(l(&[("api", &api_name(api))]), Value::Histogram(h));
    }
    let topic_labels: Vec<Labels> = topics.keys().map(|t| l(&[("topic", t)])).collect();
    for (name, help, get) in [
        (
            "sluice_topic_bytes_in",
            "Record batch bytes appended by Produce, by topic.",
            (|c| c.bytes_in) as fn(&sluice_engine::metrics::TopicTraffic) -> u64,
        ),
        (
            "sluice_topic_records_in",
            "Records appended by Produce, by topic.",
            |c| c.records_in,
        ),
        (
            "sluice_topic_bytes_out",
            "Record batch bytes sent in Fetch answers, by topic.",
            |c| c.bytes_out,
        ),
    ] {
        let fm = fam.add(name, help, MetricType::Counter);
        for (labels, c) in topic_labels.iter().zip(topics.values()) {
            fm.push(labels.clone(), Value::Counter(f(get(c))));
        }
    }

    // Partitions.
    let mut parts: Vec<&sluice_net::stats::PartitionStats> =
        answered.iter().flat_map(|r| r.partitions.iter()).collect();
    parts.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let part_labels: Vec<Labels> = parts
        .iter()
        .map(|p| l(&[("topic", &p.topic), ("partition", &p.partition.to_string())]))
        .collect();
    for (name, help, get) in [
        (
            "sluice_partition_log_start_offset",
            "First offset still in the partition's log.",
            (|p| p.log_start_offset) as fn(&sluice_net::stats::PartitionStats) -> u64,
        ),
        (
            "sluice_partition_high_watermark",
            "Offset up to which records are readable by consumers.",
            |p| p.high_watermark,
        ),
        (
            "sluice_partition_log_end_offset",
            "Offset the next appended record gets.",
            |p| p.log_end_offset,
        ),
        (
            "sluice_partition_size_bytes",
            "Bytes of the partition's log segments.",
            |p| p.size_bytes,
        ),
        (
            "sluice_partition_segments",
            "Log segments of the partition.",
            |p| p.segments as u64,
        ),
    ] {
        let fm = fam.add(name, help, MetricType::Gauge);
        for (labels, p) in part_labels.iter().zip(&parts) {
            fm.push(labels.clone(), Value::Gauge(f(get(p))));
        }
    }
    let fm = fam.add(
        "sluice_partition_offline",
        "1 if the partition was taken offline after a storage error.",
        MetricType::Gauge,
    );
    for (labels, p) in part_labels.iter().zip(&parts) {
        let offline = if p.offline.is_some() { 1.0 } else { 0.0 };
        fm.push(labels.clone(), Value::Gauge(offline));
    }
    replica_families(&mut fam, &parts, &part_labels);
    let segments: usize = parts.iter().map(|p| p.segments).sum();
    fam.add(
        "sluice_log_segments",
        "Log segments of every partition of the node.",
        MetricType::Gauge,
    )
    .push(Vec::new(), Value::Gauge(f(segments as u64)));
    let log_bytes: u64 = parts.iter().map(|p| p.size_bytes).sum();
    fam.add(
        "sluice_log_size_bytes",
        "Bytes of every partition's log segments.",
        MetricType::Gauge,
    )
    .push(Vec::new(), Value::Gauge(f(log_bytes)));

    // Consumer groups: committed offsets and lag against the high watermark.
    let hw: HashMap<(&str, i32), u64> = parts
        .iter()
        .map(|p| ((p.topic.as_str(), p.partition), p.high_watermark))
        .collect();
    let mut committed: Vec<&sluice_net::stats::CommittedOffset> =
        answered.iter().flat_map(|r| r.committed.iter()).collect();
    committed
        .sort_by(|a, b| (&a.group, &a.topic, a.partition).cmp(&(&b.group, &b.topic, b.partition)));
    let gl = |c: &sluice_net::stats::CommittedOffset| {
        l(&[
            ("group", &c.group),
            ("topic", &c.topic),
            ("partition", &c.partition.to_string()),
        ])
    };
    let fm = fam.add(
        "sluice_group_committed_offset",
        "Offset a consumer group committed for a partition.",
        MetricType::Gauge,
    );
    for c in &committed {
        #[allow(clippy::cast_precision_loss)]
        fm.push(gl(c), Value::Gauge(c.offset as f64));
    }
    let fm = fam.add(
        "sluice_group_lag",
        "Records between a group's committed offset and the partition's high watermark.",
        MetricType::Gauge,
    );
    for c in &committed {
        if let Some(h) = hw.get(&(c.topic.as_str(), c.partition)) {
            let lag = u64::try_from(c.offset).map_or(*h, |o| h.saturating_sub(o));
            fm.push(gl(c), Value::Gauge(f(lag)));
        }
    }

    // Shards.
    let shard_label = |s: usize| l(&[("shard", &s.to_string())]);
    let fm = fam.add(
        "sluice_shard_up",
        "1 if the shard answered this scrape in time, else 0 (its series are missing).",
        MetricType::Gauge,
    );
    for (s, r) in reports.iter().enumerate() {
        fm.push(
            shard_label(s),
            Value::Gauge(if r.is_some() { 1.0 } else { 0.0 }),
        );
    }
    let shard_families: [(&'static str, &'static str, MetricType, Get); 19] = [
        (
            "sluice_connections_open",
            "Kafka client connections open.",
            MetricType::Gauge,
            |m| f(m.connections_open),
        ),
        (
            "sluice_connections_accepted",
            "Kafka client connections accepted.",
            MetricType::Counter,
            |m| f(m.connections_accepted),
        ),
        (
            "sluice_shard_runtime_seconds",
            "Time the shard's reactor spent running tasks.",
            MetricType::Counter,
            |m| m.runtime_seconds,
        ),
        (
            "sluice_shard_tasks_executed",
            "Tasks the shard's reactor ran.",
            MetricType::Counter,
            |m| f(m.tasks_executed),
        ),
        (
            "sluice_shard_scheduler_runs",
            "Times the shard's scheduler ran its task queues.",
            MetricType::Counter,
            |m| f(m.scheduler_runs),
        ),
        (
            "sluice_shard_file_reads",
            "File reads the shard submitted to io_uring.",
            MetricType::Counter,
            |m| f(m.file_reads.0),
        ),
        (
            "sluice_shard_file_read_bytes",
            "Bytes of file reads the shard submitted to io_uring.",
            MetricType::Counter,
            |m| f(m.file_reads.1),
        ),
        (
            "sluice_shard_file_writes",
            "File writes the shard submitted to io_uring.",
            MetricType::Counter,
            |m| f(m.file_writes.0),
        ),
        (
            "sluice_shard_file_write_bytes",
            "Bytes of file writes the shard submitted to io_uring.",
            MetricType::Counter,
            |m| f(m.file_writes.1),
        ),
        (
            "sluice_shard_cold_reads",
            "O_DIRECT block reads of data no longer in the batch cache (reads ahead included).",
            MetricType::Counter,
            |m| f(m.cold_block_reads.0),
        ),
        (
            "sluice_shard_cold_read_bytes",
            "Bytes of O_DIRECT block reads of data no longer in the batch cache.",
            MetricType::Counter,
            |m| f(m.cold_block_reads.1),
        ),
        (
            "sluice_shard_cold_served_bytes",
            "Record bytes answered from segment files through the read-ahead blocks.",
            MetricType::Counter,
            |m| f(m.cold_bytes_served),
        ),
        (
            "sluice_shard_page_cache_served_bytes",
            "Record bytes answered as file ranges for sendfile because the page cache held them.",
            MetricType::Counter,
            |m| f(m.resident_bytes_served),
        ),
        (
            "sluice_shard_flushes",
            "fdatasync calls on log files.",
            MetricType::Counter,
            |m| f(m.fdatasync.count),
        ),
        (
            "sluice_cross_shard_hops",
            "Jobs the shard sent to other shards.",
            MetricType::Counter,
            |m| f(m.hops_sent),
        ),
        (
            "sluice_replication_bytes_in",
            "Record batch bytes followers on the shard appended from their leaders.",
            MetricType::Counter,
            |m| f(m.replication_bytes_in),
        ),
        (
            "sluice_replication_bytes_out",
            "Record batch bytes the shard's leaders sent to followers.",
            MetricType::Counter,
            |m| f(m.replication_bytes_out),
        ),
        (
            "sluice_isr_shrinks",
            "ISR shrinks the shard's leaders proposed (followers behind replica.lag.time.max.ms).",
            MetricType::Counter,
            |m| f(m.isr_shrinks),
        ),
        (
            "sluice_isr_expands",
            "ISR expansions the shard's leaders proposed (followers caught up).",
            MetricType::Counter,
            |m| f(m.isr_expands),
        ),
    ];
    for (name, help, kind, get) in shard_families {
        let counter = matches!(kind, MetricType::Counter);
        let fm = fam.add(name, help, kind);
        for r in &answered {
            let v = get(&r.metrics);
            let v = if counter {
                Value::Counter(v)
            } else {
                Value::Gauge(v)
            };
            fm.push(shard_label(r.metrics.shard), v);
        }
    }
    let fm = fam.add(
        "sluice_shard_flush_duration_seconds",
        "How long each fdatasync of a log file took.",
        MetricType::Histogram,
    );
    for r in &answered {
        fm.push(
            shard_label(r.metrics.shard),
            Value::Histogram(r.metrics.fdatasync.clone()),
        );
    }

    // The data directory's filesystem.
    if let Ok(s) = nix::sys::statvfs::statvfs(&process.data_dir) {
        let frag = s.fragment_size();
        fam.add(
            "sluice_data_dir_filesystem_size_bytes",
            "Size of the filesystem holding the data directory.",
            MetricType::Gauge,
        )
        .push(Vec::new(), Value::Gauge(f(s.blocks().saturating_mul(frag))));
        fam.add(
            "sluice_data_dir_filesystem_free_bytes",
            "Bytes available to Sluice on the data directory's filesystem.",
            MetricType::Gauge,
        )
        .push(
            Vec::new(),
            Value::Gauge(f(s.blocks_available().saturating_mul(frag))),
        );
    }

    quorum_families(&mut fam, process);

    offline_family(&mut fam, process);

    // The process.
    fam.add(
        "sluice_build_info",
        "Always 1; the labels say which build runs.",
        MetricType::Gauge,
    )
    .push(
        l(&[
            ("version", env!("CARGO_PKG_VERSION")),
            ("commit", env!("SLUICE_GIT_COMMIT")),
        ]),
        Value::Gauge(1.0),
    );
    fam.add(
        "process_start_time_seconds",
        "Start time of the process since 1970, in seconds.",
        MetricType::Gauge,
    )
    .push(Vec::new(), Value::Gauge(process.start_time_seconds));
    if let Some((cpu, rss)) = proc_self() {
        fam.add(
            "process_cpu_seconds",
            "User and system CPU time of the process.",
            MetricType::Counter,
        )
        .push(Vec::new(), Value::Counter(cpu));
        fam.add(
            "process_resident_memory_bytes",
            "Resident memory of the process.",
            MetricType::Gauge,
        )
        .push(Vec::new(), Value::Gauge(rss));
    }
    fam
}

/// Replication: per partition led here its in-sync replicas and whether it is
/// under-replicated, each follower's lag, and the node's totals (the numbers
/// operators alert on).
#[allow(clippy::cast_precision_loss)]
fn replica_families(
    fam: &mut Families,
    parts: &[&sluice_net::stats::PartitionStats],
    labels: &[Labels],
) {
    let led: Vec<(&Labels, &sluice_net::stats::ReplicaStats)> = labels
        .iter()
        .zip(parts)
        .filter_map(|(l, p)| {
            p.replica
                .as_ref()
                .filter(|r| r.role == "leader")
                .map(|r| (l, r))
        })
        .collect();
    let fm = fam.add(
        "sluice_partition_in_sync_replicas",
        "In-sync replicas of a partition this node leads.",
        MetricType::Gauge,
    );
    for (l, r) in &led {
        fm.push((*l).clone(), Value::Gauge(r.isr.len() as f64));
    }
    let fm = fam.add(
        "sluice_partition_under_replicated",
        "1 if a partition this node leads has fewer in-sync replicas than replicas.",
        MetricType::Gauge,
    );
    for (l, r) in &led {
        let under = if r.isr.len() < r.replicas.len() {
            1.0
        } else {
            0.0
        };
        fm.push((*l).clone(), Value::Gauge(under));
    }
    let under = led
        .iter()
        .filter(|(_, r)| r.isr.len() < r.replicas.len())
        .count();
    fam.add(
        "sluice_under_replicated_partitions",
        "Partitions this node leads with fewer in-sync replicas than replicas (Kafka's UnderReplicatedPartitions).",
        MetricType::Gauge,
    )
    .push(Vec::new(), Value::Gauge(under as f64));
    fam.add(
        "sluice_leader_partitions",
        "Partitions this node leads.",
        MetricType::Gauge,
    )
    .push(Vec::new(), Value::Gauge(led.len() as f64));
    let lag = |l: &Labels, follower: i32| {
        let mut l = l.clone();
        l.push(("follower", Esc(follower.to_string().into())));
        l
    };
    let fm = fam.add(
        "sluice_follower_lag_records",
        "Records a follower is behind this leader's log end (partitions led here).",
        MetricType::Gauge,
    );
    for (l, r) in &led {
        for f in &r.followers {
            if let Some(n) = f.records {
                fm.push(lag(l, f.follower), Value::Gauge(n as f64));
            }
        }
    }
    let fm = fam.add(
        "sluice_follower_lag_seconds",
        "Seconds since a follower was last caught up with this leader (partitions led here).",
        MetricType::Gauge,
    );
    for (l, r) in &led {
        for f in &r.followers {
            fm.push(lag(l, f.follower), Value::Gauge(f.seconds));
        }
    }
}

/// Partitions of the cluster without a leader.
#[allow(clippy::cast_precision_loss)]
fn offline_family(fam: &mut Families, process: &Process) {
    if let Some(n) = process.offline_partitions {
        fam.add(
            "sluice_offline_partitions",
            "Partitions of the cluster without a leader (Kafka's OfflinePartitionsCount).",
            MetricType::Gauge,
        )
        .push(Vec::new(), Value::Gauge(n as f64));
    }
}

/// The metadata quorum and the brokers, as this node knows them.
#[allow(clippy::cast_precision_loss)]
fn quorum_families(fam: &mut Families, process: &Process) {
    if let Some((version, alive, fenced)) = process.metadata {
        fam.add(
            "sluice_metadata_version",
            "The metadata version (log index) this node has applied.",
            MetricType::Gauge,
        )
        .push(Vec::new(), Value::Gauge(version as f64));
        let fm = fam.add(
            "sluice_brokers",
            "Registered brokers, by state (alive, or fenced after missing their session).",
            MetricType::Gauge,
        );
        fm.push(l(&[("state", "alive")]), Value::Gauge(alive as f64));
        fm.push(l(&[("state", "fenced")]), Value::Gauge(fenced as f64));
    }

    let Some(q) = &process.quorum else {
        return;
    };
    let gauges: [(&'static str, &'static str, f64); 6] = [
        (
            "sluice_quorum_term",
            "The metadata quorum's current term.",
            q.term as f64,
        ),
        (
            "sluice_quorum_leader",
            "The node id of the quorum's leader as this node knows it (-1: none).",
            q.leader.map_or(-1.0, |l| l as f64),
        ),
        (
            "sluice_quorum_is_leader",
            "1 on the node that leads the metadata quorum (the controller).",
            if q.role == "leader" { 1.0 } else { 0.0 },
        ),
        (
            "sluice_quorum_last_log_index",
            "The last index in this node's metadata log.",
            q.last_log_index as f64,
        ),
        (
            "sluice_quorum_applied_index",
            "The last metadata log index this node applied.",
            q.applied_index as f64,
        ),
        (
            "sluice_quorum_snapshot_index",
            "The last log index this node's metadata snapshot covers (-1: none).",
            q.snapshot_index.map_or(-1.0, |i| i as f64),
        ),
    ];
    for (name, help, v) in gauges {
        fam.add(name, help, MetricType::Gauge)
            .push(Vec::new(), Value::Gauge(v));
    }
    let fm = fam.add(
        "sluice_quorum_snapshots",
        "Metadata snapshots since this node started: built here, or installed from the leader.",
        MetricType::Counter,
    );
    fm.push(
        l(&[("kind", "built")]),
        Value::Counter(q.snapshots_built as f64),
    );
    fm.push(
        l(&[("kind", "installed")]),
        Value::Counter(q.snapshots_installed as f64),
    );
    let a = &q.append_latency;
    let mut buckets = a.buckets.clone();
    buckets.resize(sluice_engine::metrics::LATENCY_BOUNDS.len() + 1, 0);
    fam.add(
        "sluice_quorum_append_duration_seconds",
        "Appends to this node's metadata (Raft) log, write and fdatasync.",
        MetricType::Histogram,
    )
    .push(
        Vec::new(),
        Value::Histogram(sluice_engine::metrics::Histogram {
            buckets,
            sum_seconds: a.sum_seconds,
            count: a.count,
        }),
    );
    fam.add(
        "sluice_quorum_leader_changes",
        "Changes of the quorum's leader this node has seen since it started.",
        MetricType::Counter,
    )
    .push(Vec::new(), Value::Counter(q.leader_changes as f64));
    let fm = fam.add(
        "sluice_quorum_voter_lag",
        "On the leader: log entries each member is behind the leader's last index.",
        MetricType::Gauge,
    );
    for (id, matched) in &q.matched {
        let lag = q.last_log_index.saturating_sub(matched.unwrap_or(0));
        fm.push(l(&[("node", &id.to_string())]), Value::Gauge(lag as f64));
    }
}

/// (CPU seconds, resident bytes) of the process.
fn proc_self() -> Option<(f64, f64)> {
    use nix::sys::resource::{getrusage, UsageWho};
    use nix::sys::time::TimeValLike;
    let u = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    #[allow(clippy::cast_precision_loss)]
    let cpu = (u.user_time().num_microseconds() + u.system_time().num_microseconds()) as f64 / 1e6;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some((cpu, kib * 1024.0))
}

/// The exposition: OpenMetrics text if `openmetrics`, else the classic Prometheus
/// text format (counters named with `_total` in their HELP and TYPE lines, no
/// `# EOF`).
pub fn render(reports: &[Option<ShardReport>], process: &Process, openmetrics: bool) -> String {
    let fam = families(reports, process);
    let counters: Vec<&'static str> = fam
        .0
        .iter()
        .filter(|f| matches!(f.kind, MetricType::Counter))
        .map(|f| f.name)
        .collect();
    let mut registry = Registry::default();
    registry.register_collector(Box::new(fam));
    let mut out = String::with_capacity(64 * 1024);
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        return String::new();
    }
    if openmetrics {
        return out;
    }
    to_classic(&out, &counters)
}

/// OpenMetrics text to the classic format: no `# EOF` or `# UNIT` lines, and the
/// HELP and TYPE lines of counters name the samples' `_total`.
fn to_classic(openmetrics: &str, counters: &[&str]) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.split_terminator('\n') {
        if !line.starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = line
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        if let Some((kind, rest)) = meta {
            let name = rest.split(' ').next().unwrap_or_default();
            if counters.contains(&name) {
                let _ = writeln!(out, "{kind}{name}_total{}", &rest[name.len()..]);
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_counters_with_total_and_drops_eof() {
        let om = "# HELP sluice_requests Kafka requests.\n# TYPE sluice_requests counter\nsluice_requests_total{api=\"Produce\"} 3\n# HELP g A gauge.\n# TYPE g gauge\ng 1\n# EOF\n";
        let text = to_classic(om, &["sluice_requests"]);
        assert_eq!(
            text,
            "# HELP sluice_requests_total Kafka requests.\n# TYPE sluice_requests_total counter\nsluice_requests_total{api=\"Produce\"} 3\n# HELP g A gauge.\n# TYPE g gauge\ng 1\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut fam = Families::default();
        fam.add("g", "help", MetricType::Gauge)
            .push(l(&[("group", "a\"b\\c\nd")]), Value::Gauge(1.0));
        let mut registry = Registry::default();
        registry.register_collector(Box::new(fam));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap_or_default();
        assert!(out.contains("g{group=\"a\\\"b\\\\c\\nd\"} 1"), "{out}");
    }

    #[test]
    fn quorum_append_buckets_are_the_brokers() {
        // The same literals, compared as text (bit-equal floats print the same).
        assert_eq!(
            format!("{:?}", sluice_raft::quorum::APPEND_BUCKETS),
            format!("{:?}", sluice_engine::metrics::LATENCY_BOUNDS)
        );
    }

    #[test]
    fn block_on_timeout_gives_up() {
        assert_eq!(
            block_on_timeout(async { 5 }, Duration::from_millis(10)),
            Some(5)
        );
        let never = std::future::pending::<()>();
        assert_eq!(block_on_timeout(never, Duration::from_millis(20)), None);
    }
}
