//! OffsetCommit (v2-8): offsets of a group's members (checked against the group's
//! generation and membership) or, while the group is empty, of anyone (tools,
//! consumers assigning partitions themselves). Each commit is written to
//! `__consumer_offsets` and fdatasync'ed before it is answered.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ApiKey, OffsetCommitRequest, OffsetCommitResponse, RequestHeader};

use crate::context::BrokerContext;
use crate::group::coordinator::{now_ms, on_coordinator, Committed};
use crate::group::records::{OffsetValue, RecordKey};
use crate::group::state::CommitAuth;
use crate::kafka_error::{self as code, KafkaError};
use crate::registry::HandlerFuture;

const KEY: i16 = ApiKey::OffsetCommit as i16;

/// One partition to commit: (topic, partition, offset, leader epoch, metadata).
type Item = (String, i32, i64, i32, String);

#[allow(clippy::needless_pass_by_value, clippy::too_many_lines)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: OffsetCommitRequest = super::decode(&mut body, KEY, v)?;
        let group = req.group_id.0.to_string();
        let image = ctx.topics.image();
        let max_meta = ctx.settings.groups.offset_metadata_max_bytes;
        // Per topic, per partition: the error found before the hop, if any.
        let mut answers: Vec<(usize, usize, i16)> = Vec::new();
        let mut items: Vec<(usize, usize, Item)> = Vec::new();
        for (ti, t) in req.topics.iter().enumerate() {
            let known = image.get(t.name.0.as_str());
            for (pi, p) in t.partitions.iter().enumerate() {
                let meta = p
                    .committed_metadata
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let err = if group.is_empty() {
                    code::INVALID_GROUP_ID
                } else if !known.is_some_and(|k| (0..k.partitions).contains(&p.partition_index)) {
                    code::UNKNOWN_TOPIC_OR_PARTITION
                } else if meta.len() > max_meta {
                    code::OFFSET_METADATA_TOO_LARGE
                } else {
                    code::NONE
                };
                if err == code::NONE {
                    let epoch = if v >= 6 { p.committed_leader_epoch } else { -1 };
                    items.push((
                        ti,
                        pi,
                        (
                            t.name.0.to_string(),
                            p.partition_index,
                            p.committed_offset,
                            epoch,
                            meta,
                        ),
                    ));
                } else {
                    answers.push((ti, pi, err));
                }
            }
        }
        if !items.is_empty() {
            let auth = CommitAuth {
                generation: req.generation_id_or_member_epoch,
                member_id: req.member_id.to_string(),
                group_instance_id: req.group_instance_id.as_ref().map(ToString::to_string),
            };
            let retention = (2..=4).contains(&v).then_some(req.retention_time_ms);
            let todo: Vec<Item> = items.iter().map(|(_, _, i)| i.clone()).collect();
            let g = group.clone();
            let result = on_coordinator(&ctx, &group, move |c| async move {
                commit(&c, &g, &auth, retention, todo).await
            })
            .await
            .unwrap_or_else(|e| e.code);
            answers.extend(items.iter().map(|(ti, pi, _)| (*ti, *pi, result)));
        }
        let mut topics: Vec<OffsetCommitResponseTopic> = req
            .topics
            .iter()
            .map(|t| {
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                            })
                            .collect(),
                    )
            })
            .collect();
        for (ti, pi, e) in answers {
            topics[ti].partitions[pi].error_code = sluice_engine::metrics::tally(e);
        }
        super::encode(&OffsetCommitResponse::default().with_topics(topics), KEY, v)
    })
}

/// Checks the committer and stores the offsets; the error code for all of them.
async fn commit(
    c: &crate::group::coordinator::Coordinator,
    group: &str,
    auth: &CommitAuth,
    retention_ms: Option<i64>,
    items: Vec<Item>,
) -> Result<i16, KafkaError> {
    let now = Instant::now();
    let checked = c.with_group(group, auth.generation < 0, |e| {
        e.group.check_commit(auth, now)
    });
    match checked {
        None => return Ok(code::ILLEGAL_GENERATION),
        Some(Err(e)) => return Ok(e),
        Some(Ok(())) => {}
    }
    let ts = now_ms();
    let expire = retention_ms
        .filter(|r| *r >= 0)
        .map_or(-1, |r| ts.saturating_add(r));
    let records: Vec<(RecordKey, OffsetValue)> = items
        .into_iter()
        .map(|(topic, partition, offset, leader_epoch, metadata)| {
            (
                RecordKey::Offset {
                    group: group.to_string(),
                    topic,
                    partition,
                },
                OffsetValue {
                    offset,
                    leader_epoch,
                    metadata,
                    commit_timestamp: ts,
                    expire_timestamp: expire,
                },
            )
        })
        .collect();
    let first = c
        .write(
            records
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.encode())))
                .collect(),
        )
        .await;
    let first = match first {
        Ok(at) => at,
        Err(e) => {
            tracing::warn!(group, error = %e, "could not store committed offsets");
            return Ok(code::COORDINATOR_NOT_AVAILABLE);
        }
    };
    c.with_group(group, true, |e| {
        for (i, (k, value)) in records.into_iter().enumerate() {
            let RecordKey::Offset {
                topic, partition, ..
            } = k
            else {
                continue;
            };
            let at = first + i as u64;
            let slot = e.offsets.entry((topic, partition));
            match slot {
                std::collections::btree_map::Entry::Occupied(mut o) => {
                    if o.get().at < at {
                        o.insert(Committed { value, at });
                    }
                }
                std::collections::btree_map::Entry::Vacant(vac) => {
                    vac.insert(Committed { value, at });
                }
            }
        }
    });
    Ok(code::NONE)
}
