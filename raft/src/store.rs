//! [`MetadataStore`]: the single-node store on a thread of its own. `propose`
//! answers once the command is durable; each committed image also goes, in order,
//! to the subscriber (the node's reconciler).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use futures::channel::oneshot;

use crate::command::{Applied, Command, Refusal};
use crate::image::MetadataImage;
use crate::local::{LocalLog, LogError};

/// Why a proposal was not committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The store could not write; the command may or may not be committed.
    #[error("metadata store: {0}")]
    Storage(String),
    #[error("the metadata store is stopped")]
    Stopped,
}

type Reply = oneshot::Sender<Result<(Arc<MetadataImage>, Applied), ProposeError>>;

/// The store's thread and its inbox.
#[derive(Debug)]
pub struct MetadataStore {
    inbox: std::sync::Mutex<Option<mpsc::Sender<(Command, Reply)>>>,
    /// The version of the last committed image.
    committed: Arc<AtomicU64>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl MetadataStore {
    /// Runs `log` on a thread named `metadata`; every image it commits is sent to
    /// `committed`, in order.
    pub fn start(
        mut log: LocalLog,
        committed: mpsc::Sender<Arc<MetadataImage>>,
    ) -> std::io::Result<MetadataStore> {
        let (tx, rx) = mpsc::channel::<(Command, Reply)>();
        let version = Arc::new(AtomicU64::new(log.image().version));
        let published = version.clone();
        let thread = std::thread::Builder::new()
            .name("metadata".into())
            .spawn(move || {
                // After a write error the log's state is unknown: refuse from then on.
                let mut broken: Option<String> = None;
                while let Ok((cmd, reply)) = rx.recv() {
                    if let Some(why) = &broken {
                        let _ = reply.send(Err(ProposeError::Storage(why.clone())));
                        continue;
                    }
                    let r = match log.commit(cmd) {
                        Ok(applied) => {
                            let image = Arc::new(log.image().clone());
                            published.store(image.version, Ordering::Release);
                            let _ = committed.send(image.clone());
                            Ok((image, applied))
                        }
                        Err(LogError::Refused(r)) => Err(ProposeError::Refused(r)),
                        Err(e) => {
                            tracing::error!(error = %e, "metadata store failed; refusing changes until restart");
                            broken = Some(e.to_string());
                            Err(ProposeError::Storage(e.to_string()))
                        }
                    };
                    let _ = reply.send(r);
                }
            })?;
        Ok(MetadataStore {
            inbox: std::sync::Mutex::new(Some(tx)),
            committed: version,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Commits `cmd`: the committed image and what the command produced, once it
    /// is durable.
    pub async fn propose(
        &self,
        cmd: Command,
    ) -> Result<(Arc<MetadataImage>, Applied), ProposeError> {
        let (tx, rx) = oneshot::channel();
        {
            let inbox = self.inbox.lock().map_err(|_| ProposeError::Stopped)?;
            let Some(inbox) = inbox.as_ref() else {
                return Err(ProposeError::Stopped);
            };
            inbox.send((cmd, tx)).map_err(|_| ProposeError::Stopped)?;
        }
        rx.await.map_err(|_| ProposeError::Stopped)?
    }

    /// The version of the last committed image: a refusal was decided against
    /// this version or an earlier one.
    pub fn committed_version(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Refuses new proposals, lets the queued ones finish, and joins the thread.
    pub fn stop(&self) {
        if let Ok(mut inbox) = self.inbox.lock() {
            inbox.take();
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for MetadataStore {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use uuid::Uuid;

    use super::*;

    #[test]
    fn proposals_commit_in_order_and_reach_the_subscriber() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel();
        let store = MetadataStore::start(LocalLog::open(dir.path()).unwrap(), tx).unwrap();
        let cmd = |name: &str| Command::CreateTopic {
            name: name.into(),
            id: Uuid::from_u128(1),
            partitions: 1,
            configs: BTreeMap::new(),
        };
        let (a, _) = futures::executor::block_on(store.propose(cmd("a"))).unwrap();
        let refused = futures::executor::block_on(store.propose(cmd("a")));
        assert!(matches!(
            refused,
            Err(ProposeError::Refused(Refusal::TopicExists(_)))
        ));
        let (_, applied) =
            futures::executor::block_on(store.propose(Command::ReserveProducerIds { count: 5 }))
                .unwrap();
        assert_eq!(applied, Applied::ProducerIds { first: 0 });
        assert_eq!(a.version, 1);
        let seen: Vec<u64> = rx.try_iter().map(|i| i.version).collect();
        assert_eq!(seen, vec![1, 2]);
        store.stop();
        assert!(matches!(
            futures::executor::block_on(store.propose(cmd("b"))),
            Err(ProposeError::Stopped)
        ));
        assert_eq!(LocalLog::open(dir.path()).unwrap().image().version, 2);
    }
}
