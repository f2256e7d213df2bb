//! DescribeConfigs: a topic's effective configs (its overrides as
//! `DYNAMIC_TOPIC_CONFIG`, the rest as `DEFAULT_CONFIG`), and this broker's main
//! settings: the dynamic broker configs with their source when set
//! (`DYNAMIC_BROKER_CONFIG`, `DYNAMIC_DEFAULT_BROKER_CONFIG`), the rest read-only
//! from the config file.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    ApiKey, DescribeConfigsRequest, DescribeConfigsResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;

use crate::context::BrokerContext;
use crate::kafka_error::{self as code, KafkaError};
use crate::registry::HandlerFuture;
use crate::topic_config;

const KEY: i16 = ApiKey::DescribeConfigs as i16;

/// Kafka's resource types.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// Kafka's config sources.
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
/// Kafka's `DYNAMIC_BROKER_CONFIG` and `DYNAMIC_DEFAULT_BROKER_CONFIG`.
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
const SOURCE_DEFAULT: i8 = 5;

/// One config as DescribeConfigs lists it.
struct Entry {
    name: String,
    value: String,
    source: i8,
    read_only: bool,
}

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: DescribeConfigsRequest = super::decode(&mut body, KEY, v)?;
        let mut results = Vec::with_capacity(req.resources.len());
        for r in req.resources {
            let out = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let entries = match r.resource_type {
                RESOURCE_TOPIC => topic_entries(&ctx, &r.resource_name),
                RESOURCE_BROKER => broker_entries(&ctx, &r.resource_name),
                t => Err(KafkaError::new(
                    code::INVALID_REQUEST,
                    format!("resource type {t} has no configs here"),
                )),
            };
            let out = match entries {
                Ok(entries) => out.with_configs(
                    entries
                        .into_iter()
                        .filter(|e| {
                            // Null or empty: every config.
                            r.configuration_keys.as_ref().is_none_or(|keys| {
                                keys.is_empty() || keys.iter().any(|k| k.as_str() == e.name)
                            })
                        })
                        .map(|e| {
                            let synonyms = if v >= 1 && req.include_synonyms {
                                vec![DescribeConfigsSynonym::default()
                                    .with_name(StrBytes::from_string(e.name.clone()))
                                    .with_value(Some(StrBytes::from_string(e.value.clone())))
                                    .with_source(e.source)]
                            } else {
                                Vec::new()
                            };
                            let kind = if v >= 3 { config_type(&e.name) } else { 0 };
                            DescribeConfigsResourceResult::default()
                                .with_name(StrBytes::from_string(e.name))
                                .with_value(Some(StrBytes::from_string(e.value)))
                                .with_read_only(e.read_only)
                                .with_config_source(if v >= 1 { e.source } else { -1 })
                                .with_config_type(kind)
                                .with_synonyms(synonyms)
                        })
                        .collect(),
                ),
                Err(e) => out
                    .with_error_code(sluice_engine::metrics::tally(e.code))
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            };
            results.push(out);
        }
        super::encode(
            &DescribeConfigsResponse::default().with_results(results),
            KEY,
            v,
        )
    })
}

/// Kafka's `ConfigType` of a key this broker lists (`UNKNOWN` for others): topic
/// keys from their table, broker keys here.
fn config_type(name: &str) -> i8 {
    use topic_config::keys::Kind;
    if let Some(k) = topic_config::keys::find(name) {
        return k.kind as i8;
    }
    let kind = match name {
        "auto.create.topics.enable" => Kind::Boolean,
        "node.id"
        | "broker.id"
        | "num.partitions"
        | "socket.request.max.bytes"
        | "message.max.bytes"
        | "min.insync.replicas"
        | "log.segment.bytes"
        | "default.replication.factor" => Kind::Int,
        "log.retention.ms" | "log.retention.bytes" | "log.roll.ms" => Kind::Long,
        _ => return 0,
    };
    kind as i8
}

fn topic_entries(ctx: &BrokerContext, name: &str) -> Result<Vec<Entry>, KafkaError> {
    let image = ctx.topics.image();
    let info = image.get(name).ok_or_else(|| {
        KafkaError::new(
            code::UNKNOWN_TOPIC_OR_PARTITION,
            format!("topic '{name}' does not exist"),
        )
    })?;
    Ok(
        topic_config::describe(&ctx.topics.defaults(), &info.configs)
            .into_iter()
            .map(|(k, value, set)| Entry {
                name: k.name.to_string(),
                value,
                source: if set {
                    SOURCE_DYNAMIC_TOPIC
                } else {
                    SOURCE_DEFAULT
                },
                read_only: false,
            })
            .collect(),
    )
}

fn broker_entries(ctx: &BrokerContext, name: &str) -> Result<Vec<Entry>, KafkaError> {
    let me = ctx.node_id().to_string();
    if !name.is_empty() && name != me {
        return Err(KafkaError::new(
            code::INVALID_REQUEST,
            format!("this is broker {me}, not {name}"),
        ));
    }
    let s = &ctx.settings;
    let d = ctx.topics.defaults();
    let opt = |v: Option<u64>| v.map_or_else(|| "-1".to_string(), |v| v.to_string());
    let rows = [
        ("node.id", me.clone()),
        ("broker.id", me),
        (
            "auto.create.topics.enable",
            s.auto_create_topics.to_string(),
        ),
        ("num.partitions", s.default_partitions.to_string()),
        ("socket.request.max.bytes", s.request_max_bytes.to_string()),
        ("message.max.bytes", d.max_message_bytes.to_string()),
        ("log.retention.ms", opt(d.retention_ms)),
        ("log.retention.bytes", opt(d.retention_bytes)),
        ("log.segment.bytes", d.segment_bytes.to_string()),
        ("log.roll.ms", d.segment_ms.to_string()),
        ("default.replication.factor", "1".to_string()),
        ("min.insync.replicas", "1".to_string()),
    ];
    let image = ctx.topics.image();
    let own = image.broker_configs.get(&ctx.node_id().to_string());
    let cluster = image.broker_configs.get("");
    Ok(rows
        .into_iter()
        .map(|(k, v)| {
            let dynamic = topic_config::DYNAMIC_BROKER_KEYS
                .iter()
                .any(|(b, _)| *b == k);
            let source = if own.is_some_and(|c| c.contains_key(k)) {
                SOURCE_DYNAMIC_BROKER
            } else if cluster.is_some_and(|c| c.contains_key(k)) {
                SOURCE_DYNAMIC_DEFAULT_BROKER
            } else {
                SOURCE_STATIC_BROKER
            };
            Entry {
                name: k.to_string(),
                value: v,
                source,
                read_only: !dynamic,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_listed_topic_key_has_a_type() {
        for k in crate::topic_config::keys::TOPIC_KEYS {
            assert_ne!(super::config_type(k.name), 0, "{}", k.name);
        }
    }
}
