//! ApiVersions: the versions of every API in the registry. A client asking with a
//! version newer than ours gets Kafka's fallback: a v0 answer with
//! `UNSUPPORTED_VERSION` and the list, so it can retry with one we speak.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader};

use crate::context::BrokerContext;
use crate::error::Result;
use crate::registry::{HandlerFuture, APIS};

/// Kafka's `UNSUPPORTED_VERSION` error code.
const UNSUPPORTED_VERSION: i16 = 35;

// The registry's handler signature takes the header by value; this one needs a field.
#[allow(clippy::needless_pass_by_value)]
pub fn handle(_ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let version = header.request_api_version;
        let _request: ApiVersionsRequest =
            super::decode(&mut body, ApiKey::ApiVersions as i16, version)?;
        super::encode(&response(0), ApiKey::ApiVersions as i16, version)
    })
}

/// The v0 answer to an ApiVersions request whose version we do not speak.
pub fn unsupported_version_answer() -> Result<Vec<Bytes>> {
    super::encode(
        &response(UNSUPPORTED_VERSION),
        ApiKey::ApiVersions as i16,
        0,
    )
}

fn response(error_code: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(
            APIS.iter()
                .map(|a| {
                    ApiVersion::default()
                        .with_api_key(a.key as i16)
                        .with_min_version(a.min_version)
                        .with_max_version(a.max_version)
                })
                .collect(),
        )
}
