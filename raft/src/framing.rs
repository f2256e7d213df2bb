//! The framing of the metadata files: `[length u32 LE][crc32c u32 LE][payload]`.

use std::fs::File;
use std::path::Path;

/// Bytes before a payload.
pub(crate) const HEADER: usize = 8;
/// Largest payload accepted (a snapshot of ~100k topics fits).
pub(crate) const FRAME_MAX: usize = 256 << 20;

pub(crate) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// One frame at `pos`: `Ok(Some((payload, next)))`, `Ok(None)` if the frame is torn
/// (it reaches the end of the data), `Err` if it is bad with data after it.
pub(crate) fn next_frame(data: &[u8], pos: usize) -> Result<Option<(&[u8], usize)>, String> {
    let rest = data.len() - pos;
    if rest < HEADER {
        return Ok(None);
    }
    let word = |at: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&data[at..at + 4]);
        u32::from_le_bytes(b)
    };
    let len = word(pos) as usize;
    let crc = word(pos + 4);
    if HEADER + len > rest {
        // Claims more than the file holds: an append cut short.
        return Ok(None);
    }
    if len > FRAME_MAX {
        return Err(format!("a frame of {len} bytes"));
    }
    let payload = &data[pos + HEADER..pos + HEADER + len];
    if crc32c::crc32c(payload) != crc {
        return if HEADER + len == rest {
            Ok(None)
        } else {
            Err("checksum mismatch".into())
        };
    }
    Ok(Some((payload, pos + HEADER + len)))
}

/// The payload of a file that is one frame (a snapshot, a vote), or why not.
pub(crate) fn whole_frame(data: &[u8]) -> Result<&[u8], String> {
    let (payload, end) = next_frame(data, 0)?.ok_or("cut short or checksum mismatch")?;
    if end != data.len() {
        return Err("bytes after the frame".into());
    }
    Ok(payload)
}

/// Cuts `file` (opened for writing) at `kept`, the end of its last whole frame, and
/// makes the cut durable: what a crash in the middle of an append leaves.
pub(crate) fn cut_torn_tail(
    file: &File,
    path: &Path,
    kept: usize,
    len: usize,
) -> std::io::Result<()> {
    tracing::warn!(path = %path.display(), kept, cut = len - kept,
        "cutting off a torn last entry");
    file.set_len(kept as u64)?;
    file.sync_all()
}

pub(crate) fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}

/// Replaces `path` with `bytes` durably: a temporary file beside it, fsync, rename,
/// directory fsync.
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        fsync_dir(dir)?;
    }
    Ok(())
}
