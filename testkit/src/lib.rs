//! The test kit (a dev-dependency only): what every test that runs Sluice for real
//! needs.
//!
//! - [`Node`]: one real `sluice serve` process on a temporary data directory, on a
//!   loopback address of its own if asked (127.0.0.1, 127.0.0.2, ... with the same
//!   port), waited for until it serves; stop (SIGTERM), kill (SIGKILL), pause
//!   (SIGSTOP), resume (SIGCONT), restart on the same directory and address.
//! - [`Cluster`]: N nodes on 127.0.0.1..=127.0.0.N sharing one Kafka port.
//! - [`wire::Client`]: the one raw Kafka client for tests (the project's blocking
//!   client, with version negotiation); tests that must send malformed frames keep
//!   writing bytes themselves.
//! - [`Seed`]: a seeded RNG for fault schedules, printed with the command that
//!   replays it when the test fails.
//! - [`run`], [`http`]: a command's output; one raw HTTP exchange.

// Test support: a failed step panics with what went wrong, as a test would.
#![allow(clippy::expect_used)]

mod cluster;
mod node;
mod process;
mod seed;

pub use cluster::Cluster;
pub use node::{free_fixed_port, free_fixed_port_on, sluice_bin, Node, NodeOptions};
pub use process::{http, run, try_http};
pub use seed::Seed;

/// The raw Kafka wire client.
pub mod wire {
    pub use sluice_net::client::{Client, ClientError, ClientResult};
}
