//! A small blocking Kafka client for the command line: one connection to one broker,
//! request versions negotiated with ApiVersions, one request at a time. It speaks to
//! any Kafka-compatible broker, not only Sluice.
//!
//! The follower fetcher of replication (`replica::link`) speaks the same framing
//! asynchronously on glommio.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// What can go wrong talking to a broker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connection to the broker: {0}")]
    Io(#[from] std::io::Error),
    #[error("the broker does not support {0:?} in any version this client speaks")]
    Unsupported(ApiKey),
    #[error("bad response to {api:?}: {reason}")]
    Protocol { api: ApiKey, reason: String },
    #[error("{0}")]
    Kafka(String),
}

pub type ClientResult<T> = Result<T, ClientError>;

/// Largest response this client accepts.
const RESPONSE_MAX_BYTES: usize = 256 << 20;

/// One connection to a broker.
pub struct Client {
    stream: TcpStream,
    next_correlation_id: i32,
    /// Versions the broker supports, by API key.
    versions: HashMap<i16, (i16, i16)>,
    id: StrBytes,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({:?})", self.stream.peer_addr().ok())
    }
}

impl Client {
    /// Connects to `addr` (`host:port`) and asks which versions the broker speaks.
    pub fn connect(addr: &str, timeout: Duration) -> ClientResult<Client> {
        let target = resolve(addr)?;
        let stream = TcpStream::connect_timeout(&target, timeout).map_err(|source| {
            ClientError::Connect {
                addr: addr.to_string(),
                source,
            }
        })?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout.max(Duration::from_secs(1)) * 4))?;
        let mut client = Client {
            stream,
            next_correlation_id: 1,
            versions: HashMap::new(),
            id: StrBytes::from_static_str("sluice-cli"),
        };
        let r: ApiVersionsResponse =
            client.call_version(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default())?;
        if r.error_code != 0 {
            return Err(ClientError::Kafka(format!(
                "ApiVersions answered error code {}",
                r.error_code
            )));
        }
        client.versions = r
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(client)
    }

    /// The highest version both sides speak, no higher than `ours`.
    pub fn version(&self, api: ApiKey, ours: i16) -> ClientResult<i16> {
        let (min, max) = self
            .versions
            .get(&(api as i16))
            .copied()
            .ok_or(ClientError::Unsupported(api))?;
        let codec = api.valid_versions();
        let v = ours.min(max).min(codec.max);
        if v < min.max(codec.min) {
            return Err(ClientError::Unsupported(api));
        }
        Ok(v)
    }

    /// Sends `request` in the best common version (at most `ours`) and reads the answer.
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        ours: i16,
        request: &Req,
    ) -> ClientResult<(i16, Resp)> {
        let v = self.version(api, ours)?;
        Ok((v, self.call_version(api, v, request)?))
    }

    /// Sends a request with no answer (Produce with acks=0).
    pub fn send_only<Req: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> ClientResult<()> {
        self.send(api, version, request).map(|_| ())
    }

    fn send<Req: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> ClientResult<i32> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let buf = encode_request(api, version, correlation_id, &self.id, request)?;
        self.stream.write_all(&buf)?;
        Ok(correlation_id)
    }

    /// Sends `request` in exactly `version` and reads the answer.
    pub fn call_version<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> ClientResult<Resp> {
        let correlation_id = self.send(api, version, request)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = response_len(api, len)?;
        let mut frame = vec![0u8; len];
        self.stream.read_exact(&mut frame)?;
        decode_response(api, version, correlation_id, Bytes::from(frame))
    }
}

/// The first address `addr` (`host:port`) resolves to.
pub(crate) fn resolve(addr: &str) -> ClientResult<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    let connect_err = |source| ClientError::Connect {
        addr: addr.to_string(),
        source,
    };
    addr.to_socket_addrs()
        .map_err(connect_err)?
        .next()
        .ok_or_else(|| connect_err(std::io::ErrorKind::NotFound.into()))
}

/// One request frame: length, header, body.
pub(crate) fn encode_request<Req: Encodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
    request: &Req,
) -> ClientResult<BytesMut> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id.clone()));
    let encode_err = |e: &dyn std::fmt::Display| ClientError::Protocol {
        api,
        reason: format!("cannot encode the request: {e}"),
    };
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0; 4]);
    header
        .encode(&mut buf, api.request_header_version(version))
        .map_err(|e| encode_err(&e))?;
    request
        .encode(&mut buf, version)
        .map_err(|e| encode_err(&e))?;
    let len = i32::try_from(buf.len() - 4).map_err(|_| encode_err(&"request over 2 GiB"))?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// A response's length prefix, checked against the largest answer taken.
pub(crate) fn response_len(api: ApiKey, prefix: [u8; 4]) -> ClientResult<usize> {
    usize::try_from(i32::from_be_bytes(prefix))
        .ok()
        .filter(|&l| l <= RESPONSE_MAX_BYTES)
        .ok_or_else(|| ClientError::Protocol {
            api,
            reason: "response length out of range".into(),
        })
}

/// A response frame (after its length): the header, checked to answer
/// `correlation_id`, and the body.
pub(crate) fn decode_response<Resp: Decodable>(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    mut frame: Bytes,
) -> ClientResult<Resp> {
    let bad = |reason: String| ClientError::Protocol { api, reason };
    let header = ResponseHeader::decode(&mut frame, api.response_header_version(version))
        .map_err(|e| bad(format!("header: {e}")))?;
    if header.correlation_id != correlation_id {
        return Err(bad(format!(
            "correlation id {} answers request {correlation_id}",
            header.correlation_id
        )));
    }
    Resp::decode(&mut frame, version).map_err(|e| bad(format!("body: {e}")))
}

/// Kafka's default partitioner for keyed records: murmur2 of the key, made
/// non-negative, modulo the partition count (what the Java client and librdkafka's
/// `murmur2_random` use, so keys land where other clients put them).
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    let h = murmur2(key) & 0x7fff_ffff;
    let n = u32::try_from(partitions.max(1)).unwrap_or(1);
    i32::try_from(h % n).unwrap_or(0)
}

/// Kafka's murmur2 (seed 0x9747b28c).
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    let mut h: u32 = 0x9747_b28c ^ len;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas_partitioner() {
        // Values from Kafka's UtilsTest (murmur2 of these strings).
        assert_eq!(murmur2(b"21").cast_signed(), -973_932_308);
        assert_eq!(murmur2(b"foobar").cast_signed(), -790_332_482);
        assert_eq!(
            murmur2(b"a-little-bit-long-string").cast_signed(),
            -985_981_536
        );
        assert_eq!(
            murmur2(b"a-little-bit-longer-string").cast_signed(),
            -1_486_304_829
        );
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8").cast_signed(),
            -58_897_971
        );
        assert_eq!(murmur2(b"abc").cast_signed(), 479_470_107);
        assert!((0..7).contains(&partition_for_key(b"foobar", 7)));
    }
}
