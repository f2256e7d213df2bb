//! librdkafka (through the `rdkafka` crate) against a real `sluice serve`: keyed
//! records with headers, acks=all, every compression codec, consumed back and
//! compared field by field.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::node::Node;

const PARTITIONS: i32 = 6;

pub fn create_topic(addr: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = futures::executor::block_on(admin.create_topics(
        &[topic],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))
    .expect("create_topics");
    for r in results {
        r.expect("topic created");
    }
}

/// What was sent: key, value, header value, timestamp; where it landed.
struct Sent {
    key: String,
    value: Vec<u8>,
    timestamp: i64,
    partition: i32,
    offset: i64,
}

fn produce(addr: &str, topic: &str, codec: &str, count: usize, ts0: i64) -> Vec<Sent> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("compression.codec", codec)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let mut futures = Vec::with_capacity(count);
    let mut sent = Vec::with_capacity(count);
    for i in 0..count {
        let key = format!("key-{i}");
        let value = format!("value-{i}-{}", "x".repeat(i % 200)).into_bytes();
        let ts = ts0 + i64::try_from(i).expect("i");
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "i",
                value: Some(&i.to_string()),
            })
            .insert(Header {
                key: "codec",
                value: Some(codec),
            });
        let mut record = FutureRecord::to(topic)
            .key(&key)
            .payload(&value)
            .timestamp(ts)
            .headers(headers);
        loop {
            match producer.send_result(record) {
                Ok(f) => {
                    futures.push(f);
                    break;
                }
                Err((e, r)) => {
                    record = r;
                    // Queue full: let deliveries drain.
                    assert!(
                        matches!(
                            e,
                            rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull
                            )
                        ),
                        "send: {e}"
                    );
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        sent.push(Sent {
            key,
            value,
            timestamp: ts,
            partition: -1,
            offset: -1,
        });
    }
    for (s, f) in sent.iter_mut().zip(futures) {
        let d = futures::executor::block_on(f)
            .expect("delivery future")
            .unwrap_or_else(|(e, _)| panic!("{codec}: record not delivered: {e}"));
        s.partition = d.partition;
        s.offset = d.offset;
    }
    sent
}

fn consume_all(
    addr: &str,
    topic: &str,
    expect: usize,
) -> BTreeMap<(i32, i64), rdkafka::message::OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        // librdkafka needs a group id even to assign partitions by hand; nothing is
        // committed and no group is joined.
        .set("group.id", "assign-only")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut got = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_mins(2);
    while got.len() < expect {
        assert!(
            Instant::now() < deadline,
            "only {} of {expect} records consumed",
            got.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            let previous = got.insert((m.partition(), m.offset()), m.detach());
            assert!(previous.is_none(), "offset read twice");
        }
    }
    got
}

#[test]
fn keyed_records_with_headers_round_trip_with_every_codec() {
    // A 1 MiB batch cache per shard, so that most of what is consumed is read back
    // from the segment files (and sent with sendfile), not from memory.
    let node = Node::start_with_config("[storage]\ncache_mib_per_shard = 1\n");
    let count = 100_000;
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("rt-{codec}");
        create_topic(&node.addr, &topic, PARTITIONS);
        let ts0 = 1_700_000_000_000;
        let sent = produce(&node.addr, &topic, codec, count, ts0);
        let got = consume_all(&node.addr, &topic, count);
        assert_eq!(got.len(), count, "{codec}");
        // Offsets are contiguous from 0 in every partition.
        let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        for (p, o) in got.keys() {
            per_partition.entry(*p).or_default().push(*o);
        }
        assert_eq!(
            per_partition.len(),
            PARTITIONS as usize,
            "{codec}: every partition used"
        );
        for (p, offsets) in &per_partition {
            let want: Vec<i64> = (0..i64::try_from(offsets.len()).expect("len")).collect();
            assert_eq!(offsets, &want, "{codec}: partition {p} offsets");
        }
        for (i, s) in sent.iter().enumerate() {
            let m = got.get(&(s.partition, s.offset)).unwrap_or_else(|| {
                panic!(
                    "{codec}: record {i} missing at {}/{}",
                    s.partition, s.offset
                )
            });
            assert_eq!(m.key(), Some(s.key.as_bytes()), "{codec}: key of {i}");
            assert_eq!(
                m.payload(),
                Some(s.value.as_slice()),
                "{codec}: value of {i}"
            );
            assert_eq!(
                m.timestamp(),
                rdkafka::Timestamp::CreateTime(s.timestamp),
                "{codec}: timestamp of {i}"
            );
            let h = m.headers().expect("headers");
            assert_eq!(h.count(), 2, "{codec}: headers of {i}");
            let h0 = h.get(0);
            assert_eq!((h0.key, h0.value), ("i", Some(i.to_string().as_bytes())));
            let h1 = h.get(1);
            assert_eq!((h1.key, h1.value), ("codec", Some(codec.as_bytes())));
        }
    }
}
