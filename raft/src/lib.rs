//! The cluster's metadata as one versioned value.
//!
//! - [`MetadataImage`]: what the cluster knows (cluster id, topics, producer-id
//!   blocks), pure data with a version, shared as `Arc` snapshots.
//! - [`Command`]: every change, applied deterministically by [`apply`]; a command
//!   that does not fit the image is refused and changes nothing but the version.
//! - [`LocalLog`]: the single-node store, a CRC-framed command log with snapshots
//!   under `<data_dir>/metadata/`; [`MetadataStore`] runs it on a thread of its own
//!   and is the only way to change the image: `propose(cmd)` answers once the
//!   command is durable, with the committed image. The Raft quorum is the other
//!   implementation of the same contract.
//!
//! Nodes act on committed images only (commit first, then apply): the broker's
//! reconciler compares each image with what its shards host.

mod command;
mod entry_log;
mod framing;
mod image;
mod local;
pub mod quorum;
pub mod rpc;
mod store;

pub use command::{apply, preferred_elections, Applied, Command, Refusal, PARTITIONS_MAX};
pub use entry_log::{EntryLog, EntryLogError};
/// Durable whole-file replacement (temporary file, fsync, rename, directory fsync),
/// for the node's other metadata files.
pub use framing::replace_file;
pub use image::{BrokerRecord, MetadataImage, PartitionRecord, Reassignment, TopicRecord};
pub use local::{LocalLog, LogError, METADATA_DIR};
pub use quorum::{Outcome, QuorumSettings, QuorumStatus};
pub use store::{MetadataStore, ProposeError};
