//! Refused batches write nothing and map to Kafka's error codes; LogAppendTime
//! topics get the broker's clock and a fresh CRC.

use bytes::Bytes;

use crate::common::*;
use sluice_engine::batch::{crc_matches, BatchHeader};
use sluice_engine::{LogConfig, TimestampType};

#[test]
fn a_bad_batch_is_refused_and_nothing_of_it_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = start(small_config(dir.path(), 1));
    let t = tp("strict", 0);
    create(
        &engine,
        std::slice::from_ref(&t),
        Some(LogConfig {
            max_message_bytes: 2_000,
            ..LogConfig::default()
        }),
    );
    append(&engine, &t, batch("ok", 3, 1), true);
    let good = batch("g", 3, 1).to_vec();
    let mut bad_crc = good.clone();
    let n = bad_crc.len();
    bad_crc[n - 2] ^= 0xff;
    let mut magic1 = good.clone();
    magic1[16] = 1;
    let mut count_lie = good.clone();
    count_lie[60] = 9;
    let mut two = good.clone();
    two.extend_from_slice(&bad_crc);
    let cases: Vec<(Vec<u8>, i16)> = vec![
        (bad_crc, 2),
        (magic1, 87),
        (count_lie, 2),
        (good[..good.len() - 1].to_vec(), 2),
        (two, 2),
        (batch("big", 300, 1).to_vec(), 10),
        (Vec::new(), 87),
    ];
    for (bytes, code) in cases {
        let r = with_partition(&engine, &t, move |p| async move {
            p.append(Bytes::from(bytes), sluice_engine::AppendOptions::default())
                .await
        });
        assert_eq!(r.expect_err("refused").kafka_code(), code);
    }
    let o = with_partition(&engine, &t, |p| async move { p.offsets() });
    assert_eq!(
        o.log_end_offset, 3,
        "nothing of a refused append was written"
    );
    engine.shutdown().expect("shutdown");
    let engine = start(small_config(dir.path(), 1));
    assert_eq!(read_all(&engine, &t, 0).len(), 1);
    engine.shutdown().expect("shutdown");
}

#[test]
fn log_append_time_stamps_the_batch_and_keeps_the_crc_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = start(small_config(dir.path(), 1));
    let t = tp("lat", 0);
    create(
        &engine,
        std::slice::from_ref(&t),
        Some(LogConfig {
            message_timestamp_type: TimestampType::LogAppendTime,
            ..LogConfig::default()
        }),
    );
    let before = sluice_engine::now_ms();
    let info = append(&engine, &t, batch("x", 2, 5), false);
    assert!(info.log_append_time_ms >= before);
    let stored = read_all(&engine, &t, 0);
    let h = BatchHeader::parse(&stored[0]).expect("header");
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, info.log_append_time_ms);
    assert!(crc_matches(&stored[0]));
    engine.shutdown().expect("shutdown");
}
