//! The raw client: the project's own Kafka framing replaying pre-encoded record
//! batches, many requests in flight per connection, so that the client is not what
//! limits the broker.
//!
//! Each producer is one connection with a writer thread and a reader thread. The
//! writer sends a Produce request (one batch for one partition, partitions in turn)
//! whenever fewer than `in_flight` are unanswered; the reader reads the answers in
//! order, checks every error code and records the latency from the moment the request
//! was due (its scheduled time at a fixed rate, so a stalled broker is not hidden).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::stats;

/// Produce version the raw client speaks (flexible; Kafka 2.4 and later, Sluice and
/// Tansu serve it).
const PRODUCE_VERSION: i16 = 9;

#[derive(Debug, Clone)]
pub struct ProduceOptions {
    pub bootstrap: String,
    pub topic: String,
    pub partitions: i32,
    pub record_bytes: usize,
    pub batch_records: usize,
    pub acks: i16,
    pub producers: usize,
    pub in_flight: usize,
    /// Stop after this long...
    pub duration: Duration,
    /// ...or after this many records, whichever comes first.
    pub records: Option<u64>,
    /// Records per second over all producers; `None` is as fast as possible.
    pub rate: Option<f64>,
    /// Stamp each batch with the time it is sent (for end-to-end latency; costs a
    /// CRC-32C of the batch per request).
    pub stamp: bool,
}

/// What all producers did.
pub struct Produced {
    pub elapsed: Duration,
    pub records: u64,
    pub bytes: u64,
    pub latency: Histogram<u64>,
}

/// Where the record batch lies in each frame: it is the last field of the only
/// partition, followed by three empty tagged-field sections (partition, topic,
/// request).
fn batch_range(frame_len: usize, batch_len: usize) -> std::ops::Range<usize> {
    frame_len - 3 - batch_len..frame_len - 3
}

/// Sets a batch's first and max timestamps to `now_ms` (keeping their distance) and
/// recomputes its CRC-32C (over everything after the CRC field).
fn stamp(batch: &mut [u8], now_ms: i64) {
    let first = i64::from_be_bytes(batch[27..35].try_into().unwrap_or_default());
    let max = i64::from_be_bytes(batch[35..43].try_into().unwrap_or_default());
    batch[27..35].copy_from_slice(&now_ms.to_be_bytes());
    batch[35..43].copy_from_slice(&(now_ms + (max - first)).to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// One request frame per partition, with a correlation id to patch at bytes 8..12,
/// and the length of the batch in it.
fn frames(o: &ProduceOptions) -> Result<(Vec<Vec<u8>>, usize), String> {
    let value = vec![b'x'; o.record_bytes];
    let values: Vec<&[u8]> = vec![value.as_slice(); o.batch_records];
    let batch = Bytes::from(sluice_engine::batch::build_values_batch(
        &values,
        sluice_engine::now_ms(),
        sluice_engine::batch::NO_PRODUCER,
    ));
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(PRODUCE_VERSION)
        .with_client_id(Some(StrBytes::from_static_str("sluice-bench")));
    let frames = (0..o.partitions)
        .map(|p| {
            let req = ProduceRequest::default()
                .with_acks(o.acks)
                .with_timeout_ms(30_000)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(o.topic.clone())))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(p)
                        .with_records(Some(batch.clone()))])]);
            let mut buf = BytesMut::new();
            buf.extend_from_slice(&[0; 4]);
            header
                .encode(
                    &mut buf,
                    ApiKey::Produce.request_header_version(PRODUCE_VERSION),
                )
                .map_err(|e| e.to_string())?;
            req.encode(&mut buf, PRODUCE_VERSION)
                .map_err(|e| e.to_string())?;
            let len = i32::try_from(buf.len() - 4).map_err(|e| e.to_string())?;
            buf[..4].copy_from_slice(&len.to_be_bytes());
            if buf[batch_range(buf.len(), batch.len())] != batch[..] {
                return Err("the batch is not where the request layout puts it".into());
            }
            Ok(buf.to_vec())
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((frames, batch.len()))
}

/// Runs the producers and merges what they measured.
pub fn produce(o: &ProduceOptions) -> Result<Produced, String> {
    let (frames, batch_len) = frames(o)?;
    let start = Instant::now();
    let handles: Vec<_> = (0..o.producers)
        .map(|i| {
            let (o, frames) = (o.clone(), frames.clone());
            std::thread::spawn(move || producer(i, &o, &frames, batch_len, start))
        })
        .collect();
    let mut latency = stats::latency_histogram();
    let mut records = 0;
    for h in handles {
        let (n, hist) = h
            .join()
            .map_err(|_| "a producer thread panicked".to_string())??;
        records += n;
        latency.add(&hist).map_err(|e| e.to_string())?;
    }
    let elapsed = start.elapsed();
    Ok(Produced {
        elapsed,
        records,
        bytes: records * o.record_bytes as u64,
        latency,
    })
}

/// One connection: returns the records acknowledged and their latencies.
#[allow(clippy::needless_pass_by_value)]
fn producer(
    index: usize,
    o: &ProduceOptions,
    frames: &[Vec<u8>],
    batch_len: usize,
    start: Instant,
) -> Result<(u64, Histogram<u64>), String> {
    let stream = TcpStream::connect(&o.bootstrap).map_err(|e| format!("{}: {e}", o.bootstrap))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut reader = stream.try_clone().map_err(|e| e.to_string())?;
    let mut writer = stream;
    let per_producer = o.records.map(|r| r.div_ceil(o.producers as u64));
    let requests_max = per_producer.map(|r| r.div_ceil(o.batch_records as u64));
    // A request is due every `interval` at a fixed rate.
    #[allow(clippy::cast_precision_loss)]
    let interval = o
        .rate
        .map(|r| Duration::from_secs_f64(o.batch_records as f64 * o.producers as f64 / r.max(1.0)));
    let acks = o.acks != 0;
    let (tx, rx) = mpsc::sync_channel::<(i32, Instant)>(o.in_flight.max(1));
    let read_thread = std::thread::spawn(move || -> Result<(u64, Histogram<u64>), String> {
        let mut hist = stats::latency_histogram();
        let mut acked = 0u64;
        if !acks {
            return Ok((0, hist));
        }
        let mut len = [0u8; 4];
        while let Ok((correlation_id, due)) = rx.recv() {
            reader.read_exact(&mut len).map_err(|e| e.to_string())?;
            let n = usize::try_from(i32::from_be_bytes(len)).map_err(|e| e.to_string())?;
            // Correlation id and the header's tagged fields at least; at most 1 GiB.
            if !(5..=1 << 30).contains(&n) {
                return Err(format!("the broker answered a {n}-byte frame"));
            }
            let mut body = vec![0u8; n];
            reader.read_exact(&mut body).map_err(|e| e.to_string())?;
            let got = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
            if got != correlation_id {
                return Err(format!(
                    "answer {got} came for request {correlation_id}: out of order"
                ));
            }
            // Response header v1: correlation id and an empty tagged-field section.
            let mut rest = Bytes::from(body).slice(5..);
            let r =
                ProduceResponse::decode(&mut rest, PRODUCE_VERSION).map_err(|e| e.to_string())?;
            for t in &r.responses {
                for p in &t.partition_responses {
                    if p.error_code != 0 {
                        return Err(format!(
                            "partition {} answered error code {}",
                            p.index, p.error_code
                        ));
                    }
                }
            }
            let us = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
            hist.saturating_record(us.max(1));
            acked += 1;
        }
        Ok((acked, hist))
    });

    let mut sent = 0u64;
    let partitions = frames.len();
    let mut frames: Vec<Vec<u8>> = frames.to_vec();
    let mut correlation_id = 0i32;
    loop {
        let due = interval.map_or_else(Instant::now, |iv| start + iv.mul_f64(sent as f64));
        if start.elapsed() >= o.duration || requests_max.is_some_and(|m| sent >= m) {
            break;
        }
        stats::wait_until(due);
        let turn = usize::try_from(sent % partitions as u64).unwrap_or(0);
        let frame = &mut frames[(index + turn) % partitions];
        frame[8..12].copy_from_slice(&correlation_id.to_be_bytes());
        if o.stamp {
            let range = batch_range(frame.len(), batch_len);
            stamp(&mut frame[range], sluice_engine::now_ms());
        }
        if acks && tx.send((correlation_id, due)).is_err() {
            break; // The reader stopped: its error is reported below.
        }
        writer.write_all(frame).map_err(|e| e.to_string())?;
        correlation_id = correlation_id.wrapping_add(1);
        sent += 1;
    }
    drop(tx);
    let (acked, hist) = read_thread
        .join()
        .map_err(|_| "a reader thread panicked".to_string())??;
    let requests = if acks { acked } else { sent };
    Ok((requests * o.batch_records as u64, hist))
}
