//! Node-to-node RPC on `cluster.listen` (default port 9095): Raft's vote, append
//! and snapshot messages and proposals forwarded to the leader.
//!
//! This module is the wire: [`frame`] frames every message with a magic, a
//! version, its kind, a correlation id, its length (checked against a limit
//! before anything is allocated) and a CRC-32C of the payload. The transport
//! (glommio TCP with timeouts; TLS later) and the messages come with the quorum.

pub mod frame;
pub mod transport;
