//! Durable-append latency of the engine alone (no network): one partition, one
//! append in flight, batches of `--batch-records` records at `--rate` appends per
//! second, each waiting until it is fdatasynced, latency taken from when each append
//! was due. Each round is followed by the disk alone doing the same (one O_DIRECT
//! write plus fdatasync per append, measured the same way, on the same CPU), so what
//! the engine adds to the disk's own latency shows; fio's per-I/O figures follow.

#![allow(clippy::cast_precision_loss)]

use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use sluice_benches::{micros_histogram, Latency};
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
    /// CPU the engine's one shard is pinned to (default: the first online CPU).
    #[arg(long)]
    cpu: Option<usize>,
    /// Runs of the engine, each followed by the disk alone, alternating.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("engine_latency: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    if !(args.rate.is_finite() && args.rate > 0.0) {
        return Err("--rate must be positive".into());
    }
    if args.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    let mut block = 0;
    for round in 1..=args.rounds {
        let (engine, size) = engine_round(args)?;
        block = size;
        let disk =
            sluice_benches::disk_sync_latency(&args.dir, args.seconds, block, args.rate, args.cpu)?;
        println!(
            "round {round}: engine {} | disk alone {}",
            show(&engine),
            show(&disk)
        );
    }
    let fio = sluice_benches::fio_sync_latency_p99(
        &args.dir,
        args.seconds,
        block.div_ceil(4096) * 4096,
        args.rate * block as f64 / 1e6,
    )?;
    println!(
        "fio {} B O_DIRECT writes + fdatasync at the same rate (per I/O, not from the due time): write p99 + sync p99 = {fio:.2} ms",
        block.div_ceil(4096) * 4096
    );
    Ok(())
}

fn show(l: &Latency) -> String {
    format!(
        "p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ms ({} appends)",
        l.p50, l.p99, l.p999, l.max, l.samples
    )
}

/// One run of the engine: its latency and the size of one batch.
fn engine_round(args: &Args) -> Result<(Latency, usize), String> {
    let dir = args.dir.join("engine-latency");
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = EngineConfig::new(&dir);
    config.shards = Some(1);
    config.cpus = args.cpu.map(|c| vec![c]);
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
        let mut hist = micros_histogram();
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
    Ok((Latency::of(&hist), block))
}
