//! Logs to journald when stderr is the journal: `sluice serve` started with
//! `JOURNAL_STREAM` naming its stderr sends each event to journald's socket with
//! the event's fields as journal fields. The test stands in for journald by binding
//! `/run/systemd/journal/socket` itself, so it runs only where no journald listens.

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SOCKET: &str = "/run/systemd/journal/socket";

/// Journal fields of one datagram (`KEY=value` lines; our values have no newlines).
fn fields(datagram: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(datagram)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Removes the stand-in journal socket.
struct Remove;

impl Drop for Remove {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(SOCKET);
    }
}

/// `sluice serve` with stderr on `stderr_path` and `JOURNAL_STREAM` naming it.
fn spawn_with_journal_stream(
    dir: &std::path::Path,
    stderr_path: &std::path::Path,
    addr: &str,
) -> std::process::Child {
    let stderr = std::fs::File::create(stderr_path).expect("stderr file");
    let meta = stderr.metadata().expect("stat");
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--listen", addr, "--set", "admin.listen=127.0.0.1:0"])
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env("SLUICE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn sluice serve")
}

#[test]
fn events_reach_journald_with_their_fields_when_stderr_is_the_journal() {
    if std::path::Path::new(SOCKET).exists() {
        // A real journald (or another test's socket) is there: not ours to take.
        eprintln!("SKIPPED: {SOCKET} exists (journald runs here)");
        return;
    }
    std::fs::create_dir_all("/run/systemd/journal").expect("mkdir /run/systemd/journal");
    let journal = UnixDatagram::bind(SOCKET).expect("bind the journal socket");
    let _remove = Remove;
    journal
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");

    let dir = tempfile::tempdir().expect("tempdir");
    let stderr_path = dir.path().join("stderr");
    let addr = format!("127.0.0.1:{}", crate::node::free_fixed_port());
    let mut child = spawn_with_journal_stream(dir.path(), &stderr_path, &addr);
    let mut events: Vec<Vec<(String, String)>> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let has = |events: &Vec<Vec<(String, String)>>, k: &str, v: &str| {
        events
            .iter()
            .any(|e| e.iter().any(|(a, b)| a == k && b == v))
    };
    let deadline = Instant::now() + Duration::from_mins(1);
    let mut created = false;
    while Instant::now() < deadline {
        if let Ok(n) = journal.recv(&mut buf) {
            events.push(fields(&buf[..n]));
        }
        if !created
            && events.iter().any(|e| {
                e.iter()
                    .any(|(k, v)| k == "MESSAGE" && v.starts_with("serving Kafka clients"))
            })
        {
            let (status, out, err) = crate::node::run(
                Command::new(env!("CARGO_BIN_EXE_sluice")).args([
                    "topic",
                    "create",
                    "-b",
                    &addr,
                    "journaled",
                    "-p",
                    "3",
                ]),
                None,
            );
            assert!(status.success(), "{out}{err}");
            created = true;
        }
        if has(&events, "TOPIC", "journaled") {
            break;
        }
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}");
    let created_event = events
        .iter()
        .find(|e| e.iter().any(|(k, v)| k == "TOPIC" && v == "journaled"))
        .unwrap_or_else(|| panic!("no event with TOPIC=journaled in {events:?}"));
    let get = |k: &str| {
        created_event
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        get("MESSAGE"),
        Some("created topic topic=journaled partitions=3 replication_factor=1")
    );
    assert_eq!(get("PARTITIONS"), Some("3"));
    assert_eq!(get("REPLICATION_FACTOR"), Some("1"));
    assert_eq!(get("PRIORITY"), Some("6"));
    assert_eq!(get("SYSLOG_IDENTIFIER"), Some("sluice"));
    // The listener line carries the shard count as its own field.
    assert!(
        events.iter().any(|e| e
            .iter()
            .any(|(k, v)| k == "SHARDS" && v.parse::<usize>().is_ok_and(|n| n >= 1))),
        "{events:?}"
    );
    // Nothing went to stderr: the journal got it.
    let text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(!text.contains("serving Kafka clients"), "{text}");
}
