//! Restarts of a real `sluice serve`: after SIGTERM topics, configs and data are all
//! there; after SIGKILL in the middle of acks=all produce, every acknowledged record
//! is there at the offset it was acknowledged with, and offsets are contiguous.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::node::Node;

fn admin(addr: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("admin client")
}

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))
}

fn retention_ms(addr: &str, topic: &str) -> String {
    let r = futures::executor::block_on(
        admin(addr).describe_configs(&[ResourceSpecifier::Topic(topic)], &opts()),
    )
    .expect("describe_configs");
    let res = r
        .into_iter()
        .next()
        .expect("one result")
        .expect("described");
    res.get("retention.ms")
        .and_then(|e| e.value.clone())
        .expect("retention.ms listed")
}

/// Every record of `partitions` partitions, keyed by (partition, offset).
fn consume_all(addr: &str, topic: &str, partitions: i32) -> BTreeMap<(i32, i64), Vec<u8>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "assign-only")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut got = BTreeMap::new();
    let mut at_end = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_mins(1);
    while at_end.len() < usize::try_from(partitions).expect("partitions") {
        assert!(Instant::now() < deadline, "consume did not reach the end");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                got.insert(
                    (m.partition(), m.offset()),
                    m.payload().unwrap_or_default().to_vec(),
                );
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None => {}
        }
    }
    got
}

/// Creates a topic with AdminClient.
fn create_topic(addr: &str, new: &NewTopic<'_>) {
    for r in futures::executor::block_on(admin(addr).create_topics([new], &opts())).expect("create")
    {
        r.expect("created");
    }
}

/// Produces `n` records `"{label} {i}"` round robin over `partitions`, all queued
/// before any is awaited; panics unless every one is delivered.
fn produce(addr: &str, acks: &str, topic: &str, partitions: i32, n: i32, label: &str) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", acks)
        .create()
        .expect("producer");
    let sent: Vec<_> = (0..n)
        .map(|i| {
            let value = format!("{label} {i}");
            producer
                .send_result(
                    FutureRecord::<(), _>::to(topic)
                        .payload(&value)
                        .partition(i % partitions),
                )
                .unwrap_or_else(|_| panic!("queue full"))
        })
        .collect();
    for f in sent {
        futures::executor::block_on(f)
            .expect("future")
            .unwrap_or_else(|(e, _)| panic!("not delivered: {e}"));
    }
}

#[test]
fn sigterm_keeps_topics_configs_and_data() {
    let mut node = Node::start();
    let topic = "kept";
    create_topic(
        &node.addr,
        &NewTopic::new(topic, 3, TopicReplication::Fixed(1)).set("retention.ms", "3600000"),
    );
    assert_eq!(retention_ms(&node.addr, topic), "3600000");
    // AlterConfigs replaces every override (Kafka's semantics), so both are sent.
    let alter = AlterConfig::new(ResourceSpecifier::Topic(topic))
        .set("segment.bytes", "1048576")
        .set("retention.ms", "7200000");
    for r in futures::executor::block_on(admin(&node.addr).alter_configs(&[alter], &opts()))
        .expect("alter")
    {
        r.expect("altered");
    }
    produce(&node.addr, "1", topic, 3, 3000, "record");
    let before = consume_all(&node.addr, topic, 3);
    assert_eq!(before.len(), 3000);

    let status = node.stop();
    assert!(status.success(), "exit status {status}\n{}", node.log());
    assert!(node.log().contains("stopped cleanly"), "{}", node.log());
    node.restart();

    let md = admin(&node.addr)
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    assert_eq!(md.topics()[0].partitions().len(), 3);
    assert_eq!(retention_ms(&node.addr, topic), "7200000");
    let r = futures::executor::block_on(
        admin(&node.addr).describe_configs(&[ResourceSpecifier::Topic(topic)], &opts()),
    )
    .expect("describe");
    let res = r.into_iter().next().expect("one").expect("ok");
    assert_eq!(
        res.get("segment.bytes")
            .and_then(|e| e.value.clone())
            .as_deref(),
        Some("1048576")
    );
    let reread = consume_all(&node.addr, topic, 3);
    assert_eq!(before, reread);
}

#[test]
fn sigkill_during_acks_all_produce_loses_no_acknowledged_record() {
    const ROUNDS: usize = 20;
    const PARTITIONS: i32 = 3;
    let mut node = Node::start();
    let topic = "crashy";
    create_topic(
        &node.addr,
        &NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1)),
    );
    // (partition, offset) -> value of every acknowledged record.
    let mut acked: BTreeMap<(i32, i64), Vec<u8>> = BTreeMap::new();
    for round in 0..ROUNDS {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &node.addr)
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "2000")
            .set("retries", "0")
            .create()
            .expect("producer");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let topic2 = topic.to_string();
        let sender = std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut i = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let value = format!("round {round} record {i}").into_bytes();
                let record = FutureRecord::<(), _>::to(&topic2).payload(&value);
                match producer.send_result(record) {
                    Ok(f) => pending.push((value, f)),
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
                i += 1;
                if i.is_multiple_of(64) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            let mut ok = Vec::new();
            for (value, f) in pending {
                if let Ok(Ok(d)) = futures::executor::block_on(f) {
                    ok.push(((d.partition, d.offset), value));
                }
            }
            ok
        });
        std::thread::sleep(Duration::from_millis(300 + 17 * (round as u64 % 7)));
        node.kill();
        stop.store(true, Ordering::Relaxed);
        let ok = sender.join().expect("sender");
        for (at, value) in ok {
            assert!(
                acked.insert(at, value).is_none(),
                "round {round}: offset {at:?} acknowledged twice"
            );
        }
        node.restart();
    }
    assert!(
        acked.len() > ROUNDS,
        "too few acknowledged records to mean anything"
    );
    let got = consume_all(&node.addr, topic, PARTITIONS);
    for (at, value) in &acked {
        assert_eq!(
            got.get(at),
            Some(value),
            "acknowledged record at {at:?} lost or changed"
        );
    }
    for p in 0..PARTITIONS {
        let offsets: Vec<i64> = got.keys().filter(|k| k.0 == p).map(|k| k.1).collect();
        let want: Vec<i64> = (0..i64::try_from(offsets.len()).expect("len")).collect();
        assert_eq!(offsets, want, "partition {p} offsets are not contiguous");
    }
}

/// A data directory of the release before the metadata store: `topics.json` is
/// imported on first start (topic id, partitions, configs, cluster id, reserved
/// producer ids), a topic it marked `deleting` is deleted, partition directories it
/// does not list are adopted with their data, and everything stays across the next
/// restart, which reads the store alone.
#[test]
fn a_topics_json_data_directory_is_imported_with_nothing_lost() {
    let mut node = Node::start();
    for (topic, partitions) in [("kept", 3), ("doomed", 2), ("orphan", 1)] {
        create_topic(
            &node.addr,
            &NewTopic::new(topic, partitions, TopicReplication::Fixed(1)),
        );
        produce(&node.addr, "all", topic, partitions, 300, topic);
    }
    let kept = consume_all(&node.addr, "kept", 3);
    let orphan = consume_all(&node.addr, "orphan", 1);
    assert_eq!((kept.len(), orphan.len()), (300, 300));
    // A group's committed offsets, in __consumer_offsets.
    let committed: Vec<(i32, i64)> = vec![(0, 17), (1, 42), (2, 5)];
    group_commit(&node.addr, "importer", "kept", &committed);
    assert_eq!(
        group_committed(&node.addr, "importer", "kept", 3),
        committed
    );
    let offsets_partitions = std::fs::read_dir(node.data_dir())
        .expect("data dir")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("__consumer_offsets-")
        })
        .count();
    assert!(node.stop().success(), "{}", node.log());

    // Turn the directory into what the previous release left.
    let dir = node.data_dir();
    std::fs::remove_dir_all(dir.join("metadata")).expect("remove the store");
    let cluster_id = "q1Sh-9_ITSWEsnxoBNJ8dw";
    let kept_id = "5c6a4a6e-1b7f-4a42-9e58-2f0d8a3c9b11";
    std::fs::write(
        dir.join("topics.json"),
        format!(
            r#"{{
  "version": 1,
  "cluster_id": "{cluster_id}",
  "producer_ids_reserved": 5000,
  "topics": {{
    "kept": {{ "id": "{kept_id}", "partitions": 3, "configs": {{ "retention.ms": "7200000" }} }},
    "doomed": {{ "id": "0f6a4a6e-1b7f-4a42-9e58-2f0d8a3c9b12", "partitions": 2, "deleting": true }},
    "__consumer_offsets": {{ "id": "0f6a4a6e-1b7f-4a42-9e58-2f0d8a3c9b13", "partitions": {offsets_partitions}, "configs": {{ "cleanup.policy": "compact" }} }}
  }}
}}"#
        ),
    )
    .expect("write topics.json");

    for start in 0..2 {
        node.restart();
        assert!(!dir.join("topics.json").exists(), "start {start}");
        assert!(dir.join("topics.json.imported").exists(), "start {start}");
        let admin = admin(&node.addr);
        assert_eq!(
            admin
                .inner()
                .fetch_cluster_id(Duration::from_secs(10))
                .as_deref(),
            Some(cluster_id),
            "start {start}"
        );
        let topics = user_topics(&node.addr);
        assert_eq!(
            topics,
            vec![("kept".to_string(), 3), ("orphan".to_string(), 1)],
            "start {start}\n{}",
            node.log()
        );
        let leftovers: Vec<String> = std::fs::read_dir(&dir)
            .expect("read data dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("doomed-"))
            .collect();
        assert!(leftovers.is_empty(), "start {start}: {leftovers:?}");
        assert_eq!(retention_ms(&node.addr, "kept"), "7200000");
        assert_eq!(consume_all(&node.addr, "kept", 3), kept);
        assert_eq!(consume_all(&node.addr, "orphan", 1), orphan);
        assert_eq!(
            group_committed(&node.addr, "importer", "kept", 3),
            committed,
            "start {start}"
        );
        // Ids reserved by the old release are never handed out again.
        let producer_id = new_producer_id(&node.addr);
        assert!(producer_id >= 5000, "start {start}: {producer_id}");
        assert!(node.stop().success(), "{}", node.log());
    }
}

/// A consumer of `group` that commits only when told.
fn group_member(addr: &str, group: &str) -> rdkafka::consumer::BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

/// Commits `offsets` ((partition, offset)) of `topic` for `group`, as a consumer
/// assigned those partitions does.
fn group_commit(addr: &str, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    use rdkafka::consumer::{CommitMode, Consumer};
    let consumer = group_member(addr, group);
    let mut tpl = rdkafka::TopicPartitionList::new();
    for (p, o) in offsets {
        tpl.add_partition_offset(topic, *p, rdkafka::Offset::Offset(*o))
            .expect("tpl");
    }
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
}

/// `group`'s committed offsets of `topic`'s partitions 0..`partitions`.
fn group_committed(addr: &str, group: &str, topic: &str, partitions: i32) -> Vec<(i32, i64)> {
    use rdkafka::consumer::Consumer;
    let consumer = group_member(addr, group);
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    consumer
        .committed_offsets(tpl, Duration::from_secs(30))
        .expect("committed offsets")
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset().to_raw().unwrap_or(-1)))
        .collect()
}

/// Topics (not internal ones) and their partition counts, by name.
fn user_topics(addr: &str) -> Vec<(String, usize)> {
    let md = admin(addr)
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let mut topics: Vec<(String, usize)> = md
        .topics()
        .iter()
        .filter(|t| !t.name().starts_with("__"))
        .map(|t| (t.name().to_string(), t.partitions().len()))
        .collect();
    topics.sort();
    topics
}

/// An idempotent producer's id from InitProducerId.
fn new_producer_id(addr: &str) -> i64 {
    use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse};
    let mut c =
        sluice_net::client::Client::connect(addr, Duration::from_secs(10)).expect("connect");
    let (_, r): (i16, InitProducerIdResponse) = c
        .call(
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(kafka_protocol::messages::ProducerId(-1))
                .with_producer_epoch(-1),
        )
        .expect("InitProducerId");
    assert_eq!(r.error_code, 0);
    r.producer_id.0
}

/// A topic deleted and created again under the same name, with the node stopped
/// before it applied either change (both are committed in its metadata log, as a
/// crash right after the commits leaves them): the new topic starts empty, and the
/// old topic's records are not adopted.
#[test]
fn a_topic_created_again_under_its_name_before_a_crash_starts_empty() {
    let mut node = Node::start();
    create_topic(
        &node.addr,
        &NewTopic::new("reborn", 2, TopicReplication::Fixed(1)),
    );
    produce(&node.addr, "all", "reborn", 2, 100, "old");
    assert_eq!(consume_all(&node.addr, "reborn", 2).len(), 100);
    assert!(node.stop().success(), "{}", node.log());

    // What the node would have committed just before a crash.
    let mut log =
        sluice_raft::LocalLog::open(&node.data_dir().join("metadata")).expect("metadata log");
    let old_id = log.image().topic("reborn").expect("registered").id;
    let new_id = uuid::Uuid::from_u128(0x5eed_0000_0000_0000_0000_0000_0000_0001);
    log.commit(sluice_raft::Command::DeleteTopic {
        name: "reborn".into(),
        id: old_id,
    })
    .expect("commit the delete");
    log.commit(sluice_raft::Command::CreateTopic {
        name: "reborn".into(),
        id: new_id,
        partitions: 3,
        configs: BTreeMap::new(),
        replication_factor: 1,
    })
    .expect("commit the create");
    drop(log);

    node.restart();
    assert_eq!(
        user_topics(&node.addr),
        vec![("reborn".to_string(), 3)],
        "{}",
        node.log()
    );
    let records = consume_all(&node.addr, "reborn", 3);
    assert!(records.is_empty(), "old records adopted: {}", records.len());
}
