//! The metadata quorum on openraft 0.9 (storage-v2): its type configuration, the
//! Raft log store over [`crate::EntryLog`] and the state machine over
//! [`crate::MetadataImage`]. The log's file I/O runs on a thread of its own, so the
//! store works under any runtime (openraft's conformance suite drives it on tokio;
//! the node will drive it on shard 0).
//!
//! Raft itself runs on glommio through [`GlommioRuntime`] (on shard 0 in the node).
//! [`QuorumNode`] is one node's member: Raft, its peer listener and forwarding of
//! proposals to the leader.

// openraft's traits return its StorageError (over 200 bytes); the helpers here
// return the same type rather than box it and convert back.
#![allow(clippy::result_large_err)]

pub mod harness;
mod log_store;
pub mod node;
mod runtime;
mod state_machine;

pub use log_store::{AppendLatency, LogStore, APPEND_BUCKETS};
pub use node::{QuorumNode, QuorumSettings, QuorumStatus};
pub use runtime::GlommioRuntime;
pub use state_machine::StateMachine;

use serde::{Deserialize, Serialize};

use crate::command::{Applied, Command, Refusal};

/// What applying one command gave: the image's version after it, and the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub version: u64,
    pub result: Result<Applied, Refusal>,
}

openraft::declare_raft_types!(
    /// The quorum's types: commands in, outcomes out, nodes by id with an address.
    pub TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = GlommioRuntime,
);

/// Storage errors as openraft wants them.
pub type StorageError = openraft::StorageError<u64>;

fn io_error(
    make: fn(openraft::AnyError) -> openraft::StorageIOError<u64>,
    e: &dyn std::fmt::Display,
) -> StorageError {
    StorageError::from(make(openraft::AnyError::error(e)))
}
