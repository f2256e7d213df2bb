//! `scrape-overhead`: what Prometheus scraping costs the data path. One Sluice
//! node; `sluice-bench produce` at full speed in rounds, alternating rounds with no
//! scraper and rounds with a scraper fetching `/metrics` `--hz` times a second (a
//! new connection each time, as the admin endpoint closes it); prints each round,
//! the medians and the change in produce throughput.
//!
//! ```sh
//! cargo build --release -p sluice -p sluice-benches
//! ./target/release/scrape-overhead --dir /work/bench-data --seconds 5 --rounds 3 --hz 100
//! ```

#![allow(clippy::cast_precision_loss)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use sluice_benches::broker::{run_bench, sibling, start_sluice};

#[derive(Parser, Debug)]
#[command(about = "Produce throughput with and without /metrics scraped N times a second")]
struct Args {
    /// A directory on the disk under test (Sluice's data goes here).
    #[arg(long)]
    dir: PathBuf,
    /// Seconds per round.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds of each kind (off and on alternate, the order flipping each round).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Scrapes per second in the scraped rounds.
    #[arg(long, default_value_t = 100)]
    hz: u32,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// acks of the producer (1 or all).
    #[arg(long, default_value = "1")]
    acks: String,
    /// Bytes per record (small records make the broker CPU-bound, not disk-bound).
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
}

/// What the scraper saw in one round.
#[derive(Default)]
struct Scrapes {
    count: usize,
    failed: usize,
    micros: Vec<u64>,
    bytes: usize,
    seconds: f64,
}

fn scrape_once(addr: &str) -> Result<usize, String> {
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(64 * 1024);
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    if !out.starts_with(b"HTTP/1.1 200") {
        return Err("not 200".into());
    }
    Ok(out.len())
}

fn scraper(addr: String, hz: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Scrapes> {
    std::thread::spawn(move || {
        let mut s = Scrapes::default();
        let period = Duration::from_secs(1) / hz.max(1);
        let start = Instant::now();
        let mut next = start;
        while !stop.load(Ordering::SeqCst) {
            let t = Instant::now();
            match scrape_once(&addr) {
                Ok(n) => {
                    s.count += 1;
                    s.bytes = n;
                    s.micros
                        .push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                }
                Err(_) => s.failed += 1,
            }
            next += period;
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
        s.seconds = start.elapsed().as_secs_f64();
        s
    })
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = (i as usize).min(sorted.len() - 1);
    sorted[i] as f64 / 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// The scraper's columns of a round: scrapes/s, p50, p99, body KiB.
fn columns(s: Option<&Scrapes>) -> (String, String, String, String) {
    let Some(s) = s else {
        return ("-".into(), "-".into(), "-".into(), "-".into());
    };
    let mut m = s.micros.clone();
    m.sort_unstable();
    if s.failed > 0 {
        eprintln!("{} scrapes failed", s.failed);
    }
    (
        format!("{:.1}", s.count as f64 / s.seconds.max(1e-9)),
        format!("{:.2} ms", percentile(&m, 0.5)),
        format!("{:.2} ms", percentile(&m, 0.99)),
        format!("{:.1}", s.bytes as f64 / 1024.0),
    )
}

/// Medians of both kinds of round and the per-round changes.
fn summary(hz: u32, off: &[f64], on: &[f64]) {
    // Each round's two runs ran back to back: their ratio is less exposed to the
    // disk's and the machine's slow drifts than the medians are.
    let paired: Vec<f64> = on
        .iter()
        .zip(off)
        .map(|(a, b)| (a / b - 1.0) * 100.0)
        .collect();
    let (m_off, m_on) = (median(off.to_vec()), median(on.to_vec()));
    println!(
        "\nmedian produce: {m_off:.1} MB/s without scraping, {m_on:.1} MB/s scraped {} times a second: {:+.1}%",
        hz,
        (m_on / m_off - 1.0) * 100.0
    );
    println!(
        "per-round change (scraped vs not, same round): {}; median {:+.1}%",
        paired
            .iter()
            .map(|p| format!("{p:+.1}%"))
            .collect::<Vec<_>>()
            .join(" "),
        median(paired.clone())
    );
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("scrape-overhead: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let data = args.dir.join("scrape-overhead-data");
    let _ = std::fs::remove_dir_all(&data);
    let admin = "127.0.0.1:15211";
    let broker = start_sluice(
        &sibling("sluice"),
        &data,
        15210,
        &["--set", &format!("admin.listen={admin}")],
    )?;
    let bench = sibling("sluice-bench");
    let out_file = args.dir.join(format!("scrape-{}.json", std::process::id()));
    let bench_args: Vec<String> = [
        "--topic",
        "scraped",
        "--acks",
        &args.acks,
        "--seconds",
        &args.seconds.to_string(),
        "--partitions",
        &args.partitions.to_string(),
        "--record-bytes",
        &args.record_bytes.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    println!(
        "{:<6} {:<8} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12} {:>10}",
        "round",
        "scraper",
        "MB/s",
        "p99 ms",
        "cpu s",
        "scrapes/s",
        "scrape p50",
        "scrape p99",
        "body KiB"
    );
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for scraping in order {
            let stop = Arc::new(AtomicBool::new(false));
            let handle = scraping.then(|| scraper(admin.to_string(), args.hz, stop.clone()));
            let v = run_bench(&bench, "produce", &broker, &bench_args, &out_file);
            stop.store(true, Ordering::SeqCst);
            let s = handle.map(|h| h.join().unwrap_or_default());
            let v = v?;
            let mb = v["mb_per_s"].as_f64().unwrap_or(0.0);
            let p99 = v["latency_us_p99"].as_f64().unwrap_or(0.0) / 1000.0;
            let cpu = v["broker"]["cpu_seconds"].as_f64().unwrap_or(0.0);
            let (rate, p50s, p99s, kib) = columns(s.as_ref());
            println!(
                "{:<6} {:<8} {:>10.1} {:>10.2} {:>10.2} {:>10} {:>12} {:>12} {:>10}",
                round + 1,
                if scraping {
                    format!("{} Hz", args.hz)
                } else {
                    "off".into()
                },
                mb,
                p99,
                cpu,
                rate,
                p50s,
                p99s,
                kib
            );
            if scraping {
                on.push(mb);
            } else {
                off.push(mb);
            }
        }
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(&data);
    summary(args.hz, &off, &on);
    Ok(())
}
