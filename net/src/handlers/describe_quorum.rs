//! DescribeQuorum (API 55, v0-1): the metadata quorum as its leader sees it — the
//! leader, its term (as the leader epoch), the last index in its log (as the high
//! watermark) and how far each voter's log has reached. Any node answers: it asks
//! the leader. The single-node store answers `UNKNOWN_TOPIC_OR_PARTITION` (there
//! is no quorum).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::describe_quorum_response::{PartitionData, ReplicaState, TopicData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::context::BrokerContext;
use crate::kafka_error as code;
use crate::registry::HandlerFuture;

const KEY: i16 = ApiKey::DescribeQuorum as i16;

/// Kafka's name for the metadata log.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

fn node(id: u64) -> BrokerId {
    BrokerId(i32::try_from(id).unwrap_or(-1))
}

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: DescribeQuorumRequest = super::decode(&mut body, KEY, v)?;
        let asked_metadata = req.topics.iter().any(|t| {
            &*t.topic_name.0 == METADATA_TOPIC
                && t.partitions.iter().any(|p| p.partition_index == 0)
        });
        let part = PartitionData::default().with_partition_index(0);
        let part = if !asked_metadata || ctx.settings.cluster.is_none() {
            part.with_error_code(sluice_engine::metrics::tally(
                code::UNKNOWN_TOPIC_OR_PARTITION,
            ))
            .with_error_message(Some(StrBytes::from_static_str(
                "this broker has no metadata quorum (a single node), or the request names \
                 another partition than __cluster_metadata-0",
            )))
        } else {
            match ctx.topics.leader_status().await {
                Ok(s) => {
                    let replica = |id: &u64| {
                        ReplicaState::default()
                            .with_replica_id(node(*id))
                            .with_log_end_offset(
                                s.matched
                                    .get(id)
                                    .copied()
                                    .flatten()
                                    .and_then(|i| i64::try_from(i).ok())
                                    .unwrap_or(-1),
                            )
                            .with_last_fetch_timestamp(-1)
                            .with_last_caught_up_timestamp(-1)
                    };
                    part.with_leader_id(s.leader.map_or(BrokerId(-1), node))
                        .with_leader_epoch(i32::try_from(s.term).unwrap_or(i32::MAX))
                        .with_high_watermark(i64::try_from(s.last_log_index).unwrap_or(-1))
                        .with_current_voters(s.voters.iter().map(replica).collect())
                        .with_observers(s.learners.iter().map(replica).collect())
                }
                Err(e) => part
                    .with_error_code(sluice_engine::metrics::tally(code::NOT_LEADER_OR_FOLLOWER))
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "the quorum's leader did not answer: {e}"
                    )))),
            }
        };
        let part = if v >= 2 {
            part
        } else {
            part.with_error_message(None)
        };
        let response = DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_TOPIC)))
            .with_partitions(vec![part])]);
        super::encode(&response, KEY, v)
    })
}
