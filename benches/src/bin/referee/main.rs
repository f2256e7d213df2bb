//! `sluice-referee`: the figures issue 15 asks for, measured side by side in one run
//! on one disk, with librdkafka's own benchmark tool (`rdkafka_performance`) and the
//! project's raw client (`sluice-bench --client raw`) against a Sluice broker, next
//! to what `fio` gets from the same disk, in one table with ratios and the issue's
//! targets.
//!
//! ```sh
//! cargo build --release -p sluice -p sluice-benches
//! bash benches/get-rdkafka-performance.sh   # target/rdkafka-perf/rdkafka_performance
//! ./target/release/sluice-referee --dir /mnt/disk-under-test/referee --seconds 10
//! ./target/release/sluice-referee --dir /tmp/r --seconds 3 --only latency --only cache
//! ```
//!
//! Cases (`--only CASE`, repeatable; all by default):
//! - `disk`: fio, 1 MiB O_DIRECT sequential writes without and with `--fdatasync=1`,
//!   1 MiB O_DIRECT sequential reads 16 in flight (io_uring; the reference for cold
//!   consumers), 4 KiB writes each followed by fdatasync (write and fdatasync
//!   percentiles). Other cases measure the references they need themselves.
//! - `produce`: 1 KiB records, 4 partitions, `linger.ms=5`, `batch.size=1000000`,
//!   acks=0 (the client's ceiling), 1 and all; the raw client the same.
//! - `consume-hot`: a fresh topic small enough for the broker's batch cache
//!   (60% of a 1 GiB batch cache per shard), read from the beginning three times (median); the
//!   broker's file reads during them are shown to prove the data came from memory.
//! - `consume-cold`: `--cold-gb` written, the broker restarted (its cache empty) and
//!   the page cache dropped, then read from the beginning by each client; against
//!   fio's read (targets: librdkafka at least 80%, raw at least 90%).
//! - `cache`: acks=1 with `storage.cache_mib_per_shard=1024` against the default
//!   (target: within 10%).
//! - `latency`: acks=all at 50,000 records/s, `linger.ms=1`, each record's latency
//!   (`-l -A`): targets p99 at most 3 ms, p99.9 at most 6 ms; the disk's 4 KiB
//!   write + fdatasync beside it.
//! - `reads-vs-writes`: a producer at half the acks=all maximum, its p99 alone and
//!   while one consumer reads `--history-gb` of cold history (target: at most 2x).
//!
//! `--skip-cold` leaves out the two cases that write gigabytes (`consume-cold`,
//! `reads-vs-writes`). Dropping the page cache needs root.

#![allow(clippy::cast_precision_loss)]

mod cases;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use sluice_benches::broker::{free_port, sibling, start_sluice, Bench, Broker};
use sluice_benches::rdkafka_performance::{Produce, Summary, Tool};
use sluice_benches::{Latency, SyncLatency};

#[derive(Parser, Debug)]
#[command(about = "The figures of issue 15: Sluice with librdkafka and the raw client against fio")]
struct Args {
    /// A directory on the disk under test (fio's files and the broker's data).
    #[arg(long)]
    dir: PathBuf,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// GB (10^9 bytes) of records written and read back cold.
    #[arg(long, default_value_t = 4.0)]
    cold_gb: f64,
    /// GB of history the consumer reads in `reads-vs-writes`.
    #[arg(long, default_value_t = 5.0)]
    history_gb: f64,
    /// MB of records for `consume-hot` (default: 60% of its 1 GiB batch cache of
    /// all shards, one shard per CPU).
    #[arg(long)]
    hot_mb: Option<f64>,
    /// Skip `consume-cold` and `reads-vs-writes` (they write gigabytes).
    #[arg(long)]
    skip_cold: bool,
    /// Run only these cases (repeatable).
    #[arg(long, value_enum)]
    only: Vec<Case>,
    /// The `sluice` binary (default: next to this one).
    #[arg(long)]
    sluice: Option<PathBuf>,
    /// librdkafka's `rdkafka_performance` (default:
    /// target/rdkafka-perf/rdkafka_performance, which
    /// benches/get-rdkafka-performance.sh builds).
    #[arg(long)]
    rdkafka_performance: Option<PathBuf>,
    /// The `sluice-bench` binary (default: next to this one).
    #[arg(long)]
    bench: Option<PathBuf>,
    /// Partitions of every topic.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..=1000))]
    partitions: i32,
    /// Write every row as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
enum Case {
    Disk,
    Produce,
    ConsumeHot,
    ConsumeCold,
    Cache,
    Latency,
    ReadsVsWrites,
}

/// Record size of every case, as the issue has it.
const RECORD_BYTES: usize = 1024;
/// Batch cache per shard of the hot-read case.
const HOT_CACHE_MIB: f64 = 1024.0;
/// The latency case's rate, records per second.
const LATENCY_RATE: f64 = 50_000.0;
/// Hot reads are short; the median of this many is reported.
const HOT_PASSES: usize = 3;

/// What a ratio is held against.
#[derive(Debug, Clone, Copy, serde::Serialize)]
enum Target {
    /// Throughput: the ratio is at least this.
    AtLeast(f64),
    /// Throughput: the ratio is within this of 1.
    Within(f64),
    /// Latency: the ratio is at most this.
    AtMost(f64),
    /// Latency in milliseconds: p99 and p99.9 at most these.
    LatencyMs { p99: f64, p999: f64 },
}

impl Target {
    fn text(self) -> String {
        match self {
            Target::AtLeast(x) => format!(">= {:.0}%", x * 100.0),
            Target::Within(x) => format!("100% +- {:.0}%", x * 100.0),
            Target::AtMost(x) => format!("<= {x:.1}x"),
            Target::LatencyMs { p99, p999 } => format!("p99 <= {p99} ms, p99.9 <= {p999} ms"),
        }
    }

    fn met(self, r: &Row) -> Option<bool> {
        Some(match self {
            Target::AtLeast(x) => r.ratio? >= x,
            Target::Within(x) => (r.ratio? - 1.0).abs() <= x,
            Target::AtMost(x) => r.ratio? <= x,
            Target::LatencyMs { p99, p999 } => r.p99_ms? <= p99 && r.p999_ms? <= p999,
        })
    }

    /// Ratios of latencies read as "1.4x", of throughputs as "87%".
    fn ratio_text(target: Option<Target>, ratio: f64) -> String {
        match target {
            Some(Target::AtMost(_) | Target::LatencyMs { .. }) => format!("{ratio:.2}x"),
            _ => format!("{:.0}%", ratio * 100.0),
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    case: Case,
    what: String,
    mb_per_s: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    p999_ms: Option<f64>,
    /// What the figure is held against, with its value.
    reference: Option<String>,
    ratio: Option<f64>,
    target: Option<Target>,
    met: Option<bool>,
    note: Option<String>,
}

impl Row {
    fn new(case: Case, what: impl Into<String>) -> Row {
        Row {
            case,
            what: what.into(),
            mb_per_s: None,
            p50_ms: None,
            p99_ms: None,
            p999_ms: None,
            reference: None,
            ratio: None,
            target: None,
            met: None,
            note: None,
        }
    }

    fn mb(mut self, mb_per_s: f64) -> Row {
        self.mb_per_s = Some(mb_per_s);
        self
    }

    fn latency(mut self, l: &Latency) -> Row {
        self.p50_ms = Some(l.p50);
        self.p99_ms = Some(l.p99);
        self.p999_ms = Some(l.p999);
        self
    }

    /// Against `reference` (named `name`): `value / reference`.
    fn vs(mut self, name: &str, value: f64, reference: f64) -> Row {
        self.reference = Some(name.to_string());
        self.ratio = (reference > 0.0).then(|| value / reference);
        self
    }

    fn target(mut self, t: Target) -> Row {
        self.target = Some(t);
        self.met = t.met(&self);
        self
    }

    fn note(mut self, n: impl Into<String>) -> Row {
        self.note = Some(n.into());
        self
    }
}

fn case_name(c: Case) -> String {
    c.to_possible_value()
        .map_or_else(|| format!("{c:?}"), |v| v.get_name().to_string())
}

/// The disk's figures, measured once when a case first needs them.
#[derive(Default)]
struct Disk {
    write: Option<f64>,
    write_sync: Option<f64>,
    read: Option<f64>,
    sync_4k: Option<SyncLatency>,
}

/// A broker and its admin endpoint.
struct Node {
    broker: Broker,
    admin: String,
}

struct Referee {
    args: Args,
    sluice: PathBuf,
    perf: PathBuf,
    bench: Bench,
    disk: Disk,
    rows: Vec<Row>,
    /// rdkafka_performance's acks=all records per second, flat out.
    acks_all_max: Option<f64>,
    /// Records in the cold topic `history` of [`Referee::history_dir`] (0: none yet).
    history_records: u64,
}

fn main() {
    let args = Args::parse();
    match Referee::new(args).and_then(Referee::run) {
        Ok(true) => {}
        Ok(false) => std::process::exit(2),
        Err(e) => {
            eprintln!("sluice-referee: {e}");
            std::process::exit(1);
        }
    }
}

impl Referee {
    fn new(args: Args) -> Result<Referee, String> {
        for (flag, gb) in [
            ("--cold-gb", args.cold_gb),
            ("--history-gb", args.history_gb),
        ] {
            if !(gb.is_finite() && gb > 0.0 && gb <= 1000.0) {
                return Err(format!(
                    "{flag} must be a number of GB above 0 and at most 1000"
                ));
            }
        }
        if args
            .hot_mb
            .is_some_and(|mb| !(1.0..=100_000.0).contains(&mb))
        {
            return Err("--hot-mb must be a number of MB from 1 to 100000".into());
        }
        std::fs::create_dir_all(&args.dir).map_err(|e| format!("{}: {e}", args.dir.display()))?;
        let sluice = args.sluice.clone().unwrap_or_else(|| sibling("sluice"));
        let perf = args
            .rdkafka_performance
            .clone()
            .unwrap_or_else(|| sibling("../rdkafka-perf/rdkafka_performance"));
        for (what, path, how) in [
            (
                "sluice",
                &sluice,
                "cargo build --release -p sluice, or --sluice",
            ),
            (
                "rdkafka_performance",
                &perf,
                "bash benches/get-rdkafka-performance.sh, or --rdkafka-performance",
            ),
        ] {
            if !path.is_file() {
                return Err(format!("no {what} at {} ({how})", path.display()));
            }
        }
        let bench = Bench {
            bin: args
                .bench
                .clone()
                .unwrap_or_else(|| sibling("sluice-bench")),
            dir: args.dir.clone(),
            seconds: args.seconds,
            partitions: args.partitions,
        };
        Ok(Referee {
            args,
            sluice,
            perf,
            bench,
            disk: Disk::default(),
            rows: Vec::new(),
            acks_all_max: None,
            history_records: 0,
        })
    }

    fn selected(&self, c: Case) -> bool {
        let cold = matches!(c, Case::ConsumeCold | Case::ReadsVsWrites);
        (self.args.only.is_empty() || self.args.only.contains(&c)) && !(cold && self.args.skip_cold)
    }

    /// Runs the selected cases; a case that fails leaves a row saying why and the
    /// others still run. Returns whether every target measured was met.
    fn run(mut self) -> Result<bool, String> {
        type CaseFn = fn(&mut Referee) -> Result<(), String>;
        let cases: [(Case, CaseFn); 7] = [
            (Case::Disk, Referee::disk_case),
            (Case::Produce, Referee::produce_case),
            (Case::ConsumeHot, Referee::consume_hot_case),
            (Case::ConsumeCold, Referee::consume_cold_case),
            (Case::Cache, Referee::cache_case),
            (Case::Latency, Referee::latency_case),
            (Case::ReadsVsWrites, Referee::reads_vs_writes_case),
        ];
        for (case, f) in cases {
            if !self.selected(case) {
                continue;
            }
            eprintln!("sluice-referee: {} ...", case_name(case));
            if let Err(e) = f(&mut self) {
                eprintln!("sluice-referee: {}: {e}", case_name(case));
                self.rows.push(Row::new(case, "FAILED").note(e));
            }
        }
        let _ = std::fs::remove_dir_all(self.scratch_dir());
        let _ = std::fs::remove_dir_all(self.history_dir());
        // References measured when a case first needed them go with the disk's rows.
        self.rows.sort_by_key(|r| r.case);
        print_table(&self.rows);
        if let Some(path) = &self.args.json {
            let text = serde_json::to_string_pretty(&self.rows).map_err(|e| e.to_string())?;
            std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(self.rows.iter().all(|r| r.met != Some(false)))
    }

    /// Data of the broker of one case, emptied at each start.
    fn scratch_dir(&self) -> PathBuf {
        self.args.dir.join("referee-sluice")
    }

    /// Data holding the cold topic `history`, kept from case to case.
    fn history_dir(&self) -> PathBuf {
        self.args.dir.join("referee-history")
    }

    /// Starts a broker on free ports; `fresh`: on an empty data directory of its
    /// own, else on the one holding the cold history.
    fn start(&self, fresh: bool, sets: &[String]) -> Result<Node, String> {
        let data = if fresh {
            let _ = std::fs::remove_dir_all(self.scratch_dir());
            self.scratch_dir()
        } else {
            self.history_dir()
        };
        let admin = format!("127.0.0.1:{}", free_port()?);
        let mut extra = vec!["--set".to_string(), format!("admin.listen={admin}")];
        for s in sets {
            extra.extend(["--set".to_string(), s.clone()]);
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let broker = start_sluice(&self.sluice, &data, free_port()?, &extra)?;
        Ok(Node { broker, admin })
    }

    fn tool(&self, node: &Node) -> Tool {
        Tool {
            bin: self.perf.clone(),
            bootstrap: node.broker.addr.clone(),
        }
    }

    fn create_topic(&self, node: &Node, topic: &str) -> Result<(), String> {
        let out = std::process::Command::new(&self.sluice)
            .args(["topic", "create", "-b", &node.broker.addr, "-p"])
            .arg(self.args.partitions.to_string())
            .arg(topic)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.sluice.display()))?;
        if !out.status.success() {
            return Err(format!(
                "sluice topic create {topic}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    /// The flat-out producer settings of the issue: 1 KiB records, `linger.ms=5`,
    /// `batch.size=1000000`, for `--seconds`.
    fn flat_out<'a>(&self, topic: &'a str, acks: &'a str) -> Produce<'a> {
        Produce {
            topic,
            record_bytes: RECORD_BYTES,
            acks,
            linger_ms: 5,
            batch_bytes: 1_000_000,
            records: None,
            seconds: self.args.seconds as f64,
            rate: None,
            latency_file: None,
        }
    }

    fn perf_produce(&self, node: &Node, p: &Produce<'_>) -> Result<Summary, String> {
        self.create_topic(node, p.topic)?;
        self.tool(node).produce(p, || false)
    }

    /// `sluice-bench produce --client raw` for `--seconds` into a new topic.
    fn raw_produce(&self, node: &Node, topic: &str, acks: &str) -> Result<f64, String> {
        let v = self.bench.run(
            &node.broker,
            "produce",
            &["--client", "raw", "--topic", topic, "--acks", acks],
        )?;
        v["mb_per_s"]
            .as_f64()
            .ok_or_else(|| "sluice-bench reported no MB/s".into())
    }

    /// `sluice-bench consume --client raw` of the whole topic: MB/s of batches.
    fn raw_consume(&self, node: &Node, topic: &str) -> Result<f64, String> {
        let v = self.bench.run(
            &node.broker,
            "consume",
            &["--client", "raw", "--topic", topic],
        )?;
        v["mb_per_s"]
            .as_f64()
            .ok_or_else(|| "sluice-bench reported no MB/s".into())
    }
}

/// `12.3`, or blank when there is nothing.
fn opt(x: Option<f64>, prec: usize) -> String {
    x.map_or_else(String::new, |x| format!("{x:.prec$}"))
}

fn print_table(rows: &[Row]) {
    println!(
        "{:<58} {:>8} {:>7} {:>7} {:>7}  {:<36} {:>6}  {:<26} {:<4}",
        "measurement", "MB/s", "p50 ms", "p99 ms", "p99.9", "reference", "ratio", "target", "met"
    );
    let mut case = None;
    for r in rows {
        if case != Some(r.case) {
            case = Some(r.case);
            println!("-- {}", case_name(r.case));
        }
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        println!(
            "{:<58} {:>8} {:>7} {:>7} {:>7}  {:<36} {:>6}  {:<26} {:<4}{}",
            r.what,
            opt(r.mb_per_s, 1),
            opt(r.p50_ms, 2),
            opt(r.p99_ms, 2),
            opt(r.p999_ms, 2),
            r.reference.as_deref().unwrap_or(""),
            r.ratio
                .map_or_else(String::new, |x| Target::ratio_text(r.target, x)),
            r.target.map_or_else(String::new, Target::text),
            met,
            r.note
                .as_deref()
                .map_or_else(String::new, |n| format!(" ({n})"))
        );
    }
}

/// Records of 1 KiB in `gb` GB.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // Bounded by the flag checks.
fn records_in_gb(gb: f64) -> u64 {
    (gb * 1e9 / RECORD_BYTES as f64).ceil() as u64
}

/// How long reading `records` may take: at 5 MB/s, and at least a minute.
fn consume_timeout(records: u64) -> Duration {
    Duration::from_secs((records * RECORD_BYTES as u64 / 5_000_000).max(60))
}
