//! InitProducerId: a fresh producer id with epoch 0 for idempotent producers
//! (Java clients enable idempotence by default since 3.0). Transactional ids are not
//! supported yet and are refused.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId, RequestHeader,
};

use crate::context::BrokerContext;
use crate::kafka_error as code;
use crate::registry::HandlerFuture;

const KEY: i16 = ApiKey::InitProducerId as i16;

/// Kafka's `TRANSACTIONAL_ID_AUTHORIZATION_FAILED` is wrong here; a broker without
/// transactions answers `COORDINATOR_NOT_AVAILABLE`.
const COORDINATOR_NOT_AVAILABLE: i16 = 15;

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: InitProducerIdRequest = super::decode(&mut body, KEY, v)?;
        let response = if req.transactional_id.is_some() {
            tracing::info!("InitProducerId with a transactional id refused: transactions are not supported yet");
            InitProducerIdResponse::default()
                .with_error_code(sluice_engine::metrics::tally(COORDINATOR_NOT_AVAILABLE))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        } else {
            match ctx.topics.new_producer_id().await {
                Ok(id) => InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(id))
                    .with_producer_epoch(0),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot hand out a producer id");
                    InitProducerIdResponse::default()
                        .with_error_code(sluice_engine::metrics::tally(
                            if e.code == code::KAFKA_STORAGE_ERROR {
                                code::KAFKA_STORAGE_ERROR
                            } else {
                                code::UNKNOWN_SERVER_ERROR
                            },
                        ))
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1)
                }
            }
        };
        super::encode(&response, KEY, v)
    })
}
