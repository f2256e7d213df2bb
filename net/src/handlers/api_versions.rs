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
        let request: ApiVersionsRequest =
            super::decode(&mut body, ApiKey::ApiVersions as i16, version)?;
        // v3+ carries the client's software name and version; Kafka refuses values
        // outside its pattern with INVALID_REQUEST (and still lists the APIs).
        if version >= 3
            && !(valid_software_field(&request.client_software_name)
                && valid_software_field(&request.client_software_version))
        {
            tracing::info!(
                name = %request.client_software_name.as_str(),
                version = %request.client_software_version.as_str(),
                "ApiVersions with an invalid client software name or version"
            );
            return super::encode(
                &response(crate::kafka_error::INVALID_REQUEST),
                ApiKey::ApiVersions as i16,
                version,
            );
        }
        super::encode(&response(0), ApiKey::ApiVersions as i16, version)
    })
}

/// Kafka's pattern for the client software fields: `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`.
pub fn valid_software_field(s: &str) -> bool {
    let b = s.as_bytes();
    let (Some(first), Some(last)) = (b.first(), b.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.')
}

/// The v0 answer to an ApiVersions request whose version we do not speak.
pub fn unsupported_version_answer() -> Result<Vec<crate::body::Part>> {
    super::encode(
        &response(UNSUPPORTED_VERSION),
        ApiKey::ApiVersions as i16,
        0,
    )
}

fn response(error_code: i16) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(sluice_engine::metrics::tally(error_code))
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
