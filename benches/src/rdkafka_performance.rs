//! librdkafka's own benchmark tool, `rdkafka_performance` (librdkafka's
//! `examples/rdkafka_performance.c`, built by `benches/get-rdkafka-performance.sh`),
//! run as a producer or a consumer against a broker.
//!
//! The tool has no time limit of its own: a producer runs until it has sent `-c`
//! records or gets SIGINT, after which it stops producing, stops waiting for
//! deliveries and prints its final summary line (only delivered records count).
//! That summary line, the last one it prints, is what [`Summary`] is read from;
//! with `-l -A FILE` it also writes each delivered record's latency in microseconds,
//! one per line, which [`latency_file`] reads.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::Latency;

/// How long a stopped tool gets to print its summary and exit.
const EXIT_GRACE: Duration = Duration::from_secs(30);

/// The tool and the broker it talks to.
pub struct Tool {
    pub bin: PathBuf,
    pub bootstrap: String,
}

/// One producer run.
#[derive(Debug, Clone)]
pub struct Produce<'a> {
    pub topic: &'a str,
    pub record_bytes: usize,
    /// `acks`: "0", "1" or "all".
    pub acks: &'a str,
    pub linger_ms: u64,
    pub batch_bytes: usize,
    /// Stop after this many records (the run fails if they take longer than
    /// `seconds`); `None`: run for `seconds`.
    pub records: Option<u64>,
    pub seconds: f64,
    /// Records per second (the tool sleeps between records); `None`: flat out.
    pub rate: Option<f64>,
    /// Per-record latencies go here (`-l -A FILE`).
    pub latency_file: Option<&'a Path>,
}

/// The tool's final summary line.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Records delivered (producer) or consumed.
    pub records: u64,
    /// Records the broker refused or that timed out (producer).
    pub failed: u64,
    pub elapsed_ms: u64,
    pub records_per_s: f64,
    /// Record values, 10^6 bytes per second.
    pub mb_per_s: f64,
}

impl Tool {
    /// Runs a producer until it is done, `p.seconds` have passed or `stop` says so.
    pub fn produce(
        &self,
        p: &Produce<'_>,
        mut stop: impl FnMut() -> bool,
    ) -> Result<Summary, String> {
        let mut args = vec![
            "-P".to_string(),
            "-t".into(),
            p.topic.into(),
            "-b".into(),
            self.bootstrap.clone(),
            "-s".into(),
            p.record_bytes.to_string(),
            "-a".into(),
            p.acks.into(),
            "-X".into(),
            format!("linger.ms={}", p.linger_ms),
            "-X".into(),
            format!("batch.size={}", p.batch_bytes),
        ];
        if let Some(n) = p.records {
            args.extend(["-c".into(), count_arg(n)?]);
        }
        if let Some(rate) = p.rate {
            args.extend(["-r".into(), format!("{rate:.0}")]);
        }
        if let Some(file) = p.latency_file {
            args.extend(["-l".into(), "-A".into(), file.display().to_string()]);
        }
        let mut run = Running::spawn(&self.bin, &args)?;
        let deadline = Instant::now() + Duration::from_secs_f64(p.seconds);
        let mut timed_out = false;
        while !run.exited() {
            if stop() || Instant::now() >= deadline {
                timed_out = Instant::now() >= deadline;
                run.interrupt();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (status, out, err) = run.finish(EXIT_GRACE)?;
        if timed_out && p.records.is_some() {
            return Err(format!(
                "rdkafka_performance did not deliver {} records within {:.0} s",
                p.records.unwrap_or(0),
                p.seconds
            ));
        }
        let s = parse_produce(&out).ok_or_else(|| no_summary(status, &out, &err))?;
        if s.records == 0 {
            return Err(format!(
                "rdkafka_performance delivered nothing: {}",
                tail(&out, &err)
            ));
        }
        Ok(s)
    }

    /// Starts a consumer of partitions 0..`partitions` of `topic` from the
    /// beginning, stopping after `records` records or at the end of every
    /// partition; [`Running::consumed`] waits for it.
    pub fn start_consume(
        &self,
        topic: &str,
        partitions: i32,
        records: u64,
    ) -> Result<Running, String> {
        let mut args = vec![
            "-C".to_string(),
            "-t".into(),
            topic.into(),
            "-b".into(),
            self.bootstrap.clone(),
            "-o".into(),
            "beginning".into(),
            "-c".into(),
            count_arg(records)?,
            "-e".into(),
            "-X".into(),
            "enable.partition.eof=true".into(),
        ];
        for p in 0..partitions {
            args.extend(["-p".into(), p.to_string()]);
        }
        Running::spawn(&self.bin, &args)
    }

    /// [`Tool::start_consume`], waited for up to `timeout`.
    pub fn consume(
        &self,
        topic: &str,
        partitions: i32,
        records: u64,
        timeout: Duration,
    ) -> Result<Summary, String> {
        self.start_consume(topic, partitions, records)?
            .consumed(timeout)
    }
}

/// `-c` takes a C int.
fn count_arg(n: u64) -> Result<String, String> {
    i32::try_from(n)
        .map(|n| n.to_string())
        .map_err(|_| format!("rdkafka_performance counts at most {} records", i32::MAX))
}

fn tail(out: &str, err: &str) -> String {
    let last = |s: &str| s.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
    format!("stdout: {}; stderr: {}", last(out), last(err))
}

fn no_summary(status: ExitStatus, out: &str, err: &str) -> String {
    format!(
        "rdkafka_performance printed no summary ({status}): {}",
        tail(out, err)
    )
}

/// A running `rdkafka_performance`, its output collected by two threads so a full
/// pipe never blocks it. Killed if dropped before it was waited for.
pub struct Running {
    child: Child,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
    waited: bool,
}

/// Most output kept of one run; its summary is among the last lines.
const OUTPUT_BYTES_MAX: u64 = 16 << 20;

fn collect(r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let mut r = r.take(OUTPUT_BYTES_MAX);
        let _ = r.read_to_end(&mut bytes);
        // Drain the rest so the tool is never blocked on a full pipe.
        let _ = std::io::copy(&mut r.into_inner(), &mut std::io::sink());
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

impl Running {
    fn spawn(bin: &Path, args: &[String]) -> Result<Running, String> {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run {} (bash benches/get-rdkafka-performance.sh builds it): {e}",
                    bin.display()
                )
            })?;
        let out = child.stdout.take().map(collect);
        let err = child.stderr.take().map(collect);
        Ok(Running {
            child,
            out,
            err,
            waited: false,
        })
    }

    /// Whether the process has ended.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGINT: the tool stops and prints its summary.
    pub fn interrupt(&self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGINT,
            );
        }
    }

    /// Waits up to `timeout` (then SIGINT, and SIGKILL after [`EXIT_GRACE`]) and
    /// returns the exit status, stdout and stderr.
    fn finish(&mut self, timeout: Duration) -> Result<(ExitStatus, String, String), String> {
        let mut deadline = Instant::now() + timeout;
        let mut interrupted = false;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) if !interrupted => {
                    self.interrupt();
                    interrupted = true;
                    deadline = Instant::now() + EXIT_GRACE;
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    break self.child.wait().map_err(|e| e.to_string())?;
                }
                Err(e) => return Err(format!("waiting for rdkafka_performance: {e}")),
            }
        };
        self.waited = true;
        let text =
            |h: Option<JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        Ok((status, text(self.out.take()), text(self.err.take())))
    }

    /// Waits up to `timeout` for a consumer and reads its summary.
    pub fn consumed(mut self, timeout: Duration) -> Result<Summary, String> {
        let start = Instant::now();
        let (status, out, err) = self.finish(timeout)?;
        if start.elapsed() >= timeout {
            return Err(format!(
                "rdkafka_performance did not finish consuming within {} s",
                timeout.as_secs()
            ));
        }
        let s = parse_consume(&out).ok_or_else(|| no_summary(status, &out, &err))?;
        if s.records == 0 {
            return Err(format!(
                "rdkafka_performance consumed nothing: {}",
                tail(&out, &err)
            ));
        }
        Ok(s)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.waited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A number inside a token such as `(204800000`, `967ms:` or `211.77`.
fn number(token: &str) -> Option<f64> {
    token
        .trim_matches(|c: char| !(c.is_ascii_digit() || c == '.'))
        .parse()
        .ok()
}

/// The number in the token before the first token that is `word` (ignoring
/// trailing `)`, `,` and `:`).
fn before(tokens: &[&str], word: &str) -> Option<f64> {
    let i = tokens
        .iter()
        .position(|t| t.trim_end_matches([')', ',', ':']) == word)?;
    number(tokens.get(i.checked_sub(1)?)?)
}

/// The number in the token after the first `word`.
fn after(tokens: &[&str], word: &str) -> Option<f64> {
    let i = tokens.iter().position(|t| *t == word)?;
    number(tokens.get(i + 1)?)
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // Counts.
fn summary(line: &str, records_word: &str, failed: bool, mb_word: &str) -> Option<Summary> {
    let t: Vec<&str> = line.split_whitespace().collect();
    Some(Summary {
        records: before(&t, records_word)? as u64,
        failed: if failed {
            before(&t, "failed")? as u64
        } else {
            0
        },
        elapsed_ms: after(&t, "in")? as u64,
        records_per_s: before(&t, "msgs/s")?,
        mb_per_s: before(&t, mb_word)?,
    })
}

/// The producer's last summary:
/// `% 200000 messages produced (204800000 bytes), 200000 delivered (offset 60340,
/// 0 failed) in 967ms: 206808 msgs/s and 211.77 MB/s, 51 produce failures, ...`
pub fn parse_produce(stdout: &str) -> Option<Summary> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("% ") && l.contains(" messages produced ("))?;
    summary(line, "delivered", true, "MB/s")
}

/// The consumer's last summary:
/// `% 200000 messages (204800000 bytes) consumed in 510ms: 391613 msgs/s (401.01 MB/s)`
pub fn parse_consume(stdout: &str) -> Option<Summary> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("% ") && l.contains(" bytes) consumed in "))?;
    summary(line, "messages", false, "MB/s")
}

/// Most lines read of a latency file: 100 s at 1,000,000 records per second.
const LATENCY_LINES_MAX: usize = 100_000_000;

/// The latencies `-A FILE` wrote (microseconds, one per line).
pub fn latency_file(path: &Path) -> Result<Latency, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let mut hist = crate::micros_histogram();
    for line in text.lines().take(LATENCY_LINES_MAX) {
        let us: u64 = line
            .trim()
            .parse()
            .map_err(|_| format!("{}: not a latency: {line:?}", path.display()))?;
        hist.saturating_record(us.max(1));
    }
    if hist.is_empty() {
        return Err(format!("{}: no latencies", path.display()));
    }
    Ok(Latency::of(&hist))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_summary() {
        let out = "% Sending 200000 messages of size 1024 bytes\n\
            % 100 messages produced (102400 bytes), 90 delivered (offset 1, 0 failed) in 5ms: 18000 msgs/s and 18.43 MB/s, 0 produce failures, 10 in queue, no compression\n\
            % 51 backpressures for 200000 produce calls: 0.026% backpressure rate\n\
            % 200000 messages produced (204800000 bytes), 200000 delivered (offset 60340, 3 failed) in 967ms: 206808 msgs/s and 211.77 MB/s, 51 produce failures, 0 in queue, no compression\n";
        assert_eq!(
            parse_produce(out),
            Some(Summary {
                records: 200_000,
                failed: 3,
                elapsed_ms: 967,
                records_per_s: 206_808.0,
                mb_per_s: 211.77,
            })
        );
    }

    #[test]
    fn consume_summary() {
        let out = "% Consumer reached end of t1 [2] message queue at offset 38322\n\
            % 200000 messages (204800000 bytes) consumed in 510ms: 391613 msgs/s (401.01 MB/s)\n\
            % Average application fetch latency: 5us\n";
        assert_eq!(
            parse_consume(out),
            Some(Summary {
                records: 200_000,
                failed: 0,
                elapsed_ms: 510,
                records_per_s: 391_613.0,
                mb_per_s: 401.01,
            })
        );
    }

    #[test]
    fn no_summary_is_none() {
        assert_eq!(parse_produce("% ERROR CALLBACK: all brokers down\n"), None);
        assert_eq!(parse_consume(""), None);
        assert_eq!(
            parse_consume("% 5 messages (x bytes) consumed in ms: \n"),
            None
        );
    }

    #[test]
    fn latency_lines() {
        let dir = std::env::temp_dir().join(format!("rdperf-lat-{}", std::process::id()));
        std::fs::write(&dir, "1000\n2000\n3000\n").unwrap();
        let l = latency_file(&dir).unwrap();
        assert_eq!(l.samples, 3);
        assert!((l.p50 - 2.0).abs() < 0.01, "{l:?}");
        std::fs::write(&dir, "12\nnope\n").unwrap();
        assert!(latency_file(&dir).is_err());
        std::fs::remove_file(&dir).unwrap();
    }
}
