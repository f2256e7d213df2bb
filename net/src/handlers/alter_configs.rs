//! AlterConfigs (the old, replacing form) and IncrementalAlterConfigs: change a
//! topic's config overrides. AlterConfigs replaces all overrides with the ones sent;
//! IncrementalAlterConfigs sets, deletes, appends to or subtracts from single keys.
//! Every value is checked before anything changes.
//!
//! BROKER resources take Kafka's dynamic broker configs (the topic defaults
//! `log.retention.ms`, `log.retention.bytes`, `log.segment.bytes`, `log.roll.ms`,
//! `message.max.bytes`): resource name `""` is the cluster-wide default, a broker
//! id that broker's own; committed through the metadata store and applied by every
//! node to the topics that do not override them. Other broker keys come from the
//! config file and are refused.

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    RequestHeader,
};
use kafka_protocol::protocol::StrBytes;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::context::BrokerContext;
use crate::kafka_error::{self as code, KafkaError};
use crate::registry::HandlerFuture;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    const KEY: i16 = ApiKey::AlterConfigs as i16;
    Box::pin(async move {
        let v = header.request_api_version;
        let req: AlterConfigsRequest = super::decode(&mut body, KEY, v)?;
        let mut responses = Vec::new();
        for r in req.resources {
            let result = match r.resource_type {
                RESOURCE_TOPIC => {
                    let mut configs = BTreeMap::new();
                    let mut nulls = Vec::new();
                    for c in &r.configs {
                        match &c.value {
                            Some(value) => {
                                configs.insert(c.name.to_string(), value.to_string());
                            }
                            None => nulls.push(c.name.to_string()),
                        }
                    }
                    if nulls.is_empty() {
                        ctx.topics
                            .set_configs(&r.resource_name, configs, req.validate_only)
                            .await
                    } else {
                        Err(KafkaError::new(
                            code::INVALID_REQUEST,
                            format!("Null value not supported for : {}", nulls.join(", ")),
                        ))
                    }
                }
                RESOURCE_BROKER => {
                    let configs: BTreeMap<String, String> = r
                        .configs
                        .iter()
                        .filter_map(|c| {
                            c.value
                                .as_ref()
                                .map(|v| (c.name.to_string(), v.to_string()))
                        })
                        .collect();
                    set_broker(&ctx, &r.resource_name, configs, req.validate_only).await
                }
                t => Err(refuse_type(t)),
            };
            let mut out = alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            if let Err(e) = result {
                out = out
                    .with_error_code(sluice_engine::metrics::tally(e.code))
                    .with_error_message(Some(StrBytes::from_string(e.message)));
            }
            responses.push(out);
        }
        super::encode(
            &AlterConfigsResponse::default().with_responses(responses),
            KEY,
            v,
        )
    })
}

#[allow(clippy::needless_pass_by_value)]
pub fn handle_incremental(
    ctx: Rc<BrokerContext>,
    header: RequestHeader,
    mut body: Bytes,
) -> HandlerFuture {
    const KEY: i16 = ApiKey::IncrementalAlterConfigs as i16;
    Box::pin(async move {
        let v = header.request_api_version;
        let req: IncrementalAlterConfigsRequest = super::decode(&mut body, KEY, v)?;
        let mut responses = Vec::new();
        for r in req.resources {
            let result = match r.resource_type {
                RESOURCE_TOPIC => {
                    let ops: Vec<(String, i8, Option<String>)> = r
                        .configs
                        .iter()
                        .map(|c| {
                            (
                                c.name.to_string(),
                                c.config_operation,
                                c.value.as_ref().map(ToString::to_string),
                            )
                        })
                        .collect();
                    incremental(&ctx, &r.resource_name, &ops, req.validate_only).await
                }
                RESOURCE_BROKER => {
                    incremental_broker(&ctx, &r.resource_name, &r.configs, req.validate_only).await
                }
                t => Err(refuse_type(t)),
            };
            let mut out =
                incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone());
            if let Err(e) = result {
                out = out
                    .with_error_code(sluice_engine::metrics::tally(e.code))
                    .with_error_message(Some(StrBytes::from_string(e.message)));
            }
            responses.push(out);
        }
        super::encode(
            &IncrementalAlterConfigsResponse::default().with_responses(responses),
            KEY,
            v,
        )
    })
}

fn refuse_type(t: i8) -> KafkaError {
    KafkaError::new(
        code::INVALID_REQUEST,
        format!("resource type {t} has no alterable configs"),
    )
}

/// The broker resource named `name`: `""` (the cluster-wide default) or a broker
/// id this cluster knows.
fn broker_resource(ctx: &BrokerContext, name: &str) -> Result<String, KafkaError> {
    if name.is_empty() {
        return Ok(String::new());
    }
    let known = name
        .parse::<i32>()
        .ok()
        .is_some_and(|id| ctx.topics.image().brokers.iter().any(|b| b.id == id));
    if known {
        Ok(name.to_string())
    } else {
        Err(KafkaError::new(
            code::INVALID_REQUEST,
            format!("no broker '{name}': name a registered broker id, or nothing for the cluster-wide default"),
        ))
    }
}

/// Replaces a broker resource's dynamic configs.
async fn set_broker(
    ctx: &BrokerContext,
    name: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), KafkaError> {
    let resource = broker_resource(ctx, name)?;
    ctx.topics
        .set_broker_configs(&resource, configs, validate_only)
        .await
}

/// SET and DELETE on a broker resource's dynamic configs (none is a list).
async fn incremental_broker(
    ctx: &BrokerContext,
    name: &str,
    ops: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
    validate_only: bool,
) -> Result<(), KafkaError> {
    let resource = broker_resource(ctx, name)?;
    let mut configs = ctx
        .topics
        .image()
        .broker_configs
        .get(&resource)
        .cloned()
        .unwrap_or_default();
    for op in ops {
        let key = op.name.to_string();
        match (op.config_operation, &op.value) {
            (OP_SET, Some(v)) => {
                configs.insert(key, v.to_string());
            }
            (OP_DELETE, _) => {
                configs.remove(&key);
            }
            (OP_SET, None) => {
                return Err(KafkaError::new(
                    code::INVALID_REQUEST,
                    format!("SET of `{key}` without a value"),
                ))
            }
            (o, _) => {
                return Err(KafkaError::new(
                    code::INVALID_CONFIG,
                    format!("Can't APPEND or SUBTRACT (operation {o}) to key {key} because its type is not LIST."),
                ))
            }
        }
    }
    ctx.topics
        .set_broker_configs(&resource, configs, validate_only)
        .await
}

async fn incremental(
    ctx: &BrokerContext,
    topic: &str,
    ops: &[(String, i8, Option<String>)],
    validate_only: bool,
) -> Result<(), KafkaError> {
    let Some(info) = ctx.topics.image().get(topic).cloned() else {
        return Err(KafkaError::new(
            code::UNKNOWN_TOPIC_OR_PARTITION,
            format!("topic '{topic}' does not exist"),
        ));
    };
    let mut configs = info.configs.clone();
    for (key, op, value) in ops {
        let list = || -> Vec<String> {
            let current = configs.get(key).cloned().or_else(|| {
                crate::topic_config::value_of(&ctx.topics.defaults(), &BTreeMap::new(), key)
            });
            current
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        };
        match *op {
            OP_SET => {
                let Some(value) = value else {
                    return Err(KafkaError::new(
                        code::INVALID_REQUEST,
                        format!("SET of `{key}` without a value"),
                    ));
                };
                configs.insert(key.clone(), value.clone());
            }
            OP_DELETE => {
                configs.remove(key);
            }
            OP_APPEND | OP_SUBTRACT => {
                if !crate::topic_config::is_list(key) {
                    let name = if *op == OP_APPEND {
                        "APPEND"
                    } else {
                        "SUBTRACT"
                    };
                    return Err(KafkaError::new(
                        code::INVALID_CONFIG,
                        format!("Can't {name} to key {key} because its type is not LIST."),
                    ));
                }
                let mut items = list();
                let given: Vec<String> = value
                    .as_deref()
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                if *op == OP_APPEND {
                    for g in given {
                        if !items.contains(&g) {
                            items.push(g);
                        }
                    }
                } else {
                    items.retain(|i| !given.contains(i));
                }
                configs.insert(key.clone(), items.join(","));
            }
            other => {
                return Err(KafkaError::new(
                    code::INVALID_REQUEST,
                    format!("config operation {other} is not SET, DELETE, APPEND or SUBTRACT"),
                ))
            }
        }
    }
    ctx.topics.set_configs(topic, configs, validate_only).await
}
