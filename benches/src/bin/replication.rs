//! Replication figures on real processes (the `sluice` binary next to this one, or
//! `$SLUICE_BIN`), in one run so the ratios hold on a shared machine:
//!
//! - throughput: librdkafka (acks=all, idempotent, linger 5 ms) writing as fast
//!   as it can for `--seconds` to a 6-partition topic, RF=1 on one node, then RF=1
//!   and RF=3 (`min.insync.replicas=2`) on three nodes on 127.0.0.1-3; then each at
//!   half of its own maximum, with the produce latency percentiles (from when a
//!   record was due to its acknowledgement);
//! - failover, `--kills` times: SIGKILL the leader of an RF=3 partition, then
//!   time the first acks=all write that partition acknowledges (asked of the
//!   leader Metadata names, as a client does); the killed node is started again
//!   and rejoins the ISR before the next round. Default settings throughout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use sluice_testkit::wire::{self, metadata, Client};
use sluice_testkit::Cluster;

#[derive(Parser)]
#[command(about = "Replication on real processes: RF=3 vs RF=1 throughput and latency, failover")]
struct Args {
    /// Seconds of each throughput run
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// Record value bytes
    #[arg(long, default_value_t = 512)]
    value_bytes: usize,
    /// Partition-leader kills to time
    #[arg(long, default_value_t = 10)]
    kills: u32,
}

const PARTITIONS: i32 = 6;

fn ms(us: u64) -> f64 {
    f64::from(u32::try_from(us).unwrap_or(u32::MAX)) / 1000.0
}

fn create(addr: &str, topic: &str, partitions: i32, rf: i16) -> Result<(), String> {
    let min_insync = rf.min(2).to_string();
    let configs = [("min.insync.replicas", min_insync.as_str())];
    match wire::create_topic(addr, topic, partitions, rf, &configs)? {
        0 => Ok(()),
        other => Err(format!("CreateTopics {topic}: error {other}")),
    }
}

/// (leader, ISR size) of `topic`'s partition `p` as `addr` answers.
fn leader_of(addr: &str, topic: &str, p: i32) -> Option<(i32, usize)> {
    let md = metadata(addr).ok()?;
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))?;
    let part = t.partitions.iter().find(|x| x.partition_index == p)?;
    Some((part.leader_id.0, part.isr_nodes.len()))
}

struct Reports {
    latency: Mutex<Histogram<u64>>,
    acked: AtomicU64,
    failed: AtomicU64,
}

struct Ctx(Arc<Reports>);

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, due: Box<Instant>) {
        if result.is_ok() {
            let us = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
            if let Ok(mut h) = self.0.latency.lock() {
                h.saturating_record(us.max(1));
            }
            self.0.acked.fetch_add(1, Ordering::Relaxed);
        } else {
            self.0.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One run's figures.
struct Run {
    records_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: u64,
    /// From the first send to the end of the flush.
    took_s: f64,
}

/// librdkafka writes `value_bytes` records to `topic` for `seconds`, at `rate`
/// records per second (0: as fast as it takes them).
fn produce(
    bootstrap: &str,
    topic: &str,
    rate: f64,
    seconds: u64,
    value_bytes: usize,
) -> Result<Run, String> {
    let reports = Arc::new(Reports {
        latency: Mutex::new(
            Histogram::new_with_bounds(1, 100_000_000, 3).map_err(|e| e.to_string())?,
        ),
        acked: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let producer: ThreadedProducer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.size", "65536")
        .set("queue.buffering.max.messages", "200000")
        .create_with_context(Ctx(reports.clone()))
        .map_err(|e| e.to_string())?;
    let value = vec![b'x'; value_bytes];
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let mut sent: u64 = 0;
    while Instant::now() < end {
        let due = if rate > 0.0 {
            #[allow(clippy::cast_precision_loss)]
            let at = started + Duration::from_secs_f64(sent as f64 / rate);
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            at
        } else {
            Instant::now()
        };
        let p = i32::try_from(sent % 6).unwrap_or(0);
        let mut record = BaseRecord::<(), [u8], Box<Instant>>::with_opaque_to(topic, Box::new(due))
            .partition(p)
            .payload(&value[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        sent += 1;
    }
    producer
        .flush(Duration::from_mins(1))
        .map_err(|e| e.to_string())?;
    let took = started.elapsed().as_secs_f64();
    let h = reports.latency.lock().map_err(|_| "poisoned")?.clone();
    #[allow(clippy::cast_precision_loss)]
    Ok(Run {
        records_per_s: reports.acked.load(Ordering::Relaxed) as f64 / took,
        p50_ms: ms(h.value_at_quantile(0.5)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        failed: reports.failed.load(Ordering::Relaxed),
        took_s: took,
    })
}

/// CPU seconds (user + system) the brokers of `cluster` used so far.
fn broker_cpu_seconds(cluster: &Cluster) -> f64 {
    cluster
        .nodes
        .iter()
        .filter_map(sluice_testkit::Node::pid)
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .map(|stat| {
            // Fields after the command's closing parenthesis; utime and stime
            // are the 14th and 15th of the line, in clock ticks (100 per s).
            let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            (ticks(11) + ticks(12)) / 100.0
        })
        .sum()
}

/// CPU seconds the whole machine was busy so far (all CPUs; `/proc/stat`'s
/// first line less idle and iowait).
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: f64 = ticks.iter().sum();
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    (total - idle) / 100.0
}

/// Max, then half of max, on one cluster.
fn throughput(label: &str, cluster: &Cluster, rf: i16, args: &Args) -> Result<(Run, Run), String> {
    let topic = format!("rf{rf}");
    create(&cluster.nodes[0].addr, &topic, PARTITIONS, rf)?;
    std::thread::sleep(Duration::from_secs(1));
    let cpu0 = broker_cpu_seconds(cluster);
    let busy0 = machine_busy_seconds();
    let max = produce(
        &cluster.bootstrap(),
        &topic,
        0.0,
        args.seconds,
        args.value_bytes,
    )?;
    // Over the whole run, the flush of what was queued included.
    let cpu = (broker_cpu_seconds(cluster) - cpu0) / max.took_s;
    let busy = (machine_busy_seconds() - busy0) / max.took_s;
    println!(
        "  {label} brokers' CPU at max: {cpu:.2} of the machine's {} cores; {:.1} µs of broker CPU per record",
        std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get),
        cpu * 1e6 / max.records_per_s.max(1.0)
    );
    // The rest of the busy CPU is the client (librdkafka and this loop), with
    // whatever else the machine ran.
    println!(
        "  {label} machine busy at max: {busy:.2} cores; the client: {:.2} cores, {:.1} µs per record",
        busy - cpu,
        (busy - cpu) * 1e6 / max.records_per_s.max(1.0)
    );
    let half = produce(
        &cluster.bootstrap(),
        &topic,
        max.records_per_s / 2.0,
        args.seconds,
        args.value_bytes,
    )?;
    for (what, r) in [("max", &max), ("half of max", &half)] {
        #[allow(clippy::cast_precision_loss)]
        let mib = r.records_per_s * args.value_bytes as f64 / f64::from(1 << 20);
        println!(
            "  {label} {what:>11}: {:>9.0} records/s ({mib:.1} MiB/s), p50 {:.2} ms, p99 {:.2} ms, {} failed",
            r.records_per_s, r.p50_ms, r.p99_ms, r.failed
        );
    }
    Ok((max, half))
}

/// acks=all of one record to `topic`-0 at `addr`: the error code.
fn produce_one(addr: &str, topic: &str) -> Result<i16, String> {
    let mut c = Client::connect(addr, Duration::from_millis(500)).map_err(|e| e.to_string())?;
    let r = wire::produce_one(&mut c, 9, -1, (topic, 0), b"after the kill")
        .map_err(|e| e.to_string())?;
    Ok(r.responses[0].partition_responses[0].error_code)
}

fn failover(cluster: &mut Cluster, kills: u32) -> Result<(), String> {
    create(&cluster.nodes[0].addr, "failover", 1, 3)?;
    let port = cluster.port;
    let mut h = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    for round in 0..kills {
        // Settled: a leader and the whole ISR, and a write acknowledged.
        let deadline = Instant::now() + Duration::from_mins(1);
        let leader = loop {
            if let Some((l, 3)) = leader_of(&cluster.nodes[0].addr, "failover", 0) {
                if l > 0 && produce_one(&format!("127.0.0.{l}:{port}"), "failover") == Ok(0) {
                    break l;
                }
            }
            if Instant::now() > deadline {
                return Err(format!("round {round}: the partition did not settle"));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let victim = u8::try_from(leader).map_err(|e| e.to_string())?;
        let witness = cluster
            .nodes
            .iter()
            .find(|n| !n.addr.starts_with(&format!("127.0.0.{victim}:")))
            .map(|n| n.addr.clone())
            .ok_or("no other node")?;
        cluster.node(victim).kill();
        let killed = Instant::now();
        loop {
            if let Some((l, _)) = leader_of(&witness, "failover", 0) {
                if l > 0
                    && l != leader
                    && produce_one(&format!("127.0.0.{l}:{port}"), "failover") == Ok(0)
                {
                    break;
                }
            }
            if killed.elapsed() > Duration::from_mins(1) {
                return Err(format!("round {round}: no acknowledged write within 60 s"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let took = killed.elapsed();
        h.record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX))
            .map_err(|e| e.to_string())?;
        println!(
            "  kill {round}: leader {leader} killed, first acks=all write acknowledged after {:.0} ms",
            took.as_secs_f64() * 1000.0
        );
        cluster.node(victim).restart();
    }
    println!(
        "failover over {kills} kills of a partition leader: first acknowledged acks=all write p50 {:.0} ms, max {:.0} ms (target < 2000 ms)",
        ms(h.value_at_quantile(0.5)),
        ms(h.max())
    );
    Ok(())
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let storage = |_| "[storage]\ncache_mib_per_shard = 64\n".to_string();
    println!(
        "replication bench ({}), {} s runs, {} B values, 6 partitions, librdkafka acks=all idempotent",
        sluice_testkit::sluice_bin().display(),
        args.seconds,
        args.value_bytes
    );
    let one = Cluster::start_quorum(1, storage, |_| String::new());
    let (max1, half1) = throughput("RF=1, 1 node  ", &one, 1, &args)?;
    drop(one);
    let mut three = Cluster::start_quorum(3, storage, |_| String::new());
    // RF=1 spread over the same three nodes: what three processes and three
    // client connections cost on this machine, without replication.
    let (spread, _) = throughput("RF=1, 3 nodes ", &three, 1, &args)?;
    let (max3, half3) = throughput("RF=3, 3 nodes ", &three, 3, &args)?;
    println!(
        "RF=3 / RF=1 on the same three nodes: throughput {:.0}%",
        100.0 * max3.records_per_s / spread.records_per_s.max(1.0)
    );
    println!(
        "RF=3 / RF=1: throughput {:.0}% (target >= 50%), p99 at half of max {:.2}x (target <= 2x)",
        100.0 * max3.records_per_s / max1.records_per_s.max(1.0),
        half3.p99_ms / half1.p99_ms.max(0.001)
    );
    if args.kills > 0 {
        failover(&mut three, args.kills)?;
    }
    Ok(())
}
