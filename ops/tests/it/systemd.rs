//! `sluice serve` under a pretend service manager: the test owns the datagram
//! socket `NOTIFY_SOCKET` names and sets `WATCHDOG_USEC`, and sees the node's
//! notifications in order: `STATUS=recovering`, `READY=1`, `WATCHDOG=1` pings, no
//! pings while a shard is blocked on purpose, pings again, then `STOPPING=1`.

use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::node::Node;

#[test]
fn ready_watchdog_and_stopping_in_order_and_a_stuck_shard_stops_the_pings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let seen: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = {
        let (seen, done) = (seen.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                    seen.lock().expect("lock").push((Instant::now(), msg));
                }
            }
        })
    };
    let socket = path.display().to_string();
    // A 2 s watchdog: pings every second, each after a probe of every shard (at most
    // 500 ms). Shard 0 is blocked for 4 s, 3 s after the node starts serving.
    let mut node = Node::start_with_env(
        "",
        &[
            ("NOTIFY_SOCKET", socket.as_str()),
            ("WATCHDOG_USEC", "2000000"),
            ("SLUICE_TEST_STALL_SHARD", "0:3000:4000"),
        ],
    );
    std::thread::sleep(Duration::from_secs(12));
    let status = node.stop();
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    listener.join().expect("listener");
    assert!(status.success(), "exit {status}:\n{}", node.log());

    let seen = seen.lock().expect("lock").clone();
    let has = |m: &str, k: &str| m.lines().any(|l| l == k);
    let pos = |k: &str| seen.iter().position(|(_, m)| has(m, k));
    let recovering = seen
        .iter()
        .position(|(_, m)| m.lines().any(|l| l.starts_with("STATUS=recovering ")))
        .expect("STATUS=recovering ...");
    let ready = pos("READY=1").unwrap_or_else(|| panic!("READY=1 in {seen:?}"));
    let stopping = pos("STOPPING=1").unwrap_or_else(|| panic!("STOPPING=1 in {seen:?}"));
    assert!(recovering < ready && ready < stopping, "{seen:?}");
    let pings: Vec<(usize, Instant)> = seen
        .iter()
        .enumerate()
        .filter(|(_, (_, m))| has(m, "WATCHDOG=1"))
        .map(|(i, (t, _))| (i, *t))
        .collect();
    assert!(
        pings.iter().all(|(i, _)| *i > ready && *i < stopping),
        "pings only between READY=1 and STOPPING=1: {seen:?}"
    );
    // Before the stall: pings every second (at least 2 in the first 3 s).
    let ready_at = seen[ready].0;
    let early = pings
        .iter()
        .filter(|(_, t)| *t < ready_at + Duration::from_millis(2900))
        .count();
    assert!(early >= 2, "{early} pings before the stall: {seen:?}");
    // The stall: one gap of at least 3 s between pings, with the reason said.
    let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1].1 - w[0].1).collect();
    let longest = gaps.iter().max().copied().unwrap_or_default();
    assert!(
        longest >= Duration::from_secs(3),
        "no pause in the pings while shard 0 was blocked: gaps {gaps:?}"
    );
    assert!(
        seen.iter()
            .any(|(_, m)| m.contains("STATUS=shards [0] unresponsive")),
        "{seen:?}"
    );
    // And pings again after it.
    let gap_end = pings
        .windows(2)
        .find(|w| w[1].1 - w[0].1 == longest)
        .map(|w| w[1].0)
        .expect("gap");
    assert!(
        pings.iter().filter(|(i, _)| *i >= gap_end).count() >= 2,
        "pings resumed: {seen:?}"
    );
}
