//! This node's member of the metadata quorum: openraft on a glommio executor and
//! thread of its own (named `quorum`), answering its peers on `cluster.listen`.
//!
//! - On first start every voter proposes the same membership (the configured
//!   voters); openraft keeps the first and the rest are told it exists.
//! - A proposal made on a node that does not lead is forwarded to the leader in a
//!   `Forward` frame and answered once the leader committed it; while no leader
//!   is known the node waits for one. Either way it gives up at the proposal
//!   timeout with [`ProposeError::Unavailable`] (a retriable error for Kafka
//!   clients), so nothing hangs when the quorum is lost.
//! - Every applied image goes to the subscriber (the node's reconciler).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, Config, Raft, ServerState};
use serde::Serialize;

use super::{LogStore, Outcome, StateMachine, TypeConfig};
use crate::command::Command;
use crate::image::MetadataImage;
use crate::rpc::frame::Kind;
use crate::rpc::transport::{serve, Heartbeat, Network, Peer, Served, Sessions};
use crate::store::ProposeError;

/// How one node takes part in the quorum.
#[derive(Debug, Clone)]
pub struct QuorumSettings {
    pub node_id: u64,
    /// Every voter's id and `host:port` of its cluster listener.
    pub voters: BTreeMap<u64, String>,
    /// Where this node answers its peers.
    pub listen: String,
    /// The quorum's files (`raft-log`, `raft-vote`, `raft-snapshot`).
    pub dir: PathBuf,
    pub config: Config,
    /// How long a proposal may wait for a leader and its commit.
    pub propose_timeout: Duration,
    /// A broker not heard from for this long is fenced by the leader.
    pub session_timeout: Duration,
}

/// openraft's configuration of the quorum.
pub type RaftConfig = Config;

/// A snapshot every `n` log entries.
pub fn snapshot_every(n: u64) -> openraft::SnapshotPolicy {
    openraft::SnapshotPolicy::LogsSinceLast(n)
}

/// The quorum's timers in a node: heartbeats every 100 ms. openraft lets a
/// follower stand for election only once the leader's lease (the election
/// timeout's maximum) and then its own random election timeout have passed
/// without a heartbeat: 600 ms plus 400 to 600 ms here, so a lost leader is
/// replaced 1.0 to 1.2 s after its last heartbeat. A partition whose leader died
/// with the quorum's leader fails over only after that (its fencing is a
/// metadata change), so this bounds partition failover too: with 750 + 500-750
/// ms the slowest of 10 such failovers took 2.0 s. Six heartbeats fit in the
/// lease, which keeps a loaded 2-core machine from spurious elections. A
/// snapshot is taken every 1024 entries.
pub fn default_config() -> Config {
    Config {
        cluster_name: "sluice".into(),
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 600,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1024),
        ..Config::default()
    }
}

/// The quorum as this node sees it (for `sluice cluster status` and metrics).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct QuorumStatus {
    pub node_id: u64,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub snapshot_index: Option<u64>,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// On the leader: the last index each member has, by node id.
    pub matched: BTreeMap<u64, Option<u64>>,
    /// Leader changes this node has seen since it started.
    pub leader_changes: u64,
    /// Snapshots built here and installed from the leader since this node started.
    #[serde(default)]
    pub snapshots_built: u64,
    #[serde(default)]
    pub snapshots_installed: u64,
    /// How long appends to this node's Raft log took (write and fdatasync).
    #[serde(default)]
    pub append_latency: super::log_store::AppendLatency,
}

/// A change of the quorum's membership; only the leader makes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum MembershipChange {
    /// A node that is not a voter asks to follow the log (a broker, Raft learner).
    Join { id: u64, addr: String },
    /// Makes `id` a voter (first a learner that has caught up).
    AddVoter { id: u64, addr: String },
    /// Makes voter `id` a learner again (it keeps following the log).
    RemoveVoter { id: u64 },
}

/// Why a membership change was not made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum MembershipRefused {
    /// This node does not lead; the leader's address if known.
    NotLeader(Option<String>),
    Failed(String),
}

/// Makes `change` if this node leads (answers its peers' `Membership` frames too).
pub(crate) async fn change_here(
    raft: &Raft<TypeConfig>,
    change: &MembershipChange,
) -> Result<(), MembershipRefused> {
    let (leading, membership, leader_addr) = {
        let m = raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let addr = m
            .current_leader
            .and_then(|l| membership.get_node(&l).map(|n| n.addr.clone()));
        (m.state == ServerState::Leader, membership, addr)
    };
    if !leading {
        return Err(MembershipRefused::NotLeader(leader_addr));
    }
    let failed = |e: &dyn std::fmt::Display| MembershipRefused::Failed(e.to_string());
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    match change {
        MembershipChange::Join { id, addr } => {
            if membership.get_node(id).is_some() {
                return Ok(());
            }
            raft.add_learner(*id, BasicNode::new(addr.clone()), false)
                .await
                .map_err(|e| failed(&e))?;
            tracing::info!(node_id = id, addr, "a node joined the quorum as a learner");
        }
        MembershipChange::AddVoter { id, addr } => {
            if voters.contains(id) {
                return Ok(());
            }
            if membership.get_node(id).is_none_or(|n| n.addr != *addr) {
                // Waits until the learner has caught up.
                raft.add_learner(*id, BasicNode::new(addr.clone()), true)
                    .await
                    .map_err(|e| failed(&e))?;
            }
            raft.change_membership(
                openraft::ChangeMembers::AddVoterIds(BTreeSet::from([*id])),
                true,
            )
            .await
            .map_err(|e| failed(&e))?;
            tracing::info!(node_id = id, "a voter was added to the quorum");
        }
        MembershipChange::RemoveVoter { id } => {
            if !voters.contains(id) {
                return Err(MembershipRefused::Failed(format!(
                    "node {id} is not a voter"
                )));
            }
            if voters.len() == 1 {
                return Err(MembershipRefused::Failed(
                    "the last voter cannot be removed".into(),
                ));
            }
            raft.change_membership(
                openraft::ChangeMembers::RemoveVoters(BTreeSet::from([*id])),
                true,
            )
            .await
            .map_err(|e| failed(&e))?;
            tracing::info!(
                node_id = id,
                "a voter was removed from the quorum (it stays a learner)"
            );
        }
    }
    Ok(())
}

/// Makes `change` here or at the leader (`first` is where to ask when no leader
/// is known, in turn), until `timeout`.
async fn change_membership(
    raft: &Raft<TypeConfig>,
    forwarder: &Forwarder,
    change: &MembershipChange,
    first: &[String],
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut next = 0usize;
    let mut last = String::from("no leader is known");
    while Instant::now() < deadline {
        let target = match change_here(raft, change).await {
            Ok(()) => return Ok(()),
            Err(MembershipRefused::Failed(e)) => return Err(e),
            Err(MembershipRefused::NotLeader(Some(addr))) => addr,
            Err(MembershipRefused::NotLeader(None)) if !first.is_empty() => {
                next += 1;
                first[next % first.len()].clone()
            }
            Err(MembershipRefused::NotLeader(None)) => {
                glommio::timer::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match forwarder
            .call::<_, Result<(), MembershipRefused>>(&target, Kind::Membership, change, left)
            .await
        {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(MembershipRefused::Failed(e))) => return Err(e),
            Ok(Err(MembershipRefused::NotLeader(_))) => last = format!("{target} does not lead"),
            Err(e) => last = e,
        }
        glommio::timer::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "no membership change within {} ms: {last}",
        timeout.as_millis()
    ))
}

/// A node that is not among the voters joins as a learner (asked of the voters in
/// turn until the leader takes it), unless the membership already has it.
async fn join_as_learner(
    raft: Raft<TypeConfig>,
    forwarder: Rc<Forwarder>,
    id: u64,
    addr: String,
    voters: Vec<String>,
) {
    loop {
        let known = raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .is_some();
        if known {
            return;
        }
        let change = MembershipChange::Join {
            id,
            addr: addr.clone(),
        };
        match change_membership(&raft, &forwarder, &change, &voters, Duration::from_secs(5)).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "waiting to join the metadata quorum as a learner");
            }
        }
    }
}

enum Ask {
    Write(Command, oneshot::Sender<Result<Outcome, ProposeError>>),
    Status(oneshot::Sender<QuorumStatus>),
    /// The quorum as its leader sees it (with each voter's progress).
    LeaderStatus(oneshot::Sender<Result<QuorumStatus, String>>),
    /// Heartbeats for the broker this `RegisterBroker` registered, and a new
    /// registration whenever it finds itself fenced.
    KeepAlive(Command),
    /// The broker stops (controlled shutdown): no more heartbeats or
    /// registrations, so being fenced now is final.
    Retire,
    Membership(MembershipChange, oneshot::Sender<Result<(), String>>),
    /// A std channel: `stop` may be called inside another executor (a drop).
    Stop(std::sync::mpsc::Sender<()>),
}

/// The handle to the quorum thread.
pub struct QuorumNode {
    asks: mpsc::UnboundedSender<Ask>,
    leader: Arc<AtomicU64>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for QuorumNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QuorumNode")
    }
}

/// `leader` holds this when no leader is known.
const NO_LEADER: u64 = u64::MAX;

fn status_of(m: &openraft::RaftMetrics<u64, BasicNode>, leader_changes: u64) -> QuorumStatus {
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    QuorumStatus {
        node_id: m.id,
        role: match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        }
        .into(),
        leader: m.current_leader,
        term: m.current_term,
        last_log_index: m.last_log_index.unwrap_or(0),
        applied_index: m.last_applied.map_or(0, |l| l.index),
        snapshot_index: m.snapshot.map(|l| l.index),
        learners: membership
            .nodes()
            .map(|(id, _)| *id)
            .filter(|id| !voters.contains(id))
            .collect(),
        voters: voters.into_iter().collect(),
        matched: m
            .replication
            .as_ref()
            .map(|r| r.iter().map(|(id, l)| (*id, l.map(|l| l.index))).collect())
            .unwrap_or_default(),
        leader_changes,
        ..QuorumStatus::default()
    }
}

/// Forwards proposals to whichever node leads, one connection per leader address.
#[derive(Default)]
struct Forwarder {
    peers: std::cell::RefCell<HashMap<String, Rc<Peer>>>,
}

impl Forwarder {
    async fn call<Req: Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        addr: &str,
        kind: Kind,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, String> {
        let peer = self
            .peers
            .borrow_mut()
            .entry(addr.to_string())
            .or_insert_with(|| Rc::new(Peer::new(addr)))
            .clone();
        let payload = serde_json::to_vec(req).map_err(|e| e.to_string())?;
        let answer = peer
            .call(kind, payload, ttl)
            .await
            .map_err(|e| format!("{kind:?} to {}: {e}", peer.addr()))?;
        serde_json::from_slice(&answer).map_err(|e| format!("an answer from {addr}: {e}"))
    }

    async fn forward(
        &self,
        addr: &str,
        cmd: &Command,
        ttl: Duration,
    ) -> Result<Result<Outcome, RaftError<u64, ClientWriteError<u64, BasicNode>>>, String> {
        self.call(addr, Kind::Forward, cmd, ttl).await
    }
}

/// The address of node `id` in the current membership.
fn address_of(raft: &Raft<TypeConfig>, id: u64) -> Option<String> {
    raft.metrics()
        .borrow()
        .membership_config
        .membership()
        .get_node(&id)
        .map(|n| n.addr.clone())
}

/// Heartbeats of this broker every `interval`: to the leader (or noted here when
/// this node leads). When the image shows this broker fenced (it missed its
/// session, say it was stopped) it registers again with a new incarnation.
async fn keep_alive(
    raft: Raft<TypeConfig>,
    sm: StateMachine,
    sessions: Rc<Sessions>,
    forwarder: Rc<Forwarder>,
    mut register: Command,
    (interval, propose_timeout): (Duration, Duration),
    retired: Rc<std::cell::Cell<bool>>,
) {
    let Command::RegisterBroker { id, .. } = register else {
        return;
    };
    loop {
        glommio::timer::sleep(interval).await;
        if retired.get() {
            return;
        }
        let Command::RegisterBroker { incarnation, .. } = register else {
            return;
        };
        let image = sm.image();
        let current = image
            .brokers
            .get(&id)
            .is_some_and(|b| b.incarnation == incarnation && !b.fenced);
        if !current {
            if let Command::RegisterBroker { incarnation, .. } = &mut register {
                *incarnation = rand::random();
            }
            tracing::warn!(
                node_id = id,
                "this broker was fenced (it missed its session); registering again"
            );
            if let Err(e) = write(&raft, &forwarder, register.clone(), propose_timeout).await {
                tracing::warn!(error = %e, "could not register again; trying at the next heartbeat");
            }
            continue;
        }
        let hb = Heartbeat { id, incarnation };
        let Some(leader) = raft.metrics().borrow().current_leader else {
            continue;
        };
        if i32::try_from(leader).ok() == Some(id) || raft.metrics().borrow().id == leader {
            sessions.beat(hb);
        } else if let Some(addr) = address_of(&raft, leader) {
            if let Err(e) = forwarder
                .call::<_, ()>(&addr, Kind::Heartbeat, &hb, interval)
                .await
            {
                tracing::debug!(error = %e, "a heartbeat was not delivered");
            }
        }
    }
}

/// How often the controller moves leaderships back to preferred replicas.
const LEADER_BALANCE_EVERY: Duration = Duration::from_secs(10);

/// On the leader (Kafka's `auto.leader.rebalance.enable`): every
/// [`LEADER_BALANCE_EVERY`], each partition whose preferred replica (its first)
/// is live and in sync but does not lead is handed back to it, so leaders stay
/// spread after restarts.
async fn balance_leaders(raft: Raft<TypeConfig>, sm: StateMachine) {
    loop {
        glommio::timer::sleep(LEADER_BALANCE_EVERY).await;
        if raft.metrics().borrow().state != ServerState::Leader {
            continue;
        }
        let partitions = crate::command::preferred_elections(&sm.image());
        if partitions.is_empty() {
            continue;
        }
        tracing::info!(
            partitions = partitions.len(),
            "moving leaderships back to preferred replicas"
        );
        if let Err(e) = raft
            .client_write(Command::ElectPreferred { partitions })
            .await
        {
            tracing::warn!(error = %e, "could not balance leaders");
        }
    }
}

/// On the leader: fences every live broker not heard from for `timeout` (counted
/// from when this node became leader, or first saw that registration, if later).
async fn fence_silent_brokers(
    raft: Raft<TypeConfig>,
    sm: StateMachine,
    sessions: Rc<Sessions>,
    timeout: Duration,
) {
    let mut leading_since: Option<Instant> = None;
    let mut first_seen: HashMap<(i32, u64), Instant> = HashMap::new();
    let mut fencing: HashMap<(i32, u64), Instant> = HashMap::new();
    loop {
        glommio::timer::sleep(Duration::from_millis(250)).await;
        let now = Instant::now();
        if raft.metrics().borrow().state != ServerState::Leader {
            leading_since = None;
            continue;
        }
        let since = *leading_since.get_or_insert(now);
        let image = sm.image();
        first_seen
            .retain(|(id, inc), _| image.brokers.get(id).is_some_and(|b| b.incarnation == *inc));
        fencing.retain(|_, at| now.duration_since(*at) < timeout);
        for b in image.live_brokers() {
            let key = (b.id, b.incarnation);
            let seen = *first_seen.entry(key).or_insert(now);
            let last = sessions
                .last(b.id, b.incarnation)
                .unwrap_or(seen)
                .max(seen)
                .max(since);
            if now.duration_since(last) < timeout || fencing.contains_key(&key) {
                continue;
            }
            fencing.insert(key, now);
            tracing::warn!(
                node_id = b.id,
                silent_ms = now.duration_since(last).as_millis(),
                "fencing a broker that missed its session"
            );
            let cmd = Command::FenceBroker {
                id: b.id,
                incarnation: b.incarnation,
            };
            let raft = raft.clone();
            glommio::spawn_local(async move {
                if let Err(e) = raft.client_write(cmd).await {
                    tracing::warn!(error = %e, "could not fence a broker");
                }
            })
            .detach();
        }
    }
}

/// Commits `cmd` here or at the leader, waiting for one while none is known, until
/// `timeout`.
async fn write(
    raft: &Raft<TypeConfig>,
    forwarder: &Forwarder,
    cmd: Command,
    timeout: Duration,
) -> Result<Outcome, ProposeError> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no leader is known");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ProposeError::Unavailable(format!(
                "no commit within {} ms: {last}",
                timeout.as_millis()
            )));
        }
        let local =
            glommio::timer::timeout(left, async { Ok(raft.client_write(cmd.clone()).await) }).await;
        let refused = match local {
            Ok(Ok(w)) => return Ok(w.data),
            Ok(Err(e)) => e,
            Err(_) => {
                last = "the leader did not commit in time".into();
                continue;
            }
        };
        let leader = match refused {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => f.leader_node,
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                return Err(ProposeError::Storage(e.to_string()))
            }
            RaftError::Fatal(e) => return Err(ProposeError::Storage(e.to_string())),
        };
        let Some(leader) = leader else {
            glommio::timer::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match forwarder.forward(&leader.addr, &cmd, left).await {
            Ok(Ok(out)) => return Ok(out),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                last = format!("{} no longer leads", leader.addr);
                glommio::timer::sleep(Duration::from_millis(20)).await;
            }
            Ok(Err(e)) => return Err(ProposeError::Storage(e.to_string())),
            Err(e) => {
                last = e;
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The quorum as its leader sees it: here, or asked of the leader.
async fn leader_status(
    raft: &Raft<TypeConfig>,
    forwarder: &Forwarder,
    changes: u64,
) -> Result<QuorumStatus, String> {
    let me = raft.metrics().borrow().id;
    let leader = raft.metrics().borrow().current_leader;
    match leader {
        None => Err("no leader is known".to_string()),
        Some(l) if l == me => Ok(status_of(&raft.metrics().borrow(), changes)),
        Some(l) => {
            let addr = address_of(raft, l).ok_or_else(|| format!("node {l} has no address"))?;
            forwarder
                .call::<_, Option<QuorumStatus>>(&addr, Kind::Status, &(), Duration::from_secs(2))
                .await
                .and_then(|s| s.ok_or_else(|| format!("node {l} has no status")))
        }
    }
}

/// Keeps the known leader where other threads read it, counting changes.
async fn watch_leader(
    raft: Raft<TypeConfig>,
    leader: Arc<AtomicU64>,
    changes: Rc<std::cell::Cell<u64>>,
) {
    let mut metrics = raft.metrics();
    loop {
        let now = metrics.borrow().current_leader.unwrap_or(NO_LEADER);
        if leader.swap(now, Ordering::Release) != now {
            changes.set(changes.get() + 1);
            tracing::info!(leader = ?(now != NO_LEADER).then_some(now), "metadata quorum leader");
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Opens the log and state machine, starts Raft and binds the cluster listener.
async fn open(
    settings: &QuorumSettings,
    subscriber: std::sync::mpsc::Sender<Arc<MetadataImage>>,
) -> Result<
    (
        Raft<TypeConfig>,
        StateMachine,
        LogStore,
        glommio::net::TcpListener,
    ),
    String,
> {
    let config = Arc::new(
        settings
            .config
            .clone()
            .validate()
            .map_err(|e| e.to_string())?,
    );
    let log = LogStore::open(&settings.dir).map_err(|e| e.to_string())?;
    let log_view = log.clone();
    let sm = StateMachine::open(&settings.dir)
        .await
        .map_err(|e| e.to_string())?;
    sm.subscribe(subscriber);
    let raft: Raft<TypeConfig> = Raft::new(
        settings.node_id,
        config,
        Network::default(),
        log,
        sm.clone(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let listener = glommio::net::TcpListener::bind(settings.listen.as_str())
        .map_err(|e| format!("cannot listen on {} (cluster.listen): {e}", settings.listen))?;
    Ok((raft, sm, log_view, listener))
}

/// First steps in the quorum: a voter's first start proposes the configured
/// membership (every voter does; all but one are told it is set, which is what we
/// want); a node that is not a voter asks to join as a learner.
async fn bootstrap(raft: &Raft<TypeConfig>, forwarder: &Rc<Forwarder>, settings: &QuorumSettings) {
    if !settings.voters.contains_key(&settings.node_id) {
        glommio::spawn_local(join_as_learner(
            raft.clone(),
            forwarder.clone(),
            settings.node_id,
            settings.listen.clone(),
            settings.voters.values().cloned().collect(),
        ))
        .detach();
    } else if !raft.is_initialized().await.unwrap_or(true) {
        let members: BTreeMap<u64, BasicNode> = settings
            .voters
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
            .collect();
        if let Err(e) = raft.initialize(members).await {
            tracing::debug!(error = %e, "the quorum's membership was set by another voter");
        }
    }
}

async fn run(
    settings: QuorumSettings,
    subscriber: std::sync::mpsc::Sender<Arc<MetadataImage>>,
    leader: Arc<AtomicU64>,
    started: std::sync::mpsc::Sender<Result<(), String>>,
    mut asks: mpsc::UnboundedReceiver<Ask>,
) {
    let opened = open(&settings, subscriber);
    let (raft, sm, log, listener) = match opened.await {
        Ok(v) => v,
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    let changes = Rc::new(std::cell::Cell::new(0u64));
    let sessions = Rc::new(Sessions::default());
    let served = {
        let (raft, changes) = (raft.clone(), changes.clone());
        Rc::new(Served {
            sessions: sessions.clone(),
            status: Some(Box::new(move || {
                serde_json::to_vec(&Some(status_of(&raft.metrics().borrow(), changes.get())))
                    .unwrap_or_default()
            })),
        })
    };
    glommio::spawn_local(serve(listener, raft.clone(), served)).detach();
    glommio::spawn_local(fence_silent_brokers(
        raft.clone(),
        sm.clone(),
        sessions.clone(),
        settings.session_timeout,
    ))
    .detach();
    glommio::spawn_local(balance_leaders(raft.clone(), sm.clone())).detach();
    let retired = Rc::new(std::cell::Cell::new(false));
    let forwarder = Rc::new(Forwarder::default());
    bootstrap(&raft, &forwarder, &settings).await;
    let _ = started.send(Ok(()));
    glommio::spawn_local(watch_leader(raft.clone(), leader, changes.clone())).detach();
    while let Some(ask) = asks.next().await {
        match ask {
            Ask::Write(cmd, reply) => {
                let (raft, forwarder) = (raft.clone(), forwarder.clone());
                let timeout = settings.propose_timeout;
                glommio::spawn_local(async move {
                    let _ = reply.send(write(&raft, &forwarder, cmd, timeout).await);
                })
                .detach();
            }
            Ask::Status(reply) => {
                let mut status = status_of(&raft.metrics().borrow(), changes.get());
                (status.snapshots_built, status.snapshots_installed) = sm.snapshots();
                status.append_latency = log.append_latency();
                let _ = reply.send(status);
            }
            Ask::LeaderStatus(reply) => {
                let (raft, forwarder, changes) = (raft.clone(), forwarder.clone(), changes.clone());
                glommio::spawn_local(async move {
                    let _ = reply.send(leader_status(&raft, &forwarder, changes.get()).await);
                })
                .detach();
            }
            Ask::Membership(change, reply) => {
                let (raft, forwarder) = (raft.clone(), forwarder.clone());
                let voters: Vec<String> = settings.voters.values().cloned().collect();
                glommio::spawn_local(async move {
                    let r = change_membership(
                        &raft,
                        &forwarder,
                        &change,
                        &voters,
                        Duration::from_secs(30),
                    )
                    .await;
                    let _ = reply.send(r);
                })
                .detach();
            }
            Ask::KeepAlive(register) => {
                let interval = (settings.session_timeout / 4).min(Duration::from_secs(2));
                // Connections of their own: a heartbeat never queues behind a
                // forwarded proposal waiting for its commit.
                glommio::spawn_local(keep_alive(
                    raft.clone(),
                    sm.clone(),
                    sessions.clone(),
                    Rc::new(Forwarder::default()),
                    register,
                    (interval, settings.propose_timeout),
                    retired.clone(),
                ))
                .detach();
            }
            Ask::Retire => retired.set(true),
            Ask::Stop(reply) => {
                let _ = raft.shutdown().await;
                // Tasks left on this executor keep clones of the state machine;
                // the subscriber must see the end now.
                sm.unsubscribe();
                let _ = reply.send(());
                return;
            }
        }
    }
}

impl QuorumNode {
    /// Starts this node's quorum member; every image it applies goes to
    /// `subscriber`, in order. Fails if its files cannot be opened or the cluster
    /// port cannot be bound.
    pub fn start(
        settings: QuorumSettings,
        subscriber: std::sync::mpsc::Sender<Arc<MetadataImage>>,
    ) -> Result<QuorumNode, String> {
        let (asks, rx) = mpsc::unbounded::<Ask>();
        // A std channel: `start` may be called inside another executor.
        let (started_tx, started) = std::sync::mpsc::channel();
        let leader = Arc::new(AtomicU64::new(NO_LEADER));
        let l = leader.clone();
        let thread = std::thread::Builder::new()
            .name("quorum".into())
            .spawn(move || {
                let ex = glommio::LocalExecutorBuilder::default()
                    .name("quorum")
                    .make();
                match ex {
                    Ok(ex) => ex.run(run(settings, subscriber, l, started_tx, rx)),
                    Err(e) => {
                        let _ = started_tx.send(Err(format!("no executor for the quorum: {e}")));
                    }
                }
            })
            .map_err(|e| format!("cannot start the quorum thread: {e}"))?;
        match started.recv() {
            Ok(Ok(())) => Ok(QuorumNode {
                asks,
                leader,
                thread: std::sync::Mutex::new(Some(thread)),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err("the quorum thread ended while starting".into())
            }
        }
    }

    /// Commits `cmd` (here or at the leader): its outcome once committed.
    pub async fn propose(&self, cmd: Command) -> Result<Outcome, ProposeError> {
        let (tx, rx) = oneshot::channel();
        self.asks
            .unbounded_send(Ask::Write(cmd, tx))
            .map_err(|_| ProposeError::Stopped)?;
        rx.await.map_err(|_| ProposeError::Stopped)?
    }

    /// The quorum as this node sees it.
    pub async fn status(&self) -> Option<QuorumStatus> {
        let (tx, rx) = oneshot::channel();
        self.asks.unbounded_send(Ask::Status(tx)).ok()?;
        rx.await.ok()
    }

    /// The quorum as its leader sees it (asked of the leader when it is another
    /// node).
    pub async fn leader_status(&self) -> Result<QuorumStatus, String> {
        let (tx, rx) = oneshot::channel();
        self.asks
            .unbounded_send(Ask::LeaderStatus(tx))
            .map_err(|_| "the quorum is stopped".to_string())?;
        rx.await.map_err(|_| "the quorum is stopped".to_string())?
    }

    /// Changes the quorum's membership (through the leader), within 30 s.
    pub async fn change_membership(&self, change: MembershipChange) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.asks
            .unbounded_send(Ask::Membership(change, tx))
            .map_err(|_| "the quorum is stopped".to_string())?;
        rx.await.map_err(|_| "the quorum is stopped".to_string())?
    }

    /// Keeps the broker `register` registered alive: heartbeats to the leader, and
    /// a new registration when it was fenced.
    pub fn keep_alive(&self, register: Command) {
        let _ = self.asks.unbounded_send(Ask::KeepAlive(register));
    }

    /// Stops the heartbeats and re-registrations of [`QuorumNode::keep_alive`].
    pub fn retire(&self) {
        let _ = self.asks.unbounded_send(Ask::Retire);
    }

    /// The leader this node knows of, without asking the quorum thread.
    pub fn leader(&self) -> Option<u64> {
        let l = self.leader.load(Ordering::Acquire);
        (l != NO_LEADER).then_some(l)
    }

    /// Shuts Raft down and joins the thread.
    pub fn stop(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.asks.unbounded_send(Ask::Stop(tx)).is_ok() {
            let _ = rx.recv();
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for QuorumNode {
    fn drop(&mut self) {
        self.stop();
    }
}
