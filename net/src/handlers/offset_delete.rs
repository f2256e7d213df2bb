//! OffsetDelete (v0): deletes a group's committed offsets of topics its members do
//! not subscribe to (GROUP_SUBSCRIBED_TO_TOPIC for those they do).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{ApiKey, OffsetDeleteRequest, OffsetDeleteResponse, RequestHeader};

use crate::context::BrokerContext;
use crate::group::coordinator::{on_coordinator, OffsetKey};
use crate::kafka_error as code;
use crate::registry::HandlerFuture;

const KEY: i16 = ApiKey::OffsetDelete as i16;

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: OffsetDeleteRequest = super::decode(&mut body, KEY, v)?;
        let name = req.group_id.0.to_string();
        let keys: Vec<OffsetKey> = req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.0.to_string(), p.partition_index))
            })
            .collect();
        let (error, each) = if name.is_empty() {
            (code::INVALID_GROUP_ID, Vec::new())
        } else {
            let n = name.clone();
            let k = keys.clone();
            on_coordinator(&ctx, &name, move |c| async move {
                Ok(c.delete_offsets(&n, &k).await)
            })
            .await
            .unwrap_or_else(|e| (e.code, Vec::new()))
        };
        let mut i = 0;
        let topics = req
            .topics
            .iter()
            .map(|t| {
                OffsetDeleteResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                let e = each.get(i).copied().unwrap_or(code::NONE);
                                i += 1;
                                OffsetDeleteResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(sluice_engine::metrics::tally(e))
                            })
                            .collect(),
                    )
            })
            .collect();
        let response = OffsetDeleteResponse::default()
            .with_error_code(sluice_engine::metrics::tally(error))
            .with_topics(if error == code::NONE {
                topics
            } else {
                Vec::new()
            });
        super::encode(&response, KEY, v)
    })
}
