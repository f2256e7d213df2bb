//! AddRaftVoter (API 80) and RemoveRaftVoter (API 81), v0 (KIP-853): change the
//! metadata quorum's voters at runtime, through its leader (openraft's joint
//! consensus). A node added must be running (it follows the log as a learner
//! first and becomes a voter once it has caught up); a node removed stays a
//! learner, so it keeps serving as a broker. Any node takes the request.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{
    AddRaftVoterRequest, AddRaftVoterResponse, ApiKey, RemoveRaftVoterRequest,
    RemoveRaftVoterResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;
use sluice_raft::quorum::node::MembershipChange;

use crate::context::BrokerContext;
use crate::kafka_error as code;
use crate::registry::HandlerFuture;

/// The change's outcome as (error code, message).
async fn change(ctx: &BrokerContext, change: MembershipChange) -> (i16, Option<String>) {
    if ctx.settings.cluster.is_none() {
        return (
            code::INVALID_REQUEST,
            Some("this broker is a single node: it has no metadata quorum".into()),
        );
    }
    match ctx.topics.change_membership(change).await {
        Ok(()) => (code::NONE, None),
        Err(e) if e.starts_with("no membership change within") => {
            (code::REQUEST_TIMED_OUT, Some(e))
        }
        Err(e) => (code::INVALID_REQUEST, Some(e)),
    }
}

#[allow(clippy::needless_pass_by_value)]
pub fn add(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    const KEY: i16 = ApiKey::AddRaftVoter as i16;
    Box::pin(async move {
        let v = header.request_api_version;
        let req: AddRaftVoterRequest = super::decode(&mut body, KEY, v)?;
        let listener = req
            .listeners
            .iter()
            .find(|l| l.name.as_str() == "CONTROLLER")
            .or_else(|| req.listeners.first());
        let (err, msg) = match (u64::try_from(req.voter_id), listener) {
            (Ok(id), Some(l)) => {
                let addr = format!("{}:{}", l.host.as_str(), l.port);
                change(&ctx, MembershipChange::AddVoter { id, addr }).await
            }
            _ => (
                code::INVALID_REQUEST,
                Some("a voter needs a node id of 0 or more and a listener".to_string()),
            ),
        };
        let response = AddRaftVoterResponse::default()
            .with_error_code(sluice_engine::metrics::tally(err))
            .with_error_message(msg.map(StrBytes::from_string));
        super::encode(&response, KEY, v)
    })
}

#[allow(clippy::needless_pass_by_value)]
pub fn remove(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    const KEY: i16 = ApiKey::RemoveRaftVoter as i16;
    Box::pin(async move {
        let v = header.request_api_version;
        let req: RemoveRaftVoterRequest = super::decode(&mut body, KEY, v)?;
        let (err, msg) = match u64::try_from(req.voter_id) {
            Ok(id) => change(&ctx, MembershipChange::RemoveVoter { id }).await,
            Err(_) => (
                code::INVALID_REQUEST,
                Some(format!("no node has id {}", req.voter_id)),
            ),
        };
        let response = RemoveRaftVoterResponse::default()
            .with_error_code(sluice_engine::metrics::tally(err))
            .with_error_message(msg.map(StrBytes::from_string));
        super::encode(&response, KEY, v)
    })
}
