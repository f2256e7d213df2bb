//! The per-shard services and their leadership hooks on a real broker: every
//! partition the reconciler creates is announced `elected` on the shard that owns
//! it, every partition of a deleted topic `resigned` there (before it goes), and
//! the group coordinators' own follower loads and unloads with them.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use sluice_engine::{Partition, TopicPartition};
use sluice_net::services::{Leadership, ShardServices};

type Seen = Arc<Mutex<Vec<(bool, String, i32, usize)>>>;

struct Recorder {
    shard: usize,
    seen: Seen,
}

impl Leadership for Recorder {
    fn elected(&self, _: &Rc<ShardServices>, partition: &Rc<Partition>) {
        let tp = partition.topic_partition();
        self.seen
            .lock()
            .unwrap()
            .push((true, tp.topic.to_string(), tp.partition, self.shard));
    }

    fn resigned(&self, _: &Rc<ShardServices>, tp: &TopicPartition) {
        self.seen
            .lock()
            .unwrap()
            .push((false, tp.topic.to_string(), tp.partition, self.shard));
    }
}

#[test]
fn created_and_deleted_partitions_are_announced_on_their_shards() {
    let node = crate::server::start(100 << 20);
    let broker = node.broker.as_ref().expect("running");
    let router = broker.router();
    let seen: Seen = Arc::default();
    for s in 0..router.shard_count() {
        let seen = seen.clone();
        futures::executor::block_on(router.call(s, move |shard| async move {
            ShardServices::of(&shard).follow_leadership(Rc::new(Recorder { shard: s, seen }));
        }))
        .expect("shard answers");
    }
    let topics = broker.topics();
    futures::executor::block_on(topics.create(
        "led",
        6,
        1,
        std::collections::BTreeMap::new(),
        false,
    ))
    .expect("create");
    let owners: Vec<(i32, usize)> = (0..6)
        .map(|p| {
            let tp = TopicPartition::new("led", p).unwrap();
            (p, router.shard_of(&tp).expect("placed"))
        })
        .collect();
    let elected: BTreeSet<(i32, usize)> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(e, t, _, _)| *e && t == "led")
        .map(|(_, _, p, s)| (*p, *s))
        .collect();
    assert_eq!(elected, owners.iter().copied().collect());
    assert!(owners.iter().any(|(_, s)| *s == 0) && owners.iter().any(|(_, s)| *s == 1));

    futures::executor::block_on(topics.delete("led")).expect("delete");
    let resigned: BTreeSet<(i32, usize)> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(e, t, _, _)| !*e && t == "led")
        .map(|(_, _, p, s)| (*p, *s))
        .collect();
    assert_eq!(resigned, owners.iter().copied().collect());
    assert!((0..6).all(|p| router
        .shard_of(&TopicPartition::new("led", p).unwrap())
        .is_none()));
}
