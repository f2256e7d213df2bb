//! The README's quick start, run verbatim as a newcomer runs it: in a new empty
//! working directory, `sluice serve` with no arguments and no `SLUICE_*` variables
//! (so every default: `./sluice-data`, Kafka on 127.0.0.1:9092, admin on
//! 127.0.0.1:9644, one shard per CPU, the 64 MiB cache, the 3 s first-rebalance
//! delay), then every other line of the README's "Quick start" blocks, each typed
//! into one bash session exactly as printed there and its output checked.
//!
//! The commands are read from README.md, not copied here: [`STEPS`] says what each
//! line must print, keyed by the line's text, and the test fails when a README line
//! has no step or a step no longer matches a README line, so the two cannot drift.
//!
//! The binary is the release build the README's first line makes when
//! `SLUICE_QUICKSTART_BIN` names it (`.ci/test-all` builds it and sets that), else
//! the one cargo built for this test; its directory goes first on `PATH`, which is
//! what the README's first line does.
//!
//! The broker binds the default ports: no other test uses 9092 or 9644 (the others
//! take ports from 10000 up and ephemeral admin ports), so a port in use means
//! something outside the suite holds it, and the test says so.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use crate::node::http;

/// How one README line is run and what it must print.
enum Step {
    /// Not run: the test runs the binary cargo built for it instead.
    Build,
    /// `sluice serve &`: a background job; the next line waits until it serves.
    Serve,
    /// A command that runs to its end; the check gets its output.
    Run(fn(&Outcome)),
    /// A command that runs until Ctrl-C (a group member): started in the background,
    /// sent SIGINT once its stdout and stderr contain every one of these, then
    /// checked.
    UntilCtrlC(&'static [&'static str], fn(&Outcome)),
}

/// What a line printed, and the exit status of each command of its pipeline.
struct Outcome {
    stdout: String,
    stderr: String,
    statuses: Vec<i32>,
}

/// Every line of the README's quick start, by its text without a trailing comment.
const STEPS: &[(&str, Step)] = &[
    (
        "cargo build --release -p sluice && export PATH=$PWD/target/release:$PATH",
        Step::Build,
    ),
    ("sluice serve &", Step::Serve),
    ("kcat -b 127.0.0.1:9092 -L", Step::Run(kcat_lists_the_node)),
    (
        r"printf 'k1:hello\nk2:world\n' | kcat -b 127.0.0.1:9092 -P -t demo -K:",
        Step::Run(succeeds_silently),
    ),
    (
        r"kcat -b 127.0.0.1:9092 -C -t demo -e -o beginning -f '%k %s (partition %p, offset %o)\n'",
        Step::Run(kcat_reads_demo),
    ),
    (
        "sluice topic create events --partitions 6 --config retention.ms=86400000",
        Step::Run(|o| says(o, &["created topic events with 6 partitions"])),
    ),
    (
        "seq 1 1000 | sed 's/^/key-/;s/$/|value/' | sluice produce events --key-separator '|' --acks all --compression zstd",
        Step::Run(produced_1000),
    ),
    (
        "sluice consume events --from beginning -e --print-key --print-offset | head",
        Step::Run(ten_keyed_records_then_quiet),
    ),
    (
        "sluice consume events --from @1700000000000 -n 10",
        Step::Run(ten_values),
    ),
    (
        "sluice topic describe events",
        Step::Run(describe_shows_1000_records),
    ),
    (
        "sluice topic alter events --config retention.ms=3600000 --partitions 8",
        Step::Run(|o| {
            says(
                o,
                &["altered configs of events", "events now has 8 partitions"],
            );
        }),
    ),
    (
        "sluice topic delete events",
        Step::Run(|o| says(o, &["deleted topic events"])),
    ),
    (
        "kcat -b 127.0.0.1:9092 -G my-app demo -X auto.offset.reset=earliest",
        // kcat's stdout is a file here, so block-buffered until it exits; its
        // progress lines on stderr say when it has read everything.
        Step::UntilCtrlC(
            &["% Reached end of topic demo [0] at offset 2"],
            member_read_demo,
        ),
    ),
    (
        "sluice group list",
        Step::Run(|o| says(o, &["my-app", "Empty", "consumer"])),
    ),
    (
        "sluice group describe my-app",
        Step::Run(|o| {
            says(o, &["group my-app  state Empty"]);
            row(o, &["demo", "0", "2", "2", "0"]);
        }),
    ),
    (
        "sluice group reset-offsets my-app --topic demo --to-earliest --dry-run",
        Step::Run(|o| {
            says(o, &["(dry run: nothing changed)"]);
            row(o, &["demo", "0", "2", "0"]);
        }),
    ),
    (
        "sluice group reset-offsets my-app --topic demo --to-timestamp 1700000000000",
        Step::Run(|o| {
            says(o, &["reset group my-app on demo"]);
            row(o, &["demo", "0", "2", "0"]);
        }),
    ),
    (
        "sluice group delete my-app",
        Step::Run(|o| says(o, &["deleted group my-app"])),
    ),
];

fn succeeds_silently(o: &Outcome) {
    assert!(o.statuses.iter().all(|s| *s == 0), "{:?}", o.statuses);
    assert!(o.stderr.trim().is_empty(), "stderr: {}", o.stderr);
}

fn says(o: &Outcome, wanted: &[&str]) {
    succeeds_silently(o);
    for w in wanted {
        assert!(o.stdout.contains(w), "`{w}` not in:\n{}", o.stdout);
    }
}

/// A line of the output whose whitespace-separated fields start with `fields`.
fn row(o: &Outcome, fields: &[&str]) {
    assert!(
        o.stdout.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= fields.len() && f[..fields.len()] == *fields
        }),
        "no row {fields:?} in:\n{}",
        o.stdout
    );
}

fn kcat_lists_the_node(o: &Outcome) {
    says(o, &["1 brokers:", "broker 1 at 127.0.0.1:9092"]);
}

/// kcat's own progress lines on stderr start with `% ` and are not errors.
fn kcat_succeeds(o: &Outcome) {
    assert!(o.statuses.iter().all(|s| *s == 0), "{:?}", o.statuses);
    for l in o.stderr.lines() {
        assert!(
            l.starts_with("% ") && !l.contains("ERROR") && !l.contains("fail"),
            "stderr: {}",
            o.stderr
        );
    }
}

fn kcat_reads_demo(o: &Outcome) {
    kcat_succeeds(o);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "k1 hello (partition 0, offset 0)",
            "k2 world (partition 0, offset 1)"
        ],
        "{}",
        o.stdout
    );
}

fn produced_1000(o: &Outcome) {
    assert!(o.statuses.iter().all(|s| *s == 0), "{:?}", o.statuses);
    assert_eq!(o.stderr.trim(), "produced 1000 records to events");
}

/// `| head` keeps 10 lines and closes the pipe: sluice ends quietly (status 0 or
/// 141, as `cat` would), with no panic and no error line.
fn ten_keyed_records_then_quiet(o: &Outcome) {
    assert!(
        matches!(o.statuses[..], [0 | 141, 0]),
        "{:?}, stderr: {}",
        o.statuses,
        o.stderr
    );
    assert!(o.stderr.trim().is_empty(), "stderr: {}", o.stderr);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.len(), 10, "{}", o.stdout);
    for l in lines {
        let f: Vec<&str> = l.split('\t').collect();
        assert_eq!(f.len(), 4, "{l}");
        assert!(
            f[0].parse::<i32>().is_ok_and(|p| (0..6).contains(&p)),
            "{l}"
        );
        assert!(f[1].parse::<i64>().is_ok(), "{l}");
        assert!(f[2].starts_with("key-"), "{l}");
        assert_eq!(f[3], "value", "{l}");
    }
}

fn ten_values(o: &Outcome) {
    succeeds_silently(o);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines, ["value"; 10], "{}", o.stdout);
}

fn describe_shows_1000_records(o: &Outcome) {
    says(
        o,
        &[
            "topic events",
            "partitions 6",
            "retention.ms=86400000  (set on the topic)",
        ],
    );
    // Partition rows: index, leader, epoch, replicas, ISR, log start, high
    // watermark.
    let total: i64 = o
        .stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 7 && f[0].parse::<i32>().is_ok()).then(|| f[6].parse::<i64>().ok())?
        })
        .sum();
    assert_eq!(total, 1000, "{}", o.stdout);
}

fn member_read_demo(o: &Outcome) {
    kcat_succeeds(o);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines, ["hello", "world"], "{}", o.stdout);
}

/// The commands of the README's "## Quick start" section: every line of its `sh`
/// blocks that is not empty or a comment, as printed.
fn readme_lines() -> Vec<String> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&readme).expect("README.md");
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Quick start"))
        .expect("a `## Quick start` section in README.md");
    let mut lines = Vec::new();
    let mut in_block = false;
    for l in section.lines() {
        if l.starts_with("```") {
            in_block = !in_block && l.trim_start_matches('`') == "sh";
            continue;
        }
        if in_block && !l.trim().is_empty() && !l.trim_start().starts_with('#') {
            lines.push(l.to_string());
        }
    }
    lines
}

/// The line without a trailing ` # comment` (a `#` outside quotes after a space).
fn without_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            b'#' if !single && !double && i > 0 && bytes[i - 1] == b' ' => {
                return line[..i].trim_end();
            }
            _ => {}
        }
    }
    line.trim_end()
}

/// One bash session, as a terminal would hold it (`set -m`: background jobs get
/// their own process group and Ctrl-C, as in an interactive shell).
struct Shell {
    child: Child,
    stdin: ChildStdin,
    /// Where each line's output goes (outside the working directory, which stays
    /// the newcomer's).
    capture: tempfile::TempDir,
    serve_pid: Option<i32>,
    /// Background jobs started for lines that run until Ctrl-C (their process
    /// groups), killed when the shell goes.
    jobs: Vec<i32>,
    lines: usize,
}

impl Shell {
    fn start(cwd: &Path) -> Shell {
        let bin = sluice_binary();
        let path = format!(
            "{}:{}",
            bin.parent().expect("bin dir").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("bash");
        cmd.args(["--norc", "--noprofile"])
            .current_dir(cwd)
            .env("PATH", path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // No overrides: what a newcomer's environment has.
        for (k, _) in std::env::vars() {
            if k.starts_with("SLUICE_") || k == "RUST_LOG" || k == "RUST_BACKTRACE" {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd.spawn().expect("bash");
        let stdin = child.stdin.take().expect("stdin");
        let mut shell = Shell {
            child,
            stdin,
            capture: tempfile::tempdir().expect("tempdir"),
            serve_pid: None,
            jobs: Vec::new(),
            lines: 0,
        };
        shell.send("set -m");
        shell
    }

    fn send(&mut self, text: &str) {
        writeln!(self.stdin, "{text}").expect("write to bash");
        self.stdin.flush().expect("flush bash");
    }

    fn file(&self, name: &str) -> PathBuf {
        self.capture.path().join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name)).unwrap_or_default()
    }

    /// Polls `ready` every 20 ms until it gives something; fails after `limit`
    /// with `what` and the broker's log.
    fn poll<T>(&self, what: &str, limit: Duration, mut ready: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(t) = ready() {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "{what} (waited {limit:?})\nbroker:\n{}",
                self.read("serve.log")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a file the shell writes last (it writes `NAME.tmp`, then renames).
    fn wait_for(&self, name: &str, what: &str) -> String {
        self.poll(
            &format!("`{what}` did not finish"),
            Duration::from_mins(2),
            || std::fs::read_to_string(self.file(name)).ok(),
        )
    }

    /// Has the shell wait for background job `pid` and report its exit status in
    /// file `name`.
    fn exit_status(&mut self, pid: i32, name: &str, what: &str) -> String {
        let dir = self.capture.path().display().to_string();
        self.send(&format!(
            "wait {pid}; echo $? > {dir}/{name}.tmp; mv {dir}/{name}.tmp {dir}/{name}"
        ));
        self.wait_for(name, what)
    }

    fn outcome(&self, n: usize, statuses: &str) -> Outcome {
        Outcome {
            stdout: self.read(&format!("out.{n}")),
            stderr: self.read(&format!("err.{n}")),
            statuses: statuses
                .split_whitespace()
                .map(|s| s.parse().expect("a status"))
                .collect(),
        }
    }

    /// Types `line` and waits for it to end.
    fn run(&mut self, line: &str) -> Outcome {
        self.lines += 1;
        let n = self.lines;
        let dir = self.capture.path().display().to_string();
        // The line on a line of its own, so a trailing comment ends at the newline.
        self.send(&format!(
            "{{\n{line}\necho \"${{PIPESTATUS[*]}}\" > {dir}/ps.{n}.tmp\n}} > {dir}/out.{n} 2> {dir}/err.{n} < /dev/null\nmv {dir}/ps.{n}.tmp {dir}/ps.{n}"
        ));
        let statuses = self.wait_for(&format!("ps.{n}"), line);
        self.outcome(n, &statuses)
    }

    /// `sluice serve &`: typed as printed; returns once Kafka is served.
    fn serve(&mut self, line: &str) {
        self.lines += 1;
        let n = self.lines;
        let dir = self.capture.path().display().to_string();
        self.send(&format!(
            "{{\n{line}\necho $! > {dir}/pid.tmp\n}} > {dir}/serve.out 2> {dir}/serve.log\nmv {dir}/pid.tmp {dir}/pid.{n}"
        ));
        let pid: i32 = self
            .wait_for(&format!("pid.{n}"), line)
            .trim()
            .parse()
            .expect("pid");
        self.serve_pid = Some(pid);
        self.poll(
            &format!("`{line}` did not start serving"),
            Duration::from_mins(1),
            || {
                self.read("serve.log")
                    .contains("serving Kafka clients")
                    .then_some(())
            },
        );
    }

    /// A line that runs until Ctrl-C: a background job of its own, interrupted once
    /// its output shows every one of `until`.
    fn until_ctrl_c(&mut self, line: &str, until: &[&str]) -> Outcome {
        self.lines += 1;
        let n = self.lines;
        let dir = self.capture.path().display().to_string();
        self.send(&format!(
            "{{\n{line}\n}} > {dir}/out.{n} 2> {dir}/err.{n} < /dev/null &\necho $! > {dir}/job.tmp\nmv {dir}/job.tmp {dir}/job.{n}"
        ));
        let job: i32 = self
            .wait_for(&format!("job.{n}"), line)
            .trim()
            .parse()
            .expect("job pid");
        self.jobs.push(job);
        let printed = || self.read(&format!("out.{n}")) + &self.read(&format!("err.{n}"));
        self.poll(
            &format!("`{line}` did not print {until:?}"),
            Duration::from_mins(1),
            || until.iter().all(|u| printed().contains(u)).then_some(()),
        );
        // Ctrl-C reaches the job's whole process group.
        killpg(Pid::from_raw(job), Signal::SIGINT).expect("SIGINT");
        let status = self.exit_status(job, &format!("ps.{n}"), line);
        self.outcome(n, &status)
    }

    /// SIGTERM to the broker, as the README says stops it cleanly; its exit status.
    fn stop_serve(&mut self) -> i32 {
        let pid = self.serve_pid.take().expect("serving");
        kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM");
        self.exit_status(pid, "serve.rc", "stopping sluice serve")
            .trim()
            .parse()
            .expect("status")
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        for job in self.jobs.drain(..) {
            let _ = killpg(Pid::from_raw(job), Signal::SIGKILL);
        }
        if let Some(pid) = self.serve_pid.take() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release binary `.ci/test-all` built, or the test's own.
fn sluice_binary() -> PathBuf {
    let bin = std::env::var_os("SLUICE_QUICKSTART_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_sluice")),
        PathBuf::from,
    );
    assert!(bin.is_file(), "{} is not a file", bin.display());
    assert_eq!(
        bin.file_name().and_then(|n| n.to_str()),
        Some("sluice"),
        "the README calls the binary `sluice`"
    );
    eprintln!("quick start with {}", bin.display());
    bin
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[test]
fn readme_steps_and_readme_lines_match_one_to_one() {
    let lines = readme_lines();
    let keys: Vec<&str> = lines.iter().map(|l| without_comment(l)).collect();
    for k in &keys {
        assert!(
            STEPS.iter().any(|(s, _)| s == k),
            "README quick start line `{k}` has no step in ops/tests/it/quickstart.rs"
        );
    }
    for (s, _) in STEPS {
        assert!(
            keys.contains(s),
            "step `{s}` is no longer a README quick start line"
        );
    }
    assert_eq!(keys.len(), STEPS.len(), "a README line appears twice");
    assert_eq!(
        without_comment("sluice serve &      # logs where it listens"),
        "sluice serve &"
    );
    assert_eq!(without_comment("a '# not' b"), "a '# not' b");
}

#[test]
fn readme_quick_start_verbatim_in_an_empty_directory() {
    for port in [9092, 9644] {
        assert!(
            port_is_free(port),
            "port {port} is in use: the quick start runs the defaults and needs it free \
             (is a broker running outside the test suite?)"
        );
    }
    let cwd = tempfile::tempdir().expect("tempdir");
    // As the broker sees it (the working directory has no symbolic links).
    let cwd_path = cwd.path().canonicalize().expect("canonical tempdir");
    let mut shell = Shell::start(&cwd_path);
    for line in readme_lines() {
        let key = without_comment(&line);
        let (_, step) = STEPS
            .iter()
            .find(|(s, _)| *s == key)
            .unwrap_or_else(|| panic!("no step for `{key}`"));
        match step {
            Step::Build => {}
            Step::Serve => {
                shell.serve(&line);
                the_defaults_are_served(&shell, &cwd_path);
            }
            Step::Run(check) => {
                let o = shell.run(&line);
                eprintln!("$ {line}\n{}{}", o.stdout, o.stderr);
                check(&o);
            }
            Step::UntilCtrlC(until, check) => {
                let o = shell.until_ctrl_c(&line, until);
                eprintln!("$ {line}\n{}{}", o.stdout, o.stderr);
                check(&o);
            }
        }
    }
    let log = shell.read("serve.log");
    let status = shell.stop_serve();
    let log_after = shell.read("serve.log");
    assert_eq!(status, 0, "sluice serve after SIGTERM:\n{log_after}");
    assert!(
        !log_after.contains("ERROR") && !log_after.contains("panicked"),
        "{log_after}"
    );
    assert!(!log.contains("offline"), "a partition went offline:\n{log}");
    // The data is where the default says: ./sluice-data of the working directory.
    let demo = cwd_path.join("sluice-data/demo-0/00000000000000000000.log");
    assert!(demo.is_file(), "{} missing", demo.display());
}

/// Right after `sluice serve &`: the absolute data directory is logged, and the
/// admin endpoint answers on its default address.
fn the_defaults_are_served(shell: &Shell, cwd: &Path) {
    let log = shell.read("serve.log");
    let data_dir = cwd.join("sluice-data");
    assert!(
        log.contains(&format!("data_dir={}", data_dir.display())),
        "the absolute data directory is not logged:\n{log}"
    );
    assert!(log.contains("addr=127.0.0.1:9092"), "{log}");
    // The engine's default: one shard per CPU this process may run on.
    let affinity = nix::sched::sched_getaffinity(Pid::from_raw(0)).expect("affinity");
    let cpus = (0..nix::sched::CpuSet::count())
        .filter(|&c| affinity.is_set(c).unwrap_or(false))
        .count();
    assert!(log.contains(&format!("shards={cpus}")), "{log}");
    let (status, _, body) = http(
        "127.0.0.1:9644",
        b"GET /v1/health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{body}");
}
