//! The state machine: the metadata image, applied entry by entry with
//! [`crate::apply`]; its version is the index of the last applied entry. A
//! snapshot is the image, the last applied entry and the membership, as JSON framed
//! with a CRC-32C; an installed snapshot is checked before it replaces anything.
//!
//! In memory for now: snapshots kept on disk come with the node's quorum (the log
//! is purged only behind a snapshot that is on disk).

use std::cell::RefCell;
use std::io::Cursor;
use std::rc::Rc;

use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};

use super::{io_error, Outcome, StorageError, TypeConfig};
use crate::command::apply;
use crate::framing::{frame, next_frame};
use crate::image::MetadataImage;

type C = TypeConfig;

#[derive(Debug, Default)]
struct Inner {
    image: MetadataImage,
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    /// Snapshots built, for their ids.
    built: u64,
    current: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
}

/// What a snapshot's data holds (its meta travels beside it).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotBody {
    image: MetadataImage,
}

/// The state machine; clones share it (one is the snapshot builder).
#[derive(Debug, Clone, Default)]
pub struct StateMachine {
    inner: Rc<RefCell<Inner>>,
}

impl StateMachine {
    /// The image as applied so far.
    pub fn image(&self) -> MetadataImage {
        self.inner.borrow().image.clone()
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
        let mut g = self.inner.borrow_mut();
        g.built += 1;
        let body = serde_json::to_vec(&SnapshotBody {
            image: g.image.clone(),
        })
        .map_err(|e| io_error(StorageIOError::write_state_machine, &e))?;
        let data = frame(&body);
        let meta = SnapshotMeta {
            last_log_id: g.last_applied,
            last_membership: g.membership.clone(),
            snapshot_id: format!("{}-{}", g.last_applied.map_or(0, |l| l.index), g.built),
        };
        g.current = Some((meta.clone(), data.clone()));
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
        let (payload, end) = next_frame(&data, 0)
            .map_err(|e| snapshot_error(&e))?
            .ok_or_else(|| snapshot_error(&"a snapshot cut short or with a bad checksum"))?;
        if end != data.len() {
            return Err(snapshot_error(&"bytes after the snapshot"));
        }
        let body: SnapshotBody = serde_json::from_slice(payload).map_err(|e| snapshot_error(&e))?;
        let mut g = self.inner.borrow_mut();
        g.image = body.image;
        g.image.version = meta.last_log_id.map_or(0, |l| l.index);
        g.last_applied = meta.last_log_id;
        g.membership = meta.last_membership.clone();
        g.current = Some((meta.clone(), data));
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
