//! Integration tests of the engine: real files in a temp directory, real shards on
//! pinned executors, real processes killed with SIGKILL. One module per behaviour.

mod common;

mod crash;
mod cross_shard;
mod idempotence;
mod recovery;
mod retention;
mod roundtrip;
mod truncate;
mod validation;
