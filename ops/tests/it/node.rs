//! A real `sluice serve` process on a temporary data directory and a loopback port,
//! stopped with SIGTERM (or killed with SIGKILL) by the tests.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub struct Node {
    child: Option<Child>,
    dir: tempfile::TempDir,
    config: Option<PathBuf>,
    /// `127.0.0.1:port`, the same across restarts.
    pub addr: String,
    starts: usize,
    /// Extra environment variables for `sluice serve`.
    envs: Vec<(String, String)>,
}

impl Node {
    /// A node with the embedded defaults (auto-created topics, 2 shards on this
    /// machine's CPUs).
    pub fn start() -> Node {
        Node::start_with_config("")
    }

    /// A node with this TOML configuration (data dir and listener are set here).
    pub fn start_with_config(toml: &str) -> Node {
        Node::start_with_env(toml, &[])
    }

    /// A node with this configuration and these extra environment variables.
    pub fn start_with_env(toml: &str, envs: &[(&str, &str)]) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = if toml.is_empty() {
            None
        } else {
            let p = dir.path().join("sluice.toml");
            std::fs::write(&p, toml).expect("write config");
            Some(p)
        };
        let mut node = Node {
            child: None,
            dir,
            config,
            addr: format!("127.0.0.1:{}", free_fixed_port()),
            starts: 0,
            envs: envs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        };
        node.spawn();
        node
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("serve-{}.log", self.starts))
    }

    /// The admin endpoint's address, from the current run's log line.
    pub fn admin_addr(&self) -> String {
        self.log()
            .lines()
            .find(|l| l.contains("admin endpoint open"))
            .and_then(|l| l.rsplit("addr=").next())
            .map(|a| a.trim().to_string())
            .expect("the admin endpoint's address in the log")
    }

    /// The log of the current (or last) run.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.arg("serve");
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        cmd.arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen")
            .arg(&self.addr)
            // Any free port: tests run in parallel.
            .args(["--set", "admin.listen=127.0.0.1:0"])
            .env("SLUICE_LOG", "info")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn sluice serve"));
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            let text = self.log();
            if let Some(line) = text.lines().find(|l| l.contains("serving Kafka clients")) {
                let addr = line
                    .rsplit("addr=")
                    .next()
                    .expect("addr in the ready line")
                    .trim()
                    .to_string();
                self.addr = addr;
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("sluice serve exited with {status} while starting:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "sluice serve did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&mut self, sig: Signal) -> ExitStatus {
        self.send_signal(sig);
        self.wait_exit()
    }

    /// Sends `sig` without waiting.
    pub fn send_signal(&self, sig: Signal) {
        let child = self.child.as_ref().expect("running");
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        kill(pid, sig).expect("signal");
    }

    /// Waits (up to a minute) for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_mins(1);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sluice serve did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM; returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM)
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
    }

    /// Starts again on the same data directory and port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the node first");
        self.spawn();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs a command, returning (status, stdout, stderr).
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> (ExitStatus, String, String) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let input = stdin.map(<[u8]>::to_vec);
    let mut sin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        if let Some(i) = input {
            use std::io::Write;
            let _ = sin.write_all(&i);
        }
    });
    let mut out = String::new();
    let mut err = String::new();
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut e = String::new();
        let _ = se.read_to_string(&mut e);
        e
    });
    let _ = so.read_to_string(&mut out);
    err.push_str(&reader.join().unwrap_or_default());
    let _ = writer.join();
    let status = child.wait().expect("wait");
    (status, out, err)
}

/// A free port below the kernel's ephemeral range. A node restarts on the port it
/// had; were that port ephemeral, a client connection of another test could be
/// given it as its local port while the node is down, and the restart could not
/// listen there until that connection closed.
pub fn free_fixed_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| {
            r.split_whitespace()
                .next()
                .and_then(|l| l.parse::<u16>().ok())
        })
        .unwrap_or(32768);
    let span = u32::from(low.saturating_sub(10_000).max(1));
    // Start somewhere different in each test process, then walk.
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    for i in 0..span {
        let port = 10_000 + u16::try_from((seed.wrapping_add(i * 7919)) % span).unwrap_or(0);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 10000 and {low}");
}

/// One HTTP/1.1 exchange of raw bytes: (status, head, body).
pub fn http(addr: &str, request: &[u8]) -> (u16, String, String) {
    try_http(addr, request).unwrap_or_else(|e| panic!("HTTP to {addr}: {e}"))
}

/// [`http`], with an error instead of a panic when nothing answers.
pub fn try_http(addr: &str, request: &[u8]) -> Result<(u16, String, String), String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(request).map_err(|e| format!("write: {e}"))?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {out:?}"))?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    Ok((status, head.to_string(), body.to_string()))
}
