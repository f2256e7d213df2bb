//! ListGroups (v0-5): every group of every `__consumer_offsets` partition, with its
//! state (v4+ may filter by state) and type (v5+: all are "classic").

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    ApiKey, GroupId, ListGroupsRequest, ListGroupsResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;

use crate::context::BrokerContext;
use crate::group::coordinator::on_every_partition;
use crate::kafka_error as code;
use crate::registry::HandlerFuture;

const KEY: i16 = ApiKey::ListGroups as i16;

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: ListGroupsRequest = super::decode(&mut body, KEY, v)?;
        let states: Vec<String> = req
            .states_filter
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        let types: Vec<String> = req
            .types_filter
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        let found = on_every_partition(&ctx, |c| async move { Ok(c.list()) }).await;
        let (error, lists) = match found {
            Ok(l) => (code::NONE, l),
            Err(e) => (e.code, Vec::new()),
        };
        let s = |x: &str| StrBytes::from_string(x.to_string());
        let mut groups: Vec<ListedGroup> = lists
            .into_iter()
            .flatten()
            .filter(|(_, _, st)| {
                states.is_empty() || states.contains(&st.name().to_ascii_lowercase())
            })
            .filter(|_| types.is_empty() || types.iter().any(|t| t == "classic"))
            .map(|(name, protocol_type, st)| {
                ListedGroup::default()
                    .with_group_id(GroupId(s(&name)))
                    .with_protocol_type(s(&protocol_type))
                    .with_group_state(s(st.name()))
                    .with_group_type(s("classic"))
            })
            .collect();
        groups.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
        let response = ListGroupsResponse::default()
            .with_error_code(sluice_engine::metrics::tally(error))
            .with_groups(groups);
        super::encode(&response, KEY, v)
    })
}
