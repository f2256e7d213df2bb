//! The record codecs of Kafka's v2 batches (attributes bits 0-2: none, gzip,
//! snappy, lz4, zstd): decompressing what producers send, and compressing for a
//! topic whose `compression.type` names a codec, as Kafka writes each:
//!
//! - gzip: one RFC 1952 member (any number read back); level 1-9, -1 = zlib's 6.
//! - snappy: written in the xerial framing Kafka's Java code uses (16-byte header,
//!   then 32 KiB blocks each with a big-endian length); read in that framing or as
//!   one raw snappy block, which is what librdkafka sends. All clients read both.
//! - lz4: the LZ4 frame format with independent blocks (Kafka refuses linked ones),
//!   64 KiB blocks, no checksums; level as LZ4F's (Kafka's 1-17, capped by liblz4).
//! - zstd: standard frames; level -131072..22 (Kafka's range).
//!
//! Every decompression stops at a limit, so a small batch that expands to gigabytes
//! (a "zip bomb") is refused instead of exhausting the shard's memory.

use std::io::Read;

/// A codec id from a batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Codec {
    /// The codec of attributes bits 0-2; `None` for the unused ids 5-7.
    pub fn from_id(id: i16) -> Option<Codec> {
        Some(match id {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            _ => return None,
        })
    }

    pub fn id(self) -> i16 {
        self as i16
    }

    /// Kafka's `compression.type` spelling.
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "uncompressed",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// What a topic stores: `compression.type` and the level of its codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `producer`: batches are kept as the producer compressed them.
    Producer,
    /// A codec (`uncompressed` is [`Codec::None`]) at a level (ignored by snappy and
    /// none).
    Codec(Codec, i32),
}

/// The xerial snappy framing's magic, the first 8 bytes of its 16-byte header.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_BYTES: usize = 16;
/// Uncompressed bytes per xerial block, as snappy-java writes them.
const XERIAL_BLOCK_BYTES: usize = 32 << 10;

/// Why a payload could not be (de)compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The output would pass the limit.
    TooLarge { codec: &'static str, limit: usize },
    /// The input is not valid in its codec.
    Corrupt(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::TooLarge { codec, limit } => {
                write!(
                    f,
                    "{codec}: the records decompress to more than {limit} bytes"
                )
            }
            Failure::Corrupt(why) => f.write_str(why),
        }
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::Corrupt(format!("{what}: {e}"))
}

/// Decompresses a batch's records, refusing more than `limit` bytes of output.
pub fn decompress(codec: Codec, data: &[u8], limit: usize) -> Result<Vec<u8>, Failure> {
    match codec {
        Codec::None => Ok(data.to_vec()),
        Codec::Gzip => read_limited(flate2::read::MultiGzDecoder::new(data), limit, "gzip"),
        Codec::Snappy => snappy_decompress(data, limit),
        Codec::Lz4 => {
            let decoder = lz4::Decoder::new(data).map_err(|e| corrupt("lz4", e))?;
            read_limited(decoder, limit, "lz4")
        }
        Codec::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(data).map_err(|e| corrupt("zstd", e))?;
            read_limited(decoder, limit, "zstd")
        }
    }
}

/// Compresses records with `codec` at `level` (see the module docs).
pub fn compress(codec: Codec, level: i32, data: &[u8]) -> Result<Vec<u8>, Failure> {
    use std::io::Write;
    match codec {
        Codec::None => Ok(data.to_vec()),
        Codec::Gzip => {
            let level = u32::try_from(level).map_or(flate2::Compression::default(), |l| {
                flate2::Compression::new(l.min(9))
            });
            let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 2), level);
            e.write_all(data).map_err(|e| corrupt("gzip", e))?;
            e.finish().map_err(|e| corrupt("gzip", e))
        }
        Codec::Snappy => {
            let mut out = Vec::with_capacity(XERIAL_HEADER_BYTES + data.len() / 2);
            out.extend_from_slice(&XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes()); // version
            out.extend_from_slice(&1i32.to_be_bytes()); // compatible version
            let mut encoder = snap::raw::Encoder::new();
            for block in data.chunks(XERIAL_BLOCK_BYTES) {
                let compressed = encoder
                    .compress_vec(block)
                    .map_err(|e| corrupt("snappy", e))?;
                let len = i32::try_from(compressed.len()).map_err(|e| corrupt("snappy", e))?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            Ok(out)
        }
        Codec::Lz4 => {
            let mut e = lz4::EncoderBuilder::new()
                .block_mode(lz4::BlockMode::Independent)
                .block_size(lz4::BlockSize::Max64KB)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
                .level(u32::try_from(level).unwrap_or(0))
                .build(Vec::with_capacity(data.len() / 2))
                .map_err(|e| corrupt("lz4", e))?;
            e.write_all(data).map_err(|e| corrupt("lz4", e))?;
            let (out, done) = e.finish();
            done.map_err(|e| corrupt("lz4", e))?;
            Ok(out)
        }
        Codec::Zstd => zstd::bulk::compress(data, level).map_err(|e| corrupt("zstd", e)),
    }
}

/// Reads all of `r`, or fails once it gives more than `limit` bytes.
fn read_limited(r: impl Read, limit: usize, what: &'static str) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    r.take(cap)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(what, e))?;
    if out.len() > limit {
        return Err(too_large(what, limit));
    }
    Ok(out)
}

fn too_large(codec: &'static str, limit: usize) -> Failure {
    Failure::TooLarge { codec, limit }
}

/// Snappy in xerial framing (recognised by its magic alone, as librdkafka and
/// kafka-python do; the version fields are not checked) or as one raw block.
fn snappy_decompress(data: &[u8], limit: usize) -> Result<Vec<u8>, Failure> {
    let mut decoder = snap::raw::Decoder::new();
    let raw = |block: &[u8], decoder: &mut snap::raw::Decoder, budget: usize| {
        let n = snap::raw::decompress_len(block).map_err(|e| corrupt("snappy", e))?;
        if n > budget {
            return Err(too_large("snappy", limit));
        }
        decoder
            .decompress_vec(block)
            .map_err(|e| corrupt("snappy", e))
    };
    if data.len() <= XERIAL_HEADER_BYTES || data[..XERIAL_MAGIC.len()] != XERIAL_MAGIC {
        return raw(data, &mut decoder, limit);
    }
    let mut out = Vec::new();
    let mut at = XERIAL_HEADER_BYTES;
    while at < data.len() {
        let len_bytes = data
            .get(at..at + 4)
            .ok_or_else(|| corrupt("snappy", "a xerial block length is cut short"))?;
        let len = usize::try_from(i32::from_be_bytes([
            len_bytes[0],
            len_bytes[1],
            len_bytes[2],
            len_bytes[3],
        ]))
        .map_err(|_| corrupt("snappy", "negative xerial block length"))?;
        at += 4;
        let block = data
            .get(at..at.saturating_add(len))
            .ok_or_else(|| corrupt("snappy", "a xerial block runs past the records"))?;
        at += len;
        let budget = limit.saturating_sub(out.len());
        out.extend(raw(block, &mut decoder, budget)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn every_codec_round_trips_at_its_levels() {
        let data = sample();
        for (codec, levels) in [
            (Codec::None, vec![0]),
            (Codec::Gzip, vec![-1, 1, 9]),
            (Codec::Snappy, vec![0]),
            (Codec::Lz4, vec![1, 9, 17]),
            (Codec::Zstd, vec![-5, 3, 19]),
        ] {
            for level in levels {
                let packed = compress(codec, level, &data).unwrap();
                if codec != Codec::None {
                    assert!(packed.len() < data.len() / 2, "{codec:?} {level}");
                }
                let back = decompress(codec, &packed, data.len()).unwrap();
                assert!(back == data, "{codec:?} at {level} changed the data");
            }
        }
    }

    #[test]
    fn snappy_is_read_raw_or_framed_and_written_framed() {
        let data = sample();
        let framed = compress(Codec::Snappy, 0, &data).unwrap();
        assert_eq!(framed[..8], XERIAL_MAGIC);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert!(decompress(Codec::Snappy, &raw, data.len()).unwrap() == data);
        // What kafka-protocol (and Kafka's Java code) write reads back too.
        let mut other = bytes::BytesMut::new();
        <kafka_protocol::compression::Snappy as kafka_protocol::compression::Compressor<
            bytes::BytesMut,
        >>::compress(&mut other, |b| {
            b.extend_from_slice(&data);
            Ok(())
        })
        .unwrap();
        assert!(decompress(Codec::Snappy, &other, data.len()).unwrap() == data);
    }

    #[test]
    fn output_past_the_limit_is_refused() {
        let zeros = vec![0u8; 10 << 20];
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let packed = compress(codec, 1, &zeros).unwrap();
            assert!(packed.len() < 1 << 20);
            let e = decompress(codec, &packed, 1 << 20).unwrap_err();
            assert!(matches!(e, Failure::TooLarge { .. }), "{codec:?}: {e}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            for junk in [
                &b""[..],
                b"\x00",
                b"not compressed at all, really",
                &XERIAL_MAGIC,
            ] {
                let _ = decompress(codec, junk, 1 << 20);
            }
            let mut framed = XERIAL_MAGIC.to_vec();
            framed.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0x7f]);
            assert!(decompress(Codec::Snappy, &framed, 1 << 20).is_err());
        }
    }
}
