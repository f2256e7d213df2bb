//! A shard: one pinned executor and the partitions it owns.
//!
//! [`ShardCtx`] is what every partition of the shard shares: the engine settings,
//! the group-commit flusher's dirty list and signal, and the ledger of the shard's
//! batch cache. [`Shard`] is the handle jobs from the router receive.
//!
//! Batch cache: each partition keeps its recent batches (a suffix of its log); the
//! shard's ledger records them in arrival order and evicts the oldest once the
//! shard's budget is exceeded, but never a batch that is not yet in its file (reads
//! of such offsets are served from memory only).

pub(crate) mod arena;
pub mod flusher;
pub mod router;
pub mod table;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{EngineConfig, LogConfig};
use crate::error::{Error, Result};
use crate::log::Partition;
use crate::sync::Notify;
use crate::TopicPartition;

/// State shared by the partitions of one shard.
pub(crate) struct ShardCtx {
    pub id: usize,
    pub config: Arc<EngineConfig>,
    /// Partitions with data not yet written or synced.
    pub dirty: RefCell<Vec<Rc<Partition>>>,
    /// Wakes the flusher.
    pub flush_signal: Notify,
    pub stopping: Cell<bool>,
    cache: RefCell<CacheLedger>,
    /// The batch cache's memory.
    pub arena: RefCell<arena::Arena>,
    /// Blocks the shard's segments hold for cold readers.
    pub read_ahead: Rc<crate::log::read_ahead::Ledger>,
}

#[derive(Default)]
struct CacheLedger {
    order: VecDeque<(Weak<Partition>, u64)>,
    bytes: usize,
}

impl ShardCtx {
    pub(crate) fn new(id: usize, config: Arc<EngineConfig>) -> Self {
        let arena = RefCell::new(arena::Arena::new(config.cache_bytes_per_shard));
        ShardCtx {
            id,
            config,
            dirty: RefCell::new(Vec::new()),
            flush_signal: Notify::default(),
            stopping: Cell::new(false),
            cache: RefCell::new(CacheLedger::default()),
            read_ahead: Rc::default(),
            arena,
        }
    }

    pub(crate) fn cache_added(&self, p: &Rc<Partition>, base_offset: u64, bytes: usize) {
        let mut c = self.cache.borrow_mut();
        c.order.push_back((Rc::downgrade(p), base_offset));
        c.bytes += bytes;
    }

    pub(crate) fn cache_removed(&self, bytes: usize) {
        let mut c = self.cache.borrow_mut();
        c.bytes = c.bytes.saturating_sub(bytes);
    }

    /// Bytes held by the shard's batch cache.
    pub(crate) fn cache_bytes(&self) -> usize {
        self.cache.borrow().bytes
    }

    /// Evicts the oldest cached batches until the shard is within its budget.
    /// Under budget it still drops ledger entries at the front whose batches are
    /// already gone (retention, delete-records, deleted partitions), so the ledger
    /// does not grow with entries that no longer stand for memory.
    pub(crate) fn evict_cache(&self) {
        let budget = self.config.cache_bytes_per_shard;
        // Bounded by the ledger's length: every pass pops an entry or stops.
        loop {
            let (front, over_budget) = {
                let c = self.cache.borrow();
                match c.order.front() {
                    Some((w, base)) => ((w.upgrade(), *base), c.bytes > budget),
                    None => return,
                }
            };
            let freed = match front.0 {
                Some(p) if !over_budget => {
                    if p.has_cached(front.1) {
                        return;
                    }
                    0
                }
                Some(p) => match p.evict_cached(front.1) {
                    Evicted::Bytes(n) => n,
                    Evicted::Gone => 0,
                    Evicted::NotWritten => return,
                },
                None => 0,
            };
            let mut c = self.cache.borrow_mut();
            c.order.pop_front();
            c.bytes = c.bytes.saturating_sub(freed);
        }
    }
}

/// What evicting one cached batch did.
pub(crate) enum Evicted {
    Bytes(usize),
    /// The batch was already gone (truncated, deleted).
    Gone,
    /// The batch is not in its file yet; it must stay.
    NotWritten,
}

impl Partition {
    /// Whether the oldest cached batch of this partition is the one at `base_offset`.
    pub(crate) fn has_cached(&self, base_offset: u64) -> bool {
        self.st
            .borrow()
            .cache
            .front()
            .is_some_and(|b| b.base_offset == base_offset)
    }

    pub(crate) fn evict_cached(&self, base_offset: u64) -> Evicted {
        let mut st = self.st.borrow_mut();
        let Some(front) = st.cache.front() else {
            return Evicted::Gone;
        };
        if front.base_offset != base_offset {
            return Evicted::Gone;
        }
        let in_file = st
            .segments
            .iter()
            .find(|s| s.written_next_offset < s.next_offset)
            .map_or(st.next_offset, |s| s.written_next_offset);
        if front.last_offset >= in_file {
            return Evicted::NotWritten;
        }
        st.cache
            .pop_front()
            .map_or(Evicted::Gone, |b| Evicted::Bytes(b.bytes.len()))
    }

    /// Bytes of this partition's batches in the shard cache.
    pub fn cached_bytes(&self) -> usize {
        self.st.borrow().cache.iter().map(|b| b.bytes.len()).sum()
    }
}

/// The partitions of one shard; jobs sent by the router get this.
pub struct Shard {
    pub(crate) ctx: Rc<ShardCtx>,
    partitions: RefCell<BTreeMap<TopicPartition, Rc<Partition>>>,
    /// What the layers above keep per shard (the protocol layer's services),
    /// reachable from every job the router runs here.
    services: RefCell<Option<Rc<dyn std::any::Any>>>,
}

impl Shard {
    pub(crate) fn new(ctx: Rc<ShardCtx>) -> Self {
        Shard {
            ctx,
            partitions: RefCell::new(BTreeMap::new()),
            services: RefCell::new(None),
        }
    }

    /// The shard's services value of type `T`, made by `make` on first use.
    pub fn services<T: 'static>(&self, make: impl FnOnce() -> T) -> Rc<T> {
        if let Some(s) = self.services.borrow().clone() {
            if let Ok(t) = s.downcast::<T>() {
                return t;
            }
        }
        let t = Rc::new(make());
        *self.services.borrow_mut() = Some(t.clone());
        t
    }

    pub fn id(&self) -> usize {
        self.ctx.id
    }

    /// The partition, if this shard owns it.
    pub fn partition(&self, tp: &TopicPartition) -> Result<Rc<Partition>> {
        self.partitions
            .borrow()
            .get(tp)
            .cloned()
            .ok_or_else(|| Error::UnknownPartition(tp.clone()))
    }

    pub fn partitions(&self) -> Vec<Rc<Partition>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// Bytes in this shard's batch cache.
    pub fn cache_bytes(&self) -> usize {
        self.ctx.cache_bytes()
    }

    /// Creates a new, empty partition on this shard.
    pub async fn create_partition(
        &self,
        tp: TopicPartition,
        config: Option<LogConfig>,
    ) -> Result<Rc<Partition>> {
        if self.ctx.stopping.get() {
            return Err(Error::ShuttingDown(self.ctx.id));
        }
        let config = config.unwrap_or_else(|| self.ctx.config.log_defaults.clone());
        config.validate()?;
        if self.partitions.borrow().contains_key(&tp) {
            return Err(Error::PartitionExists(tp));
        }
        let p = Partition::create(self.ctx.clone(), tp.clone(), config).await?;
        self.partitions.borrow_mut().insert(tp, p.clone());
        Ok(p)
    }

    /// Opens (recovers) existing partition directories owned by this shard, a few at
    /// a time. Partitions that cannot be recovered are registered offline.
    pub(crate) async fn open_partitions(&self, tps: Vec<TopicPartition>) {
        /// Recoveries run at once per shard: enough to keep the disk busy without
        /// reading many segments into memory together.
        const PARALLEL_RECOVERIES: usize = 8;
        let mut rest = tps.into_iter();
        loop {
            let wave: Vec<TopicPartition> = rest.by_ref().take(PARALLEL_RECOVERIES).collect();
            if wave.is_empty() {
                break;
            }
            let opened = futures::future::join_all(wave.into_iter().map(|tp| {
                Partition::open(self.ctx.clone(), tp, self.ctx.config.log_defaults.clone())
            }))
            .await;
            let mut map = self.partitions.borrow_mut();
            for p in opened {
                map.insert(p.tp.clone(), p);
            }
        }
    }

    /// Deletes a partition: closes it and removes its directory. The directory is
    /// first renamed to `<name>.<ms>-delete` (atomic), so a crash midway leaves no
    /// half-deleted partition behind; leftovers are removed at start.
    pub async fn delete_partition(&self, tp: &TopicPartition) -> Result<()> {
        let p = self
            .partitions
            .borrow_mut()
            .remove(tp)
            .ok_or_else(|| Error::UnknownPartition(tp.clone()))?;
        let removed =
            p.st.borrow_mut()
                .cache
                .drain(..)
                .map(|b| b.bytes.len())
                .sum();
        self.ctx.cache_removed(removed);
        p.st.borrow_mut().offline = Some("deleted".into());
        p.retire(&Error::UnknownPartition(tp.clone()));
        let _permit = p
            .io_lock
            .acquire_permit(1)
            .await
            .map_err(|_| Error::ShuttingDown(self.ctx.id))?;
        let files: Vec<_> =
            p.st.borrow_mut()
                .segments
                .iter_mut()
                .filter_map(|s| s.file.take())
                .collect();
        drop(files);
        let from = p.dir.clone();
        let to =
            self.ctx
                .config
                .data_dir
                .join(format!("{}.{}-delete", tp.dir_name(), crate::now_ms()));
        glommio::io::rename(&from, &to)
            .await
            .map_err(|e| Error::io("rename", &from, e))?;
        crate::disk::sync_dir(&self.ctx.config.data_dir).await?;
        let doomed = to.clone();
        glommio::executor()
            .spawn_blocking(move || std::fs::remove_dir_all(&doomed))
            .await
            .map_err(|e| Error::io("remove", &to, e))?;
        Ok(())
    }

    /// Stops the shard's logs cleanly: refuses new work, then closes every partition
    /// (final write, fdatasync, index files, checkpoints).
    pub(crate) async fn close_all(&self) -> Result<()> {
        self.ctx.stopping.set(true);
        let parts = self.partitions();
        let results = futures::future::join_all(parts.iter().map(Partition::close)).await;
        self.ctx.flush_signal.notify_all();
        let mut first_err = None;
        for (p, r) in parts.iter().zip(results) {
            if let Err(e) = r {
                tracing::error!(partition = %p.tp, error = %e, "partition did not close cleanly");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Periodic upkeep: checkpoints and retention, each on its own interval.
    pub(crate) async fn housekeeping(self: Rc<Self>) {
        let checkpoint_every = self.ctx.config.checkpoint_interval;
        let retention_every = self.ctx.config.retention_check_interval;
        let tick = checkpoint_every
            .min(retention_every)
            .min(Duration::from_secs(1));
        let mut since_checkpoint = Duration::ZERO;
        let mut since_retention = Duration::ZERO;
        while !self.ctx.stopping.get() {
            glommio::timer::sleep(tick).await;
            since_checkpoint += tick;
            since_retention += tick;
            if since_retention >= retention_every {
                since_retention = Duration::ZERO;
                for p in self.partitions() {
                    if self.ctx.stopping.get() {
                        return;
                    }
                    if let Err(e) = p.apply_retention().await {
                        tracing::warn!(partition = %p.tp, error = %e, "retention failed");
                    }
                }
            }
            if since_checkpoint >= checkpoint_every {
                since_checkpoint = Duration::ZERO;
                for p in self.partitions() {
                    if self.ctx.stopping.get() {
                        return;
                    }
                    if let Err(e) = p.checkpoint().await {
                        tracing::warn!(partition = %p.tp, error = %e, "checkpoint failed");
                    }
                }
            }
        }
    }
}
