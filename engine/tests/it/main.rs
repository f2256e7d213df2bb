//! Integration tests of the engine: real files in a temp directory, real shards on
//! pinned executors, real processes killed with SIGKILL. One module per behaviour.

// Tests stop at the first surprise; numbers in them are small.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

mod common;

mod crash;
mod cross_shard;
mod durability;
mod idempotence;
mod memory;
mod preflight;
mod recovery;
mod relative_dir;
mod replicated;
mod retention;
mod roundtrip;
mod truncate;
mod validation;
