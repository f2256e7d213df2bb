//! Fetches of data no longer in the batch cache are read from the segment file
//! with asynchronous O_DIRECT reads ahead of the consumer and go out with `writev`,
//! except ranges the page cache holds, which go out with `sendfile`; fetches of
//! cached data with `writev` from the cached bytes. Each must give the consumer
//! exactly what was produced, in every Fetch version shape (before and after
//! flexible versions), also to a consumer that reads slowly (the socket fills and
//! the writer waits).

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use sluice_net::body::{FILE_COPIED_BYTES, SENDFILE_BYTES};

use crate::server::*;

/// 16 MiB: more than loopback's largest send and receive buffers together (4 MiB
/// and 6 MiB by default), so a consumer that does not read fills the socket.
const BATCHES: usize = 256;
const PER_BATCH: usize = 64;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

fn value(batch: usize, i: usize) -> Vec<u8> {
    let mut v = format!("batch {batch} record {i} ").into_bytes();
    v.resize(1024, b'a' + (i % 26) as u8);
    v
}

fn produce_all(s: &mut std::net::TcpStream) {
    for b in 0..BATCHES {
        let values: Vec<Vec<u8>> = (0..PER_BATCH).map(|i| value(b, i)).collect();
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let batch = sluice_engine::batch::build_values_batch(
            &refs,
            1000,
            sluice_engine::batch::NO_PRODUCER,
        );
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(name("zc"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from(batch)))])]);
        send(s, &request(ApiKey::Produce, 9, b as i32, &req));
        let (_, r): (i32, ProduceResponse) = response(s, 1, 9);
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
}

/// Fetches everything from offset 0 in version `v` and checks every record; a slow
/// consumer waits before reading the answer.
fn fetch_and_check(addr: std::net::SocketAddr, v: i16, slow: bool) {
    let mut sock = connect(addr);
    let topic_id = if v >= 13 {
        let req = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name("zc"))),
        ]));
        send(&mut sock, &request(ApiKey::Metadata, 12, 4, &req));
        let (_, m): (i32, MetadataResponse) = response(&mut sock, 1, 12);
        m.topics[0].topic_id
    } else {
        uuid::Uuid::nil()
    };
    let req = FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(64 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(if v >= 13 { name("") } else { name("zc") })
            .with_topic_id(topic_id)
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(64 << 20)])]);
    send(&mut sock, &request(ApiKey::Fetch, v, 5, &req));
    if slow {
        std::thread::sleep(Duration::from_millis(500));
    }
    let header_version = i16::from(v >= 12);
    let (_, answer): (i32, FetchResponse) = response(&mut sock, header_version, v);
    let p = &answer.responses[0].partitions[0];
    assert_eq!(p.error_code, 0, "v{v}");
    assert_eq!(p.high_watermark, (BATCHES * PER_BATCH) as i64, "v{v}");
    let mut records = p.records.clone().expect("records");
    let mut next = 0i64;
    while records.has_remaining() {
        let set = RecordBatchDecoder::decode(&mut records).expect("a whole batch");
        for r in set.records {
            assert_eq!(r.offset, next, "v{v}: offsets are contiguous");
            let (b, i) = (next as usize / PER_BATCH, next as usize % PER_BATCH);
            assert_eq!(
                r.value.as_deref(),
                Some(&value(b, i)[..]),
                "v{v} offset {next}"
            );
            next += 1;
        }
    }
    assert_eq!(
        next,
        (BATCHES * PER_BATCH) as i64,
        "v{v}: every record came back"
    );
}

/// (cold bytes served, O_DIRECT block reads, resident bytes served) of all shards.
fn cold_counters(node: &Node) -> (u64, u64, u64) {
    node.metrics().iter().fold((0, 0, 0), |(c, r, s), m| {
        (
            c + m.cold_bytes_served,
            r + m.cold_block_reads.0,
            s + m.resident_bytes_served,
        )
    })
}

#[test]
fn data_on_disk_is_read_ahead_and_arrives_intact() {
    // A 1 MiB cache per shard: most of what is written is read from the segment.
    let node = start_with_engine(|e| e.cache_bytes_per_shard = 1 << 20, |_| {});
    let mut s = connect(node.addr);
    produce_all(&mut s);

    let sendfile_before = SENDFILE_BYTES.load(Ordering::Relaxed);
    let (cold_before, reads_before, _) = cold_counters(&node);
    for v in [4, 12, 16] {
        fetch_and_check(node.addr, v, false);
    }
    // A consumer that does not read for a while: the socket fills, the writer
    // waits and the answer is still whole and in order.
    fetch_and_check(node.addr, 12, true);
    let (cold, reads, resident) = cold_counters(&node);
    let (cold, reads) = (cold - cold_before, reads - reads_before);
    eprintln!("cold bytes {cold} in {reads} block reads; resident {resident}");
    assert!(
        cold >= 4 * (14 << 20),
        "4 fetches of 16 MiB, at most 1 MiB of it cached, read {cold} bytes cold"
    );
    // Each fetch reads the 16 MiB segment in 1 MiB blocks: tens of reads, not one
    // per batch (256) or per header.
    assert!((16..=4 * 17 + 8).contains(&reads), "{reads} block reads");
    assert_eq!(
        resident, 0,
        "O_DIRECT writes leave nothing in the page cache"
    );
    assert_eq!(
        SENDFILE_BYTES.load(Ordering::Relaxed),
        sendfile_before,
        "nothing the page cache did not hold went out with sendfile"
    );
}

#[test]
fn data_in_the_page_cache_is_sent_with_sendfile_and_arrives_intact() {
    let node = start_with_engine(|e| e.cache_bytes_per_shard = 1 << 20, |_| {});
    let mut s = connect(node.addr);
    produce_all(&mut s);
    // Someone reads the segment files through the page cache (a backup, `cat`).
    let mut segments = 0;
    for entry in walk(node.dir.path()) {
        if entry.extension().is_some_and(|e| e == "log") {
            std::fs::read(&entry).expect("read segment");
            segments += 1;
        }
    }
    assert!(segments >= 1, "found the segment files");

    let before = SENDFILE_BYTES.load(Ordering::Relaxed);
    for v in [4, 12, 16] {
        fetch_and_check(node.addr, v, false);
    }
    let sent = SENDFILE_BYTES.load(Ordering::Relaxed) - before;
    assert!(
        sent >= 3 * (14 << 20),
        "3 fetches of 16 MiB, at most 1 MiB of it cached, sent {sent} bytes with sendfile"
    );
    let (_, _, resident) = cold_counters(&node);
    assert!(resident >= 3 * (14 << 20), "{resident} resident bytes");

    let copied_before = FILE_COPIED_BYTES.load(Ordering::Relaxed);
    fetch_and_check(node.addr, 12, true);
    let copied = FILE_COPIED_BYTES.load(Ordering::Relaxed) - copied_before;
    assert!(copied > 0, "the socket was full at least once");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn cached_data_is_answered_from_the_cache() {
    let node = start_with(|_| {});
    let mut s = connect(node.addr);
    produce_all(&mut s);
    let before = SENDFILE_BYTES.load(Ordering::Relaxed);
    for v in [4, 12, 16] {
        fetch_and_check(node.addr, v, false);
    }
    assert_eq!(
        SENDFILE_BYTES.load(Ordering::Relaxed),
        before,
        "16 MiB fits the default 64 MiB cache: nothing is read from the file"
    );
}
