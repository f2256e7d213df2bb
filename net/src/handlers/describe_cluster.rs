//! DescribeCluster: the cluster id and this node as the only broker and controller,
//! and the caller's authorized operations on the cluster when it asks.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeClusterRequest, DescribeClusterResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;

use crate::acl;
use crate::context::BrokerContext;
use crate::registry::HandlerFuture;

const KEY: i16 = ApiKey::DescribeCluster as i16;

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: DescribeClusterRequest = super::decode(&mut body, KEY, v)?;
        let image = ctx.topics.image();
        let response = DescribeClusterResponse::default()
            .with_endpoint_type(if v >= 1 { req.endpoint_type } else { 1 })
            .with_cluster_id(StrBytes::from_string(image.cluster_id.clone()))
            .with_controller_id(BrokerId(ctx.node_id()))
            .with_cluster_authorized_operations(acl::authorized_operations(
                acl::ResourceType::Cluster,
                req.include_cluster_authorized_operations,
            ))
            .with_brokers(
                image
                    .live_brokers()
                    .map(|b| {
                        DescribeClusterBroker::default()
                            .with_broker_id(BrokerId(b.id))
                            .with_host(StrBytes::from_string(b.host.clone()))
                            .with_port(i32::from(b.port))
                            .with_rack(b.rack.clone().map(StrBytes::from_string))
                    })
                    .collect(),
            );
        super::encode(&response, KEY, v)
    })
}
