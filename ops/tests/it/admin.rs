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
