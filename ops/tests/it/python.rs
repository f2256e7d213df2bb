//! The Python Kafka clients people use, confluent-kafka (librdkafka) and kafka-python
//! (its own protocol code), against a real `sluice serve`: pytest runs
//! `ops/tests/python` with the node's address in `SLUICE_BOOTSTRAP`.
//!
//! The interpreter is `$SLUICE_PYTHON`, or else `target/py-venv/bin/python`, the venv
//! that `ops/tests/python/setup-venv.sh` (run by `.ci/test-all`) creates with the
//! pinned clients.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::node::{run, Node};

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the sluice crate sits in the workspace root")
}

/// `$SLUICE_PYTHON`, else the venv; either way one that can import the clients, so
/// a missing setup step says how to fix it instead of failing every test.
fn python() -> PathBuf {
    const SETUP: &str = "run `.ci/test-all` (or `bash ops/tests/python/setup-venv.sh`) to \
        create target/py-venv with the Kafka clients, or point SLUICE_PYTHON at a python \
        that has confluent-kafka, kafka-python and pytest";
    let python = std::env::var_os("SLUICE_PYTHON").map_or_else(
        || {
            let venv = workspace_root().join("target/py-venv/bin/python");
            assert!(venv.exists(), "{} is missing: {SETUP}", venv.display());
            venv
        },
        PathBuf::from,
    );
    let check = Command::new(&python)
        .args(["-c", "import confluent_kafka, kafka, pytest"])
        .output();
    match check {
        Ok(o) if o.status.success() => python,
        Ok(o) => panic!(
            "{} cannot import the clients ({}): {SETUP}\n{}",
            python.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run {}: {e}: {SETUP}", python.display()),
    }
}

#[test]
fn python_clients_pass_their_tests() {
    let python = python();
    // Short first-rebalance delay so group tests do not wait Kafka's 3 s each time.
    let node = Node::start_with_config("[group]\ninitial_rebalance_delay_ms = 300\n");
    let tests = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python");
    let (status, out, err) = run(
        Command::new(&python)
            // -rfEsxX: list failures, errors, skips and xfails with their reasons.
            .args([
                "-m",
                "pytest",
                "-q",
                "-rfEsxX",
                "-p",
                "no:cacheprovider",
                tests,
            ])
            .current_dir(workspace_root())
            .env("SLUICE_BOOTSTRAP", &node.addr)
            // No __pycache__ in the source tree.
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        None,
    );
    let report = format!(
        "{} -m pytest {tests}: {status}\n--- stdout\n{out}\n--- stderr\n{err}\n--- broker log\n{}",
        python.display(),
        node.log()
    );
    assert!(status.success(), "{report}");
    // A skipped test proves nothing; every test here is meant to run.
    let summary = out.lines().last().unwrap_or_default();
    assert!(
        summary.contains(" passed") && !summary.contains("skipped"),
        "{report}"
    );
    println!("{out}");
}

/// confluent-kafka's AdminClient, Producer and Consumer against a three-node
/// cluster (`ops/tests/python/cluster/admin_and_clients.py`).
#[test]
fn confluent_kafka_creates_produces_and_consumes_across_a_cluster() {
    let python = python();
    let cluster = sluice_testkit::Cluster::start_quorum(
        3,
        |_| "[storage]\ncache_mib_per_shard = 16\n".into(),
        |_| String::new(),
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/cluster/admin_and_clients.py"
    );
    let (status, out, err) = run(
        Command::new(&python)
            .arg(script)
            .env("SLUICE_NODES", cluster.bootstrap())
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        None,
    );
    let logs: Vec<String> = cluster
        .nodes
        .iter()
        .map(|n| format!("--- {} log\n{}", n.addr, n.log()))
        .collect();
    let logs = logs.join("\n");
    assert!(
        status.success(),
        "{script}: {status}\n--- stdout\n{out}\n--- stderr\n{err}\n{logs}"
    );
    assert!(out.contains("600 records produced"), "{out}");
    println!("{out}");
}
