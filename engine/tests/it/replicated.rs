//! A follower's append: a leader's batches stored byte for byte with the leader's
//! offsets and epochs, refused whole when they do not continue the log.

use crate::common::*;
use bytes::Bytes;
use sluice_engine::batch::{compute_crc, BatchHeader};
use sluice_engine::{AppendInfo, AppendOptions, Durability, Error, TopicPartition};

fn leader_append(engine: &sluice_engine::Engine, t: &TopicPartition, b: Bytes, epoch: i32) {
    with_partition(engine, t, move |p| async move {
        p.append(
            b,
            AppendOptions {
                leader_epoch: epoch,
                durability: Durability::Buffered,
            },
        )
        .await
    })
    .expect("leader append");
}

fn replicate(
    engine: &sluice_engine::Engine,
    t: &TopicPartition,
    b: Bytes,
) -> sluice_engine::Result<AppendInfo> {
    with_partition(engine, t, move |p| async move {
        p.append_replicated(b, Durability::Durable).await
    })
}

fn concat(batches: &[Bytes]) -> Bytes {
    batches
        .iter()
        .flat_map(|b| b.iter().copied())
        .collect::<Vec<u8>>()
        .into()
}

/// `b` with its base offset, leader epoch or attributes changed, CRC recomputed.
fn rewritten(b: &Bytes, base_offset: Option<u64>, epoch: Option<i32>, control: bool) -> Bytes {
    let mut v = b.to_vec();
    if let Some(o) = base_offset {
        v[..8].copy_from_slice(&o.to_be_bytes());
    }
    if let Some(e) = epoch {
        v[12..16].copy_from_slice(&e.to_be_bytes());
    }
    if control {
        let attrs = i16::from_be_bytes([v[21], v[22]]) | 0x20;
        v[21..23].copy_from_slice(&attrs.to_be_bytes());
    }
    let crc = compute_crc(&v);
    v[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(v)
}

#[test]
fn a_follower_stores_the_leaders_batches_byte_for_byte_and_keeps_them_through_a_restart() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let leader = start(small_config(leader_dir.path(), 1));
    let t = tp("replicated", 0);
    create(&leader, std::slice::from_ref(&t), None);
    // Epoch 0, then 3 (a new leader), over several segments.
    for r in 0..120 {
        let epoch = if r < 70 { 0 } else { 3 };
        leader_append(
            &leader,
            &t,
            batch(&format!("v{r}"), 1 + r % 5, r as i64),
            epoch,
        );
    }
    let source = read_all(&leader, &t, 0);
    let leader_epochs = with_partition(&leader, &t, |p| async move { p.leader_epochs() });
    assert_eq!(leader_epochs.len(), 2, "{leader_epochs:?}");

    let follower = start(small_config(follower_dir.path(), 1));
    create(&follower, std::slice::from_ref(&t), None);
    // Fetched in uneven chunks, as a follower's fetches would bring them.
    let mut at = 0;
    let mut step = 1;
    while at < source.len() {
        let end = (at + step).min(source.len());
        let info = replicate(&follower, &t, concat(&source[at..end])).expect("replicated");
        let first = BatchHeader::parse(&source[at]).expect("header");
        assert_eq!(info.base_offset, first.base_offset as u64);
        at = end;
        step = step % 7 + 1;
    }
    let copied = read_all(&follower, &t, 0);
    assert_eq!(
        copied, source,
        "the follower's log is the leader's, byte for byte"
    );
    let follower_epochs = with_partition(&follower, &t, |p| async move { p.leader_epochs() });
    assert_eq!(follower_epochs, leader_epochs);
    let end = with_partition(&follower, &t, |p| async move { p.offsets() });
    assert_eq!(
        end.log_end_offset,
        with_partition(&leader, &t, |p| async move { p.offsets().log_end_offset })
    );
    assert_eq!(end.durable_offset, end.log_end_offset, "durable when asked");

    follower.shutdown().expect("shutdown");
    let follower = start(small_config(follower_dir.path(), 1));
    assert_eq!(read_all(&follower, &t, 0), source, "after a restart");
    let after = with_partition(&follower, &t, |p| async move { p.leader_epochs() });
    assert_eq!(after, leader_epochs, "epochs after a restart");
}

#[test]
fn batches_that_do_not_continue_the_log_are_refused_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = start(small_config(dir.path(), 1));
    let t = tp("refused", 0);
    create(&engine, std::slice::from_ref(&t), None);
    let a = rewritten(&batch("a", 3, 0), Some(0), Some(2), false);
    let b = rewritten(&batch("b", 2, 0), Some(3), Some(2), false);
    replicate(&engine, &t, concat(&[a, b])).expect("offsets 0-4, epoch 2");

    let refused = |b: Bytes, what: &str| {
        let before = read_all(&engine, &t, 0);
        match replicate(&engine, &t, b) {
            Err(Error::InvalidBatch { reason, .. } | Error::CorruptBatch { reason, .. }) => {
                eprintln!("{what}: {reason}");
            }
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(read_all(&engine, &t, 0), before, "{what}: nothing written");
    };
    // A gap, an overlap, and a gap between two batches of one append.
    refused(
        rewritten(&batch("gap", 1, 0), Some(6), Some(2), false),
        "gap",
    );
    refused(
        rewritten(&batch("old", 1, 0), Some(4), Some(2), false),
        "overlap",
    );
    let ok = rewritten(&batch("c", 1, 0), Some(5), Some(2), false);
    let hole = rewritten(&batch("d", 1, 0), Some(7), Some(2), false);
    refused(concat(&[ok.clone(), hole]), "hole between batches");
    // A leader epoch going back.
    refused(
        rewritten(&batch("e", 1, 0), Some(5), Some(1), false),
        "older epoch",
    );
    // A damaged batch: its CRC no longer matches.
    let mut damaged = ok.to_vec();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    refused(Bytes::from(damaged), "bad CRC");

    // A control batch (a leader wrote it) and a newer epoch are taken.
    let control = rewritten(&batch("marker", 1, 0), Some(5), Some(2), true);
    let newer = rewritten(&batch("f", 2, 0), Some(6), Some(4), false);
    let info = replicate(&engine, &t, concat(&[control, newer])).expect("taken");
    assert_eq!((info.base_offset, info.last_offset), (5, 7));
    let epochs = with_partition(&engine, &t, |p| async move { p.leader_epochs() });
    assert_eq!(epochs, vec![(2, 0), (4, 6)]);
}
