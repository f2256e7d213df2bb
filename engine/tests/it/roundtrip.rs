//! Appended batches come back byte for byte, with their offsets, before and after a
//! clean restart; reads start at any offset; timestamp lookups find the right record.

use crate::common::*;
use sluice_engine::batch::BatchHeader;

#[test]
fn batches_round_trip_through_a_clean_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tps = [tp("orders", 0), tp("orders", 1), tp("audit-log", 0)];
    let mut expected: Vec<Vec<(u64, Vec<String>)>> = vec![Vec::new(); tps.len()];
    {
        let engine = start(small_config(dir.path(), 1));
        create(&engine, &tps, None);
        for round in 0..60 {
            for (i, t) in tps.iter().enumerate() {
                let n = 1 + (round * 7 + i * 3) % 40;
                let durable = round % 5 == 0;
                let info = append(
                    &engine,
                    t,
                    batch(&format!("{t}-r{round}"), n, 1_000 + round as i64),
                    durable,
                );
                let values: Vec<String> = (0..n).map(|k| format!("{t}-r{round}-{k}")).collect();
                assert_eq!(info.last_offset - info.base_offset + 1, n as u64);
                expected[i].push((info.base_offset, values));
            }
        }
        for (i, t) in tps.iter().enumerate() {
            let got: Vec<_> = read_all(&engine, t, 0).iter().map(|b| decode(b)).collect();
            assert_eq!(got, expected[i], "before restart: {t}");
        }
        engine.shutdown().expect("clean shutdown");
    }
    // Closed segments are Kafka's format: named by 20-digit base offset, indexes beside them.
    let pdir = dir.path().join("orders-0");
    let names: Vec<String> = std::fs::read_dir(&pdir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.contains(&"00000000000000000000.log".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"00000000000000000000.index".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"00000000000000000000.timeindex".to_string()),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .filter(|n| std::path::Path::new(n)
                .extension()
                .is_some_and(|e| e == "log"))
            .count()
            > 1,
        "segments rolled: {names:?}"
    );
    assert!(names.contains(&"leader-epoch-checkpoint".to_string()));

    let engine = start(small_config(dir.path(), 1));
    for (i, t) in tps.iter().enumerate() {
        let got: Vec<_> = read_all(&engine, t, 0).iter().map(|b| decode(b)).collect();
        assert_eq!(got, expected[i], "after restart: {t}");
        let end = expected[i].last().map_or(0, |(o, v)| o + v.len() as u64);
        let offsets = with_partition(&engine, t, |p| async move { p.offsets() });
        assert_eq!(offsets.log_end_offset, end);
    }
    // Appends continue at the right offset after the restart.
    let info = append(&engine, &tps[0], batch("after", 3, 5_000), true);
    assert_eq!(
        info.base_offset,
        expected[0].last().map_or(0, |(o, v)| o + v.len() as u64)
    );
    engine.shutdown().expect("clean shutdown");
}

#[test]
fn a_closed_segment_file_is_exactly_its_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = start(small_config(dir.path(), 1));
    let t = tp("exact", 0);
    create(&engine, std::slice::from_ref(&t), None);
    let mut stored = Vec::new();
    for r in 0..500 {
        append(&engine, &t, batch("x", 10, r), false);
    }
    for b in read_all(&engine, &t, 0) {
        stored.extend_from_slice(&b);
    }
    engine.shutdown().expect("shutdown");
    let mut on_disk = Vec::new();
    let mut logs: Vec<_> = std::fs::read_dir(dir.path().join("exact-0"))
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    for l in &logs {
        on_disk.extend_from_slice(&std::fs::read(l).expect("read"));
    }
    assert!(logs.len() > 2);
    assert_eq!(on_disk.len(), stored.len(), "segment files hold no padding");
    assert!(
        on_disk == stored,
        "segment files are the batches byte for byte"
    );
}

#[test]
fn reads_start_at_any_offset_and_respect_max_bytes_and_upper_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = start(small_config(dir.path(), 1));
    let t = tp("seek", 0);
    create(&engine, std::slice::from_ref(&t), None);
    for r in 0..300 {
        append(&engine, &t, batch("s", 1 + r % 13, r as i64), r % 50 == 0);
    }
    let end = with_partition(&engine, &t, |p| async move { p.offsets().log_end_offset });
    let checks = with_partition(&engine, &t, move |p| async move {
        let mut failures = Vec::new();
        for offset in (0..end).step_by(7) {
            let r = p.read(offset, 1, None).await.expect("read");
            let data = r.materialize().await.expect("data");
            let batches = sluice_engine::batch::split_batches_of(&data);
            if batches.len() != 1 {
                failures.push(format!(
                    "offset {offset}: {} batches for max_bytes 1",
                    batches.len()
                ));
                continue;
            }
            let h = BatchHeader::parse(&batches[0]).expect("header");
            let (base, last) = (h.base_offset as u64, h.last_offset() as u64);
            if !(base <= offset && offset <= last) {
                failures.push(format!("offset {offset}: got batch {base}..={last}"));
            }
            // Nothing at or above the upper bound.
            let capped = p.read(offset, 1 << 20, Some(last + 1)).await.expect("read");
            let capped = capped.materialize().await.expect("data");
            for b in sluice_engine::batch::split_batches_of(&capped) {
                let h = BatchHeader::parse(&b).expect("header");
                if h.last_offset() as u64 > last {
                    failures.push(format!("offset {offset}: batch past upper bound"));
                }
            }
        }
        failures
    });
    assert!(checks.is_empty(), "{checks:?}");
    let past_end = with_partition(&engine, &t, move |p| async move {
        p.read(end + 1, 10, None).await.map(|_| ())
    });
    assert_eq!(past_end.expect_err("past the end").kafka_code(), 1);
    engine.shutdown().expect("shutdown");
}

#[test]
fn timestamp_lookups_find_the_first_record_at_or_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = start(small_config(dir.path(), 1));
    let t = tp("times", 0);
    create(&engine, std::slice::from_ref(&t), None);
    // Batch r holds 10 records with timestamps 10_000 + 10 r + k.
    for r in 0..200i64 {
        append(&engine, &t, batch("t", 10, 10_000 + 10 * r), false);
    }
    engine.shutdown().expect("shutdown");
    let engine = start(small_config(dir.path(), 1));
    let found = with_partition(&engine, &t, |p| async move {
        let mut out = Vec::new();
        for target in [0i64, 10_000, 10_005, 10_555, 11_999, 12_000] {
            out.push((
                target,
                p.offset_for_timestamp(target).await.expect("lookup"),
            ));
        }
        (out, p.max_timestamp())
    });
    let (answers, max) = found;
    for (target, answer) in answers {
        let expect = if target >= 12_000 {
            None
        } else {
            Some(((target.max(10_000) - 10_000) as u64, target.max(10_000)))
        };
        assert_eq!(answer, expect, "target {target}");
    }
    assert_eq!(max, Some((11_999, 1_999)));
    engine.shutdown().expect("shutdown");
}
