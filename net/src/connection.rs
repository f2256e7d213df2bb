//! One client connection: read a frame, find the API in the registry, decode the
//! header, run the handler, write the answer; answers go out in request order.
//! Anything Kafka answers by closing the connection (an oversized frame, an unknown
//! API key, a request that does not decode) closes it here too, with a log line.

use std::rc::Rc;

use bytes::Bytes;
use futures::{AsyncRead, AsyncWrite};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

use crate::context::BrokerContext;
use crate::error::{Error, Result};
use crate::frame::{self, RequestPrefix};
use crate::handlers;
use crate::registry;

/// Serves one connection until the peer closes it or sends something that ends it.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: String,
    ctx: Rc<BrokerContext>,
) {
    match serve_inner(&mut stream, &ctx).await {
        Ok(()) => tracing::debug!(%peer, "connection closed by the client"),
        Err(Error::Io(e)) => tracing::debug!(%peer, error = %e, "connection ended"),
        Err(e) => tracing::warn!(%peer, error = %e, "closing the connection"),
    }
}

async fn serve_inner<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    ctx: &Rc<BrokerContext>,
) -> Result<()> {
    while let Some(frame) = frame::read_frame(stream, ctx.request_max_bytes).await? {
        let mut frame = frame.freeze();
        let Some(prefix) = RequestPrefix::parse(&frame) else {
            return Err(Error::Malformed {
                api_key: -1,
                api_version: -1,
                reason: format!("a {}-byte request has no header", frame.len()),
            });
        };
        let (header_version, body) = dispatch(ctx, prefix, &mut frame).await?;
        frame::write_response(stream, prefix.correlation_id, header_version, &body).await?;
    }
    Ok(())
}

/// Runs one request; returns the response header version and the encoded body.
async fn dispatch(
    ctx: &Rc<BrokerContext>,
    prefix: RequestPrefix,
    frame: &mut Bytes,
) -> Result<(i16, Vec<Bytes>)> {
    let Some(api) = registry::find(prefix.api_key) else {
        return Err(Error::UnknownApi(prefix.api_key));
    };
    let version = prefix.api_version;
    if version < api.min_version || version > api.max_version {
        if api.key == ApiKey::ApiVersions {
            // Kafka's fallback: answer in v0 so any client can read it.
            return Ok((0, handlers::api_versions::unsupported_version_answer()?));
        }
        return Err(Error::Malformed {
            api_key: prefix.api_key,
            api_version: version,
            reason: format!(
                "version {version} is not supported (v{}-v{})",
                api.min_version, api.max_version
            ),
        });
    }
    let header =
        RequestHeader::decode(frame, api.key.request_header_version(version)).map_err(|e| {
            Error::Malformed {
                api_key: prefix.api_key,
                api_version: version,
                reason: format!("request header: {e}"),
            }
        })?;
    let body = (api.handler)(ctx.clone(), header, frame.clone()).await?;
    Ok((api.key.response_header_version(version), body))
}
