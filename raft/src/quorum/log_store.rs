//! The Raft log store: [`EntryLog`] on a thread of its own, reached over a channel.
//! Entries and the vote are stored as JSON in the log's frames.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::mpsc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};

use serde::{Deserialize, Serialize};

use super::{io_error, StorageError, TypeConfig};
use crate::entry_log::{EntryLog, EntryLogError};

type C = TypeConfig;
type Job = Box<dyn FnOnce(&mut EntryLog) + Send>;

/// Upper bounds (seconds) of the append latency histogram's buckets: the
/// broker's latency buckets (`sluice_engine::metrics::LATENCY_BOUNDS`; a test in
/// `ops` keeps them equal).
pub const APPEND_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Appends made durable (write and fdatasync) on the log's thread: a histogram of
/// their times, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppendLatency {
    /// Appends at or below each of [`APPEND_BUCKETS`] (not cumulative).
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl AppendLatency {
    fn record(&mut self, seconds: f64) {
        if self.buckets.len() != APPEND_BUCKETS.len() + 1 {
            self.buckets = vec![0; APPEND_BUCKETS.len() + 1];
        }
        let i = APPEND_BUCKETS.partition_point(|b| *b < seconds);
        self.buckets[i] += 1;
        self.count += 1;
        self.sum_seconds += seconds;
    }
}

/// The log store; clones share the thread (one is the reader openraft asks for).
#[derive(Debug, Clone)]
pub struct LogStore {
    jobs: mpsc::Sender<Job>,
    latency: std::sync::Arc<std::sync::Mutex<AppendLatency>>,
}

impl LogStore {
    /// Opens the log in `dir` and starts its thread.
    pub fn open(dir: &Path) -> Result<LogStore, EntryLogError> {
        let mut log = EntryLog::open(dir)?;
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("raft-log".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job(&mut log);
                }
            })
            .map_err(|source| EntryLogError::Io {
                what: "start the thread of",
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(LogStore {
            jobs,
            latency: std::sync::Arc::default(),
        })
    }

    /// The append latency histogram so far.
    pub fn append_latency(&self) -> AppendLatency {
        self.latency.lock().map(|l| l.clone()).unwrap_or_default()
    }

    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut EntryLog) -> R + Send + 'static,
    ) -> Result<R, StorageError> {
        let (tx, rx) = futures::channel::oneshot::channel();
        self.jobs
            .send(Box::new(move |log: &mut EntryLog| {
                let _ = tx.send(f(log));
            }))
            .map_err(|_| io_error(StorageIOError::read_logs, &"the log thread is gone"))?;
        rx.await
            .map_err(|_| io_error(StorageIOError::read_logs, &"the log thread is gone"))
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| io_error(StorageIOError::read_logs, &e))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(v).map_err(|e| io_error(StorageIOError::write_logs, &e))
}

impl RaftLogReader<C> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C>>, StorageError> {
        let from = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        let raw: Vec<Vec<u8>> = self
            .call(move |log| log.range(from, to).map(|(_, b)| b.to_vec()).collect())
            .await?;
        raw.iter().map(|b| decode(b)).collect()
    }
}

impl RaftLogStorage<C> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError> {
        let (purged, last) = self
            .call(|log| {
                let last = log
                    .last_index()
                    .and_then(|i| log.get(i))
                    .map(<[u8]>::to_vec);
                (log.purged().map(|(_, id)| id.to_vec()), last)
            })
            .await?;
        let last_purged_log_id: Option<LogId<u64>> = purged.map(|b| decode(&b)).transpose()?;
        let last_log_id = match last {
            Some(b) => Some(decode::<Entry<C>>(&b)?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        let bytes = encode(vote)?;
        self.call(move |log| log.save_vote(&bytes))
            .await?
            .map_err(|e| io_error(StorageIOError::write_vote, &e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        let bytes = self.call(|log| log.vote().map(<[u8]>::to_vec)).await?;
        bytes
            .map(|b| serde_json::from_slice(&b))
            .transpose()
            .map_err(|e| io_error(StorageIOError::read_vote, &e))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| encode(&e).map(|b| (e.log_id.index, b)))
            .collect::<Result<_, _>>()?;
        // Durable on the log's thread, which then says so through the callback.
        let latency = self.latency.clone();
        self.jobs
            .send(Box::new(move |log: &mut EntryLog| {
                let started = std::time::Instant::now();
                let r = log.append(encoded).map_err(std::io::Error::other);
                if let Ok(mut l) = latency.lock() {
                    l.record(started.elapsed().as_secs_f64());
                }
                callback.log_io_completed(r);
            }))
            .map_err(|_| io_error(StorageIOError::write_logs, &"the log thread is gone"))
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError> {
        self.call(move |log| log.truncate_from(log_id.index))
            .await?
            .map_err(|e| io_error(StorageIOError::write_logs, &e))
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError> {
        let id = encode(&log_id)?;
        self.call(move |log| log.purge_to(log_id.index, id))
            .await?
            .map_err(|e| io_error(StorageIOError::write_logs, &e))
    }
}
