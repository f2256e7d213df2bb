//! Metadata: this node as the only broker and controller, and every topic asked
//! for (all of them when the list is null, or empty in v0), each partition led by
//! this node. Unknown topics are created when the client allows it and the broker
//! auto-creates topics. Authorized operations (topics v8+, the cluster v8-10) are
//! answered when asked for (KIP-430).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, MetadataRequest, MetadataResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::acl;
use crate::context::BrokerContext;
use crate::kafka_error as code;
use crate::registry::HandlerFuture;
use crate::topics::TopicInfo;

const KEY: i16 = ApiKey::Metadata as i16;

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: MetadataRequest = super::decode(&mut body, KEY, v)?;
        // v0-v3 always allow auto-creation; later versions say so.
        let allow_create = v < 4 || req.allow_auto_topic_creation;
        // KIP-430: asked for from v8 (the cluster's only up to v10).
        let topic_ops = acl::authorized_operations(
            acl::ResourceType::Topic,
            v >= 8 && req.include_topic_authorized_operations,
        );
        let mut topics = Vec::new();
        let all = match &req.topics {
            None => true,
            Some(list) => v == 0 && list.is_empty(),
        };
        if all {
            for t in ctx.topics.image().topics() {
                topics.push(describe(&ctx, t, v).with_topic_authorized_operations(topic_ops));
            }
        } else {
            for t in req.topics.unwrap_or_default() {
                let by_id = || {
                    ctx.topics
                        .image()
                        .by_id(&t.topic_id)
                        .map(|i| i.name.to_string())
                };
                let Some(name) = t
                    .name
                    .as_ref()
                    .map(|n| n.as_str().to_string())
                    .or_else(by_id)
                else {
                    topics.push(
                        MetadataResponseTopic::default()
                            .with_error_code(sluice_engine::metrics::tally(code::UNKNOWN_TOPIC_ID))
                            .with_topic_id(t.topic_id),
                    );
                    continue;
                };
                match super::find_topic(&ctx, &name, allow_create).await {
                    Ok(info) => topics
                        .push(describe(&ctx, &info, v).with_topic_authorized_operations(topic_ops)),
                    Err(e) => topics.push(
                        MetadataResponseTopic::default()
                            .with_error_code(sluice_engine::metrics::tally(e.code))
                            .with_name(Some(TopicName(StrBytes::from_string(name))))
                            .with_topic_authorized_operations(topic_ops),
                    ),
                }
            }
        }
        let image = ctx.topics.image();
        let brokers = image
            .live_brokers()
            .map(|b| {
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(StrBytes::from_string(b.host.clone()))
                    .with_port(i32::from(b.port))
                    .with_rack(b.rack.clone().map(StrBytes::from_string))
            })
            .collect();
        let mut response = MetadataResponse::default()
            .with_brokers(brokers)
            .with_topics(topics);
        if v >= 1 {
            // As Kafka's KRaft brokers do, the controller clients are given is a
            // live broker (this one): any broker takes admin requests and forwards
            // them to the quorum's leader, so a dead leader is never asked.
            response.controller_id = BrokerId(ctx.node_id());
        }
        if (8..=10).contains(&v) {
            response.cluster_authorized_operations = acl::authorized_operations(
                acl::ResourceType::Cluster,
                req.include_cluster_authorized_operations,
            );
        }
        if v >= 2 {
            response.cluster_id =
                Some(StrBytes::from_string(ctx.topics.image().cluster_id.clone()));
        }
        super::encode(&response, KEY, v)
    })
}

/// A topic as `v` can carry it (fields a version lacks stay at their defaults).
fn describe(ctx: &BrokerContext, t: &TopicInfo, v: i16) -> MetadataResponseTopic {
    let image = ctx.topics.image();
    let internal = matches!(&*t.name, "__consumer_offsets" | "__transaction_state");
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(t.name.to_string()))))
        .with_topic_id(if v >= 10 { t.id } else { uuid::Uuid::nil() })
        .with_is_internal(v >= 1 && internal)
        .with_partitions(
            t.placement
                .iter()
                .zip(0..)
                .map(|(r, p)| {
                    let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
                    let offline: Vec<BrokerId> = r
                        .replicas
                        .iter()
                        .filter(|b| image.broker(**b).is_none())
                        .map(|b| BrokerId(*b))
                        .collect();
                    let error = if r.leader < 0 {
                        code::LEADER_NOT_AVAILABLE
                    } else {
                        code::NONE
                    };
                    MetadataResponsePartition::default()
                        .with_error_code(sluice_engine::metrics::tally(error))
                        .with_partition_index(p)
                        .with_leader_id(BrokerId(r.leader))
                        .with_leader_epoch(if v >= 7 { r.leader_epoch } else { -1 })
                        .with_replica_nodes(ids(&r.replicas))
                        .with_isr_nodes(ids(&r.isr))
                        .with_offline_replicas(if v >= 5 { offline } else { Vec::new() })
                })
                .collect(),
        )
}
