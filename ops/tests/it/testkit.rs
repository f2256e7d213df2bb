//! The test kit itself, on real processes: three nodes on 127.0.0.1, .2 and .3 with
//! the same Kafka port, each its own broker with its own data; faults from a seeded
//! schedule (SIGSTOP/SIGCONT, SIGKILL and restart, SIGTERM and restart) leave the
//! others answering and the faulted node answering again once it is back.

use std::time::Duration;

use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use rand::Rng;
use sluice_testkit::wire::Client;
use sluice_testkit::{Cluster, Seed};

/// The node's id as it answers Metadata, or the error.
fn answers(addr: &str) -> Result<i32, String> {
    let mut c = Client::connect(addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    let (_, r): (i16, MetadataResponse) = c
        .call(ApiKey::Metadata, 12, &MetadataRequest::default())
        .map_err(|e| e.to_string())?;
    r.brokers
        .first()
        .map(|b| b.node_id.0)
        .ok_or_else(|| "no broker in Metadata".to_string())
}

#[test]
fn three_nodes_on_loopback_addresses_take_faults_from_a_seeded_schedule() {
    let seed = Seed::take("three_nodes_on_loopback_addresses_take_faults_from_a_seeded_schedule");
    let mut rng = seed.rng();
    let mut cluster = Cluster::start(3, |i| format!("node_id = {i}\n"));
    let port = cluster.port;
    for (i, n) in (1..=3u8).zip(&cluster.nodes) {
        assert_eq!(n.addr, format!("127.0.0.{i}:{port}"));
        assert_eq!(answers(&n.addr), Ok(i32::from(i)), "{}", n.log());
    }
    let dirs: std::collections::BTreeSet<_> = cluster
        .nodes
        .iter()
        .map(sluice_testkit::Node::data_dir)
        .collect();
    assert_eq!(dirs.len(), 3);

    for round in 0..3 {
        let victim: u8 = rng.gen_range(1..=3);
        let fault = rng.gen_range(0..3);
        eprintln!("round {round}: fault {fault} on node {victim}");
        let others: Vec<String> = (1..=3u8)
            .filter(|i| *i != victim)
            .map(|i| cluster.node(i).addr.clone())
            .collect();
        let addr = cluster.node(victim).addr.clone();
        match fault {
            0 => {
                cluster.node(victim).pause();
                assert!(answers(&addr).is_err(), "a paused node answered");
                for o in &others {
                    assert!(answers(o).is_ok(), "{o} while {addr} is paused");
                }
                cluster.node(victim).resume();
            }
            1 => {
                cluster.node(victim).kill();
                assert!(answers(&addr).is_err(), "a killed node answered");
                for o in &others {
                    assert!(answers(o).is_ok(), "{o} while {addr} is down");
                }
                cluster.node(victim).restart();
            }
            _ => {
                assert!(cluster.node(victim).stop().success());
                cluster.node(victim).restart();
            }
        }
        assert_eq!(answers(&addr), Ok(i32::from(victim)), "round {round}");
    }
    drop(seed);
}
