//! ElectLeaders (v0-2): preferred leader election (type 0) of the partitions
//! asked (all of them for `null`): a partition whose preferred replica (its
//! first) is live and in sync is led by it, through the metadata quorum, and is
//! answered once this node applied that. `ELECTION_NOT_NEEDED` when it already
//! leads, `PREFERRED_LEADER_NOT_AVAILABLE` when it cannot. Unclean elections
//! (type 1) are made by the controller itself when a topic allows them
//! (`unclean.leader.election.enable`): asked here, a partition with a leader is
//! `ELECTION_NOT_NEEDED` and one without is `ELIGIBLE_LEADERS_NOT_AVAILABLE`.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{
    ApiKey, ElectLeadersRequest, ElectLeadersResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::context::BrokerContext;
use crate::kafka_error as code;
use crate::registry::HandlerFuture;

const KEY: i16 = ApiKey::ElectLeaders as i16;

const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
const ELIGIBLE_LEADERS_NOT_AVAILABLE: i16 = 83;
const ELECTION_NOT_NEEDED: i16 = 84;

/// A partition's answer: index, error code, message.
type Answer = (i32, i16, String);

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: ElectLeadersRequest = super::decode(&mut body, KEY, v)?;
        let image = ctx.topics.image();
        let asked: Vec<(String, Vec<i32>)> = match &req.topic_partitions {
            Some(list) => list
                .iter()
                .map(|t| (t.topic.0.to_string(), t.partitions.clone()))
                .collect(),
            None => image
                .topics()
                .map(|t| (t.name.to_string(), (0..t.partitions).collect()))
                .collect(),
        };
        let live = |b: i32| image.broker(b).is_some();
        let mut due = Vec::new();
        let mut answers: Vec<(String, Vec<Answer>)> = Vec::new();
        for (name, parts) in &asked {
            let info = image.get(name);
            let mut out = Vec::new();
            for &p in parts {
                let Some(r) = info.and_then(|t| t.record(p)) else {
                    out.push((
                        p,
                        code::UNKNOWN_TOPIC_OR_PARTITION,
                        "no such partition".into(),
                    ));
                    continue;
                };
                let preferred = r.replicas.first().copied().unwrap_or(-1);
                let answer = match req.election_type {
                    0 if r.leader == preferred => {
                        (ELECTION_NOT_NEEDED, "the preferred replica leads")
                    }
                    0 if r.isr.contains(&preferred) && live(preferred) => {
                        due.push((name.clone(), info.map(|t| t.id).unwrap_or_default(), p));
                        (code::NONE, "")
                    }
                    0 => (
                        PREFERRED_LEADER_NOT_AVAILABLE,
                        "the preferred replica is not live and in sync",
                    ),
                    _ if r.leader >= 0 => (ELECTION_NOT_NEEDED, "the partition has a leader"),
                    _ => (
                        ELIGIBLE_LEADERS_NOT_AVAILABLE,
                        "no live replica may lead (see unclean.leader.election.enable)",
                    ),
                };
                out.push((p, answer.0, answer.1.to_string()));
            }
            answers.push((name.clone(), out));
        }
        let mut top = code::NONE;
        if !due.is_empty() {
            if let Err(e) = ctx.topics.elect_preferred(due).await {
                top = e.code;
            }
        }
        let results = answers
            .into_iter()
            .map(|(name, parts)| {
                ReplicaElectionResult::default()
                    .with_topic(TopicName(StrBytes::from_string(name)))
                    .with_partition_result(
                        parts
                            .into_iter()
                            .map(|(p, c, m)| {
                                let c = if c == code::NONE { top } else { c };
                                PartitionResult::default()
                                    .with_partition_id(p)
                                    .with_error_code(sluice_engine::metrics::tally(c))
                                    .with_error_message(
                                        (!m.is_empty()).then(|| StrBytes::from_string(m)),
                                    )
                            })
                            .collect(),
                    )
            })
            .collect();
        super::encode(
            &ElectLeadersResponse::default()
                .with_error_code(code::NONE)
                .with_replica_election_results(results),
            KEY,
            v,
        )
    })
}
