//! Three voters, each on its own glommio executor and thread, talking over real TCP
//! on 127.0.0.1 with the project's RPC frames: they elect one leader, a command
//! committed through it is applied on all three, and when the leader stops the
//! other two elect a new one and go on committing.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use openraft::BasicNode;
use sluice_raft::quorum::harness::{test_config, Voter, Voters};
use sluice_raft::Command;
use uuid::Uuid;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_topic(voters: &Voters, ids: &[u64], topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in ids {
        while voters.0[i].image().topic(topic).is_none() {
            assert!(Instant::now() < deadline, "voter {i} never applied {topic}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn create(name: &str, id: u128) -> Command {
    Command::CreateTopic {
        name: name.into(),
        id: Uuid::from_u128(id),
        partitions: 6,
        configs: BTreeMap::new(),
        replication_factor: 1,
    }
}

#[test]
fn three_voters_elect_commit_everywhere_and_fail_over() {
    let root = tempfile::tempdir().unwrap();
    let addrs: BTreeMap<u64, String> = (1..=3)
        .map(|i| (i, format!("127.0.0.1:{}", free_port())))
        .collect();
    let mut voters = Voters(
        addrs
            .iter()
            .map(|(i, a)| {
                let dir = root.path().join(format!("v{i}"));
                (*i, Voter::start(*i, a, &dir, test_config()))
            })
            .collect(),
    );
    voters.0[&1]
        .initialize(
            addrs
                .iter()
                .map(|(i, a)| (*i, BasicNode::new(a.clone())))
                .collect(),
        )
        .expect("initialize");
    let all = [1, 2, 3];
    let within = Duration::from_secs(20);
    let out = voters
        .commit(
            &all,
            None,
            &Command::InitCluster {
                cluster_id: "three".into(),
            },
            within,
        )
        .expect("commit");
    assert!(out.result.is_ok());
    voters
        .commit(&all, None, &create("first", 1), within)
        .expect("commit")
        .result
        .expect("applied");
    wait_for_topic(&voters, &all, "first");
    assert!(all
        .iter()
        .all(|i| voters.0[i].image().cluster_id == "three"));

    let leader = voters.agreed_leader(&all, None, within).expect("a leader");
    let stopped = Instant::now();
    voters.0.get_mut(&leader).unwrap().stop();
    let rest: Vec<u64> = all.iter().copied().filter(|i| *i != leader).collect();
    let next = voters
        .agreed_leader(&rest, Some(leader), within)
        .expect("a new leader");
    eprintln!(
        "leader {leader} stopped; voter {next} leads after {} ms",
        stopped.elapsed().as_millis()
    );
    voters
        .commit(&rest, Some(leader), &create("second", 2), within)
        .expect("commit")
        .result
        .expect("applied");
    wait_for_topic(&voters, &rest, "second");
    assert!(rest
        .iter()
        .all(|i| voters.0[i].image().topic("first").is_some()));
}
