//! Produce (v3+): every partition's record batches are appended on the shard that
//! owns the partition, which must lead it (one hop per shard, partitions of a
//! shard concurrently) and answered by `acks`: 0 no answer, 1 once in the leader's
//! write buffer, -1 (all) once an fdatasync on the leader covered the batches and
//! the high watermark passed them (see [`crate::replica`]). Batches are stored as sent, compressed or not,
//! unless the topic's configs ask otherwise ([`crate::topic_rules`]: keys on
//! compacted topics, timestamp bounds, `compression.type`), which runs on the owning
//! shard too; the engine checks each batch's CRC and framing before anything is
//! written. Records refused one by one are listed in the answer (v8+).

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::{ApiKey, BrokerId, ProduceRequest, ProduceResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::{AppendOptions, Durability, TopicPartition};

use crate::context::BrokerContext;
use crate::kafka_error::{self as code, KafkaError};
use crate::registry::HandlerFuture;
use crate::replica::Replica;
use crate::topic_rules::{self, TopicRules};
use crate::topics::TopicInfo;

const KEY: i16 = ApiKey::Produce as i16;

/// What one partition's append answered.
struct Appended {
    base_offset: i64,
    log_append_time_ms: i64,
    log_start_offset: i64,
    /// Batch bytes and records appended (0 for a resend already in the log).
    bytes: u64,
    records: u64,
}

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: ProduceRequest = super::decode(&mut body, KEY, v)?;
        let acks = req.acks;
        let mut slots: Vec<Vec<Option<Result<Appended, KafkaError>>>> = Vec::new();
        let mut work = Vec::new();
        let mut names: Vec<String> = Vec::with_capacity(req.topic_data.len());
        for (ti, topic) in req.topic_data.iter().enumerate() {
            slots.push(topic.partition_data.iter().map(|_| None).collect());
            let found = if v >= 13 {
                match ctx.topics.image().by_id(&topic.topic_id) {
                    Some(t) => Ok(t.clone()),
                    None => Err(KafkaError::new(
                        code::UNKNOWN_TOPIC_ID,
                        format!("no topic has id {}", topic.topic_id),
                    )),
                }
            } else {
                super::find_topic(&ctx, &topic.name, true).await
            };
            names.push(
                found
                    .as_ref()
                    .map_or_else(|_| String::new(), |t| t.name.to_string()),
            );
            for (pi, part) in topic.partition_data.iter().enumerate() {
                match found
                    .clone()
                    .and_then(|info| check_partition(&info, part, acks))
                {
                    Ok((tp, records, rules)) => work.push((tp, (ti, pi, records, rules))),
                    Err(e) => slots[ti][pi] = Some(Err(e)),
                }
            }
        }
        let timeout =
            std::time::Duration::from_millis(u64::try_from(req.timeout_ms.max(0)).unwrap_or(0));
        let places: Vec<(usize, usize)> = work.iter().map(|(_, (t, p, _, _))| (*t, *p)).collect();
        let items = work
            .into_iter()
            .map(|(tp, (_, _, r, rules))| (tp, (r, rules)))
            .collect();
        let results = super::on_owners(
            &ctx,
            items,
            super::Need::Leader,
            move |r, (records, rules): (Bytes, TopicRules)| {
                append(r, records, rules, acks, timeout)
            },
        )
        .await;
        for ((ti, pi), r) in places.into_iter().zip(results) {
            if let (Ok(a), Some(name)) = (&r, names.get(ti)) {
                sluice_engine::metrics::produced(name, a.bytes, a.records);
            }
            slots[ti][pi] = Some(r);
        }
        if acks == 0 {
            log_unanswered(&req, &slots);
            return Ok(Vec::new());
        }
        let mut endpoints = BTreeMap::new();
        let responses = req
            .topic_data
            .iter()
            .zip(slots)
            .zip(&names)
            .map(|((topic, parts), name)| {
                TopicProduceResponse::default()
                    .with_name(topic.name.clone())
                    .with_topic_id(topic.topic_id)
                    .with_partition_responses(
                        topic
                            .partition_data
                            .iter()
                            .zip(parts)
                            .map(|(part, r)| {
                                let a = answer(part.index, r, v);
                                if v < 10 || a.error_code != code::NOT_LEADER_OR_FOLLOWER {
                                    return a;
                                }
                                hint(&ctx, name, a, &mut endpoints)
                            })
                            .collect(),
                    )
            })
            .collect();
        super::encode(
            &ProduceResponse::default()
                .with_responses(responses)
                .with_node_endpoints(endpoints.into_values().collect()),
            KEY,
            v,
        )
    })
}

/// On the owning shard, which leads the partition: the topic's rules, then the
/// engine's append in the leader's epoch, then by `acks`: -1 waits until the
/// leader made the batches durable and the high watermark passed them (every
/// in-sync replica has them on disk), at most `timeout`.
async fn append(
    r: Rc<Replica>,
    records: Bytes,
    rules: TopicRules,
    acks: i16,
    timeout: std::time::Duration,
) -> Result<Appended, KafkaError> {
    let p = r.log.clone();
    let records = topic_rules::apply(
        &rules,
        p.topic_partition(),
        records,
        sluice_engine::now_ms(),
    )?;
    let epoch = r.check_leader(-1)?;
    if acks == -1 {
        check_insync(&r, code::NOT_ENOUGH_REPLICAS)?;
    }
    let bytes = records.len() as u64;
    let durability = if acks == -1 {
        Durability::Durable
    } else {
        Durability::Buffered
    };
    let info = p
        .append(
            records,
            AppendOptions {
                leader_epoch: epoch,
                durability,
            },
        )
        .await?;
    r.update_high_watermark();
    if acks == -1 {
        r.wait_replicated(info.last_offset + 1, epoch, timeout)
            .await?;
        check_insync(&r, code::NOT_ENOUGH_REPLICAS_AFTER_APPEND)?;
    } else {
        // Still in the log only if this node still leads in the epoch it was
        // written in (else a new leader may have cut it off).
        r.still_leads(epoch)?;
    }
    Ok(Appended {
        base_offset: i64::try_from(info.base_offset).unwrap_or(i64::MAX),
        log_append_time_ms: info.log_append_time_ms,
        log_start_offset: i64::try_from(info.log_start_offset).unwrap_or(0),
        bytes: if info.duplicate { 0 } else { bytes },
        records: if info.duplicate { 0 } else { info.record_count },
    })
}

/// acks=0: refusals are not answered, only logged.
fn log_unanswered(req: &ProduceRequest, slots: &[Vec<Option<Result<Appended, KafkaError>>>]) {
    for (topic, parts) in req.topic_data.iter().zip(slots) {
        for (part, r) in topic.partition_data.iter().zip(parts) {
            if let Some(Err(e)) = r {
                tracing::debug!(topic = %topic.name.as_str(), partition = part.index, error = %e, "acks=0 produce refused");
            }
        }
    }
}

/// acks=all: refused with `error` while the ISR is smaller than
/// `min.insync.replicas`.
fn check_insync(r: &Replica, error: i16) -> Result<(), KafkaError> {
    let (min, isr) = r.insync();
    if i64::try_from(isr).unwrap_or(i64::MAX) < i64::from(min) {
        return Err(KafkaError::new(
            error,
            format!(
                "partition {}: min.insync.replicas={min} but {isr} replicas are in sync",
                r.log.topic_partition()
            ),
        ));
    }
    Ok(())
}

/// Checks one partition's part of the request before anything is appended.
fn check_partition(
    info: &TopicInfo,
    part: &PartitionProduceData,
    acks: i16,
) -> Result<(TopicPartition, Bytes, TopicRules), KafkaError> {
    if !matches!(acks, -1..=1) {
        return Err(KafkaError::new(
            code::INVALID_REQUIRED_ACKS,
            format!("acks={acks}: use 0, 1 or -1 (all)"),
        ));
    }
    if &*info.name == crate::group::OFFSETS_TOPIC {
        // Only the group coordinator writes there, in its own format.
        return Err(KafkaError::new(
            code::INVALID_TOPIC_EXCEPTION,
            format!("cannot append to internal topic {}", info.name),
        ));
    }
    if part.index < 0 || part.index >= info.partitions {
        return Err(KafkaError::new(
            code::UNKNOWN_TOPIC_OR_PARTITION,
            format!("topic '{}' has no partition {}", info.name, part.index),
        ));
    }
    let Some(records) = part.records.clone() else {
        return Err(KafkaError::new(
            code::CORRUPT_MESSAGE,
            "the partition's record set is null",
        ));
    };
    let tp = TopicPartition::new(&info.name, part.index)?;
    Ok((tp, records, TopicRules::of(&info.settings)))
}

/// KIP-951: the current leader with a `NOT_LEADER_OR_FOLLOWER` answer, and its
/// endpoint among the response's.
fn hint(
    ctx: &BrokerContext,
    topic: &str,
    a: PartitionProduceResponse,
    endpoints: &mut BTreeMap<i32, NodeEndpoint>,
) -> PartitionProduceResponse {
    let Some((leader, epoch, b)) = super::leader_hint(ctx, topic, a.index) else {
        return a;
    };
    endpoints.entry(leader).or_insert_with(|| {
        NodeEndpoint::default()
            .with_node_id(BrokerId(b.id))
            .with_host(StrBytes::from_string(b.host))
            .with_port(i32::from(b.port))
            .with_rack(b.rack.map(StrBytes::from_string))
    });
    a.with_current_leader(
        LeaderIdAndEpoch::default()
            .with_leader_id(BrokerId(leader))
            .with_leader_epoch(epoch),
    )
}

/// A partition's answer as `v` can carry it.
fn answer(index: i32, r: Option<Result<Appended, KafkaError>>, v: i16) -> PartitionProduceResponse {
    let base = PartitionProduceResponse::default().with_index(index);
    match r {
        Some(Ok(a)) => base
            .with_base_offset(a.base_offset)
            .with_log_append_time_ms(a.log_append_time_ms)
            .with_log_start_offset(if v >= 5 { a.log_start_offset } else { -1 }),
        Some(Err(e)) => base
            .with_error_code(sluice_engine::metrics::tally(e.code))
            .with_record_errors(
                e.record_errors
                    .into_iter()
                    .filter(|_| v >= 8)
                    .map(|(i, m)| {
                        BatchIndexAndErrorMessage::default()
                            .with_batch_index(i)
                            .with_batch_index_error_message(Some(StrBytes::from_string(m)))
                    })
                    .collect(),
            )
            .with_error_message((v >= 8).then(|| StrBytes::from_string(e.message)))
            .with_base_offset(-1)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(-1),
        None => base
            .with_error_code(sluice_engine::metrics::tally(code::UNKNOWN_SERVER_ERROR))
            .with_base_offset(-1),
    }
}
