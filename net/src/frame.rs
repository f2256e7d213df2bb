//! Kafka's framing: every request and response is a 4-byte big-endian length and
//! that many bytes. The length is checked against `socket.request.max.bytes` before
//! anything is allocated, so a garbled or hostile length cannot reserve gigabytes.

use std::os::fd::RawFd;

use bytes::{BufMut, BytesMut};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::body::Part;
use crate::error::{Error, Result};

/// Kafka's default `socket.request.max.bytes`: 100 MiB.
pub const REQUEST_MAX_BYTES_DEFAULT: usize = 100 << 20;

/// The smallest request: api key, api version and correlation id.
pub const REQUEST_HEADER_MIN_BYTES: usize = 8;

/// Reads one frame. `Ok(None)` when the peer closed the connection between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Option<BytesMut>> {
    let mut len_bytes = [0u8; 4];
    let mut got = 0;
    while got < len_bytes.len() {
        let n = r.read(&mut len_bytes[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        got += n;
    }
    let len = i32::from_be_bytes(len_bytes);
    let Ok(len_usize) = usize::try_from(len) else {
        return Err(Error::FrameTooLarge {
            len: i64::from(len),
            max,
        });
    };
    if len_usize > max {
        return Err(Error::FrameTooLarge {
            len: i64::from(len),
            max,
        });
    }
    let mut buf = BytesMut::zeroed(len_usize);
    let mut filled = 0;
    while filled < len_usize {
        let n = r.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(Error::Truncated {
                got: filled,
                len: len_usize,
            });
        }
        filled += n;
    }
    Ok(Some(buf))
}

/// The fixed start of every request header, readable before knowing the header's
/// version: api key, api version, correlation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

impl RequestPrefix {
    /// `None` if the frame is shorter than the fixed part of a header.
    pub fn parse(frame: &[u8]) -> Option<RequestPrefix> {
        let b = frame.get(..REQUEST_HEADER_MIN_BYTES)?;
        Some(RequestPrefix {
            api_key: i16::from_be_bytes([b[0], b[1]]),
            api_version: i16::from_be_bytes([b[2], b[3]]),
            correlation_id: i32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        })
    }
}

/// Writes one response: length, the response header (correlation id, and an empty
/// tagged-field section for header version 1), then the body's parts in order (see
/// [`crate::body::write_parts`] for `socket`).
pub async fn write_response<W: AsyncWrite + Unpin>(
    w: &mut W,
    socket: Option<RawFd>,
    correlation_id: i32,
    header_version: i16,
    body: &[Part],
) -> Result<()> {
    let header_len: u64 = if header_version >= 1 { 5 } else { 4 };
    let body_len: u64 = body.iter().map(Part::len).sum();
    let total = header_len + body_len;
    let total = i32::try_from(total).map_err(|_| Error::Encode {
        api_key: -1,
        reason: format!("response of {total} bytes is over the 2 GiB frame limit"),
    })?;
    let mut head = BytesMut::with_capacity(9);
    head.put_i32(total);
    head.put_i32(correlation_id);
    if header_version >= 1 {
        // No tagged fields.
        head.put_u8(0);
    }
    let mut parts = Vec::with_capacity(body.len() + 1);
    parts.push(Part::Mem(head.freeze()));
    parts.extend(body.iter().cloned());
    crate::body::write_parts(w, socket, &parts).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn run<F: std::future::Future>(f: F) -> F::Output {
        futures::executor::block_on(f)
    }

    #[test]
    fn a_frame_is_read_whole_and_eof_between_frames_is_clean() {
        let mut input: Vec<u8> = Vec::new();
        input.extend_from_slice(&3i32.to_be_bytes());
        input.extend_from_slice(b"abc");
        let mut r = futures::io::Cursor::new(input);
        let f = run(read_frame(&mut r, 10)).expect("frame").expect("some");
        assert_eq!(&f[..], b"abc");
        assert!(run(read_frame(&mut r, 10)).expect("eof").is_none());
    }

    #[test]
    fn oversized_and_negative_lengths_are_refused_before_reading() {
        for len in [11i32, -1, i32::MAX] {
            let mut r = futures::io::Cursor::new(len.to_be_bytes().to_vec());
            match run(read_frame(&mut r, 10)) {
                Err(Error::FrameTooLarge { len: l, max: 10 }) => assert_eq!(l, i64::from(len)),
                other => panic!("length {len}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_frame_cut_short_is_an_error() {
        let mut input = 8i32.to_be_bytes().to_vec();
        input.extend_from_slice(b"abc");
        let mut r = futures::io::Cursor::new(input);
        assert!(matches!(
            run(read_frame(&mut r, 100)),
            Err(Error::Truncated { got: 3, len: 8 })
        ));
        let mut r = futures::io::Cursor::new(vec![0u8, 0]);
        assert!(run(read_frame(&mut r, 100)).is_err());
    }

    #[test]
    fn responses_carry_length_correlation_id_and_tagged_fields_by_header_version() {
        let mut out = futures::io::Cursor::new(Vec::new());
        run(write_response(
            &mut out,
            None,
            7,
            1,
            &[
                Part::Mem(Bytes::from_static(b"xy")),
                Part::Mem(Bytes::from_static(b"z")),
            ],
        ))
        .expect("write");
        assert_eq!(
            out.into_inner(),
            [0, 0, 0, 8, 0, 0, 0, 7, 0, b'x', b'y', b'z']
        );
        let mut out = futures::io::Cursor::new(Vec::new());
        run(write_response(&mut out, None, -2, 0, &[])).expect("write");
        assert_eq!(out.into_inner(), [0, 0, 0, 4, 255, 255, 255, 254]);
    }

    #[test]
    fn the_request_prefix_needs_eight_bytes() {
        assert_eq!(
            RequestPrefix::parse(&[0, 18, 0, 3, 0, 0, 1, 0]),
            Some(RequestPrefix {
                api_key: 18,
                api_version: 3,
                correlation_id: 256
            })
        );
        assert_eq!(RequestPrefix::parse(&[0, 18, 0, 3, 0, 0, 1]), None);
    }
}
