//! Debian's `kcat` (librdkafka's command-line client) against a real `sluice serve`:
//! `-L` metadata, `-P` produce with keys and headers, `-C -e` consume to the end.

use std::process::Command;

use crate::node::{run, Node};

fn kcat(node: &Node, args: &[&str], stdin: Option<&[u8]>) -> String {
    let (status, out, err) = run(
        Command::new("kcat").arg("-b").arg(&node.addr).args(args),
        stdin,
    );
    assert!(
        status.success(),
        "kcat {args:?} failed: {status}\nstdout: {out}\nstderr: {err}\nbroker log:\n{}",
        node.log()
    );
    out
}

#[test]
fn kcat_lists_produces_and_consumes() {
    let node = Node::start();
    let lines: Vec<String> = (0..500).map(|i| format!("key{i}:value {i}")).collect();
    let input = lines.join("\n") + "\n";
    kcat(
        &node,
        &[
            "-P",
            "-t",
            "kc",
            "-K:",
            "-H",
            "origin=kcat",
            "-X",
            "acks=all",
        ],
        Some(input.as_bytes()),
    );

    let meta = kcat(&node, &["-L", "-t", "kc"], None);
    assert!(meta.contains("1 brokers:"), "{meta}");
    assert!(meta.contains("topic \"kc\" with 1 partitions"), "{meta}");
    assert!(
        meta.contains("partition 0, leader 1, replicas: 1, isrs: 1"),
        "{meta}"
    );

    let out = kcat(
        &node,
        &[
            "-C",
            "-t",
            "kc",
            "-e",
            "-o",
            "beginning",
            "-f",
            "%k|%s|%o|%h\\n",
        ],
        None,
    );
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(got.len(), 500, "{out}");
    for (i, line) in got.iter().enumerate() {
        assert_eq!(*line, format!("key{i}|value {i}|{i}|origin=kcat"));
    }

    // Consuming from an offset and from the end.
    let tail = kcat(
        &node,
        &["-C", "-t", "kc", "-e", "-o", "495", "-f", "%o\\n"],
        None,
    );
    assert_eq!(tail, "495\n496\n497\n498\n499\n");
    let from_end = kcat(
        &node,
        &["-C", "-t", "kc", "-e", "-o", "end", "-f", "%o\\n"],
        None,
    );
    assert_eq!(from_end, "");
}
