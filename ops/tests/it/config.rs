//! Configuration errors: `sluice config check` and `sluice serve` refuse a bad file
//! (unknown key, wrong type, out-of-range value, unusable data directory) or a bad
//! environment override with a message naming the key and a non-zero exit, and the
//! data of an existing node is left exactly as it was.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::node::{run, Node};

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir)
                        .expect("under dir")
                        .display()
                        .to_string(),
                    std::fs::read(&p).expect("read"),
                );
            }
        }
    }
    out
}

fn sluice(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    sluice_with_input(args, env, None)
}

fn sluice_with_input(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (status, out, err) = run(&mut cmd, stdin);
    (status.success(), format!("{out}{err}"))
}

#[test]
fn bad_configuration_is_refused_naming_the_key_and_touches_no_data() {
    let mut node = Node::start();
    let (ok, out) = sluice_with_input(
        &["produce", "-b", &node.addr, "kept"],
        &[],
        Some(b"hello\n"),
    );
    assert!(ok, "{out}");
    assert!(node.stop().success());
    let data = node.data_dir();
    let before = snapshot(&data);
    assert!(
        before.keys().any(|k| k.starts_with("kept-0/")),
        "{before:?}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let not_a_dir = dir.path().join("plain-file");
    std::fs::write(&not_a_dir, b"x").expect("write");
    let data_str = data.display().to_string();
    let cases: Vec<(String, &str)> = vec![
        ("surprise = 1\n".into(), "surprise"),
        (
            "[kafka]\nnum_partitions = \"many\"\n".into(),
            "num_partitions",
        ),
        (
            "[kafka]\nrequest_max_bytes = 10\n".into(),
            "kafka.request_max_bytes",
        ),
        (
            "[group]\noffsets_topic_partitions = 0\n".into(),
            "group.offsets_topic_partitions",
        ),
        (
            format!("data_dir = \"{}/data\"\n", not_a_dir.display()),
            "data_dir",
        ),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&file, text).expect("write config");
        let file = file.display().to_string();
        let (ok, out) = sluice(&["config", "check", &file], &[]);
        assert!(!ok && out.contains(key), "config check {text:?}: {out}");
        // serve with the same file and the existing node's data directory (unless
        // the case is about the data directory itself).
        let mut args = vec!["serve", "--config", &file, "--listen", "127.0.0.1:1"];
        if *key != "data_dir" {
            args.extend(["--data-dir", &data_str]);
        }
        let (ok, out) = sluice(&args, &[]);
        assert!(!ok && out.contains(key), "serve {text:?}: {out}");
    }
    // A bad environment override names the key and the variable.
    let (ok, out) = sluice(
        &["serve", "--data-dir", &data_str, "--listen", "127.0.0.1:1"],
        &[("SLUICE_STORAGE_SHARDS", "lots")],
    );
    assert!(
        !ok && out.contains("storage.shards") && out.contains("SLUICE_STORAGE_SHARDS"),
        "{out}"
    );
    let (ok, out) = sluice(
        &["config", "check"],
        &[("SLUICE_KAFKA_NUM_PARTITIONS", "0")],
    );
    assert!(!ok && out.contains("kafka.num_partitions"), "{out}");

    assert_eq!(snapshot(&data), before, "the data directory changed");
    // And the node still starts on it with its data.
    node.restart();
    let (ok, out) = sluice(&["consume", "-b", &node.addr, "kept", "-e"], &[]);
    assert!(ok && out.contains("hello"), "{out}");
}

#[test]
fn the_printed_defaults_are_a_valid_file() {
    let (ok, text) = sluice(&["config", "defaults"], &[]);
    assert!(ok, "{text}");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("defaults.toml");
    std::fs::write(&file, &text).expect("write");
    let (ok, out) = sluice(&["config", "check", &file.display().to_string()], &[]);
    assert!(ok && out.contains("configuration is valid"), "{out}");
}
