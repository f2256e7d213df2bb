//! The group coordinators of one shard: one per partition of `__consumer_offsets`
//! that the shard owns, created on first use. A coordinator loads its partition's
//! groups and offsets from the log before it answers anything and writes every change
//! (committed offsets, group metadata after a rebalance, tombstones) to that
//! partition before it answers (offsets and tombstones fdatasync'ed, group metadata
//! not waited for).
//!
//! Time-driven changes happen at their deadline, not on a polling tick: whenever a
//! group is touched, its next deadline (a session running out, a rebalance's or the
//! first rebalance's delay ending, a pending member id lapsing) is compared with the
//! timer armed for it, and a timer task is started when the new one is earlier. A
//! timer that fires ticks its group and arms the group's next deadline; one armed for
//! a deadline that moved later (a heartbeat) just finds nothing due. So a static
//! member whose session ran out is gone at that moment, as in Kafka (a timer per
//! member there). One retention task per shard drops the offsets of groups that
//! stayed empty longer than `offsets.retention.minutes`, every
//! `offsets.retention.check.interval.ms`.
//!
//! Requests reach the coordinator of their group with one hop to the owning shard
//! ([`on_coordinator`]); everything else about a group happens on that shard.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_engine::batch::{build_batch, stored_records, RecordSpec, NO_PRODUCER};
use sluice_engine::{AppendOptions, Durability, Partition, TopicPartition};

use super::records::{GroupValue, OffsetValue, RecordKey};
use super::state::{Group, GroupLimits, GroupState};
use super::{partition_for, OFFSETS_TOPIC};
use crate::context::BrokerContext;
use crate::kafka_error::{self as code, KafkaError};
use crate::services::{Leadership, ShardServices};
use crate::topics::TopicInfo;

/// Broker settings for groups and committed offsets.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    pub limits: GroupLimits,
    /// `offsets.topic.num.partitions` (used when the topic is created).
    pub offsets_topic_partitions: i32,
    /// `offsets.retention.minutes`: offsets of a group that has been empty this
    /// long are deleted.
    pub offsets_retention: Duration,
    /// `offset.metadata.max.bytes`.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check: Duration,
    /// `offsets.commit.timeout.ms`: how long a commit waits for the offsets
    /// partition's in-sync replicas.
    pub commit_timeout: Duration,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            limits: GroupLimits::default(),
            offsets_topic_partitions: super::OFFSETS_TOPIC_PARTITIONS,
            offsets_retention: Duration::from_hours(7 * 24),
            offset_metadata_max_bytes: 4096,
            offsets_retention_check: Duration::from_mins(10),
            commit_timeout: Duration::from_secs(5),
        }
    }
}

/// A `__consumer_offsets` partition larger than this is logged as a warning at
/// load: without compaction it only grows (its `cleanup.policy` is `compact`, so
/// retention does not delete it, as in Kafka).
const OFFSETS_PARTITION_WARN_BYTES: u64 = 1 << 30;
/// Bytes read per step while loading a partition.
const LOAD_STEP_BYTES: usize = 1 << 20;

/// A committed offset and where its record is in the log (later records win).
#[derive(Debug, Clone)]
pub struct Committed {
    pub value: OffsetValue,
    pub at: u64,
}

/// One group with its committed offsets.
pub struct GroupEntry {
    pub group: Group,
    pub offsets: BTreeMap<(String, i32), Committed>,
}

/// The coordinator of one `__consumer_offsets` partition.
pub struct Coordinator {
    pub index: i32,
    /// Itself, for the deadline timers it starts.
    me: std::rc::Weak<Coordinator>,
    /// The shard's services, which list it while it is current.
    services: std::rc::Weak<ShardServices>,
    /// Per group, the one timer armed: its deadline, and its task (cancelled when
    /// an earlier deadline replaces it, so a group never has more than one).
    armed: RefCell<HashMap<String, (Instant, glommio::task::JoinHandle<()>)>>,
    partition: Rc<Partition>,
    pub settings: GroupSettings,
    groups: RefCell<HashMap<String, GroupEntry>>,
    loaded: Cell<bool>,
    load_lock: futures::lock::Mutex<()>,
}

/// The committed offsets of every group this shard coordinates (for metrics).
pub fn committed_offsets(services: &ShardServices) -> Vec<crate::stats::CommittedOffset> {
    let coordinators: Vec<Rc<Coordinator>> =
        services.coordinators.borrow().values().cloned().collect();
    let mut out = Vec::new();
    for c in coordinators {
        for (group, entry) in c.groups.borrow().iter() {
            for ((topic, partition), committed) in &entry.offsets {
                out.push(crate::stats::CommittedOffset {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    offset: committed.value.offset,
                });
            }
        }
    }
    out
}

/// Wall-clock milliseconds.
pub fn now_ms() -> i64 {
    sluice_engine::now_ms()
}

impl Coordinator {
    /// The coordinator of partition `index` on this shard, loaded.
    async fn get(
        index: i32,
        partition: Rc<Partition>,
        settings: &GroupSettings,
        services: &Rc<ShardServices>,
    ) -> Result<Rc<Coordinator>, KafkaError> {
        let existing = services.coordinators.borrow().get(&index).cloned();
        let c = match existing {
            Some(c) if Rc::ptr_eq(&c.partition, &partition) => c,
            _ => {
                // New, or the topic was deleted and made again: start over.
                let c = Rc::new_cyclic(|me| Coordinator {
                    index,
                    me: me.clone(),
                    services: Rc::downgrade(services),
                    armed: RefCell::new(HashMap::new()),
                    partition,
                    settings: settings.clone(),
                    groups: RefCell::new(HashMap::new()),
                    loaded: Cell::new(false),
                    load_lock: futures::lock::Mutex::new(()),
                });
                let old = services.coordinators.borrow_mut().insert(index, c.clone());
                if let Some(old) = old {
                    old.shut(code::NOT_COORDINATOR);
                }
                if !services.retaining.replace(true) {
                    glommio::spawn_local(retention(
                        Rc::downgrade(services),
                        settings.offsets_retention_check,
                    ))
                    .detach();
                }
                c
            }
        };
        if !c.loaded.get() {
            let _guard = c.load_lock.lock().await;
            if !c.loaded.get() {
                c.load().await?;
                c.loaded.set(true);
            }
        }
        Ok(c)
    }

    /// Reads the partition from its start and rebuilds groups and offsets.
    async fn load(&self) -> Result<(), KafkaError> {
        let started = Instant::now();
        let offsets = self.partition.offsets();
        let mut next = offsets.log_start_offset;
        let mut replay = Replay::default();
        while next < offsets.log_end_offset {
            let read = self.partition.read(next, LOAD_STEP_BYTES, None).await?;
            let data = read.materialize().await?;
            let batches = sluice_engine::batch::split_batches_of(&data);
            if batches.is_empty() {
                break;
            }
            for b in &batches {
                let Some(h) = sluice_engine::batch::BatchHeader::parse(b) else {
                    break;
                };
                next = next.max(u64::try_from(h.last_offset().saturating_add(1)).unwrap_or(next));
                if h.is_control() {
                    continue;
                }
                let Some(recs) = stored_records(b) else {
                    tracing::warn!(
                        partition = self.index,
                        offset = h.base_offset,
                        "__consumer_offsets batch is compressed or damaged; skipped"
                    );
                    continue;
                };
                for r in recs {
                    if u64::try_from(r.offset).is_ok_and(|at| at >= offsets.log_start_offset) {
                        replay.apply(self.index, &r);
                    }
                }
            }
        }
        let records = replay.records;
        let out = replay.finish(Instant::now(), now_ms());
        let n = out.len();
        let due: Vec<(String, Instant)> = out
            .iter()
            .filter_map(|(name, e)| Some((name.clone(), e.group.next_deadline(Instant::now())?)))
            .collect();
        *self.groups.borrow_mut() = out;
        for (name, at) in due {
            self.arm(&name, at);
        }
        tracing::info!(
            partition = self.index,
            groups = n,
            records,
            ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "loaded consumer groups"
        );
        let bytes = self.partition.size_bytes();
        if bytes > OFFSETS_PARTITION_WARN_BYTES {
            tracing::warn!(
                partition = self.index,
                bytes,
                "__consumer_offsets partition is large: it is compacted in Kafka, and \
                 compaction is not implemented yet, so it only grows and is read whole at \
                 every start"
            );
        }
        Ok(())
    }

    /// Runs `f` on group `name` (created Empty if `create` and missing), then makes
    /// sure a timer is armed for the group's next deadline.
    pub fn with_group<T>(
        &self,
        name: &str,
        create: bool,
        f: impl FnOnce(&mut GroupEntry) -> T,
    ) -> Option<T> {
        let (out, due) = {
            let mut groups = self.groups.borrow_mut();
            if !groups.contains_key(name) {
                if !create {
                    return None;
                }
                groups.insert(
                    name.to_string(),
                    GroupEntry {
                        group: Group::new(name, now_ms()),
                        offsets: BTreeMap::new(),
                    },
                );
            }
            let entry = groups.get_mut(name)?;
            let out = f(entry);
            (out, entry.group.next_deadline(Instant::now()))
        };
        if let Some(at) = due {
            self.arm(name, at);
        }
        Some(out)
    }

    /// Arms the timer of group `name` for `at`, unless it is armed for that time
    /// or earlier (that one re-arms for whatever is due after it); a later timer
    /// is cancelled.
    fn arm(&self, name: &str, at: Instant) {
        if self.armed.borrow().get(name).is_some_and(|(t, _)| *t <= at) {
            return;
        }
        let me = self.me.clone();
        let group = name.to_string();
        let task = glommio::spawn_local(async move {
            glommio::timer::sleep(at.saturating_duration_since(Instant::now())).await;
            let Some(c) = me.upgrade().filter(Coordinator::is_current) else {
                return;
            };
            c.armed.borrow_mut().remove(&group);
            let now = Instant::now();
            let now_ms = now_ms();
            // Arms the group's next deadline, if it has one.
            c.with_group(&group, false, |e| e.group.tick(now, now_ms));
            c.persist(&group).await;
        })
        .detach();
        if let Some((_, later)) = self.armed.borrow_mut().insert(name.to_string(), (at, task)) {
            later.cancel();
        }
    }

    /// Still the shard's coordinator of its partition (not replaced or unloaded).
    fn is_current(self: &Rc<Self>) -> bool {
        self.services.upgrade().is_some_and(|s| {
            s.coordinators
                .borrow()
                .get(&self.index)
                .is_some_and(|x| Rc::ptr_eq(x, self))
        })
    }

    /// Names of the groups here, with what ListGroups shows.
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        self.groups
            .borrow()
            .iter()
            .filter(|(_, e)| e.group.state() != GroupState::Dead)
            .map(|(n, e)| {
                (
                    n.clone(),
                    e.group.protocol_type().unwrap_or("").to_string(),
                    e.group.state(),
                )
            })
            .collect()
    }

    /// DeleteGroups for one group: only an empty group goes; its offsets and
    /// metadata are deleted with tombstones.
    pub async fn delete_group(&self, name: &str) -> i16 {
        let keys = self.with_group(name, false, |e| {
            (e.group.state() == GroupState::Empty || e.group.state() == GroupState::Dead)
                .then(|| e.offsets.keys().cloned().collect::<Vec<OffsetKey>>())
        });
        let keys = match keys {
            None => return code::GROUP_ID_NOT_FOUND,
            Some(None) => return code::NON_EMPTY_GROUP,
            Some(Some(k)) => k,
        };
        let mut records = tombstones(name, &keys);
        records.push((
            RecordKey::Group {
                group: name.to_string(),
            },
            None,
        ));
        match self.write(records).await {
            Ok(_) => {
                self.forget(name);
                tracing::info!(group = %name, "deleted group");
                code::NONE
            }
            Err(e) => {
                tracing::warn!(group = %name, error = %e, "could not delete group");
                code::COORDINATOR_NOT_AVAILABLE
            }
        }
    }

    /// OffsetDelete: the group's error, and one error per (topic, partition).
    pub async fn delete_offsets(&self, name: &str, keys: &[OffsetKey]) -> (i16, Vec<i16>) {
        let subscribed = self.with_group(name, false, |e| {
            if e.group.state() == GroupState::Empty {
                Some(Vec::new())
            } else {
                e.group.subscribed_topics()
            }
        });
        let Some(subscribed) = subscribed else {
            return (code::GROUP_ID_NOT_FOUND, Vec::new());
        };
        let Some(subscribed) = subscribed else {
            // Members whose protocol is not the consumer one: Kafka refuses.
            return (code::NON_EMPTY_GROUP, Vec::new());
        };
        let errors: Vec<i16> = keys
            .iter()
            .map(|(t, _)| {
                if subscribed.contains(t) {
                    code::GROUP_SUBSCRIBED_TO_TOPIC
                } else {
                    code::NONE
                }
            })
            .collect();
        let doomed: Vec<OffsetKey> = keys
            .iter()
            .zip(&errors)
            .filter(|(_, e)| **e == code::NONE)
            .map(|(k, _)| k.clone())
            .collect();
        if let Err(e) = self.write(tombstones(name, &doomed)).await {
            tracing::warn!(group = %name, error = %e, "could not delete offsets");
            return (code::COORDINATOR_NOT_AVAILABLE, Vec::new());
        }
        self.with_group(name, false, |e| {
            for k in &doomed {
                e.offsets.remove(k);
            }
        });
        (code::NONE, errors)
    }

    /// Removes a group (DeleteGroups, or an empty group with no offsets left).
    pub fn forget(&self, name: &str) {
        if let Some((_, timer)) = self.armed.borrow_mut().remove(name) {
            timer.cancel();
        }
        if let Some(mut e) = self.groups.borrow_mut().remove(name) {
            e.group.kill(code::COORDINATOR_NOT_AVAILABLE);
        }
    }

    /// Appends records to the partition and waits until they are durable; returns
    /// the offset of the first.
    pub async fn write(&self, records: Vec<(RecordKey, Option<Bytes>)>) -> Result<u64, KafkaError> {
        self.append(records, Durability::Durable).await
    }

    /// Appends records with the given durability; returns the offset of the first.
    async fn append(
        &self,
        records: Vec<(RecordKey, Option<Bytes>)>,
        durability: Durability,
    ) -> Result<u64, KafkaError> {
        if records.is_empty() {
            return Ok(self.partition.offsets().log_end_offset);
        }
        let keys: Vec<Bytes> = records.iter().map(|(k, _)| k.encode()).collect();
        let specs: Vec<RecordSpec<'_>> = records
            .iter()
            .zip(&keys)
            .map(|((_, v), k)| RecordSpec {
                key: Some(k),
                value: v.as_deref(),
                ..RecordSpec::default()
            })
            .collect();
        let batch = build_batch(&specs, now_ms(), NO_PRODUCER);
        // Written as the partition's leader, in its epoch; durable records are
        // answered once every in-sync replica has them, as acks=all.
        let replica = self
            .services
            .upgrade()
            .and_then(|s| s.replicas.get(self.partition.topic_partition()))
            .filter(|r| Rc::ptr_eq(&r.log, &self.partition))
            .ok_or_else(|| {
                KafkaError::new(code::NOT_COORDINATOR, "the coordinator is being unloaded")
            })?;
        let epoch = replica
            .check_leader(-1)
            .map_err(|e| KafkaError::new(code::NOT_COORDINATOR, e.message))?;
        let info = self
            .partition
            .append(
                Bytes::from(batch),
                AppendOptions {
                    leader_epoch: epoch,
                    durability,
                },
            )
            .await?;
        replica.update_high_watermark();
        if durability == Durability::Durable {
            replica
                .wait_replicated(info.last_offset + 1, epoch, self.settings.commit_timeout)
                .await
                .map_err(|e| KafkaError::new(code::NOT_COORDINATOR, e.message))?;
        }
        Ok(info.base_offset)
    }

    /// Stores a group's metadata. It is written but not waited for until an
    /// fdatasync, as Kafka does not fsync it either: members wait for it in
    /// SyncGroup, and a generation lost in a crash only makes them rejoin (their
    /// heartbeats get ILLEGAL_GENERATION), while committed offsets, which a crash
    /// must not lose, are always durable before they are acknowledged.
    pub async fn store_group(&self, name: &str, value: &GroupValue) -> Result<(), KafkaError> {
        self.append(
            vec![(
                RecordKey::Group {
                    group: name.to_string(),
                },
                Some(value.encode()),
            )],
            Durability::Buffered,
        )
        .await
        .map(|_| ())
    }

    /// Stores what the group asks to be stored, if anything.
    pub async fn persist(&self, name: &str) {
        let value = self
            .with_group(name, false, |e| e.group.take_persist())
            .flatten();
        if let Some(v) = value {
            if let Err(e) = self.store_group(name, &v).await {
                tracing::warn!(group = %name, error = %e, "could not store group metadata");
            }
        }
    }

    fn shut(&self, error: i16) {
        for (_, (_, timer)) in self.armed.borrow_mut().drain() {
            timer.cancel();
        }
        for (_, mut e) in self.groups.borrow_mut().drain() {
            e.group.kill(error);
        }
    }

    /// Deletes the offsets of groups that have been empty longer than the
    /// retention (and offsets committed with an explicit expiry that passed).
    async fn expire_offsets(&self, now_ms: i64) {
        let retention =
            i64::try_from(self.settings.offsets_retention.as_millis()).unwrap_or(i64::MAX);
        // (group, offsets to delete, the group has been empty past the retention)
        let mut doomed: Vec<(String, Vec<OffsetKey>, bool)> = Vec::new();
        for (name, e) in self.groups.borrow().iter() {
            let empty_long = e.group.state() == GroupState::Empty
                && now_ms.saturating_sub(e.group.state_since_ms) >= retention;
            let keys: Vec<OffsetKey> = e
                .offsets
                .iter()
                .filter(|(_, c)| {
                    empty_long
                        || (c.value.expire_timestamp >= 0 && c.value.expire_timestamp <= now_ms)
                })
                .map(|(k, _)| k.clone())
                .collect();
            if !keys.is_empty() || (empty_long && e.offsets.is_empty()) {
                doomed.push((name.clone(), keys, empty_long));
            }
        }
        for (name, keys, empty_long) in doomed {
            let mut records = tombstones(&name, &keys);
            let all_gone = self
                .with_group(&name, false, |e| e.offsets.len() == keys.len())
                .unwrap_or(false);
            if empty_long && all_gone {
                records.push((
                    RecordKey::Group {
                        group: name.clone(),
                    },
                    None,
                ));
            }
            match self.write(records).await {
                Ok(_) => {
                    tracing::info!(group = %name, offsets = keys.len(), "expired committed offsets");
                    let remove = self
                        .with_group(&name, false, |e| {
                            for k in &keys {
                                e.offsets.remove(k);
                            }
                            e.offsets.is_empty() && e.group.state() == GroupState::Empty
                        })
                        .unwrap_or(false);
                    if empty_long && all_gone && remove {
                        self.forget(&name);
                    }
                }
                Err(e) => tracing::warn!(group = %name, error = %e, "could not expire offsets"),
            }
        }
    }
}

/// (topic, partition) of a committed offset.
pub type OffsetKey = (String, i32);

/// Tombstones for committed offsets of `group`.
fn tombstones(group: &str, keys: &[OffsetKey]) -> Vec<(RecordKey, Option<Bytes>)> {
    keys.iter()
        .map(|(t, p)| {
            (
                RecordKey::Offset {
                    group: group.to_string(),
                    topic: t.clone(),
                    partition: *p,
                },
                None,
            )
        })
        .collect()
}

/// What a partition's records add up to while it is read from the start: the last
/// record of each key wins, a tombstone removes the key.
#[derive(Default)]
struct Replay {
    groups: HashMap<String, Option<GroupValue>>,
    committed: HashMap<String, BTreeMap<OffsetKey, Committed>>,
    records: u64,
}

impl Replay {
    fn apply(&mut self, partition: i32, r: &sluice_engine::batch::StoredRecord) {
        let Ok(at) = u64::try_from(r.offset) else {
            return;
        };
        self.records += 1;
        let skip = |e: &dyn std::fmt::Display| {
            tracing::warn!(partition, offset = r.offset, error = %e, "__consumer_offsets record skipped");
        };
        let key = match r.key.as_deref().map(RecordKey::decode) {
            Some(Ok(k)) => k,
            Some(Err(e)) => return skip(&e),
            None => return,
        };
        match key {
            RecordKey::Offset {
                group,
                topic,
                partition: p,
            } => {
                let slot = self.committed.entry(group).or_default();
                match r.value.as_deref().map(OffsetValue::decode) {
                    None => {
                        slot.remove(&(topic, p));
                    }
                    Some(Ok(value)) => {
                        slot.insert((topic, p), Committed { value, at });
                    }
                    Some(Err(e)) => skip(&e),
                }
            }
            RecordKey::Group { group } => match r.value.as_deref().map(GroupValue::decode) {
                None => {
                    self.groups.insert(group, None);
                }
                Some(Ok(v)) => {
                    self.groups.insert(group, Some(v));
                }
                Some(Err(e)) => skip(&e),
            },
        }
    }

    fn finish(self, now: Instant, now_ms: i64) -> HashMap<String, GroupEntry> {
        let mut out = HashMap::new();
        for (name, v) in &self.groups {
            if let Some(v) = v {
                out.insert(
                    name.clone(),
                    GroupEntry {
                        group: Group::from_stored(name, v, now, now_ms),
                        offsets: BTreeMap::new(),
                    },
                );
            }
        }
        for (name, offs) in self.committed {
            if offs.is_empty() {
                continue;
            }
            out.entry(name.clone())
                .or_insert_with(|| GroupEntry {
                    group: Group::new(&name, now_ms),
                    offsets: BTreeMap::new(),
                })
                .offsets = offs;
        }
        out
    }
}

/// The shard's offsets-retention task: every coordinator of the shard, every
/// `interval`; it ends when the shard has none left (shutdown) and starts again
/// with the next one.
async fn retention(services: std::rc::Weak<ShardServices>, interval: Duration) {
    loop {
        glommio::timer::sleep(interval).await;
        let Some(services) = services.upgrade() else {
            return;
        };
        let all: Vec<Rc<Coordinator>> = services.coordinators.borrow().values().cloned().collect();
        if all.is_empty() {
            services.retaining.set(false);
            return;
        }
        for c in all {
            // Replaced or unloaded meanwhile: nothing of it to check.
            if c.is_current() {
                c.expire_offsets(now_ms()).await;
            }
        }
    }
}

/// Replicas of `__consumer_offsets`: three (Kafka's
/// `offsets.topic.replication.factor`), or every broker of a smaller cluster
/// (the voters, or more if more registered). Until that many brokers are live the
/// topic is not created and groups get `COORDINATOR_NOT_AVAILABLE` (retriable),
/// so it is not created with fewer replicas during a cluster's first start.
fn offsets_replication(ctx: &BrokerContext) -> Result<i16, KafkaError> {
    let live = ctx.topics.image().live_brokers().count();
    let voters = ctx
        .settings
        .cluster
        .as_ref()
        .map_or(1, |c| c.quorum.voters.len());
    let want = voters.max(live).clamp(1, 3);
    if live < want {
        return Err(KafkaError::new(
            code::COORDINATOR_NOT_AVAILABLE,
            format!("{OFFSETS_TOPIC} needs {want} live brokers for its replicas; {live} are live"),
        ));
    }
    Ok(i16::try_from(want).unwrap_or(1))
}

/// The offsets topic, created (compacted, `offsets.topic.num.partitions`
/// partitions, replicated, see [`offsets_replication`]) on first use.
pub async fn offsets_topic(ctx: &BrokerContext) -> Result<Arc<TopicInfo>, KafkaError> {
    if let Some(t) = ctx.topics.image().get(OFFSETS_TOPIC) {
        return Ok(t.clone());
    }
    let configs = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
    match ctx
        .topics
        .create(
            OFFSETS_TOPIC,
            ctx.settings.groups.offsets_topic_partitions,
            offsets_replication(ctx)?,
            configs,
            false,
        )
        .await
    {
        Ok(t) => Ok(t),
        Err(e) if e.code == code::TOPIC_ALREADY_EXISTS => {
            ctx.topics.image().get(OFFSETS_TOPIC).cloned().ok_or(e)
        }
        Err(e) => Err(KafkaError::new(
            code::COORDINATOR_NOT_AVAILABLE,
            format!("cannot create {OFFSETS_TOPIC}: {e}"),
        )),
    }
}

/// Runs `f` on the coordinator of `__consumer_offsets` partition `index`, on the
/// shard that owns it.
pub async fn on_partition<O, F, Fut>(ctx: &BrokerContext, index: i32, f: F) -> Result<O, KafkaError>
where
    F: FnOnce(Rc<Coordinator>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<O, KafkaError>> + 'static,
    O: Send + 'static,
{
    let tp = TopicPartition::new(OFFSETS_TOPIC, index)
        .map_err(|e| KafkaError::new(code::COORDINATOR_NOT_AVAILABLE, e.to_string()))?;
    let Some(shard) = ctx.router.shard_of(&tp) else {
        // Another broker leads it (or none does yet): the client finds it again.
        return Err(KafkaError::new(
            code::NOT_COORDINATOR,
            format!("broker {} does not lead {tp}", ctx.node_id()),
        ));
    };
    let settings = ctx.settings.groups.clone();
    ctx.router
        .call(shard, move |s| async move {
            let p = s
                .partition(&tp)
                .map_err(|e| KafkaError::new(code::COORDINATOR_NOT_AVAILABLE, e.to_string()))?;
            let services = ShardServices::of(&s);
            // A follower's replica is no coordinator: the leader's is.
            let leads = services.replicas.get(&tp).is_some_and(|r| {
                Rc::ptr_eq(&r.log, &p) && r.role() == crate::replica::Role::Leader
            });
            if !leads {
                return Err(KafkaError::new(
                    code::NOT_COORDINATOR,
                    format!("this broker does not lead {tp}"),
                ));
            }
            let c = Coordinator::get(index, p, &settings, &services).await?;
            f(c).await
        })
        .await
        .map_err(|e| KafkaError::new(code::COORDINATOR_NOT_AVAILABLE, e.to_string()))?
}

/// Runs `f` on the coordinator of every partition of `__consumer_offsets` this
/// broker leads (none if the topic does not exist yet) and returns what each gave.
pub async fn on_every_partition<O, F, Fut>(ctx: &BrokerContext, f: F) -> Result<Vec<O>, KafkaError>
where
    F: Fn(Rc<Coordinator>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<O, KafkaError>> + 'static,
    O: Send + 'static,
{
    let Some(topic) = ctx.topics.image().get(OFFSETS_TOPIC).cloned() else {
        return Ok(Vec::new());
    };
    let all = (0..topic.partitions)
        .filter(|i| {
            topic.leader(*i) == ctx.node_id()
                && TopicPartition::new(OFFSETS_TOPIC, *i)
                    .is_ok_and(|tp| ctx.router.shard_of(&tp).is_some())
        })
        .map(|i| on_partition(ctx, i, f.clone()));
    futures::future::join_all(all).await.into_iter().collect()
}

/// Shutdown: every group coordinated on this shard answers its waiting members
/// `NOT_COORDINATOR` (they find the coordinator again once the node is back).
pub fn unload_local(services: &ShardServices) {
    let all: Vec<Rc<Coordinator>> = services
        .coordinators
        .borrow_mut()
        .drain()
        .map(|(_, c)| c)
        .collect();
    for c in all {
        c.shut(code::NOT_COORDINATOR);
    }
}

/// Loads the groups of the `__consumer_offsets` partitions this shard owns (at
/// start, so that members stored before a restart have their sessions timed from
/// now, and the first request does not wait for the load).
pub async fn load_owned(ctx: &BrokerContext) {
    let Some(topic) = ctx.topics.image().get(OFFSETS_TOPIC).cloned() else {
        return;
    };
    for index in 0..topic.partitions {
        let Ok(tp) = TopicPartition::new(OFFSETS_TOPIC, index) else {
            continue;
        };
        if ctx.router.shard_of(&tp) == Some(ctx.shard) && topic.leader(index) == ctx.node_id() {
            if let Err(e) = on_partition(ctx, index, |_| async { Ok(()) }).await {
                tracing::warn!(partition = index, error = %e, "could not load consumer groups");
            }
        }
    }
}

/// Runs `f` on the coordinator of `group`.
pub async fn on_coordinator<O, F, Fut>(
    ctx: &BrokerContext,
    group: &str,
    f: F,
) -> Result<O, KafkaError>
where
    F: FnOnce(Rc<Coordinator>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<O, KafkaError>> + 'static,
    O: Send + 'static,
{
    if group.len() > super::records::STRING_MAX {
        return Err(KafkaError::new(
            code::INVALID_GROUP_ID,
            format!(
                "group id of {} bytes: at most {}",
                group.len(),
                super::records::STRING_MAX
            ),
        ));
    }
    let topic = offsets_topic(ctx).await?;
    on_partition(ctx, partition_for(group, topic.partitions), f).await
}

/// Group coordinators follow the leadership of `__consumer_offsets` partitions: a
/// partition led here gets its coordinator loaded at once; one no longer led here
/// has its coordinator unloaded (waiting members are answered `NOT_COORDINATOR`).
struct GroupLeadership {
    settings: GroupSettings,
}

impl Leadership for GroupLeadership {
    fn elected(&self, services: &Rc<ShardServices>, partition: &Rc<Partition>) {
        let tp = partition.topic_partition();
        if &*tp.topic != OFFSETS_TOPIC {
            return;
        }
        let (index, partition, settings, services) = (
            tp.partition,
            partition.clone(),
            self.settings.clone(),
            services.clone(),
        );
        glommio::spawn_local(async move {
            if let Err(e) = Coordinator::get(index, partition, &settings, &services).await {
                tracing::warn!(partition = index, error = %e, "could not load consumer groups");
            }
        })
        .detach();
    }

    fn resigned(&self, services: &Rc<ShardServices>, tp: &TopicPartition) {
        if &*tp.topic != OFFSETS_TOPIC {
            return;
        }
        let gone = services.coordinators.borrow_mut().remove(&tp.partition);
        if let Some(c) = gone {
            c.shut(code::NOT_COORDINATOR);
        }
    }
}

/// Registers the group coordinators' leadership hooks on the context's shard.
pub fn follow_leadership(ctx: &BrokerContext) {
    ctx.services.follow_leadership(Rc::new(GroupLeadership {
        settings: ctx.settings.groups.clone(),
    }));
}
