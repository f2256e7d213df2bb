//! JoinGroup (v0+): on the group's coordinator; waits until the rebalance
//! completes (every known member joined, or the rebalance timeout passed).

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{ApiKey, JoinGroupRequest, JoinGroupResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;

use crate::context::BrokerContext;
use crate::group::coordinator::{now_ms, on_coordinator};
use crate::group::state::{Join, JoinRequest, JoinResponse};
use crate::kafka_error as code;
use crate::registry::HandlerFuture;

const KEY: i16 = ApiKey::JoinGroup as i16;

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: JoinGroupRequest = super::decode(&mut body, KEY, v)?;
        let group = req.group_id.0.to_string();
        let join = JoinRequest {
            member_id: req.member_id.to_string(),
            group_instance_id: req.group_instance_id.as_ref().map(ToString::to_string),
            client_id: header
                .client_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            // Kafka shows the address as Java prints an InetAddress.
            client_host: ctx.peer.map(|ip| format!("/{ip}")).unwrap_or_default(),
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: if v >= 1 {
                req.rebalance_timeout_ms
            } else {
                req.session_timeout_ms
            },
            protocol_type: req.protocol_type.to_string(),
            protocols: req
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect(),
            require_known_member_id: v >= 4,
        };
        let member_id = join.member_id.clone();
        let r = if group.is_empty() {
            JoinResponse::error(code::INVALID_GROUP_ID, &member_id)
        } else {
            let g = group.clone();
            let outcome = on_coordinator(&ctx, &group, move |c| async move {
                let join = c
                    .with_group(&g, true, |e| {
                        e.group
                            .join(join, &c.settings.limits, Instant::now(), now_ms())
                    })
                    .ok_or_else(|| {
                        crate::kafka_error::KafkaError::new(code::COORDINATOR_NOT_AVAILABLE, "")
                    })?;
                c.persist(&g).await;
                Ok(match join {
                    Join::Done(r) => r,
                    Join::Wait(rx) => rx.await.unwrap_or_else(|_| {
                        JoinResponse::error(code::COORDINATOR_NOT_AVAILABLE, "")
                    }),
                })
            })
            .await;
            outcome.unwrap_or_else(|e| JoinResponse::error(e.code, &member_id))
        };
        let s = |x: &str| StrBytes::from_string(x.to_string());
        let members = r
            .members
            .iter()
            .map(|m| {
                JoinGroupResponseMember::default()
                    .with_member_id(s(&m.member_id))
                    .with_group_instance_id(m.group_instance_id.as_deref().map(s))
                    .with_metadata(m.metadata.clone())
            })
            .collect();
        // Before v7 the protocol name is not nullable.
        let protocol = match (r.protocol.as_deref(), v >= 7) {
            (Some(p), _) => Some(s(p)),
            (None, true) => None,
            (None, false) => Some(s("")),
        };
        let response = JoinGroupResponse::default()
            .with_error_code(sluice_engine::metrics::tally(r.error))
            .with_generation_id(r.generation)
            .with_protocol_type(r.protocol_type.as_deref().map(s))
            .with_protocol_name(protocol)
            .with_leader(s(&r.leader))
            .with_member_id(s(&r.member_id))
            .with_members(members);
        super::encode(&response, KEY, v)
    })
}
