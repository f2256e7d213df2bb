//! Broker processes for the benchmark binaries: start `sluice serve`, wait until it
//! listens, stop it when dropped, and run `sluice-bench` scenarios against it.

use std::net::TcpStream;
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
