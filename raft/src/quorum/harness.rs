//! In-process voters for tests and benchmarks: each voter runs openraft on its own
//! glommio executor and thread, with its log and snapshot files in its own
//! directory, and answers its peers over real TCP with the project's RPC frames.
//! The caller's thread drives them through a channel.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use openraft::{BasicNode, Config, Raft};

use super::{LogStore, Outcome, StateMachine, TypeConfig};
use crate::command::Command;
use crate::image::MetadataImage;
use crate::rpc::transport::{serve, Network};

enum Ask {
    Init(
        BTreeMap<u64, BasicNode>,
        oneshot::Sender<Result<(), String>>,
    ),
    Write(Command, oneshot::Sender<Result<Outcome, String>>),
    Image(oneshot::Sender<MetadataImage>),
    Leader(oneshot::Sender<Option<u64>>),
    Stop(oneshot::Sender<()>),
}

/// One voter and its thread.
pub struct Voter {
    asks: mpsc::UnboundedSender<Ask>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Voter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Voter")
    }
}

/// Election timeouts of 300–600 ms and 50 ms heartbeats, as the tests use.
pub fn test_config() -> Config {
    Config {
        heartbeat_interval: 50,
        election_timeout_min: 300,
        election_timeout_max: 600,
        ..Config::default()
    }
}

async fn run(
    id: u64,
    addr: String,
    dir: PathBuf,
    config: Config,
    mut asks: mpsc::UnboundedReceiver<Ask>,
) -> Result<(), String> {
    let config = Arc::new(config.validate().map_err(|e| e.to_string())?);
    let log = LogStore::open(&dir).map_err(|e| e.to_string())?;
    let sm = StateMachine::open(&dir).await.map_err(|e| e.to_string())?;
    let raft: Raft<TypeConfig> = Raft::new(id, config, Network::default(), log, sm.clone())
        .await
        .map_err(|e| e.to_string())?;
    let listener = glommio::net::TcpListener::bind(addr.as_str()).map_err(|e| e.to_string())?;
    glommio::spawn_local(serve(listener, raft.clone(), Rc::default())).detach();
    while let Some(ask) = asks.next().await {
        match ask {
            Ask::Init(members, reply) => {
                let r = raft.initialize(members).await.map_err(|e| e.to_string());
                let _ = reply.send(r);
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
                let _ = raft.shutdown().await;
                let _ = reply.send(());
                return Ok(());
            }
        }
    }
    Ok(())
}

impl Voter {
    /// Starts voter `id` answering peers on `addr`, its files in `dir`.
    pub fn start(id: u64, addr: &str, dir: &Path, config: Config) -> Voter {
        let (asks, rx) = mpsc::unbounded::<Ask>();
        let (addr, dir) = (addr.to_string(), dir.to_path_buf());
        let thread = std::thread::spawn(move || {
            let ex = glommio::LocalExecutorBuilder::default()
                .name(&format!("voter-{id}"))
                .make();
            match ex {
                Ok(ex) => {
                    if let Err(e) = ex.run(run(id, addr, dir, config, rx)) {
                        eprintln!("voter {id}: {e}");
                    }
                }
                Err(e) => eprintln!("voter {id}: no executor: {e}"),
            }
        });
        Voter {
            asks,
            thread: Some(thread),
        }
    }

    fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Ask) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.asks.unbounded_send(make(tx)).ok()?;
        futures::executor::block_on(rx).ok()
    }

    /// Makes `members` the cluster (on one voter, once).
    pub fn initialize(&self, members: BTreeMap<u64, BasicNode>) -> Result<(), String> {
        self.ask(|tx| Ask::Init(members, tx))
            .unwrap_or_else(|| Err("the voter is gone".into()))
    }

    /// The leader this voter knows of.
    pub fn leader(&self) -> Option<u64> {
        self.ask(Ask::Leader).flatten()
    }

    /// Proposes `cmd` here (it must be the leader): its outcome once committed.
    pub fn write(&self, cmd: Command) -> Result<Outcome, String> {
        self.ask(|tx| Ask::Write(cmd, tx))
            .unwrap_or_else(|| Err("the voter is gone".into()))
    }

    /// The image as this voter applied it.
    pub fn image(&self) -> MetadataImage {
        self.ask(Ask::Image).unwrap_or_default()
    }

    /// Shuts Raft down and ends the thread.
    pub fn stop(&mut self) {
        let _ = self.ask(Ask::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Voter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Voters by id.
#[derive(Debug, Default)]
pub struct Voters(pub BTreeMap<u64, Voter>);

impl Voters {
    /// Starts one voter per `addrs` entry (its files in `root/v<id>`) and makes them
    /// one cluster.
    pub fn start(
        root: &Path,
        addrs: &BTreeMap<u64, String>,
        config: &Config,
    ) -> Result<Voters, String> {
        let voters = Voters(
            addrs
                .iter()
                .map(|(i, a)| {
                    (
                        *i,
                        Voter::start(*i, a, &root.join(format!("v{i}")), config.clone()),
                    )
                })
                .collect(),
        );
        let members = addrs
            .iter()
            .map(|(i, a)| (*i, BasicNode::new(a.clone())))
            .collect();
        let first = voters.0.values().next().ok_or("no voters")?;
        first.initialize(members)?;
        Ok(voters)
    }

    /// Waits until every voter in `ids` names the same leader among them (not
    /// `not`); returns it, or `None` at `within`.
    pub fn agreed_leader(&self, ids: &[u64], not: Option<u64>, within: Duration) -> Option<u64> {
        let deadline = Instant::now() + within;
        loop {
            let seen: BTreeSet<Option<u64>> = ids.iter().map(|i| self.0[i].leader()).collect();
            if let [Some(l)] = seen.iter().copied().collect::<Vec<_>>()[..] {
                if Some(l) != not && ids.contains(&l) {
                    return Some(l);
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Commits `cmd` through the leader the voters in `ids` agree on, asking again
    /// if leadership moved in between; `Err` with the last error at `within`.
    pub fn commit(
        &self,
        ids: &[u64],
        not: Option<u64>,
        cmd: &Command,
        within: Duration,
    ) -> Result<Outcome, String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(leader) = self.agreed_leader(ids, not, left) else {
                return Err("no agreed leader".into());
            };
            match self.0[&leader].write(cmd.clone()) {
                Ok(out) => return Ok(out),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}
