//! One file per Kafka API: decode, delegate, encode. Shared here: decoding a request
//! body, encoding a response body with the version the client asked for, finding a
//! topic (creating it when the broker auto-creates topics), and running work on the
//! shards that own the partitions, one hop per shard.

pub mod alter_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_quorum;
pub mod elect_leaders;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod raft_voters;
pub mod reassignments;
pub mod sync_group;

use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::{Decodable, Encodable};
use sluice_engine::TopicPartition;

use crate::context::BrokerContext;
use crate::error::{Error, Result};
use crate::kafka_error::{self as code, KafkaError};
use crate::replica::Replica;
use crate::topics::TopicInfo;

/// Decodes a request body; a body that does not decode is [`Error::Malformed`].
pub fn decode<T: Decodable>(body: &mut Bytes, api_key: i16, api_version: i16) -> Result<T> {
    T::decode(body, api_version).map_err(|e| Error::Malformed {
        api_key,
        api_version,
        reason: e.to_string(),
    })
}

/// Encodes a response body as one part.
pub fn encode<T: Encodable>(
    response: &T,
    api_key: i16,
    api_version: i16,
) -> Result<Vec<crate::body::Part>> {
    let err = |e: &dyn std::fmt::Display| Error::Encode {
        api_key,
        reason: e.to_string(),
    };
    let size = response.compute_size(api_version).map_err(|e| err(&e))?;
    let mut buf = BytesMut::with_capacity(size);
    response
        .encode(&mut buf, api_version)
        .map_err(|e| err(&e))?;
    Ok(vec![crate::body::Part::Mem(buf.freeze())])
}

/// The topic `name`; created with the broker's defaults when it does not exist,
/// `create` allows it and the broker auto-creates topics.
pub async fn find_topic(
    ctx: &BrokerContext,
    name: &str,
    create: bool,
) -> std::result::Result<Arc<TopicInfo>, KafkaError> {
    if let Some(t) = ctx.topics.image().get(name) {
        return Ok(t.clone());
    }
    if !(create && ctx.settings.auto_create_topics) {
        return Err(KafkaError::new(
            code::UNKNOWN_TOPIC_OR_PARTITION,
            format!("topic '{name}' does not exist"),
        ));
    }
    match ctx
        .topics
        .create(
            name,
            ctx.settings.default_partitions,
            -1,
            BTreeMap::new(),
            false,
        )
        .await
    {
        Ok(t) => Ok(t),
        // Another connection created it first.
        Err(e) if e.code == code::TOPIC_ALREADY_EXISTS => {
            ctx.topics.image().get(name).cloned().ok_or(e)
        }
        Err(e) => Err(e),
    }
}

/// Why a partition this node's shards do not host cannot be served here: another
/// broker leads it (`NOT_LEADER_OR_FOLLOWER`, the client asks for metadata and
/// goes there), none does (`LEADER_NOT_AVAILABLE`), or it does not exist.
pub fn not_here(ctx: &BrokerContext, tp: &TopicPartition) -> KafkaError {
    let image = ctx.topics.image();
    let Some(info) = image
        .get(&tp.topic)
        .filter(|t| (0..t.partitions).contains(&tp.partition))
    else {
        return KafkaError::new(
            code::UNKNOWN_TOPIC_OR_PARTITION,
            format!("partition {tp} does not exist"),
        );
    };
    match info.leader(tp.partition) {
        l if l < 0 => KafkaError::new(
            code::LEADER_NOT_AVAILABLE,
            format!("partition {tp} has no leader (its replicas are offline)"),
        ),
        l if l == ctx.node_id() => KafkaError::new(
            code::LEADER_NOT_AVAILABLE,
            format!("partition {tp} is not open on this broker yet"),
        ),
        l => KafkaError::new(
            code::NOT_LEADER_OR_FOLLOWER,
            format!(
                "broker {l} leads partition {tp}, not broker {}",
                ctx.node_id()
            ),
        ),
    }
}

/// KIP-951: where a partition's leader is, sent with `NOT_LEADER_OR_FOLLOWER` in
/// Produce (v10+) and Fetch (v12+, endpoints v16+) so that a client goes there
/// without asking for metadata first: the leader and its epoch as Metadata shows
/// them, and how to reach it. `None` when no live broker leads it.
pub fn leader_hint(
    ctx: &BrokerContext,
    topic: &str,
    partition: i32,
) -> Option<(i32, i32, crate::topics::BrokerRecord)> {
    let image = ctx.topics.image();
    let record = image.get(topic)?.record(partition)?;
    let broker = image.broker(record.leader)?.clone();
    Some((record.leader, record.leader_epoch, broker))
}

/// Which replicas a request may be served by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Only the partition's leader (produce, fetch, offsets).
    Leader,
    /// Any replica this node hosts (log dirs, deletion of records on followers).
    Replica,
}

/// Runs `f` on every partition's owning shard with its replica: one hop per
/// shard, the partitions of a shard concurrently; results come back in the order
/// of `items`. With [`Need::Leader`] a partition this node does not lead gets
/// `NOT_LEADER_OR_FOLLOWER` (or `LEADER_NOT_AVAILABLE`) without calling `f`.
pub async fn on_owners<I, O, F, Fut>(
    ctx: &BrokerContext,
    items: Vec<(TopicPartition, I)>,
    need: Need,
    f: F,
) -> Vec<std::result::Result<O, KafkaError>>
where
    I: Send + 'static,
    O: Send + 'static,
    F: Fn(Rc<Replica>, I) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = std::result::Result<O, KafkaError>> + 'static,
{
    let n = items.len();
    let mut out: Vec<Option<std::result::Result<O, KafkaError>>> = (0..n).map(|_| None).collect();
    let mut per_shard: BTreeMap<usize, Vec<(usize, TopicPartition, I)>> = BTreeMap::new();
    for (i, (tp, item)) in items.into_iter().enumerate() {
        match ctx.router.shard_of(&tp) {
            Some(s) => per_shard.entry(s).or_default().push((i, tp, item)),
            None => out[i] = Some(Err(not_here(ctx, &tp))),
        }
    }
    let jobs: Vec<_> = per_shard
        .into_iter()
        .map(|(s, work)| {
            let f = f.clone();
            let indexes: Vec<usize> = work.iter().map(|w| w.0).collect();
            let job = move |shard: Rc<sluice_engine::Shard>| async move {
                let services = crate::services::ShardServices::of(&shard);
                futures::future::join_all(work.into_iter().map(|(i, tp, item)| {
                    let f = f.clone();
                    let r = replica_here(&shard, &services, &tp, need);
                    async move {
                        let r = match r {
                            Ok(r) => f(r, item).await,
                            Err(e) => Err(e),
                        };
                        (i, r)
                    }
                }))
                .await
            };
            (indexes, (s, job))
        })
        .collect();
    let (indexes, jobs): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
    for (r, idx) in ctx.router.scatter(jobs).await.into_iter().zip(indexes) {
        match r {
            Ok(results) => {
                for (i, r) in results {
                    out[i] = Some(r);
                }
            }
            Err(e) => {
                let e = KafkaError::from(e);
                for i in idx {
                    out[i] = Some(Err(e.clone()));
                }
            }
        }
    }
    out.into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(KafkaError::new(
                    code::UNKNOWN_SERVER_ERROR,
                    "no answer from the owning shard",
                ))
            })
        })
        .collect()
}

/// The replica of `tp` on this shard, if it may serve what `need` says.
fn replica_here(
    shard: &sluice_engine::Shard,
    services: &crate::services::ShardServices,
    tp: &TopicPartition,
    need: Need,
) -> std::result::Result<Rc<Replica>, KafkaError> {
    let p = shard.partition(tp).map_err(KafkaError::from)?;
    match services.replicas.get(tp) {
        Some(r) if Rc::ptr_eq(&r.log, &p) => {
            if need == Need::Leader {
                r.check_leader(-1)?;
            }
            Ok(r)
        }
        _ => Err(KafkaError::new(
            code::LEADER_NOT_AVAILABLE,
            format!("partition {tp} is not open on this broker yet"),
        )),
    }
}

/// Results of a per-partition request, shaped like the request: one `Vec` per topic.
pub type PerPartition<O> = Vec<Vec<std::result::Result<O, KafkaError>>>;

/// Runs `f` on each `(topic, [(partition, input)])` of a request on the owning
/// shards; unknown topics and partitions get `UNKNOWN_TOPIC_OR_PARTITION`.
pub async fn per_partition<I, O, F, Fut>(
    ctx: &BrokerContext,
    topics: Vec<(String, Vec<(i32, I)>)>,
    need: Need,
    f: F,
) -> PerPartition<O>
where
    I: Send + 'static,
    O: Send + 'static,
    F: Fn(Rc<Replica>, I) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = std::result::Result<O, KafkaError>> + 'static,
{
    let image = ctx.topics.image();
    let mut out: Vec<Vec<Option<std::result::Result<O, KafkaError>>>> = Vec::new();
    let mut places = Vec::new();
    let mut items = Vec::new();
    for (ti, (name, parts)) in topics.into_iter().enumerate() {
        out.push(parts.iter().map(|_| None).collect());
        let info = image.get(&name);
        for (pi, (partition, input)) in parts.into_iter().enumerate() {
            let tp = match info {
                Some(info) if (0..info.partitions).contains(&partition) => {
                    TopicPartition::new(&info.name, partition).map_err(KafkaError::from)
                }
                _ => Err(KafkaError::new(
                    code::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("partition {name}-{partition} does not exist"),
                )),
            };
            match tp {
                Ok(tp) => {
                    places.push((ti, pi));
                    items.push((tp, input));
                }
                Err(e) => out[ti][pi] = Some(Err(e)),
            }
        }
    }
    for ((ti, pi), r) in places.into_iter().zip(on_owners(ctx, items, need, f).await) {
        out[ti][pi] = Some(r);
    }
    out.into_iter()
        .map(|t| {
            t.into_iter()
                .map(|r| {
                    r.unwrap_or_else(|| {
                        Err(KafkaError::new(code::UNKNOWN_SERVER_ERROR, "not answered"))
                    })
                })
                .collect()
        })
        .collect()
}
