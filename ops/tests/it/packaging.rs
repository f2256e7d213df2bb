//! What `packaging/` ships, checked without installing it: the unit's hardening as
//! `systemd-analyze security` rates it, its stop timeout against the broker's,
//! and the manual page and completions made from the CLI.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

fn unit() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../packaging/systemd/sluice.service")
}

fn sluice(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("run sluice")
}

/// The value of `key=` in the unit file (the last one, as systemd reads it).
fn unit_value(key: &str) -> Option<String> {
    let text = std::fs::read_to_string(unit()).expect("read the unit");
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
}

#[test]
fn the_unit_rates_ok_or_better_in_systemd_analyze_security() {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit())
        .output()
        .expect("systemd-analyze (Debian package systemd) must be installed");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let exposure: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the exposure in {line:?}"));
    assert!(exposure <= 3.0, "{line}\n{text}");
}

#[test]
fn the_unit_waits_longer_for_a_stop_than_the_broker_may_take() {
    let stop_s: u64 = unit_value("TimeoutStopSec")
        .expect("TimeoutStopSec= in the unit")
        .parse()
        .expect("TimeoutStopSec= in seconds");
    let defaults = String::from_utf8(sluice(&["config", "defaults"]).stdout).expect("utf-8");
    let shutdown_ms: u64 = defaults
        .lines()
        .find_map(|l| l.strip_prefix("shutdown_timeout_ms = "))
        .expect("kafka.shutdown_timeout_ms in the defaults")
        .parse()
        .expect("a number");
    assert!(
        stop_s * 1000 > shutdown_ms,
        "TimeoutStopSec={stop_s} would kill a stop the broker may still be making ({shutdown_ms} ms)"
    );
    assert_eq!(unit_value("Type").as_deref(), Some("notify"));
    assert_eq!(unit_value("User").as_deref(), Some("sluice"));
    assert_eq!(
        unit_value("ExecStart").as_deref(),
        Some("/usr/bin/sluice serve --config /etc/sluice/sluice.toml")
    );
}

#[test]
fn the_manual_page_and_completions_come_from_the_cli() {
    let man = sluice(&["generate", "man"]);
    assert!(man.status.success());
    let man = String::from_utf8(man.stdout).expect("utf-8");
    assert!(man.contains(".TH sluice 1"), "{man}");
    for sub in ["serve", "topic", "group", "cluster", "config"] {
        assert!(man.contains(sub), "the page does not name `{sub}`");
    }
    let bash = sluice(&["generate", "completions", "bash"]);
    assert!(bash.status.success());
    let bash = String::from_utf8(bash.stdout).expect("utf-8");
    assert!(
        bash.contains("complete -F") && bash.contains("serve"),
        "{bash}"
    );
    // A shell it does not know is refused, naming the ones it does.
    let bad = sluice(&["generate", "completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bash"));
}

#[test]
fn the_shipped_prometheus_config_and_alert_rules_load_in_promtool() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ansible/prometheus");
    let rules = Command::new("promtool")
        .args(["check", "rules", "sluice-alerts.yml"])
        .current_dir(&dir)
        .output()
        .expect("promtool (Debian package prometheus) must be installed");
    let text = String::from_utf8_lossy(&rules.stdout);
    assert!(
        rules.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&rules.stderr)
    );
    // Every alert the operator's guide names is there.
    let file = std::fs::read_to_string(dir.join("sluice-alerts.yml")).expect("rules");
    for alert in [
        "SluiceNodeDown",
        "SluiceUnderReplicatedPartitions",
        "SluiceOfflinePartitions",
        "SluiceDiskFilling",
        "SluiceConsumerLag",
        "SluiceRestarting",
    ] {
        assert!(file.contains(&format!("alert: {alert}")), "no {alert}");
    }
    let config = Command::new("promtool")
        .args(["check", "config", "prometheus.yml"])
        .current_dir(&dir)
        .output()
        .expect("promtool");
    assert!(
        config.status.success(),
        "{}{}",
        String::from_utf8_lossy(&config.stdout),
        String::from_utf8_lossy(&config.stderr)
    );
}

/// The metrics the alert rules use are ones a node serves (a renamed metric
/// would leave an alert that never fires).
#[test]
fn the_alert_rules_name_metrics_a_node_serves() {
    let node = crate::node::Node::start();
    let (status, _, body) = crate::node::http(
        &node.admin_addr(),
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n",
    );
    assert_eq!(status, 200);
    let rules = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ansible/prometheus/sluice-alerts.yml"),
    )
    .expect("rules");
    let mut named: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("sluice_") || w.starts_with("process_"))
        .collect();
    named.sort_unstable();
    named.dedup();
    assert!(named.len() >= 5, "{named:?}");
    for metric in named {
        // Families that have samples only once a group committed offsets are
        // declared anyway by their HELP line.
        assert!(
            body.lines().any(|l| {
                l.starts_with(&format!("{metric} "))
                    || l.starts_with(&format!("{metric}{{"))
                    || l.starts_with(&format!("# HELP {metric} "))
            }),
            "the rules use {metric}, which /metrics does not serve"
        );
    }
}

/// The playbooks' "nothing under-replicated" wait matches what a real node's
/// `/metrics` says when nothing is under-replicated (Python's `re.search`, as
/// Ansible's `search` test does). A pattern that never matched would make every
/// rolling restart wait until it gives up.
#[test]
fn the_playbooks_in_sync_pattern_matches_a_real_node() {
    let task = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../ansible/roles/sluice/tasks/wait_in_sync.yml"),
    )
    .expect("wait_in_sync.yml");
    let pattern = task
        .split("is search('")
        .nth(1)
        .and_then(|rest| rest.split("')").next())
        .expect("an `is search('...')` test in wait_in_sync.yml");
    let node = crate::node::Node::start();
    let (status, _, body) = crate::node::http(
        &node.admin_addr(),
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n",
    );
    assert_eq!(status, 200);
    let search = |page: &str| {
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import re, sys; sys.exit(0 if re.search(sys.argv[1], sys.stdin.read()) else 1)",
                pattern,
            ])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(page.as_bytes())
            .expect("write");
        child.wait().expect("wait").success()
    };
    assert!(
        body.lines()
            .any(|l| l.starts_with("sluice_under_replicated_partitions ")),
        "{body}"
    );
    assert!(search(&body), "'{pattern}' does not match:\n{body}");
    let under = body.replace(
        "\nsluice_under_replicated_partitions 0",
        "\nsluice_under_replicated_partitions 2",
    );
    assert!(
        !search(&under),
        "'{pattern}' matches a node with 2 under-replicated partitions"
    );
}
