//! The metadata image: pure data, no I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One version of the cluster's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataImage {
    /// Index of the last command applied (0: nothing yet).
    pub version: u64,
    /// Kafka's cluster id (empty until the first command sets it).
    pub cluster_id: String,
    /// Topics by name.
    pub topics: BTreeMap<String, Arc<TopicRecord>>,
    /// Producer ids below this were handed out as blocks (never again).
    pub producer_ids_reserved: i64,
    /// Brokers that registered, by node id.
    #[serde(default)]
    pub brokers: BTreeMap<i32, BrokerRecord>,
    /// Dynamic broker configs (Kafka's), by resource: `""` the cluster-wide
    /// default, else a broker id; values as given (validated before proposed).
    #[serde(default)]
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
}

/// A broker as it registered: where Kafka clients reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerRecord {
    pub id: i32,
    /// Chosen by the broker at each start; a restart registers a new one.
    pub incarnation: u64,
    pub rack: Option<String>,
    pub host: String,
    pub port: u16,
    /// Missed its session: its partitions are led elsewhere or offline.
    pub fenced: bool,
}

/// Where one partition lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionRecord {
    /// Broker ids; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// The leading broker, or -1 while the partition is offline.
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    /// Goes up with every change of this record.
    pub partition_epoch: i32,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicRecord {
    pub id: Uuid,
    pub partitions: i32,
    /// Config overrides as given (validated before they were proposed).
    pub configs: BTreeMap<String, String>,
    /// One record per partition; empty for a topic created before brokers were
    /// recorded (the first broker to register takes them all).
    #[serde(default)]
    pub placement: Vec<PartitionRecord>,
    /// Partitions whose replicas are being moved, by partition.
    #[serde(default)]
    pub reassigning: BTreeMap<i32, Reassignment>,
}

/// A partition's replicas being moved (Kafka's AlterPartitionReassignments): its
/// record's replicas are the target's followed by the ones leaving, until every
/// added replica is in sync; then the record keeps the target alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reassignment {
    pub target: Vec<i32>,
    /// The replicas before, for a cancellation.
    pub original: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicRecord>> {
        self.topics.get(name)
    }

    /// Brokers not fenced, by id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRecord> {
        self.brokers.values().filter(|b| !b.fenced)
    }
}
