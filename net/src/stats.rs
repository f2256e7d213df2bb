//! What a scrape or `/v1/partitions` reads from one shard, in one job: its counters
//! ([`sluice_engine::metrics`]), its partitions' offsets and sizes, and the
//! committed offsets of the consumer groups it coordinates. The job only copies;
//! merging and encoding happen on the caller's thread, off the shards.

use std::rc::Rc;

use sluice_engine::metrics::ShardMetrics;
use sluice_engine::Shard;

/// One partition as its shard sees it.
#[derive(Debug, Clone)]
pub struct PartitionStats {
    pub topic: String,
    pub partition: i32,
    pub shard: usize,
    pub log_start_offset: u64,
    pub high_watermark: u64,
    pub log_end_offset: u64,
    pub size_bytes: u64,
    pub segments: usize,
    /// The latest leader epoch in the log (-1: none yet).
    pub leader_epoch: i32,
    /// Why the partition is offline, if it is.
    pub offline: Option<String>,
    /// This replica as the replica manager sees it (`None`: not assigned yet).
    pub replica: Option<ReplicaStats>,
}

/// A partition replica's replication state.
#[derive(Debug, Clone)]
pub struct ReplicaStats {
    /// "leader", "follower" or "offline" (no broker leads it).
    pub role: &'static str,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// On a leader: per follower, records behind the leader's log end (`None`:
    /// not heard from in this epoch) and seconds since it was last caught up.
    pub followers: Vec<crate::replica::FollowerLag>,
}

/// A consumer group's committed offset for one partition.
#[derive(Debug, Clone)]
pub struct CommittedOffset {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Everything one shard reports.
#[derive(Debug, Clone)]
pub struct ShardReport {
    pub metrics: ShardMetrics,
    pub partitions: Vec<PartitionStats>,
    pub committed: Vec<CommittedOffset>,
}

/// Copies the shard's state; run on the shard. Yields to the shard's other tasks
/// when its time slice is used up, so many partitions do not stall the data path.
pub async fn shard_report(shard: &Rc<Shard>) -> ShardReport {
    let id = shard.id();
    let services = crate::services::ShardServices::of(shard);
    let all = shard.partitions();
    let mut partitions = Vec::with_capacity(all.len());
    for (i, p) in all.iter().enumerate() {
        if i % 256 == 255 {
            glommio::yield_if_needed().await;
        }
        let tp = p.topic_partition();
        let o = p.offsets();
        partitions.push(PartitionStats {
            topic: tp.topic.to_string(),
            partition: tp.partition,
            shard: id,
            log_start_offset: o.log_start_offset,
            high_watermark: o.high_watermark,
            log_end_offset: o.log_end_offset,
            size_bytes: p.size_bytes(),
            segments: p.segment_count(),
            leader_epoch: p.leader_epochs().last().map_or(-1, |(e, _)| *e),
            offline: p.offline_reason(),
            replica: services
                .replicas
                .get(tp)
                .filter(|r| Rc::ptr_eq(&r.log, p))
                .map(|r| r.stats()),
        });
    }
    ShardReport {
        metrics: sluice_engine::metrics::snapshot(id),
        partitions,
        committed: crate::group::coordinator::committed_offsets(&services),
    }
}
