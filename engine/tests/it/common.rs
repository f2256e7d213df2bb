//! Helpers shared by the engine's integration tests.

use std::future::Future;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use sluice_engine::batch::{build_values_batch, split_batches_of, BatchHeader, NO_PRODUCER};
use sluice_engine::{
    AppendInfo, AppendOptions, Durability, Engine, EngineConfig, LogConfig, Partition,
    TopicPartition,
};

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("sluice_engine=info")
        .with_test_writer()
        .try_init();
}

/// Small everything, so rolls, index entries and write-backs happen often.
pub fn small_config(dir: &Path, shards: usize) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.shards = Some(shards);
    c.write_buffer_bytes = 64 << 10;
    c.pending_bytes_max = 1 << 20;
    c.cache_bytes_per_shard = 256 << 10;
    c.io_memory_bytes = 1 << 20;
    c.writeback_interval = Duration::from_millis(2);
    c.log_defaults = LogConfig {
        segment_bytes: 16 << 10,
        index_interval_bytes: 1024,
        ..LogConfig::default()
    };
    c
}

pub fn start(config: EngineConfig) -> Engine {
    init_logs();
    match Engine::start(config) {
        Ok(e) => e,
        Err(e) => panic!("engine did not start: {e}"),
    }
}

pub fn tp(topic: &str, p: i32) -> TopicPartition {
    TopicPartition::new(topic, p).expect("valid name")
}

pub fn block_on<F: Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

/// Runs `f` with the partition on its owning shard.
pub fn with_partition<T, F, Fut>(engine: &Engine, tp: &TopicPartition, f: F) -> T
where
    F: FnOnce(Rc<Partition>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let router = engine.router();
    let shard = router.shard_of(tp).expect("partition placed");
    let tp = tp.clone();
    block_on(router.call(shard, move |s| async move {
        let p = s.partition(&tp).expect("partition on its shard");
        f(p).await
    }))
    .expect("shard answered")
}

pub fn create(engine: &Engine, tps: &[TopicPartition], config: Option<LogConfig>) {
    for r in block_on(engine.router().create_partitions(tps.to_vec(), config)) {
        r.expect("partition created");
    }
}

/// A batch with `n` values `"{tag}-{i}"`, timestamps from `ts`.
pub fn batch(tag: &str, n: usize, ts: i64) -> Bytes {
    let values: Vec<String> = (0..n).map(|i| format!("{tag}-{i}")).collect();
    let refs: Vec<&[u8]> = values.iter().map(String::as_bytes).collect();
    Bytes::from(build_values_batch(&refs, ts, NO_PRODUCER))
}

pub fn append(engine: &Engine, tp: &TopicPartition, records: Bytes, durable: bool) -> AppendInfo {
    with_partition(engine, tp, move |p| async move {
        let durability = if durable {
            Durability::Durable
        } else {
            Durability::Buffered
        };
        p.append(
            records,
            AppendOptions {
                leader_epoch: 0,
                durability,
            },
        )
        .await
    })
    .expect("append accepted")
}

/// Every batch from `from` to the log end, as bytes.
pub fn read_all(engine: &Engine, tp: &TopicPartition, from: u64) -> Vec<Bytes> {
    with_partition(engine, tp, move |p| async move {
        let mut out = Vec::new();
        let mut offset = from;
        // Bounded by the log end: each read moves past at least one batch.
        for _ in 0..1_000_000 {
            let r = p.read(offset, 100 << 10, None).await.expect("read");
            if offset >= r.log_end_offset {
                break;
            }
            let data = r.materialize().await.expect("materialize");
            let batches = split_batches_of(&data);
            if batches.is_empty() {
                // The segment ended here; the next one starts at a higher offset.
                offset = next_segment_start(&p, offset);
                continue;
            }
            for b in batches {
                let h = BatchHeader::parse(&b).expect("header");
                offset = u64::try_from(h.last_offset()).expect("offset") + 1;
                out.push(b);
            }
        }
        out
    })
}

fn next_segment_start(p: &Partition, offset: u64) -> u64 {
    p.segments()
        .into_iter()
        .map(|(b, _)| b)
        .find(|&b| b > offset)
        .unwrap_or(u64::MAX)
}

/// `(base offset, values)` of a stored batch, checking its CRC.
pub fn decode(b: &[u8]) -> (u64, Vec<String>) {
    assert!(
        sluice_engine::batch::crc_matches(b),
        "stored batch fails its CRC"
    );
    let h = BatchHeader::parse(b).expect("header");
    let values = sluice_engine::batch::record_values(b).expect("records decode");
    (
        u64::try_from(h.base_offset).expect("offset"),
        values
            .into_iter()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .collect(),
    )
}
