//! Three voters, each on its own glommio executor and thread, talking over real TCP
//! on 127.0.0.1 with the project's RPC frames: they elect one leader, a command
//! committed through it is applied on all three, and when the leader stops the
//! other two elect a new one and go on committing.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use openraft::{BasicNode, Config, Raft};
use sluice_raft::quorum::{LogStore, Outcome, StateMachine, TypeConfig};
use sluice_raft::rpc::transport::{serve, Network};
use sluice_raft::{Command, MetadataImage};
use uuid::Uuid;

enum Ask {
    Init(BTreeMap<u64, BasicNode>),
    Write(Command, oneshot::Sender<Result<Outcome, String>>),
    Image(oneshot::Sender<MetadataImage>),
    Leader(oneshot::Sender<Option<u64>>),
    Stop(oneshot::Sender<()>),
}

struct Node {
    asks: mpsc::UnboundedSender<Ask>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    fn start(id: u64, addr: String, dir: PathBuf) -> Node {
        let (asks, mut rx) = mpsc::unbounded::<Ask>();
        let thread = std::thread::spawn(move || {
            glommio::LocalExecutorBuilder::default()
                .name(&format!("node-{id}"))
                .make()
                .expect("executor")
                .run(async move {
                    let config = Config {
                        heartbeat_interval: 50,
                        election_timeout_min: 300,
                        election_timeout_max: 600,
                        ..Config::default()
                    };
                    let log = LogStore::open(&dir).expect("log");
                    let sm = StateMachine::open(&dir).await.expect("state machine");
                    let raft: Raft<TypeConfig> = Raft::new(
                        id,
                        Arc::new(config.validate().unwrap()),
                        Network::default(),
                        log,
                        sm.clone(),
                    )
                    .await
                    .expect("raft");
                    let listener = glommio::net::TcpListener::bind(addr.as_str()).expect("bind");
                    glommio::spawn_local(serve(listener, raft.clone())).detach();
                    while let Some(ask) = rx.next().await {
                        match ask {
                            Ask::Init(members) => {
                                raft.initialize(members).await.expect("initialize");
                            }
                            Ask::Write(cmd, reply) => {
                                let r = raft.client_write(cmd).await;
                                let _ = reply.send(r.map(|w| w.data).map_err(|e| e.to_string()));
                            }
                            Ask::Image(reply) => {
                                let _ = reply.send(sm.image());
                            }
                            Ask::Leader(reply) => {
                                let _ = reply.send(raft.metrics().borrow().current_leader);
                            }
                            Ask::Stop(reply) => {
                                raft.shutdown().await.expect("shutdown");
                                let _ = reply.send(());
                                return;
                            }
                        }
                    }
                });
        });
        Node {
            asks,
            thread: Some(thread),
        }
    }

    fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Ask) -> T {
        let (tx, rx) = oneshot::channel();
        self.asks.unbounded_send(make(tx)).expect("node running");
        futures::executor::block_on(rx).expect("node answered")
    }

    fn leader(&self) -> Option<u64> {
        self.ask(Ask::Leader)
    }

    fn write(&self, cmd: Command) -> Result<Outcome, String> {
        self.ask(|tx| Ask::Write(cmd, tx))
    }

    fn image(&self) -> MetadataImage {
        self.ask(Ask::Image)
    }

    fn stop(&mut self) {
        self.ask(Ask::Stop);
        if let Some(t) = self.thread.take() {
            t.join().expect("node thread");
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until every node in `ids` names the same leader; returns it.
fn agreed_leader(nodes: &BTreeMap<u64, Node>, ids: &[u64], not: Option<u64>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let seen: BTreeSet<Option<u64>> = ids.iter().map(|i| nodes[i].leader()).collect();
        if let [Some(l)] = seen.iter().copied().collect::<Vec<_>>()[..] {
            if Some(l) != not && ids.contains(&l) {
                return l;
            }
        }
        assert!(Instant::now() < deadline, "no agreed leader: {seen:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Commits `cmd` through the leader the nodes in `ids` agree on, asking again if
/// leadership moved in between (a loaded machine can miss a heartbeat).
fn commit(nodes: &BTreeMap<u64, Node>, ids: &[u64], not: Option<u64>, cmd: &Command) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let leader = agreed_leader(nodes, ids, not);
        match nodes[&leader].write(cmd.clone()) {
            Ok(out) => return out,
            Err(e) => {
                assert!(Instant::now() < deadline, "no commit: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn wait_for_topic(nodes: &BTreeMap<u64, Node>, ids: &[u64], topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in ids {
        while nodes[i].image().topic(topic).is_none() {
            assert!(Instant::now() < deadline, "node {i} never applied {topic}");
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
    }
}

#[test]
fn three_voters_elect_commit_everywhere_and_fail_over() {
    let root = tempfile::tempdir().unwrap();
    let addrs: BTreeMap<u64, String> = (1..=3)
        .map(|i| (i, format!("127.0.0.1:{}", free_port())))
        .collect();
    let mut nodes: BTreeMap<u64, Node> = addrs
        .iter()
        .map(|(i, a)| {
            (
                *i,
                Node::start(*i, a.clone(), root.path().join(format!("n{i}"))),
            )
        })
        .collect();
    nodes[&1]
        .asks
        .unbounded_send(Ask::Init(
            addrs
                .iter()
                .map(|(i, a)| (*i, BasicNode::new(a.clone())))
                .collect(),
        ))
        .unwrap();
    let all = [1, 2, 3];
    let out = commit(
        &nodes,
        &all,
        None,
        &Command::InitCluster {
            cluster_id: "three".into(),
        },
    );
    assert!(out.result.is_ok());
    commit(&nodes, &all, None, &create("first", 1))
        .result
        .expect("applied");
    let leader = agreed_leader(&nodes, &all, None);
    wait_for_topic(&nodes, &all, "first");
    assert!(all.iter().all(|i| nodes[i].image().cluster_id == "three"));

    let stopped = Instant::now();
    nodes.get_mut(&leader).unwrap().stop();
    let rest: Vec<u64> = all.iter().copied().filter(|i| *i != leader).collect();
    let next = agreed_leader(&nodes, &rest, Some(leader));
    eprintln!(
        "leader {leader} stopped; node {next} leads after {} ms",
        stopped.elapsed().as_millis()
    );
    commit(&nodes, &rest, Some(leader), &create("second", 2))
        .result
        .expect("applied");
    wait_for_topic(&nodes, &rest, "second");
    assert!(rest
        .iter()
        .all(|i| nodes[i].image().topic("first").is_some()));
    for i in rest {
        nodes.get_mut(&i).unwrap().stop();
    }
}
