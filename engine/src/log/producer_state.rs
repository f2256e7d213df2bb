//! Idempotent-producer state of one partition: per producer id, its epoch and the
//! last [`SEQUENCES_KEPT`] batches it wrote, so a resent batch is answered as a
//! duplicate and a gap in sequence numbers is refused (Kafka's `ProducerStateManager`).
//!
//! The table is saved in `<offset>.snapshot` files (the offset is the log end when it
//! was taken) at every segment roll and at clean shutdown; on open, the latest
//! snapshot at or below the log end is loaded and the batches after it are replayed.

use std::collections::{BTreeMap, VecDeque};

use crate::batch::{BatchHeader, NO_PRODUCER_ID};
use crate::error::{Error, Result};

/// Kafka keeps the last five batches per producer (`max.in.flight.requests` <= 5).
pub const SEQUENCES_KEPT: usize = 5;
const SNAPSHOT_MAGIC: &[u8; 4] = b"SLPS";
const SNAPSHOT_VERSION: u32 = 1;
/// More producers than this in one partition's snapshot means the file is garbage.
const SNAPSHOT_PRODUCERS_MAX: usize = 10_000_000;

/// One remembered batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequencedBatch {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: u64,
    pub last_offset: u64,
}

/// State of one producer id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<SequencedBatch>,
}

/// What the sequence check says about a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Not idempotent, or the next batch in sequence: append it.
    Append,
    /// Already in the log at these offsets: answer success without appending.
    Duplicate { base_offset: u64, last_offset: u64 },
}

/// The table for one partition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducerStateTable {
    producers: BTreeMap<i64, ProducerEntry>,
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

impl ProducerStateTable {
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Checks a client batch against the producer's state.
    pub fn check(&self, h: &BatchHeader) -> Result<SequenceCheck> {
        if h.producer_id == NO_PRODUCER_ID || h.base_sequence < 0 {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            // Unknown producer (new, or its state expired): any sequence starts it,
            // as in Kafka since KIP-360.
            return Ok(SequenceCheck::Append);
        };
        if h.producer_epoch < entry.epoch {
            return Err(Error::ProducerFenced {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current: entry.epoch,
            });
        }
        if h.producer_epoch > entry.epoch {
            if h.base_sequence != 0 {
                return Err(Error::OutOfOrderSequence {
                    producer_id: h.producer_id,
                    expected: 0,
                    got: h.base_sequence,
                });
            }
            return Ok(SequenceCheck::Append);
        }
        let last_sequence = h.last_sequence();
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == h.base_sequence && b.last_sequence == last_sequence)
        {
            return Ok(SequenceCheck::Duplicate {
                base_offset: dup.base_offset,
                last_offset: dup.last_offset,
            });
        }
        let expected = entry
            .batches
            .back()
            .map_or(0, |b| next_sequence(b.last_sequence));
        if entry.batches.is_empty() || h.base_sequence == expected {
            Ok(SequenceCheck::Append)
        } else {
            Err(Error::OutOfOrderSequence {
                producer_id: h.producer_id,
                expected,
                got: h.base_sequence,
            })
        }
    }

    /// Records a batch that is now in the log (on append and on replay).
    pub fn record(&mut self, h: &BatchHeader, base_offset: u64, last_offset: u64) {
        if h.producer_id == NO_PRODUCER_ID || h.base_sequence < 0 {
            return;
        }
        let entry = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == SEQUENCES_KEPT {
            entry.batches.pop_front();
        }
        entry.batches.push_back(SequencedBatch {
            first_sequence: h.base_sequence,
            last_sequence: h.last_sequence(),
            base_offset,
            last_offset,
        });
    }

    /// Snapshot file bytes: magic, version, CRC-32C of the rest, then the entries.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(16 + self.producers.len() * 64);
        body.extend_from_slice(
            &u32::try_from(self.producers.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        for (pid, e) in &self.producers {
            body.extend_from_slice(&pid.to_be_bytes());
            body.extend_from_slice(&e.epoch.to_be_bytes());
            body.push(u8::try_from(e.batches.len()).unwrap_or(0));
            for b in &e.batches {
                body.extend_from_slice(&b.first_sequence.to_be_bytes());
                body.extend_from_slice(&b.last_sequence.to_be_bytes());
                body.extend_from_slice(&b.base_offset.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        let mut out = Vec::with_capacity(body.len() + 12);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Reads snapshot bytes; any damage is an error (the caller replays the log).
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader { b: bytes, at: 0 };
        if r.take(4)? != SNAPSHOT_MAGIC {
            return Err("not a producer snapshot".into());
        }
        let version = r.u32()?;
        if version != SNAPSHOT_VERSION {
            return Err(format!("unsupported snapshot version {version}"));
        }
        let crc = r.u32()?;
        if crc32c::crc32c(&bytes[12..]) != crc {
            return Err("CRC-32C mismatch".into());
        }
        let count = r.u32()? as usize;
        if count > SNAPSHOT_PRODUCERS_MAX {
            return Err(format!("{count} producers"));
        }
        let mut table = ProducerStateTable::default();
        for _ in 0..count {
            let pid = r.i64()?;
            let epoch = i16::from_be_bytes([r.u8()?, r.u8()?]);
            let n = usize::from(r.u8()?);
            if n > SEQUENCES_KEPT {
                return Err(format!("producer {pid} has {n} batches"));
            }
            let mut entry = ProducerEntry {
                epoch,
                batches: VecDeque::with_capacity(n),
            };
            for _ in 0..n {
                let first_sequence = r.i32()?;
                let last_sequence = r.i32()?;
                let base_offset = r.u64()?;
                let last_offset = r.u64()?;
                entry.batches.push_back(SequencedBatch {
                    first_sequence,
                    last_sequence,
                    base_offset,
                    last_offset,
                });
            }
            table.producers.insert(pid, entry);
        }
        if r.at != bytes.len() {
            return Err(format!("{} trailing bytes", bytes.len() - r.at));
        }
        Ok(table)
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or("truncated snapshot")?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn i32(&mut self) -> Result<i32, String> {
        let s = self.take(4)?;
        Ok(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn i64(&mut self) -> Result<i64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(i64::from_be_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::tests::build;

    fn header(pid: i64, epoch: i16, seq: i32, n: usize) -> BatchHeader {
        let values: Vec<&[u8]> = vec![b"v"; n];
        BatchHeader::parse(&build(&values, 0, (pid, epoch, seq))).unwrap()
    }

    #[test]
    fn duplicates_gaps_and_fencing() {
        let mut t = ProducerStateTable::default();
        let b0 = header(7, 0, 0, 3);
        assert_eq!(t.check(&b0).unwrap(), SequenceCheck::Append);
        t.record(&b0, 0, 2);
        assert_eq!(
            t.check(&b0).unwrap(),
            SequenceCheck::Duplicate {
                base_offset: 0,
                last_offset: 2
            }
        );
        let gap = header(7, 0, 5, 1);
        assert_eq!(t.check(&gap).unwrap_err().kafka_code(), 45);
        let next = header(7, 0, 3, 2);
        assert_eq!(t.check(&next).unwrap(), SequenceCheck::Append);
        t.record(&next, 3, 4);
        let old_epoch = header(7, -1, 5, 1);
        assert_eq!(t.check(&old_epoch).unwrap_err().kafka_code(), 47);
        let bumped_bad = header(7, 1, 5, 1);
        assert_eq!(t.check(&bumped_bad).unwrap_err().kafka_code(), 45);
        assert_eq!(t.check(&header(7, 1, 0, 1)).unwrap(), SequenceCheck::Append);
        // Only five batches are remembered.
        for (seq, i) in (5..).zip(0..6u64) {
            let h = header(7, 0, seq, 1);
            t.record(&h, 10 + i, 10 + i);
        }
        assert_eq!(t.get(7).unwrap().batches.len(), SEQUENCES_KEPT);
        let round = ProducerStateTable::decode(&t.encode()).unwrap();
        assert_eq!(round, t);
    }

    #[test]
    fn damaged_snapshots_are_refused() {
        let mut t = ProducerStateTable::default();
        t.record(&header(1, 0, 0, 1), 0, 0);
        let bytes = t.encode();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(ProducerStateTable::decode(&b).is_err(), "flip at {i}");
        }
        for n in 0..bytes.len() {
            assert!(ProducerStateTable::decode(&bytes[..n]).is_err());
        }
    }
}
