//! Engine append benchmark: 1 KiB records in 16 KiB and 1 MiB batches, to 1 and 16
//! partitions spread over all shards, with and without group-commit fdatasync; and,
//! in the same invocation and on the same disk, `fio` 1 MiB O_DIRECT sequential
//! writes without sync and with `--fdatasync=1`. Prints MB/s and the ratio to fio.
//!
//! Each case also checks that the path it meant to measure ran: every appended byte
//! is in the log, and in sync mode every append was acknowledged only after its
//! fdatasync (the durable offset reached the log end).

// Throughput figures are far below 2^52; f64 rounding does not matter here.
#![allow(clippy::cast_precision_loss)]

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use sluice_benches::{fio, FioSpace};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use serde::Serialize;
use sluice_engine::batch::{build_batch, RecordSpec, NO_PRODUCER};
use sluice_engine::{
    AppendOptions, Durability, Engine, EngineConfig, LogConfig, Shard, TopicPartition,
};

#[derive(Parser, Debug)]
#[command(about = "Sluice engine append throughput against fio on the same disk")]
struct Args {
    /// Directory on the disk to measure (created; its contents are removed after).
    #[arg(long, default_value = "./bench-data")]
    dir: PathBuf,
    /// Seconds per case.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Shards (default: one per CPU).
    #[arg(long)]
    shards: Option<usize>,
    /// Appends in flight per partition (8 at most for 1 MiB batches); 64 x 16 KiB
    /// is 1 MiB per partition, what fio writes between two fdatasyncs.
    #[arg(long, default_value_t = 64)]
    depth: usize,
    /// Record value size in bytes.
    #[arg(long, default_value_t = 1000)]
    record_bytes: usize,
    /// Skip fio (then no ratios are printed).
    #[arg(long)]
    no_fio: bool,
    /// Also print the results as JSON.
    #[arg(long)]
    json: bool,
    /// Run only these cases, `BATCH:PARTITIONS:SYNC` comma-separated, e.g. `16k:1:no,1m:16:yes`.
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Engine write buffer size in KiB (default: the engine's).
    #[arg(long)]
    write_buffer_kib: Option<usize>,
    /// Engine task quota in microseconds (default: the engine's).
    #[arg(long)]
    task_quota_us: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
struct CaseResult {
    batch_bytes: usize,
    partitions: usize,
    fdatasync: bool,
    mb_per_s: f64,
    records_per_s: f64,
    appends: u64,
    ratio_to_fio: Option<f64>,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("engine_append: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| format!("create {}: {e}", args.dir.display()))?;
    // fio runs before and after the cases and the mean is the reference, so drift of
    // a shared machine during the run weighs on both sides alike. The reference writes
    // into new file space, as a log does; fio's usual loop over one small file turns
    // into overwrites of allocated blocks after the first pass, which ext4 does faster
    // (no extent conversion), so that figure is shown beside it but not used.
    let fio_pair = |dir: &Path| -> Result<Option<(f64, f64)>, String> {
        if args.no_fio {
            return Ok(None);
        }
        Ok(Some((
            fio(dir, false, args.seconds, FioSpace::Fresh)?,
            fio(dir, true, args.seconds, FioSpace::Fresh)?,
        )))
    };
    let fio_before = fio_pair(&args.dir)?;
    let fio_overwrite = if args.no_fio {
        None
    } else {
        Some((
            fio(&args.dir, false, args.seconds, FioSpace::Overwrite)?,
            fio(&args.dir, true, args.seconds, FioSpace::Overwrite)?,
        ))
    };
    let mut results = Vec::new();
    for fdatasync in [false, true] {
        for batch_records in [16usize, 1024] {
            for partitions in [1usize, 16] {
                let name = format!(
                    "{}:{partitions}:{}",
                    if batch_records == 16 { "16k" } else { "1m" },
                    if fdatasync { "yes" } else { "no" }
                );
                if !args.cases.is_empty() && !args.cases.contains(&name) {
                    continue;
                }
                results.push(case(args, batch_records, partitions, fdatasync)?);
            }
        }
    }
    let fio_after = fio_pair(&args.dir)?;
    let fio_nosync = fio_before
        .zip(fio_after)
        .map(|(b, a)| f64::midpoint(b.0, a.0));
    let fio_sync = fio_before
        .zip(fio_after)
        .map(|(b, a)| f64::midpoint(b.1, a.1));
    for r in &mut results {
        let reference = if r.fdatasync { fio_sync } else { fio_nosync };
        r.ratio_to_fio = reference.map(|f| r.mb_per_s / f);
    }
    println!();
    println!("machine: {} CPUs, kernel {}", num_cpus(), kernel());
    println!("disk: {}", args.dir.display());
    if let (Some((b0, b1)), Some((a0, a1))) = (fio_before, fio_after) {
        println!("fio 1 MiB O_DIRECT sequential write to new file space (the reference), before / after the cases: {b0:.0} / {a0:.0} MB/s without sync, {b1:.0} / {a1:.0} MB/s with --fdatasync=1");
    }
    if let Some((o0, o1)) = fio_overwrite {
        println!("fio the same, overwriting a 2 GiB file again and again (not the reference): {o0:.0} MB/s without sync, {o1:.0} MB/s with --fdatasync=1");
    }
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>12} {:>9}",
        "batch", "partitions", "fdatasync", "MB/s", "records/s", "vs fio"
    );
    for r in &results {
        println!(
            "{:<10} {:>10} {:>10} {:>10.0} {:>12.0} {:>9}",
            if r.batch_bytes > 100_000 {
                "1 MiB"
            } else {
                "16 KiB"
            },
            r.partitions,
            if r.fdatasync { "yes" } else { "no" },
            r.mb_per_s,
            r.records_per_s,
            r.ratio_to_fio
                .map_or("-".into(), |x| format!("{:.0}%", x * 100.0)),
        );
    }
    if args.json {
        let out = serde_json::json!({
            "fio_mb_per_s": { "nosync": fio_nosync, "fdatasync": fio_sync },
            "fio_overwrite_mb_per_s": fio_overwrite.map(|(n, s)| serde_json::json!({ "nosync": n, "fdatasync": s })),
            "cases": results,
        });
        println!("{out}");
    }
    let _ = std::fs::remove_dir_all(&args.dir);
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "?".into(), |s| s.trim().to_string())
}

fn make_batch(records: usize, record_bytes: usize) -> Bytes {
    let value = vec![b'v'; record_bytes];
    let specs: Vec<RecordSpec<'_>> = (0..records)
        .map(|i| RecordSpec {
            value: Some(&value),
            timestamp_delta: i64::try_from(i).unwrap_or(0),
            ..RecordSpec::default()
        })
        .collect();
    Bytes::from(build_batch(&specs, sluice_engine::now_ms(), NO_PRODUCER))
}

fn case(
    args: &Args,
    batch_records: usize,
    partitions: usize,
    fdatasync: bool,
) -> Result<CaseResult, String> {
    let dir = args
        .dir
        .join(format!("engine-{batch_records}-{partitions}-{fdatasync}"));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = EngineConfig::new(&dir);
    config.shards = args.shards;
    if let Some(kib) = args.write_buffer_kib {
        config.write_buffer_bytes = kib << 10;
    }
    if let Some(us) = args.task_quota_us {
        config.task_quota = Duration::from_micros(us);
    }
    config.log_defaults = LogConfig {
        segment_bytes: 512 << 20,
        max_message_bytes: 2 << 20,
        ..LogConfig::default()
    };
    let engine = Engine::start(config).map_err(|e| e.to_string())?;
    let router = engine.router();
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new("bench", i32::try_from(p).unwrap_or(0)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    for r in futures::executor::block_on(router.create_partitions(tps.clone(), None)) {
        r.map_err(|e| e.to_string())?;
    }
    let batch = make_batch(batch_records, args.record_bytes);
    let deadline = Duration::from_secs(args.seconds);
    let depth = if batch.len() > 100_000 {
        args.depth.min(8)
    } else {
        args.depth
    };
    let started = Instant::now();
    let mut jobs = Vec::new();
    for s in 0..router.shard_count() {
        let mine: Vec<TopicPartition> = tps
            .iter()
            .filter(|t| router.shard_of(t) == Some(s))
            .cloned()
            .collect();
        if mine.is_empty() {
            continue;
        }
        let batch = batch.clone();
        jobs.push((s, move |shard: Rc<Shard>| {
            drive(shard, mine, batch, depth, deadline, fdatasync)
        }));
    }
    let per_shard = futures::executor::block_on(router.scatter(jobs));
    let elapsed = started.elapsed().as_secs_f64();
    let mut appends = 0u64;
    let mut bytes = 0u64;
    for r in per_shard {
        let (a, b) = r.map_err(|e| e.to_string())??;
        appends += a;
        bytes += b;
    }
    engine.shutdown().map_err(|e| e.to_string())?;
    let on_disk = dir_log_bytes(&dir);
    if on_disk != bytes {
        return Err(format!("measured {bytes} bytes appended but the logs hold {on_disk}: the benchmark did not measure what it meant to"));
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("case batch={batch_records} records partitions={partitions} fdatasync={fdatasync}: {appends} appends, {bytes} bytes in {elapsed:.1}s");
    Ok(CaseResult {
        batch_bytes: batch.len(),
        partitions,
        fdatasync,
        mb_per_s: bytes as f64 / elapsed / 1e6,
        records_per_s: (appends * batch_records as u64) as f64 / elapsed,
        appends,
        ratio_to_fio: None,
    })
}

/// Appends to the shard's partitions with `depth` appends in flight each until the
/// deadline, then waits until everything is durable (so buffered mode pays for its
/// writes too). Returns (appends, bytes).
async fn drive(
    shard: Rc<Shard>,
    tps: Vec<TopicPartition>,
    batch: Bytes,
    depth: usize,
    deadline: Duration,
    fdatasync: bool,
) -> Result<(u64, u64), String> {
    let start = Instant::now();
    let durability = if fdatasync {
        Durability::Durable
    } else {
        Durability::Buffered
    };
    let mut lanes = Vec::new();
    for tp in &tps {
        let p = shard.partition(tp).map_err(|e| e.to_string())?;
        for _ in 0..depth {
            let p = p.clone();
            let batch = batch.clone();
            // Each lane is its own task, as each producer connection is in the broker,
            // so the executor can run other work between them.
            lanes.push(glommio::spawn_local(async move {
                let mut n = 0u64;
                while start.elapsed() < deadline {
                    // A fresh buffer per append, as a network receive would give.
                    let records = Bytes::copy_from_slice(&batch);
                    p.append(
                        records,
                        AppendOptions {
                            leader_epoch: 0,
                            durability,
                        },
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                    n += 1;
                    // A producer's next batch arrives through a socket read, which
                    // completes when the shard next polls for I/O: wait for a poll.
                    glommio::timer::sleep(Duration::from_micros(1)).await;
                }
                Ok::<u64, String>(n)
            }));
        }
    }
    let counts = futures::future::join_all(lanes).await;
    let mut appends = 0;
    for c in counts {
        appends += c?;
    }
    for tp in &tps {
        let p = shard.partition(tp).map_err(|e| e.to_string())?;
        p.flush().await.map_err(|e| e.to_string())?;
        let o = p.offsets();
        if o.durable_offset != o.log_end_offset {
            return Err(format!(
                "{tp}: durable offset {} below log end {}",
                o.durable_offset, o.log_end_offset
            ));
        }
    }
    Ok((appends, appends * batch.len() as u64))
}

fn dir_log_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            total += dir_log_bytes(&p);
        } else if p.extension().is_some_and(|x| x == "log") {
            total += e.metadata().map_or(0, |m| m.len());
        }
    }
    total
}
