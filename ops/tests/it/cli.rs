//! `sluice topic|produce|consume` against a real `sluice serve`, cross-checked
//! with kcat.

use std::process::Command;

use crate::node::{run, Node};

fn sluice(node: &Node, args: &[&str], stdin: Option<&[u8]>) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(args).arg("--bootstrap").arg(&node.addr);
    let (status, out, err) = run(&mut cmd, stdin);
    (status.success(), out, err)
}

fn ok(node: &Node, args: &[&str], stdin: Option<&[u8]>) -> String {
    let (success, out, err) = sluice(node, args, stdin);
    assert!(
        success,
        "sluice {args:?}: {err}\nbroker log:\n{}",
        node.log()
    );
    out
}

#[test]
#[allow(clippy::too_many_lines)]
fn topic_produce_and_consume_commands_work_end_to_end() {
    let node = Node::start();
    ok(
        &node,
        &[
            "topic",
            "create",
            "cli",
            "-p",
            "3",
            "-c",
            "retention.ms=3600000",
        ],
        None,
    );
    assert_eq!(ok(&node, &["topic", "list"], None), "cli\n");

    let lines = (0..300)
        .map(|i| format!("k{i}|v{i}"))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        ok(
            &node,
            &[
                "produce",
                "cli",
                "--key-separator",
                "|",
                "--compression",
                codec,
                "--batch",
                "50",
            ],
            Some(lines.as_bytes()),
        );
    }
    let out = ok(
        &node,
        &["consume", "cli", "-e", "--print-key", "--print-offset"],
        None,
    );
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 1500);
    let mut per_key = std::collections::BTreeMap::new();
    for r in &rows {
        assert_eq!(r.len(), 4, "{r:?}");
        assert_eq!(
            r[2].replace('k', "v"),
            r[3],
            "key and value belong together"
        );
        // The same key always lands in the same partition.
        let p = per_key.entry(r[2].to_string()).or_insert(r[0]);
        assert_eq!(*p, r[0], "key {} moved partitions", r[2]);
    }
    assert_eq!(per_key.len(), 300);

    // kcat reads the same records.
    let (status, kc, err) = run(
        Command::new("kcat").args([
            "-b",
            &node.addr,
            "-C",
            "-t",
            "cli",
            "-e",
            "-o",
            "beginning",
            "-f",
            "%k=%s\\n",
        ]),
        None,
    );
    assert!(status.success(), "{err}");
    let mut a: Vec<String> = kc.lines().map(String::from).collect();
    let mut b: Vec<String> = rows.iter().map(|r| format!("{}={}", r[2], r[3])).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);

    // Starting points: an offset in one partition, a time in the future, -n.
    let one = ok(
        &node,
        &[
            "consume",
            "cli",
            "-e",
            "--partition",
            "0",
            "--from",
            "5",
            "--print-offset",
        ],
        None,
    );
    assert!(
        one.lines().next().is_some_and(|l| l.starts_with("0\t5\t")),
        "{one}"
    );
    assert_eq!(
        ok(
            &node,
            &["consume", "cli", "-e", "--from", "@99999999999999"],
            None
        ),
        ""
    );
    assert_eq!(
        ok(&node, &["consume", "cli", "-n", "7"], None)
            .lines()
            .count(),
        7
    );

    ok(
        &node,
        &[
            "topic",
            "alter",
            "cli",
            "-c",
            "retention.ms=7200000",
            "-p",
            "4",
        ],
        None,
    );
    let described = ok(&node, &["topic", "describe", "cli"], None);
    assert!(described.contains("partitions 4"), "{described}");
    assert!(
        described.contains("retention.ms=7200000  (set on the topic)"),
        "{described}"
    );

    // Refusals exit non-zero with Kafka's reason.
    let (success, _, err) = sluice(&node, &["topic", "create", "cli"], None);
    assert!(!success);
    assert!(err.contains("TopicAlreadyExists"), "{err}");
    let (success, _, err) = sluice(
        &node,
        &["topic", "alter", "cli", "-c", "retention.ms=soon"],
        None,
    );
    assert!(!success);
    assert!(
        err.contains("InvalidConfig") && err.contains("retention.ms"),
        "{err}"
    );

    ok(&node, &["topic", "delete", "cli"], None);
    assert_eq!(ok(&node, &["topic", "list"], None), "");
    let (success, _, err) = sluice(&node, &["consume", "cli", "-e"], None);
    assert!(!success);
    assert!(err.contains("UnknownTopicOrPartition"), "{err}");
}

/// 3,000 keyed records of about 100 bytes in `topic` (more than a pipe's 64 KiB
/// buffer when printed, so a reader that stops early really cuts the writer off).
fn fill(node: &Node, topic: &str) {
    let lines: String = (0..3000)
        .map(|i| format!("k{i}|v{i}-{}\n", "x".repeat(90)))
        .collect::<Vec<_>>()
        .concat();
    ok(
        node,
        &["produce", topic, "--key-separator", "|"],
        Some(lines.as_bytes()),
    );
}

/// Runs `sluice ARGS` with its standard output a pipe whose reader is already
/// gone, so its first write fails with EPIPE: (exit code or 128+signal, stderr).
fn with_closed_stdout(args: &[&str]) -> (i32, String) {
    use std::os::unix::process::ExitStatusExt;
    let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
    drop(read_end);
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(write_end))
        .output()
        .expect("run sluice");
    let code = out
        .status
        .code()
        .or_else(|| out.status.signal().map(|s| 128 + s))
        .expect("a status");
    (code, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A reader that stops early (`| head -1`, `less` quitting) ends every printing
/// command quietly, as it ends `cat`: status 0 or 141, nothing on stderr, no panic.
#[test]
fn every_printing_command_ends_quietly_when_its_reader_goes_away() {
    let node = Node::start();
    let b = node.addr.as_str();
    ok(&node, &["topic", "create", "piped", "-p", "3"], None);
    fill(&node, "piped");
    ok(
        &node,
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "piped",
            "--to-latest",
        ],
        None,
    );
    let closed_ok = |args: &[&str]| {
        let (code, stderr) = with_closed_stdout(args);
        assert!(
            (code == 0 || code == 141) && stderr.is_empty(),
            "sluice {args:?} with a closed stdout: status {code}, stderr:\n{stderr}"
        );
    };
    let first: Vec<Vec<&str>> = vec![
        vec!["topic", "list", "-b", b],
        vec!["topic", "describe", "piped", "-b", b],
        // Prints before it adds the partitions: both must still happen.
        vec![
            "topic",
            "alter",
            "piped",
            "-c",
            "retention.ms=3600000",
            "-p",
            "5",
            "-b",
            b,
        ],
        vec!["consume", "piped", "-e", "--print-key", "-b", b],
        vec!["consume", "piped", "-n", "5", "-b", b],
        vec!["group", "list", "-b", b],
        vec!["group", "describe", "g", "-b", b],
        vec![
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "piped",
            "--to-earliest",
            "--dry-run",
            "-b",
            b,
        ],
        // Prints its table before it commits: the commit must still happen.
        vec![
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "piped",
            "--to-earliest",
            "-b",
            b,
        ],
        vec!["topic", "create", "piped2", "-b", b],
    ];
    for args in &first {
        closed_ok(args);
    }
    let described = ok(&node, &["topic", "describe", "piped"], None);
    assert!(
        described.contains("partitions 5") && described.contains("retention.ms=3600000"),
        "{described}"
    );
    let group = ok(&node, &["group", "describe", "g"], None);
    let committed: Vec<&str> = group
        .lines()
        .filter(|l| l.starts_with("piped "))
        .map(|l| l.split_whitespace().nth(2).unwrap_or("?"))
        .collect();
    // Five partitions by then (the alter above), all reset to their start.
    assert_eq!(
        committed, ["0"; 5],
        "reset to the earliest offsets:\n{group}"
    );
    for args in [
        vec!["topic", "delete", "piped2", "-b", b],
        vec!["group", "delete", "g", "-b", b],
        vec!["config", "defaults"],
        vec!["config", "reference"],
        vec!["config", "check"],
    ] {
        closed_ok(&args);
    }
    // The work behind the output was still done.
    let topics = ok(&node, &["topic", "list"], None);
    assert!(
        topics.lines().any(|t| t == "piped") && !topics.contains("piped2"),
        "{topics}"
    );
    assert!(ok(&node, &["group", "list"], None).lines().count() == 1);
}

/// As the issue ran it: `| head -1` in a shell.
#[test]
fn head_in_a_shell_ends_sluice_quietly() {
    let node = Node::start();
    let b = node.addr.as_str();
    ok(&node, &["topic", "create", "headed", "-p", "3"], None);
    fill(&node, "headed");
    for cmd in [
        format!("sluice topic describe headed -b {b} | head -1"),
        format!("sluice consume headed -e -b {b} | head -1"),
    ] {
        let bin = std::path::Path::new(env!("CARGO_BIN_EXE_sluice"))
            .parent()
            .expect("bin dir")
            .to_path_buf();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let script = format!("{cmd}; echo \"status ${{PIPESTATUS[0]}}\" >&2");
        let (status, out, err) = run(
            Command::new("bash").args(["-c", &script]).env("PATH", path),
            None,
        );
        assert!(status.success(), "{cmd}: {err}");
        assert_eq!(out.lines().count(), 1, "{cmd}: {out}");
        assert!(
            err.trim() == "status 0" || err.trim() == "status 141",
            "{cmd}: stderr:\n{err}"
        );
    }
}
