//! SyncGroup (v0+): followers wait for the leader's assignment; the leader's is
//! stored in `__consumer_offsets` before anyone is answered.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use crate::context::BrokerContext;
use crate::group::coordinator::{now_ms, on_coordinator};
use crate::group::state::{Sync, SyncRequest, SyncResponse};
use crate::kafka_error::{self as code, KafkaError};
use crate::registry::HandlerFuture;

const KEY: i16 = ApiKey::SyncGroup as i16;

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: SyncGroupRequest = super::decode(&mut body, KEY, v)?;
        let group = req.group_id.0.to_string();
        let sync = SyncRequest {
            generation: req.generation_id,
            member_id: req.member_id.to_string(),
            group_instance_id: req.group_instance_id.as_ref().map(ToString::to_string),
            protocol_type: req.protocol_type.as_ref().map(ToString::to_string),
            protocol: req.protocol_name.as_ref().map(ToString::to_string),
            assignments: req
                .assignments
                .iter()
                .map(|a| (a.member_id.to_string(), a.assignment.clone()))
                .collect(),
        };
        let r = if group.is_empty() {
            SyncResponse::error(code::INVALID_GROUP_ID)
        } else {
            let g = group.clone();
            on_coordinator(&ctx, &group, move |c| async move {
                let Some(outcome) = c.with_group(&g, false, |e| e.group.sync(sync, Instant::now()))
                else {
                    return Ok(SyncResponse::error(code::UNKNOWN_MEMBER_ID));
                };
                let rx = match outcome {
                    Sync::Done(r) => return Ok(r),
                    Sync::Wait(rx) => rx,
                    Sync::Store {
                        value,
                        generation,
                        rx,
                    } => {
                        let stored = c.store_group(&g, &value).await;
                        if let Err(e) = &stored {
                            tracing::warn!(group = %g, error = %e, "could not store the assignment");
                        }
                        let err = stored.map_or(code::COORDINATOR_NOT_AVAILABLE, |()| code::NONE);
                        c.with_group(&g, false, |e| {
                            e.group
                                .assignment_stored(generation, err, Instant::now(), now_ms());
                        });
                        rx
                    }
                };
                Ok::<_, KafkaError>(
                    rx.await
                        .unwrap_or_else(|_| SyncResponse::error(code::COORDINATOR_NOT_AVAILABLE)),
                )
            })
            .await
            .unwrap_or_else(|e| SyncResponse::error(e.code))
        };
        let s = |x: &str| StrBytes::from_string(x.to_string());
        let response = SyncGroupResponse::default()
            .with_error_code(sluice_engine::metrics::tally(r.error))
            .with_protocol_type(r.protocol_type.as_deref().map(s))
            .with_protocol_name(r.protocol.as_deref().map(s))
            .with_assignment(r.assignment);
        super::encode(&response, KEY, v)
    })
}
