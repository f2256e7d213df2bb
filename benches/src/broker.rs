//! Broker processes for the benchmark binaries: start `sluice serve`, wait until it
//! listens, stop it when dropped, read its metrics, and run `sluice-bench` scenarios
//! against it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A binary next to the running one (the other benchmark binaries, `sluice`).
pub fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// A broker process stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Broker {
    pub child: Child,
    pub addr: String,
}

impl Broker {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits up to 30 s for `addr` to accept connections.
pub fn wait_listening(addr: &str, child: &mut Child, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited before listening: {status}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{what} did not listen on {addr} within 30 s"))
}

/// `sluice serve` on `data` and 127.0.0.1:`port`, with `extra` arguments; its log
/// goes next to `data` (`data.log`).
pub fn start_sluice(bin: &Path, data: &Path, port: u16, extra: &[&str]) -> Result<Broker, String> {
    let addr = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(data.with_extension("log")).map_err(|e| e.to_string())?;
    let mut child = Command::new(bin)
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", &addr])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    wait_listening(&addr, &mut child, "sluice")?;
    Ok(Broker { child, addr })
}

/// Runs one `sluice-bench` scenario against `broker` (with its pid, so the broker's
/// CPU and memory are measured) and reads its JSON report.
pub fn run_bench(
    bin: &Path,
    scenario: &str,
    broker: &Broker,
    args: &[String],
    out_file: &Path,
) -> Result<serde_json::Value, String> {
    let pid = broker.pid().to_string();
    let out = Command::new(bin)
        .arg(scenario)
        .args(["--bootstrap", &broker.addr, "--broker-pid", &pid])
        .args(args)
        .arg("--json")
        .arg(out_file)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "sluice-bench {scenario} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    let text = std::fs::read_to_string(out_file).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(out_file);
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

/// `sluice-bench` run with the same length and partition count for every scenario.
pub struct Bench {
    /// The `sluice-bench` binary.
    pub bin: PathBuf,
    /// Where its JSON reports are written for a moment.
    pub dir: PathBuf,
    /// Length of a produce run in seconds.
    pub seconds: u64,
    pub partitions: i32,
}

impl Bench {
    /// Runs one scenario with `extra` arguments and reads its JSON report. Consumers
    /// read what was written, however long that takes (up to 30 minutes).
    pub fn run(
        &self,
        broker: &Broker,
        scenario: &str,
        extra: &[&str],
    ) -> Result<serde_json::Value, String> {
        let seconds = if scenario == "consume" {
            1800
        } else {
            self.seconds
        };
        let out_file = self.dir.join(format!("bench-{}.json", std::process::id()));
        let mut all: Vec<String> = vec![
            "--seconds".into(),
            seconds.to_string(),
            "--partitions".into(),
            self.partitions.to_string(),
        ];
        all.extend(extra.iter().map(|e| (*e).to_string()));
        run_bench(&self.bin, scenario, broker, &all, &out_file)
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's choice),
/// so brokers of a benchmark do not collide with anything else on the machine.
pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Most bytes read of a /metrics answer; a node with thousands of partitions
/// answers a few MiB.
const METRICS_BYTES_MAX: u64 = 64 << 20;

/// The sum over all label sets of the metric `name` on a broker's admin endpoint
/// (`host:port`, its /metrics in Prometheus' text format).
pub fn metric_sum(admin: &str, name: &str) -> Result<f64, String> {
    let text = metrics_text(admin)?;
    let (mut sum, mut found) = (0.0, false);
    for (_, v) in series(&text, name) {
        sum += v;
        found = true;
    }
    if !found {
        return Err(format!("http://{admin}/metrics has no {name}"));
    }
    Ok(sum)
}

/// `(labels, value)` of every series of the metric `name` in Prometheus' text format.
fn series<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    text.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        // `name{labels} value` or `name value`; not `name_longer ...`.
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            return None;
        }
        let (labels, value) = rest.rsplit_once(' ')?;
        Some((labels, value.parse::<f64>().ok()?))
    })
}

/// Quantiles `qs` (0..1), in milliseconds, of the histogram `name` summed over
/// the series whose labels contain `filter`: each is the upper bound of the bucket
/// that holds it (so "at most"). `None` when no observation matched.
pub fn histogram_quantiles_ms(
    admin: &str,
    name: &str,
    filter: &str,
    qs: &[f64],
) -> Result<Option<Vec<f64>>, String> {
    Ok(quantiles_in(&metrics_text(admin)?, name, filter, qs))
}

fn quantiles_in(text: &str, name: &str, filter: &str, qs: &[f64]) -> Option<Vec<f64>> {
    let bucket = format!("{name}_bucket");
    let mut by_le: Vec<(f64, f64)> = Vec::new();
    for (labels, count) in series(text, &bucket) {
        if !labels.contains(filter) {
            continue;
        }
        let Some(le) = labels
            .split("le=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .and_then(|v| {
                if v == "+Inf" {
                    Some(f64::INFINITY)
                } else {
                    v.parse().ok()
                }
            })
        else {
            continue;
        };
        match by_le.iter_mut().find(|(l, _)| l.total_cmp(&le).is_eq()) {
            Some((_, c)) => *c += count,
            None => by_le.push((le, count)),
        }
    }
    by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
    let &(_, total) = by_le.last()?;
    if total <= 0.0 {
        return None;
    }
    Some(
        qs.iter()
            .map(|q| {
                by_le
                    .iter()
                    .find(|(_, c)| *c >= q * total)
                    .map_or(f64::INFINITY, |(le, _)| le * 1000.0)
            })
            .collect(),
    )
}

/// The text of a broker's /metrics.
fn metrics_text(admin: &str) -> Result<String, String> {
    let fail = |e: std::io::Error| format!("GET http://{admin}/metrics: {e}");
    let mut s = TcpStream::connect(admin).map_err(fail)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(fail)?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .map_err(fail)?;
    let mut text = String::new();
    s.take(METRICS_BYTES_MAX)
        .read_to_string(&mut text)
        .map_err(fail)?;
    if !text.starts_with("HTTP/1.1 200") {
        let status = text.lines().next().unwrap_or("no answer");
        return Err(format!("GET http://{admin}/metrics: {status}"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_add_up_the_matching_series() {
        let text = "\
# TYPE h histogram
h_bucket{le=\"0.001\",api=\"Produce\"} 50
h_bucket{le=\"0.01\",api=\"Produce\"} 99
h_bucket{le=\"+Inf\",api=\"Produce\"} 100
h_bucket{le=\"0.001\",api=\"Fetch\"} 0
h_bucket{le=\"0.01\",api=\"Fetch\"} 0
h_bucket{le=\"+Inf\",api=\"Fetch\"} 1000
h_count{api=\"Produce\"} 100
";
        let q = quantiles_in(text, "h", "api=\"Produce\"", &[0.5, 0.99, 0.999]).unwrap();
        assert!((q[0] - 1.0).abs() < 1e-9, "{q:?}");
        assert!((q[1] - 10.0).abs() < 1e-9, "{q:?}");
        assert!(q[2].is_infinite());
        // Every series: the Fetch ones dominate.
        let all = quantiles_in(text, "h", "", &[0.5]).unwrap();
        assert!(all[0].is_infinite());
        assert!(quantiles_in(text, "h", "api=\"Metadata\"", &[0.5]).is_none());
        assert!(quantiles_in(text, "nothing", "", &[0.5]).is_none());
    }
}
