//! The commands that change the image, and the one function that applies them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::image::{BrokerRecord, MetadataImage, PartitionRecord, TopicRecord};

/// Most partitions one topic may have.
pub const PARTITIONS_MAX: i32 = 100_000;

/// A change to the metadata. Commands that name a topic carry its id too, so a
/// command meant for a deleted topic never touches a new topic of the same name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Command {
    /// Sets the cluster id; refused once one is set.
    InitCluster {
        cluster_id: String,
    },
    CreateTopic {
        name: String,
        id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
        /// Replicas per partition, placed by [`apply`] over the live brokers.
        #[serde(default = "one")]
        replication_factor: i16,
    },
    DeleteTopic {
        name: String,
        id: Uuid,
    },
    /// Grows a topic to `total` partitions.
    CreatePartitions {
        name: String,
        id: Uuid,
        total: i32,
    },
    /// Replaces a topic's config overrides.
    SetTopicConfigs {
        name: String,
        id: Uuid,
        configs: BTreeMap<String, String>,
    },
    /// Reserves the next `count` producer ids for the proposer.
    ReserveProducerIds {
        count: i64,
    },
    /// A broker (re)starting: its endpoint and a new incarnation. It is live from
    /// here on; offline partitions it holds a replica of are led by it again, and
    /// topics without placement (from before brokers were recorded) are placed on
    /// it.
    RegisterBroker {
        id: i32,
        incarnation: u64,
        rack: Option<String>,
        host: String,
        port: u16,
    },
    /// Replaces the dynamic broker configs of `resource` (`""`: the cluster-wide
    /// default; else a broker id); an empty map removes them.
    SetBrokerConfigs {
        resource: String,
        configs: BTreeMap<String, String>,
    },
    /// A broker that missed its session (the incarnation it registered with, so a
    /// late fence does not hit its next start): the partitions it led move to
    /// another live in-sync replica, or go offline.
    FenceBroker {
        id: i32,
        incarnation: u64,
    },
    /// Moves a partition's replicas to `target` (Kafka's
    /// AlterPartitionReassignments): the new ones are added and catch up, then the
    /// old ones go. `None` cancels a reassignment in progress.
    Reassign {
        name: String,
        id: Uuid,
        partition: i32,
        target: Option<Vec<i32>>,
    },
    /// Each listed partition `(topic, id, partition)` is led by its preferred
    /// replica (its first) if that one is live and in sync (Kafka's preferred
    /// leader election); others are left as they are.
    ElectPreferred {
        partitions: Vec<(String, Uuid, i32)>,
    },
    /// A partition leader changes its in-sync replicas (Kafka's AlterPartition):
    /// taken only from the current leader in its current leader epoch and on the
    /// partition epoch it last saw, so a stale leader or a stale view cannot undo a
    /// newer change. The new ISR holds the leader and only live replicas.
    AlterIsr {
        name: String,
        id: Uuid,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    },
}

fn one() -> i16 {
    1
}

/// What an applied command produced, beyond the new image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    Done,
    /// The first id of a reserved producer-id block.
    ProducerIds {
        first: i64,
    },
}

/// Why a command does not fit the image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Refusal {
    #[error("the cluster id is already set")]
    ClusterIdSet,
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("topic '{name}' has {have} partitions; the new count must be larger and at most {PARTITIONS_MAX}, not {asked}")]
    PartitionCount { name: String, have: i32, asked: i32 },
    #[error("{0} partitions: a topic has 1 to {PARTITIONS_MAX}")]
    InvalidPartitions(i32),
    #[error("a producer-id block of {0} ids")]
    InvalidBlock(i64),
    #[error("replication factor {asked} needs that many live brokers; {brokers} are live")]
    ReplicationFactor { asked: i16, brokers: usize },
    #[error("broker {0} is not registered with that incarnation")]
    UnknownBroker(i32),
    #[error("broker config resource '{0}': name a broker id, or nothing for the cluster default")]
    BrokerResource(String),
    #[error("partition {name}-{partition} changed since (now leader {leader} in epoch {leader_epoch}, partition epoch {partition_epoch})")]
    StalePartition {
        name: String,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
    },
    #[error(
        "partition {name}-{partition}: ISR {isr:?} must hold the leader and only live replicas"
    )]
    InvalidIsr {
        name: String,
        partition: i32,
        isr: Vec<i32>,
    },
    #[error(
        "partition {name}-{partition}: replicas {replicas:?} must be distinct registered brokers"
    )]
    InvalidReplicas {
        name: String,
        partition: i32,
        replicas: Vec<i32>,
    },
    #[error("partition {name}-{partition}: no reassignment is in progress")]
    NoReassignment { name: String, partition: i32 },
    #[error("partition {name}-{partition}: {reason}")]
    Reassignment {
        name: String,
        partition: i32,
        reason: String,
    },
}

/// Replica lists for partitions `first..first + count` of a topic: every live
/// broker in turn leads (balanced), and the other replicas go to racks the
/// partition does not use yet while any remain. Deterministic in the image. With
/// no live broker nothing is placed yet (the first to register takes them).
fn place(
    image: &MetadataImage,
    first: i32,
    count: i32,
    rf: i16,
) -> Result<Vec<PartitionRecord>, Refusal> {
    let live: Vec<&BrokerRecord> = image.live_brokers().collect();
    if live.is_empty() {
        // Not placed yet: the first broker to register takes them.
        return Ok(Vec::new());
    }
    let Some(want) = usize::try_from(rf)
        .ok()
        .filter(|r| (1..=live.len()).contains(r))
    else {
        return Err(Refusal::ReplicationFactor {
            asked: rf,
            brokers: live.len(),
        });
    };
    // Racks alternate along the order, so consecutive leaders sit in other racks.
    let mut racks: BTreeMap<Option<&str>, Vec<&BrokerRecord>> = BTreeMap::new();
    for b in &live {
        racks.entry(b.rack.as_deref()).or_default().push(b);
    }
    let mut order: Vec<&BrokerRecord> = Vec::with_capacity(live.len());
    for i in 0.. {
        let before = order.len();
        order.extend(racks.values().filter_map(|r| r.get(i)));
        if order.len() == before {
            break;
        }
    }
    // Where this topic's first partition starts: after every partition placed so
    // far, so leaders spread across topics too.
    let placed: usize = image
        .topics
        .values()
        .map(|t| usize::try_from(t.partitions).unwrap_or(0))
        .sum();
    let n = order.len();
    Ok((0..count)
        .map(|p| {
            let base = placed.wrapping_add(usize::try_from(first + p).unwrap_or(0)) % n;
            let mut replicas: Vec<&BrokerRecord> = vec![order[base]];
            for step in 1..n {
                if replicas.len() == want {
                    break;
                }
                let b = order[(base + step) % n];
                if !replicas.iter().any(|r| r.rack == b.rack) {
                    replicas.push(b);
                }
            }
            // Fewer racks than replicas: the rest go to any broker not used yet.
            for step in 1..n {
                if replicas.len() == want {
                    break;
                }
                let b = order[(base + step) % n];
                if !replicas.iter().any(|r| r.id == b.id) {
                    replicas.push(b);
                }
            }
            let ids: Vec<i32> = replicas.iter().map(|b| b.id).collect();
            PartitionRecord {
                leader: ids[0],
                leader_epoch: 0,
                isr: ids.clone(),
                replicas: ids,
                partition_epoch: 0,
            }
        })
        .collect())
}

/// Changes every partition record `change` returns a new one for; `change` is
/// also given whether the topic allows unclean leader elections.
fn each_partition(
    image: &mut MetadataImage,
    mut change: impl FnMut(&PartitionRecord, bool) -> Option<PartitionRecord>,
) {
    let cluster_unclean = image
        .broker_configs
        .get("")
        .and_then(|c| c.get(UNCLEAN))
        .is_some_and(|v| v == "true");
    for t in image.topics.values_mut() {
        let unclean = t
            .configs
            .get(UNCLEAN)
            .map_or(cluster_unclean, |v| v == "true");
        if t.placement.iter().all(|p| change(p, unclean).is_none()) {
            continue;
        }
        let next = Arc::make_mut(t);
        for p in &mut next.placement {
            if let Some(new) = change(p, unclean) {
                *p = new;
            }
        }
    }
}

/// Kafka's topic config (and broker default) that lets a replica out of the ISR
/// lead when no in-sync one is left, at the price of the records only the ISR had.
const UNCLEAN: &str = "unclean.leader.election.enable";

/// Applies `cmd` as entry `index`. The image's version becomes `index` whether or
/// not the command is refused (a refused entry still takes its place in the log),
/// and a refused command changes nothing else. Deterministic: the same image and
/// command give the same result on every node.
pub fn apply(image: &mut MetadataImage, index: u64, cmd: &Command) -> Result<Applied, Refusal> {
    image.version = index;
    let topic =
        |image: &MetadataImage, name: &str, id: &Uuid| -> Result<Arc<TopicRecord>, Refusal> {
            image
                .topics
                .get(name)
                .filter(|t| t.id == *id)
                .cloned()
                .ok_or_else(|| Refusal::UnknownTopic(name.to_string()))
        };
    match cmd {
        Command::InitCluster { cluster_id } => {
            if !image.cluster_id.is_empty() {
                return Err(Refusal::ClusterIdSet);
            }
            image.cluster_id.clone_from(cluster_id);
        }
        Command::CreateTopic {
            name,
            id,
            partitions,
            configs,
            replication_factor,
        } => {
            if image.topics.contains_key(name) {
                return Err(Refusal::TopicExists(name.clone()));
            }
            if !(1..=PARTITIONS_MAX).contains(partitions) {
                return Err(Refusal::InvalidPartitions(*partitions));
            }
            let placement = place(image, 0, *partitions, *replication_factor)?;
            image.topics.insert(
                name.clone(),
                Arc::new(TopicRecord {
                    id: *id,
                    partitions: *partitions,
                    configs: configs.clone(),
                    placement,
                    reassigning: BTreeMap::new(),
                }),
            );
        }
        Command::DeleteTopic { name, id } => {
            topic(image, name, id)?;
            image.topics.remove(name);
        }
        Command::CreatePartitions { name, id, total } => {
            let t = topic(image, name, id)?;
            grow(image, name, &t, *total)?;
        }
        Command::SetTopicConfigs { name, id, configs } => {
            let t = topic(image, name, id)?;
            let next = TopicRecord {
                configs: configs.clone(),
                ..(*t).clone()
            };
            image.topics.insert(name.clone(), Arc::new(next));
        }
        Command::ReserveProducerIds { count } => {
            if *count <= 0 || image.producer_ids_reserved.checked_add(*count).is_none() {
                return Err(Refusal::InvalidBlock(*count));
            }
            let first = image.producer_ids_reserved;
            image.producer_ids_reserved += count;
            return Ok(Applied::ProducerIds { first });
        }
        Command::RegisterBroker {
            id,
            incarnation,
            rack,
            host,
            port,
        } => register(
            image,
            BrokerRecord {
                id: *id,
                incarnation: *incarnation,
                rack: rack.clone(),
                host: host.clone(),
                port: *port,
                fenced: false,
            },
        ),
        Command::FenceBroker { id, incarnation } => fence(image, *id, *incarnation)?,
        Command::AlterIsr { .. } | Command::Reassign { .. } => partition_change(image, cmd)?,
        Command::ElectPreferred { partitions } => elect_preferred(image, partitions),
        Command::SetBrokerConfigs { resource, configs } => {
            if !resource.is_empty() && resource.parse::<i32>().map_or(true, |id| id < 0) {
                return Err(Refusal::BrokerResource(resource.clone()));
            }
            if configs.is_empty() {
                image.broker_configs.remove(resource);
            } else {
                image
                    .broker_configs
                    .insert(resource.clone(), configs.clone());
            }
        }
    }
    Ok(Applied::Done)
}

/// Grows topic `t` to `total` partitions, placing the new ones like a new topic's.
fn grow(image: &mut MetadataImage, name: &str, t: &TopicRecord, total: i32) -> Result<(), Refusal> {
    if total <= t.partitions || total > PARTITIONS_MAX {
        return Err(Refusal::PartitionCount {
            name: name.to_string(),
            have: t.partitions,
            asked: total,
        });
    }
    let mut next = TopicRecord {
        partitions: total,
        ..t.clone()
    };
    if !t.placement.is_empty() {
        let rf = i16::try_from(t.placement[0].replicas.len().max(1)).unwrap_or(1);
        let more = place(image, t.partitions, total - t.partitions, rf)?;
        next.placement.extend(more);
    }
    image.topics.insert(name.to_string(), Arc::new(next));
    Ok(())
}

/// Applies an ISR change or a reassignment, then completes the partition's
/// reassignment if that made every added replica in sync.
fn partition_change(image: &mut MetadataImage, cmd: &Command) -> Result<(), Refusal> {
    match cmd {
        Command::AlterIsr {
            name, partition, ..
        } => {
            alter_isr(image, cmd)?;
            finish_reassignment(image, name, *partition);
        }
        Command::Reassign {
            name,
            id,
            partition,
            target,
        } => {
            let t = image
                .topics
                .get(name)
                .filter(|t| t.id == *id)
                .cloned()
                .ok_or_else(|| Refusal::UnknownTopic(name.clone()))?;
            let next = reassign(image, name, &t, *partition, target.as_deref())?;
            image.topics.insert(name.clone(), Arc::new(next));
            finish_reassignment(image, name, *partition);
        }
        _ => {}
    }
    Ok(())
}

/// Starts (or, with `None`, cancels) the reassignment of `partition` of `t`.
fn reassign(
    image: &MetadataImage,
    name: &str,
    t: &TopicRecord,
    partition: i32,
    target: Option<&[i32]>,
) -> Result<TopicRecord, Refusal> {
    let index = usize::try_from(partition)
        .ok()
        .filter(|i| *i < t.placement.len())
        .ok_or_else(|| Refusal::UnknownTopic(format!("{name}-{partition}")))?;
    let r = &t.placement[index];
    let mut next = t.clone();
    let Some(target) = target else {
        // Cancel: back to the replicas before, the leader among them.
        let Some(e) = next.reassigning.remove(&partition) else {
            return Err(Refusal::NoReassignment {
                name: name.to_string(),
                partition,
            });
        };
        next.placement[index] =
            settle(image, r, &e.original).ok_or_else(|| Refusal::Reassignment {
                name: name.to_string(),
                partition,
                reason: "none of the replicas before is live and in sync".into(),
            })?;
        return Ok(next);
    };
    let mut distinct = target.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if target.is_empty()
        || distinct.len() != target.len()
        || !target.iter().all(|b| image.brokers.contains_key(b))
    {
        return Err(Refusal::InvalidReplicas {
            name: name.to_string(),
            partition,
            replicas: target.to_vec(),
        });
    }
    if t.reassigning.contains_key(&partition) {
        return Err(Refusal::Reassignment {
            name: name.to_string(),
            partition,
            reason: "a reassignment is in progress; cancel it first".into(),
        });
    }
    if target == r.replicas.as_slice() {
        return Ok(next);
    }
    let removing: Vec<i32> = r
        .replicas
        .iter()
        .copied()
        .filter(|b| !target.contains(b))
        .collect();
    let adding: Vec<i32> = target
        .iter()
        .copied()
        .filter(|b| !r.replicas.contains(b))
        .collect();
    let mut replicas = target.to_vec();
    replicas.extend(&removing);
    next.placement[index] = PartitionRecord {
        replicas,
        partition_epoch: r.partition_epoch + 1,
        ..r.clone()
    };
    next.reassigning.insert(
        partition,
        crate::image::Reassignment {
            target: target.to_vec(),
            original: r.replicas.clone(),
            adding,
            removing,
        },
    );
    Ok(next)
}

/// `r` with only `replicas`: the ISR kept to them, the leader one of them (a
/// live in-sync one, in a new epoch, if it was not); `None` when no replica of
/// them is live and in sync.
fn settle(image: &MetadataImage, r: &PartitionRecord, replicas: &[i32]) -> Option<PartitionRecord> {
    let live = |b: &i32| image.brokers.get(b).is_some_and(|x| !x.fenced);
    let isr: Vec<i32> = r
        .isr
        .iter()
        .copied()
        .filter(|b| replicas.contains(b))
        .collect();
    let leader = if replicas.contains(&r.leader) {
        r.leader
    } else {
        replicas
            .iter()
            .copied()
            .find(|b| isr.contains(b) && live(b))?
    };
    if isr.is_empty() {
        return None;
    }
    Some(PartitionRecord {
        replicas: replicas.to_vec(),
        leader,
        leader_epoch: r.leader_epoch + i32::from(leader != r.leader),
        isr,
        partition_epoch: r.partition_epoch + 1,
    })
}

/// Completes the reassignment of `partition` of topic `name` once every added
/// replica is in sync: the leaving replicas go (and the leader, if it is one of
/// them, moves to a target replica in sync).
fn finish_reassignment(image: &mut MetadataImage, name: &str, partition: i32) {
    let Some(t) = image.topics.get(name).cloned() else {
        return;
    };
    let (Some(e), Some(r)) = (
        t.reassigning.get(&partition),
        usize::try_from(partition)
            .ok()
            .and_then(|i| t.placement.get(i)),
    ) else {
        return;
    };
    if !e.adding.iter().all(|b| r.isr.contains(b)) {
        return;
    }
    let Some(done) = settle(image, r, &e.target) else {
        return;
    };
    let mut next = (*t).clone();
    next.reassigning.remove(&partition);
    next.placement[usize::try_from(partition).unwrap_or(0)] = done;
    image.topics.insert(name.to_string(), Arc::new(next));
}

/// The partitions whose preferred replica is live and in sync but does not lead.
pub fn preferred_elections(image: &MetadataImage) -> Vec<(String, Uuid, i32)> {
    let live = |r: i32| image.brokers.get(&r).is_some_and(|b| !b.fenced);
    let mut out = Vec::new();
    for (name, t) in &image.topics {
        for (p, r) in (0..).zip(&t.placement) {
            if let Some(&preferred) = r.replicas.first() {
                if r.leader != preferred && r.isr.contains(&preferred) && live(preferred) {
                    out.push((name.clone(), t.id, p));
                }
            }
        }
    }
    out
}

/// Applies an [`Command::ElectPreferred`].
fn elect_preferred(image: &mut MetadataImage, partitions: &[(String, Uuid, i32)]) {
    let live: Vec<i32> = image.live_brokers().map(|b| b.id).collect();
    for (name, id, partition) in partitions {
        let Some(t) = image.topics.get_mut(name).filter(|t| t.id == *id) else {
            continue;
        };
        let Some(r) = usize::try_from(*partition)
            .ok()
            .and_then(|i| t.placement.get(i))
        else {
            continue;
        };
        let Some(&preferred) = r.replicas.first() else {
            continue;
        };
        if r.leader == preferred || !r.isr.contains(&preferred) || !live.contains(&preferred) {
            continue;
        }
        let next = PartitionRecord {
            leader: preferred,
            leader_epoch: r.leader_epoch + 1,
            partition_epoch: r.partition_epoch + 1,
            ..r.clone()
        };
        Arc::make_mut(t).placement[usize::try_from(*partition).unwrap_or(0)] = next;
    }
}

/// Applies an [`Command::AlterIsr`]: the partition's ISR changes if `(leader,
/// leader epoch, partition epoch)` is what the image has and the ISR is valid.
fn alter_isr(image: &mut MetadataImage, cmd: &Command) -> Result<(), Refusal> {
    let Command::AlterIsr {
        name,
        id,
        partition,
        leader,
        leader_epoch,
        partition_epoch,
        isr,
    } = cmd
    else {
        return Ok(());
    };
    let (partition, seen) = (*partition, (*leader, *leader_epoch, *partition_epoch));
    let t = image
        .topics
        .get(name)
        .filter(|t| t.id == *id)
        .cloned()
        .ok_or_else(|| Refusal::UnknownTopic(name.clone()))?;
    let Some(p) = usize::try_from(partition)
        .ok()
        .and_then(|i| t.placement.get(i))
    else {
        return Err(Refusal::UnknownTopic(format!("{name}-{partition}")));
    };
    if (p.leader, p.leader_epoch, p.partition_epoch) != seen {
        return Err(Refusal::StalePartition {
            name: name.clone(),
            partition,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
        });
    }
    let live = |r: &i32| image.brokers.get(r).is_some_and(|b| !b.fenced);
    let mut sorted = isr.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if !isr.contains(&p.leader)
        || sorted.len() != isr.len()
        || !isr.iter().all(|r| p.replicas.contains(r) && live(r))
    {
        return Err(Refusal::InvalidIsr {
            name: name.clone(),
            partition,
            isr: isr.clone(),
        });
    }
    let next = PartitionRecord {
        isr: isr.clone(),
        partition_epoch: p.partition_epoch + 1,
        ..p.clone()
    };
    let mut t = (*t).clone();
    t.placement[usize::try_from(partition).unwrap_or(0)] = next;
    image.topics.insert(name.clone(), Arc::new(t));
    Ok(())
}

/// A broker registers: live from here on; offline partitions it is an in-sync
/// replica of are led by it again; topics not placed yet are placed on it. A
/// broker that registers again with a new incarnation while its old one was never
/// fenced restarted without a controlled shutdown (killed, power lost): the old
/// incarnation is fenced first, so what it led moves to another in-sync replica
/// and it leaves the ISRs until it has caught up again, since its log may have
/// lost what it had not made durable.
fn register(image: &mut MetadataImage, broker: BrokerRecord) {
    let id = broker.id;
    if let Some(old) = image
        .brokers
        .get(&id)
        .filter(|b| !b.fenced && b.incarnation != broker.incarnation)
    {
        let incarnation = old.incarnation;
        let _ = fence(image, id, incarnation);
    }
    image.brokers.insert(id, broker);
    each_partition(image, |p, unclean| {
        let may_lead = p.isr.contains(&id) || (unclean && p.replicas.contains(&id));
        (p.leader == -1 && may_lead).then(|| PartitionRecord {
            leader: id,
            leader_epoch: p.leader_epoch + 1,
            isr: vec![id],
            partition_epoch: p.partition_epoch + 1,
            ..p.clone()
        })
    });
    for t in image.topics.values_mut() {
        if t.placement.is_empty() {
            Arc::make_mut(t).placement = (0..t.partitions)
                .map(|_| PartitionRecord {
                    replicas: vec![id],
                    leader: id,
                    leader_epoch: 0,
                    isr: vec![id],
                    partition_epoch: 0,
                })
                .collect();
        }
    }
}

/// A broker missed its session: the partitions it led move to another live
/// in-sync replica, or go offline.
fn fence(image: &mut MetadataImage, id: i32, incarnation: u64) -> Result<(), Refusal> {
    let Some(b) = image
        .brokers
        .get_mut(&id)
        .filter(|b| b.incarnation == incarnation)
    else {
        return Err(Refusal::UnknownBroker(id));
    };
    if b.fenced {
        return Ok(());
    }
    b.fenced = true;
    let live: Vec<i32> = image.live_brokers().map(|b| b.id).collect();
    each_partition(image, |p, unclean| {
        if p.leader != id && !p.isr.contains(&id) {
            return None;
        }
        let mut isr: Vec<i32> = p.isr.iter().copied().filter(|r| *r != id).collect();
        let leader = if p.leader == id {
            let clean = isr.iter().copied().find(|r| live.contains(r));
            // Unclean: any live replica, which alone is then in sync.
            let dirty = p
                .replicas
                .iter()
                .copied()
                .find(|r| *r != id && live.contains(r));
            match (clean, dirty) {
                (Some(r), _) => r,
                (None, Some(r)) if unclean => {
                    isr = vec![r];
                    r
                }
                _ => -1,
            }
        } else {
            p.leader
        };
        Some(PartitionRecord {
            leader,
            leader_epoch: p.leader_epoch + i32::from(leader != p.leader),
            // The last replica stays in the ISR (as Kafka keeps it), so it
            // can lead again when it returns.
            isr: if isr.is_empty() { vec![id] } else { isr },
            partition_epoch: p.partition_epoch + 1,
            ..p.clone()
        })
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str, id: u128, partitions: i32) -> Command {
        Command::CreateTopic {
            name: name.into(),
            id: Uuid::from_u128(id),
            partitions,
            configs: BTreeMap::new(),
            replication_factor: 1,
        }
    }

    #[test]
    fn a_refused_command_changes_only_the_version() {
        let mut image = MetadataImage::default();
        assert_eq!(apply(&mut image, 1, &create("a", 1, 3)), Ok(Applied::Done));
        let before = image.clone();
        let refused = [
            create("a", 2, 1),
            create("b", 3, 0),
            Command::DeleteTopic {
                name: "a".into(),
                id: Uuid::from_u128(9),
            },
            Command::CreatePartitions {
                name: "a".into(),
                id: Uuid::from_u128(1),
                total: 3,
            },
            Command::ReserveProducerIds { count: 0 },
        ];
        for (i, cmd) in refused.iter().enumerate() {
            let index = 2 + i as u64;
            assert!(apply(&mut image, index, cmd).is_err(), "{cmd:?}");
            assert_eq!(image.version, index);
            assert_eq!(image.topics, before.topics);
            assert_eq!(image.producer_ids_reserved, before.producer_ids_reserved);
        }
    }

    #[test]
    fn the_same_commands_give_the_same_image() {
        let cmds = [
            Command::InitCluster {
                cluster_id: "c".into(),
            },
            create("a", 1, 3),
            create("b", 2, 1),
            Command::CreatePartitions {
                name: "a".into(),
                id: Uuid::from_u128(1),
                total: 5,
            },
            Command::ReserveProducerIds { count: 1000 },
            Command::SetTopicConfigs {
                name: "b".into(),
                id: Uuid::from_u128(2),
                configs: [("retention.ms".to_string(), "1".to_string())].into(),
            },
            Command::DeleteTopic {
                name: "a".into(),
                id: Uuid::from_u128(1),
            },
            Command::ReserveProducerIds { count: 1000 },
        ];
        let run = || {
            let mut image = MetadataImage::default();
            let mut out = Vec::new();
            for (i, c) in cmds.iter().enumerate() {
                out.push(apply(&mut image, i as u64 + 1, c));
            }
            (image, out)
        };
        let (a, ra) = run();
        let (b, rb) = run();
        assert_eq!(a, b);
        assert_eq!(ra, rb);
        assert_eq!(a.version, 8);
        assert_eq!(a.producer_ids_reserved, 2000);
        assert_eq!(ra[7], Ok(Applied::ProducerIds { first: 1000 }));
        assert!(a.topic("a").is_none());
        assert_eq!(a.topic("b").map(|t| t.configs.len()), Some(1));
    }

    fn register(id: i32, rack: &str) -> Command {
        Command::RegisterBroker {
            id,
            incarnation: u64::try_from(id).unwrap_or(0) * 10,
            rack: Some(rack.into()),
            host: format!("h{id}"),
            port: 9092,
        }
    }

    /// An image with brokers 1, 2 and 3 registered (entries 1-3), in racks r1-r3.
    fn three_brokers() -> MetadataImage {
        let mut image = MetadataImage::default();
        for (i, id) in [1, 2, 3].iter().enumerate() {
            apply(&mut image, i as u64 + 1, &register(*id, &format!("r{id}"))).expect("register");
        }
        image
    }

    fn created(
        image: &mut MetadataImage,
        index: u64,
        name: &str,
        n: i32,
        rf: i16,
    ) -> Arc<TopicRecord> {
        let cmd = Command::CreateTopic {
            name: name.into(),
            id: Uuid::from_u128(u128::from(index)),
            partitions: n,
            configs: BTreeMap::new(),
            replication_factor: rf,
        };
        assert_eq!(apply(image, index, &cmd), Ok(Applied::Done), "{cmd:?}");
        image.topic(name).cloned().expect("created")
    }

    #[test]
    fn placement_spreads_racks_and_balances_leaders() {
        let mut image = MetadataImage::default();
        let racks = [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")];
        for (i, (id, rack)) in racks.iter().enumerate() {
            apply(&mut image, i as u64 + 1, &register(*id, rack)).expect("register");
        }
        let rack_of = |id: i32| racks.iter().find(|(b, _)| *b == id).map(|(_, r)| *r);
        let t = created(&mut image, 10, "t", 12, 3);
        let mut leads = BTreeMap::new();
        for p in &t.placement {
            let racks: std::collections::BTreeSet<_> =
                p.replicas.iter().map(|b| rack_of(*b)).collect();
            assert_eq!(racks.len(), 3, "replicas {:?} share a rack", p.replicas);
            assert_eq!(p.leader, p.replicas[0]);
            assert_eq!(p.isr, p.replicas);
            *leads.entry(p.leader).or_insert(0) += 1;
        }
        assert_eq!(leads.values().copied().collect::<Vec<_>>(), vec![2; 6]);
        // Fewer racks than replicas: each rack once, then any other broker.
        let mut uneven = MetadataImage::default();
        for (i, (id, rack)) in [(1, "a"), (2, "a"), (3, "a"), (4, "b")].iter().enumerate() {
            apply(&mut uneven, i as u64 + 1, &register(*id, rack)).expect("register");
        }
        let t = created(&mut uneven, 10, "u", 8, 2);
        for p in &t.placement {
            assert!(p.replicas.contains(&4), "{:?} misses rack b", p.replicas);
        }
        let t = created(&mut uneven, 11, "w", 4, 3);
        for p in &t.placement {
            let distinct: std::collections::BTreeSet<_> = p.replicas.iter().collect();
            assert_eq!(distinct.len(), 3, "{:?}", p.replicas);
        }
        // More replicas than live brokers is refused and changes nothing.
        let before = uneven.topics.clone();
        let cmd = Command::CreateTopic {
            name: "x".into(),
            id: Uuid::from_u128(99),
            partitions: 1,
            configs: BTreeMap::new(),
            replication_factor: 5,
        };
        assert_eq!(
            apply(&mut uneven, 12, &cmd),
            Err(Refusal::ReplicationFactor {
                asked: 5,
                brokers: 4
            })
        );
        assert_eq!(uneven.topics, before);
    }

    #[test]
    fn a_fenced_broker_s_partitions_move_or_go_offline_and_come_back() {
        let mut image = three_brokers();
        let single = created(&mut image, 4, "one", 3, 1);
        let triple = created(&mut image, 5, "three", 3, 3);
        let victim = single.placement[0].leader;
        let fence = Command::FenceBroker {
            id: victim,
            incarnation: u64::try_from(victim).unwrap_or(0) * 10,
        };
        assert_eq!(apply(&mut image, 6, &fence), Ok(Applied::Done));
        assert!(image.brokers[&victim].fenced);
        let one = image.topic("one").cloned().expect("one");
        // One replica: offline, the ISR keeps its last member, the epoch goes up.
        assert_eq!(one.placement[0].leader, -1);
        assert_eq!(one.placement[0].isr, vec![victim]);
        assert_eq!(one.placement[0].leader_epoch, 1);
        assert_eq!(one.placement[1], single.placement[1]);
        // Three replicas: led by another in-sync replica, the victim out of the ISR.
        let three = image.topic("three").cloned().expect("three");
        for (before, after) in triple.placement.iter().zip(&three.placement) {
            assert!(!after.isr.contains(&victim), "{after:?}");
            assert_ne!(after.leader, victim);
            assert!(after.leader > 0);
            let moved = i32::from(before.leader == victim);
            assert_eq!(after.leader_epoch, before.leader_epoch + moved);
        }
        // New topics avoid it; a fence for an old incarnation is refused.
        let t = created(&mut image, 7, "later", 4, 1);
        assert!(t.placement.iter().all(|p| p.leader != victim));
        let stale = Command::FenceBroker {
            id: victim,
            incarnation: 1,
        };
        assert_eq!(
            apply(&mut image, 8, &stale),
            Err(Refusal::UnknownBroker(victim))
        );
        // It registers again: its offline partition is led by it again.
        assert_eq!(
            apply(&mut image, 9, &register(victim, "rx")),
            Ok(Applied::Done)
        );
        let one = image.topic("one").cloned().expect("one");
        assert_eq!(one.placement[0].leader, victim);
        assert_eq!(one.placement[0].leader_epoch, 2);
        assert!(!image.brokers[&victim].fenced);
    }

    #[test]
    fn the_isr_changes_only_from_the_current_leader_on_the_current_record() {
        let mut image = three_brokers();
        let t = created(&mut image, 4, "t", 1, 3);
        let p = t.placement[0].clone();
        let follower = p.replicas[1];
        let alter = |p: &PartitionRecord, isr: Vec<i32>| Command::AlterIsr {
            name: "t".into(),
            id: t.id,
            partition: 0,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr,
        };
        let shrunk: Vec<i32> = p.isr.iter().copied().filter(|r| *r != follower).collect();
        assert_eq!(
            apply(&mut image, 5, &alter(&p, shrunk.clone())),
            Ok(Applied::Done)
        );
        let now = image.topic("t").expect("t").placement[0].clone();
        assert_eq!(now.isr, shrunk);
        assert_eq!(now.partition_epoch, p.partition_epoch + 1);
        assert_eq!(now.leader_epoch, p.leader_epoch);
        // The same change again is on a stale record: refused, nothing changes.
        assert!(matches!(
            apply(&mut image, 6, &alter(&p, p.isr.clone())),
            Err(Refusal::StalePartition { .. })
        ));
        // An ISR without the leader, with a stranger, or twice the same: refused.
        for bad in [
            vec![follower],
            vec![now.leader, 9],
            vec![now.leader, now.leader],
        ] {
            assert!(
                matches!(
                    apply(&mut image, 7, &alter(&now, bad.clone())),
                    Err(Refusal::InvalidIsr { .. })
                ),
                "{bad:?}"
            );
        }
        assert_eq!(image.topic("t").expect("t").placement[0], now);
        // The leader restarts without being fenced (killed): registering with a
        // new incarnation fences the old one first, so the partition moves to
        // another in-sync replica in a newer epoch and the restarted broker is
        // out of the ISR until it caught up.
        let restart = Command::RegisterBroker {
            id: now.leader,
            incarnation: 999,
            rack: None,
            host: "h".into(),
            port: 9092,
        };
        assert_eq!(apply(&mut image, 8, &restart), Ok(Applied::Done));
        let moved = image.topic("t").expect("t").placement[0].clone();
        assert_ne!(moved.leader, now.leader);
        assert!(now.isr.contains(&moved.leader));
        assert_eq!(moved.leader_epoch, now.leader_epoch + 1);
        assert!(!moved.isr.contains(&now.leader));
        assert!(!image.brokers[&now.leader].fenced);
    }

    #[test]
    fn preferred_and_unclean_elections() {
        let mut image = three_brokers();
        let t = created(&mut image, 4, "t", 3, 3);
        assert!(
            preferred_elections(&image).is_empty(),
            "leaders start preferred"
        );
        // The preferred leader of partition 0 is fenced, then registers again: it
        // does not lead (it is not in sync), so no preferred election yet.
        let first = t.placement[0].leader;
        let fence = Command::FenceBroker {
            id: first,
            incarnation: u64::try_from(first).unwrap_or(0) * 10,
        };
        apply(&mut image, 5, &fence).expect("fence");
        let moved = image.topic("t").expect("t").placement[0].clone();
        assert_ne!(moved.leader, first);
        apply(&mut image, 6, &register(first, "again")).expect("register");
        assert!(preferred_elections(&image).iter().all(|(_, _, p)| *p != 0));
        // Back in the ISR: elected again in a newer epoch.
        let mut isr = moved.isr.clone();
        isr.push(first);
        let alter = Command::AlterIsr {
            name: "t".into(),
            id: t.id,
            partition: 0,
            leader: moved.leader,
            leader_epoch: moved.leader_epoch,
            partition_epoch: moved.partition_epoch,
            isr,
        };
        assert_eq!(apply(&mut image, 7, &alter), Ok(Applied::Done));
        let due = preferred_elections(&image);
        assert!(due.iter().any(|(_, _, p)| *p == 0), "{due:?}");
        let elect = Command::ElectPreferred { partitions: due };
        assert_eq!(apply(&mut image, 8, &elect), Ok(Applied::Done));
        let back = image.topic("t").expect("t").placement[0].clone();
        assert_eq!(back.leader, first);
        assert_eq!(back.leader_epoch, moved.leader_epoch + 1);
        assert!(preferred_elections(&image).is_empty());

        // One in-sync replica left and it dies: offline, unless the topic allows
        // an unclean election, which takes a live out-of-sync replica.
        for (unclean, name, index) in [(false, "clean", 20), (true, "dirty", 30)] {
            let mut img = three_brokers();
            let configs = if unclean {
                [(UNCLEAN.to_string(), "true".to_string())].into()
            } else {
                BTreeMap::new()
            };
            let create = Command::CreateTopic {
                name: name.into(),
                id: Uuid::from_u128(index),
                partitions: 1,
                configs,
                replication_factor: 3,
            };
            apply(&mut img, 10, &create).expect("create");
            let p = img.topic(name).expect("topic").placement[0].clone();
            let shrink = Command::AlterIsr {
                name: name.into(),
                id: Uuid::from_u128(index),
                partition: 0,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                isr: vec![p.leader],
            };
            assert_eq!(apply(&mut img, 11, &shrink), Ok(Applied::Done));
            let fence = Command::FenceBroker {
                id: p.leader,
                incarnation: u64::try_from(p.leader).unwrap_or(0) * 10,
            };
            apply(&mut img, 12, &fence).expect("fence");
            let now = img.topic(name).expect("topic").placement[0].clone();
            if unclean {
                assert!(now.leader > 0 && now.leader != p.leader, "{now:?}");
                assert_eq!(now.isr, vec![now.leader]);
            } else {
                assert_eq!(now.leader, -1, "{now:?}");
                assert_eq!(now.isr, vec![p.leader]);
            }
        }
    }

    #[test]
    fn a_reassignment_adds_then_drops_and_can_be_cancelled() {
        let mut image = three_brokers();
        let t = created(&mut image, 4, "t", 1, 1);
        let from = t.placement[0].leader;
        let to = if from == 1 { 2 } else { 1 };
        let reassign = |target: Option<Vec<i32>>| Command::Reassign {
            name: "t".into(),
            id: t.id,
            partition: 0,
            target,
        };
        assert_eq!(
            apply(&mut image, 5, &reassign(Some(vec![to]))),
            Ok(Applied::Done)
        );
        let moving = image.topic("t").expect("t").clone();
        // Both replicas while the new one catches up; the old one still leads.
        assert_eq!(moving.placement[0].replicas, vec![to, from]);
        assert_eq!(moving.placement[0].leader, from);
        assert_eq!(moving.reassigning[&0].adding, vec![to]);
        assert!(matches!(
            apply(&mut image, 6, &reassign(Some(vec![3]))),
            Err(Refusal::Reassignment { .. })
        ));
        // Cancelled: back as before, in a newer partition epoch.
        assert_eq!(apply(&mut image, 7, &reassign(None)), Ok(Applied::Done));
        let back = image.topic("t").expect("t").clone();
        assert_eq!(back.placement[0].replicas, vec![from]);
        assert!(back.reassigning.is_empty());
        assert!(matches!(
            apply(&mut image, 8, &reassign(None)),
            Err(Refusal::NoReassignment { .. })
        ));
        // Again, and the new replica joins the ISR: the old one goes, the new
        // one leads in a new epoch.
        assert_eq!(
            apply(&mut image, 9, &reassign(Some(vec![to]))),
            Ok(Applied::Done)
        );
        let p = image.topic("t").expect("t").placement[0].clone();
        let join = Command::AlterIsr {
            name: "t".into(),
            id: t.id,
            partition: 0,
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            isr: vec![from, to],
        };
        assert_eq!(apply(&mut image, 10, &join), Ok(Applied::Done));
        let done = image.topic("t").expect("t").clone();
        assert_eq!(done.placement[0].replicas, vec![to]);
        assert_eq!(done.placement[0].isr, vec![to]);
        assert_eq!(done.placement[0].leader, to);
        assert_eq!(done.placement[0].leader_epoch, p.leader_epoch + 1);
        assert!(done.reassigning.is_empty());
    }

    #[test]
    fn topics_from_before_brokers_go_to_the_first_broker_that_registers() {
        let mut image = MetadataImage::default();
        let t = created(&mut image, 1, "old", 4, 1);
        assert!(t.placement.is_empty());
        apply(&mut image, 2, &register(7, "a")).expect("register");
        let t = image.topic("old").cloned().expect("old");
        assert_eq!(t.placement.len(), 4);
        assert!(t
            .placement
            .iter()
            .all(|p| p.leader == 7 && p.replicas == vec![7]));
    }

    #[test]
    fn commands_and_images_of_the_previous_release_still_read() {
        // As the single-node store of the release before brokers and placement
        // wrote them.
        let cmd: Command = serde_json::from_str(
            r#"{"type":"CreateTopic","name":"t","id":"5c6a4a6e-1b7f-4a42-9e58-2f0d8a3c9b11","partitions":3,"configs":{}}"#,
        )
        .expect("an old CreateTopic");
        assert!(matches!(
            cmd,
            Command::CreateTopic {
                replication_factor: 1,
                ..
            }
        ));
        let image: MetadataImage = serde_json::from_str(
            r#"{"version":4,"cluster_id":"c","topics":{"t":{"id":"5c6a4a6e-1b7f-4a42-9e58-2f0d8a3c9b11","partitions":3,"configs":{}}},"producer_ids_reserved":1000}"#,
        )
        .expect("an old image");
        assert!(image.brokers.is_empty() && image.broker_configs.is_empty());
        assert_eq!(image.topic("t").map(|t| t.placement.len()), Some(0));
    }
}
