//! One real `sluice serve` process.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How a [`Node`] is started.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The loopback address it listens on (Kafka and admin).
    pub host: IpAddr,
    /// The Kafka port (default: a free one below the ephemeral range).
    pub port: Option<u16>,
    /// The TOML configuration (empty: none; data dir and listener are set here).
    pub toml: String,
    /// Extra environment variables.
    pub envs: Vec<(String, String)>,
    /// The `sluice` binary (default: [`sluice_bin`]).
    pub bin: Option<PathBuf>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            host: IpAddr::from([127, 0, 0, 1]),
            port: None,
            toml: String::new(),
            envs: Vec::new(),
            bin: None,
        }
    }
}

/// A real `sluice serve` process on a temporary data directory and a loopback
/// address, stopped with SIGTERM (or killed with SIGKILL) by the tests; killed
/// when dropped.
pub struct Node {
    child: Option<Child>,
    dir: tempfile::TempDir,
    config: Option<PathBuf>,
    bin: PathBuf,
    host: IpAddr,
    /// `host:port`, the same across restarts.
    pub addr: String,
    starts: usize,
    envs: Vec<(String, String)>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.addr)
    }
}

/// The `sluice` binary: `$SLUICE_BIN`, else `sluice` in the directory cargo put
/// the running test in (its `deps/` parent), where cargo builds the package's
/// binaries before its integration tests.
pub fn sluice_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    let mut dir = exe.parent().expect("a directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("sluice");
    assert!(
        bin.exists(),
        "no sluice binary at {} (set SLUICE_BIN, or run the tests of the package that builds it)",
        bin.display()
    );
    bin
}

impl Node {
    /// A node with the embedded defaults.
    pub fn start() -> Node {
        Node::start_with_config("")
    }

    /// A node with this TOML configuration.
    pub fn start_with_config(toml: &str) -> Node {
        Node::start_with_env(toml, &[])
    }

    /// A node with this configuration and these extra environment variables.
    pub fn start_with_env(toml: &str, envs: &[(&str, &str)]) -> Node {
        Node::start_with(NodeOptions {
            toml: toml.to_string(),
            envs: envs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            ..NodeOptions::default()
        })
    }

    /// A node as `opts` says; returns once it serves Kafka clients.
    pub fn start_with(opts: NodeOptions) -> Node {
        let mut node = Node::create(opts);
        node.spawn();
        node
    }

    /// Starts the process without waiting for it to serve (a cluster's nodes wait
    /// for each other); [`Node::wait_serving`] waits.
    pub fn launch(opts: NodeOptions) -> Node {
        let mut node = Node::create(opts);
        node.launch_process();
        node
    }

    fn create(opts: NodeOptions) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = if opts.toml.is_empty() {
            None
        } else {
            let p = dir.path().join("sluice.toml");
            std::fs::write(&p, &opts.toml).expect("write config");
            Some(p)
        };
        let port = opts
            .port
            .unwrap_or_else(|| free_fixed_port_on(&[opts.host]));
        Node {
            child: None,
            dir,
            config,
            bin: opts.bin.unwrap_or_else(sluice_bin),
            host: opts.host,
            addr: std::net::SocketAddr::new(opts.host, port).to_string(),
            starts: 0,
            envs: opts.envs,
        }
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

    /// The process id of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) {
        self.launch_process();
        self.wait_serving();
    }

    fn launch_process(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).expect("log file");
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve");
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        cmd.arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen")
            .arg(&self.addr)
            // Any free port: tests run in parallel.
            .args([
                "--set",
                &format!("admin.listen={}", std::net::SocketAddr::new(self.host, 0)),
            ])
            .env("SLUICE_LOG", "info")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn sluice serve"));
    }

    /// Waits (up to a minute) until the process serves Kafka clients.
    pub fn wait_serving(&mut self) {
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

    /// SIGSTOP: the process stays, frozen (its sockets keep their connections).
    /// Returns once every thread is stopped: `kill` only queues the stop, and until
    /// one thread of the process has run to act on it the others go on serving.
    pub fn pause(&self) {
        self.send_signal(Signal::SIGSTOP);
        let pid = self.pid().expect("running");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !all_threads_stopped(pid) {
            assert!(
                Instant::now() < deadline,
                "pid {pid} did not stop within 10 s of SIGSTOP"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGCONT after [`Node::pause`].
    pub fn resume(&self) {
        self.send_signal(Signal::SIGCONT);
    }

    /// Starts again on the same data directory and address.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the node first");
        self.spawn();
    }

    /// Starts again without waiting for it to serve.
    pub fn relaunch(&mut self) {
        assert!(self.child.is_none(), "stop the node first");
        self.launch_process();
    }

    /// Whether the process is running (not exited; a paused one is running).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Empties the data directory (the node must be stopped).
    pub fn wipe(&mut self) {
        assert!(self.child.is_none(), "stop the node first");
        let dir = self.data_dir();
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("remove the data directory");
        }
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

/// Whether every thread of `pid` is in the stopped state (`T` in its
/// `/proc/PID/task/TID/stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut any = false;
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            // The thread ended meanwhile.
            continue;
        };
        // "TID (COMM) STATE ...". io_uring's worker threads (iou-wrk-TID) belong
        // to the process but take no part in a group stop, and run no user code.
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            return false;
        };
        if head.contains("(iou-") {
            continue;
        }
        if !rest.starts_with('T') {
            return false;
        }
        any = true;
    }
    any
}

/// A free port on 127.0.0.1 below the kernel's ephemeral range.
pub fn free_fixed_port() -> u16 {
    free_fixed_port_on(&[IpAddr::from([127, 0, 0, 1])])
}

/// A port free on every one of `hosts`, below the kernel's ephemeral range. A node
/// restarts on the port it had; were that port ephemeral, a client connection of
/// another test could be given it as its local port while the node is down, and
/// the restart could not listen there until that connection closed.
pub fn free_fixed_port_on(hosts: &[IpAddr]) -> u16 {
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
        if hosts
            .iter()
            .all(|h| std::net::TcpListener::bind((*h, port)).is_ok())
        {
            return port;
        }
    }
    panic!("no free port between 10000 and {low} on {hosts:?}");
}
