//! Request-frame decoding as a connection does it: the length prefix against the
//! size limit, then prefix, registry lookup, version check, header and body codec.
//! Any input must give a frame or an error, never a panic or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The broker's allocator: huge announced arrays are address space, not memory.
#[global_allocator]
static ALLOC: sluice_net::alloc::LazyHugeAlloc = sluice_net::alloc::LazyHugeAlloc;

fuzz_target!(|data: &[u8]| {
    // As a stream: the length check runs before any allocation (limit 1 MiB here).
    let mut stream = futures::io::Cursor::new(data.to_vec());
    while let Ok(Some(frame)) =
        futures::executor::block_on(sluice_net::frame::read_frame(&mut stream, 1 << 20))
    {
        let _ = sluice_net::connection::decode_frame(&frame);
    }
    // As one frame body.
    let _ = sluice_net::connection::decode_frame(data);
});
