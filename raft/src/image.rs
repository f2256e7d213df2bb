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
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicRecord {
    pub id: Uuid,
    pub partitions: i32,
    /// Config overrides as given (validated before they were proposed).
    pub configs: BTreeMap<String, String>,
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicRecord>> {
        self.topics.get(name)
    }
}
