//! [`MetadataStore`]: the only way to change the metadata. `propose` answers once
//! the command is committed, with its [`Outcome`]; each committed image also goes,
//! in order, to the subscriber (the node's reconciler).
//!
//! Two implementations of that contract: the single-node store ([`LocalLog`] on a
//! thread of its own) and the Raft quorum ([`QuorumNode`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use futures::channel::oneshot;

use crate::command::Command;
use crate::image::MetadataImage;
use crate::local::{LocalLog, LogError};
use crate::quorum::{Outcome, QuorumNode, QuorumSettings, QuorumStatus};

/// Why a proposal was not committed (a command that was committed but did not fit
/// the image is an [`Outcome`] with a refusal).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// The store could not write; the command may or may not be committed.
    #[error("metadata store: {0}")]
    Storage(String),
    /// No quorum answered in time; the command may or may not be committed.
    #[error("the metadata quorum is unavailable: {0}")]
    Unavailable(String),
    #[error("the metadata store is stopped")]
    Stopped,
}

type Reply = oneshot::Sender<Result<Outcome, ProposeError>>;

/// The single-node store's thread and its inbox.
#[derive(Debug)]
struct Local {
    inbox: std::sync::Mutex<Option<mpsc::Sender<(Command, Reply)>>>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
enum Backend {
    Local(Local),
    Quorum(QuorumNode),
}

/// The metadata store of this node.
#[derive(Debug)]
pub struct MetadataStore {
    backend: Backend,
    /// The single-node store's last committed version.
    committed: Arc<AtomicU64>,
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
                            Ok(Outcome {
                                version: image.version,
                                result: Ok(applied),
                            })
                        }
                        // Refused against the committed image: nothing written.
                        Err(LogError::Refused(r)) => Ok(Outcome {
                            version: log.image().version,
                            result: Err(r),
                        }),
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
            backend: Backend::Local(Local {
                inbox: std::sync::Mutex::new(Some(tx)),
                thread: std::sync::Mutex::new(Some(thread)),
            }),
            committed: version,
        })
    }

    /// Joins the metadata quorum as `settings` say; every image this node applies
    /// is sent to `committed`, in order.
    pub fn start_quorum(
        settings: QuorumSettings,
        committed: mpsc::Sender<Arc<MetadataImage>>,
    ) -> Result<MetadataStore, String> {
        Ok(MetadataStore {
            backend: Backend::Quorum(QuorumNode::start(settings, committed)?),
            committed: Arc::default(),
        })
    }

    /// Commits `cmd`: what applying it gave, once it is committed.
    pub async fn propose(&self, cmd: Command) -> Result<Outcome, ProposeError> {
        match &self.backend {
            Backend::Local(local) => {
                let (tx, rx) = oneshot::channel();
                {
                    let inbox = local.inbox.lock().map_err(|_| ProposeError::Stopped)?;
                    let Some(inbox) = inbox.as_ref() else {
                        return Err(ProposeError::Stopped);
                    };
                    inbox.send((cmd, tx)).map_err(|_| ProposeError::Stopped)?;
                }
                rx.await.map_err(|_| ProposeError::Stopped)?
            }
            Backend::Quorum(q) => q.propose(cmd).await,
        }
    }

    /// Whether this node is one member of a quorum.
    pub fn is_quorum(&self) -> bool {
        matches!(self.backend, Backend::Quorum(_))
    }

    /// The quorum's leader as this node knows it (`None` for the single-node store).
    pub fn leader(&self) -> Option<u64> {
        match &self.backend {
            Backend::Local(_) => None,
            Backend::Quorum(q) => q.leader(),
        }
    }

    /// The quorum as this node sees it (`None` for the single-node store).
    pub async fn quorum_status(&self) -> Option<QuorumStatus> {
        match &self.backend {
            Backend::Local(_) => None,
            Backend::Quorum(q) => q.status().await,
        }
    }

    /// The quorum as its leader sees it (`Err` for the single-node store).
    pub async fn leader_status(&self) -> Result<QuorumStatus, String> {
        match &self.backend {
            Backend::Local(_) => Err("a single node has no quorum".into()),
            Backend::Quorum(q) => q.leader_status().await,
        }
    }

    /// Changes the quorum's membership (through its leader).
    pub async fn change_membership(
        &self,
        change: crate::quorum::node::MembershipChange,
    ) -> Result<(), String> {
        match &self.backend {
            Backend::Local(_) => Err("a single node has no quorum to change".into()),
            Backend::Quorum(q) => q.change_membership(change).await,
        }
    }

    /// Keeps the broker that `register` registered alive (heartbeats, and a new
    /// registration when it was fenced); nothing for the single-node store.
    pub fn keep_alive(&self, register: Command) {
        if let Backend::Quorum(q) = &self.backend {
            q.keep_alive(register);
        }
    }

    /// Stops keeping the broker alive (it is stopping); nothing for the
    /// single-node store.
    pub fn retire(&self) {
        if let Backend::Quorum(q) = &self.backend {
            q.retire();
        }
    }

    /// The single-node store's last committed version.
    pub fn committed_version(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Refuses new proposals, lets the queued ones finish, and joins the thread.
    pub fn stop(&self) {
        match &self.backend {
            Backend::Local(local) => {
                if let Ok(mut inbox) = local.inbox.lock() {
                    inbox.take();
                }
                let thread = local.thread.lock().ok().and_then(|mut t| t.take());
                if let Some(t) = thread {
                    let _ = t.join();
                }
            }
            Backend::Quorum(q) => q.stop(),
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
    use crate::command::{Applied, Refusal};

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
            replication_factor: 1,
        };
        let a = futures::executor::block_on(store.propose(cmd("a"))).unwrap();
        let refused = futures::executor::block_on(store.propose(cmd("a"))).unwrap();
        assert!(matches!(refused.result, Err(Refusal::TopicExists(_))));
        assert_eq!(refused.version, 1);
        let reserved =
            futures::executor::block_on(store.propose(Command::ReserveProducerIds { count: 5 }))
                .unwrap();
        assert_eq!(reserved.result, Ok(Applied::ProducerIds { first: 0 }));
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
