//! OffsetFetch (v1-8; several groups at once from v8): committed offsets, -1 where
//! none was committed; all of a group's when no topics are named.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetFetchRequest, OffsetFetchResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::context::BrokerContext;
use crate::group::coordinator::on_coordinator;
use crate::kafka_error as code;
use crate::registry::HandlerFuture;

const KEY: i16 = ApiKey::OffsetFetch as i16;

/// A committed offset as answered: (partition, offset, leader epoch, metadata).
type Found = (i32, i64, i32, String);

/// The offsets of `group` for `topics` (all committed ones if `None`), by topic.
pub async fn fetch(
    ctx: &BrokerContext,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> (i16, Vec<(String, Vec<Found>)>) {
    if group.is_empty() {
        return (code::INVALID_GROUP_ID, Vec::new());
    }
    let g = group.to_string();
    let asked = topics.clone();
    let found = on_coordinator(ctx, group, move |c| async move {
        Ok(c.with_group(&g, false, |e| {
            e.offsets
                .iter()
                .map(|((t, p), c)| {
                    (
                        t.clone(),
                        *p,
                        c.value.offset,
                        c.value.leader_epoch,
                        c.value.metadata.clone(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default())
    })
    .await;
    let committed = match found {
        Ok(c) => c,
        Err(e) => return (e.code, Vec::new()),
    };
    if let Some(topics) = asked {
        let out = topics
            .into_iter()
            .map(|(t, parts)| {
                let rows = parts
                    .into_iter()
                    .map(|p| {
                        committed
                            .iter()
                            .find(|(ct, cp, ..)| *ct == t && *cp == p)
                            .map_or((p, -1, -1, String::new()), |(_, _, o, e, m)| {
                                (p, *o, *e, m.clone())
                            })
                    })
                    .collect();
                (t, rows)
            })
            .collect();
        return (code::NONE, out);
    }
    let mut out: Vec<(String, Vec<Found>)> = Vec::new();
    for (t, p, o, e, m) in committed {
        match out.iter_mut().find(|(x, _)| *x == t) {
            Some((_, rows)) => rows.push((p, o, e, m)),
            None => out.push((t, vec![(p, o, e, m)])),
        }
    }
    (code::NONE, out)
}

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: OffsetFetchRequest = super::decode(&mut body, KEY, v)?;
        let s = |x: &str| StrBytes::from_string(x.to_string());
        if v >= 8 {
            let mut groups = Vec::with_capacity(req.groups.len());
            for g in &req.groups {
                let topics = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                let (error, found) = fetch(&ctx, g.group_id.0.as_str(), topics).await;
                groups.push(
                    OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_error_code(sluice_engine::metrics::tally(error))
                        .with_topics(
                            found
                                .into_iter()
                                .map(|(t, rows)| {
                                    OffsetFetchResponseTopics::default()
                                        .with_name(TopicName(s(&t)))
                                        .with_partitions(
                                            rows.into_iter()
                                                .map(|(p, o, e, m)| {
                                                    OffsetFetchResponsePartitions::default()
                                                        .with_partition_index(p)
                                                        .with_committed_offset(o)
                                                        .with_committed_leader_epoch(e)
                                                        .with_metadata(Some(s(&m)))
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        ),
                );
            }
            return super::encode(&OffsetFetchResponse::default().with_groups(groups), KEY, v);
        }
        let topics = req.topics.as_ref().map(|ts| {
            ts.iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                .collect()
        });
        let group: &GroupId = &req.group_id;
        let (error, found) = fetch(&ctx, group.0.as_str(), topics).await;
        let topics = found
            .into_iter()
            .map(|(t, rows)| {
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(s(&t)))
                    .with_partitions(
                        rows.into_iter()
                            .map(|(p, o, e, m)| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(o)
                                    .with_committed_leader_epoch(e)
                                    .with_metadata(Some(s(&m)))
                                    // Before v2 errors are per partition.
                                    .with_error_code(sluice_engine::metrics::tally(if v < 2 {
                                        error
                                    } else {
                                        code::NONE
                                    }))
                            })
                            .collect(),
                    )
            })
            .collect();
        let response = OffsetFetchResponse::default()
            .with_topics(topics)
            // Not sent before v2, where the partitions carry it (counted there).
            .with_error_code(if v >= 2 {
                sluice_engine::metrics::tally(error)
            } else {
                error
            });
        super::encode(&response, KEY, v)
    })
}
