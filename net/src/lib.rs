//! Sluice's Kafka protocol layer: the server every shard runs on the Kafka port, and
//! (later) the small client the CLI and the follower fetcher use.
//!
//! How the parts fit: [`frame`] reads and writes length-prefixed frames and refuses a
//! frame larger than `socket.request.max.bytes` before allocating it; [`registry`] is
//! the one list of supported APIs (key, versions, handler) that both dispatch and
//! ApiVersions read; [`handlers`] holds one small file per API; [`connection`] runs one
//! client connection: it reads requests, runs them in order and writes the answers in
//! the order the requests came.

pub mod acl;
pub mod alloc;
pub mod body;
pub mod client;
pub mod compression;
pub mod connection;
pub mod context;
pub mod error;
pub mod fetch_response;
pub mod fetch_session;
pub mod frame;
pub mod group;
pub mod handlers;
pub mod kafka_error;
pub mod registry;
pub mod replica;
pub mod server;
pub mod services;
pub mod stats;
pub mod topic_config;
pub mod topic_rules;
pub mod topics;

pub use context::{BrokerSettings, ClusterSettings};
pub use error::{Error, Result};
pub use server::{Broker, StartError};
