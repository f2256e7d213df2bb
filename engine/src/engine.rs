//! Starting and stopping the engine: preflight, the data directory and its lock,
//! discovery of partitions, one pinned executor per shard, and a shutdown that
//! drains every shard and closes every log cleanly.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use futures::channel::{mpsc, oneshot};
use futures::{SinkExt, StreamExt};
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::config::EngineConfig;
use crate::error::{Error, Result};
use crate::shard::router::{self, Message, ShardRouter};
use crate::shard::table::ShardTable;
use crate::shard::{flusher, Shard, ShardCtx};
use crate::TopicPartition;

/// File in the data directory locked while an engine uses it.
pub const LOCK_FILE: &str = ".lock";

/// A running engine.
pub struct Engine {
    router: ShardRouter,
    /// The data directory, absolute.
    data_dir: std::path::PathBuf,
    executors: Vec<ExecutorJoinHandle<()>>,
    _lock: File,
}

impl Engine {
    /// Checks the host and the config, locks the data directory, starts the shards
    /// and recovers every partition found. Returns once all shards serve.
    ///
    /// A relative data directory is resolved against the working directory here,
    /// once: every path the shards derive from it is absolute, so nothing depends
    /// on the working directory later (glommio opens relative paths against a
    /// directory descriptor of its own, not the working directory).
    pub fn start(mut config: EngineConfig) -> Result<Engine> {
        config.validate()?;
        config.data_dir = absolute_data_dir(&config.data_dir)?;
        crate::preflight::check()?;
        let lock = lock_data_dir(&config.data_dir)?;
        crate::disk::write_probe_file(&config.data_dir)?;
        let found = discover(&config.data_dir)?;
        let cpus = online_cpus(&config)?;
        let shards = config.shards.unwrap_or(cpus.len()).max(1);
        let (table, placed) = ShardTable::new(shards).with_placed(&found);
        let mut per_shard: Vec<Vec<TopicPartition>> = vec![Vec::new(); shards];
        for (tp, s) in found.into_iter().zip(placed) {
            per_shard[s].push(tp);
        }
        let data_dir = config.data_dir.clone();
        let config = Arc::new(config);
        let mut inboxes = Vec::with_capacity(shards);
        let mut receivers = Vec::with_capacity(shards);
        for _ in 0..shards {
            let (tx, rx) = mpsc::channel::<Message>(config.shard_inbox_capacity);
            inboxes.push(tx);
            receivers.push(rx);
        }
        let router = ShardRouter::new(inboxes, table);
        let mut executors = Vec::with_capacity(shards);
        let mut ready = Vec::with_capacity(shards);
        for (id, (rx, tps)) in receivers.into_iter().zip(per_shard).enumerate() {
            let (ready_tx, ready_rx) = oneshot::channel();
            ready.push(ready_rx);
            let cfg = config.clone();
            let cpu = cpus[id % cpus.len()];
            let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
                .name(&format!("shard-{id}"))
                .io_memory(config.io_memory_bytes)
                .preempt_timer(config.task_quota)
                .spawn(move || shard_main(id, cfg, rx, tps, ready_tx))
                .map_err(|e| {
                    Error::Preflight(format!("cannot start shard {id} on CPU {cpu}: {e}"))
                })?;
            executors.push(handle);
        }
        let mut failed = None;
        for r in ready {
            match futures::executor::block_on(r) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failed = Some(e),
                Err(_) => failed = Some(Error::Preflight("a shard stopped while starting".into())),
            }
        }
        if let Some(e) = failed {
            let engine = Engine {
                router,
                data_dir,
                executors,
                _lock: lock,
            };
            let _ = engine.shutdown();
            return Err(e);
        }
        Ok(Engine {
            router,
            data_dir,
            executors,
            _lock: lock,
        })
    }

    /// The data directory the engine runs on, made absolute at start.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The router, to send work to shards from any thread.
    pub fn router(&self) -> ShardRouter {
        self.router.clone()
    }

    /// Drains and stops every shard: in-flight jobs finish, every partition is
    /// written, fdatasync'ed and checkpointed, then the executors exit.
    pub fn shutdown(self) -> Result<()> {
        let mut waits = Vec::new();
        for inbox in self.router.inboxes() {
            let (tx, rx) = oneshot::channel();
            let mut inbox = inbox.clone();
            if futures::executor::block_on(inbox.send(Message::Shutdown(tx))).is_ok() {
                waits.push(rx);
            }
        }
        let mut result = Ok(());
        for w in waits {
            match futures::executor::block_on(w) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => {
                    result = Err(Error::Preflight(
                        "a shard stopped before closing its logs".into(),
                    ));
                }
            }
        }
        for e in self.executors {
            let _ = e.join();
        }
        result
    }
}

/// Most jobs a shard runs at once after shutdown starts is irrelevant; this bounds
/// how long shutdown waits for in-flight jobs before closing logs anyway.
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

async fn shard_main(
    id: usize,
    config: Arc<EngineConfig>,
    mut inbox: mpsc::Receiver<Message>,
    tps: Vec<TopicPartition>,
    ready: oneshot::Sender<Result<()>>,
) {
    if let Err(e) = crate::disk::probe_direct_io(&config.data_dir).await {
        let _ = ready.send(Err(Error::Preflight(format!(
            "direct I/O does not work in {}: {e}. Put the data directory on a local filesystem \
             that supports O_DIRECT (ext4, xfs)",
            config.data_dir.display()
        ))));
        return;
    }
    let ctx = Rc::new(ShardCtx::new(id, config));
    warm_cache_memory(&ctx);
    let shard = Rc::new(Shard::new(ctx.clone()));
    router::set_current_shard(Some(shard.clone()));
    if !tps.is_empty() {
        tracing::info!(shard = id, partitions = tps.len(), "recovering partitions");
    }
    shard.open_partitions(tps).await;
    let flusher = glommio::spawn_local(flusher::run(ctx.clone()));
    let housekeeping = glommio::spawn_local(shard.clone().housekeeping());
    let _ = ready.send(Ok(()));
    let in_flight = Rc::new(std::cell::Cell::new(0usize));
    let drained = Rc::new(crate::sync::Notify::default());
    let mut reply = None;
    while let Some(msg) = inbox.next().await {
        match msg {
            Message::Job(job) => {
                in_flight.set(in_flight.get() + 1);
                let (n, d) = (in_flight.clone(), drained.clone());
                let fut = job(shard.clone());
                glommio::spawn_local(async move {
                    fut.await;
                    n.set(n.get() - 1);
                    d.notify_all();
                })
                .detach();
            }
            Message::Shutdown(tx) => {
                reply = Some(tx);
                break;
            }
        }
    }
    inbox.close();
    let deadline = std::time::Instant::now() + DRAIN_WAIT;
    while in_flight.get() > 0 && std::time::Instant::now() < deadline {
        let wait = drained.notified();
        let tick = glommio::timer::sleep(std::time::Duration::from_millis(100));
        futures::pin_mut!(tick);
        let _ = futures::future::select(wait, tick).await;
    }
    let closed = shard.close_all().await;
    let () = flusher.await;
    drop(housekeeping);
    router::set_current_shard(None);
    if let Some(tx) = reply {
        let _ = tx.send(closed);
    }
}

/// `dir` made absolute against the working directory (without touching the disk:
/// symbolic links and `..` stay as they are, as the operator wrote them).
pub fn absolute_data_dir(dir: &Path) -> Result<std::path::PathBuf> {
    if dir.as_os_str().is_empty() {
        return Err(Error::InvalidConfig {
            key: "data_dir".into(),
            reason: "is empty".into(),
        });
    }
    std::path::absolute(dir).map_err(|e| Error::io("resolve against the working directory", dir, e))
}

/// Creates the data directory if needed and takes an exclusive lock on it, so two
/// processes never write the same logs.
fn lock_data_dir(dir: &Path) -> Result<File> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create data dir", dir, e))?;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io("open lock", &path, e))?;
    if try_lock_exclusive(file.as_raw_fd()).is_err() {
        return Err(Error::Preflight(format!(
            "data directory {} is in use by another process (cannot lock {})",
            dir.display(),
            path.display()
        )));
    }
    Ok(file)
}

/// A non-blocking exclusive `flock` (nix deprecates the raw-fd form in favour of
/// an owning wrapper; the lock must live as long as the `File` we keep).
fn try_lock_exclusive(fd: i32) -> nix::Result<()> {
    #[allow(deprecated)]
    nix::fcntl::flock(fd, nix::fcntl::FlockArg::LockExclusiveNonblock)
}

/// Finds partition directories; removes leftovers of interrupted deletions.
fn discover(dir: &Path) -> Result<Vec<TopicPartition>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_dir {
            continue;
        }
        if name.ends_with("-delete") {
            tracing::info!(dir = %entry.path().display(), "removing the rest of a deleted partition");
            std::fs::remove_dir_all(entry.path())
                .map_err(|e| Error::io("remove", entry.path(), e))?;
            continue;
        }
        match TopicPartition::from_dir_name(&name) {
            Some(tp) => out.push(tp),
            // The broker's metadata store, and one set aside when a node that ran
            // alone joined a cluster: expected here, not worth a warning.
            None if name == "metadata" || name.starts_with("metadata.single-node.") => {
                tracing::debug!(dir = %entry.path().display(), "not a partition: the metadata store");
            }
            None => {
                tracing::warn!(dir = %entry.path().display(), "ignoring a directory that is not a partition");
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The CPUs shards are pinned to.
fn online_cpus(config: &EngineConfig) -> Result<Vec<usize>> {
    if let Some(cpus) = &config.cpus {
        if cpus.is_empty() {
            return Err(Error::InvalidConfig {
                key: "cpus".into(),
                reason: "empty list".into(),
            });
        }
        return Ok(cpus.clone());
    }
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
        .map_err(|e| Error::Preflight(format!("cannot read the CPU affinity: {e}")))?;
    let cpus: Vec<usize> = (0..nix::sched::CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect();
    if cpus.is_empty() {
        return Err(Error::Preflight(
            "no CPU is available to this process".into(),
        ));
    }
    Ok(cpus)
}

/// Maps and populates the batch cache's memory before the shard serves, so that
/// appends find it ready (see `shard::arena`); like the JVM's `AlwaysPreTouch`,
/// the budget is taken at start (about 0.6 s per GiB on a VM, every shard at once).
fn warm_cache_memory(ctx: &ShardCtx) {
    let started = std::time::Instant::now();
    let mut chunks = 0usize;
    while ctx.arena.borrow_mut().grow() {
        chunks += 1;
    }
    tracing::debug!(
        shard = ctx.id,
        mib = chunks * (crate::shard::arena::CHUNK_BYTES >> 20),
        took_ms = started.elapsed().as_millis(),
        "batch cache memory ready"
    );
}
