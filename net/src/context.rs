//! What every handler on a shard can see of the broker.

/// The broker as its handlers see it.
#[derive(Debug, Clone)]
pub struct BrokerContext {
    /// This node's id (Kafka's `node.id`).
    pub node_id: i32,
    /// The host and port clients are told to connect to.
    pub advertised_host: String,
    pub advertised_port: u16,
    /// `socket.request.max.bytes`.
    pub request_max_bytes: usize,
}
