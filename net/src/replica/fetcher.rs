//! A follower's fetcher: one per (shard, leader broker), fetching every partition
//! the shard follows on that broker in one Fetch request per round, with Kafka's
//! replica id set, over one connection ([`super::link`]).
//!
//! A partition that starts following (a new leader, or a new leader epoch) first
//! asks the leader OffsetForLeaderEpoch for the end of its own latest epoch and
//! truncates what the leader does not have (a divergent suffix written by an old
//! leader that was never replicated). Fetched batches are appended byte for byte
//! ([`sluice_engine::Partition::append_replicated`]) and made durable before the
//! next fetch, whose offset tells the leader what this replica has on disk.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::sync::Notify;
use sluice_engine::{Durability, TopicPartition};
use uuid::Uuid;

use super::link::Link;
use super::{Env, Replica};
use crate::kafka_error as code;

/// Fetch v12: topic names, replica id in the request, leader epochs per partition.
const FETCH_VERSION: i16 = 12;
/// OffsetForLeaderEpoch v3: the replica id is sent.
const EPOCH_VERSION: i16 = 3;
/// How long a fetch waits at the leader for data.
const FETCH_WAIT: Duration = Duration::from_millis(500);
/// The deadline of one request (the fetch's wait included).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes asked per partition and per fetch.
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const FETCH_MAX_BYTES: i32 = 16 << 20;
/// Pause after a failed connection or request.
const BACKOFF: Duration = Duration::from_millis(100);
/// Pause of a partition the leader refused (its metadata is moving).
const HOLD: Duration = Duration::from_millis(200);

/// One followed partition.
struct Follow {
    replica: Rc<Replica>,
    topic_id: Uuid,
    /// The leader epoch this follows.
    epoch: i32,
    /// Truncated to the leader's history in this epoch.
    truncated: bool,
    /// The leader answered OFFSET_OUT_OF_RANGE: ask it where its log starts.
    out_of_range: bool,
    /// Not fetched before this instant.
    held_until: Option<Instant>,
}

/// The fetcher of one leader broker on one shard.
pub(crate) struct Fetcher {
    leader: i32,
    node_id: i32,
    parts: RefCell<BTreeMap<TopicPartition, Follow>>,
    changed: Notify,
    running: Cell<bool>,
    stopped: Cell<bool>,
}

impl Fetcher {
    pub fn new(leader: i32, node_id: i32) -> Rc<Fetcher> {
        Rc::new(Fetcher {
            leader,
            node_id,
            parts: RefCell::new(BTreeMap::new()),
            changed: Notify::default(),
            running: Cell::new(false),
            stopped: Cell::new(false),
        })
    }

    pub fn add(&self, tp: TopicPartition, topic_id: Uuid, epoch: i32, replica: Rc<Replica>) {
        self.parts.borrow_mut().insert(
            tp,
            Follow {
                replica,
                topic_id,
                epoch,
                truncated: false,
                out_of_range: false,
                held_until: None,
            },
        );
        self.changed.notify_all();
    }

    pub fn remove(&self, tp: &TopicPartition) {
        if self.parts.borrow_mut().remove(tp).is_some() {
            self.changed.notify_all();
        }
    }

    pub fn stop(&self) {
        self.stopped.set(true);
        self.changed.notify_all();
    }

    /// Starts the fetch loop on this shard unless it runs.
    pub fn start(self: &Rc<Self>, env: Env) {
        if self.running.replace(true) {
            return;
        }
        let me = self.clone();
        glommio::spawn_local(async move { me.run(env).await }).detach();
    }

    async fn run(self: Rc<Self>, env: Env) {
        let mut link: Option<Link> = None;
        while !self.stopped.get() {
            if self.parts.borrow().is_empty() {
                let wait = self.changed.notified();
                if self.parts.borrow().is_empty() && !self.stopped.get() {
                    wait.await;
                }
                continue;
            }
            if link.is_none() {
                link = self.connect(&env).await;
                if link.is_none() {
                    glommio::timer::sleep(BACKOFF * 5).await;
                    continue;
                }
            }
            let Some(l) = link.as_mut() else { continue };
            let r = match self.truncate(l).await {
                Ok(()) => match self.catch_up_log_start(l).await {
                    Ok(()) => self.fetch(l).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                tracing::debug!(leader = self.leader, error = %e, "replica fetch failed; reconnecting");
                link = None;
                glommio::timer::sleep(BACKOFF).await;
            }
        }
        self.running.set(false);
    }

    async fn connect(&self, env: &Env) -> Option<Link> {
        let image = env.topics.image();
        let Some(b) = image.broker(self.leader) else {
            tracing::debug!(
                leader = self.leader,
                "leader not live in the metadata; waiting"
            );
            return None;
        };
        let addr = format!("{}:{}", b.host, b.port);
        let mut attempt = Link::connect(&addr, CALL_TIMEOUT).await;
        if attempt.as_ref().err().is_some_and(refused) {
            // Once more a moment later: a refusal must not be a blip.
            glommio::timer::sleep(BACKOFF).await;
            attempt = Link::connect(&addr, CALL_TIMEOUT).await;
        }
        match attempt {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::info!(leader = self.leader, %addr, error = %e, "cannot reach the leader");
                if refused(&e) {
                    // Nothing listens at the leader's address: its process is
                    // gone. The controller fences that incarnation now rather
                    // than after its session times out, so the partitions it led
                    // fail over at once.
                    let topics = env.topics.clone();
                    let (id, incarnation) = (b.id, b.incarnation);
                    glommio::spawn_local(async move {
                        if let Err(e) = topics.fence_unreachable(id, incarnation).await {
                            tracing::debug!(broker = id, error = %e, "fence not taken");
                        }
                    })
                    .detach();
                }
                None
            }
        }
    }

    /// Truncates every partition not truncated in its epoch yet to the leader's
    /// history (OffsetForLeaderEpoch with the partition's latest epoch).
    async fn truncate(&self, link: &mut Link) -> Result<(), String> {
        let todo: Vec<(TopicPartition, i32, i32, Rc<Replica>)> = self
            .parts
            .borrow()
            .iter()
            .filter(|(_, f)| !f.truncated && f.held_until.is_none_or(|t| t <= Instant::now()))
            .map(|(tp, f)| {
                (
                    tp.clone(),
                    f.epoch,
                    f.replica.log.last_leader_epoch(),
                    f.replica.clone(),
                )
            })
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let mut by_topic: BTreeMap<&str, Vec<OffsetForLeaderPartition>> = BTreeMap::new();
        for (tp, current, last, _) in &todo {
            by_topic.entry(&tp.topic).or_default().push(
                OffsetForLeaderPartition::default()
                    .with_partition(tp.partition)
                    .with_current_leader_epoch(*current)
                    .with_leader_epoch((*last).max(0)),
            );
        }
        let req = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(self.node_id))
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, parts)| {
                        OffsetForLeaderTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                            .with_partitions(parts)
                    })
                    .collect(),
            );
        let resp: OffsetForLeaderEpochResponse = link
            .call(
                ApiKey::OffsetForLeaderEpoch,
                EPOCH_VERSION,
                &req,
                CALL_TIMEOUT,
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut answers = BTreeMap::new();
        for t in &resp.topics {
            for p in &t.partitions {
                answers.insert((t.topic.0.to_string(), p.partition), p.clone());
            }
        }
        for (tp, epoch, last, replica) in todo {
            let Some(a) = answers.get(&(tp.topic.to_string(), tp.partition)) else {
                continue;
            };
            if a.error_code != code::NONE {
                tracing::debug!(partition = %tp, error_code = a.error_code, "leader refused OffsetForLeaderEpoch");
                self.hold(&tp);
                continue;
            }
            let offsets = replica.log.offsets();
            let target = truncation_point(&replica, last, a.leader_epoch, a.end_offset);
            // The answer may come after this partition moved on (another leader,
            // or this node leads it now): then it must not cut anything.
            if !self.follows(&tp, epoch, &replica) {
                continue;
            }
            if target < offsets.log_end_offset {
                tracing::info!(partition = %tp, from = offsets.log_end_offset, to = target,
                    leader = self.leader, leader_epoch = epoch, "truncating to the leader's history");
            }
            replica
                .log
                .truncate_to(target)
                .await
                .map_err(|e| format!("{tp}: truncation: {e}"))?;
            if let Some(f) = self.parts.borrow_mut().get_mut(&tp) {
                if f.epoch == epoch {
                    f.truncated = true;
                }
            }
        }
        Ok(())
    }

    /// Whether this fetcher still follows `tp` in `epoch` with `replica`.
    fn follows(&self, tp: &TopicPartition, epoch: i32, replica: &Rc<Replica>) -> bool {
        self.parts
            .borrow()
            .get(tp)
            .is_some_and(|f| f.epoch == epoch && Rc::ptr_eq(&f.replica, replica))
            && replica.role()
                == super::Role::Follower {
                    leader: self.leader,
                }
    }

    /// For partitions the leader answered OFFSET_OUT_OF_RANGE: where the leader's
    /// log starts (ListOffsets, earliest). A log that ends before it starts over
    /// there (what it has is gone on the leader); otherwise the log went past the
    /// leader's end and is truncated to its history again.
    async fn catch_up_log_start(&self, link: &mut Link) -> Result<(), String> {
        use kafka_protocol::messages::list_offsets_request::{
            ListOffsetsPartition, ListOffsetsTopic,
        };
        use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
        let todo: Vec<(TopicPartition, i32, Rc<Replica>)> = self
            .parts
            .borrow()
            .iter()
            .filter(|(_, f)| f.out_of_range)
            .map(|(tp, f)| (tp.clone(), f.epoch, f.replica.clone()))
            .collect();
        for (tp, epoch, replica) in todo {
            let req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(self.node_id))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(tp.topic.to_string())))
                    .with_partitions(vec![ListOffsetsPartition::default()
                        .with_partition_index(tp.partition)
                        .with_current_leader_epoch(epoch)
                        .with_timestamp(-2)])]);
            let resp: ListOffsetsResponse = link
                .call(ApiKey::ListOffsets, 4, &req, CALL_TIMEOUT)
                .await
                .map_err(|e| e.to_string())?;
            let answer = resp
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .filter(|p| p.error_code == code::NONE)
                .and_then(|p| u64::try_from(p.offset).ok());
            if !self.follows(&tp, epoch, &replica) {
                continue;
            }
            match answer {
                Some(start) if replica.log.offsets().log_end_offset < start => {
                    tracing::info!(partition = %tp, offset = start,
                        "behind the leader's log start; starting over there");
                    replica
                        .log
                        .reset_to(start)
                        .await
                        .map_err(|e| format!("{tp}: {e}"))?;
                }
                Some(_) => {
                    if let Some(f) = self.parts.borrow_mut().get_mut(&tp) {
                        f.truncated = false;
                    }
                }
                None => self.hold(&tp),
            }
            if let Some(f) = self.parts.borrow_mut().get_mut(&tp) {
                f.out_of_range = false;
            }
        }
        Ok(())
    }

    fn hold(&self, tp: &TopicPartition) {
        if let Some(f) = self.parts.borrow_mut().get_mut(tp) {
            f.held_until = Some(Instant::now() + HOLD);
        }
    }

    /// One fetch round: asks for every truncated partition from its log end and
    /// appends what comes back, durably.
    async fn fetch(&self, link: &mut Link) -> Result<(), String> {
        let now = Instant::now();
        let asked: Vec<(TopicPartition, Uuid, i32, Rc<Replica>)> = self
            .parts
            .borrow()
            .iter()
            .filter(|(_, f)| {
                f.truncated && !f.out_of_range && f.held_until.is_none_or(|t| t <= now)
            })
            .map(|(tp, f)| (tp.clone(), f.topic_id, f.epoch, f.replica.clone()))
            .collect();
        if asked.is_empty() {
            // Everything held or waiting for truncation: wait a little or for news.
            let wait = self.changed.notified();
            let timer = glommio::timer::sleep(HOLD).fuse();
            futures::pin_mut!(timer);
            futures::select! {
                () = wait.fuse() => {},
                () = timer => {},
            }
            return Ok(());
        }
        let mut by_topic: BTreeMap<&str, (Uuid, Vec<FetchPartition>)> = BTreeMap::new();
        for (tp, id, epoch, replica) in &asked {
            let o = replica.log.offsets();
            by_topic
                .entry(&tp.topic)
                .or_insert_with(|| (*id, Vec::new()))
                .1
                .push(
                    FetchPartition::default()
                        .with_partition(tp.partition)
                        .with_current_leader_epoch(*epoch)
                        .with_fetch_offset(i64::try_from(o.log_end_offset).unwrap_or(i64::MAX))
                        .with_last_fetched_epoch(replica.log.last_leader_epoch())
                        .with_log_start_offset(i64::try_from(o.log_start_offset).unwrap_or(0))
                        .with_partition_max_bytes(PARTITION_MAX_BYTES),
                );
        }
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(self.node_id))
            .with_max_wait_ms(i32::try_from(FETCH_WAIT.as_millis()).unwrap_or(500))
            .with_min_bytes(1)
            .with_max_bytes(FETCH_MAX_BYTES)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, (id, parts))| {
                        FetchTopic::default()
                            .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                            .with_topic_id(id)
                            .with_partitions(parts)
                    })
                    .collect(),
            );
        let resp: FetchResponse = link
            .call(ApiKey::Fetch, FETCH_VERSION, &req, CALL_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        if resp.error_code != code::NONE {
            return Err(format!("fetch answered error code {}", resp.error_code));
        }
        let mut work = Vec::new();
        for t in resp.responses {
            for p in t.partitions {
                let Ok(tp) = TopicPartition::new(&t.topic.0, p.partition_index) else {
                    continue;
                };
                // `asked` is in partition order (from the map).
                let followed = asked
                    .binary_search_by(|(a, ..)| a.cmp(&tp))
                    .ok()
                    .map(|i| (asked[i].2, asked[i].3.clone()));
                if let Some((epoch, replica)) = followed {
                    work.push(self.take(tp, epoch, replica, p));
                }
            }
        }
        futures::future::join_all(work).await;
        Ok(())
    }

    /// Applies one partition's part of a fetch answer.
    async fn take(
        &self,
        tp: TopicPartition,
        epoch: i32,
        replica: Rc<Replica>,
        p: kafka_protocol::messages::fetch_response::PartitionData,
    ) {
        // The partition may have been re-assigned while the fetch was out.
        if !self.follows(&tp, epoch, &replica) {
            return;
        }
        match p.error_code {
            code::NONE => {}
            code::OFFSET_OUT_OF_RANGE => {
                if let Some(f) = self.parts.borrow_mut().get_mut(&tp) {
                    f.out_of_range = true;
                }
                return;
            }
            e => {
                tracing::debug!(partition = %tp, error_code = e, "leader refused the fetch");
                self.hold(&tp);
                return;
            }
        }
        if p.diverging_epoch.epoch >= 0 {
            if let Some(f) = self.parts.borrow_mut().get_mut(&tp) {
                f.truncated = false;
            }
            return;
        }
        if let Some(records) = p.records.filter(|r| !r.is_empty()) {
            let n = records.len() as u64;
            if let Err(e) = replica
                .log
                .append_replicated(records, Durability::Durable)
                .await
            {
                tracing::warn!(partition = %tp, error = %e, "fetched batches refused; truncating again");
                if let Some(f) = self.parts.borrow_mut().get_mut(&tp) {
                    f.truncated = false;
                }
                return;
            }
            sluice_engine::metrics::replicated_in(n);
        }
        // Leading it now, or following another: the HW is no longer ours to set.
        if !self.follows(&tp, epoch, &replica) {
            return;
        }
        let o = replica.log.offsets();
        let hw = u64::try_from(p.high_watermark).unwrap_or(0);
        let hw = hw.min(o.log_end_offset).max(o.log_start_offset);
        replica.log.set_high_watermark(hw);
        // Records the leader deleted (DeleteRecords, retention) go here too.
        let start = u64::try_from(p.log_start_offset).unwrap_or(0).min(hw);
        if start > o.log_start_offset {
            if let Err(e) = replica.log.delete_records_before(start).await {
                tracing::warn!(partition = %tp, error = %e, "cannot follow the leader's log start");
            }
        }
    }
}

/// Where a follower whose newest epoch is `last` truncates, given the leader's
/// answer `(epoch, end)` for it: the end of that epoch on both sides, whichever
/// is lower (Kafka's KIP-279 rule).
fn truncation_point(replica: &Replica, last: i32, epoch: i32, end: i64) -> u64 {
    let offsets = replica.log.offsets();
    if last < 0 {
        // Nothing written in any epoch here.
        return offsets.log_end_offset;
    }
    if epoch < 0 {
        // The leader has no epoch as old: only what was committed is kept.
        return offsets.high_watermark;
    }
    let epochs = replica.log.leader_epochs();
    let (_, mine) = crate::handlers::offset_for_leader_epoch::end_of_epoch(
        &epochs,
        offsets.log_end_offset,
        -1,
        epoch,
    );
    // No epoch here as old as the leader's: all of ours is newer, and diverges
    // from where our first epoch starts.
    let mine = u64::try_from(mine)
        .unwrap_or_else(|_| epochs.first().map_or(offsets.log_end_offset, |(_, s)| *s));
    u64::try_from(end).unwrap_or(0).min(mine)
}

/// A connection refused: nothing listens at the address.
fn refused(e: &crate::client::ClientError) -> bool {
    matches!(e, crate::client::ClientError::Connect { source, .. }
        if source.kind() == std::io::ErrorKind::ConnectionRefused)
}
