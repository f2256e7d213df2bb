//! When appends become durable: only after an fdatasync, driven by waiters or by
//! `flush.messages` / `flush.ms`; a failed fdatasync acknowledges nothing.

use std::time::{Duration, Instant};

use crate::common::*;
use sluice_engine::failpoint::{self, Action};
use sluice_engine::{AppendOptions, Durability, LogConfig};

fn durable_and_end(
    engine: &sluice_engine::Engine,
    t: &sluice_engine::TopicPartition,
) -> (u64, u64) {
    with_partition(engine, t, |p| async move {
        let o = p.offsets();
        (o.durable_offset, o.log_end_offset)
    })
}

/// Polls until the durable offset reaches the log end; false if it does not within
/// `limit` (a bound so the test ends, not a timing assertion).
fn becomes_durable(
    engine: &sluice_engine::Engine,
    t: &sluice_engine::TopicPartition,
    limit: Duration,
) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        let (d, e) = durable_and_end(engine, t);
        if d == e {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn flush_messages_and_flush_ms_sync_without_waiters_and_nothing_else_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = start(small_config(dir.path(), 1));
    let by_count = tp("flush-count", 0);
    let by_time = tp("flush-time", 0);
    let never = tp("flush-never", 0);
    create(
        &engine,
        std::slice::from_ref(&by_count),
        Some(LogConfig {
            flush_messages: Some(3),
            ..LogConfig::default()
        }),
    );
    create(
        &engine,
        std::slice::from_ref(&by_time),
        Some(LogConfig {
            flush_ms: Some(20),
            ..LogConfig::default()
        }),
    );
    create(&engine, std::slice::from_ref(&never), None);
    for t in [&by_count, &by_time, &never] {
        append(&engine, t, batch("a", 2, 1), false);
        append(&engine, t, batch("b", 2, 2), false);
    }
    std::thread::sleep(Duration::from_millis(100));
    let (d, e) = durable_and_end(&engine, &by_count);
    assert!(
        d < e,
        "two batches are below flush.messages=3: durable {d}, end {e}"
    );
    let (d, e) = durable_and_end(&engine, &never);
    assert!(
        d < e,
        "no policy and no waiter: nothing is synced ({d} < {e})"
    );
    assert!(
        becomes_durable(&engine, &by_time, Duration::from_secs(10)),
        "flush.ms=20 syncs on its own"
    );
    append(&engine, &by_count, batch("c", 2, 3), false);
    assert!(
        becomes_durable(&engine, &by_count, Duration::from_secs(10)),
        "the third batch reaches flush.messages"
    );
    // A waiter syncs the partition without a policy.
    append(&engine, &never, batch("w", 1, 4), true);
    let (d, e) = durable_and_end(&engine, &never);
    assert_eq!(d, e);
    engine.shutdown().expect("shutdown");
}

#[test]
fn a_failed_fdatasync_acknowledges_nothing_and_takes_only_that_partition_offline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = tp("fsync-fails", 0);
    let other = tp("fsync-fine", 0);
    let engine = start(small_config(dir.path(), 1));
    create(&engine, &[t.clone(), other.clone()], None);
    for r in 0..5 {
        append(&engine, &t, batch("ok", 3, r), true);
    }
    failpoint::arm(
        "segment.flush",
        &dir.path().join("fsync-fails-0"),
        Action::Error,
        0,
        1,
    );
    let r = with_partition(&engine, &t, |p| async move {
        p.append(
            batch("lost", 3, 9),
            AppendOptions {
                leader_epoch: 0,
                durability: Durability::Durable,
            },
        )
        .await
    });
    assert_eq!(r.expect_err("not durable").kafka_code(), 56);
    let (d, _) = durable_and_end(&engine, &t);
    assert_eq!(
        d, 15,
        "the durable offset did not move past the failed sync"
    );
    let again = with_partition(&engine, &t, |p| async move {
        p.append(batch("x", 1, 1), AppendOptions::default()).await
    });
    assert_eq!(again.expect_err("offline").kafka_code(), 56);
    append(&engine, &other, batch("o", 1, 1), true);
    let _ = engine.shutdown();
    failpoint::disarm_all(&dir.path().join("fsync-fails-0"));
    let engine = start(small_config(dir.path(), 1));
    let got = read_all(&engine, &t, 0);
    assert!(got.len() >= 5, "acknowledged batches survive");
    for (i, b) in got.iter().take(5).enumerate() {
        assert_eq!(decode(b).0, 3 * i as u64);
    }
    engine.shutdown().expect("shutdown");
}
