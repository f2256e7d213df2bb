//! The raw client's consumer: Fetch requests on its own connections, partitions split
//! between consumers, offsets taken from the batch headers it receives (records are
//! counted, not decoded, so the client costs little).
//!
//! Two uses: `consume` reads from offset 0 up to the log end offsets it found at the
//! start; `e2e` follows producers and measures each batch's delay from its timestamp.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use hdrhistogram::Histogram;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::stats;

/// Fetch version the raw consumer speaks (flexible, topic names; Kafka 2.7+).
const FETCH_VERSION: i16 = 12;

#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    pub bootstrap: String,
    pub topic: String,
    pub partitions: i32,
    pub consumers: usize,
    /// Fetch `max_bytes` and per-partition `max_bytes`.
    pub fetch_max_bytes: i32,
    pub partition_max_bytes: i32,
    /// Give up after this long.
    pub duration: Duration,
}

/// What the consumers did. `latency` is per Fetch round trip for `consume`, and per
/// batch from its timestamp to its arrival for `e2e` (millisecond timestamps).
pub struct Consumed {
    pub elapsed: Duration,
    pub records: u64,
    pub bytes: u64,
    pub latency: Histogram<u64>,
}

/// A blocking connection sending one request at a time.
pub struct Conn {
    stream: TcpStream,
    correlation_id: i32,
}

impl Conn {
    pub fn connect(addr: &str) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Conn {
            stream,
            correlation_id: 0,
        })
    }

    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        v: i16,
        req: &Req,
    ) -> Result<Resp, String> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(v)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("sluice-bench")));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0; 4]);
        header
            .encode(&mut buf, key.request_header_version(v))
            .map_err(|e| e.to_string())?;
        req.encode(&mut buf, v).map_err(|e| e.to_string())?;
        let len = i32::try_from(buf.len() - 4).map_err(|e| e.to_string())?;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf).map_err(|e| e.to_string())?;
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .map_err(|e| e.to_string())?;
        let n = usize::try_from(i32::from_be_bytes(len)).map_err(|e| e.to_string())?;
        // Correlation id and the header's tagged fields at least; at most 1 GiB.
        if !(5..=1 << 30).contains(&n) {
            return Err(format!("the broker answered a {n}-byte frame"));
        }
        let mut body = vec![0u8; n];
        self.stream
            .read_exact(&mut body)
            .map_err(|e| e.to_string())?;
        let mut body = Bytes::from(body);
        let got = body.get_i32();
        if got != self.correlation_id {
            return Err(format!(
                "answer {got} came for request {}",
                self.correlation_id
            ));
        }
        if key.response_header_version(v) >= 1 {
            // Tagged fields of the header: none expected, but skip them properly.
            let tags = body.get_u8();
            if tags != 0 {
                return Err("tagged fields in a response header".into());
            }
        }
        Resp::decode(&mut body, v).map_err(|e| e.to_string())
    }
}

fn topic_name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.into()))
}

/// Log end offsets of every partition.
pub fn end_offsets(bootstrap: &str, topic: &str, partitions: i32) -> Result<Vec<i64>, String> {
    let mut c = Conn::connect(bootstrap)?;
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                (0..partitions)
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_timestamp(-1)
                    })
                    .collect(),
            )]);
    let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, 5, &req)?;
    let mut out = vec![0; usize::try_from(partitions).unwrap_or(0)];
    for t in &r.topics {
        for p in &t.partitions {
            if p.error_code == 3 {
                return Err(format!("topic {topic} does not exist"));
            }
            if p.error_code != 0 {
                return Err(format!(
                    "offsets of partition {}: error code {}",
                    p.partition_index, p.error_code
                ));
            }
            if let Some(slot) = usize::try_from(p.partition_index)
                .ok()
                .and_then(|i| out.get_mut(i))
            {
                *slot = p.offset;
            }
        }
    }
    Ok(out)
}

/// Walks the whole batches in `records` (a batch cut short at the end, which Kafka
/// may send, is not counted), calling `on_batch` with each one's first timestamp.
/// Returns records, bytes and the offset after the last whole batch.
fn walk_batches(records: &[u8], mut next: i64, mut on_batch: impl FnMut(i64)) -> (u64, u64, i64) {
    let (mut count, mut bytes, mut at) = (0u64, 0u64, 0usize);
    while records.len() >= at + 61 {
        let b = &records[at..];
        let base = i64::from_be_bytes(b[0..8].try_into().unwrap_or_default());
        let len = i32::from_be_bytes(b[8..12].try_into().unwrap_or_default());
        let Ok(len) = usize::try_from(len) else {
            break;
        };
        let total = 12 + len;
        if b.len() < total {
            break;
        }
        let last_delta = i32::from_be_bytes(b[23..27].try_into().unwrap_or_default());
        let first_ts = i64::from_be_bytes(b[27..35].try_into().unwrap_or_default());
        let n = i32::from_be_bytes(b[57..61].try_into().unwrap_or_default());
        on_batch(first_ts);
        count += u64::try_from(n).unwrap_or(0);
        bytes += total as u64;
        next = base + i64::from(last_delta) + 1;
        at += total;
    }
    (count, bytes, next)
}

/// Runs the consumers. With `until` set (the `consume` scenario) each partition is
/// read from 0 to its offset there; without it (`e2e`) from `start` offsets until
/// `stop` is raised, measuring each batch's delay from its timestamp.
pub fn consume(
    o: &ConsumeOptions,
    from: &[i64],
    until: Option<&[i64]>,
    stop: &Arc<AtomicBool>,
) -> Result<Consumed, String> {
    run_consumers(o, from, until, stop, consumer)
}

/// A consumer's share of the partitions: (partition, first offset, end offset or
/// `None` to follow until stopped).
pub type Share = Vec<(i32, i64, Option<i64>)>;

/// What one consumer read: records, bytes, latencies.
pub type ConsumerResult = Result<(u64, u64, Histogram<u64>), String>;

/// Splits the partitions between `o.consumers` threads running `consumer`, and
/// merges what they read.
pub fn run_consumers(
    o: &ConsumeOptions,
    from: &[i64],
    until: Option<&[i64]>,
    stop: &Arc<AtomicBool>,
    consumer: fn(&ConsumeOptions, Share, &AtomicBool, Instant) -> ConsumerResult,
) -> Result<Consumed, String> {
    let started = Instant::now();
    let handles: Vec<_> = (0..o.consumers)
        .map(|i| {
            let mine: Share = (0..o.partitions)
                .filter(|p| usize::try_from(*p).unwrap_or(0) % o.consumers == i)
                .map(|p| {
                    let idx = usize::try_from(p).unwrap_or(0);
                    (p, from[idx], until.map(|u| u[idx]))
                })
                .collect();
            let (o, stop) = (o.clone(), stop.clone());
            std::thread::spawn(move || consumer(&o, mine, &stop, started))
        })
        .collect();
    let mut latency = stats::latency_histogram();
    let (mut records, mut bytes) = (0, 0);
    for h in handles {
        let (r, b, hist) = h
            .join()
            .map_err(|_| "a consumer thread panicked".to_string())??;
        records += r;
        bytes += b;
        latency.add(&hist).map_err(|e| e.to_string())?;
    }
    Ok(Consumed {
        elapsed: started.elapsed(),
        records,
        bytes,
        latency,
    })
}

fn consumer(
    o: &ConsumeOptions,
    mut parts: Share,
    stop: &AtomicBool,
    started: Instant,
) -> ConsumerResult {
    let mut conn = Conn::connect(&o.bootstrap)?;
    let mut hist = stats::latency_histogram();
    let e2e = parts.iter().any(|p| p.2.is_none());
    let (mut records, mut bytes) = (0u64, 0u64);
    loop {
        if stop.load(Ordering::Relaxed) || started.elapsed() >= o.duration {
            break;
        }
        parts.retain(|(_, next, end)| end.is_none_or(|e| *next < e));
        if parts.is_empty() {
            break;
        }
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(100)
            .with_min_bytes(1)
            .with_max_bytes(o.fetch_max_bytes)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(&o.topic))
                .with_partitions(
                    parts
                        .iter()
                        .map(|(p, next, _)| {
                            FetchPartition::default()
                                .with_partition(*p)
                                .with_fetch_offset(*next)
                                .with_partition_max_bytes(o.partition_max_bytes)
                        })
                        .collect(),
                )]);
        let sent = Instant::now();
        let r: FetchResponse = conn.call(ApiKey::Fetch, FETCH_VERSION, &req)?;
        if !e2e {
            let us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
            hist.saturating_record(us.max(1));
        }
        let arrived = sluice_engine::now_ms();
        for t in &r.responses {
            for p in &t.partitions {
                if p.error_code != 0 {
                    return Err(format!(
                        "fetch of partition {}: error code {}",
                        p.partition_index, p.error_code
                    ));
                }
                let Some(slot) = parts.iter_mut().find(|x| x.0 == p.partition_index) else {
                    continue;
                };
                let data = p.records.as_deref().unwrap_or_default();
                let (n, b, next) = walk_batches(data, slot.1, |first_ts| {
                    if e2e {
                        let ms = u64::try_from((arrived - first_ts).max(0)).unwrap_or(0);
                        hist.saturating_record((ms * 1000).max(1));
                    }
                });
                records += n;
                bytes += b;
                slot.1 = next;
            }
        }
    }
    Ok((records, bytes, hist))
}
