//! Which shard owns which partition: an immutable, versioned table. Readers take
//! the current `Arc` without locking; a writer builds the next version and swaps it
//! in, and an update carrying an older version than the current one is ignored
//! (Redpanda's `shard_table`).

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::TopicPartition;

/// One version of the table.
#[derive(Debug, Clone, Default)]
pub struct ShardTable {
    pub version: u64,
    owners: HashMap<TopicPartition, usize>,
    counts: Vec<usize>,
}

impl ShardTable {
    pub fn new(shards: usize) -> Self {
        ShardTable {
            version: 0,
            owners: HashMap::new(),
            counts: vec![0; shards],
        }
    }

    pub fn shard_of(&self, tp: &TopicPartition) -> Option<usize> {
        self.owners.get(tp).copied()
    }

    pub fn len(&self) -> usize {
        self.owners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// Every placed partition, in no particular order.
    pub fn partitions(&self) -> impl Iterator<Item = &TopicPartition> {
        self.owners.keys()
    }

    /// Partitions per shard.
    pub fn counts(&self) -> &[usize] {
        &self.counts
    }

    /// The next version with each new partition placed on the least-loaded shard.
    pub fn with_placed(&self, tps: &[TopicPartition]) -> (ShardTable, Vec<usize>) {
        let mut next = self.clone();
        next.version += 1;
        let mut placed = Vec::with_capacity(tps.len());
        for tp in tps {
            if let Some(&s) = next.owners.get(tp) {
                placed.push(s);
                continue;
            }
            let shard = (0..next.counts.len())
                .min_by_key(|&s| (next.counts[s], s))
                .unwrap_or(0);
            next.counts[shard] += 1;
            next.owners.insert(tp.clone(), shard);
            placed.push(shard);
        }
        (next, placed)
    }

    /// The next version without these partitions.
    #[must_use]
    pub fn without(&self, tps: &[TopicPartition]) -> ShardTable {
        let mut next = self.clone();
        next.version += 1;
        for tp in tps {
            if let Some(s) = next.owners.remove(tp) {
                next.counts[s] = next.counts[s].saturating_sub(1);
            }
        }
        next
    }
}

/// The shared, swappable current table.
pub struct SharedShardTable {
    current: ArcSwap<ShardTable>,
}

impl SharedShardTable {
    pub fn new(table: ShardTable) -> Self {
        SharedShardTable {
            current: ArcSwap::from_pointee(table),
        }
    }

    pub fn load(&self) -> Arc<ShardTable> {
        self.current.load_full()
    }

    /// Installs `next` unless the current table is as new or newer; returns whether
    /// it was installed.
    pub fn install(&self, next: ShardTable) -> bool {
        let next = Arc::new(next);
        let mut installed = false;
        self.current.rcu(|cur| {
            if next.version > cur.version {
                installed = true;
                next.clone()
            } else {
                installed = false;
                cur.clone()
            }
        });
        installed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_balances_and_stale_versions_are_ignored() {
        let tps: Vec<_> = (0..7)
            .map(|p| TopicPartition::new("t", p).unwrap())
            .collect();
        let (t1, placed) = ShardTable::new(3).with_placed(&tps);
        assert_eq!(placed, vec![0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(t1.counts(), &[3, 2, 2]);
        let shared = SharedShardTable::new(ShardTable::new(3));
        assert!(shared.install(t1.clone()));
        assert!(!shared.install(ShardTable::new(3)));
        assert_eq!(shared.load().shard_of(&tps[4]), Some(1));
        let t2 = t1.without(&tps[..1]);
        assert_eq!(t2.counts(), &[2, 2, 2]);
    }
}
