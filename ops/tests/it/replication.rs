//! Partition replication across three real `sluice serve` processes on
//! 127.0.0.1, .2 and .3: RF=3 topics with `min.insync.replicas=2`, written by
//! librdkafka with acks=all and idempotence while a partition leader is killed
//! (SIGKILL) and comes back. Every acknowledged record is read back exactly once
//! at its acknowledged offset, the in-sync replicas' logs hold the same batches
//! (compared from the segment files of the three data directories), leader
//! epochs go up with a failover, and acks=all is refused while too few replicas
//! are in sync.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::TopicPartitionList;
use sluice_testkit::wire::{self, metadata, Client};
use sluice_testkit::Cluster;

const PARTITIONS: i32 = 6;

/// Small caches; a follower behind for 5 s leaves the ISR. The session timeout
/// is the default: a killed leader is fenced because its followers find its port
/// closed.
fn config(_: u8) -> String {
    "[storage]\ncache_mib_per_shard = 16\n".into()
}

fn cluster_config(_: u8) -> String {
    "replica_lag_time_max_ms = 5000".into()
}

/// One partition as Metadata shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placed {
    leader: i32,
    epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
}

fn placed(md: &MetadataResponse, topic: &str) -> Vec<Placed> {
    let Some(t) = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
    else {
        return Vec::new();
    };
    let mut parts: Vec<_> = t.partitions.iter().collect();
    parts.sort_by_key(|p| p.partition_index);
    parts
        .iter()
        .map(|p| {
            let mut isr: Vec<i32> = p.isr_nodes.iter().map(|b| b.0).collect();
            isr.sort_unstable();
            Placed {
                leader: p.leader_id.0,
                epoch: p.leader_epoch,
                replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                isr,
            }
        })
        .collect()
}

/// Waits until `check` holds for `topic`'s partitions as `addr` shows them.
fn wait_placed(
    addr: &str,
    topic: &str,
    within: Duration,
    what: &str,
    check: impl Fn(&[Placed]) -> bool,
) -> Vec<Placed> {
    let deadline = Instant::now() + within;
    let mut last = Vec::new();
    while Instant::now() < deadline {
        if let Ok(md) = metadata(addr) {
            last = placed(&md, topic);
            if !last.is_empty() && check(&last) {
                return last;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} not seen at {addr} within {within:?}; last: {last:?}");
}

fn create(addr: &str, topic: &str, rf: i16, configs: &[(&str, &str)]) -> i16 {
    wire::create_topic(addr, topic, PARTITIONS, rf, configs).expect("CreateTopics")
}

/// What librdkafka acknowledged: value -> (partition, offset).
type Acked = BTreeMap<String, (i32, i64)>;

/// Writes `count` unique values (acks=all, idempotent), spread over the
/// partitions, and returns what was acknowledged; every one must be.
fn produce(bootstrap: &str, topic: &str, tag: &str, count: usize) -> Acked {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let values: Vec<String> = (0..count).map(|i| format!("{tag}-{i}")).collect();
    let pending: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let p = i32::try_from(i).unwrap_or(0) % PARTITIONS;
            producer
                .send_result(FutureRecord::<(), _>::to(topic).partition(p).payload(v))
                .map_err(|(e, _)| e)
        })
        .collect();
    let mut acked = Acked::new();
    for (v, f) in values.iter().zip(pending) {
        let d = futures::executor::block_on(f.expect("queued"))
            .expect("delivery")
            .unwrap_or_else(|(e, _)| panic!("{v} not acknowledged: {e}"));
        acked.insert(v.clone(), (d.partition, d.offset));
    }
    acked
}

/// Reads every partition from the start up to its high watermark through
/// `bootstrap`: (partition, offset) -> value.
fn consume(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> BTreeMap<(i32, i64), String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "replication-check")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut got = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_mins(1);
    while got.len() < expected && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("message");
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            let before = got.insert((m.partition(), m.offset()), v);
            assert!(before.is_none(), "offset {} read twice", m.offset());
        }
    }
    got
}

/// Every acknowledged value is at its acknowledged offset, once; nothing else
/// was read.
fn check_acked(acked: &Acked, read: &BTreeMap<(i32, i64), String>) {
    assert_eq!(
        read.len(),
        acked.len(),
        "read {} records, {} were acknowledged",
        read.len(),
        acked.len()
    );
    for (v, at) in acked {
        assert_eq!(read.get(at), Some(v), "{v} acknowledged at {at:?}");
    }
}

/// A batch as stored: base offset, last offset, leader epoch, CRC.
type StoredBatch = (i64, i64, i32, u32);

/// The batches of a partition directory's segment files, in offset order.
fn stored_batches(dir: &Path) -> Vec<StoredBatch> {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let mut out = Vec::new();
    for log in logs {
        let bytes = std::fs::read(&log).expect("segment");
        let mut at = 0usize;
        while at + 61 <= bytes.len() {
            let b = &bytes[at..];
            let base = i64::from_be_bytes(b[0..8].try_into().expect("8"));
            let len = usize::try_from(i32::from_be_bytes(b[8..12].try_into().expect("4")))
                .expect("length");
            let epoch = i32::from_be_bytes(b[12..16].try_into().expect("4"));
            let crc = u32::from_be_bytes(b[17..21].try_into().expect("4"));
            let delta = i32::from_be_bytes(b[23..27].try_into().expect("4"));
            // The active segment's file ends in zeros up to its last block.
            if len < 49 || at + 12 + len > bytes.len() {
                break;
            }
            out.push((base, base + i64::from(delta), epoch, crc));
            at += 12 + len;
        }
    }
    out
}

/// Waits until the three replicas of every partition hold the same batches, and
/// returns them per partition.
fn logs_agree(
    cluster: &Cluster,
    topic: &str,
    partitions: i32,
    within: Duration,
) -> Vec<Vec<StoredBatch>> {
    let deadline = Instant::now() + within;
    loop {
        let mut agreed = Vec::new();
        let mut differ = None;
        for p in 0..partitions {
            let copies: Vec<Vec<StoredBatch>> = cluster
                .nodes
                .iter()
                .map(|n| stored_batches(&n.data_dir().join(format!("{topic}-{p}"))))
                .collect();
            if copies.windows(2).all(|w| w[0] == w[1]) {
                agreed.push(copies[0].clone());
            } else {
                differ = Some((p, copies.iter().map(Vec::len).collect::<Vec<_>>()));
                break;
            }
        }
        match differ {
            None => return agreed,
            Some(d) => assert!(
                Instant::now() < deadline,
                "replicas of {topic} still differ after {within:?} (partition, batches per node): {d:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `sluice_under_replicated_partitions` summed over the nodes that
/// answer satisfies `ok`.
fn wait_under_replicated(cluster: &Cluster, ok: impl Fn(f64) -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = -1.0;
    while Instant::now() < deadline {
        last = cluster
            .nodes
            .iter()
            .filter_map(|n| {
                sluice_testkit::try_http(
                    &n.admin_addr(),
                    b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                )
                .ok()
            })
            .filter_map(|(_, _, page)| {
                page.lines()
                    .find_map(|l| l.strip_prefix("sluice_under_replicated_partitions "))
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .sum();
        if ok(last) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("under-replicated partitions: {last}, expected {what}");
}

/// Records in the batches of every partition.
fn records_in(batches: &[Vec<StoredBatch>]) -> usize {
    batches
        .iter()
        .flatten()
        .map(|b| usize::try_from(b.1 - b.0 + 1).unwrap_or(0))
        .sum()
}

/// DescribeLogDirs of `topic` at `addr`: the size of each partition listed.
fn log_dir_sizes(addr: &str, topic: &str) -> Vec<i64> {
    use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
    use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
    let mut c = Client::connect(addr, Duration::from_secs(5)).expect("connect");
    let req =
        DescribeLogDirsRequest::default()
            .with_topics(Some(vec![DescribableLogDirTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions((0..PARTITIONS).collect())]));
    let (_, r): (i16, DescribeLogDirsResponse) = c
        .call(ApiKey::DescribeLogDirs, 4, &req)
        .expect("DescribeLogDirs");
    r.results
        .iter()
        .flat_map(|d| d.topics.iter())
        .flat_map(|t| t.partitions.iter())
        .map(|p| p.partition_size)
        .collect()
}

/// acks=all to `partition` with a raw Produce: the error code.
fn produce_raw(addr: &str, topic: &str, partition: i32) -> i16 {
    let mut c = Client::connect(addr, Duration::from_secs(5)).expect("connect");
    let r = wire::produce_one(&mut c, 9, -1, (topic, partition), b"strict").expect("Produce");
    r.responses[0].partition_responses[0].error_code
}

#[test]
fn three_replicas_keep_every_acknowledged_record_through_a_leader_s_death() {
    let mut cluster = Cluster::start_quorum(3, config, cluster_config);
    let a1 = cluster.nodes[0].addr.clone();
    assert_eq!(create(&a1, "r", 3, &[("min.insync.replicas", "2")]), 0);
    assert_eq!(create(&a1, "strict", 3, &[("min.insync.replicas", "3")]), 0);
    assert_eq!(
        create(&a1, "too-many", 4, &[]),
        38,
        "INVALID_REPLICATION_FACTOR"
    );
    let full = |ps: &[Placed]| ps.iter().all(|p| p.isr.len() == 3 && p.leader > 0);
    let before = wait_placed(&a1, "r", Duration::from_secs(20), "RF=3", full);
    assert!(before.iter().all(|p| p.replicas.len() == 3), "{before:?}");

    let t0 = Instant::now();
    let mut acked = produce(&cluster.bootstrap(), "r", "first", 600);
    eprintln!("600 acks=all records in {:?}", t0.elapsed());
    let batches = logs_agree(&cluster, "r", PARTITIONS, Duration::from_secs(20));
    let stored = records_in(&batches);
    assert_eq!(stored, 600, "records in each replica");
    // Every node's DescribeLogDirs lists its replicas, followers' too.
    for n in &cluster.nodes {
        let sizes = log_dir_sizes(&n.addr, "r");
        assert!(
            sizes.len() == 6 && sizes.iter().all(|s| *s > 0),
            "{sizes:?}"
        );
    }

    // The leader of partition 0 dies; another in-sync replica takes over in a
    // newer epoch, and acks=all writes go on with two replicas in sync.
    let victim = before[0].leader;
    let victim_node = u8::try_from(victim).expect("node id");
    cluster.node(victim_node).kill();
    let witness = cluster
        .nodes
        .iter()
        .map(|n| n.addr.clone())
        .find(|a| !a.starts_with(&format!("127.0.0.{victim}:")))
        .expect("a live node");
    let t0 = Instant::now();
    let after = wait_placed(
        &witness,
        "r",
        Duration::from_secs(20),
        "a new leader of partition 0",
        |ps| ps[0].leader > 0 && ps[0].leader != victim,
    );
    eprintln!(
        "partition 0: leader {victim} -> {} after {:?}",
        after[0].leader,
        t0.elapsed()
    );
    assert!(
        after[0].epoch > before[0].epoch,
        "{:?} -> {:?}",
        before[0],
        after[0]
    );
    assert!(!after[0].isr.contains(&victim), "{:?}", after[0]);
    wait_under_replicated(&cluster, |n| n >= f64::from(PARTITIONS), "every partition");
    // min.insync.replicas=3 with one replica down: refused before anything is
    // written.
    let strict = wait_placed(
        &witness,
        "strict",
        Duration::from_secs(20),
        "ISR of 2",
        |ps| ps.iter().all(|p| p.isr.len() == 2 && p.leader > 0),
    );
    let leader_addr = format!("127.0.0.{}:{}", strict[0].leader, cluster.port);
    assert_eq!(
        produce_raw(&leader_addr, "strict", 0),
        19,
        "NOT_ENOUGH_REPLICAS"
    );

    let others: String = cluster
        .nodes
        .iter()
        .filter(|n| !n.addr.starts_with(&format!("127.0.0.{victim}:")))
        .map(|n| n.addr.clone())
        .collect::<Vec<_>>()
        .join(",");
    acked.extend(produce(&others, "r", "second", 600));

    // It comes back, truncates what it must, catches up and rejoins the ISR.
    cluster.node(victim_node).restart();
    wait_placed(
        &a1,
        "r",
        Duration::from_secs(30),
        "the ISR whole again",
        full,
    );
    wait_under_replicated(&cluster, |n| n == 0.0, "none");
    let batches = logs_agree(&cluster, "r", PARTITIONS, Duration::from_secs(20));
    let stored = records_in(&batches);
    assert_eq!(stored, 1200, "records in each replica");
    let read = consume(&cluster.bootstrap(), "r", PARTITIONS, acked.len());
    check_acked(&acked, &read);
    // Offsets are never reused: each partition's offsets run without gaps.
    for p in 0..PARTITIONS {
        let offsets: Vec<i64> = read
            .keys()
            .filter(|(q, _)| *q == p)
            .map(|(_, o)| *o)
            .collect();
        let want: Vec<i64> = (0..i64::try_from(offsets.len()).unwrap_or(0)).collect();
        assert_eq!(offsets, want, "partition {p}");
    }
}

/// One fault of the checker's schedule.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL the leader of a partition, start it again after `pause_ms`.
    KillLeader { partition: i32, pause_ms: u64 },
    /// SIGSTOP a node past its session timeout, then SIGCONT.
    Pause { node: u8 },
    /// Stop a node, empty its data directory, start it again.
    Wipe { node: u8 },
    /// SIGKILL all three at once, start them again.
    KillAll,
}

/// The seeded schedule: every node's leadership killed twice (a), a pause (b),
/// a wipe (c) and a full restart (d), in a shuffled order.
fn schedule(rng: &mut impl rand::Rng) -> Vec<Fault> {
    use rand::seq::SliceRandom;
    let mut faults: Vec<Fault> = (0..6)
        .map(|_| Fault::KillLeader {
            partition: rng.gen_range(0..CHECKED_PARTITIONS),
            pause_ms: rng.gen_range(0..1500),
        })
        .collect();
    faults.push(Fault::Pause {
        node: rng.gen_range(1..=3),
    });
    faults.push(Fault::Wipe {
        node: rng.gen_range(1..=3),
    });
    faults.push(Fault::KillAll);
    faults.shuffle(rng);
    faults
}

const CHECKED_PARTITIONS: i32 = 12;

/// What the checker's producer saw.
#[derive(Default)]
struct Produced {
    acked: Acked,
    errors: usize,
}

/// Writes unique values (acks=all, idempotent) to `partitions` partitions in
/// rounds of 24 until `stop`.
fn produce_until(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    stop: &std::sync::atomic::AtomicBool,
) -> Produced {
    use std::sync::atomic::Ordering;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    let mut out = Produced::default();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let values: Vec<String> = (n..n + 24).map(|i| format!("v{i}")).collect();
        n += 24;
        let pending: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let p = i32::try_from(i).unwrap_or(0) % partitions;
                producer
                    .send_result(FutureRecord::<(), _>::to(topic).partition(p).payload(v))
                    .map_err(|(e, _)| e)
            })
            .collect();
        for (v, f) in values.iter().zip(pending) {
            match f.map(futures::executor::block_on) {
                Ok(Ok(Ok(d))) => {
                    out.acked.insert(v.clone(), (d.partition, d.offset));
                }
                _ => out.errors += 1,
            }
        }
    }
    out
}

/// Waits until every partition of `topic` has a leader and all three replicas
/// in sync, as every running node answers.
fn healed(cluster: &Cluster, topic: &str, within: Duration) {
    for n in &cluster.nodes {
        let r = std::panic::catch_unwind(|| {
            wait_placed(
                &n.addr,
                topic,
                within,
                "every partition led, ISR whole",
                |ps| ps.iter().all(|p| p.leader > 0 && p.isr.len() == 3),
            )
        });
        if let Err(e) = r {
            for (i, n) in cluster.nodes.iter().enumerate() {
                let log = n.log();
                let notable: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("panicked") || l.contains("ERROR") || l.contains("WARN"))
                    .collect();
                eprintln!(
                    "--- node {}: errors, warnings and panics\n{}",
                    i + 1,
                    notable.join("\n")
                );
            }
            std::panic::resume_unwind(e);
        }
    }
}

fn inflict(cluster: &mut Cluster, fault: Fault) {
    match fault {
        Fault::KillLeader {
            partition,
            pause_ms,
        } => {
            let md = metadata(&cluster.nodes[0].addr).expect("metadata");
            let leader = placed(&md, "checked")[usize::try_from(partition).unwrap_or(0)].leader;
            let node = u8::try_from(leader).expect("a leader");
            cluster.node(node).kill();
            std::thread::sleep(Duration::from_millis(pause_ms));
            cluster.node(node).relaunch();
        }
        Fault::Pause { node } => {
            cluster.node(node).pause();
            // Past the 3 s session timeout: fenced, its leaderships moved.
            std::thread::sleep(Duration::from_secs(4));
            cluster.node(node).resume();
        }
        Fault::Wipe { node } => {
            cluster.node(node).stop();
            cluster.node(node).wipe();
            cluster.node(node).relaunch();
        }
        Fault::KillAll => {
            for i in 1..=3 {
                cluster.node(i).kill();
            }
            for i in 1..=3 {
                cluster.node(i).relaunch();
            }
        }
    }
    for i in 1..=3 {
        cluster.node(i).wait_serving();
    }
}

#[test]
fn acknowledged_records_survive_a_seeded_schedule_of_kills_pauses_wipes_and_full_restarts() {
    let seed = sluice_testkit::Seed::take(
        "acknowledged_records_survive_a_seeded_schedule_of_kills_pauses_wipes_and_full_restarts",
    );
    let faults = schedule(&mut seed.rng());
    eprintln!("schedule: {faults:?}");
    let mut cluster = Cluster::start_quorum(3, config, |_| {
        "session_timeout_ms = 3000\nreplica_lag_time_max_ms = 5000".into()
    });
    let a1 = cluster.nodes[0].addr.clone();
    let created = wire::create_topic(
        &a1,
        "checked",
        CHECKED_PARTITIONS,
        3,
        &[("min.insync.replicas", "2")],
    );
    assert_eq!(created, Ok(0));
    healed(&cluster, "checked", Duration::from_secs(30));

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bootstrap = cluster.bootstrap();
    let flag = stop.clone();
    let writer =
        std::thread::spawn(move || produce_until(&bootstrap, "checked", CHECKED_PARTITIONS, &flag));
    std::thread::sleep(Duration::from_secs(1));
    for (i, fault) in faults.iter().enumerate() {
        let t0 = Instant::now();
        inflict(&mut cluster, *fault);
        healed(&cluster, "checked", Duration::from_mins(1));
        eprintln!("fault {i} {fault:?}: healed after {:?}", t0.elapsed());
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let outcome = writer.join().expect("producer thread");
    eprintln!(
        "{} records acknowledged, {} not",
        outcome.acked.len(),
        outcome.errors
    );
    assert!(
        outcome.acked.len() > 1000,
        "too little was written to check"
    );

    // The replicas agree batch for batch (segment files of the three data
    // directories), and a consumer reads every acknowledged record exactly once
    // at its acknowledged offset; no value is stored twice.
    let batches = logs_agree(
        &cluster,
        "checked",
        CHECKED_PARTITIONS,
        Duration::from_secs(30),
    );
    let stored = records_in(&batches);
    let read = consume(&cluster.bootstrap(), "checked", CHECKED_PARTITIONS, stored);
    assert_eq!(read.len(), stored, "records read and stored");
    for (v, at) in &outcome.acked {
        assert_eq!(read.get(at), Some(v), "{v} acknowledged at {at:?}");
    }
    let distinct: std::collections::BTreeSet<&String> = read.values().collect();
    assert_eq!(distinct.len(), read.len(), "a value stored twice");
    drop(seed);
}

/// A consumer group member reading `topic` with a commit every 20 records,
/// until `stop`: the values it saw, in order.
fn consume_in_group(
    bootstrap: &str,
    topic: &str,
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<String> {
    use rdkafka::consumer::CommitMode;
    use std::sync::atomic::Ordering;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "rolling")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut seen = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let Ok(m) = m else { continue };
        seen.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string());
        // A commit every 20 records, retried while the coordinator moves; what
        // was read since the last commit may be read again after a rebalance.
        if seen.len() % 20 == 0 {
            for _ in 0..50 {
                if consumer.commit_consumer_state(CommitMode::Sync).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    let _ = consumer.commit_consumer_state(CommitMode::Sync);
    seen
}

#[test]
fn a_rolling_restart_with_sigterm_shows_clients_no_error_and_loses_nothing() {
    let mut cluster = Cluster::start_quorum(3, config, cluster_config);
    let a1 = cluster.nodes[0].addr.clone();
    assert_eq!(
        create(&a1, "rolling", 3, &[("min.insync.replicas", "2")]),
        0
    );
    let full = |ps: &[Placed]| ps.iter().all(|p| p.isr.len() == 3 && p.leader > 0);
    wait_placed(&a1, "rolling", Duration::from_secs(20), "RF=3", full);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (bootstrap, flag) = (cluster.bootstrap(), stop.clone());
    let writer =
        std::thread::spawn(move || produce_until(&bootstrap, "rolling", PARTITIONS, &flag));
    let (bootstrap, reading) = (
        cluster.bootstrap(),
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    let flag = reading.clone();
    let reader = std::thread::spawn(move || consume_in_group(&bootstrap, "rolling", &flag));
    std::thread::sleep(Duration::from_secs(2));
    for i in 1..=3u8 {
        let t0 = Instant::now();
        let status = cluster.node(i).stop();
        assert!(status.success(), "node {i} stopped with {status}");
        eprintln!("node {i} stopped (controlled) in {:?}", t0.elapsed());
        cluster.node(i).restart();
        for n in &cluster.nodes {
            wait_placed(
                &n.addr,
                "rolling",
                Duration::from_mins(1),
                "ISR whole",
                full,
            );
        }
        eprintln!("node {i} back in every ISR after {:?}", t0.elapsed());
        std::thread::sleep(Duration::from_secs(1));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let outcome = writer.join().expect("producer thread");
    eprintln!(
        "{} records acknowledged, {} delivery errors",
        outcome.acked.len(),
        outcome.errors
    );
    assert_eq!(outcome.errors, 0, "the producer application saw errors");
    assert!(outcome.acked.len() > 500, "too little was written");
    let read = consume(
        &cluster.bootstrap(),
        "rolling",
        PARTITIONS,
        outcome.acked.len(),
    );
    check_acked(&outcome.acked, &read);
    // The group reads everything written, across the coordinator's moves.
    let deadline = Instant::now() + Duration::from_mins(1);
    let mut committed = 0;
    while Instant::now() < deadline && committed + 20 < outcome.acked.len() {
        std::thread::sleep(Duration::from_millis(500));
        committed = group_committed(&cluster, "rolling");
    }
    eprintln!("the group committed {committed} records' offsets");
    std::thread::sleep(Duration::from_secs(1));
    reading.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = reader.join().expect("consumer thread");
    let distinct: std::collections::BTreeSet<&String> = seen.iter().collect();
    for v in outcome.acked.keys() {
        assert!(distinct.contains(v), "the group never read {v}");
    }
    let again = seen.len() - distinct.len();
    eprintln!(
        "the group read {} records, {again} of them again",
        seen.len()
    );
    assert!(
        again * 100 <= seen.len(),
        "{again} of {} records read again: more than the uncommitted ones",
        seen.len()
    );
}

/// Offsets the group committed, summed over the topic's partitions (as the
/// partitions' leaders' coordinator answers OffsetFetch through librdkafka).
fn group_committed(cluster: &Cluster, topic: &str) -> usize {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap())
        .set("group.id", "rolling")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    consumer
        .committed_offsets(tpl, Duration::from_secs(5))
        .map_or(0, |c| {
            c.elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    rdkafka::Offset::Offset(o) => usize::try_from(o).ok(),
                    _ => None,
                })
                .sum()
        })
}

/// AlterPartitionReassignments of one partition through `addr`: the error code.
fn reassign_raw(addr: &str, topic: &str, partition: i32, target: Option<Vec<i32>>) -> i16 {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::{
        AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    };
    let mut c = Client::connect(addr, Duration::from_secs(5)).expect("connect");
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![ReassignablePartition::default()
                .with_partition_index(partition)
                .with_replicas(
                    target.map(|t| t.into_iter().map(BrokerId).collect()),
                )])]);
    let (_, r): (i16, AlterPartitionReassignmentsResponse) = c
        .call(ApiKey::AlterPartitionReassignments, 0, &req)
        .expect("AlterPartitionReassignments");
    r.responses[0].partitions[0].error_code
}

/// Partitions ListPartitionReassignments shows in progress at `addr`.
fn reassigning(addr: &str) -> usize {
    use kafka_protocol::messages::{
        ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
    };
    let mut c = Client::connect(addr, Duration::from_secs(5)).expect("connect");
    let (_, r): (i16, ListPartitionReassignmentsResponse) = c
        .call(
            ApiKey::ListPartitionReassignments,
            0,
            &ListPartitionReassignmentsRequest::default().with_timeout_ms(5000),
        )
        .expect("ListPartitionReassignments");
    r.topics.iter().map(|t| t.partitions.len()).sum()
}

#[test]
fn replicas_move_to_other_brokers_and_their_old_copies_go() {
    let cluster = Cluster::start_quorum(3, config, cluster_config);
    let a1 = cluster.nodes[0].addr.clone();
    assert_eq!(create(&a1, "single", 1, &[]), 0);
    assert_eq!(create(&a1, "pair", 2, &[]), 0);
    let mut acked = produce(&cluster.bootstrap(), "single", "s", 300);
    acked.extend(produce(&cluster.bootstrap(), "pair", "p", 300));
    let single = wait_placed(&a1, "single", Duration::from_secs(10), "single", |ps| {
        ps[0].leader > 0
    });
    let pair = wait_placed(&a1, "pair", Duration::from_secs(10), "pair", |ps| {
        ps[0].isr.len() == 2
    });
    let from = single[0].replicas[0];
    let to = (1..=3).find(|b| *b != from).expect("another broker");
    // The pair's partition 0 moves wholly: to the broker it did not use, and the
    // one of its two that leads (the leader leaves too when it is not kept).
    let third = (1..=3)
        .find(|b| !pair[0].replicas.contains(b))
        .expect("a third");
    let pair_target = vec![third, pair[0].replicas[1]];
    // Refusals: an unknown broker, a cancel with nothing in progress.
    assert_eq!(reassign_raw(&a1, "single", 0, Some(vec![9])), 39);
    assert_eq!(reassign_raw(&a1, "single", 0, None), 85);
    assert_eq!(reassign_raw(&a1, "single", 0, Some(vec![to])), 0);
    assert_eq!(reassign_raw(&a1, "pair", 0, Some(pair_target.clone())), 0);
    wait_placed(
        &a1,
        "single",
        Duration::from_secs(30),
        "single moved",
        |ps| ps[0].replicas == vec![to] && ps[0].leader == to,
    );
    let moved = wait_placed(&a1, "pair", Duration::from_secs(30), "pair moved", |ps| {
        ps[0].replicas == pair_target && ps[0].isr.len() == 2 && pair_target.contains(&ps[0].leader)
    });
    eprintln!("pair partition 0: {:?} -> {moved:?}", pair[0]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while reassigning(&a1) > 0 {
        assert!(Instant::now() < deadline, "reassignments still listed");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The old copies' directories go; the new ones hold the data.
    let old_dir = |b: i32, t: &str| {
        cluster.nodes[usize::try_from(b - 1).unwrap_or(0)]
            .data_dir()
            .join(t)
    };
    let left = pair[0]
        .replicas
        .iter()
        .copied()
        .find(|b| !pair_target.contains(b))
        .expect("one left");
    let deadline = Instant::now() + Duration::from_secs(20);
    while old_dir(from, "single-0").exists() || old_dir(left, "pair-0").exists() {
        assert!(Instant::now() < deadline, "old replicas still on disk");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(old_dir(to, "single-0").exists());
    let read = consume(&cluster.bootstrap(), "single", PARTITIONS, 300);
    let want: Acked = acked
        .iter()
        .filter(|(v, _)| v.starts_with('s'))
        .map(|(v, a)| (v.clone(), *a))
        .collect();
    check_acked(&want, &read);
    let read = consume(&cluster.bootstrap(), "pair", PARTITIONS, 300);
    let want: Acked = acked
        .iter()
        .filter(|(v, _)| v.starts_with('p'))
        .map(|(v, a)| (v.clone(), *a))
        .collect();
    check_acked(&want, &read);
}
