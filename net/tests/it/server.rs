//! A protocol server on a real glommio executor and loopback socket, and a blocking
//! test client speaking raw Kafka frames.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sluice_net::context::BrokerContext;

/// Starts a server thread accepting on 127.0.0.1 (any port); returns its address.
pub fn start(request_max_bytes: usize) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let ex = glommio::LocalExecutorBuilder::default()
            .make()
            .expect("executor");
        ex.run(async move {
            let listener = glommio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            let ctx = Rc::new(BrokerContext {
                node_id: 1,
                advertised_host: "127.0.0.1".into(),
                advertised_port: 0,
                request_max_bytes,
            });
            loop {
                let Ok(stream) = listener.accept().await else {
                    continue;
                };
                let peer = stream
                    .peer_addr()
                    .map_or_else(|_| "?".into(), |a| a.to_string());
                glommio::spawn_local(sluice_net::connection::serve(stream, peer, ctx.clone()))
                    .detach();
            }
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("server up")
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
