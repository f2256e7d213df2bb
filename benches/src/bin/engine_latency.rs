//! Durable-append latency of the engine alone (no network): one partition, one
//! append in flight, batches of `--batch-records` records at `--rate` appends per
//! second, each waiting until it is fdatasynced. Prints p50/p99/p99.9/max beside fio
//! writing the same block size with `--fdatasync=1` at the same rate on the same disk,
//! so what the engine adds to the disk's own latency shows.

#![allow(clippy::cast_precision_loss)]

use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use sluice_engine::batch::{build_values_batch, NO_PRODUCER};
use sluice_engine::{AppendOptions, Durability, Engine, EngineConfig, Shard, TopicPartition};

#[derive(Parser, Debug)]
#[command(about = "Engine durable-append latency against fio on the same disk")]
struct Args {
    #[arg(long, default_value = "./bench-data")]
    dir: PathBuf,
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    #[arg(long, default_value_t = 1)]
    batch_records: usize,
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Appends per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Engine task quota in microseconds (default: the engine's).
    #[arg(long)]
    task_quota_us: Option<u64>,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("engine_latency: {e}");
        std::process::exit(1);
    }
}

#[allow(clippy::expect_used)] // Constant bounds hdrhistogram accepts.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid bounds")
}

fn run(args: &Args) -> Result<(), String> {
    if !(args.rate.is_finite() && args.rate > 0.0) {
        return Err("--rate must be positive".into());
    }
    let dir = args.dir.join("engine-latency");
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = EngineConfig::new(&dir);
    config.shards = Some(1);
    if let Some(us) = args.task_quota_us {
        config.task_quota = Duration::from_micros(us);
    }
    let engine = Engine::start(config).map_err(|e| e.to_string())?;
    let router = engine.router();
    let tp = TopicPartition::new("latency", 0).map_err(|e| e.to_string())?;
    for r in futures::executor::block_on(router.create_partitions(vec![tp.clone()], None)) {
        r.map_err(|e| e.to_string())?;
    }
    let value = vec![b'v'; args.record_bytes];
    let values: Vec<&[u8]> = vec![&value; args.batch_records];
    let batch = Bytes::from(build_values_batch(&values, 1_700_000_000_000, NO_PRODUCER));
    let block = batch.len();
    let (seconds, interval) = (args.seconds, Duration::from_secs_f64(1.0 / args.rate));
    let job = move |shard: Rc<Shard>| async move {
        let p = shard.partition(&tp).map_err(|e| e.to_string())?;
        let mut hist = histogram();
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < Duration::from_secs(seconds) {
            let due = start + interval * n;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                glommio::timer::sleep(wait).await;
            }
            p.append(
                Bytes::copy_from_slice(&batch),
                AppendOptions {
                    leader_epoch: 0,
                    durability: Durability::Durable,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            let us = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
            hist.saturating_record(us.max(1));
            n += 1;
        }
        Ok::<Histogram<u64>, String>(hist)
    };
    let mut out = futures::executor::block_on(router.scatter(vec![(0, job)]));
    engine.shutdown().map_err(|e| e.to_string())?;
    let hist = out.pop().ok_or("no result")?.map_err(|e| e.to_string())??;
    let _ = std::fs::remove_dir_all(&dir);
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "engine durable append, {block} B at {:.0}/s: p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms ({} appends)",
        args.rate,
        ms(0.5),
        ms(0.99),
        ms(0.999),
        hist.max() as f64 / 1000.0,
        hist.len()
    );
    let fio = sluice_benches::fio_sync_latency_p99(
        &args.dir,
        args.seconds,
        block.div_ceil(4096) * 4096,
        args.rate * block as f64 / 1e6,
    )?;
    println!(
        "fio {} B O_DIRECT writes + fdatasync at the same rate: write p99 + sync p99 = {fio:.2} ms",
        block.div_ceil(4096) * 4096
    );
    Ok(())
}
