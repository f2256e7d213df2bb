//! A topic's `compression.type` works as in Kafka: librdkafka producers send
//! batches in every codec; a topic set to a codec stores every batch in that codec
//! (recompressed on the owning shard), `uncompressed` stores them decompressed,
//! `producer` keeps each as sent. What is stored is read from the log with raw
//! Fetch requests (the codec bits of each batch), and a librdkafka consumer gets
//! every record back intact.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{fetch_request, ApiKey, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_engine::batch::BatchHeader;

use crate::node::Node;

/// (topic's compression.type, extra config, the codec every stored batch has;
/// `None`: each batch as sent).
type Case = (
    &'static str,
    Option<(&'static str, &'static str)>,
    Option<i16>,
);

const SOURCES: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
const PER_SOURCE: usize = 300;

/// Codec ids of librdkafka's `compression.codec` names.
fn codec_id(name: &str) -> i16 {
    match name {
        "gzip" => 1,
        "snappy" => 2,
        "lz4" => 3,
        "zstd" => 4,
        _ => 0,
    }
}

fn produce(addr: &str, topic: &str, codec: &str) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("compression.codec", codec)
        // Idempotent: sequence numbers must survive recompression.
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("acks", "all")
        .create()
        .expect("producer");
    let sends: Vec<_> = (0..PER_SOURCE)
        .map(|i| {
            let key = format!("{codec}-{i}");
            let value = format!("{codec} value {i} {}", "abc".repeat(i % 50));
            producer
                .send_result(FutureRecord::to(topic).key(&key).payload(&value))
                .map_err(|(e, _)| e)
                .expect("queued")
        })
        .collect();
    for s in sends {
        let delivered = futures::executor::block_on(s).expect("delivery");
        assert!(delivered.is_ok(), "{topic} {codec}: {delivered:?}");
    }
}

/// The codec of every batch stored in partition 0, in log order.
fn stored_codecs(addr: &str, topic: &str) -> Vec<i16> {
    let mut c =
        sluice_net::client::Client::connect(addr, Duration::from_secs(10)).expect("connect");
    let mut codecs = Vec::new();
    let mut offset = 0i64;
    loop {
        let req = FetchRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_max_wait_ms(0)
            .with_max_bytes(8 << 20)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(8 << 20)])]);
        let (_, r): (i16, FetchResponse) = c.call(ApiKey::Fetch, 11, &req).expect("fetch");
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        let data = p.records.clone().unwrap_or_default();
        let mut at = 0usize;
        while let Some(h) = BatchHeader::parse(&data[at..]) {
            let size = h.total_bytes().expect("size");
            assert!(sluice_engine::batch::crc_matches(&data[at..at + size]));
            codecs.push(h.compression());
            offset = h.last_offset() + 1;
            at += size;
        }
        if offset >= p.high_watermark {
            return codecs;
        }
    }
}

/// Every (key, value) of the topic, through a librdkafka consumer.
fn consume_all(addr: &str, topic: &str, expect: usize) -> BTreeMap<String, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let mut got = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_mins(1);
    while got.len() < expect {
        assert!(
            Instant::now() < deadline,
            "{topic}: {} of {expect}",
            got.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("record");
            let key = String::from_utf8(m.key().expect("key").to_vec()).expect("utf8");
            let value = String::from_utf8(m.payload().expect("value").to_vec()).expect("utf8");
            got.insert(key, value);
        }
    }
    got
}

#[test]
fn a_topics_compression_type_is_how_its_batches_are_stored() {
    let node = Node::start();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &node.addr)
        .create()
        .expect("admin");
    let topics: [Case; 5] = [
        ("gzip", Some(("compression.gzip.level", "9")), Some(1)),
        ("snappy", None, Some(2)),
        ("lz4", None, Some(3)),
        ("zstd", Some(("compression.zstd.level", "10")), Some(4)),
        ("uncompressed", None, Some(0)),
    ];
    let mut new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(codec, extra, _)| {
            let t =
                NewTopic::new(codec, 1, TopicReplication::Fixed(1)).set("compression.type", codec);
            match extra {
                Some((k, v)) => t.set(k, v),
                None => t,
            }
        })
        .collect();
    new.push(NewTopic::new("producer", 1, TopicReplication::Fixed(1)));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for r in futures::executor::block_on(admin.create_topics(&new, &opts)).expect("create") {
        r.expect("topic created");
    }
    let all = topics
        .iter()
        .map(|(t, _, want)| (*t, *want))
        .chain([("producer", None)]);
    for (topic, want) in all {
        let mut sent_codecs = Vec::new();
        for source in SOURCES {
            produce(&node.addr, topic, source);
            sent_codecs.push(codec_id(source));
        }
        let stored = stored_codecs(&node.addr, topic);
        assert!(!stored.is_empty());
        if let Some(codec) = want {
            assert!(
                stored.iter().all(|c| *c == codec),
                "{topic}: stored codecs {stored:?}"
            );
        } else {
            // As sent: the codecs appear in the order they were produced.
            let mut seen = stored.clone();
            seen.dedup();
            assert_eq!(seen, sent_codecs, "{topic}");
        }
        let got = consume_all(&node.addr, topic, SOURCES.len() * PER_SOURCE);
        for source in SOURCES {
            for i in 0..PER_SOURCE {
                let value = format!("{source} value {i} {}", "abc".repeat(i % 50));
                assert_eq!(
                    got.get(&format!("{source}-{i}")),
                    Some(&value),
                    "{topic} {source} {i}"
                );
            }
        }
    }
}
