//! Idempotent producers: duplicates answered as duplicates, gaps and old epochs
//! refused, and the state survives restarts (clean, and unclean with replay).

use bytes::Bytes;

use crate::common::*;
use sluice_engine::batch::build_values_batch;
use sluice_engine::{AppendInfo, Result};

fn pbatch(pid: i64, epoch: i16, seq: i32, n: usize) -> Bytes {
    let values: Vec<Vec<u8>> = (0..n)
        .map(|i| format!("p{pid}-s{}", seq + i as i32).into_bytes())
        .collect();
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    Bytes::from(build_values_batch(&refs, 1, (pid, epoch, seq)))
}

fn try_append(
    engine: &sluice_engine::Engine,
    t: &sluice_engine::TopicPartition,
    b: Bytes,
) -> Result<AppendInfo> {
    with_partition(engine, t, move |p| async move {
        p.append(b, sluice_engine::AppendOptions::default()).await
    })
}

#[test]
fn duplicates_and_gaps_are_recognised_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = tp("idem", 0);
    let engine = start(small_config(dir.path(), 1));
    create(&engine, std::slice::from_ref(&t), None);
    let mut seq = 0;
    for _ in 0..50 {
        let info = try_append(&engine, &t, pbatch(42, 0, seq, 3)).expect("in sequence");
        assert!(!info.duplicate);
        seq += 3;
    }
    let dup =
        try_append(&engine, &t, pbatch(42, 0, seq - 3, 3)).expect("duplicate is not an error");
    assert!(dup.duplicate);
    assert_eq!((dup.base_offset, dup.last_offset), (147, 149));
    assert_eq!(
        try_append(&engine, &t, pbatch(42, 0, seq + 1, 1))
            .expect_err("gap")
            .kafka_code(),
        45
    );
    engine.shutdown().expect("shutdown");

    let engine = start(small_config(dir.path(), 1));
    let dup = try_append(&engine, &t, pbatch(42, 0, seq - 3, 3)).expect("duplicate after restart");
    assert!(dup.duplicate, "state came back from the snapshot");
    assert_eq!(
        try_append(&engine, &t, pbatch(42, 0, seq + 5, 1))
            .expect_err("gap")
            .kafka_code(),
        45
    );
    let next = try_append(&engine, &t, pbatch(42, 0, seq, 2)).expect("next in sequence");
    assert_eq!(next.base_offset, 150);
    seq += 2;
    // A new epoch must start at sequence 0; the old epoch is then fenced.
    assert_eq!(
        try_append(&engine, &t, pbatch(42, 1, 5, 1))
            .expect_err("new epoch")
            .kafka_code(),
        45
    );
    try_append(&engine, &t, pbatch(42, 1, 0, 1)).expect("new epoch from 0");
    assert_eq!(
        try_append(&engine, &t, pbatch(42, 0, seq, 1))
            .expect_err("fenced")
            .kafka_code(),
        47
    );
    engine.shutdown().expect("shutdown");

    // Unclean stop: drop the snapshots and the clean marker; the log is replayed.
    let pdir = dir.path().join("idem-0");
    for e in std::fs::read_dir(&pdir).expect("dir") {
        let p = e.expect("entry").path();
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".snapshot") || name == ".sluice-clean-shutdown" {
            std::fs::remove_file(&p).expect("remove");
        }
    }
    let engine = start(small_config(dir.path(), 1));
    let dup = try_append(&engine, &t, pbatch(42, 1, 0, 1)).expect("duplicate found by replay");
    assert!(dup.duplicate);
    assert_eq!(
        try_append(&engine, &t, pbatch(42, 0, 0, 1))
            .expect_err("still fenced")
            .kafka_code(),
        47
    );
    engine.shutdown().expect("shutdown");
}
