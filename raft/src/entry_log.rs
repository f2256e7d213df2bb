//! The Raft log's file: `<dir>/raft-log` holds a header frame (what was purged)
//! and one frame per entry (`[index u64 LE][entry bytes]`, framed with length and
//! CRC-32C); `<dir>/raft-vote` holds the last vote. Entries are opaque here: the
//! quorum serializes openraft's entries and votes into them.
//!
//! - Append: frames written, then fdatasync, before it returns.
//! - Truncate (a conflicting suffix): the file is cut at the first dropped entry,
//!   then fsync.
//! - Purge (a prefix covered by a snapshot): the file is rewritten without it
//!   (temporary file, fsync, rename, directory fsync), its header naming the last
//!   purged entry, so a crash leaves the old file or the new one.
//! - Open: a torn last entry is cut off; damage with entries after it, or indexes
//!   that do not follow each other, refuse to open naming the offset.
//!
//! Blocking file I/O: run on a thread of its own, never on a shard. Entries are kept
//! in memory too (the metadata log is purged after every snapshot, so it is small).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::framing::{cut_torn_tail, frame, next_frame, replace_file, whole_frame};

const LOG_FILE: &str = "raft-log";
const VOTE_FILE: &str = "raft-vote";

#[derive(Debug, thiserror::Error)]
pub enum EntryLogError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: damaged at byte {offset}: {reason}; restore it, or remove the node's metadata directory and let it catch up from the others", path.display())]
    Damaged {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("entry {got} appended after {last}: entries must follow each other")]
    Order { last: u64, got: u64 },
}

struct Stored {
    index: u64,
    bytes: Vec<u8>,
    /// Where its frame starts in the file.
    at: u64,
}

/// The open log.
pub struct EntryLog {
    dir: PathBuf,
    file: File,
    len: u64,
    entries: VecDeque<Stored>,
    /// The last purged entry: its index and the bytes its id was given as.
    purged: Option<(u64, Vec<u8>)>,
    vote: Option<Vec<u8>>,
}

impl std::fmt::Debug for EntryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EntryLog({}, {:?}..={:?})",
            self.dir.display(),
            self.first_index(),
            self.last_index()
        )
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> EntryLogError + 'a {
    move |source| EntryLogError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn header(purged: Option<&(u64, Vec<u8>)>) -> Vec<u8> {
    let mut p = vec![b'P'];
    if let Some((index, id)) = purged {
        p.extend_from_slice(&index.to_le_bytes());
        p.extend_from_slice(id);
    }
    frame(&p)
}

fn entry_frame(index: u64, bytes: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(8 + bytes.len());
    p.extend_from_slice(&index.to_le_bytes());
    p.extend_from_slice(bytes);
    frame(&p)
}

fn u64_at(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

impl EntryLog {
    /// Opens (or creates) the log in `dir`.
    pub fn open(dir: &Path) -> Result<EntryLog, EntryLogError> {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let path = dir.join(LOG_FILE);
        if !path.exists() {
            replace_file(&path, &header(None)).map_err(io("create", &path))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io("open", &path))?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(io("read", &path))?;
        let damaged = |offset: usize, reason: String| EntryLogError::Damaged {
            path: path.clone(),
            offset: offset as u64,
            reason,
        };
        // The header is written whole by a rename: it is never torn.
        let (h, mut pos) = next_frame(&data, 0)
            .map_err(|r| damaged(0, r))?
            .ok_or_else(|| damaged(0, "no header".into()))?;
        let purged = match h {
            [b'P'] => None,
            [b'P', rest @ ..] if rest.len() >= 8 => Some((u64_at(rest), rest[8..].to_vec())),
            _ => return Err(damaged(0, "not a Raft log header".into())),
        };
        let mut entries: VecDeque<Stored> = VecDeque::new();
        let mut last = purged.as_ref().map(|p| p.0);
        while let Some((payload, next)) = next_frame(&data, pos).map_err(|r| damaged(pos, r))? {
            if payload.len() < 8 {
                return Err(damaged(pos, "an entry without its index".into()));
            }
            let index = u64_at(payload);
            if last.is_some_and(|l| index != l + 1) {
                return Err(damaged(pos, format!("entry {index} follows {last:?}")));
            }
            entries.push_back(Stored {
                index,
                bytes: payload[8..].to_vec(),
                at: pos as u64,
            });
            last = Some(index);
            pos = next;
        }
        if pos < data.len() {
            cut_torn_tail(&file, &path, pos, data.len())
                .map_err(io("cut the torn tail of", &path))?;
        }
        let vote_path = dir.join(VOTE_FILE);
        let vote = match std::fs::read(&vote_path) {
            Ok(v) => Some(
                whole_frame(&v)
                    .map_err(|reason| EntryLogError::Damaged {
                        path: vote_path.clone(),
                        offset: 0,
                        reason,
                    })?
                    .to_vec(),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("read", &vote_path)(e)),
        };
        Ok(EntryLog {
            dir: dir.to_path_buf(),
            file,
            len: pos as u64,
            entries,
            purged,
            vote,
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    pub fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.index)
    }

    pub fn last_index(&self) -> Option<u64> {
        self.entries
            .back()
            .map(|e| e.index)
            .or(self.purged.as_ref().map(|p| p.0))
    }

    /// The last purged entry's index and id bytes.
    pub fn purged(&self) -> Option<(u64, &[u8])> {
        self.purged.as_ref().map(|(i, b)| (*i, b.as_slice()))
    }

    pub fn get(&self, index: u64) -> Option<&[u8]> {
        let first = self.first_index()?;
        let at = usize::try_from(index.checked_sub(first)?).ok()?;
        self.entries.get(at).map(|e| e.bytes.as_slice())
    }

    /// Entries with `from <= index < to`.
    /// Indexes follow each other, so the range is found by position, not by a scan.
    pub fn range(&self, from: u64, to: u64) -> impl Iterator<Item = (u64, &[u8])> {
        let first = self.first_index().unwrap_or(0);
        let pos = |i: u64| usize::try_from(i.saturating_sub(first)).unwrap_or(usize::MAX);
        let start = pos(from).min(self.entries.len());
        let end = pos(to).clamp(start, self.entries.len());
        self.entries
            .range(start..end)
            .map(|e| (e.index, e.bytes.as_slice()))
    }

    /// Appends entries; durable when it returns. The first may replace entries from
    /// its index on (they are cut first, as after a conflict); each must follow the
    /// one before it.
    pub fn append(
        &mut self,
        entries: impl IntoIterator<Item = (u64, Vec<u8>)>,
    ) -> Result<(), EntryLogError> {
        // Entries a purge already covered (a snapshot holds them) are not kept again.
        let purged = self.purged.as_ref().map(|p| p.0);
        let mut entries = entries
            .into_iter()
            .filter(|(i, _)| purged.is_none_or(|p| *i > p))
            .peekable();
        if let Some((first, _)) = entries.peek() {
            if self.last_index().is_some_and(|l| *first <= l)
                && self.purged.as_ref().is_none_or(|p| *first > p.0)
            {
                self.truncate_from(*first)?;
            }
        }
        let mut out = Vec::new();
        let mut added = Vec::new();
        let mut last = self.last_index();
        let mut at = self.len;
        for (index, bytes) in entries {
            if let Some(l) = last {
                if index != l + 1 {
                    return Err(EntryLogError::Order {
                        last: l,
                        got: index,
                    });
                }
            }
            let f = entry_frame(index, &bytes);
            added.push(Stored { index, bytes, at });
            at += f.len() as u64;
            out.extend_from_slice(&f);
            last = Some(index);
        }
        if added.is_empty() {
            return Ok(());
        }
        let path = self.path();
        self.file.write_all(&out).map_err(io("append to", &path))?;
        self.file.sync_data().map_err(io("fdatasync", &path))?;
        self.len = at;
        self.entries.extend(added);
        Ok(())
    }

    /// Drops every entry from `index` on (a suffix that conflicts with the leader).
    pub fn truncate_from(&mut self, index: u64) -> Result<(), EntryLogError> {
        let Some(cut) = self.entries.iter().position(|e| e.index >= index) else {
            return Ok(());
        };
        let at = self.entries[cut].at;
        let path = self.path();
        self.file.set_len(at).map_err(io("truncate", &path))?;
        self.file.sync_all().map_err(io("fsync", &path))?;
        self.entries.truncate(cut);
        self.len = at;
        Ok(())
    }

    /// Drops every entry up to `index` (a snapshot covers them); `id` is what the
    /// caller wants back from [`EntryLog::purged`].
    pub fn purge_to(&mut self, index: u64, id: Vec<u8>) -> Result<(), EntryLogError> {
        if self.purged.as_ref().is_some_and(|p| p.0 >= index) {
            return Ok(());
        }
        let keep: VecDeque<Stored> = self.entries.drain(..).filter(|e| e.index > index).collect();
        let purged = Some((index, id));
        let mut bytes = header(purged.as_ref());
        let mut kept = VecDeque::with_capacity(keep.len());
        for e in keep {
            let at = bytes.len() as u64;
            bytes.extend_from_slice(&entry_frame(e.index, &e.bytes));
            kept.push_back(Stored { at, ..e });
        }
        let path = self.path();
        replace_file(&path, &bytes).map_err(io("rewrite", &path))?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io("open", &path))?;
        self.len = bytes.len() as u64;
        self.entries = kept;
        self.purged = purged;
        Ok(())
    }

    pub fn vote(&self) -> Option<&[u8]> {
        self.vote.as_deref()
    }

    /// Saves the vote durably (replacing the file).
    pub fn save_vote(&mut self, bytes: &[u8]) -> Result<(), EntryLogError> {
        let path = self.dir.join(VOTE_FILE);
        replace_file(&path, &frame(bytes)).map_err(io("write", &path))?;
        self.vote = Some(bytes.to_vec());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(from: u64, to: u64) -> Vec<(u64, Vec<u8>)> {
        (from..=to)
            .map(|i| (i, format!("entry {i}").into_bytes()))
            .collect()
    }

    fn all(log: &EntryLog) -> Vec<(u64, Vec<u8>)> {
        log.range(0, u64::MAX)
            .map(|(i, b)| (i, b.to_vec()))
            .collect()
    }

    #[test]
    fn append_truncate_purge_and_vote_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = EntryLog::open(dir.path()).unwrap();
        assert_eq!((log.first_index(), log.last_index()), (None, None));
        log.append(entries(1, 10)).unwrap();
        // Re-appending from an index replaces what followed it.
        log.append(vec![(9, b"other 9".to_vec())]).unwrap();
        assert_eq!(log.last_index(), Some(9));
        assert_eq!(log.get(9), Some(&b"other 9"[..]));
        log.append(vec![(9, b"entry 9".to_vec())]).unwrap();
        log.append(entries(10, 10)).unwrap();
        assert!(matches!(
            log.append(entries(12, 12)),
            Err(EntryLogError::Order { last: 10, got: 12 })
        ));
        log.truncate_from(8).unwrap();
        log.append(entries(8, 9)).unwrap();
        log.purge_to(4, b"id-4".to_vec()).unwrap();
        log.save_vote(b"term 3, node 2").unwrap();
        let before = all(&log);
        assert_eq!(before, entries(5, 9));
        drop(log);
        let mut log = EntryLog::open(dir.path()).unwrap();
        assert_eq!(all(&log), before);
        assert_eq!(log.purged(), Some((4, &b"id-4"[..])));
        assert_eq!(log.vote(), Some(&b"term 3, node 2"[..]));
        assert_eq!(log.get(6), Some(&b"entry 6"[..]));
        let part: Vec<u64> = log.range(6, 8).map(|(i, _)| i).collect();
        assert_eq!(part, vec![6, 7]);
        assert_eq!(log.range(0, 6).map(|(i, _)| i).collect::<Vec<_>>(), vec![5]);
        assert_eq!(
            log.range(9, u64::MAX).map(|(i, _)| i).collect::<Vec<_>>(),
            vec![9]
        );
        assert_eq!(log.range(10, 20).count(), 0);
        assert_eq!(log.range(8, 6).count(), 0);
        assert_eq!(log.get(4), None);
        // Entries a purge covered are not kept again.
        log.append(entries(3, 3)).unwrap();
        assert_eq!(all(&log), before);
        // Purging everything keeps where the log stands.
        log.purge_to(9, b"id-9".to_vec()).unwrap();
        log.append(entries(10, 11)).unwrap();
        drop(log);
        let log = EntryLog::open(dir.path()).unwrap();
        assert_eq!(all(&log), entries(10, 11));
        assert_eq!(log.last_index(), Some(11));
    }

    #[test]
    fn a_torn_last_entry_is_cut_off_and_damage_before_the_end_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = EntryLog::open(dir.path()).unwrap();
        log.append(entries(1, 3)).unwrap();
        let last_at = usize::try_from(log.entries.back().unwrap().at).unwrap();
        drop(log);
        let path = dir.path().join(LOG_FILE);
        let full = std::fs::read(&path).unwrap();
        for cut in last_at + 1..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let log = EntryLog::open(dir.path()).unwrap();
            assert_eq!(all(&log), entries(1, 2), "cut at {cut}");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), last_at as u64);
        }
        let mut bad = full.clone();
        bad[last_at - 3] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let err = EntryLog::open(dir.path()).unwrap_err();
        assert!(matches!(err, EntryLogError::Damaged { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bad, "nothing cut on damage");
    }
}
