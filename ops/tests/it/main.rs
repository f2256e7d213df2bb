//! Tests of a real `sluice serve` process with real Kafka clients.

// Tests stop at the first surprise.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

mod admin;
mod bad_input;
mod cli;
mod cluster;
mod compression_type;
mod config;
mod fetch_limits;
mod groups;
mod journald;
mod kcat;
mod librdkafka;
mod metrics;
mod node;
mod packaging;
mod python;
mod quickstart;
mod replication;
mod restart;
mod systemd;
mod testkit;
