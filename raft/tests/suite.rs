//! openraft's storage conformance suite against the quorum's log store (real files
//! on a temporary directory, on the log's own thread) and state machine.

// A test stops at the first surprise; openraft's error type is its own.
#![allow(clippy::expect_used, clippy::result_large_err)]

use openraft::testing::{StoreBuilder, Suite};
use sluice_raft::quorum::{LogStore, StateMachine, StorageError, TypeConfig};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogStore::open(dir.path()).expect("open the log");
        let sm = StateMachine::open(dir.path()).await?;
        Ok((dir, log, sm))
    }
}

// A plain test: the suite makes its own tokio runtime for each case.
#[test]
fn openraft_storage_suite_passes() -> Result<(), StorageError> {
    Suite::test_all(Builder)
}
