//! Several nodes on 127.0.0.1, 127.0.0.2, ... with the same Kafka port: separate
//! single nodes ([`Cluster::start`]) or one cluster over a metadata quorum
//! ([`Cluster::start_quorum`]).

use std::net::IpAddr;

use crate::node::{free_fixed_port_on, Node, NodeOptions};

/// N nodes, node `i` (1-based, its `node_id`) on 127.0.0.`i`.
#[derive(Debug)]
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// The Kafka port every node listens on.
    pub port: u16,
    /// The cluster port every node answers its peers on (0: not one cluster).
    pub cluster_port: u16,
    /// `cluster.voters` of a quorum (empty: not one cluster).
    pub voters: String,
}

impl Cluster {
    /// Starts `n` nodes; `toml(i)` is node `i`'s configuration (with its
    /// `node_id`). Returns once every node serves Kafka clients.
    pub fn start(n: u8, toml: impl Fn(u8) -> String) -> Cluster {
        Cluster::launch(n, 0, &[], toml)
    }

    /// Starts `n` nodes as one cluster: every node a voter of the metadata quorum
    /// on the same cluster port, with `extra(i)` added to node `i`'s configuration
    /// (top-level keys, then `[cluster]` keys). Returns once every node serves
    /// Kafka clients (which needs a quorum).
    pub fn start_quorum(
        n: u8,
        top: impl Fn(u8) -> String,
        cluster: impl Fn(u8) -> String,
    ) -> Cluster {
        Cluster::start_quorum_with_env(n, top, cluster, &[])
    }

    /// [`Cluster::start_quorum`] with extra environment variables for every node.
    pub fn start_quorum_with_env(
        n: u8,
        top: impl Fn(u8) -> String,
        cluster: impl Fn(u8) -> String,
        envs: &[(&str, &str)],
    ) -> Cluster {
        let hosts: Vec<IpAddr> = (1..=n).map(|i| IpAddr::from([127, 0, 0, i])).collect();
        let cluster_port = loop {
            let p = free_fixed_port_on(&hosts);
            // Far from the Kafka port picked next, which starts at its own place.
            if p > 1024 {
                break p;
            }
        };
        let voters = (1..=n)
            .map(|i| format!("{i}@127.0.0.{i}:{cluster_port}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster::launch(n, cluster_port, envs, |i| {
            format!(
                "node_id = {i}\n{}\n[cluster]\nvoters = \"{voters}\"\n{}\n",
                top(i),
                cluster(i)
            )
        });
        c.voters = voters;
        c
    }

    /// Starts node `i` (on 127.0.0.`i`, the next after the last) as a broker that
    /// is not a voter: it joins the quorum as a learner. `top` is added to its
    /// configuration. Returns once it serves Kafka clients.
    pub fn join(&mut self, top: &str) -> &mut Node {
        assert!(!self.voters.is_empty(), "not a quorum");
        let i = u8::try_from(self.nodes.len() + 1).expect("at most 250 nodes");
        let host = IpAddr::from([127, 0, 0, i]);
        let toml = format!(
            "node_id = {i}\n{top}\n[cluster]\nvoters = \"{}\"\nlisten = \"127.0.0.{i}:{}\"\n",
            self.voters, self.cluster_port
        );
        let mut node = Node::launch(NodeOptions {
            host,
            port: Some(self.port),
            toml,
            ..NodeOptions::default()
        });
        node.wait_serving();
        self.nodes.push(node);
        self.nodes.last_mut().expect("just pushed")
    }

    fn launch(
        n: u8,
        cluster_port: u16,
        envs: &[(&str, &str)],
        toml: impl Fn(u8) -> String,
    ) -> Cluster {
        assert!((1..=250).contains(&n), "1 to 250 nodes");
        let hosts: Vec<IpAddr> = (1..=n).map(|i| IpAddr::from([127, 0, 0, i])).collect();
        let port = loop {
            let p = free_fixed_port_on(&hosts);
            if p != cluster_port {
                break p;
            }
        };
        let mut nodes: Vec<Node> = (1..=n)
            .zip(&hosts)
            .map(|(i, host)| {
                Node::launch(NodeOptions {
                    host: *host,
                    port: Some(port),
                    toml: toml(i),
                    envs: envs
                        .iter()
                        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                        .collect(),
                    ..NodeOptions::default()
                })
            })
            .collect();
        for node in &mut nodes {
            node.wait_serving();
        }
        Cluster {
            nodes,
            port,
            cluster_port,
            voters: String::new(),
        }
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
