//! CreatePartitions: grow a topic to a larger partition count (`validate_only`
//! supported). New partitions are placed on the least-loaded shards.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;

use crate::context::BrokerContext;
use crate::registry::HandlerFuture;

const KEY: i16 = ApiKey::CreatePartitions as i16;

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: CreatePartitionsRequest = super::decode(&mut body, KEY, v)?;
        let mut results = Vec::with_capacity(req.topics.len());
        for t in req.topics {
            let r = ctx
                .topics
                .add_partitions(&t.name, t.count, req.validate_only)
                .await;
            let mut out = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            if let Err(e) = r {
                tracing::info!(topic = %t.name.as_str(), error = %e, "partitions not added");
                out = out
                    .with_error_code(sluice_engine::metrics::tally(e.code))
                    .with_error_message(Some(StrBytes::from_string(e.message)));
            }
            results.push(out);
        }
        super::encode(
            &CreatePartitionsResponse::default().with_results(results),
            KEY,
            v,
        )
    })
}
