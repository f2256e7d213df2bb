//! The single-node metadata store: `<data_dir>/metadata/log` holds the committed
//! commands, `<data_dir>/metadata/snapshot` the image they started from.
//!
//! Every file is framed `[length u32 LE][crc32c u32 LE][JSON]`. A log entry is
//! durable (fdatasync) before [`LocalLog::commit`] returns. On open, a torn last
//! entry (cut short, or a bad checksum where the file ends) is cut off, as a crash
//! in the middle of an append leaves it; a bad entry with entries after it is
//! damage, and opening refuses with the offset rather than drop what follows.
//! Every `snapshot_every` entries the image is written as the new snapshot
//! (temporary file, fdatasync, rename, directory fsync) and the log emptied; log
//! entries the snapshot already covers are skipped on open, so a crash between the
//! two steps loses nothing.
//!
//! Blocking file I/O: this runs on a thread of its own ([`crate::MetadataStore`])
//! or before the shards serve, never on a shard.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::command::{apply, Applied, Command, Refusal};
use crate::framing::{cut_torn_tail, frame, next_frame, replace_file, whole_frame};
use crate::image::MetadataImage;

/// The store's directory under the data directory.
pub const METADATA_DIR: &str = "metadata";
const LOG_FILE: &str = "log";
const SNAPSHOT_FILE: &str = "snapshot";
/// Entries between snapshots by default.
pub(crate) const SNAPSHOT_EVERY: u64 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: damaged at byte {offset}: {reason} (not a torn last write: entries follow it); restore the directory or remove it to start an empty cluster", path.display())]
    Damaged {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error(transparent)]
    Refused(#[from] Refusal),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    index: u64,
    command: Command,
}

/// The open store.
#[derive(Debug)]
pub struct LocalLog {
    dir: PathBuf,
    log: File,
    image: MetadataImage,
    /// Entries in the log file.
    entries: u64,
    snapshot_every: u64,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LogError + 'a {
    move |source| LogError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

impl LocalLog {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<LocalLog, LogError> {
        Self::open_with(dir, SNAPSHOT_EVERY)
    }

    /// [`LocalLog::open`] with a snapshot every `snapshot_every` entries.
    pub fn open_with(dir: &Path, snapshot_every: u64) -> Result<LocalLog, LogError> {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let snap_path = dir.join(SNAPSHOT_FILE);
        let mut image = match std::fs::read(&snap_path) {
            Ok(data) => {
                let damaged = |reason: String| LogError::Damaged {
                    path: snap_path.clone(),
                    offset: 0,
                    reason,
                };
                let payload = whole_frame(&data).map_err(&damaged)?;
                serde_json::from_slice::<MetadataImage>(payload)
                    .map_err(|e| damaged(e.to_string()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => MetadataImage::default(),
            Err(e) => return Err(io("read", &snap_path)(e)),
        };
        let log_path = dir.join(LOG_FILE);
        let mut log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&log_path)
            .map_err(io("open", &log_path))?;
        let mut data = Vec::new();
        log.read_to_end(&mut data).map_err(io("read", &log_path))?;
        let mut pos = 0;
        let mut entries = 0;
        loop {
            let damaged = |reason: String| LogError::Damaged {
                path: log_path.clone(),
                offset: pos as u64,
                reason,
            };
            let Some((payload, next)) = next_frame(&data, pos).map_err(damaged)? else {
                break;
            };
            let entry: Entry =
                serde_json::from_slice(payload).map_err(|e| damaged(e.to_string()))?;
            if entry.index > image.version {
                if entry.index != image.version + 1 {
                    return Err(damaged(format!(
                        "entry {} follows {}",
                        entry.index, image.version
                    )));
                }
                // Refusals were refused when proposed too; the version still moves.
                let _ = apply(&mut image, entry.index, &entry.command);
            }
            entries += 1;
            pos = next;
        }
        if pos < data.len() {
            cut_torn_tail(&log, &log_path, pos, data.len())
                .map_err(io("cut the torn tail of", &log_path))?;
        }
        Ok(LocalLog {
            dir: dir.to_path_buf(),
            log,
            image,
            entries,
            snapshot_every: snapshot_every.max(1),
        })
    }

    /// The committed image.
    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// Nothing was ever committed here.
    pub fn is_empty(&self) -> bool {
        self.image.version == 0
    }

    /// Applies `cmd` to a copy of the image; if it fits, appends it, fdatasyncs, and
    /// installs the new image. A refused command writes nothing.
    pub fn commit(&mut self, cmd: Command) -> Result<Applied, LogError> {
        let index = self.image.version + 1;
        let mut next = self.image.clone();
        let applied = apply(&mut next, index, &cmd)?;
        let payload = serde_json::to_vec(&Entry {
            index,
            command: cmd,
        })
        .map_err(|e| LogError::Io {
            what: "encode an entry for",
            path: self.dir.join(LOG_FILE),
            source: std::io::Error::other(e),
        })?;
        let path = self.dir.join(LOG_FILE);
        self.log
            .write_all(&frame(&payload))
            .map_err(io("append to", &path))?;
        self.log.sync_data().map_err(io("fdatasync", &path))?;
        self.image = next;
        self.entries += 1;
        if self.entries >= self.snapshot_every {
            self.snapshot()?;
        }
        Ok(applied)
    }

    /// Writes the image as the snapshot and empties the log.
    pub fn snapshot(&mut self) -> Result<(), LogError> {
        let snap = self.dir.join(SNAPSHOT_FILE);
        let payload = serde_json::to_vec(&self.image).map_err(|e| LogError::Io {
            what: "encode",
            path: snap.clone(),
            source: std::io::Error::other(e),
        })?;
        replace_file(&snap, &frame(&payload)).map_err(io("replace", &snap))?;
        let log = self.dir.join(LOG_FILE);
        self.log.set_len(0).map_err(io("truncate", &log))?;
        self.log.sync_all().map_err(io("fsync", &log))?;
        self.entries = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use uuid::Uuid;

    use super::*;
    use crate::framing::HEADER;

    fn create(name: &str, partitions: i32) -> Command {
        Command::CreateTopic {
            name: name.into(),
            id: Uuid::from_u128(
                u128::from(name.bytes().map(u32::from).sum::<u32>()) << 32
                    | u128::from(partitions.unsigned_abs()),
            ),
            partitions,
            configs: BTreeMap::new(),
            replication_factor: 1,
        }
    }

    #[test]
    fn commits_survive_reopening_across_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LocalLog::open_with(dir.path(), 3).unwrap();
        assert!(log.is_empty());
        for i in 0..10 {
            log.commit(create(&format!("t{i}"), i + 1)).unwrap();
        }
        assert!(matches!(
            log.commit(create("t0", 1)),
            Err(LogError::Refused(Refusal::TopicExists(_)))
        ));
        let image = log.image().clone();
        drop(log);
        let log = LocalLog::open_with(dir.path(), 3).unwrap();
        assert_eq!(log.image(), &image);
        assert_eq!(image.version, 10);
        assert_eq!(image.topics.len(), 10);
    }

    #[test]
    fn a_torn_last_entry_is_cut_off_and_damage_before_the_end_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LocalLog::open(dir.path()).unwrap();
        log.commit(create("a", 1)).unwrap();
        log.commit(create("b", 2)).unwrap();
        drop(log);
        let path = dir.path().join(LOG_FILE);
        let full = std::fs::read(&path).unwrap();
        // Every cut inside the second entry is a torn append: the first survives.
        let (_, first) = next_frame(&full, 0).unwrap().unwrap();
        assert!(first < full.len());
        for cut in (first + 1)..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let log = LocalLog::open(dir.path()).unwrap();
            assert_eq!(log.image().version, 1, "cut at {cut}");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), first as u64);
        }
        // A flipped byte in the first entry, with the second after it: damage.
        let mut bad = full.clone();
        bad[HEADER + 3] ^= 0x20;
        std::fs::write(&path, &bad).unwrap();
        let err = LocalLog::open(dir.path()).unwrap_err();
        assert!(matches!(err, LogError::Damaged { offset: 0, .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bad, "nothing cut on damage");
        // The same flip in the last entry is a torn write.
        let mut torn = full.clone();
        let n = torn.len();
        torn[n - 2] ^= 0x20;
        std::fs::write(&path, &torn).unwrap();
        assert_eq!(LocalLog::open(dir.path()).unwrap().image().version, 1);
    }

    #[test]
    fn entries_a_snapshot_covers_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LocalLog::open_with(dir.path(), 1000).unwrap();
        log.commit(create("a", 1)).unwrap();
        log.commit(create("b", 1)).unwrap();
        let saved = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
        log.snapshot().unwrap();
        log.commit(create("c", 1)).unwrap();
        drop(log);
        // As if the crash came between the snapshot's rename and the log's truncation.
        let mut both = saved;
        both.extend(std::fs::read(dir.path().join(LOG_FILE)).unwrap());
        std::fs::write(dir.path().join(LOG_FILE), both).unwrap();
        let log = LocalLog::open(dir.path()).unwrap();
        assert_eq!(log.image().version, 3);
        assert_eq!(log.image().topics.len(), 3);
    }
}
