//! The two sparse indexes of a segment, in Kafka's file formats.
//!
//! `.index`: 8-byte entries `(relative offset i32, position i32)`, big-endian; an
//! entry maps the last offset of a batch to the byte position where that batch
//! starts. `.timeindex`: 12-byte entries `(timestamp i64, relative offset i32)`,
//! added with an offset-index entry when the segment's max timestamp has grown.
//!
//! Both are kept in memory while a segment is active and written whole when it
//! closes (and at a clean shutdown). A file that fails [`OffsetIndex::decode`] /
//! [`TimeIndex::decode`] is rebuilt from the log, never trusted.

/// Bytes of one offset-index entry.
pub const OFFSET_ENTRY_BYTES: usize = 8;
/// Bytes of one time-index entry.
pub const TIME_ENTRY_BYTES: usize = 12;
const _: () = assert!(OFFSET_ENTRY_BYTES * 512 == 4096);

/// Sparse map from offsets to byte positions of batch starts in one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    /// `(relative offset of a batch's last record, position of the batch)`, both
    /// strictly increasing.
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds an entry; entries that do not move forward are ignored.
    pub fn append(&mut self, relative_offset: u32, position: u32) {
        if self
            .entries
            .last()
            .is_none_or(|&(o, p)| relative_offset > o && position > p)
        {
            self.entries.push((relative_offset, position));
        }
    }

    /// Position of the last indexed batch whose last offset is `<= relative_offset`
    /// (0 when none): scanning from there finds the batch holding the offset.
    pub fn lookup(&self, relative_offset: u32) -> u32 {
        let i = self.entries.partition_point(|&(o, _)| o < relative_offset);
        // entries[i-1] has last offset < target, so the target is in a later batch;
        // the batch *at* entries[i] may hold it, but starting before is always safe.
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    /// The largest indexed batch start `p <= position` whose batch's last offset is
    /// below `relative_upper`: every batch before `p` then ends by `p` and holds only
    /// offsets below `relative_upper`.
    pub fn batch_start_below(&self, position: u32, relative_upper: u32) -> Option<u32> {
        let by_pos = self.entries.partition_point(|&(_, p)| p <= position);
        let by_off = self.entries.partition_point(|&(o, _)| o < relative_upper);
        let i = by_pos.min(by_off);
        (i > 0).then(|| self.entries[i - 1].1)
    }

    /// Drops entries for batches at or after `position`.
    pub fn truncate_to_position(&mut self, position: u32) {
        let i = self.entries.partition_point(|&(_, p)| p < position);
        self.entries.truncate(i);
    }

    pub fn last(&self) -> Option<(u32, u32)> {
        self.entries.last().copied()
    }

    /// Kafka's `.index` file bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_BYTES);
        for &(o, p) in &self.entries {
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
        out
    }

    /// Reads a `.index` file, refusing anything that could mislead a lookup: a size
    /// that is not whole entries, entries not increasing, positions past the log.
    pub fn decode(bytes: &[u8], log_bytes: u64) -> Result<Self, String> {
        if !bytes.len().is_multiple_of(OFFSET_ENTRY_BYTES) {
            return Err(format!(
                "{} bytes is not a whole number of entries",
                bytes.len()
            ));
        }
        let mut index = OffsetIndex::default();
        for (i, e) in bytes.chunks_exact(OFFSET_ENTRY_BYTES).enumerate() {
            let o = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            let p = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
            if u64::from(p) >= log_bytes {
                return Err(format!(
                    "entry {i} points at byte {p}, past the log's {log_bytes} bytes"
                ));
            }
            if let Some(&(lo, lp)) = index.entries.last() {
                if o <= lo || p <= lp {
                    return Err(format!("entry {i} ({o}, {p}) does not follow ({lo}, {lp})"));
                }
            }
            index.entries.push((o, p));
        }
        Ok(index)
    }
}

/// Sparse map from timestamps to offsets in one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeIndex {
    /// `(max timestamp so far, relative offset of the record with it)`, increasing.
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds an entry if the timestamp grew.
    pub fn maybe_append(&mut self, timestamp: i64, relative_offset: u32) {
        if self
            .entries
            .last()
            .is_none_or(|&(t, o)| timestamp > t && relative_offset >= o)
        {
            self.entries.push((timestamp, relative_offset));
        }
    }

    /// Relative offset from which to scan for the first record with timestamp
    /// `>= target`: the last entry whose timestamp is `< target` (0 when none).
    pub fn lookup(&self, target: i64) -> u32 {
        let i = self.entries.partition_point(|&(t, _)| t < target);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    pub fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    /// Drops entries at or after `relative_offset`.
    pub fn truncate_to_offset(&mut self, relative_offset: u32) {
        let i = self.entries.partition_point(|&(_, o)| o < relative_offset);
        self.entries.truncate(i);
    }

    /// Kafka's `.timeindex` file bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY_BYTES);
        for &(t, o) in &self.entries {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&o.to_be_bytes());
        }
        out
    }

    /// Reads a `.timeindex` file; `offset_span` is the segment's last relative offset + 1.
    pub fn decode(bytes: &[u8], offset_span: u64) -> Result<Self, String> {
        if !bytes.len().is_multiple_of(TIME_ENTRY_BYTES) {
            return Err(format!(
                "{} bytes is not a whole number of entries",
                bytes.len()
            ));
        }
        let mut index = TimeIndex::default();
        for (i, e) in bytes.chunks_exact(TIME_ENTRY_BYTES).enumerate() {
            let mut t = [0u8; 8];
            t.copy_from_slice(&e[..8]);
            let t = i64::from_be_bytes(t);
            let o = u32::from_be_bytes([e[8], e[9], e[10], e[11]]);
            if u64::from(o) >= offset_span {
                return Err(format!(
                    "entry {i} names relative offset {o}, past the segment"
                ));
            }
            if let Some(&(lt, lo)) = index.entries.last() {
                if t <= lt || o < lo {
                    return Err(format!("entry {i} ({t}, {o}) does not follow ({lt}, {lo})"));
                }
            }
            index.entries.push((t, o));
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_returns_a_batch_start_at_or_before_the_target() {
        let mut ix = OffsetIndex::default();
        ix.append(9, 100);
        ix.append(19, 5000);
        ix.append(29, 9000);
        assert_eq!(ix.lookup(0), 0);
        assert_eq!(ix.lookup(9), 0);
        assert_eq!(ix.lookup(10), 100);
        assert_eq!(ix.lookup(25), 5000);
        assert_eq!(ix.lookup(1000), 9000);
        let round = OffsetIndex::decode(&ix.encode(), 10_000).unwrap();
        assert_eq!(round, ix);
        assert!(OffsetIndex::decode(&ix.encode(), 9000).is_err());
        assert!(OffsetIndex::decode(&ix.encode()[..7], 10_000).is_err());
        ix.truncate_to_position(5000);
        assert_eq!(ix.len(), 1);
    }

    #[test]
    fn time_lookup_and_garbage_refused() {
        let mut ix = TimeIndex::default();
        ix.maybe_append(100, 0);
        ix.maybe_append(100, 5);
        ix.maybe_append(200, 10);
        assert_eq!(ix.len(), 2);
        assert_eq!(ix.lookup(150), 0);
        assert_eq!(ix.lookup(201), 10);
        let enc = ix.encode();
        assert_eq!(TimeIndex::decode(&enc, 11).unwrap(), ix);
        assert!(TimeIndex::decode(&enc, 10).is_err());
        let mut swapped = enc.clone();
        swapped.rotate_left(TIME_ENTRY_BYTES);
        assert!(TimeIndex::decode(&swapped, 11).is_err());
    }
}
