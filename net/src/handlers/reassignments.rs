//! AlterPartitionReassignments (v0) and ListPartitionReassignments (v0): moving a
//! partition's replicas to other brokers. The new replicas are added (they
//! fetch from the leader and catch up), and once all of them are in sync the old
//! ones are dropped and their directories deleted; a leader that is dropped hands
//! over to an in-sync target replica first. A `null` replica list cancels a move
//! in progress (back to the replicas before). Any node takes the request and
//! forwards it through the metadata quorum.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, RequestHeader,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_engine::TopicPartition;

use crate::context::BrokerContext;
use crate::kafka_error::{self as code, KafkaError};
use crate::registry::HandlerFuture;

const ALTER: i16 = ApiKey::AlterPartitionReassignments as i16;
const LIST: i16 = ApiKey::ListPartitionReassignments as i16;

#[allow(clippy::needless_pass_by_value)]
pub fn alter(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: AlterPartitionReassignmentsRequest = super::decode(&mut body, ALTER, v)?;
        let mut responses = Vec::with_capacity(req.topics.len());
        for t in &req.topics {
            let mut parts = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                let target = p
                    .replicas
                    .as_ref()
                    .map(|r| r.iter().map(|b| b.0).collect::<Vec<i32>>());
                let r = move_one(&ctx, &t.name.0, p.partition_index, target).await;
                let (c, m) = match r {
                    Ok(()) => (code::NONE, None),
                    Err(e) => (e.code, Some(StrBytes::from_string(e.message))),
                };
                parts.push(
                    ReassignablePartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(sluice_engine::metrics::tally(c))
                        .with_error_message(m),
                );
            }
            responses.push(
                ReassignableTopicResponse::default()
                    .with_name(t.name.clone())
                    .with_partitions(parts),
            );
        }
        super::encode(
            &AlterPartitionReassignmentsResponse::default().with_responses(responses),
            ALTER,
            v,
        )
    })
}

/// One partition's move (or cancellation).
async fn move_one(
    ctx: &BrokerContext,
    topic: &str,
    partition: i32,
    target: Option<Vec<i32>>,
) -> Result<(), KafkaError> {
    let info = ctx
        .topics
        .image()
        .get(topic)
        .filter(|t| (0..t.partitions).contains(&partition))
        .cloned()
        .ok_or_else(|| {
            KafkaError::new(
                code::UNKNOWN_TOPIC_OR_PARTITION,
                format!("partition {topic}-{partition} does not exist"),
            )
        })?;
    if ctx.settings.cluster.is_none() {
        return Err(KafkaError::new(
            code::INVALID_REQUEST,
            "a single node has no other broker to move replicas to",
        ));
    }
    let tp = TopicPartition::new(topic, partition)?;
    ctx.topics.reassign(&tp, info.id, target).await
}

#[allow(clippy::needless_pass_by_value)]
pub fn list(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: ListPartitionReassignmentsRequest = super::decode(&mut body, LIST, v)?;
        let image = ctx.topics.image();
        let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
        let mut topics = Vec::new();
        for t in image.topics() {
            let asked: Option<&Vec<i32>> = match &req.topics {
                None => None,
                Some(list) => match list.iter().find(|x| *x.name.0 == *t.name) {
                    Some(x) => Some(&x.partition_indexes),
                    None => continue,
                },
            };
            let parts: Vec<OngoingPartitionReassignment> = t
                .reassigning
                .iter()
                .filter(|(p, _)| asked.is_none_or(|a| a.contains(p)))
                .map(|(p, e)| {
                    OngoingPartitionReassignment::default()
                        .with_partition_index(*p)
                        .with_replicas(ids(&t
                            .record(*p)
                            .map_or(Vec::new(), |r| r.replicas.clone())))
                        .with_adding_replicas(ids(&e.adding))
                        .with_removing_replicas(ids(&e.removing))
                })
                .collect();
            if !parts.is_empty() {
                topics.push(
                    OngoingTopicReassignment::default()
                        .with_name(TopicName(StrBytes::from_string(t.name.to_string())))
                        .with_partitions(parts),
                );
            }
        }
        super::encode(
            &ListPartitionReassignmentsResponse::default().with_topics(topics),
            LIST,
            v,
        )
    })
}
