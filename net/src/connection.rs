//! One client connection. A reader reads frames, looks the API up in the registry,
//! decodes the header and starts the handler; up to [`IN_FLIGHT_MAX`] requests run at
//! once and a writer sends their answers strictly in request order (Kafka clients
//! pipeline requests and match answers by order and correlation id).
//!
//! Anything Kafka answers by closing the connection (an oversized frame, an unknown
//! API key, a request that does not decode) stops the reader with a log line; the
//! answers to the requests before it are still written, then the connection closes.
//! When the shard stops serving, the reader stops taking new requests and the
//! requests already read are answered before the connection closes.

use std::future::Future;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, FutureExt, SinkExt, StreamExt};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

use crate::body::Part;
use crate::context::BrokerContext;
use crate::error::{Error, Result};
use crate::frame::{self, RequestPrefix};
use crate::handlers;
use crate::registry;

/// Requests of one connection handled at once (librdkafka sends up to 5 produce
/// requests per connection; the Java client up to 5 by default).
pub const IN_FLIGHT_MAX: usize = 16;

/// An answer to write: correlation id, response header version, body parts; no
/// parts for a request that gets no answer (Produce with acks=0).
struct Answer {
    correlation_id: i32,
    header_version: i16,
    body: Vec<Part>,
}

type AnswerFuture = Pin<Box<dyn Future<Output = Result<Answer>>>>;

/// Serves one connection until the peer closes it, sends something that ends it, or
/// `stop` completes. `socket` is the stream's descriptor, set non-blocking, when
/// answers may go out with `writev` and `sendfile` (a plaintext TCP socket); `None`
/// writes everything through the stream.
pub async fn serve<S, F>(
    stream: S,
    socket: Option<RawFd>,
    peer: String,
    ctx: Rc<BrokerContext>,
    stop: F,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = ()>,
{
    let (mut rd, mut wr) = stream.split();
    let (tx, rx) = mpsc::channel::<AnswerFuture>(IN_FLIGHT_MAX);
    let reader = read_requests(&mut rd, &ctx, tx, stop).fuse();
    let writer = write_answers(&mut wr, socket, rx).fuse();
    futures::pin_mut!(reader, writer);
    let (read_end, write_end) = futures::select! {
        r = reader => (Some(r), writer.await),
        w = writer => (None, w),
    };
    match read_end {
        Some(Ok(())) | None => {}
        Some(Err(Error::Io(e))) => tracing::debug!(%peer, error = %e, "connection ended"),
        Some(Err(e)) => tracing::warn!(%peer, error = %e, "closing the connection"),
    }
    match write_end {
        Ok(()) => tracing::debug!(%peer, "connection closed"),
        Err(Error::Io(e)) => tracing::debug!(%peer, error = %e, "connection ended"),
        Err(e) => tracing::warn!(%peer, error = %e, "closing the connection"),
    }
}

async fn read_requests<R, F>(
    rd: &mut R,
    ctx: &Rc<BrokerContext>,
    mut tx: mpsc::Sender<AnswerFuture>,
    stop: F,
) -> Result<()>
where
    R: AsyncRead + Unpin,
    F: Future<Output = ()>,
{
    let stop = stop.fuse();
    futures::pin_mut!(stop);
    loop {
        let next = frame::read_frame(rd, ctx.settings.request_max_bytes).fuse();
        futures::pin_mut!(next);
        let frame = futures::select! {
            f = next => f?,
            () = stop => return Ok(()),
        };
        let Some(frame) = frame else {
            return Ok(());
        };
        let mut frame = frame.freeze();
        let Some(prefix) = RequestPrefix::parse(&frame) else {
            return Err(Error::Malformed {
                api_key: -1,
                api_version: -1,
                reason: format!("a {}-byte request has no header", frame.len()),
            });
        };
        let (key, version) = (prefix.api_key, prefix.api_version);
        let answer = match start(ctx, prefix, &mut frame) {
            Ok(a) => a,
            Err(e) => {
                // Not answered: the connection closes. Keys and versions not served
                // share one label, so odd requests cannot make new series.
                use sluice_engine::metrics::UNSERVED;
                let (key, version) = match registry::find(key) {
                    Some(api) if (api.min_version..=api.max_version).contains(&version) => {
                        (key, version)
                    }
                    Some(_) => (key, UNSERVED),
                    None => (UNSERVED, UNSERVED),
                };
                sluice_engine::metrics::request_started(key, version);
                sluice_engine::metrics::request_finished(
                    key,
                    version,
                    std::time::Duration::ZERO,
                    false,
                );
                return Err(e);
            }
        };
        if tx.send(answer).await.is_err() {
            // The writer stopped (the socket failed); nothing more to do.
            return Ok(());
        }
    }
}

async fn write_answers<W: AsyncWrite + Unpin>(
    wr: &mut W,
    socket: Option<RawFd>,
    rx: mpsc::Receiver<AnswerFuture>,
) -> Result<()> {
    let mut answers = rx.buffered(IN_FLIGHT_MAX);
    while let Some(answer) = answers.next().await {
        let answer = answer?;
        if answer.body.is_empty() {
            continue;
        }
        frame::write_response(
            wr,
            socket,
            answer.correlation_id,
            answer.header_version,
            &answer.body,
        )
        .await?;
    }
    Ok(())
}

/// Decodes one request frame the way a connection does before running a handler
/// (prefix, registry lookup, version check, header) and then the body with the
/// API's codec. Returns the API key and version. For fuzzing the decoding path.
pub fn decode_frame(frame: &[u8]) -> Result<(ApiKey, i16)> {
    let mut frame = Bytes::copy_from_slice(frame);
    let Some(prefix) = RequestPrefix::parse(&frame) else {
        return Err(Error::Malformed {
            api_key: -1,
            api_version: -1,
            reason: "no header".into(),
        });
    };
    let api = registry::find(prefix.api_key).ok_or(Error::UnknownApi(prefix.api_key))?;
    let v = prefix.api_version;
    if v < api.min_version || v > api.max_version {
        return Err(Error::Malformed {
            api_key: prefix.api_key,
            api_version: v,
            reason: "unsupported version".into(),
        });
    }
    RequestHeader::decode(&mut frame, api.key.request_header_version(v)).map_err(|e| {
        Error::Malformed {
            api_key: prefix.api_key,
            api_version: v,
            reason: e.to_string(),
        }
    })?;
    registry::decode_body(api.key, v, &mut frame)?;
    Ok((api.key, v))
}

/// Checks the API and version, decodes the header and starts the handler.
fn start(
    ctx: &Rc<BrokerContext>,
    prefix: RequestPrefix,
    frame: &mut Bytes,
) -> Result<AnswerFuture> {
    let Some(api) = registry::find(prefix.api_key) else {
        return Err(Error::UnknownApi(prefix.api_key));
    };
    let version = prefix.api_version;
    let correlation_id = prefix.correlation_id;
    if version < api.min_version || version > api.max_version {
        if api.key == ApiKey::ApiVersions {
            // Kafka's fallback: answer in v0 so any client can read it.
            let body = handlers::api_versions::unsupported_version_answer()?;
            let unserved = sluice_engine::metrics::UNSERVED;
            sluice_engine::metrics::request_started(prefix.api_key, unserved);
            sluice_engine::metrics::request_finished(
                prefix.api_key,
                unserved,
                std::time::Duration::ZERO,
                true,
            );
            sluice_engine::metrics::error_answered(
                prefix.api_key,
                unserved,
                kafka_protocol::ResponseError::UnsupportedVersion.code(),
            );
            return Ok(Box::pin(async move {
                Ok(Answer {
                    correlation_id,
                    header_version: 0,
                    body,
                })
            }));
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
    let key = prefix.api_key;
    sluice_engine::metrics::request_started(key, version);
    let started = std::time::Instant::now();
    let handler = sluice_engine::metrics::InRequest::new(
        key,
        version,
        (api.handler)(ctx.clone(), header, frame.clone()),
    );
    let header_version = api.key.response_header_version(version);
    Ok(Box::pin(async move {
        let body = handler.await;
        sluice_engine::metrics::request_finished(key, version, started.elapsed(), body.is_ok());
        let body = body?;
        Ok(Answer {
            correlation_id,
            header_version,
            body,
        })
    }))
}
