//! The rdkafka client: librdkafka through the `rdkafka` crate with the settings
//! applications use (linger, batch size, acks, compression, idempotence), so the
//! figures are what a real producer and consumer see.
//!
//! Produce latency is from the moment a record was due (its scheduled time at a fixed
//! rate, else when it was handed to librdkafka) to its delivery report. Consumers are
//! assigned partitions by hand (no consumer groups needed); end-to-end latency is from
//! each record's timestamp (set by the producer when it sends) to its arrival.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::raw::Produced;
use crate::raw_consume::{ConsumeOptions, Consumed, ConsumerResult, Share};
use crate::stats;

/// What the rdkafka producer is asked to do, beside the raw options it shares.
#[derive(Debug, Clone)]
pub struct Settings {
    pub linger_ms: u64,
    pub batch_bytes: usize,
    pub compression: String,
    pub idempotence: bool,
}

/// Delivery reports land here.
struct Reports {
    latency: Mutex<Histogram<u64>>,
    acked: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

struct Ctx(Arc<Reports>);

impl ClientContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, due: Box<Instant>) {
        match result {
            Ok(_) => {
                let us = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
                if let Ok(mut h) = self.0.latency.lock() {
                    h.saturating_record(us.max(1));
                }
                self.0.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.0.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.0.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

/// Runs `o.producers` librdkafka producers, each in its own thread.
pub fn produce(o: &crate::raw::ProduceOptions, s: &Settings) -> Result<Produced, String> {
    let reports = Arc::new(Reports {
        latency: Mutex::new(stats::latency_histogram()),
        acked: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_error: Mutex::new(None),
    });
    let start = Instant::now();
    let handles: Vec<_> = (0..o.producers)
        .map(|_| {
            let (o, s, reports) = (o.clone(), s.clone(), reports.clone());
            std::thread::spawn(move || producer(&o, &s, reports, start))
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| "a producer thread panicked".to_string())??;
    }
    let elapsed = start.elapsed();
    if reports.failed.load(Ordering::Relaxed) > 0 {
        let first = reports
            .first_error
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_default();
        return Err(format!(
            "{} records were not delivered; the first error: {first}",
            reports.failed.load(Ordering::Relaxed)
        ));
    }
    let records = reports.acked.load(Ordering::Relaxed);
    let latency = reports
        .latency
        .lock()
        .map_err(|_| "latency lock poisoned".to_string())?
        .clone();
    Ok(Produced {
        elapsed,
        records,
        bytes: records * o.record_bytes as u64,
        latency,
    })
}

fn producer(
    o: &crate::raw::ProduceOptions,
    s: &Settings,
    reports: Arc<Reports>,
    start: Instant,
) -> Result<(), String> {
    let acks = match o.acks {
        0 => "0",
        1 => "1",
        _ => "all",
    };
    let p: ThreadedProducer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", &o.bootstrap)
        .set("acks", acks)
        .set("linger.ms", s.linger_ms.to_string())
        .set("batch.size", s.batch_bytes.to_string())
        .set("compression.codec", &s.compression)
        .set("enable.idempotence", s.idempotence.to_string())
        .set("queue.buffering.max.kbytes", "1048576")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "60000")
        .create_with_context(Ctx(reports))
        .map_err(|e| e.to_string())?;
    let value = vec![b'x'; o.record_bytes];
    let per_producer = o.records.map(|r| r.div_ceil(o.producers as u64));
    #[allow(clippy::cast_precision_loss)]
    let interval = o
        .rate
        .map(|r| Duration::from_secs_f64(o.producers as f64 / r.max(1.0)));
    let mut sent = 0u64;
    while start.elapsed() < o.duration && per_producer.is_none_or(|m| sent < m) {
        #[allow(clippy::cast_precision_loss)]
        let due = interval.map_or_else(Instant::now, |iv| start + iv.mul_f64(sent as f64));
        // Pace in steps of 100 records: sleeping per record is too fine-grained.
        if sent.is_multiple_of(100) {
            stats::wait_until(due);
        }
        let mut record = BaseRecord::with_opaque_to(&o.topic, Box::new(due))
            .payload(&value)
            .timestamp(sluice_engine::now_ms());
        loop {
            match p.send::<(), Vec<u8>>(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e.to_string()),
            }
        }
        sent += 1;
    }
    p.flush(Duration::from_mins(1))
        .map_err(|e| format!("flush: {e}"))
}

/// Runs librdkafka consumers over `[from, until)` per partition (or from `from` until
/// `stop`, measuring latency from each record's timestamp).
pub fn consume(
    o: &ConsumeOptions,
    from: &[i64],
    until: Option<&[i64]>,
    stop: &Arc<AtomicBool>,
) -> Result<Consumed, String> {
    crate::raw_consume::run_consumers(o, from, until, stop, consumer)
}

#[allow(clippy::needless_pass_by_value)] // The shape run_consumers calls.
fn consumer(
    o: &ConsumeOptions,
    parts: Share,
    stop: &AtomicBool,
    started: Instant,
) -> ConsumerResult {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &o.bootstrap)
        // librdkafka wants a group id even for hand-assigned partitions; nothing is
        // committed.
        .set("group.id", "sluice-bench")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.max.bytes", o.fetch_max_bytes.to_string())
        .set(
            "max.partition.fetch.bytes",
            o.partition_max_bytes.to_string(),
        )
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    for (p, from, _) in &parts {
        tpl.add_partition_offset(&o.topic, *p, Offset::Offset(*from))
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let e2e = parts.iter().any(|p| p.2.is_none());
    let mut left: u64 = parts
        .iter()
        .filter_map(|(_, from, until)| until.map(|u| u64::try_from(u - from).unwrap_or(0)))
        .sum();
    let mut hist = stats::latency_histogram();
    let (mut records, mut bytes) = (0u64, 0u64);
    while !stop.load(Ordering::Relaxed) && started.elapsed() < o.duration && (e2e || left > 0) {
        let Some(m) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = m.map_err(|e| e.to_string())?;
        records += 1;
        left = left.saturating_sub(1);
        bytes += m.payload_len() as u64;
        if e2e {
            if let Some(ts) = m.timestamp().to_millis() {
                let ms = u64::try_from((sluice_engine::now_ms() - ts).max(0)).unwrap_or(0);
                hist.saturating_record((ms * 1000).max(1));
            }
        }
    }
    Ok((records, bytes, hist))
}
