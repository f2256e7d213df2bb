//! LeaveGroup (v0+; several members at once from v3): the members go and the rest
//! rebalance; static members may leave by instance id alone.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{ApiKey, LeaveGroupRequest, LeaveGroupResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;

use crate::context::BrokerContext;
use crate::group::coordinator::{now_ms, on_coordinator};
use crate::kafka_error as code;
use crate::registry::HandlerFuture;

const KEY: i16 = ApiKey::LeaveGroup as i16;

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: LeaveGroupRequest = super::decode(&mut body, KEY, v)?;
        let group = req.group_id.0.to_string();
        let leaving: Vec<(String, Option<String>)> = if v >= 3 {
            req.members
                .iter()
                .map(|m| {
                    (
                        m.member_id.to_string(),
                        m.group_instance_id.as_ref().map(ToString::to_string),
                    )
                })
                .collect()
        } else {
            vec![(req.member_id.to_string(), None)]
        };
        let asked = leaving.clone();
        let (top, each) = if group.is_empty() {
            (code::INVALID_GROUP_ID, Vec::new())
        } else {
            let g = group.clone();
            on_coordinator(&ctx, &group, move |c| async move {
                let each: Vec<i16> = leaving
                    .iter()
                    .map(|(m, i)| {
                        c.with_group(&g, false, |e| {
                            e.group.leave(m, i.as_deref(), Instant::now(), now_ms())
                        })
                        .unwrap_or(code::UNKNOWN_MEMBER_ID)
                    })
                    .collect();
                c.persist(&g).await;
                Ok((code::NONE, each))
            })
            .await
            .unwrap_or_else(|e| (e.code, Vec::new()))
        };
        let response = if v >= 3 {
            let s = |x: &str| StrBytes::from_string(x.to_string());
            LeaveGroupResponse::default()
                .with_error_code(sluice_engine::metrics::tally(top))
                .with_members(
                    asked
                        .iter()
                        .zip(each.iter().copied().chain(std::iter::repeat(top)))
                        .map(|((m, i), e)| {
                            MemberResponse::default()
                                .with_member_id(s(m))
                                .with_group_instance_id(i.as_deref().map(s))
                                .with_error_code(sluice_engine::metrics::tally(e))
                        })
                        .collect(),
                )
        } else {
            let e = each.first().copied().unwrap_or(top);
            LeaveGroupResponse::default().with_error_code(sluice_engine::metrics::tally(
                if top == code::NONE { e } else { top },
            ))
        };
        super::encode(&response, KEY, v)
    })
}
