//! DeleteGroups (v0-2): empty groups go with their committed offsets
//! (NON_EMPTY_GROUP for one with members, GROUP_ID_NOT_FOUND for none).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{ApiKey, DeleteGroupsRequest, DeleteGroupsResponse, RequestHeader};

use crate::context::BrokerContext;
use crate::group::coordinator::on_coordinator;
use crate::kafka_error as code;
use crate::registry::HandlerFuture;

const KEY: i16 = ApiKey::DeleteGroups as i16;

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: DeleteGroupsRequest = super::decode(&mut body, KEY, v)?;
        let mut results = Vec::with_capacity(req.groups_names.len());
        for gid in &req.groups_names {
            let name = gid.0.to_string();
            let error = if name.is_empty() {
                code::INVALID_GROUP_ID
            } else {
                let n = name.clone();
                on_coordinator(
                    &ctx,
                    &name,
                    move |c| async move { Ok(c.delete_group(&n).await) },
                )
                .await
                .unwrap_or_else(|e| e.code)
            };
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(gid.clone())
                    .with_error_code(sluice_engine::metrics::tally(error)),
            );
        }
        super::encode(
            &DeleteGroupsResponse::default().with_results(results),
            KEY,
            v,
        )
    })
}
