//! The batch cache stays within its budget while buffered appends stream out in
//! full buffers (the tail block never written), and what left the cache is read
//! back from the file.

use std::time::Duration;

use crate::common::*;
use sluice_engine::{AppendOptions, Durability};

#[test]
fn streaming_buffered_appends_keep_the_cache_within_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = small_config(dir.path(), 1);
    // Neither the write-back tick nor the pending limit writes the tail here: only
    // full buffers stream out, as under steady load.
    config.writeback_interval = Duration::from_mins(10);
    config.pending_bytes_max = 64 << 20;
    config.log_defaults.segment_bytes = 64 << 20;
    let budget = config.cache_bytes_per_shard;
    let slack = config.write_buffer_bytes * 6;
    let t = tp("stream", 0);
    let engine = start(config);
    create(&engine, std::slice::from_ref(&t), None);
    let value = "v".repeat(1000);
    let (appended, cached) = with_partition(&engine, &t, move |p| async move {
        let opts = AppendOptions {
            leader_epoch: 0,
            durability: Durability::Buffered,
        };
        let mut appended = 0u64;
        // 4 MiB in 16-record batches: 16 times the cache budget.
        for i in 0..256 {
            let values: Vec<String> = (0..16).map(|k| format!("{i}-{k}-{value}")).collect();
            let refs: Vec<&[u8]> = values.iter().map(String::as_bytes).collect();
            let b = bytes::Bytes::from(sluice_engine::batch::build_values_batch(
                &refs,
                1_000,
                sluice_engine::batch::NO_PRODUCER,
            ));
            let info = p.append(b, opts).await.expect("append");
            appended = info.last_offset + 1;
            glommio::yield_if_needed().await;
        }
        // Let the streamed writes complete; each append gives the cache a chance to
        // let go of what is in the file. Bounded: 2,000 rounds of 2 ms.
        let mut cached = p.cached_bytes();
        for _ in 0..2_000 {
            if cached <= budget + slack {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(2)).await;
            let info = p
                .append(batch("tick", 1, 2_000), opts)
                .await
                .expect("append");
            appended = info.last_offset + 1;
            cached = p.cached_bytes();
        }
        (appended, cached)
    });
    assert!(
        cached <= budget + slack,
        "the batch cache holds {cached} bytes, budget {budget} (+{slack} not yet written)"
    );
    let got = read_all(&engine, &t, 0);
    let records: u64 = got.iter().map(|b| decode(b).1.len() as u64).sum();
    assert_eq!(
        records, appended,
        "every record reads back, from file or cache"
    );
    let (base, values) = decode(&got[0]);
    assert_eq!(base, 0);
    assert!(values[0].starts_with("0-0-v"));
    engine.shutdown().expect("clean shutdown");
}
