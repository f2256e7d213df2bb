//! Bad input to a real `sluice serve`: each bad request is answered with Kafka's
//! error code or its connection is closed as Kafka does, the log says why, and a
//! client connected the whole time keeps being served.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::node::Node;

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

fn frame<T: Encodable>(key: ApiKey, version: i16, correlation_id: i32, body: &T) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("bad-input-test")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    let mut out = (buf.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&buf);
    out
}

/// The next response frame, or `None` when the broker closed the connection.
fn read_frame(s: &mut TcpStream) -> Option<Bytes> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).ok()?;
    Some(Bytes::from(buf))
}

fn answer<T: Decodable>(s: &mut TcpStream, key: ApiKey, version: i16) -> (i32, T) {
    let mut f = read_frame(s).expect("an answer");
    let h = ResponseHeader::decode(&mut f, key.response_header_version(version)).expect("header");
    (h.correlation_id, T::decode(&mut f, version).expect("body"))
}

/// The long-lived client: a Metadata request must be answered.
fn still_served(s: &mut TcpStream, correlation_id: i32) {
    s.write_all(&frame(
        ApiKey::Metadata,
        9,
        correlation_id,
        &MetadataRequest::default().with_topics(None),
    ))
    .expect("write");
    let (cid, r): (i32, MetadataResponse) = answer(s, ApiKey::Metadata, 9);
    assert_eq!(cid, correlation_id);
    assert_eq!(r.brokers.len(), 1);
}

fn produce_body(topic: &str, records: Vec<u8>) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(records)))])])
}

fn closed_with(node: &Node, bytes: &[u8], half_close: bool, log_says: &str) {
    let mut s = connect(&node.addr);
    s.write_all(bytes).expect("write");
    if half_close {
        s.shutdown(Shutdown::Write).expect("shutdown");
    }
    assert!(
        read_frame(&mut s).is_none(),
        "the broker should close: {log_says}"
    );
    // The log line is written as the connection closes.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !node.log().contains(log_says) {
        assert!(
            std::time::Instant::now() < deadline,
            "no log line containing {log_says:?}:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_frames_close_only_their_own_connection_with_a_log_line() {
    let node = Node::start_with_config("[kafka]\nrequest_max_bytes = 65536\n");
    let mut good = connect(&node.addr);
    still_served(&mut good, 1);

    let mut truncated = 100i32.to_be_bytes().to_vec();
    truncated.extend_from_slice(&[0, 3, 0, 9, 0, 0, 0, 1, 0, 0]);
    closed_with(&node, &truncated, true, "after 10 of a 100-byte frame");
    still_served(&mut good, 2);

    closed_with(
        &node,
        &(65537i32).to_be_bytes(),
        false,
        "frame of 65537 bytes refused",
    );
    still_served(&mut good, 3);

    let mut unknown = 8i32.to_be_bytes().to_vec();
    unknown.extend_from_slice(&[0x27, 0x0f, 0, 0, 0, 0, 0, 1]);
    closed_with(&node, &unknown, false, "unsupported api key 9999");
    still_served(&mut good, 4);

    let metadata_v99 = frame(ApiKey::Metadata, 9, 5, &MetadataRequest::default());
    let mut v99 = metadata_v99.clone();
    v99[6..8].copy_from_slice(&99i16.to_be_bytes());
    closed_with(&node, &v99, false, "version 99 is not supported");
    still_served(&mut good, 6);

    // Found by the fuzz target: IncrementalAlterConfigs v0 announcing 2^31 - 1
    // resources in a 4-byte body. The codec sizes its Vec from that count; the broker
    // must refuse the request, not abort on a 200 GiB allocation.
    let mut huge = 14i32.to_be_bytes().to_vec();
    huge.extend_from_slice(&[0, 44, 0, 0, 0, 0, 0, 9, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff]);
    closed_with(&node, &huge, false, "api key 44, version 0");
    still_served(&mut good, 8);

    let garbage: Vec<u8> = (0..64u8)
        .map(|i| i.wrapping_mul(151).wrapping_add(7))
        .collect();
    closed_with(&node, &garbage, false, "refused");
    still_served(&mut good, 7);
}

#[test]
#[allow(clippy::many_single_char_names)]
fn a_wrong_crc_is_corrupt_message_and_a_missing_topic_is_unknown() {
    let node = Node::start_with_config("[kafka]\nauto_create_topics = false\n");
    let mut s = connect(&node.addr);

    // Auto-creation is off: producing to a topic nobody created is refused.
    let batch = sluice_engine::batch::build_values_batch(
        &[b"one", b"two"],
        1_700_000_000_000,
        sluice_engine::batch::NO_PRODUCER,
    );
    s.write_all(&frame(
        ApiKey::Produce,
        9,
        1,
        &produce_body("nobody-made-me", batch.clone()),
    ))
    .expect("write");
    let (_, r): (i32, ProduceResponse) = answer(&mut s, ApiKey::Produce, 9);
    assert_eq!(r.responses[0].partition_responses[0].error_code, 3);

    // A batch whose bytes do not match its CRC.
    let mut wire = s.try_clone().expect("clone");
    let admin_topic = "crc-check";
    let create = kafka_protocol::messages::CreateTopicsRequest::default().with_topics(vec![
        kafka_protocol::messages::create_topics_request::CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(admin_topic)))
            .with_num_partitions(1)
            .with_replication_factor(1),
    ]);
    wire.write_all(&frame(ApiKey::CreateTopics, 5, 2, &create))
        .expect("write");
    let (_, c): (i32, kafka_protocol::messages::CreateTopicsResponse) =
        answer(&mut s, ApiKey::CreateTopics, 5);
    assert_eq!(c.topics[0].error_code, 0);
    let mut bad = batch.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    s.write_all(&frame(
        ApiKey::Produce,
        9,
        3,
        &produce_body(admin_topic, bad),
    ))
    .expect("write");
    let (cid, r): (i32, ProduceResponse) = answer(&mut s, ApiKey::Produce, 9);
    assert_eq!(cid, 3);
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 2,
        "CORRUPT_MESSAGE"
    );
    // The good batch still goes in at offset 0: nothing of the bad one was stored.
    s.write_all(&frame(
        ApiKey::Produce,
        9,
        4,
        &produce_body(admin_topic, batch),
    ))
    .expect("write");
    let (_, r): (i32, ProduceResponse) = answer(&mut s, ApiKey::Produce, 9);
    let p = &r.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0));

    // Metadata for a missing topic with auto-creation off.
    s.write_all(&frame(
        ApiKey::Metadata,
        9,
        5,
        &MetadataRequest::default()
            .with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("still-nobody")))),
            ]))
            .with_allow_auto_topic_creation(true),
    ))
    .expect("write");
    let (_, m): (i32, MetadataResponse) = answer(&mut s, ApiKey::Metadata, 9);
    assert_eq!(m.topics[0].error_code, 3);
}
