//! Several nodes on 127.0.0.1, 127.0.0.2, ... with the same Kafka port.

use std::net::IpAddr;

use crate::node::{free_fixed_port_on, Node, NodeOptions};

/// N nodes, node `i` (1-based, its `node_id`) on 127.0.0.`i`.
#[derive(Debug)]
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// The Kafka port every node listens on.
    pub port: u16,
}

impl Cluster {
    /// Starts `n` nodes; `toml(i)` is node `i`'s configuration (with its
    /// `node_id`). Returns once every node serves Kafka clients.
    pub fn start(n: u8, toml: impl Fn(u8) -> String) -> Cluster {
        assert!((1..=250).contains(&n), "1 to 250 nodes");
        let hosts: Vec<IpAddr> = (1..=n).map(|i| IpAddr::from([127, 0, 0, i])).collect();
        let port = free_fixed_port_on(&hosts);
        let nodes = (1..=n)
            .zip(&hosts)
            .map(|(i, host)| {
                Node::start_with(NodeOptions {
                    host: *host,
                    port: Some(port),
                    toml: toml(i),
                    ..NodeOptions::default()
                })
            })
            .collect();
        Cluster { nodes, port }
    }

    /// Node `i` (1-based).
    pub fn node(&mut self, i: u8) -> &mut Node {
        &mut self.nodes[usize::from(i) - 1]
    }

    /// Every node's Kafka address, comma separated (`bootstrap.servers`).
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.addr.clone())
            .collect::<Vec<_>>()
            .join(",")
    }
}
