//! CreateTopics: partition count (-1: the broker default), configs, `validate_only`.
//! One node: the replication factor must be 1 or -1 (the default), and manual
//! replica assignments may only name this node.

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;

use crate::context::BrokerContext;
use crate::kafka_error::{self as code, KafkaError};
use crate::registry::HandlerFuture;
use crate::topic_config;

const KEY: i16 = ApiKey::CreateTopics as i16;

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: CreateTopicsRequest = super::decode(&mut body, KEY, v)?;
        let mut results = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let name = t.name.to_string();
            let mut result = CreatableTopicResult::default().with_name(t.name.clone());
            match create(&ctx, &t, req.validate_only).await {
                Ok(info) => {
                    if v >= 5 {
                        result = result
                            .with_num_partitions(info.partitions)
                            .with_replication_factor(
                                info.placement
                                    .first()
                                    .map_or(t.replication_factor.max(1), |p| {
                                        i16::try_from(p.replicas.len()).unwrap_or(1)
                                    }),
                            )
                            .with_configs(Some(
                                topic_config::describe(&ctx.topics.defaults(), &info.configs)
                                    .into_iter()
                                    .map(|(k, value, set)| {
                                        CreatableTopicConfigs::default()
                                            .with_name(StrBytes::from_static_str(k.name))
                                            .with_value(Some(StrBytes::from_string(value)))
                                            .with_config_source(if set { 1 } else { 5 })
                                    })
                                    .collect(),
                            ));
                    }
                    if v >= 7 {
                        result = result.with_topic_id(info.id);
                    }
                }
                Err(e) => {
                    tracing::info!(topic = %name, error = %e, "topic not created");
                    result = result.with_error_code(sluice_engine::metrics::tally(e.code));
                    if v >= 1 {
                        result = result.with_error_message(Some(StrBytes::from_string(e.message)));
                    }
                }
            }
            results.push(result);
        }
        super::encode(
            &CreateTopicsResponse::default().with_topics(results),
            KEY,
            v,
        )
    })
}

async fn create(
    ctx: &BrokerContext,
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
    validate_only: bool,
) -> Result<std::sync::Arc<crate::topics::TopicInfo>, KafkaError> {
    let partitions = if t.assignments.is_empty() {
        if t.num_partitions == -1 {
            ctx.settings.default_partitions
        } else {
            t.num_partitions
        }
    } else {
        if ctx.settings.cluster.is_some() {
            return Err(KafkaError::new(
                code::INVALID_REPLICA_ASSIGNMENT,
                "replica assignments are not taken in a cluster yet: the controller places \
                 the partitions",
            ));
        }
        let node = ctx.node_id();
        if t.assignments
            .iter()
            .any(|a| a.broker_ids.len() != 1 || a.broker_ids[0].0 != node)
        {
            return Err(KafkaError::new(
                code::INVALID_REPLICATION_FACTOR,
                format!(
                    "replica assignments may only name broker {node}, the broker asked \
                     (placement over a cluster is chosen by the controller)"
                ),
            ));
        }
        i32::try_from(t.assignments.len()).unwrap_or(i32::MAX)
    };
    let mut configs = BTreeMap::new();
    for c in &t.configs {
        if let Some(value) = &c.value {
            configs.insert(c.name.to_string(), value.to_string());
        }
    }
    ctx.topics
        .create(
            &t.name,
            partitions,
            if t.assignments.is_empty() {
                t.replication_factor
            } else {
                1
            },
            configs,
            validate_only,
        )
        .await
}
