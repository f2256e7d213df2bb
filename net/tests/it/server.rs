//! A real broker on a temporary directory and a loopback socket, and a blocking
//! test client speaking raw Kafka frames.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sluice_net::BrokerSettings;

/// A real broker (engine, topic registry, listeners) on a temporary data directory
/// and a loopback port; stopped and removed when dropped.
pub struct Node {
    pub broker: Option<sluice_net::Broker>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(b) = self.broker.take() {
            b.shutdown().expect("clean shutdown");
        }
    }
}

impl Node {
    /// Every shard's counters, added up where they add.
    pub fn metrics(&self) -> Vec<sluice_engine::metrics::ShardMetrics> {
        let router = self.broker.as_ref().expect("running").router();
        (0..router.shard_count())
            .map(|s| {
                futures::executor::block_on(router.call(s, move |_| async move {
                    sluice_engine::metrics::snapshot(s)
                }))
                .expect("shard answers")
            })
            .collect()
    }
}

/// Starts a node accepting on 127.0.0.1 (any port).
pub fn start(request_max_bytes: usize) -> Node {
    start_with(|s| s.request_max_bytes = request_max_bytes)
}

/// Starts a node with changed broker settings.
pub fn start_with(change: impl FnOnce(&mut BrokerSettings)) -> Node {
    start_with_engine(|_| {}, change)
}

/// Starts a node with changed engine and broker settings.
pub fn start_with_engine(
    change_engine: impl FnOnce(&mut sluice_engine::EngineConfig),
    change: impl FnOnce(&mut BrokerSettings),
) -> Node {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info")
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut engine = sluice_engine::EngineConfig::new(dir.path());
    engine.shards = Some(2);
    change_engine(&mut engine);
    let mut settings = BrokerSettings {
        advertised_port: 0,
        ..BrokerSettings::default()
    };
    change(&mut settings);
    let broker = sluice_net::Broker::start(engine, "127.0.0.1:0".parse().expect("addr"), &settings)
        .expect("broker starts");
    let addr = broker.local_addr();
    Node {
        broker: Some(broker),
        addr,
        dir,
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// A request frame: length, header in the version the API wants, body.
pub fn request<T: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &T) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("sluice-test")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    let mut out = (buf.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&buf);
    out
}

/// Reads one response frame; `None` if the server closed the connection.
pub fn read_frame(s: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    if s.read_exact(&mut len).is_err() {
        return None;
    }
    let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).expect("frame body");
    Some(Bytes::from(buf))
}

/// Reads a response and decodes its header (in `header_version`) and body.
pub fn response<T: Decodable>(s: &mut TcpStream, header_version: i16, version: i16) -> (i32, T) {
    let mut frame = read_frame(s).expect("a response");
    let header = ResponseHeader::decode(&mut frame, header_version).expect("response header");
    let body = T::decode(&mut frame, version).expect("response body");
    assert!(
        frame.is_empty(),
        "{} bytes left after the body",
        frame.len()
    );
    (header.correlation_id, body)
}

pub fn send(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).expect("write");
}
