//! Carrying work to the shard that owns it.
//!
//! A job is a closure sent to a shard's bounded inbox; the shard runs the future it
//! returns as a local task and sends the result back on a oneshot. Callers group
//! their work so that one request costs one hop per destination shard, never one
//! per record or per partition ([`ShardRouter::scatter`]). A call made on the
//! destination shard itself skips the channel and runs in place.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use futures::channel::{mpsc, oneshot};
use futures::SinkExt;

use crate::config::LogConfig;
use crate::error::{Error, Result};
use crate::shard::table::{ShardTable, SharedShardTable};
use crate::shard::Shard;
use crate::TopicPartition;

pub(crate) type Job = Box<dyn FnOnce(Rc<Shard>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// What a shard's inbox carries.
pub(crate) enum Message {
    Job(Job),
    /// Close every partition and stop; the result says whether all closed cleanly.
    Shutdown(oneshot::Sender<Result<()>>),
}

thread_local! {
    static CURRENT_SHARD: std::cell::RefCell<Option<Rc<Shard>>> = const { std::cell::RefCell::new(None) };
}

pub(crate) fn set_current_shard(shard: Option<Rc<Shard>>) {
    CURRENT_SHARD.with(|c| *c.borrow_mut() = shard);
}

fn current_shard(id: usize) -> Option<Rc<Shard>> {
    CURRENT_SHARD.with(|c| c.borrow().as_ref().filter(|s| s.id() == id).cloned())
}

/// Sends work to shards. Cheap to clone; usable from any thread.
#[derive(Clone)]
pub struct ShardRouter {
    inner: Arc<Inner>,
}

struct Inner {
    inboxes: Vec<mpsc::Sender<Message>>,
    table: SharedShardTable,
    /// Jobs sent over a channel to another thread (calls run in place not counted).
    hops: std::sync::atomic::AtomicU64,
}

impl ShardRouter {
    pub(crate) fn new(inboxes: Vec<mpsc::Sender<Message>>, table: ShardTable) -> Self {
        ShardRouter {
            inner: Arc::new(Inner {
                inboxes,
                table: SharedShardTable::new(table),
                hops: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    pub fn shard_count(&self) -> usize {
        self.inner.inboxes.len()
    }

    /// The shard that owns `tp`, if any does.
    pub fn shard_of(&self, tp: &TopicPartition) -> Option<usize> {
        self.inner.table.load().shard_of(tp)
    }

    /// Jobs sent to a shard over its channel so far (cross-thread hops).
    pub fn hops(&self) -> u64 {
        self.inner.hops.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The current partition -> shard table.
    pub fn table(&self) -> Arc<ShardTable> {
        self.inner.table.load()
    }

    /// Runs `f` on shard `shard` and returns its result.
    pub async fn call<T, F, Fut>(&self, shard: usize, f: F) -> Result<T>
    where
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        if let Some(local) = current_shard(shard) {
            return Ok(glommio::spawn_local(f(local)).await);
        }
        let inbox = self
            .inner
            .inboxes
            .get(shard)
            .ok_or_else(|| Error::InvalidRequest(format!("no shard {shard}")))?;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |s: Rc<Shard>| {
            Box::pin(async move {
                let out = f(s).await;
                let _ = tx.send(out);
            })
        });
        self.inner
            .hops
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        crate::metrics::hop_sent();
        inbox
            .clone()
            .send(Message::Job(job))
            .await
            .map_err(|_| Error::ShuttingDown(shard))?;
        rx.await.map_err(|_| Error::ShuttingDown(shard))
    }

    /// Runs one job per shard concurrently and returns the results in the order
    /// given: the one-hop-per-shard pattern for requests that touch many partitions.
    pub async fn scatter<T, F, Fut>(&self, jobs: Vec<(usize, F)>) -> Vec<Result<T>>
    where
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        futures::future::join_all(jobs.into_iter().map(|(s, f)| self.call(s, f))).await
    }

    /// Creates partitions, placing each on the least-loaded shard, in one table
    /// version and one hop per shard. Returns each partition's shard or error.
    pub async fn create_partitions(
        &self,
        tps: Vec<TopicPartition>,
        config: Option<LogConfig>,
    ) -> Vec<Result<usize>> {
        let names = tps.clone();
        let (next, placed) = self.inner.table.load().with_placed(&tps);
        self.inner.table.install(next);
        let mut per_shard: Vec<Vec<(usize, TopicPartition)>> = vec![Vec::new(); self.shard_count()];
        for (i, (tp, s)) in tps.into_iter().zip(placed.iter()).enumerate() {
            per_shard[*s].push((i, tp));
        }
        let mut out: Vec<Result<usize>> = (0..placed.len())
            .map(|_| Err(Error::InvalidRequest("not placed".into())))
            .collect();
        let jobs: Vec<_> = per_shard
            .into_iter()
            .enumerate()
            .filter(|(_, v)| !v.is_empty())
            .map(|(s, items)| {
                let config = config.clone();
                (s, move |shard: Rc<Shard>| async move {
                    let mut res = Vec::with_capacity(items.len());
                    for (i, tp) in items {
                        res.push((
                            i,
                            shard
                                .create_partition(tp, config.clone())
                                .await
                                .map(|_| shard.id()),
                        ));
                    }
                    res
                })
            })
            .collect();
        let mut failed = Vec::new();
        for r in self.scatter(jobs).await {
            match r {
                Ok(items) => {
                    for (i, r) in items {
                        if r.is_err() {
                            failed.push(i);
                        }
                        out[i] = r;
                    }
                }
                Err(e) => tracing::error!(error = %e, "shard did not answer a create"),
            }
        }
        if !failed.is_empty() {
            let bad: Vec<TopicPartition> = failed
                .iter()
                .filter(|&&i| !matches!(out[i], Err(Error::PartitionExists(_))))
                .map(|&i| names[i].clone())
                .collect();
            if !bad.is_empty() {
                let next = self.inner.table.load().without(&bad);
                self.inner.table.install(next);
            }
        }
        out
    }

    /// Deletes a partition on its shard.
    pub async fn delete_partition(&self, tp: TopicPartition) -> Result<()> {
        let shard = self
            .shard_of(&tp)
            .ok_or_else(|| Error::UnknownPartition(tp.clone()))?;
        let t = tp.clone();
        self.call(shard, move |s| async move { s.delete_partition(&t).await })
            .await??;
        let next = self.inner.table.load().without(&[tp]);
        self.inner.table.install(next);
        Ok(())
    }

    pub(crate) fn inboxes(&self) -> &[mpsc::Sender<Message>] {
        &self.inner.inboxes
    }
}
