//! Integration tests of the protocol layer over real loopback sockets.

// Tests stop at the first surprise; frame sizes in them are small.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

mod api_versions;
mod fetch_sessions;
mod log_admin;
mod server;
mod services;
mod zero_copy;
