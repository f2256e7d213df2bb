//! Heartbeat (v0+): keeps a member's session; answers REBALANCE_IN_PROGRESS while
//! members must rejoin.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, HeartbeatRequest, HeartbeatResponse, RequestHeader};

use crate::context::BrokerContext;
use crate::group::coordinator::on_coordinator;
use crate::kafka_error as code;
use crate::registry::HandlerFuture;

const KEY: i16 = ApiKey::Heartbeat as i16;

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: HeartbeatRequest = super::decode(&mut body, KEY, v)?;
        let group = req.group_id.0.to_string();
        let member = req.member_id.to_string();
        let instance = req.group_instance_id.as_ref().map(ToString::to_string);
        let generation = req.generation_id;
        let error = if group.is_empty() {
            code::INVALID_GROUP_ID
        } else {
            let g = group.clone();
            on_coordinator(&ctx, &group, move |c| async move {
                Ok(c.with_group(&g, false, |e| {
                    e.group
                        .heartbeat(&member, instance.as_deref(), generation, Instant::now())
                })
                .unwrap_or(code::UNKNOWN_MEMBER_ID))
            })
            .await
            .unwrap_or_else(|e| e.code)
        };
        super::encode(
            &HeartbeatResponse::default().with_error_code(sluice_engine::metrics::tally(error)),
            KEY,
            v,
        )
    })
}
