//! The test kit (a dev-dependency only): what every test that runs Sluice for real
//! needs.
//!
//! - [`Node`]: one real `sluice serve` process on a temporary data directory, on a
//!   loopback address of its own if asked (127.0.0.1, 127.0.0.2, ... with the same
//!   port), waited for until it serves; stop (SIGTERM), kill (SIGKILL), pause
//!   (SIGSTOP), resume (SIGCONT), restart on the same directory and address.
//! - [`Cluster`]: N nodes on 127.0.0.1..=127.0.0.N sharing one Kafka port.
//! - [`wire::Client`]: the one raw Kafka client for tests (the project's blocking
//!   client, with version negotiation); tests that must send malformed frames keep
//!   writing bytes themselves.
//! - [`Seed`]: a seeded RNG for fault schedules, printed with the command that
//!   replays it when the test fails.
//! - [`run`], [`http`]: a command's output; one raw HTTP exchange.

// Test support: a failed step panics with what went wrong, as a test would.
#![allow(clippy::expect_used)]

mod cluster;
mod node;
mod process;
mod seed;

pub use cluster::Cluster;
pub use node::{free_fixed_port, free_fixed_port_on, sluice_bin, Node, NodeOptions};
pub use process::{http, run, try_http};
pub use seed::Seed;

/// The raw Kafka wire client, and the few requests tests and benchmarks send
/// through it again and again.
pub mod wire {
    use std::time::Duration;

    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        ApiKey, CreateTopicsRequest, CreateTopicsResponse, MetadataRequest, MetadataResponse,
        ProduceRequest, ProduceResponse, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    pub use sluice_net::client::{Client, ClientError, ClientResult};

    /// Metadata (v12) of every topic, as `addr` answers.
    pub fn metadata(addr: &str) -> Result<MetadataResponse, String> {
        let mut c = Client::connect(addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
        c.call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .map(|(_, r)| r)
        .map_err(|e| e.to_string())
    }

    /// CreateTopics (v5) of one topic through `addr`: its error code.
    pub fn create_topic(
        addr: &str,
        topic: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> Result<i16, String> {
        let mut c = Client::connect(addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_num_partitions(partitions)
                .with_replication_factor(replication_factor)
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_string((*k).to_string()))
                                .with_value(Some(StrBytes::from_string((*v).to_string())))
                        })
                        .collect(),
                )]);
        let (_, r): (i16, CreateTopicsResponse) = c
            .call(ApiKey::CreateTopics, 5, &req)
            .map_err(|e| e.to_string())?;
        Ok(r.topics.first().map_or(-1, |t| t.error_code))
    }

    /// Produce (in `version`, with `acks`) of one record holding `value` to
    /// `topic`-`partition`.
    pub fn produce_one(
        c: &mut Client,
        version: i16,
        acks: i16,
        (topic, partition): (&str, i32),
        value: &[u8],
    ) -> ClientResult<ProduceResponse> {
        let batch = sluice_engine::batch::build_batch(
            &[sluice_engine::batch::RecordSpec {
                key: None,
                value: Some(value),
                headers: &[],
                timestamp_delta: 0,
            }],
            0,
            sluice_engine::batch::NO_PRODUCER,
        );
        let req = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch.into()))])]);
        c.call_version(ApiKey::Produce, version, &req)
    }
}
