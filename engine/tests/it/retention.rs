//! Segment rolls by size and age, retention by time and size, and DeleteRecords.

use std::time::Duration;

use crate::common::*;
use sluice_engine::{now_ms, LogConfig};

fn log_files(dir: &std::path::Path, name: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join(name))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| {
            std::path::Path::new(n)
                .extension()
                .is_some_and(|e| e == "log")
        })
        .collect();
    v.sort();
    v
}

#[test]
fn segments_roll_by_size_and_by_age() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = start(small_config(dir.path(), 1));
    let by_size = tp("roll-size", 0);
    let by_age = tp("roll-age", 0);
    create(
        &engine,
        std::slice::from_ref(&by_size),
        Some(LogConfig {
            segment_bytes: 4096,
            ..LogConfig::default()
        }),
    );
    create(
        &engine,
        std::slice::from_ref(&by_age),
        Some(LogConfig {
            segment_ms: 20,
            ..LogConfig::default()
        }),
    );
    for r in 0..200 {
        append(&engine, &by_size, batch("s", 10, r), false);
    }
    let sizes = with_partition(&engine, &by_size, |p| async move { p.segments() });
    assert!(sizes.len() > 5, "{sizes:?}");
    for (base, size) in &sizes[..sizes.len() - 1] {
        assert!(*size <= 4096, "segment {base} has {size} bytes");
    }
    for r in 0..3 {
        append(&engine, &by_age, batch("a", 1, r), false);
        std::thread::sleep(Duration::from_millis(40));
    }
    let ages = with_partition(&engine, &by_age, |p| async move { p.segment_count() });
    assert_eq!(
        ages, 3,
        "one segment per append 40 ms apart with segment.ms=20"
    );
    engine.shutdown().expect("shutdown");
    let names = log_files(dir.path(), "roll-size-0");
    assert_eq!(names.len(), sizes.len());
    assert_eq!(names[1], format!("{:020}.log", sizes[1].0));
}

#[test]
fn retention_by_time_deletes_whole_old_segments_below_the_high_watermark() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = start(small_config(dir.path(), 1));
    let t = tp("retain-time", 0);
    let day = 24 * 3600 * 1000;
    create(
        &engine,
        std::slice::from_ref(&t),
        Some(LogConfig {
            segment_bytes: 4096,
            retention_ms: Some(day as u64),
            ..LogConfig::default()
        }),
    );
    let old = now_ms() - 3 * day;
    for r in 0..30 {
        append(&engine, &t, batch("old", 10, old + r), false);
    }
    let boundary = with_partition(&engine, &t, |p| async move { p.offsets().log_end_offset });
    for r in 0..30 {
        append(&engine, &t, batch("new", 10, now_ms() + r), false);
    }
    // Nothing is deleted while the high watermark is below it.
    let deleted = with_partition(&engine, &t, |p| async move {
        p.apply_retention().await.expect("retention")
    });
    assert_eq!(deleted, 0);
    let (deleted, offsets, segments) = with_partition(&engine, &t, |p| async move {
        let end = p.offsets().log_end_offset;
        p.set_high_watermark(end);
        let d = p.apply_retention().await.expect("retention");
        (d, p.offsets(), p.segments())
    });
    assert!(deleted > 0);
    assert!(offsets.log_start_offset <= boundary, "no new data deleted");
    assert!(
        offsets.log_start_offset + 100 >= boundary,
        "old segments gone: start {} boundary {boundary}",
        offsets.log_start_offset
    );
    assert_eq!(segments[0].0, offsets.log_start_offset);
    let first = read_all(&engine, &t, offsets.log_start_offset);
    assert!(decode(&first[first.len() - 1]).1[0].starts_with("new"));
    let below = with_partition(&engine, &t, |p| async move {
        p.read(0, 100, None).await.map(|_| ())
    });
    assert_eq!(below.expect_err("deleted").kafka_code(), 1);
    engine.shutdown().expect("shutdown");
    let engine = start(small_config(dir.path(), 1));
    let again = with_partition(&engine, &t, |p| async move { p.offsets() });
    assert_eq!(
        again.log_start_offset, offsets.log_start_offset,
        "log start survives restart"
    );
    engine.shutdown().expect("shutdown");
}

#[test]
fn retention_by_size_keeps_the_log_under_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = start(small_config(dir.path(), 1));
    let t = tp("retain-size", 0);
    create(
        &engine,
        std::slice::from_ref(&t),
        Some(LogConfig {
            segment_bytes: 4096,
            retention_bytes: Some(20_000),
            ..LogConfig::default()
        }),
    );
    for r in 0..400 {
        append(&engine, &t, batch("x", 10, now_ms() + r), false);
    }
    let (before, after, segs) = with_partition(&engine, &t, |p| async move {
        let before = p.size_bytes();
        p.set_high_watermark(p.offsets().log_end_offset);
        p.apply_retention().await.expect("retention");
        (before, p.size_bytes(), p.segments())
    });
    assert!(before > 40_000);
    assert!(after < 20_000 + 4096, "size {after}");
    assert!(
        after >= 20_000 - 4096,
        "deleted no more than needed: {after}"
    );
    assert_eq!(log_files(dir.path(), "retain-size-0").len(), segs.len());
    engine.shutdown().expect("shutdown");
}

#[test]
fn delete_records_moves_the_log_start_and_drops_whole_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = start(small_config(dir.path(), 1));
    let t = tp("delrec", 0);
    create(
        &engine,
        std::slice::from_ref(&t),
        Some(LogConfig {
            segment_bytes: 4096,
            ..LogConfig::default()
        }),
    );
    for r in 0..100 {
        append(&engine, &t, batch("d", 5, r), false);
    }
    let refused = with_partition(
        &engine,
        &t,
        |p| async move { p.delete_records_before(10).await },
    );
    assert_eq!(refused.expect_err("above high watermark").kafka_code(), 1);
    let (log_start, segs_before, segs_after) = with_partition(&engine, &t, |p| async move {
        p.set_high_watermark(p.offsets().log_end_offset);
        let before = p.segment_count();
        let start = p.delete_records_before(253).await.expect("delete records");
        (start, before, p.segment_count())
    });
    assert_eq!(log_start, 253);
    assert!(segs_after < segs_before);
    let got = read_all(&engine, &t, 253);
    assert_eq!(
        decode(&got[0]).0,
        250,
        "reads start with the batch holding the log start"
    );
    engine.shutdown().expect("shutdown");
    let engine = start(small_config(dir.path(), 1));
    let o = with_partition(&engine, &t, |p| async move { p.offsets() });
    assert_eq!(o.log_start_offset, 253);
    assert_eq!(o.log_end_offset, 500);
    engine.shutdown().expect("shutdown");
}
