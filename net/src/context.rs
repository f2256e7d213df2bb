//! What every handler on a shard can see of the broker.

use std::sync::Arc;

use sluice_engine::ShardRouter;

use crate::topics::TopicStore;

/// Broker settings the protocol layer reads (the `[kafka]` part of the config).
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// This node's id (Kafka's `node.id`).
    pub node_id: i32,
    /// The host and port clients are told to connect to.
    pub advertised_host: String,
    pub advertised_port: u16,
    /// `socket.request.max.bytes`.
    pub request_max_bytes: usize,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `num.partitions`: partitions of an auto-created topic.
    pub default_partitions: i32,
    /// Longest a Fetch may wait (caps the client's `max_wait_ms`).
    pub fetch_wait_max_ms: u64,
    /// How long a stopping shard waits for its connections to answer what they read.
    pub drain_timeout: std::time::Duration,
    /// Consumer groups and committed offsets.
    pub groups: crate::group::coordinator::GroupSettings,
    /// Set when this node is one of a cluster (`cluster.voters`); `None` is the
    /// single-node store.
    pub cluster: Option<ClusterSettings>,
}

/// How this node takes part in a cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// The metadata quorum (its `dir` is set by the broker to
    /// `<data_dir>/metadata`).
    pub quorum: sluice_raft::QuorumSettings,
    /// `cluster.rack` (Kafka's `broker.rack`).
    pub rack: Option<String>,
    /// `cluster.session_timeout_ms`: a broker not heard from for this long is fenced.
    pub session_timeout: std::time::Duration,
    /// `cluster.replica_lag_time_max_ms` (Kafka's `replica.lag.time.max.ms`).
    pub replica_lag_time_max: std::time::Duration,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            node_id: 1,
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            request_max_bytes: crate::frame::REQUEST_MAX_BYTES_DEFAULT,
            auto_create_topics: true,
            default_partitions: 1,
            fetch_wait_max_ms: 30_000,
            drain_timeout: std::time::Duration::from_secs(15),
            groups: crate::group::coordinator::GroupSettings::default(),
            cluster: None,
        }
    }
}

/// The broker as its handlers see it.
pub struct BrokerContext {
    pub settings: BrokerSettings,
    pub router: ShardRouter,
    pub topics: Arc<TopicStore>,
    /// Id of the shard this context serves.
    pub shard: usize,
    /// The client's address, in a connection's own context (Kafka's client host).
    pub peer: Option<std::net::IpAddr>,
    /// This shard's services (coordinators, fetch sessions, leadership hooks).
    pub services: std::rc::Rc<crate::services::ShardServices>,
}

impl BrokerContext {
    /// This context for one connection from `peer`.
    #[must_use]
    pub fn for_peer(&self, peer: Option<std::net::IpAddr>) -> BrokerContext {
        BrokerContext {
            settings: self.settings.clone(),
            router: self.router.clone(),
            topics: self.topics.clone(),
            shard: self.shard,
            peer,
            services: self.services.clone(),
        }
    }

    pub fn node_id(&self) -> i32 {
        self.settings.node_id
    }
}
