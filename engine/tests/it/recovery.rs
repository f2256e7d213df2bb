//! Recovery: a torn tail made by a failpoint, files garbled byte by byte, damaged
//! indexes, nonsense in checkpoint files. Never a panic; acknowledged data is never
//! lost; corruption below the recovery point takes only that partition offline.

use std::path::{Path, PathBuf};

use crate::common::*;
use sluice_engine::failpoint::{self, Action};
use sluice_engine::log::index::OffsetIndex;
use sluice_engine::{AppendOptions, Durability};

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

#[test]
fn a_torn_write_is_cut_off_and_acknowledged_batches_survive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = tp("torn", 0);
    let other = tp("bystander", 0);
    let acked: Vec<(u64, Vec<String>)>;
    {
        let engine = start(small_config(dir.path(), 1));
        create(&engine, &[t.clone(), other.clone()], None);
        let mut a = Vec::new();
        for r in 0..20 {
            let info = append(&engine, &t, batch(&format!("a{r}"), 7, r), true);
            a.push(info.base_offset);
        }
        append(&engine, &other, batch("o", 3, 1), true);
        acked = read_all(&engine, &t, 0).iter().map(|b| decode(b)).collect();
        assert_eq!(acked.len(), 20);
        failpoint::arm(
            "segment.write",
            &dir.path().join("torn-0"),
            Action::TornWrite { keep_bytes: 100 },
            0,
            1,
        );
        let r = with_partition(&engine, &t, |p| async move {
            p.append(
                batch("lost", 50, 1),
                AppendOptions {
                    leader_epoch: 0,
                    durability: Durability::Durable,
                },
            )
            .await
        });
        assert_eq!(
            r.expect_err("torn write is not acknowledged").kafka_code(),
            56
        );
        let offline = with_partition(&engine, &t, |p| async move { p.offline_reason() });
        assert!(offline.is_some_and(|r| r.contains("torn")));
        // The other partition is unaffected.
        append(&engine, &other, batch("o2", 3, 2), true);
        let _ = engine.shutdown();
        failpoint::disarm_all(&dir.path().join("torn-0"));
    }
    let engine = start(small_config(dir.path(), 1));
    let got: Vec<_> = read_all(&engine, &t, 0).iter().map(|b| decode(b)).collect();
    assert_eq!(got, acked, "exactly the acknowledged batches remain");
    let info = append(&engine, &t, batch("after", 2, 3), true);
    assert_eq!(info.base_offset, 140);
    assert_eq!(read_all(&engine, &other, 0).len(), 2);
    engine.shutdown().expect("shutdown");
}

/// Byte positions of batch starts in a segment file, with base offsets.
fn batch_starts(bytes: &[u8]) -> Vec<(usize, u64)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(h) = sluice_engine::batch::BatchHeader::parse(&bytes[pos..]) {
        out.push((pos, h.base_offset as u64));
        pos += h.total_bytes().expect("size");
    }
    out
}

fn set_recovery_point(pdir: &Path, rp: u64, hw: u64) {
    let text = format!("0\n3\nrecovery-point {rp}\nhigh-watermark {hw}\nlog-start-offset 0\n");
    std::fs::write(pdir.join("partition-metadata-checkpoint"), text).expect("write");
    let _ = std::fs::remove_file(pdir.join(".sluice-clean-shutdown"));
}

#[test]
fn garbled_bytes_after_the_recovery_point_are_cut_and_before_it_take_only_that_partition_offline() {
    let pristine = tempfile::tempdir().expect("tempdir");
    let t = tp("garble", 0);
    let other = tp("fine", 0);
    {
        let engine = start(small_config(pristine.path(), 1));
        create(&engine, &[t.clone(), other.clone()], None);
        for r in 0..30 {
            append(
                &engine,
                &t,
                batch(&format!("g{r}"), 3 + r % 5, r as i64),
                false,
            );
        }
        append(&engine, &other, batch("f", 2, 1), true);
        engine.shutdown().expect("shutdown");
    }
    let segs = files_with(&pristine.path().join("garble-0"), "log");
    let last_seg = segs.last().expect("a segment").clone();
    let seg_name = last_seg.file_name().expect("name").to_owned();
    let original = std::fs::read(&last_seg).expect("read");
    let starts = batch_starts(&original);
    let seg_base: u64 = seg_name.to_string_lossy()[..20].parse().expect("base");
    let log_end = {
        let engine = start(small_config(pristine.path(), 1));
        let e = with_partition(&engine, &t, |p| async move { p.offsets().log_end_offset });
        engine.shutdown().expect("shutdown");
        e
    };
    let mut checked = 0;
    for pos in (0..original.len()).step_by(37) {
        let (batch_pos, batch_base) = *starts
            .iter()
            .rev()
            .find(|(p, _)| *p <= pos)
            .expect("in a batch");
        let rel = pos - batch_pos;
        if rel < 8 || (12..16).contains(&rel) {
            continue; // base offset and leader epoch are not covered by the CRC, as in Kafka
        }
        for below_recovery_point in [false, true] {
            let work = tempfile::tempdir().expect("tempdir");
            copy_dir(pristine.path(), work.path());
            let pdir = work.path().join("garble-0");
            let mut bytes = original.clone();
            bytes[pos] ^= 0x41;
            std::fs::write(pdir.join(&seg_name), &bytes).expect("write");
            let rp = if below_recovery_point {
                log_end
            } else {
                seg_base
            };
            set_recovery_point(&pdir, rp, 0);
            let engine = start(small_config(work.path(), 1));
            let (offline, end) = with_partition(&engine, &t, |p| async move {
                (p.offline_reason(), p.offsets().log_end_offset)
            });
            if below_recovery_point {
                let reason = offline.unwrap_or_else(|| panic!("byte {pos}: corruption below the recovery point must take the partition offline"));
                assert!(
                    reason.contains("garble-0")
                        && reason.contains(&seg_name.to_string_lossy().to_string()),
                    "{reason}"
                );
                assert!(
                    reason.contains(&format!("byte {batch_pos}")),
                    "names the position: {reason}"
                );
            } else {
                assert!(offline.is_none(), "byte {pos}: {offline:?}");
                assert_eq!(end, batch_base, "byte {pos}: log cut at the garbled batch");
                let got = read_all(&engine, &t, 0);
                let expected =
                    count_before(&segs) + starts.iter().filter(|(p, _)| *p < batch_pos).count();
                assert_eq!(got.len(), expected, "byte {pos}");
                append(&engine, &t, batch("new", 1, 1), true);
            }
            assert_eq!(
                read_all(&engine, &other, 0).len(),
                1,
                "the other partition works"
            );
            engine.shutdown().expect("shutdown");
            checked += 1;
        }
    }
    assert!(checked > 50, "{checked}");
}

/// Batches in every segment but the last of the pristine copy.
fn count_before(segs: &[PathBuf]) -> usize {
    segs[..segs.len() - 1]
        .iter()
        .map(|s| batch_starts(&std::fs::read(s).expect("read")).len())
        .sum()
}

#[test]
fn a_damaged_index_is_rebuilt_and_rewritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = tp("reindex", 0);
    let engine = start(small_config(dir.path(), 1));
    create(&engine, std::slice::from_ref(&t), None);
    for r in 0..400 {
        append(&engine, &t, batch("i", 9, r), false);
    }
    let expected = read_all(&engine, &t, 0);
    engine.shutdown().expect("shutdown");
    let pdir = dir.path().join("reindex-0");
    let indexes = files_with(&pdir, "index");
    assert!(indexes.len() >= 3);
    let first_size = std::fs::metadata(&indexes[0]).expect("meta").len();
    assert!(first_size > 0);
    std::fs::write(&indexes[0], b"garbage").expect("write");
    let mut swapped = std::fs::read(&indexes[1]).expect("read");
    swapped.reverse();
    std::fs::write(&indexes[1], &swapped).expect("write");
    std::fs::remove_file(&indexes[2]).expect("remove");
    let engine = start(small_config(dir.path(), 1));
    assert_eq!(read_all(&engine, &t, 0), expected);
    let mid = with_partition(&engine, &t, |p| async move {
        let r = p.read(500, 1, None).await.expect("read");
        r.materialize().await.expect("data")
    });
    assert_eq!(decode(&mid).0, 495);
    engine.shutdown().expect("shutdown");
    let rebuilt = std::fs::read(&indexes[0]).expect("rewritten");
    assert_eq!(
        rebuilt.len() as u64,
        first_size,
        "index file rewritten with the same entries"
    );
    assert!(OffsetIndex::decode(&rebuilt, u64::MAX).is_ok());
    assert!(indexes[2].exists(), "missing index recreated");
}

#[test]
fn nonsense_in_checkpoint_files_is_repaired_never_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = tp("ckpt", 0);
    {
        let engine = start(small_config(dir.path(), 1));
        create(&engine, std::slice::from_ref(&t), None);
        for (r, epoch) in [(0, 0), (1, 0), (2, 3), (3, 3), (4, 7)] {
            with_partition(&engine, &t, move |p| async move {
                p.append(
                    batch("c", 4, r),
                    AppendOptions {
                        leader_epoch: epoch,
                        durability: Durability::Durable,
                    },
                )
                .await
                .expect("append")
            });
        }
        engine.shutdown().expect("shutdown");
    }
    let pdir = dir.path().join("ckpt-0");
    let nonsense: [&[u8]; 7] = [
        b"",
        b"\x00\xff\xfe garbage",
        b"0\n3\nrecovery-point 99999999999\nhigh-watermark 5\nlog-start-offset 0\n",
        b"0\n3\nrecovery-point -1\nhigh-watermark x\nlog-start-offset 0\n",
        b"7\n",
        b"0\n18446744073709551616\n",
        b"0\n2\n3 100\n1 0\n",
    ];
    for junk in nonsense {
        std::fs::write(pdir.join("partition-metadata-checkpoint"), junk).expect("write");
        std::fs::write(pdir.join("leader-epoch-checkpoint"), junk).expect("write");
        let engine = start(small_config(dir.path(), 1));
        let (offline, epochs, end) = with_partition(&engine, &t, |p| async move {
            (
                p.offline_reason(),
                p.leader_epochs(),
                p.offsets().log_end_offset,
            )
        });
        let junk_text = String::from_utf8_lossy(junk);
        if junk_text.contains("99999999999") {
            // A recovery point past the log's end says flushed data is missing.
            assert!(
                offline.is_some_and(|r| r.contains("recovery point")),
                "{junk_text}"
            );
        } else {
            assert!(offline.is_none(), "{junk_text}: {offline:?}");
            assert_eq!(end, 20);
            assert_eq!(epochs, vec![(0, 0), (3, 8), (7, 16)], "{junk_text}");
            assert_eq!(read_all(&engine, &t, 0).len(), 5);
        }
        engine.shutdown().expect("shutdown");
        // Restore readable checkpoints for the next round.
        std::fs::write(
            pdir.join("partition-metadata-checkpoint"),
            "0\n3\nrecovery-point 0\nhigh-watermark 0\nlog-start-offset 0\n",
        )
        .expect("write");
    }
}

#[test]
fn segments_after_a_gap_are_dropped_so_nothing_after_a_gap_is_visible() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = tp("gap", 0);
    {
        let engine = start(small_config(dir.path(), 1));
        create(&engine, std::slice::from_ref(&t), None);
        for r in 0..300 {
            append(&engine, &t, batch("g", 5, r), false);
        }
        engine.shutdown().expect("shutdown");
    }
    let pdir = dir.path().join("gap-0");
    let logs = files_with(&pdir, "log");
    assert!(logs.len() >= 3);
    // Lose the last batch of the second-to-last segment, as if it never reached disk.
    let victim = &logs[logs.len() - 2];
    let bytes = std::fs::read(victim).expect("read");
    let starts = batch_starts(&bytes);
    let (last_pos, last_base) = *starts.last().expect("batches");
    std::fs::write(victim, &bytes[..last_pos]).expect("write");
    set_recovery_point(&pdir, 0, 0);
    let engine = start(small_config(dir.path(), 1));
    let (offline, end, segments) = with_partition(&engine, &t, |p| async move {
        (
            p.offline_reason(),
            p.offsets().log_end_offset,
            p.segment_count(),
        )
    });
    assert!(offline.is_none(), "{offline:?}");
    assert_eq!(end, last_base, "the log ends where the gap begins");
    assert_eq!(segments, logs.len() - 1);
    assert!(
        !logs[logs.len() - 1].exists(),
        "the segment after the gap is gone"
    );
    let info = append(&engine, &t, batch("after", 1, 1), true);
    assert_eq!(info.base_offset, last_base);
    engine.shutdown().expect("shutdown");
}
