//! Figures of one run: throughput, latency percentiles, and the broker process's CPU
//! time and memory read from `/proc`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies in microseconds, 1 µs to 100 s, 3 significant digits.
#[allow(clippy::expect_used)] // Constant bounds that hdrhistogram accepts.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// A process's CPU seconds (user + system) and resident memory.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcUsage {
    pub cpu_seconds: f64,
    pub rss_peak_mib: f64,
}

/// CPU seconds (user + system) of `pid` so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // In USER_HZ, which Linux fixes at 100 for /proc (sysconf(_SC_CLK_TCK)).
    Some((utime + stime) / 100.0)
}

/// Resident memory of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a process's memory every 50 ms while a run goes on.
pub struct ProcWatch {
    pid: u32,
    cpu_start: f64,
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<u64>,
}

impl ProcWatch {
    pub fn start(pid: u32) -> ProcWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let sampler = std::thread::spawn(move || {
            let mut peak = 0;
            while !s.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak.max(rss_kib(pid).unwrap_or(0))
        });
        ProcWatch {
            pid,
            cpu_start: cpu_seconds(pid).unwrap_or(0.0),
            stop,
            sampler,
        }
    }

    pub fn finish(self) -> ProcUsage {
        self.stop.store(true, Ordering::Relaxed);
        let peak = self.sampler.join().unwrap_or(0);
        #[allow(clippy::cast_precision_loss)]
        ProcUsage {
            cpu_seconds: cpu_seconds(self.pid).unwrap_or(0.0) - self.cpu_start,
            rss_peak_mib: peak as f64 / 1024.0,
        }
    }
}

/// What one scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub client: String,
    pub seconds: f64,
    pub records: u64,
    pub bytes: u64,
    pub mb_per_s: f64,
    pub records_per_s: f64,
    /// `None` when nothing was measured (acks=0, the rdkafka consumer's reads).
    pub latency_us_p50: Option<u64>,
    pub latency_us_p99: Option<u64>,
    pub latency_us_p999: Option<u64>,
    pub latency_us_max: Option<u64>,
    pub broker: Option<ProcUsage>,
}

impl Report {
    #[allow(clippy::cast_precision_loss)]
    pub fn new(
        scenario: &str,
        client: &str,
        elapsed: Duration,
        records: u64,
        bytes: u64,
        latency: &Histogram<u64>,
        broker: Option<ProcUsage>,
    ) -> Report {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let q = |q: f64| (!latency.is_empty()).then(|| latency.value_at_quantile(q));
        Report {
            scenario: scenario.into(),
            client: client.into(),
            seconds: secs,
            records,
            bytes,
            mb_per_s: bytes as f64 / secs / 1e6,
            records_per_s: records as f64 / secs,
            latency_us_p50: q(0.5),
            latency_us_p99: q(0.99),
            latency_us_p999: q(0.999),
            latency_us_max: (!latency.is_empty()).then(|| latency.max()),
            broker,
        }
    }

    pub fn print_header() {
        println!(
            "{:<10} {:<8} {:>9} {:>12} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
            "scenario",
            "client",
            "MB/s",
            "records/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "cpu s",
            "rss MiB"
        );
    }

    #[allow(clippy::cast_precision_loss)]
    pub fn print_row(&self) {
        let ms = |us: Option<u64>| {
            us.map_or_else(
                || "-".to_string(),
                |us| format!("{:.2}", us as f64 / 1000.0),
            )
        };
        let (cpu, rss) = self
            .broker
            .map_or((f64::NAN, f64::NAN), |b| (b.cpu_seconds, b.rss_peak_mib));
        println!(
            "{:<10} {:<8} {:>9.1} {:>12.0} {:>9} {:>9} {:>9} {:>9} {:>8.2} {:>8.1}",
            self.scenario,
            self.client,
            self.mb_per_s,
            self.records_per_s,
            ms(self.latency_us_p50),
            ms(self.latency_us_p99),
            ms(self.latency_us_p999),
            ms(self.latency_us_max),
            cpu,
            rss
        );
    }
}

/// Waits until `at`, sleeping; returns at once when it has passed.
pub fn wait_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}
