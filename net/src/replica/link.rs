//! One Kafka connection from a shard to another broker, on glommio: what a
//! follower fetches its leader's partitions over. Requests go one at a time, each
//! with a deadline; any error closes the connection (the caller connects again).

use std::time::Duration;

use bytes::Bytes;
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt};
use glommio::net::TcpStream;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::client::{self, ClientError, ClientResult};

/// A connection to one broker.
pub(crate) struct Link {
    stream: TcpStream,
    next_correlation_id: i32,
    id: StrBytes,
}

impl Link {
    /// Connects to `addr` (`host:port`) within `timeout`. A refused connection
    /// keeps its kind ([`std::io::ErrorKind::ConnectionRefused`]): nothing listens
    /// there, so the broker is not running.
    pub async fn connect(addr: &str, timeout: Duration) -> ClientResult<Link> {
        let connect_err = |source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        };
        let target = client::resolve(addr)?;
        let connecting = TcpStream::connect(target).fuse();
        let timer = glommio::timer::sleep(timeout).fuse();
        futures::pin_mut!(connecting, timer);
        let stream = futures::select! {
            r = connecting => r.map_err(|e| connect_err(io_error(e)))?,
            () = timer => return Err(connect_err(std::io::ErrorKind::TimedOut.into())),
        };
        stream
            .set_nodelay(true)
            .map_err(|e| connect_err(io_error(e)))?;
        Ok(Link {
            stream,
            next_correlation_id: 1,
            id: StrBytes::from_static_str("sluice-replica-fetcher"),
        })
    }

    /// Sends `request` in `version` and reads its answer, all within `timeout`.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
        timeout: Duration,
    ) -> ClientResult<Resp> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let buf = client::encode_request(api, version, correlation_id, &self.id, request)?;
        let exchange = async {
            self.stream.write_all(&buf).await?;
            let mut prefix = [0u8; 4];
            self.stream.read_exact(&mut prefix).await?;
            let len = client::response_len(api, prefix)?;
            let mut frame = vec![0u8; len];
            self.stream.read_exact(&mut frame).await?;
            Ok::<Bytes, ClientError>(Bytes::from(frame))
        }
        .fuse();
        let timer = glommio::timer::sleep(timeout).fuse();
        futures::pin_mut!(exchange, timer);
        let frame = futures::select! {
            r = exchange => r?,
            () = timer => return Err(ClientError::Io(std::io::ErrorKind::TimedOut.into())),
        };
        client::decode_response(api, version, correlation_id, frame)
    }
}

/// A glommio error as an I/O error of the same kind.
fn io_error(e: glommio::GlommioError<()>) -> std::io::Error {
    match e {
        glommio::GlommioError::IoError(e)
        | glommio::GlommioError::EnhancedIoError { source: e, .. } => e,
        other => std::io::Error::other(other.to_string()),
    }
}
