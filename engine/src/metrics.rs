//! Per-shard metrics. Each shard keeps its counters in plain cells of a thread-local,
//! written only by that shard: no atomics, no locks, nothing shared on the data path.
//! A scrape sends one job to every shard, which copies its counters out
//! ([`snapshot`]); the scraper merges the copies and encodes them off the shards.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histograms' buckets; one more bucket
/// counts everything above the last.
pub const LATENCY_BOUNDS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram: per-bucket (not cumulative) counts, sum and count.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// `LATENCY_BOUNDS.len() + 1` counts; the last is above every bound.
    pub buckets: Vec<u64>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; LATENCY_BOUNDS.len() + 1],
            sum_seconds: 0.0,
            count: 0,
        }
    }
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BOUNDS.partition_point(|b| *b < s);
        if let Some(b) = self.buckets.get_mut(i) {
            *b += 1;
        }
        self.sum_seconds += s;
        self.count += 1;
    }

    /// Adds another histogram's counts (merging shards).
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum_seconds += other.sum_seconds;
        self.count += other.count;
    }

    /// `(upper bound, count in that bucket)` pairs, not cumulative, the last bound
    /// `f64::MAX` for +Inf: what prometheus-client's encoder takes.
    pub fn per_bucket(&self) -> Vec<(f64, u64)> {
        LATENCY_BOUNDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(self.buckets.iter().copied())
            .collect()
    }
}

/// Traffic of one topic through one shard's connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicTraffic {
    /// Record-batch bytes appended by Produce.
    pub bytes_in: u64,
    pub records_in: u64,
    /// Record-batch bytes answered to Fetch.
    pub bytes_out: u64,
}

/// One shard's counters, copied out at a scrape.
#[derive(Debug, Clone, Default)]
pub struct ShardMetrics {
    pub shard: usize,
    /// Requests started, per (API key, version).
    pub requests: HashMap<(i16, i16), u64>,
    /// Error codes answered, per (API key, version, error code); code
    /// [`NOT_ANSWERED`] counts requests answered by closing the connection.
    pub errors: HashMap<(i16, i16, i16), u64>,
    /// Time from reading a request to its answer being ready, per API key.
    pub latency: HashMap<i16, Histogram>,
    pub topics: HashMap<String, TopicTraffic>,
    pub connections_open: u64,
    pub connections_accepted: u64,
    /// fdatasync calls on log files and how long each took.
    pub fdatasync: Histogram,
    /// Jobs this shard sent to other shards.
    pub hops_sent: u64,
    /// The reactor's time running tasks, tasks run and scheduler runs (glommio).
    pub runtime_seconds: f64,
    pub tasks_executed: u64,
    pub scheduler_runs: u64,
    /// File I/O submitted by this shard: (operations, bytes).
    pub file_reads: (u64, u64),
    pub file_writes: (u64, u64),
    /// Cold reads (data no longer in the batch cache): O_DIRECT block reads
    /// completed (reads, bytes), bytes answered from them, and bytes of file ranges
    /// answered for `sendfile` because the page cache held them.
    pub cold_block_reads: (u64, u64),
    pub cold_bytes_served: u64,
    pub resident_bytes_served: u64,
    /// Replication: batch bytes a follower appended from its leaders, bytes this
    /// node's leaders sent to followers, and ISR shrinks and expansions proposed.
    pub replication_bytes_in: u64,
    pub replication_bytes_out: u64,
    pub isr_shrinks: u64,
    pub isr_expands: u64,
}

#[derive(Default)]
struct Local {
    requests: HashMap<(i16, i16), u64>,
    errors: HashMap<(i16, i16, i16), u64>,
    latency: HashMap<i16, Histogram>,
    topics: HashMap<String, TopicTraffic>,
    connections_open: u64,
    connections_accepted: u64,
    fdatasync: Histogram,
    hops_sent: u64,
    cold_block_reads: (u64, u64),
    cold_bytes_served: u64,
    resident_bytes_served: u64,
    replication_bytes_in: u64,
    replication_bytes_out: u64,
    isr_shrinks: u64,
    isr_expands: u64,
    /// The request whose handler is being polled (for [`tally`]).
    current: Option<(i16, i16)>,
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local::default());
}

fn with<T>(f: impl FnOnce(&mut Local) -> T) -> T {
    LOCAL.with(|l| f(&mut l.borrow_mut()))
}

/// The error code that stands for "not answered: the connection was closed"
/// (Kafka's codes are -1 and up).
pub const NOT_ANSWERED: i16 = i16::MIN;

/// The API key and version label for requests the broker does not serve (an
/// unknown key, or a version outside the served range): one bucket, so odd
/// requests cannot make new series.
pub const UNSERVED: i16 = -1;

/// A request was read.
pub fn request_started(api: i16, version: i16) {
    with(|l| *l.requests.entry((api, version)).or_default() += 1);
}

/// A request was answered after `took` (`answered` false: the connection closes).
pub fn request_finished(api: i16, version: i16, took: Duration, answered: bool) {
    with(|l| {
        l.latency.entry(api).or_default().observe(took);
        if !answered {
            *l.errors.entry((api, version, NOT_ANSWERED)).or_default() += 1;
        }
    });
}

/// Counts `code` against the request being handled, if it is an error; returns it.
/// Handlers wrap every error code they put in an answer with this.
pub fn tally(code: i16) -> i16 {
    if code != 0 {
        with(|l| {
            if let Some((api, v)) = l.current {
                *l.errors.entry((api, v, code)).or_default() += 1;
            }
        });
    }
    code
}

/// An error code answered outside a handler (ApiVersions' fallback answer).
pub fn error_answered(api: i16, version: i16, code: i16) {
    with(|l| *l.errors.entry((api, version, code)).or_default() += 1);
}

pub fn connection_opened() {
    with(|l| {
        l.connections_open += 1;
        l.connections_accepted += 1;
    });
}

pub fn connection_closed() {
    with(|l| l.connections_open = l.connections_open.saturating_sub(1));
}

pub fn produced(topic: &str, bytes: u64, records: u64) {
    with(|l| {
        if let Some(t) = l.topics.get_mut(topic) {
            t.bytes_in += bytes;
            t.records_in += records;
        } else {
            let t = TopicTraffic {
                bytes_in: bytes,
                records_in: records,
                bytes_out: 0,
            };
            l.topics.insert(topic.to_string(), t);
        }
    });
}

pub fn fetched(topic: &str, bytes: u64) {
    with(|l| {
        if let Some(t) = l.topics.get_mut(topic) {
            t.bytes_out += bytes;
        } else {
            let t = TopicTraffic {
                bytes_out: bytes,
                ..TopicTraffic::default()
            };
            l.topics.insert(topic.to_string(), t);
        }
    });
}

/// A follower appended `bytes` fetched from its leader.
pub fn replicated_in(bytes: u64) {
    with(|l| l.replication_bytes_in += bytes);
}

/// A leader answered a follower's fetch with `bytes`.
pub fn replicated_out(bytes: u64) {
    with(|l| l.replication_bytes_out += bytes);
}

/// A leader proposed a larger (`expand`) or smaller ISR.
pub fn isr_changed(expand: bool) {
    with(|l| {
        if expand {
            l.isr_expands += 1;
        } else {
            l.isr_shrinks += 1;
        }
    });
}

pub(crate) fn fdatasync_done(took: Duration) {
    with(|l| l.fdatasync.observe(took));
}

pub(crate) fn hop_sent() {
    with(|l| l.hops_sent += 1);
}

pub(crate) fn cold_read_done(bytes: u64) {
    with(|l| {
        l.cold_block_reads.0 += 1;
        l.cold_block_reads.1 += bytes;
    });
}

pub(crate) fn cold_read_served(bytes: u64) {
    with(|l| l.cold_bytes_served += bytes);
}

pub(crate) fn resident_read_served(bytes: u64) {
    with(|l| l.resident_bytes_served += bytes);
}

/// Copies this shard's counters; call on the shard (a glommio thread).
pub fn snapshot(shard: usize) -> ShardMetrics {
    let mut m = with(|l| ShardMetrics {
        shard,
        requests: l.requests.clone(),
        errors: l.errors.clone(),
        latency: l.latency.clone(),
        topics: l.topics.clone(),
        connections_open: l.connections_open,
        connections_accepted: l.connections_accepted,
        fdatasync: l.fdatasync.clone(),
        hops_sent: l.hops_sent,
        cold_block_reads: l.cold_block_reads,
        cold_bytes_served: l.cold_bytes_served,
        resident_bytes_served: l.resident_bytes_served,
        replication_bytes_in: l.replication_bytes_in,
        replication_bytes_out: l.replication_bytes_out,
        isr_shrinks: l.isr_shrinks,
        isr_expands: l.isr_expands,
        ..ShardMetrics::default()
    });
    let ex = glommio::executor();
    let stats = ex.executor_stats();
    m.runtime_seconds = stats.total_runtime().as_secs_f64();
    m.tasks_executed = stats.tasks_executed();
    m.scheduler_runs = stats.scheduler_runs();
    let io = ex.io_stats();
    m.file_reads = io.all_rings().file_reads();
    m.file_writes = io.all_rings().file_writes();
    m
}

/// Runs a request's handler with the request marked current on each poll, so
/// [`tally`] knows whose error codes it counts.
pub struct InRequest<F> {
    api: i16,
    version: i16,
    inner: Pin<Box<F>>,
}

impl<F: Future> InRequest<F> {
    pub fn new(api: i16, version: i16, inner: F) -> Self {
        InRequest {
            api,
            version,
            inner: Box::pin(inner),
        }
    }
}

impl<F: Future> Future for InRequest<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let me = (self.api, self.version);
        let prev = with(|l| l.current.replace(me));
        let out = self.inner.as_mut().poll(cx);
        with(|l| l.current = prev);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_cumulative_counts() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(40)); // first bucket (<= 50 µs)
        h.observe(Duration::from_micros(50)); // a bound belongs to its bucket
        h.observe(Duration::from_millis(3)); // <= 5 ms
        h.observe(Duration::from_secs(20)); // above every bound
        assert_eq!(h.count, 4);
        let c = h.per_bucket();
        assert_eq!(c.len(), LATENCY_BOUNDS.len() + 1);
        assert_eq!(c[0], (0.000_05, 2));
        assert_eq!(c[5], (0.002_5, 0));
        assert_eq!(c[6], (0.005, 1));
        assert_eq!(c[16], (10.0, 0));
        assert_eq!(c[17], (f64::MAX, 1));
        let mut m = h.clone();
        m.merge(&h);
        assert_eq!(m.count, 8);
        assert_eq!(m.per_bucket()[0].1, 4);
        assert!((m.sum_seconds - 2.0 * h.sum_seconds).abs() < 1e-9);
    }

    #[test]
    fn errors_count_against_the_request_being_polled() {
        let fut = InRequest::new(3, 12, async { tally(3) + tally(0) });
        assert_eq!(futures::executor::block_on(fut), 3);
        // Outside any request nothing is counted.
        tally(7);
        let errors = with(|l| l.errors.clone());
        assert_eq!(errors.get(&(3, 12, 3)), Some(&1));
        assert_eq!(errors.len(), 1);
        assert!(with(|l| l.current.is_none()));
    }
}
