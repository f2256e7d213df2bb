//! Node-to-node frame decoding as a connection does it: a stream of frames against
//! a payload limit. Any input must give frames or an error, never a panic or an
//! allocation past the limit; every frame decoded encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_raft::rpc::frame::{decode, HEADER_BYTES};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((frame, used))) = decode(rest, 1 << 16) {
        assert!(used >= HEADER_BYTES && used <= rest.len());
        assert_eq!(frame.encode(), rest[..used]);
        rest = &rest[used..];
    }
});
