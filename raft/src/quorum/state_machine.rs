//! The state machine: the metadata image, applied entry by entry with
//! [`crate::apply`]; its version is the index of the last applied entry. A
//! snapshot is the image, the last applied entry and the membership, as JSON framed
//! with a CRC-32C; an installed snapshot is checked before it replaces anything.
//!
//! Each snapshot is on disk (`<dir>/raft-snapshot`: its meta and image, framed
//! with a CRC-32C, replaced atomically) before openraft learns of it, so the log
//! is purged only behind a snapshot that survives a restart; opening loads it. The
//! file I/O runs on a short-lived thread of its own (snapshots are rare), never on
//! the shard.

use std::cell::RefCell;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::{io_error, Outcome, StorageError, TypeConfig};
use crate::command::apply;
use crate::framing::{frame, replace_file, whole_frame};
use crate::image::MetadataImage;

type C = TypeConfig;

#[derive(Debug, Default)]
struct Inner {
    image: MetadataImage,
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    /// Snapshots built, for their ids.
    built: u64,
    /// Snapshots installed from the leader.
    installed: u64,
    current: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
    /// Where each applied image goes (the node's reconciler), in order.
    subscriber: Option<std::sync::mpsc::Sender<Arc<MetadataImage>>>,
}

impl Inner {
    fn publish(&self) {
        if let Some(tx) = &self.subscriber {
            let _ = tx.send(Arc::new(self.image.clone()));
        }
    }
}

/// What a snapshot's data holds (its meta travels beside it).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotBody {
    image: MetadataImage,
}

/// The snapshot file: its meta and image.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotFile {
    meta: SnapshotMeta<u64, BasicNode>,
    image: MetadataImage,
}

const SNAPSHOT_FILE: &str = "raft-snapshot";

/// Runs `f` on a thread of its own and waits for it without blocking the caller's
/// executor.
async fn off_thread<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let (tx, rx) = futures::channel::oneshot::channel();
    std::thread::Builder::new()
        .name("raft-snapshot".into())
        .spawn(move || {
            let _ = tx.send(f());
        })?;
    rx.await
        .map_err(|_| std::io::Error::other("the snapshot thread ended without an answer"))?
}

/// Writes the snapshot file.
async fn save(
    dir: &Path,
    meta: &SnapshotMeta<u64, BasicNode>,
    image: &MetadataImage,
) -> Result<(), StorageError> {
    let bytes = serde_json::to_vec(&SnapshotFile {
        meta: meta.clone(),
        image: image.clone(),
    })
    .map_err(|e| io_error(StorageIOError::write_state_machine, &e))?;
    let path = dir.join(SNAPSHOT_FILE);
    off_thread(move || replace_file(&path, &frame(&bytes)))
        .await
        .map_err(|e| {
            StorageError::from(StorageIOError::write_snapshot(
                None,
                openraft::AnyError::new(&e),
            ))
        })
}

/// The state machine; clones share it (one is the snapshot builder).
#[derive(Debug, Clone)]
pub struct StateMachine {
    dir: PathBuf,
    inner: Rc<RefCell<Inner>>,
}

impl StateMachine {
    /// Opens the state machine of `dir`: the last snapshot on disk, if any (the
    /// entries after it are applied again from the log).
    pub async fn open(dir: &Path) -> Result<StateMachine, StorageError> {
        let path = dir.join(SNAPSHOT_FILE);
        let read = {
            let path = path.clone();
            off_thread(move || match std::fs::read(&path) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            })
            .await
            .map_err(|e| snapshot_error(&e))?
        };
        let mut inner = Inner::default();
        if let Some(data) = read {
            let damaged = |why: &dyn std::fmt::Display| {
                snapshot_error(&format!("{} is damaged: {why}", path.display()))
            };
            let payload = whole_frame(&data).map_err(|e| damaged(&e))?;
            let file: SnapshotFile = serde_json::from_slice(payload).map_err(|e| damaged(&e))?;
            let body = serde_json::to_vec(&SnapshotBody {
                image: file.image.clone(),
            })
            .map_err(|e| damaged(&e))?;
            inner.image = file.image;
            inner.last_applied = file.meta.last_log_id;
            inner.membership = file.meta.last_membership.clone();
            inner.current = Some((file.meta, frame(&body)));
        }
        Ok(StateMachine {
            dir: dir.to_path_buf(),
            inner: Rc::new(RefCell::new(inner)),
        })
    }

    /// The image as applied so far.
    pub fn image(&self) -> MetadataImage {
        self.inner.borrow().image.clone()
    }

    /// Snapshots (built here, installed from the leader) since this node started.
    pub fn snapshots(&self) -> (u64, u64) {
        let g = self.inner.borrow();
        (g.built, g.installed)
    }

    /// Stops sending images (the subscriber sees its channel close).
    pub fn unsubscribe(&self) {
        self.inner.borrow_mut().subscriber = None;
    }

    /// Sends the image as applied so far to `tx`, and from now on the image after
    /// each applied batch of entries or installed snapshot.
    pub fn subscribe(&self, tx: std::sync::mpsc::Sender<Arc<MetadataImage>>) {
        let mut g = self.inner.borrow_mut();
        g.subscriber = Some(tx);
        g.publish();
    }
}

fn snapshot_error(e: &dyn std::fmt::Display) -> StorageError {
    StorageError::from(StorageIOError::read_snapshot(
        None,
        openraft::AnyError::error(e),
    ))
}

impl RaftSnapshotBuilder<C> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, StorageError> {
        let (image, meta) = {
            let mut g = self.inner.borrow_mut();
            g.built += 1;
            let meta = SnapshotMeta {
                last_log_id: g.last_applied,
                last_membership: g.membership.clone(),
                snapshot_id: format!("{}-{}", g.last_applied.map_or(0, |l| l.index), g.built),
            };
            (g.image.clone(), meta)
        };
        let body = serde_json::to_vec(&SnapshotBody {
            image: image.clone(),
        })
        .map_err(|e| io_error(StorageIOError::write_state_machine, &e))?;
        let data = frame(&body);
        save(&self.dir, &meta, &image).await?;
        self.inner.borrow_mut().current = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<C> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError> {
        let g = self.inner.borrow();
        Ok((g.last_applied, g.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError>
    where
        I: IntoIterator<Item = Entry<C>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut g = self.inner.borrow_mut();
        let mut out = Vec::new();
        for e in entries {
            let index = e.log_id.index;
            g.last_applied = Some(e.log_id);
            let result = match e.payload {
                EntryPayload::Normal(cmd) => apply(&mut g.image, index, &cmd),
                EntryPayload::Blank => {
                    g.image.version = index;
                    Ok(crate::Applied::Done)
                }
                EntryPayload::Membership(m) => {
                    g.image.version = index;
                    g.membership = StoredMembership::new(Some(e.log_id), m);
                    Ok(crate::Applied::Done)
                }
            };
            out.push(Outcome {
                version: index,
                result,
            });
        }
        if !out.is_empty() {
            g.publish();
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let payload =
            whole_frame(&data).map_err(|e| snapshot_error(&format!("a snapshot: {e}")))?;
        let mut body: SnapshotBody =
            serde_json::from_slice(payload).map_err(|e| snapshot_error(&e))?;
        body.image.version = meta.last_log_id.map_or(0, |l| l.index);
        save(&self.dir, meta, &body.image).await?;
        let mut g = self.inner.borrow_mut();
        g.image = body.image;
        g.last_applied = meta.last_log_id;
        g.membership = meta.last_membership.clone();
        g.current = Some((meta.clone(), data));
        g.installed += 1;
        g.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<C>>, StorageError> {
        let g = self.inner.borrow();
        Ok(g.current.clone().map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
