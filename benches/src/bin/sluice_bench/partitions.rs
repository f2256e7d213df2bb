//! The many-partitions scenario: create a topic with N partitions, write a small
//! batch to every one, read every one back, and show the broker's memory idle
//! before and after (what the memory bar is about: many partitions that are mostly
//! idle).

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use crate::raw_consume::Conn;

/// Partitions named in one Produce or Fetch request.
const PER_REQUEST: i32 = 100;
/// Records in the batch written to each partition.
const RECORDS: usize = 10;

#[derive(Debug, Serialize)]
pub struct PartitionsReport {
    pub partitions: i32,
    pub create_seconds: f64,
    pub produce_seconds: f64,
    pub fetch_seconds: f64,
    pub rss_mib_before: Option<f64>,
    pub rss_mib_after_create: Option<f64>,
    pub rss_mib_idle_with_data: Option<f64>,
}

fn rss_mib(pid: Option<u32>) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)]
    pid.and_then(crate::stats::rss_kib)
        .map(|k| k as f64 / 1024.0)
}

fn name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.into()))
}

pub fn run(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    broker_pid: Option<u32>,
) -> Result<PartitionsReport, String> {
    let rss_before = rss_mib(broker_pid);
    let t = Instant::now();
    crate::ensure_topic(bootstrap, topic, partitions)?;
    let create_seconds = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    let rss_after_create = rss_mib(broker_pid);

    let mut conn = Conn::connect(bootstrap)?;
    let value = [b'v'; 100];
    let values: Vec<&[u8]> = vec![&value; RECORDS];
    let batch = Bytes::from(sluice_engine::batch::build_values_batch(
        &values,
        1_700_000_000_000,
        sluice_engine::batch::NO_PRODUCER,
    ));
    let t = Instant::now();
    for first in (0..partitions).step_by(PER_REQUEST as usize) {
        let req = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(
                    (first..(first + PER_REQUEST).min(partitions))
                        .map(|p| {
                            PartitionProduceData::default()
                                .with_index(p)
                                .with_records(Some(batch.clone()))
                        })
                        .collect(),
                )]);
        let r: ProduceResponse = conn.call(ApiKey::Produce, 9, &req)?;
        for p in r.responses.iter().flat_map(|t| &t.partition_responses) {
            if p.error_code != 0 {
                return Err(format!(
                    "produce to partition {}: error code {}",
                    p.index, p.error_code
                ));
            }
        }
    }
    let produce_seconds = t.elapsed().as_secs_f64();

    let t = Instant::now();
    for first in (0..partitions).step_by(PER_REQUEST as usize) {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_max_bytes(50 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(
                    (first..(first + PER_REQUEST).min(partitions))
                        .map(|p| {
                            FetchPartition::default()
                                .with_partition(p)
                                .with_fetch_offset(0)
                                .with_partition_max_bytes(1 << 20)
                        })
                        .collect(),
                )]);
        let r: FetchResponse = conn.call(ApiKey::Fetch, 12, &req)?;
        let mut answered = 0;
        for p in r.responses.iter().flat_map(|t| &t.partitions) {
            let got = p.records.as_ref().map_or(0, Bytes::len);
            if p.error_code != 0 || got < batch.len() {
                return Err(format!(
                    "fetch of partition {}: error code {}, {got} bytes (expected a {}-byte batch)",
                    p.partition_index,
                    p.error_code,
                    batch.len()
                ));
            }
            answered += 1;
        }
        let asked = (first + PER_REQUEST).min(partitions) - first;
        if answered != asked {
            return Err(format!("a fetch of {asked} partitions answered {answered}"));
        }
    }
    let fetch_seconds = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    Ok(PartitionsReport {
        partitions,
        create_seconds,
        produce_seconds,
        fetch_seconds,
        rss_mib_before: rss_before,
        rss_mib_after_create: rss_after_create,
        rss_mib_idle_with_data: rss_mib(broker_pid),
    })
}
