//! Response bodies in parts, and writing them to a socket without copying records.
//!
//! A handler answers with a list of [`Part`]s: encoded protocol fields, record batches
//! shared with the batch cache ([`Part::Mem`], a reference to the cached bytes), and
//! ranges of segment files ([`Part::File`]). On a plaintext socket the parts in memory
//! go out with `writev` straight from where they are, and file ranges with `sendfile`,
//! so record data is never copied into a response buffer. Other streams (and the
//! moments a socket is full) take the copying path through the async writer.
//!
//! The socket is non-blocking: when `writev` or `sendfile` would block, the next piece
//! goes through the async writer, which waits until the socket takes it; then the
//! zero-copy calls resume. A piece is at most [`COPY_PIECE`] bytes of a file range (a
//! part in memory is written from where it is), so a full socket costs a bounded copy.

use std::io::IoSlice;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::{AsyncWrite, AsyncWriteExt};
use nix::errno::Errno;

use crate::error::Result;

/// Bytes of file ranges read and written through the async writer when the socket
/// was full (or the stream is not a plain socket).
pub const COPY_PIECE: usize = 64 << 10;

/// Parts handed to one `writev` call.
const IOV_MAX: usize = 64;

/// Bytes sent with `sendfile`, by every connection of this process.
pub static SENDFILE_BYTES: AtomicU64 = AtomicU64::new(0);
/// Bytes of file ranges copied through memory instead (full socket, or no socket).
pub static FILE_COPIED_BYTES: AtomicU64 = AtomicU64::new(0);

/// A range of an open file. The descriptor is a buffered (not `O_DIRECT`) one, so
/// `sendfile` and `pread` may use any offset and length.
#[derive(Debug, Clone)]
pub struct FileRange {
    pub file: Arc<std::fs::File>,
    pub offset: u64,
    pub len: u64,
}

/// One piece of a response body.
#[derive(Debug, Clone)]
pub enum Part {
    Mem(Bytes),
    File(FileRange),
}

impl Part {
    pub fn len(&self) -> u64 {
        match self {
            Part::Mem(b) => b.len() as u64,
            Part::File(f) => f.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Bytes> for Part {
    fn from(b: Bytes) -> Part {
        Part::Mem(b)
    }
}

/// Reads a file range into memory (for streams that cannot `sendfile`, and tests).
pub fn read_range(r: &FileRange) -> std::io::Result<Bytes> {
    let len = usize::try_from(r.len).map_err(std::io::Error::other)?;
    let mut buf = vec![0u8; len];
    r.file.read_exact_at(&mut buf, r.offset)?;
    Ok(Bytes::from(buf))
}

/// Writes `parts` in order. `socket` is the raw descriptor of the stream `w` writes
/// to, set non-blocking, when zero-copy calls may be used on it; `None` writes
/// everything through `w`.
pub async fn write_parts<W: AsyncWrite + Unpin>(
    w: &mut W,
    socket: Option<RawFd>,
    parts: &[Part],
) -> Result<()> {
    let mut i = 0;
    while i < parts.len() {
        match &parts[i] {
            Part::Mem(_) => {
                let end = parts[i..]
                    .iter()
                    .position(|p| matches!(p, Part::File(_)))
                    .map_or(parts.len(), |n| i + n);
                let run: Vec<&[u8]> = parts[i..end]
                    .iter()
                    .filter_map(|p| match p {
                        Part::Mem(b) if !b.is_empty() => Some(&b[..]),
                        _ => None,
                    })
                    .collect();
                match socket {
                    Some(fd) => write_mem(w, fd, &run).await?,
                    None => {
                        for b in run {
                            w.write_all(b).await?;
                        }
                    }
                }
                i = end;
            }
            Part::File(r) => {
                match socket {
                    Some(fd) => send_file(w, fd, r).await?,
                    None => copy_file(w, r, r.offset, r.len).await?,
                }
                i += 1;
            }
        }
    }
    w.flush().await?;
    Ok(())
}

/// `writev` of the slices from where they are; when the socket is full, the rest of
/// the current slice goes through `w` (which waits for room).
async fn write_mem<W: AsyncWrite + Unpin>(w: &mut W, fd: RawFd, run: &[&[u8]]) -> Result<()> {
    // SAFETY: the descriptor belongs to the stream `w` writes to, which outlives this
    // call (the caller holds it).
    let sock = unsafe { BorrowedFd::borrow_raw(fd) };
    let (mut slice, mut at) = (0usize, 0usize);
    while slice < run.len() {
        let iov: Vec<IoSlice<'_>> = std::iter::once(&run[slice][at..])
            .chain(run[slice + 1..].iter().copied())
            .take(IOV_MAX)
            .map(IoSlice::new)
            .collect();
        match nix::sys::uio::writev(sock, &iov) {
            Ok(mut n) => {
                while n > 0 && slice < run.len() {
                    let left = run[slice].len() - at;
                    if n >= left {
                        n -= left;
                        slice += 1;
                        at = 0;
                    } else {
                        at += n;
                        n = 0;
                    }
                }
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                w.write_all(&run[slice][at..]).await?;
                slice += 1;
                at = 0;
            }
            Err(e) => return Err(std::io::Error::from(e).into()),
        }
    }
    Ok(())
}

/// `sendfile` of a file range; when the socket is full, the next piece is copied
/// through `w` (which waits for room).
async fn send_file<W: AsyncWrite + Unpin>(w: &mut W, fd: RawFd, r: &FileRange) -> Result<()> {
    // SAFETY: as in `write_mem`.
    let sock = unsafe { BorrowedFd::borrow_raw(fd) };
    let end = r.offset + r.len;
    let mut offset = r.offset;
    while offset < end {
        let mut off = i64::try_from(offset).map_err(std::io::Error::other)?;
        let count = usize::try_from((end - offset).min(1 << 30)).unwrap_or(1 << 30);
        match nix::sys::sendfile::sendfile64(sock, r.file.as_fd(), Some(&mut off), count) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "a segment file ends before the range its index names",
                )
                .into())
            }
            Ok(n) => {
                offset += n as u64;
                SENDFILE_BYTES.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let piece = (end - offset).min(COPY_PIECE as u64);
                copy_file(w, r, offset, piece).await?;
                offset += piece;
            }
            Err(e) => return Err(std::io::Error::from(e).into()),
        }
    }
    Ok(())
}

/// Reads `len` bytes of the file at `offset` in pieces and writes them through `w`.
async fn copy_file<W: AsyncWrite + Unpin>(
    w: &mut W,
    r: &FileRange,
    offset: u64,
    len: u64,
) -> Result<()> {
    let mut done = 0;
    while done < len {
        let piece = (len - done).min(COPY_PIECE as u64);
        let data = read_range(&FileRange {
            file: r.file.clone(),
            offset: offset + done,
            len: piece,
        })?;
        w.write_all(&data).await?;
        FILE_COPIED_BYTES.fetch_add(piece, Ordering::Relaxed);
        done += piece;
    }
    Ok(())
}

/// Sets a socket non-blocking, so `writev` and `sendfile` on it never stall the
/// shard. The async stream over it reads and writes with `MSG_DONTWAIT` and polls
/// either way, so it is not affected.
pub fn set_nonblocking(fd: RawFd) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn run<F: std::future::Future>(f: F) -> F::Output {
        futures::executor::block_on(f)
    }

    fn file_with(data: &[u8]) -> Arc<std::fs::File> {
        let mut f = tempfile::tempfile().expect("tempfile");
        f.write_all(data).expect("write");
        Arc::new(f)
    }

    #[test]
    fn parts_without_a_socket_are_written_in_order() {
        let file = file_with(b"0123456789");
        let parts = [
            Part::Mem(Bytes::from_static(b"ab")),
            Part::File(FileRange {
                file,
                offset: 3,
                len: 4,
            }),
            Part::Mem(Bytes::new()),
            Part::Mem(Bytes::from_static(b"z")),
        ];
        let mut out = futures::io::Cursor::new(Vec::new());
        run(write_parts(&mut out, None, &parts)).expect("write");
        assert_eq!(out.into_inner(), b"ab3456z");
        assert_eq!(parts.iter().map(Part::len).sum::<u64>(), 7);
    }

    #[test]
    fn a_file_shorter_than_its_range_is_an_error() {
        let parts = [Part::File(FileRange {
            file: file_with(b"abc"),
            offset: 1,
            len: 5,
        })];
        let mut out = futures::io::Cursor::new(Vec::new());
        assert!(run(write_parts(&mut out, None, &parts)).is_err());
    }
}
