//! FindCoordinator (v0+, batched keys from v4): a group's coordinator is the
//! broker leading its partition of `__consumer_offsets` (created on first use).
//! Transaction coordinators are not served.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    ApiKey, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;

use crate::context::BrokerContext;
use crate::group::coordinator::offsets_topic;
use crate::group::OFFSETS_TOPIC;
use crate::kafka_error::{self as code, KafkaError};
use crate::registry::HandlerFuture;

const KEY: i16 = ApiKey::FindCoordinator as i16;

/// `key_type` of a group coordinator.
const GROUP: i8 = 0;

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: FindCoordinatorRequest = super::decode(&mut body, KEY, v)?;
        let keys: Vec<StrBytes> = if v >= 4 {
            req.coordinator_keys.clone()
        } else {
            vec![req.key.clone()]
        };
        let mut coordinators = Vec::with_capacity(keys.len());
        for key in keys {
            let found = if req.key_type == GROUP {
                offsets_topic(&ctx).await.and_then(|t| {
                    let index = crate::group::partition_for(&key, t.partitions);
                    let leader = t.leader(index);
                    ctx.topics.image().broker(leader).cloned().ok_or_else(|| {
                        KafkaError::new(
                            code::COORDINATOR_NOT_AVAILABLE,
                            format!("{OFFSETS_TOPIC}-{index} has no live leader"),
                        )
                    })
                })
            } else {
                Err(KafkaError::new(
                    code::COORDINATOR_NOT_AVAILABLE,
                    "transactions are not supported by this broker",
                ))
            };
            let c = match found {
                Ok(b) => Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(b.id))
                    .with_host(StrBytes::from_string(b.host))
                    .with_port(i32::from(b.port)),
                Err(e) => Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(sluice_engine::metrics::tally(e.code))
                    .with_error_message(Some(StrBytes::from_string(e.message))),
            };
            coordinators.push(c);
        }
        let response = if v >= 4 {
            FindCoordinatorResponse::default().with_coordinators(coordinators)
        } else {
            let c = coordinators.pop().unwrap_or_default();
            FindCoordinatorResponse::default()
                // Counted above, as the coordinator's error.
                .with_error_code(c.error_code)
                .with_error_message(c.error_message)
                .with_node_id(c.node_id)
                .with_host(c.host)
                .with_port(c.port)
        };
        super::encode(&response, KEY, v)
    })
}
