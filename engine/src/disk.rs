//! Small whole-file disk operations for the engine's side files (indexes,
//! checkpoints, snapshots): each goes through io_uring, names the failpoint it
//! passes, and reports errors with the operation and path.
//!
//! Whole-file replacement is crash-safe: write `NAME.tmp`, fdatasync it, rename it
//! over `NAME`, fsync the directory. A reader therefore sees either the old or the
//! new file, never a mix.

use std::path::{Path, PathBuf};

use glommio::io::{Directory, DmaFile, OpenOptions};

use crate::config::BLOCK_BYTES;
use crate::error::{Error, Result};
use crate::failpoint;

/// Largest side file read whole into memory. An index of a 2 GiB segment at the
/// smallest index interval Kafka allows is far below this; anything larger is garbage.
pub const SIDE_FILE_BYTES_MAX: u64 = 64 << 20;

pub(crate) fn align_up(v: u64) -> u64 {
    let b = BLOCK_BYTES as u64;
    v.div_ceil(b) * b
}

pub(crate) fn align_down(v: u64) -> u64 {
    let b = BLOCK_BYTES as u64;
    v / b * b
}

/// Writes `bytes` as the whole content of `path`, atomically (see module docs).
pub async fn replace_file(path: &Path, bytes: &[u8], failpoint_name: &'static str) -> Result<()> {
    let tmp = tmp_path(path);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(&tmp)
        .await
        .map_err(|e| Error::io("create", &tmp, e))?;
    let result = write_whole(&file, &tmp, bytes, failpoint_name).await;
    let closed = file.close().await.map_err(|e| Error::io("close", &tmp, e));
    result?;
    closed?;
    failpoint::check("checkpoint.rename", path).map_err(|e| Error::io("rename", path, e))?;
    glommio::io::rename(&tmp, path)
        .await
        .map_err(|e| Error::io("rename", &tmp, e))?;
    sync_dir(parent(path)).await
}

async fn write_whole(
    file: &DmaFile,
    path: &Path,
    bytes: &[u8],
    failpoint_name: &'static str,
) -> Result<()> {
    failpoint::check(failpoint_name, path).map_err(|e| Error::io("write", path, e))?;
    if !bytes.is_empty() {
        let cap = usize::try_from(align_up(bytes.len() as u64)).unwrap_or(usize::MAX);
        let mut buf = file.alloc_dma_buffer(cap);
        buf.as_bytes_mut()[..bytes.len()].copy_from_slice(bytes);
        buf.as_bytes_mut()[bytes.len()..].fill(0);
        let written = file
            .write_at(buf, 0)
            .await
            .map_err(|e| Error::io("write", path, e))?;
        if written < bytes.len() {
            return Err(Error::io(
                "write",
                path,
                std::io::Error::other("short write"),
            ));
        }
    }
    file.truncate(bytes.len() as u64)
        .await
        .map_err(|e| Error::io("truncate", path, e))?;
    failpoint::check("segment.flush", path).map_err(|e| Error::io("fdatasync", path, e))?;
    file.fdatasync()
        .await
        .map_err(|e| Error::io("fdatasync", path, e))
}

/// Reads a whole side file; `Ok(None)` when it does not exist.
pub async fn read_file(path: &Path) -> Result<Option<Vec<u8>>> {
    let file = match DmaFile::open(path).await {
        Ok(f) => f,
        Err(e) => {
            let e: std::io::Error = e.into();
            if e.kind() == std::io::ErrorKind::NotFound {
                return Ok(None);
            }
            return Err(Error::io("open", path, e));
        }
    };
    let result = read_open(&file, path).await;
    let _ = file.close().await;
    result.map(Some)
}

async fn read_open(file: &DmaFile, path: &Path) -> Result<Vec<u8>> {
    failpoint::check("segment.read", path).map_err(|e| Error::io("read", path, e))?;
    let size = file
        .file_size()
        .await
        .map_err(|e| Error::io("stat", path, e))?;
    if size > SIDE_FILE_BYTES_MAX {
        return Err(Error::io(
            "read",
            path,
            std::io::Error::other(format!("{size} bytes is larger than any valid side file")),
        ));
    }
    if size == 0 {
        return Ok(Vec::new());
    }
    let len = usize::try_from(size).unwrap_or(usize::MAX);
    let read = file
        .read_at(0, len)
        .await
        .map_err(|e| Error::io("read", path, e))?;
    Ok(read.to_vec())
}

/// Makes directory entries (creates, renames, removes) in `dir` durable.
pub async fn sync_dir(dir: &Path) -> Result<()> {
    let d = Directory::open(dir)
        .await
        .map_err(|e| Error::io("open dir", dir, e))?;
    let synced = d.sync().await.map_err(|e| Error::io("fsync dir", dir, e));
    let _ = d.close().await;
    synced
}

/// Removes a file; a file that is already gone is fine.
pub async fn remove_file(path: &Path) -> Result<()> {
    match glommio::io::remove(path).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let e: std::io::Error = e.into();
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(Error::io("remove", path, e))
            }
        }
    }
}

pub(crate) fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or_else(|| Path::new("."))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// File in the data directory used to probe direct I/O at start.
pub const PROBE_FILE: &str = ".io-probe";

/// Writes the probe file (one block of zeroes). Runs on the starting thread, before
/// any shard exists.
pub fn write_probe_file(data_dir: &Path) -> Result<()> {
    use std::io::Write;
    let path = data_dir.join(PROBE_FILE);
    let mut f = std::fs::File::create(&path).map_err(|e| Error::io("create", &path, e))?;
    f.write_all(&[0u8; BLOCK_BYTES])
        .map_err(|e| Error::io("write", &path, e))?;
    f.sync_all().map_err(|e| Error::io("fsync", &path, e))
}

/// Opens the probe file with O_DIRECT and reads it back, on the calling shard.
///
/// glommio decides per device and per thread, at the first DMA open, whether the
/// device supports polled I/O, by reading the first block of the file being opened.
/// For an empty file that read "succeeds" at end of file, glommio concludes that
/// polling works, and every later read on a device without poll queues fails with
/// EOPNOTSUPP. Opening this non-empty file first makes the probe meet real data and
/// decide correctly; the read back also proves direct I/O works on the data
/// directory's filesystem.
pub async fn probe_direct_io(data_dir: &Path) -> Result<()> {
    let path = data_dir.join(PROBE_FILE);
    let file = DmaFile::open(&path)
        .await
        .map_err(|e| Error::io("open", &path, e))?;
    let read = file
        .read_at(0, BLOCK_BYTES)
        .await
        .map_err(|e| Error::io("read", &path, e));
    let _ = file.close().await;
    let read = read?;
    if read.len() != BLOCK_BYTES {
        return Err(Error::io(
            "read",
            &path,
            std::io::Error::other("short read of the direct I/O probe"),
        ));
    }
    Ok(())
}
