//! Per-partition checkpoint files, in Kafka's versioned text format
//! (`version\ncount\nentries...`).
//!
//! - `leader-epoch-checkpoint` is Kafka's own file: entries `epoch start_offset`.
//! - `partition-metadata-checkpoint` holds the three offsets Kafka keeps in its
//!   per-log-dir files (`recovery-point-offset-checkpoint`,
//!   `replication-offset-checkpoint`, `log-start-offset-checkpoint`), here one file
//!   per partition so that a shard never writes a file another shard also writes.
//!
//! Parsing is strict and never panics: anything unexpected is an error naming the line,
//! and the caller repairs (see `log::open`).

/// File name of the leader-epoch cache checkpoint (Kafka's name).
pub const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";
/// File name of the offsets checkpoint.
pub const OFFSETS_FILE: &str = "partition-metadata-checkpoint";
/// Marker left by a clean shutdown (Kafka keeps one per log dir, `.kafka_cleanshutdown`).
pub const CLEAN_SHUTDOWN_FILE: &str = ".sluice-clean-shutdown";

use std::fmt::Write;

const VERSION: &str = "0";
/// No partition has more leader epochs than this in its cache; a bigger count is garbage.
const EPOCH_ENTRIES_MAX: usize = 1 << 20;

/// The three offsets a partition checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offsets {
    /// Every offset below this was fdatasync'ed.
    pub recovery_point: u64,
    pub high_watermark: u64,
    pub log_start_offset: u64,
}

/// Encodes the offsets checkpoint.
pub fn encode_offsets(o: &Offsets) -> String {
    format!(
        "{VERSION}\n3\nrecovery-point {}\nhigh-watermark {}\nlog-start-offset {}\n",
        o.recovery_point, o.high_watermark, o.log_start_offset
    )
}

/// Decodes the offsets checkpoint.
pub fn decode_offsets(text: &[u8]) -> Result<Offsets, String> {
    let lines = body_lines(text, 3)?;
    let mut out = Offsets::default();
    let mut seen = [false; 3];
    for (n, line) in lines {
        let (key, value) = split2(line, n)?;
        let value: u64 = value
            .parse()
            .map_err(|_| format!("line {n}: `{value}` is not an offset"))?;
        let slot = match key {
            "recovery-point" => 0,
            "high-watermark" => 1,
            "log-start-offset" => 2,
            other => return Err(format!("line {n}: unknown key `{other}`")),
        };
        if seen[slot] {
            return Err(format!("line {n}: `{key}` given twice"));
        }
        seen[slot] = true;
        match slot {
            0 => out.recovery_point = value,
            1 => out.high_watermark = value,
            _ => out.log_start_offset = value,
        }
    }
    Ok(out)
}

/// Encodes Kafka's `leader-epoch-checkpoint`.
pub fn encode_epochs(entries: &[(i32, u64)]) -> String {
    let mut s = format!("{VERSION}\n{}\n", entries.len());
    for (epoch, start) in entries {
        let _ = writeln!(s, "{epoch} {start}");
    }
    s
}

/// Decodes Kafka's `leader-epoch-checkpoint`; epochs and start offsets must increase.
pub fn decode_epochs(text: &[u8]) -> Result<Vec<(i32, u64)>, String> {
    let count = declared_count(text)?;
    if count > EPOCH_ENTRIES_MAX {
        return Err(format!("{count} entries is more than any partition has"));
    }
    let mut out: Vec<(i32, u64)> = Vec::with_capacity(count);
    for (n, line) in body_lines(text, count)? {
        let (e, o) = split2(line, n)?;
        let epoch: i32 = e
            .parse()
            .map_err(|_| format!("line {n}: `{e}` is not an epoch"))?;
        let start: u64 = o
            .parse()
            .map_err(|_| format!("line {n}: `{o}` is not an offset"))?;
        if epoch < 0 {
            return Err(format!("line {n}: negative epoch {epoch}"));
        }
        if let Some(&(pe, ps)) = out.last() {
            if epoch <= pe || start < ps {
                return Err(format!(
                    "line {n}: ({epoch}, {start}) does not follow ({pe}, {ps})"
                ));
            }
        }
        out.push((epoch, start));
    }
    Ok(out)
}

fn declared_count(text: &[u8]) -> Result<usize, String> {
    let text = std::str::from_utf8(text).map_err(|_| "not UTF-8 text".to_string())?;
    let mut lines = text.lines();
    match lines.next() {
        Some(VERSION) => {}
        Some(v) => return Err(format!("line 1: unsupported version `{v}`")),
        None => return Err("empty file".into()),
    }
    let count = lines.next().ok_or("line 2: missing entry count")?;
    count
        .trim()
        .parse()
        .map_err(|_| format!("line 2: `{count}` is not a count"))
}

/// The entry lines (numbered from 3) after checking version and count.
fn body_lines(text: &[u8], expect: usize) -> Result<Vec<(usize, &str)>, String> {
    let count = declared_count(text)?;
    if count != expect {
        return Err(format!("line 2: count {count}, expected {expect}"));
    }
    let text = std::str::from_utf8(text).map_err(|_| "not UTF-8 text".to_string())?;
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .skip(2)
        .map(|(i, l)| (i + 1, l))
        .collect();
    if lines.len() != count {
        return Err(format!(
            "{} entry lines, the header says {count}",
            lines.len()
        ));
    }
    Ok(lines)
}

fn split2(line: &str, n: usize) -> Result<(&str, &str), String> {
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => Ok((a, b)),
        _ => Err(format!("line {n}: expected two fields, found `{line}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip() {
        let o = Offsets {
            recovery_point: 10,
            high_watermark: 9,
            log_start_offset: 2,
        };
        assert_eq!(decode_offsets(encode_offsets(&o).as_bytes()).unwrap(), o);
    }

    #[test]
    fn epochs_round_trip_and_kafka_text() {
        let e = vec![(0, 0), (3, 100)];
        let text = encode_epochs(&e);
        assert_eq!(text, "0\n2\n0 0\n3 100\n");
        assert_eq!(decode_epochs(text.as_bytes()).unwrap(), e);
    }

    #[test]
    fn nonsense_is_an_error_never_a_panic() {
        let cases: &[&[u8]] = &[
            b"",
            b"\xff\xfe",
            b"1\n3\n",
            b"0\nx\n",
            b"0\n3\nrecovery-point 1\n",
            b"0\n3\nrecovery-point 1\nhigh-watermark -1\nlog-start-offset 0\n",
            b"0\n3\nrecovery-point 1\nrecovery-point 1\nlog-start-offset 0\n",
            b"0\n99999999999999999999\n",
            b"0\n2\n5 10\n4 20\n",
        ];
        for c in cases {
            assert!(
                decode_offsets(c).is_err() || decode_epochs(c).is_err(),
                "{c:?}"
            );
            let _ = decode_epochs(c);
        }
        assert!(decode_epochs(b"0\n2\n5 10\n4 20\n").is_err());
        assert!(decode_offsets(b"0\n3\nrecovery-point 1\nhigh-watermark 1\nbogus 0\n").is_err());
    }
}
