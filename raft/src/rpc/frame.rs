//! Frames of the node-to-node protocol.
//!
//! ```text
//! magic    u16  0x534C ("SL")
//! version  u8   1
//! kind     u8   what the payload is (see [`Kind`])
//! id       u64  correlation id: a response carries its request's
//! length   u32  payload bytes
//! crc      u32  CRC-32C of the payload
//! payload
//! ```
//! All integers little-endian. A decoder refuses, before allocating, a frame longer
//! than its limit; an unknown version or kind, a bad magic or a checksum mismatch
//! is an error and the connection is closed by the caller.

/// Bytes before the payload.
pub const HEADER_BYTES: usize = 20;
const MAGIC: u16 = 0x534C;
/// The version this build speaks.
pub const VERSION: u8 = 1;
/// The default payload limit for control messages (votes, appends, proposals).
pub const CONTROL_MAX_BYTES: u32 = 8 << 20;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Vote = 1,
    Append = 2,
    Snapshot = 3,
    /// A proposal forwarded to the leader.
    Forward = 4,
    /// The answer to any of them (same correlation id).
    Response = 5,
    /// A request refused as a whole (its payload says why).
    Error = 6,
    /// A broker's heartbeat to the controller (its id and incarnation).
    Heartbeat = 7,
    /// The quorum as the answering node sees it.
    Status = 8,
    /// A change of the quorum's membership, for its leader.
    Membership = 9,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Vote,
            2 => Kind::Append,
            3 => Kind::Snapshot,
            4 => Kind::Forward,
            5 => Kind::Response,
            6 => Kind::Error,
            7 => Kind::Heartbeat,
            8 => Kind::Status,
            9 => Kind::Membership,
            _ => return None,
        })
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub id: u64,
    pub payload: Vec<u8>,
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("not a Sluice cluster frame (magic {0:#06x})")]
    Magic(u16),
    #[error("frame version {0}; this node speaks {VERSION}")]
    Version(u8),
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("a frame of {len} bytes is over the limit of {limit}")]
    TooLong { len: u32, limit: u32 },
    #[error("frame checksum mismatch")]
    Checksum,
}

impl Frame {
    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let len = u32::try_from(self.payload.len()).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(HEADER_BYTES + self.payload.len());
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.push(VERSION);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&self.payload).to_le_bytes());
        out.extend_from_slice(&self.payload);
        out
    }
}

fn le<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

/// Decodes the first frame of `buf`: `Ok(None)` if more bytes are needed, else the
/// frame and the bytes it took. `limit` bounds the payload (checked from the
/// header, before the payload is read or allocated).
pub fn decode(buf: &[u8], limit: u32) -> Result<Option<(Frame, usize)>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let magic = u16::from_le_bytes(le(buf));
    if magic != MAGIC {
        return Err(FrameError::Magic(magic));
    }
    if buf.len() < HEADER_BYTES {
        return Ok(None);
    }
    if buf[2] != VERSION {
        return Err(FrameError::Version(buf[2]));
    }
    let kind = Kind::from_u8(buf[3]).ok_or(FrameError::Kind(buf[3]))?;
    let id = u64::from_le_bytes(le(&buf[4..]));
    let len = u32::from_le_bytes(le(&buf[12..]));
    if len > limit {
        return Err(FrameError::TooLong { len, limit });
    }
    let crc = u32::from_le_bytes(le(&buf[16..]));
    let end = HEADER_BYTES + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    let payload = &buf[HEADER_BYTES..end];
    if crc32c::crc32c(payload) != crc {
        return Err(FrameError::Checksum);
    }
    Ok(Some((
        Frame {
            kind,
            id,
            payload: payload.to_vec(),
        },
        end,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: Kind, id: u64, n: usize) -> Frame {
        Frame {
            kind,
            id,
            payload: (0..n)
                .map(|i| u8::try_from(i * 31 % 251).unwrap())
                .collect(),
        }
    }

    #[test]
    fn frames_round_trip_and_split_anywhere() {
        let frames = [
            frame(Kind::Vote, 1, 0),
            frame(Kind::Append, u64::MAX, 1000),
            frame(Kind::Response, 7, 3),
        ];
        let stream: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        // Fed one byte more at a time, every frame comes out once, in order.
        let mut got = Vec::new();
        let mut start = 0;
        for end in 0..=stream.len() {
            while let Some((f, used)) = decode(&stream[start..end], CONTROL_MAX_BYTES).unwrap() {
                got.push(f);
                start += used;
            }
        }
        assert_eq!(got, frames);
        assert_eq!(start, stream.len());
    }

    #[test]
    fn bad_frames_are_refused_before_the_payload_is_read() {
        let good = frame(Kind::Forward, 9, 64).encode();
        let mut bad = good.clone();
        bad[0] ^= 1;
        assert!(matches!(decode(&bad, 1024), Err(FrameError::Magic(_))));
        let mut bad = good.clone();
        bad[2] = 2;
        assert_eq!(decode(&bad, 1024), Err(FrameError::Version(2)));
        let mut bad = good.clone();
        bad[3] = 0;
        assert_eq!(decode(&bad, 1024), Err(FrameError::Kind(0)));
        let mut bad = good.clone();
        bad[HEADER_BYTES + 5] ^= 0x40;
        assert_eq!(decode(&bad, 1024), Err(FrameError::Checksum));
        // A header announcing 4 GiB is refused from the header alone.
        let mut huge = good[..HEADER_BYTES].to_vec();
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode(&huge, 1024),
            Err(FrameError::TooLong {
                len: u32::MAX,
                limit: 1024
            })
        );
        assert_eq!(
            decode(&good, 63).unwrap_err(),
            FrameError::TooLong { len: 64, limit: 63 }
        );
    }
}
