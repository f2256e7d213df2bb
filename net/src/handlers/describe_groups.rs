//! DescribeGroups (v0-5): state, protocol, and members with their subscriptions and
//! assignments. A group that does not exist is described as "Dead", as Kafka does.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{
    ApiKey, DescribeGroupsRequest, DescribeGroupsResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;

use crate::acl;
use crate::context::BrokerContext;
use crate::group::coordinator::on_coordinator;
use crate::kafka_error as code;
use crate::registry::HandlerFuture;

const KEY: i16 = ApiKey::DescribeGroups as i16;

/// (member id, instance id, client id, client host, metadata, assignment).
type MemberRow = (String, Option<String>, String, String, Bytes, Bytes);

/// (state, protocol type, protocol, members) of a group.
type Description = (String, String, String, Vec<MemberRow>);

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: DescribeGroupsRequest = super::decode(&mut body, KEY, v)?;
        let s = |x: &str| StrBytes::from_string(x.to_string());
        let mut out = Vec::with_capacity(req.groups.len());
        for gid in &req.groups {
            let name = gid.0.to_string();
            let n = name.clone();
            let found = if name.is_empty() {
                Err(crate::kafka_error::KafkaError::new(
                    code::INVALID_GROUP_ID,
                    "",
                ))
            } else {
                on_coordinator(&ctx, &name, move |c| async move {
                    Ok::<Option<Description>, _>(c.with_group(&n, false, |e| {
                        (
                            e.group.state().name().to_string(),
                            e.group.protocol_type().unwrap_or("").to_string(),
                            e.group.protocol().unwrap_or("").to_string(),
                            e.group.describe_members(),
                        )
                    }))
                })
                .await
            };
            let mut group = DescribedGroup::default()
                .with_group_id(gid.clone())
                .with_authorized_operations(acl::OMITTED);
            // Kafka answers them for every group found without an error, a "Dead"
            // (unknown) one included.
            let ops = acl::authorized_operations(
                acl::ResourceType::Group,
                v >= 3 && req.include_authorized_operations,
            );
            group = match found {
                Ok(Some((state, ptype, protocol, members))) => group
                    .with_authorized_operations(ops)
                    .with_group_state(s(&state))
                    .with_protocol_type(s(&ptype))
                    .with_protocol_data(s(&protocol))
                    .with_members(
                        members
                            .into_iter()
                            .map(|(id, inst, client, host, meta, asg)| {
                                DescribedGroupMember::default()
                                    .with_member_id(s(&id))
                                    .with_group_instance_id(inst.as_deref().map(s))
                                    .with_client_id(s(&client))
                                    .with_client_host(s(&host))
                                    .with_member_metadata(meta)
                                    .with_member_assignment(asg)
                            })
                            .collect(),
                    ),
                Ok(None) => group
                    .with_authorized_operations(ops)
                    .with_group_state(s("Dead")),
                Err(e) => group
                    .with_error_code(sluice_engine::metrics::tally(e.code))
                    .with_group_state(s("Dead")),
            };
            out.push(group);
        }
        super::encode(&DescribeGroupsResponse::default().with_groups(out), KEY, v)
    })
}
