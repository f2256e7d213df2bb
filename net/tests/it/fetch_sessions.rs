//! Fetch sessions (KIP-227) over a real socket: open with a full fetch, incremental
//! fetches answer only what changed, epochs are checked, sessions close.

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::server::*;

const V: i16 = 12;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

fn produce(s: &mut std::net::TcpStream, topic: &str, partition: i32, n: usize) {
    let values: Vec<&[u8]> = vec![b"x".as_slice(); n];
    let batch =
        sluice_engine::batch::build_values_batch(&values, 1000, sluice_engine::batch::NO_PRODUCER);
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(Bytes::from(batch)))])]);
    send(s, &request(ApiKey::Produce, 9, 99, &req));
    let (_, r): (i32, ProduceResponse) = response(s, 1, 9);
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
}

fn fetch(
    s: &mut std::net::TcpStream,
    session: (i32, i32),
    parts: &[(&str, i32, i64)],
    forget: &[(&str, i32)],
) -> FetchResponse {
    fetch_max(s, session, parts, forget, 1 << 20)
}

fn fetch_max(
    s: &mut std::net::TcpStream,
    session: (i32, i32),
    parts: &[(&str, i32, i64)],
    forget: &[(&str, i32)],
    max_bytes: i32,
) -> FetchResponse {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (t, p, o) in parts {
        let part = FetchPartition::default()
            .with_partition(*p)
            .with_fetch_offset(*o)
            .with_partition_max_bytes(1 << 20);
        match topics.iter_mut().find(|x| x.topic == name(t)) {
            Some(x) => x.partitions.push(part),
            None => topics.push(
                FetchTopic::default()
                    .with_topic(name(t))
                    .with_partitions(vec![part]),
            ),
        }
    }
    let req = FetchRequest::default()
        .with_max_wait_ms(20)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_session_id(session.0)
        .with_session_epoch(session.1)
        .with_topics(topics)
        .with_forgotten_topics_data(
            forget
                .iter()
                .map(|(t, p)| {
                    ForgottenTopic::default()
                        .with_topic(name(t))
                        .with_partitions(vec![*p])
                })
                .collect(),
        );
    send(s, &request(ApiKey::Fetch, V, 7, &req));
    response(s, 1, V).1
}

/// `(topic, partition, records bytes)` of every partition in an answer.
fn answered(r: &FetchResponse) -> Vec<(String, i32, usize)> {
    r.responses
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.topic.as_str().to_string(),
                    p.partition_index,
                    p.records.as_ref().map_or(0, Bytes::len),
                )
            })
        })
        .collect()
}

#[test]
fn incremental_fetches_answer_only_what_changed() {
    let node = start_with(|s| s.default_partitions = 2);
    let mut s = connect(node.addr);
    produce(&mut s, "sess", 0, 3);
    produce(&mut s, "sess", 1, 3);

    // A full fetch with epoch 0 opens a session and answers every partition.
    let r = fetch(&mut s, (0, 0), &[("sess", 0, 0), ("sess", 1, 0)], &[]);
    assert_eq!(r.error_code, 0);
    let id = r.session_id;
    assert!(id > 0, "a session was opened");
    let got = answered(&r);
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|g| g.2 > 0));

    // Incremental, offsets moved to the end: nothing new, nothing answered.
    let r = fetch(&mut s, (id, 1), &[("sess", 0, 3), ("sess", 1, 3)], &[]);
    assert_eq!((r.error_code, r.session_id), (0, id));
    assert_eq!(answered(&r), vec![], "no partition changed");

    // New records in partition 1 only: only it is answered, with its records,
    // although the request names no partition.
    produce(&mut s, "sess", 1, 2);
    let r = fetch(&mut s, (id, 2), &[], &[]);
    let got = answered(&r);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].1, got[0].2 > 0), (1, true));

    // Forget partition 0; a wrong epoch and an unknown session are refused.
    let r = fetch(&mut s, (id, 3), &[("sess", 1, 5)], &[("sess", 0)]);
    assert_eq!(r.error_code, 0);
    let r = fetch(&mut s, (id, 9), &[], &[]);
    assert_eq!(r.error_code, 71, "INVALID_FETCH_SESSION_EPOCH");
    let r = fetch(&mut s, (id + 1000, 1), &[], &[]);
    assert_eq!(r.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");
    // Data on the forgotten partition is not answered any more.
    produce(&mut s, "sess", 0, 1);
    let r = fetch(&mut s, (id, 4), &[], &[]);
    assert!(answered(&r).iter().all(|g| g.1 != 0), "{:?}", answered(&r));

    // Closing: epoch -1 answers as a sessionless full fetch and ends the session.
    let r = fetch(&mut s, (id, -1), &[("sess", 0, 0)], &[]);
    assert_eq!((r.error_code, r.session_id), (0, 0));
    assert_eq!(answered(&r).len(), 1);
    let r = fetch(&mut s, (id, 5), &[], &[]);
    assert_eq!(r.error_code, 70);
}

/// When `max_bytes` leaves room for one partition's data, the partitions that
/// returned records move to the end of the session, so the next fetches serve the
/// others (as Kafka's sessions do) instead of the first partition every time.
#[test]
fn a_busy_partition_does_not_take_every_answer() {
    let node = start_with(|s| s.default_partitions = 3);
    let mut s = connect(node.addr);
    for p in 0..3 {
        produce(&mut s, "rot", p, 50);
    }
    let parts = [("rot", 0, 0), ("rot", 1, 0), ("rot", 2, 0)];
    // max_bytes 1: only the first partition with data gets its first batch.
    let r = fetch_max(&mut s, (0, 0), &parts, &[], 1);
    let id = r.session_id;
    let with_data = |r: &FetchResponse| -> Vec<i32> {
        answered(r)
            .into_iter()
            .filter(|g| g.2 > 0)
            .map(|g| g.1)
            .collect()
    };
    let mut served = vec![with_data(&r)];
    // The client has not moved its offsets; only the order changes.
    for epoch in 1..3 {
        let r = fetch_max(&mut s, (id, epoch), &[], &[], 1);
        served.push(with_data(&r));
    }
    assert_eq!(served, [vec![0], vec![1], vec![2]], "{served:?}");
}
