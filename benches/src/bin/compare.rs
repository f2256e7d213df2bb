//! `sluice-compare`: one invocation that measures, on the same disk and loopback, the
//! machine's limits (`fio` 1 MiB O_DIRECT sequential writes without sync and with
//! `--fdatasync=1`; `iperf3` over loopback), Sluice, and the peer broker Tansu under
//! the same workloads with the same client (`sluice-bench`), and prints one table
//! with ratios.
//!
//! ```sh
//! cargo build --release -p sluice -p sluice-benches
//! bash benches/get-tansu.sh            # puts Tansu's binary in target/tansu/tansu
//! ./target/release/sluice-compare --dir /work/bench-data --seconds 5
//! ```

#![allow(clippy::cast_precision_loss)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::Parser;
use sluice_benches::broker::{sibling, start_sluice, wait_listening, Bench, Broker};

#[derive(Parser, Debug)]
#[command(about = "Sluice against fio, iperf3 and Tansu, side by side in one run")]
struct Args {
    /// A directory on the disk under test (data of fio and Sluice go here).
    #[arg(long)]
    dir: PathBuf,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// The `sluice` binary (default: next to this one).
    #[arg(long)]
    sluice: Option<PathBuf>,
    /// The `sluice-bench` binary (default: next to this one).
    #[arg(long)]
    bench: Option<PathBuf>,
    /// Tansu's binary (default: target/tansu/tansu, which benches/get-tansu.sh
    /// fetches); without it Tansu's rows are skipped with a note.
    #[arg(long)]
    tansu: Option<PathBuf>,
    /// Partitions of the benchmark topics.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Write every figure as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One measured row.
#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    what: String,
    mb_per_s: f64,
    p99_ms: Option<f64>,
    reference: Option<String>,
    ratio: Option<f64>,
    broker_cpu_s: Option<f64>,
    broker_rss_mib: Option<f64>,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("sluice-compare: {e}");
        std::process::exit(1);
    }
}

fn start_tansu(bin: &Path, port: u16) -> Result<Broker, String> {
    let addr = format!("127.0.0.1:{port}");
    let url = format!("tcp://{addr}");
    let mut child = Command::new(bin)
        .args(["broker", "--listener-url", &url])
        .args(["--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    wait_listening(&addr, &mut child, "tansu")?;
    Ok(Broker { child, addr })
}

/// Runs one `sluice-bench` scenario and reads its JSON report.
fn bench(
    args: &Args,
    broker: &Broker,
    scenario: &str,
    extra: &[&str],
) -> Result<serde_json::Value, String> {
    Bench {
        bin: args
            .bench
            .clone()
            .unwrap_or_else(|| sibling("sluice-bench")),
        dir: args.dir.clone(),
        seconds: args.seconds,
        partitions: args.partitions,
    }
    .run(broker, scenario, extra)
}

fn row(what: &str, v: &serde_json::Value, reference: Option<(&str, f64)>) -> Row {
    let mb = v["mb_per_s"].as_f64().unwrap_or(0.0);
    Row {
        what: what.into(),
        mb_per_s: mb,
        p99_ms: v["latency_us_p99"].as_f64().map(|us| us / 1000.0),
        reference: reference.map(|(r, _)| r.to_string()),
        ratio: reference.map(|(_, r)| mb / r),
        broker_cpu_s: v["broker"]["cpu_seconds"].as_f64(),
        broker_rss_mib: v["broker"]["rss_peak_mib"].as_f64(),
    }
}

/// One librdkafka workload run against both brokers.
struct RdkafkaWorkload {
    name: &'static str,
    acks: &'static str,
    /// Records per second; `None`: as fast as the client goes.
    rate: Option<&'static str>,
    /// Read the topic back afterwards.
    consume: bool,
}

const RDKAFKA_WORKLOADS: &[RdkafkaWorkload] = &[
    RdkafkaWorkload {
        name: "acks=1",
        acks: "1",
        rate: None,
        consume: true,
    },
    RdkafkaWorkload {
        name: "acks=all",
        acks: "all",
        rate: None,
        consume: true,
    },
    // No answers to wait for: what the client itself can send on this machine.
    RdkafkaWorkload {
        name: "acks=0 (the client's own ceiling)",
        acks: "0",
        rate: None,
        consume: false,
    },
    // Flat-out runs queue records inside librdkafka, so their latency is queueing;
    // at a rate both brokers sustain, p99 is the broker's.
    RdkafkaWorkload {
        name: "acks=1 at 50,000 rec/s",
        acks: "1",
        rate: Some("50000"),
        consume: false,
    },
    RdkafkaWorkload {
        name: "acks=all at 50,000 rec/s",
        acks: "all",
        rate: Some("50000"),
        consume: false,
    },
];

/// Runs one rdkafka workload: the produce figures and, if asked, the consume ones.
fn rdkafka_run(
    args: &Args,
    broker: &Broker,
    w: &RdkafkaWorkload,
) -> Result<(serde_json::Value, Option<serde_json::Value>), String> {
    let topic = format!(
        "rd-{}",
        w.name.replace(|c: char| !c.is_ascii_alphanumeric(), "")
    );
    let mut produce = vec!["--client", "rdkafka", "--topic", &topic, "--acks", w.acks];
    if let Some(rate) = w.rate {
        produce.extend(["--rate", rate]);
    }
    let p = bench(args, broker, "produce", &produce)?;
    let c = if w.consume {
        Some(bench(
            args,
            broker,
            "consume",
            &["--client", "rdkafka", "--topic", &topic],
        )?)
    } else {
        None
    };
    Ok((p, c))
}

fn reference_row(what: &str, mb: f64) -> Row {
    Row {
        what: what.into(),
        mb_per_s: mb,
        p99_ms: None,
        reference: None,
        ratio: None,
        broker_cpu_s: None,
        broker_rss_mib: None,
    }
}

#[allow(clippy::too_many_lines)]
fn run(args: &Args) -> Result<(), String> {
    std::fs::create_dir_all(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let sluice_bin = args.sluice.clone().unwrap_or_else(|| sibling("sluice"));
    let tansu_bin = args.tansu.clone().or_else(|| {
        let p = sibling("../tansu/tansu");
        p.exists().then_some(p)
    });
    let mut rows = Vec::new();

    eprintln!("fio and iperf3 ...");
    let fio_nosync = sluice_benches::fio(
        &args.dir,
        false,
        args.seconds,
        sluice_benches::FioSpace::Fresh,
    )?;
    let fio_sync = sluice_benches::fio(
        &args.dir,
        true,
        args.seconds,
        sluice_benches::FioSpace::Fresh,
    )?;
    let fio_read = sluice_benches::fio_read(&args.dir, args.seconds, 1)?;
    let iperf = sluice_benches::iperf3_loopback(args.seconds, 15201)?;
    rows.push(reference_row("fio 1 MiB O_DIRECT write", fio_nosync));
    rows.push(reference_row(
        "fio 1 MiB O_DIRECT write --fdatasync=1",
        fio_sync,
    ));
    rows.push(reference_row("fio 1 MiB O_DIRECT read", fio_read));
    rows.push(reference_row("iperf3 loopback, 1 stream", iperf));

    let data = args.dir.join("sluice-data");
    let _ = std::fs::remove_dir_all(&data);
    let mut rd_sluice = Vec::new();
    let latency_rate;
    {
        eprintln!("sluice, raw client ...");
        let s = start_sluice(&sluice_bin, &data, 15202, &[])?;
        let v = bench(
            args,
            &s,
            "produce",
            &["--topic", "raw-acks1", "--acks", "1"],
        )?;
        rows.push(row(
            "sluice produce raw acks=1",
            &v,
            Some(("fio", fio_nosync)),
        ));
        let v = bench(
            args,
            &s,
            "produce",
            &["--topic", "raw-acksall", "--acks", "all"],
        )?;
        rows.push(row(
            "sluice produce raw acks=all",
            &v,
            Some(("fio --fdatasync=1", fio_sync)),
        ));
        let v = bench(args, &s, "consume", &["--topic", "raw-acks1"])?;
        rows.push(row(
            "sluice consume raw (on disk)",
            &v,
            Some(("iperf3", iperf)),
        ));
        rows.push(row(
            "sluice consume raw (on disk), against the disk",
            &v,
            Some(("fio read", fio_read)),
        ));
        // Latency at half of the maximum, with 100-record (100 KiB) batches: at this
        // size one write and fdatasync of a batch is what the disk's latency is.
        let max = bench(
            args,
            &s,
            "produce",
            &[
                "--topic",
                "raw-lat-max",
                "--acks",
                "all",
                "--batch-records",
                "100",
            ],
        )?;
        rows.push(row(
            "sluice produce raw acks=all, 100-record batches",
            &max,
            None,
        ));
        latency_rate = max["records_per_s"].as_f64().unwrap_or(0.0) / 2.0;
        let half = format!("{latency_rate:.0}");
        let v = bench(
            args,
            &s,
            "produce",
            &[
                "--topic",
                "raw-lat-half",
                "--acks",
                "all",
                "--batch-records",
                "100",
                "--rate",
                &half,
            ],
        )?;
        rows.push(row(
            &format!("sluice produce raw acks=all, 100-record batches, {half} rec/s"),
            &v,
            None,
        ));
        eprintln!("sluice, rdkafka client ...");
        for w in RDKAFKA_WORKLOADS {
            rd_sluice.push(rdkafka_run(args, &s, w)?);
        }
    }
    let _ = std::fs::remove_dir_all(&data);
    // The same appends on the disk alone: 100-record batches falling due at the same
    // rate, each group of due batches written and fdatasynced at once, latency from
    // each batch's due time as sluice-bench measures it.
    let value = vec![b'v'; 1024];
    let batch_bytes = sluice_engine::batch::build_values_batch(
        &vec![value.as_slice(); 100],
        0,
        sluice_engine::batch::NO_PRODUCER,
    )
    .len();
    let disk_lat = sluice_benches::disk_sync_latency(
        &args.dir,
        args.seconds,
        batch_bytes,
        latency_rate / 100.0,
        None,
    )?;
    rows.push(Row {
        p99_ms: Some(disk_lat.p99),
        ..reference_row(
            "disk alone: the same batches at the same rate, group write + fdatasync",
            latency_rate * 1024.0 / 1e6,
        )
    });

    let mut tansu_rows = Vec::new();
    if let Some(bin) = &tansu_bin {
        eprintln!("tansu, rdkafka client ...");
        let t = start_tansu(bin, 15203)?;
        for (w, (p, c)) in RDKAFKA_WORKLOADS.iter().zip(&rd_sluice) {
            let (tp, tc) = rdkafka_run(args, &t, w)?;
            // Throughput is compared where both run flat out; at a fixed rate, p99.
            let vs = |v: &serde_json::Value| {
                (w.rate.is_none()).then(|| ("tansu", v["mb_per_s"].as_f64().unwrap_or(0.0)))
            };
            rows.push(row(
                &format!("sluice produce rdkafka {}", w.name),
                p,
                vs(&tp),
            ));
            tansu_rows.push(row(
                &format!("tansu produce rdkafka {} (memory)", w.name),
                &tp,
                None,
            ));
            if let (Some(c), Some(tc)) = (c, &tc) {
                rows.push(row(
                    &format!("sluice consume rdkafka ({} data)", w.name),
                    c,
                    vs(tc),
                ));
                tansu_rows.push(row(
                    &format!("tansu consume rdkafka ({} data)", w.name),
                    tc,
                    None,
                ));
            }
        }
    } else {
        eprintln!(
            "tansu: no binary (run benches/get-tansu.sh or pass --tansu); its rows are skipped"
        );
        for (w, (p, c)) in RDKAFKA_WORKLOADS.iter().zip(&rd_sluice) {
            rows.push(row(&format!("sluice produce rdkafka {}", w.name), p, None));
            if let Some(c) = c {
                rows.push(row(
                    &format!("sluice consume rdkafka ({} data)", w.name),
                    c,
                    None,
                ));
            }
        }
    }
    rows.extend(tansu_rows);

    println!(
        "{:<66} {:>9} {:>9} {:>22} {:>8} {:>8}",
        "measurement", "MB/s", "p99 ms", "vs", "cpu s", "rss MiB"
    );
    for r in &rows {
        let vs = match (&r.reference, r.ratio) {
            (Some(name), Some(x)) => format!("{:.0}% of {name}", x * 100.0),
            _ => String::new(),
        };
        let opt =
            |x: Option<f64>, prec: usize| x.map_or_else(String::new, |x| format!("{x:.prec$}"));
        println!(
            "{:<66} {:>9.1} {:>9} {:>22} {:>8} {:>8}",
            r.what,
            r.mb_per_s,
            opt(r.p99_ms, 2),
            vs,
            opt(r.broker_cpu_s, 1),
            opt(r.broker_rss_mib, 0)
        );
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
