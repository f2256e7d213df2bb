//! The replica manager of one shard: for every partition replica the shard hosts,
//! what this node is for it (leader, follower of another broker, or neither while
//! the partition has no leader), its leader epoch, in-sync replicas, the followers'
//! log ends and the acks=all waiters. Driven by the metadata image: the reconciler
//! hands each shard the committed record of its partitions ([`Assignment`]) and the
//! manager changes roles; handlers ask it, and never set a high watermark or an
//! epoch themselves.
//!
//! Kafka's model: the leader's high watermark is the lowest log end over the ISR
//! (the leader's own included), and only moves forward while it leads. A follower
//! fetches from its leader ([`fetcher`]) and makes what it fetched durable before
//! it asks for more, so the offset it fetches from (its log end, which the leader
//! records) is on its disk: an acks=all record below the high watermark is on the
//! disk of every in-sync replica. A follower behind for `replica.lag.time.max.ms`
//! leaves the ISR and one that caught up joins it again, through the controller
//! ([`sluice_raft::Command::AlterIsr`], checked against the partition epoch).

pub(crate) mod fetcher;
pub(crate) mod link;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::FutureExt;
use sluice_engine::{Partition, TopicPartition, Writers};
use sluice_raft::PartitionRecord;
use uuid::Uuid;

use crate::kafka_error::{self as code, KafkaError};
use crate::topics::TopicStore;

/// After a refused ISR change, how long before another is proposed.
const ISR_RETRY: Duration = Duration::from_secs(1);

/// Kafka's default `replica.lag.time.max.ms`.
pub const LAG_TIME_MAX_DEFAULT: Duration = Duration::from_secs(30);

/// What this node is for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower {
        leader: i32,
    },
    /// No broker leads the partition.
    Offline,
}

/// What the reconciler tells a shard about one partition it hosts.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub tp: TopicPartition,
    pub topic_id: Uuid,
    pub record: PartitionRecord,
    /// `min.insync.replicas` of the topic.
    pub min_insync: i32,
}

/// How far one follower is behind its leader.
#[derive(Debug, Clone, Copy)]
pub struct FollowerLag {
    pub follower: i32,
    /// Records behind the leader's log end; `None` until it fetched in this epoch.
    pub records: Option<u64>,
    /// Seconds since it was last caught up.
    pub seconds: f64,
}

/// What a leader knows of one follower.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// The offset it last fetched from (its log end); `None` until it fetched from
    /// this leader in this epoch.
    log_end: Option<u64>,
    /// When it last was caught up (Kafka's `lastCaughtUpTimeMs`).
    caught_up: Instant,
    last_fetch: Instant,
    /// The leader's log end at its last fetch.
    leader_end_at_last_fetch: u64,
}

struct State {
    topic_id: Uuid,
    record: PartitionRecord,
    role: Role,
    min_insync: i32,
    followers: BTreeMap<i32, Progress>,
    /// acks=all appends waiting for the high watermark to pass their end.
    waiters: Vec<(u64, oneshot::Sender<Result<(), KafkaError>>)>,
    /// An ISR change proposed and not yet seen in an assignment. Until it is,
    /// the high watermark counts the members of both (Kafka's "maximal ISR"), so
    /// a follower being added holds it as if it were in already.
    proposed_isr: Option<Vec<i32>>,
    /// After a refused ISR change, none is proposed before this.
    isr_retry_after: Option<Instant>,
}

/// One partition replica on this shard.
pub struct Replica {
    pub log: Rc<Partition>,
    node_id: i32,
    st: RefCell<State>,
    /// The manager's environment (set once the metadata store is open).
    env: Rc<RefCell<Option<Env>>>,
}

impl Replica {
    pub fn role(&self) -> Role {
        self.st.borrow().role
    }

    pub fn leader_epoch(&self) -> i32 {
        self.st.borrow().record.leader_epoch
    }

    pub fn record(&self) -> PartitionRecord {
        self.st.borrow().record.clone()
    }

    /// `min.insync.replicas` and the ISR's size now.
    pub fn insync(&self) -> (i32, usize) {
        let st = self.st.borrow();
        (st.min_insync, st.record.isr.len())
    }

    /// The leader epoch if this node leads the partition and `current` (the epoch
    /// the client knows; -1: none) is not another: an older one is
    /// `FENCED_LEADER_EPOCH`, a newer one `UNKNOWN_LEADER_EPOCH` (this node has not
    /// seen it yet).
    pub fn check_leader(&self, current: i32) -> Result<i32, KafkaError> {
        let st = self.st.borrow();
        let tp = self.log.topic_partition();
        let epoch = st.record.leader_epoch;
        match st.role {
            Role::Leader => {}
            Role::Follower { leader } => {
                return Err(KafkaError::new(
                    code::NOT_LEADER_OR_FOLLOWER,
                    format!(
                        "broker {leader} leads partition {tp}, not broker {}",
                        self.node_id
                    ),
                ))
            }
            Role::Offline => {
                return Err(KafkaError::new(
                    code::LEADER_NOT_AVAILABLE,
                    format!("partition {tp} has no leader"),
                ))
            }
        }
        if current >= 0 && current < epoch {
            return Err(KafkaError::new(
                code::FENCED_LEADER_EPOCH,
                format!("partition {tp} is in leader epoch {epoch}, not {current}"),
            ));
        }
        if current > epoch {
            return Err(KafkaError::new(
                code::UNKNOWN_LEADER_EPOCH,
                format!(
                    "partition {tp}: leader epoch {current} is newer than this broker's {epoch}"
                ),
            ));
        }
        Ok(epoch)
    }

    /// The high watermark the ISR allows, moved forward (never back) while this
    /// node leads; acks=all waiters it passes are answered.
    pub fn update_high_watermark(&self) {
        let mut st = self.st.borrow_mut();
        if st.role != Role::Leader {
            return;
        }
        let offsets = self.log.offsets();
        let mut hw = offsets.log_end_offset;
        let maximal = st.record.isr.iter().chain(st.proposed_isr.iter().flatten());
        for r in maximal {
            if *r == self.node_id {
                continue;
            }
            // A member not heard from in this epoch holds the watermark.
            let end = st
                .followers
                .get(r)
                .and_then(|p| p.log_end)
                .unwrap_or(offsets.high_watermark);
            hw = hw.min(end);
        }
        if hw > offsets.high_watermark {
            self.log.set_high_watermark(hw);
        }
        let hw = hw.max(offsets.high_watermark);
        // Runs on every append and follower fetch: nothing is allocated unless a
        // waiter is due.
        let done: Vec<_> = st.waiters.extract_if(.., |(end, _)| *end <= hw).collect();
        drop(st);
        for (_, tx) in done {
            let _ = tx.send(Ok(()));
        }
    }

    /// Whether this node still leads in `epoch` (a leader never truncates in its
    /// own epoch, so what it appended in it is still there).
    pub fn still_leads(&self, epoch: i32) -> Result<(), KafkaError> {
        let st = self.st.borrow();
        if st.role == Role::Leader && st.record.leader_epoch == epoch {
            Ok(())
        } else {
            Err(self.not_leader(&st))
        }
    }

    /// Waits until the high watermark reaches `end` (acks=all) while this node
    /// leads in `epoch`, at most `timeout`.
    pub async fn wait_replicated(
        &self,
        end: u64,
        epoch: i32,
        timeout: Duration,
    ) -> Result<(), KafkaError> {
        let rx = {
            self.still_leads(epoch)?;
            let mut st = self.st.borrow_mut();
            if self.log.offsets().high_watermark >= end {
                return Ok(());
            }
            let (tx, rx) = oneshot::channel();
            st.waiters.push((end, tx));
            rx
        };
        let timer = glommio::timer::sleep(timeout).fuse();
        futures::pin_mut!(timer);
        let mut rx = rx.fuse();
        futures::select! {
            r = rx => r.unwrap_or_else(|_| Err(KafkaError::new(
                code::NOT_LEADER_OR_FOLLOWER,
                "the partition's leadership changed",
            ))).and_then(|()| self.still_leads(epoch)),
            () = timer => Err(KafkaError::new(
                code::REQUEST_TIMED_OUT,
                format!(
                    "partition {}: the in-sync replicas did not all take the records within {} ms",
                    self.log.topic_partition(),
                    timeout.as_millis()
                ),
            )),
        }
    }

    fn not_leader(&self, st: &State) -> KafkaError {
        KafkaError::new(
            code::NOT_LEADER_OR_FOLLOWER,
            format!(
                "broker {} no longer leads partition {} (leader {})",
                self.node_id,
                self.log.topic_partition(),
                st.record.leader
            ),
        )
    }

    /// A follower fetched from `offset`: its progress is recorded, the high
    /// watermark moves, and a follower that caught up and is not in the ISR is
    /// proposed for it.
    pub fn follower_fetched(self: &Rc<Self>, follower: i32, offset: u64) -> Result<(), KafkaError> {
        let now = Instant::now();
        let leader_end = self.log.offsets().log_end_offset;
        let expand = {
            let mut st = self.st.borrow_mut();
            if st.role != Role::Leader {
                return Err(self.not_leader(&st));
            }
            let Some(p) = st.followers.get_mut(&follower) else {
                return Err(KafkaError::new(
                    code::NOT_LEADER_OR_FOLLOWER,
                    format!(
                        "broker {follower} holds no replica of partition {}",
                        self.log.topic_partition()
                    ),
                ));
            };
            if offset >= leader_end {
                p.caught_up = now;
            } else if offset >= p.leader_end_at_last_fetch {
                p.caught_up = p.caught_up.max(p.last_fetch);
            }
            p.log_end = Some(offset);
            p.last_fetch = now;
            p.leader_end_at_last_fetch = leader_end;
            // Cheap tests first: this runs for every partition of every follower
            // fetch, and only a follower out of the ISR needs the epoch cache.
            let joins = !st.record.isr.contains(&follower)
                && st.proposed_isr.is_none()
                && st.isr_retry_after.is_none_or(|t| t <= now)
                && offset >= self.log.offsets().high_watermark
                && offset
                    >= self
                        .log
                        .leader_epochs()
                        .iter()
                        .find(|(e, _)| *e == st.record.leader_epoch)
                        .map_or(0, |(_, s)| *s);
            joins.then(|| {
                let mut isr = st.record.isr.clone();
                isr.push(follower);
                isr
            })
        };
        self.update_high_watermark();
        let Some(isr) = expand else {
            return Ok(());
        };
        let env = self.env.borrow().clone();
        if let Some(env) = env {
            // Only a live broker may join (a fenced one that still runs keeps
            // fetching until it learns it was fenced).
            if env.topics.image().broker(follower).is_some() {
                tracing::info!(partition = %self.log.topic_partition(), follower, ?isr,
                    "a follower caught up; expanding the ISR");
                propose_isr(&env, self, isr);
            }
        }
        Ok(())
    }

    /// The ISR without the members not caught up for `lag_max`, when that removes
    /// any (the leader stays).
    fn shrunk_isr(&self, lag_max: Duration) -> Option<Vec<i32>> {
        let st = self.st.borrow();
        let now = Instant::now();
        if st.role != Role::Leader
            || st.proposed_isr.is_some()
            || st.isr_retry_after.is_some_and(|t| t > now)
        {
            return None;
        }
        let isr: Vec<i32> = st
            .record
            .isr
            .iter()
            .copied()
            .filter(|r| {
                *r == self.node_id
                    || st
                        .followers
                        .get(r)
                        .is_some_and(|p| now.duration_since(p.caught_up) <= lag_max)
            })
            .collect();
        (isr.len() < st.record.isr.len()).then_some(isr)
    }

    /// The replica's state for metrics and `/v1/partitions`.
    pub fn stats(&self) -> crate::stats::ReplicaStats {
        let st = self.st.borrow();
        let end = self.log.offsets().log_end_offset;
        let now = Instant::now();
        crate::stats::ReplicaStats {
            role: match st.role {
                Role::Leader => "leader",
                Role::Follower { .. } => "follower",
                Role::Offline => "offline",
            },
            leader: st.record.leader,
            leader_epoch: st.record.leader_epoch,
            replicas: st.record.replicas.clone(),
            isr: st.record.isr.clone(),
            followers: if st.role == Role::Leader {
                st.followers
                    .iter()
                    .map(|(id, p)| FollowerLag {
                        follower: *id,
                        records: p.log_end.map(|e| end.saturating_sub(e)),
                        seconds: now.duration_since(p.caught_up).as_secs_f64(),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Fails every acks=all waiter (leadership lost).
    fn fail_waiters(&self) {
        let waiters = std::mem::take(&mut self.st.borrow_mut().waiters);
        for (_, tx) in waiters {
            let _ = tx.send(Err(KafkaError::new(
                code::NOT_LEADER_OR_FOLLOWER,
                "the partition's leadership changed before the records were replicated",
            )));
        }
    }
}

/// What changed for a partition when an assignment was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    None,
    /// Became leader (new, or from another role).
    Elected,
    /// Stopped leading.
    Resigned,
    /// Still the same role; epochs or ISR changed.
    Updated,
}

/// Where the manager proposes ISR changes and finds brokers (set once the
/// node's metadata store is open).
#[derive(Clone)]
pub struct Env {
    pub topics: Arc<TopicStore>,
    pub lag_max: Duration,
}

/// The replicas of one shard.
#[derive(Default)]
pub struct ReplicaManager {
    node_id: Cell<i32>,
    replicas: RefCell<HashMap<TopicPartition, Rc<Replica>>>,
    fetchers: RefCell<HashMap<i32, Rc<fetcher::Fetcher>>>,
    env: Rc<RefCell<Option<Env>>>,
}

impl ReplicaManager {
    pub fn get(&self, tp: &TopicPartition) -> Option<Rc<Replica>> {
        self.replicas.borrow().get(tp).cloned()
    }

    pub fn all(&self) -> Vec<Rc<Replica>> {
        self.replicas.borrow().values().cloned().collect()
    }

    /// The replica of `tp` if this node leads it in `current` (see
    /// [`Replica::check_leader`]), with its epoch.
    pub fn leader(
        &self,
        tp: &TopicPartition,
        current: i32,
    ) -> Result<(Rc<Replica>, i32), KafkaError> {
        let r = self.get(tp).ok_or_else(|| {
            KafkaError::new(
                code::LEADER_NOT_AVAILABLE,
                format!("partition {tp} is not open on this broker yet"),
            )
        })?;
        let epoch = r.check_leader(current)?;
        Ok((r, epoch))
    }

    /// Applies the image's record of a partition hosted in `log`.
    pub fn assign(&self, node_id: i32, a: &Assignment, log: Rc<Partition>) -> Change {
        self.node_id.set(node_id);
        let role = match a.record.leader {
            l if l == node_id => Role::Leader,
            l if l < 0 => Role::Offline,
            l => Role::Follower { leader: l },
        };
        let existing = self.get(&a.tp).filter(|r| Rc::ptr_eq(&r.log, &log));
        let Some(replica) = existing else {
            let replica = Rc::new(Replica {
                log,
                node_id,
                env: self.env.clone(),
                st: RefCell::new(State {
                    topic_id: a.topic_id,
                    record: a.record.clone(),
                    role: Role::Offline,
                    min_insync: a.min_insync,
                    followers: BTreeMap::new(),
                    waiters: Vec::new(),
                    proposed_isr: None,
                    isr_retry_after: None,
                }),
            });
            self.replicas
                .borrow_mut()
                .insert(a.tp.clone(), replica.clone());
            return self.change_role(&replica, a, role, true);
        };
        let (before, same) = {
            let mut st = replica.st.borrow_mut();
            st.min_insync = a.min_insync;
            st.topic_id = a.topic_id;
            (st.role, st.record == a.record)
        };
        if same && before == role {
            return Change::None;
        }
        self.change_role(&replica, a, role, false)
    }

    fn change_role(&self, replica: &Rc<Replica>, a: &Assignment, role: Role, new: bool) -> Change {
        let (before, old_epoch) = {
            let st = replica.st.borrow();
            (st.role, st.record.leader_epoch)
        };
        let epoch_changed = new || old_epoch != a.record.leader_epoch;
        {
            let mut st = replica.st.borrow_mut();
            st.record = a.record.clone();
            st.role = role;
            st.proposed_isr = None;
            st.isr_retry_after = None;
        }
        replica.log.set_writers(match role {
            Role::Leader => Writers::Leader(a.record.leader_epoch),
            Role::Follower { .. } | Role::Offline => Writers::Nobody,
        });
        match role {
            Role::Leader => {
                self.unfollow(&a.tp);
                let fresh = before != Role::Leader || epoch_changed;
                if fresh {
                    replica.log.begin_leader_epoch(a.record.leader_epoch);
                }
                // Followers: all new in a new epoch; otherwise replicas added
                // (a reassignment) start unknown and removed ones go.
                let now = Instant::now();
                let end = replica.log.offsets().log_end_offset;
                let mut st = replica.st.borrow_mut();
                if fresh {
                    st.followers.clear();
                }
                st.followers.retain(|r, _| a.record.replicas.contains(r));
                for r in &a.record.replicas {
                    if *r != replica.node_id {
                        st.followers.entry(*r).or_insert(Progress {
                            log_end: None,
                            caught_up: now,
                            last_fetch: now,
                            leader_end_at_last_fetch: end,
                        });
                    }
                }
                drop(st);
                replica.update_high_watermark();
                if before == Role::Leader {
                    Change::Updated
                } else {
                    Change::Elected
                }
            }
            Role::Follower { leader } => {
                replica.fail_waiters();
                if before != role || epoch_changed {
                    self.unfollow(&a.tp);
                    self.follow(leader, replica.clone(), a);
                }
                if before == Role::Leader {
                    Change::Resigned
                } else {
                    Change::Updated
                }
            }
            Role::Offline => {
                replica.fail_waiters();
                self.unfollow(&a.tp);
                if before == Role::Leader {
                    Change::Resigned
                } else {
                    Change::Updated
                }
            }
        }
    }

    /// Forgets a partition (deleted, or moved off this node).
    pub fn remove(&self, tp: &TopicPartition) -> bool {
        self.unfollow(tp);
        let gone = self.replicas.borrow_mut().remove(tp);
        gone.is_some_and(|r| {
            r.log.set_writers(Writers::Nobody);
            r.fail_waiters();
            r.role() == Role::Leader
        })
    }

    fn follow(&self, leader: i32, replica: Rc<Replica>, a: &Assignment) {
        let f = self
            .fetchers
            .borrow_mut()
            .entry(leader)
            .or_insert_with(|| fetcher::Fetcher::new(leader, self.node_id.get()))
            .clone();
        f.add(a.tp.clone(), a.topic_id, a.record.leader_epoch, replica);
        if let Some(env) = self.env.borrow().clone() {
            f.start(env);
        }
    }

    fn unfollow(&self, tp: &TopicPartition) {
        for f in self.fetchers.borrow().values() {
            f.remove(tp);
        }
    }

    /// Starts the follower fetchers and the ISR checks (once the node's metadata
    /// store is open; assignments before that are kept and served from then on).
    pub fn attach(&self, env: &Env) {
        if self.env.borrow().is_some() {
            return;
        }
        *self.env.borrow_mut() = Some(env.clone());
        for f in self.fetchers.borrow().values() {
            f.start(env.clone());
        }
    }

    /// Stops every fetcher (the shard is stopping).
    pub fn stop(&self) {
        for f in self.fetchers.borrow().values() {
            f.stop();
        }
    }

    /// Proposes the ISR changes of the led partitions whose followers fell behind.
    pub(crate) fn check_isr(&self) {
        let Some(env) = self.env.borrow().clone() else {
            return;
        };
        for r in self.all() {
            if let Some(isr) = r.shrunk_isr(env.lag_max) {
                tracing::info!(partition = %r.log.topic_partition(), ?isr,
                    "followers fell behind; shrinking the ISR");
                propose_isr(&env, &r, isr);
            }
        }
    }
}

/// Proposes `isr` for the partition of `r` (from its leader), in the background.
pub(crate) fn propose_isr(env: &Env, r: &Rc<Replica>, isr: Vec<i32>) {
    let (tp, topic_id, record) = {
        let st = r.st.borrow();
        (
            r.log.topic_partition().clone(),
            st.topic_id,
            st.record.clone(),
        )
    };
    sluice_engine::metrics::isr_changed(isr.len() > record.isr.len());
    r.st.borrow_mut().proposed_isr = Some(isr.clone());
    let topics = env.topics.clone();
    let r = r.clone();
    glommio::spawn_local(async move {
        let result = topics.alter_isr(&tp, topic_id, &record, isr.clone()).await;
        if let Err(e) = result {
            tracing::info!(partition = %tp, ?isr, error = %e, "ISR change not taken");
            let mut st = r.st.borrow_mut();
            // Unless a newer record replaced the one it was proposed on.
            if st.record == record {
                st.proposed_isr = None;
                st.isr_retry_after = Some(Instant::now() + ISR_RETRY);
            }
        }
    })
    .detach();
}
