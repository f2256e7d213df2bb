//! Two shards, partitions spread over both, requests that touch partitions of both
//! shards made from inside a shard: one hop per destination shard, none for the
//! local one.

use std::rc::Rc;

use crate::common::*;
use sluice_engine::{AppendOptions, Durability, Shard};

#[test]
fn a_request_from_shard_0_reaches_both_shards_in_one_hop_per_remote_shard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = start(small_config(dir.path(), 2));
    let router = engine.router();
    let tps: Vec<_> = (0..8).map(|p| tp("spread", p)).collect();
    create(&engine, &tps, None);
    let table = router.table();
    assert_eq!(
        table.counts(),
        &[4, 4],
        "partitions are balanced over the shards"
    );

    let r = router.clone();
    let tps2 = tps.clone();
    let (results, hops) = block_on(router.call(0, move |_home: Rc<Shard>| async move {
        let before = r.hops();
        // One job per destination shard carrying all of that shard's partitions.
        let mut per_shard: Vec<Vec<sluice_engine::TopicPartition>> =
            vec![Vec::new(); r.shard_count()];
        for t in &tps2 {
            per_shard[r.shard_of(t).expect("placed")].push(t.clone());
        }
        let jobs: Vec<_> = per_shard
            .into_iter()
            .enumerate()
            .map(|(s, parts)| {
                (s, move |shard: Rc<Shard>| async move {
                    let mut out = Vec::new();
                    for t in parts {
                        let p = shard.partition(&t).expect("owned here");
                        let info = p
                            .append(
                                batch(&t.to_string(), 5, 1),
                                AppendOptions {
                                    leader_epoch: 0,
                                    durability: Durability::Durable,
                                },
                            )
                            .await
                            .expect("append");
                        out.push((t, shard.id(), info.base_offset));
                    }
                    out
                })
            })
            .collect();
        let res: Vec<_> = r
            .scatter(jobs)
            .await
            .into_iter()
            .flat_map(|x| x.expect("shard answered"))
            .collect();
        (res, r.hops() - before)
    }))
    .expect("shard 0 answered");
    assert_eq!(hops, 1, "one hop to shard 1; shard 0's part ran in place");
    assert_eq!(results.len(), 8);
    for (t, shard, base) in &results {
        assert_eq!(Some(*shard), router.shard_of(t));
        assert_eq!(*base, 0);
    }
    let on_one = results.iter().filter(|(_, s, _)| *s == 1).count();
    assert_eq!(on_one, 4);
    for t in &tps {
        let got = read_all(&engine, t, 0);
        assert_eq!(decode(&got[0]).1[0], format!("{t}-0"));
    }
    engine.shutdown().expect("shutdown");
    // After a restart the partitions are spread again and all readable.
    let engine = start(small_config(dir.path(), 2));
    assert_eq!(engine.router().table().counts(), &[4, 4]);
    for t in &tps {
        assert_eq!(read_all(&engine, t, 0).len(), 1);
    }
    engine.shutdown().expect("shutdown");
}
