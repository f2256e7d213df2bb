//! Fetch answers stay within the request's `max_bytes` when the per-partition
//! limit is larger (librdkafka's own test suite found a node answering a
//! `fetch.max.bytes=1000000` consumer with 19 MB, which librdkafka refuses, so the
//! consumer never progressed). Kafka's rule (KIP-74): at most `max_bytes`, except
//! that the first batch of the first partition with data is returned whole.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::librdkafka::create_topic;
use crate::node::Node;

const PARTITIONS: i32 = 3;
const PER_PARTITION: usize = 8;
const RECORD_BYTES: usize = 900 << 10;

#[test]
fn a_consumer_with_fetch_max_bytes_below_its_partition_limit_reads_everything() {
    let node = Node::start();
    let topic = "big-records";
    create_topic(&node.addr, topic, PARTITIONS);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &node.addr)
        .set("acks", "all")
        // One 900 KiB record per batch (a batch may not exceed max.message.bytes).
        .set("batch.size", "1000000")
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    for p in 0..PARTITIONS {
        for i in 0..PER_PARTITION {
            let value = vec![b'a' + u8::try_from(i).expect("small"); RECORD_BYTES];
            let key = format!("p{p}-{i}");
            let sent = futures::executor::block_on(
                producer.send(
                    FutureRecord::to(topic)
                        .partition(p)
                        .key(&key)
                        .payload(&value),
                    Duration::from_secs(30),
                ),
            );
            assert!(sent.is_ok(), "{sent:?}");
        }
    }
    // librdkafka's test 0082 settings: the partition limit far above the response
    // limit, and a receive buffer just big enough for the response limit.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &node.addr)
        .set("group.id", "fetch-limits")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "1000000")
        .set("max.partition.fetch.bytes", "20000000")
        .set("receive.message.max.bytes", "1000512")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut got = 0usize;
    let deadline = Instant::now() + Duration::from_mins(1);
    while got < PER_PARTITION * usize::try_from(PARTITIONS).expect("count") {
        assert!(
            Instant::now() < deadline,
            "only {got} records in a minute\nbroker log:\n{}",
            node.log()
        );
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                assert_eq!(m.payload().map(<[u8]>::len), Some(RECORD_BYTES));
                got += 1;
            }
            Some(Err(e)) => panic!("consumer error: {e}\nbroker log:\n{}", node.log()),
            None => {}
        }
    }
}
