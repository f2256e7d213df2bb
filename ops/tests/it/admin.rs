//! The admin HTTP endpoint of a real `sluice serve`: liveness, readiness, the node's
//! description, and refusals of odd methods, paths, oversized and garbled requests.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use crate::node::Node;

/// Sends raw bytes, returns (status code, body).
fn http(addr: &str, request: &[u8]) -> (u16, String) {
    let (status, _, body) = crate::node::http(addr, request);
    (status, body)
}

fn get(addr: &str, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    );
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body:?}")),
    )
}

#[test]
fn health_node_and_refusals() {
    let node = Node::start();
    let addr = node.admin_addr();
    assert_eq!(get(&addr, "/v1/health/live").0, 200);
    let (status, ready) = get(&addr, "/v1/health/ready");
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")));
    let (status, info) = get(&addr, "/v1/node");
    assert_eq!(status, 200);
    assert_eq!(info["node_id"], 1);
    assert!(info["shards"].as_u64().is_some_and(|n| n >= 1), "{info}");
    assert_eq!(
        info["listeners"]["kafka"].as_str(),
        Some(node.addr.as_str())
    );
    assert_eq!(info["listeners"]["admin"].as_str(), Some(addr.as_str()));
    assert_eq!(
        info["data_dir"].as_str(),
        Some(node.data_dir().display().to_string().as_str())
    );
    assert!(
        info["data_dir_bytes_used"].as_u64().is_some_and(|b| b > 0),
        "{info}"
    );
    assert!(
        info["filesystem_bytes_free"]
            .as_u64()
            .is_some_and(|b| b > 0),
        "{info}"
    );

    // Partitions: each with its shard and offsets, after 3 records.
    let (status, out, err) = crate::node::run(
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice")).args([
            "produce",
            "-b",
            &node.addr,
            "listed",
            "--partition",
            "0",
        ]),
        Some(b"a\nb\nc\n"),
    );
    assert!(status.success(), "{out}{err}");
    let (status, parts) = get(&addr, "/v1/partitions");
    assert_eq!(status, 200);
    let listed: Vec<&serde_json::Value> = parts["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .filter(|p| p["topic"] == "listed")
        .collect();
    assert_eq!(listed.len(), 1, "{parts}");
    let p = listed[0];
    assert_eq!(p["partition"], 0);
    assert_eq!(p["log_start_offset"], 0);
    assert_eq!(p["high_watermark"], 3);
    assert_eq!(p["log_end_offset"], 3);
    assert!(p["size_bytes"].as_u64().is_some_and(|b| b > 0), "{p}");
    assert_eq!(p["segments"], 1);
    assert!(p["shard"]
        .as_u64()
        .is_some_and(|s| s < info["shards"].as_u64().unwrap()));
    assert_eq!(p["leader_epoch"], 0, "{p}");
    assert!(p["offline"].is_null(), "{p}");

    // Odd requests: each answered with a status, none takes the endpoint down.
    assert_eq!(http(&addr, b"POST /v1/node HTTP/1.1\r\n\r\n").0, 405);
    assert_eq!(http(&addr, b"GET /v1/nope HTTP/1.1\r\n\r\n").0, 404);
    assert_eq!(
        http(&addr, b"GET /../../etc/passwd HTTP/1.1\r\n\r\n").0,
        404
    );
    assert_eq!(http(&addr, b"garbage\r\n\r\n").0, 400);
    assert_eq!(http(&addr, b"GET /v1/node HTTP/9\r\n\r\n").0, 400);
    let big = format!(
        "GET /v1/node HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    assert_eq!(http(&addr, big.as_bytes()).0, 431);
    let (status, body) = http(&addr, b"HEAD /v1/health/live HTTP/1.1\r\n\r\n");
    assert_eq!((status, body.as_str()), (200, ""));
    // A client that connects and sends nothing is dropped after the timeout; the
    // next one is answered.
    let idle = TcpStream::connect(&addr).expect("connect");
    assert_eq!(get(&addr, "/v1/health/live").0, 200);
    drop(idle);
    // Nor does one that trickles its request a byte at a time.
    let a2 = addr.clone();
    let trickler = std::thread::spawn(move || {
        let mut s = TcpStream::connect(&a2).expect("connect");
        for b in b"GET /v1/health/live HTTP/1.1\r\nX: y\r\n" {
            if s.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(get(&addr, "/v1/health/live").0, 200);
    trickler.join().expect("trickler");
    assert!(!node.log().contains("panicked"));
}

/// SIGTERM with a long-poll Fetch in flight: readiness goes 503 "stopping", new
/// Kafka connections are refused, the Fetch is still answered, exit status 0.
#[test]
fn graceful_shutdown_goes_unready_refuses_and_finishes_in_flight_requests() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    let mut node = Node::start();
    let addr = node.admin_addr();
    let (status, out, err) = crate::node::run(
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["topic", "create", "-b", &node.addr, "quiet", "-p", "1"]),
        None,
    );
    assert!(status.success(), "{out}{err}");
    let kafka = node.addr.clone();
    let (connected, is_connected) = std::sync::mpsc::channel();
    let fetch = std::thread::spawn(move || {
        let mut c =
            sluice_net::client::Client::connect(&kafka, Duration::from_secs(10)).expect("connect");
        connected.send(()).expect("send");
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(4000)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("quiet")))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])]);
        let (_, r): (i16, FetchResponse) = c.call(ApiKey::Fetch, 12, &req).expect("Fetch");
        (r, std::time::Instant::now())
    });
    // The connection is open (before SIGTERM closes the listener); let the Fetch
    // arrive and start waiting for data that never comes.
    is_connected
        .recv_timeout(Duration::from_secs(30))
        .expect("connected");
    std::thread::sleep(Duration::from_millis(300));
    node.send_signal(nix::sys::signal::Signal::SIGTERM);
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let reason = loop {
        let (status, ready) = get(&addr, "/v1/health/ready");
        if status == 503 {
            break ready["reason"].as_str().unwrap_or_default().to_string();
        }
        assert!(std::time::Instant::now() < deadline, "still ready");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(reason, "stopping");
    let unready_at = std::time::Instant::now();
    // New Kafka connections are refused while the Fetch waits.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        match std::net::TcpStream::connect(&node.addr) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            other => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "a new connection was not refused: {other:?}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let (answer, answered_at) = fetch.join().expect("fetch thread");
    assert_eq!(answer.responses[0].partitions[0].error_code, 0);
    // It was still waiting when the node went unready, and was answered after.
    assert!(answered_at > unready_at);
    let status = node.wait_exit();
    assert!(status.success(), "exit {status}:\n{}", node.log());
}
