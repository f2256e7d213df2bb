//! What a topic's configs ask of a produced batch before the engine appends it, on
//! the shard that owns the partition, as Kafka's `LogValidator` does:
//!
//! - `cleanup.policy` with `compact`: every record needs a key. A batch with
//!   keyless records is refused whole with `INVALID_RECORD`, each keyless record
//!   listed (KIP-467 `record_errors`, by its index in the batch).
//! - `message.timestamp.before.max.ms` / `after.max.ms` (CreateTime topics): a
//!   record further from the broker's clock is refused with `INVALID_TIMESTAMP`.
//! - `compression.type` naming a codec (or `uncompressed`): a batch in another
//!   codec is recompressed; its header (offsets, timestamps, producer id, epoch and
//!   sequence, flags) is kept, only the records' bytes, the codec bits, the length
//!   and the CRC change. Kafka compares only the codec, not its level.
//!
//! With none of these (the defaults: `delete`, `producer`, no timestamp bounds) the
//! batch is not opened at all: that is the fast path. Otherwise a batch whose CRC,
//! magic or size the engine would refuse is left as sent (the engine refuses it
//! with its code, so a damaged batch is never given a fresh CRC); the others are
//! decompressed (at most [`DECOMPRESSED_BYTES_MAX`] per partition and request, and
//! at most `max.message.bytes` when the topic stores them uncompressed) and every
//! record is walked: framing and offset deltas checked, as Kafka does for
//! compressed batches. This runs inline on the owning shard: its cost is the
//! codec's, at the topic's level.

use bytes::Bytes;
use sluice_engine::batch::{self, BatchHeader, HEADER_BYTES};
use sluice_engine::{TimestampType, TopicPartition};

use crate::compression::{self, Codec, Target};
use crate::kafka_error::{self as code, KafkaError};
use crate::topic_config::TopicSettings;

/// Most bytes one partition's batches of a request may decompress to, together.
/// Producers' batches are far smaller (librdkafka's `batch.size` is 1 MB, Java's
/// 16 KiB); the bound keeps a small batch that expands to gigabytes from taking
/// the shard's memory.
pub const DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

/// Records errors Kafka quotes in the partition's error message, at most.
const QUOTED_ERRORS_MAX: usize = 3;

/// Record errors listed in an answer, at most (all are counted). Kafka lists every
/// one; a batch of millions of keyless records would make an answer of gigabytes.
/// librdkafka fails the records past the list as part of an invalid batch.
const LISTED_ERRORS_MAX: usize = 10_000;

/// The rules of one topic, small enough to send to the owning shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicRules {
    compact: bool,
    compression: Target,
    /// `(before, after)` for CreateTime topics with a bound, in milliseconds.
    timestamps: Option<(i64, i64)>,
    /// `max.message.bytes`.
    max_message_bytes: usize,
}

impl TopicRules {
    pub fn of(s: &TopicSettings) -> TopicRules {
        let bounded = s.timestamp_before_max_ms != i64::MAX || s.timestamp_after_max_ms != i64::MAX;
        TopicRules {
            compact: s.compact,
            compression: s.compression,
            timestamps: (bounded && s.log.message_timestamp_type == TimestampType::CreateTime)
                .then_some((s.timestamp_before_max_ms, s.timestamp_after_max_ms)),
            max_message_bytes: usize::try_from(s.log.max_message_bytes).unwrap_or(usize::MAX),
        }
    }

    /// Nothing to check or change: batches go to the engine as sent.
    pub fn is_pass_through(&self) -> bool {
        !self.compact && self.compression == Target::Producer && self.timestamps.is_none()
    }
}

/// The partition's records as the topic wants them stored, or the refusal. Framing
/// problems are left to the engine's checks (which refuse them with their own
/// codes), so this only reads batches whose header parses.
pub fn apply(
    rules: &TopicRules,
    partition: &TopicPartition,
    records: Bytes,
    now_ms: i64,
) -> Result<Bytes, KafkaError> {
    if rules.is_pass_through() {
        return Ok(records);
    }
    let mut out: Option<Vec<u8>> = None;
    let mut walk = Walk {
        index: 0,
        errors: Errors::default(),
        budget: DECOMPRESSED_BYTES_MAX,
    };
    let mut pos = 0usize;
    while pos < records.len() {
        let rest = &records[pos..];
        let Some(size) = BatchHeader::parse(rest)
            .and_then(|h| h.total_bytes())
            .filter(|s| *s <= rest.len())
        else {
            // Not a whole batch: the engine refuses it.
            return Ok(records);
        };
        let one = &rest[..size];
        let changed = batch_rules(rules, partition, one, now_ms, &mut walk)?;
        match (changed, &mut out) {
            (Some(new), Some(o)) => o.extend_from_slice(&new),
            (Some(new), None) => {
                let mut o = records[..pos].to_vec();
                o.extend_from_slice(&new);
                out = Some(o);
            }
            (None, Some(o)) => o.extend_from_slice(one),
            (None, None) => {}
        }
        pos += size;
    }
    if walk.errors.total > 0 {
        return Err(refusal(walk.errors));
    }
    Ok(out.map_or(records, Bytes::from))
}

/// The record errors of a partition's batches: the first [`LISTED_ERRORS_MAX`]
/// as (index, message, code), and how many there were.
#[derive(Default)]
struct Errors {
    listed: Vec<(i32, String, i16)>,
    total: usize,
    any_timestamp: bool,
}

impl Errors {
    fn push(&mut self, index: i32, message: String, code: i16) {
        self.total += 1;
        self.any_timestamp |= code == code::INVALID_TIMESTAMP;
        if self.listed.len() < LISTED_ERRORS_MAX {
            self.listed.push((index, message, code));
        }
    }
}

/// What the walk over a partition's batches carries from one batch to the next.
struct Walk {
    /// Index of the next record in the partition's record set.
    index: i32,
    errors: Errors,
    /// Decompressed bytes still allowed.
    budget: usize,
}

/// One batch: its record errors are added to the walk's; `Some` is the batch
/// rebuilt in the topic's codec.
fn batch_rules(
    rules: &TopicRules,
    partition: &TopicPartition,
    one: &[u8],
    now_ms: i64,
    walk: &mut Walk,
) -> Result<Option<Vec<u8>>, KafkaError> {
    let Some(h) = BatchHeader::parse(one) else {
        return Ok(None);
    };
    let first = walk.index;
    walk.index = walk.index.saturating_add(h.record_count.max(0));
    // What the engine refuses stays as sent, for the engine to refuse.
    let Some(codec) = Codec::from_id(h.compression()) else {
        return Ok(None);
    };
    if h.magic != 2
        || h.is_control()
        || one.len() > rules.max_message_bytes
        || !batch::crc_matches(one)
    {
        return Ok(None);
    }
    let recompress_to = match rules.compression {
        Target::Codec(target, level) if target != codec => Some((target, level)),
        _ => None,
    };
    if !rules.compact && rules.timestamps.is_none() && recompress_to.is_none() {
        return Ok(None);
    }
    // Stored uncompressed, the records must fit max.message.bytes anyway.
    let limit = match recompress_to {
        Some((Codec::None, _)) => walk.budget.min(rules.max_message_bytes),
        _ => walk.budget,
    };
    let plain =
        compression::decompress(codec, &one[HEADER_BYTES..], limit).map_err(|e| match e {
            compression::Failure::TooLarge { .. } => {
                KafkaError::new(code::MESSAGE_TOO_LARGE, format!("{partition}: {e}"))
            }
            compression::Failure::Corrupt(_) => KafkaError::new(
                code::CORRUPT_MESSAGE,
                format!(
                    "{partition}: cannot decompress a {} batch: {e}",
                    codec.name()
                ),
            ),
        })?;
    walk.budget = walk.budget.saturating_sub(plain.len());
    check_records(
        rules,
        partition,
        &h,
        &plain,
        first,
        now_ms,
        &mut walk.errors,
    )?;
    let Some((target, level)) = recompress_to else {
        return Ok(None);
    };
    let packed = compression::compress(target, level, &plain).map_err(|e| {
        KafkaError::new(
            code::UNKNOWN_SERVER_ERROR,
            format!("{partition}: recompressing to {}: {e}", target.name()),
        )
    })?;
    Ok(Some(batch::with_records(one, &packed, target.id())))
}

/// Walks a batch's (decompressed) records: framing and offset deltas (0, 1, ...)
/// refuse the batch with `INVALID_RECORD`; keys on compacted topics and timestamp
/// bounds add record errors, one per record at most, the key first (as Kafka).
fn check_records(
    rules: &TopicRules,
    partition: &TopicPartition,
    h: &BatchHeader,
    plain: &[u8],
    first: i32,
    now_ms: i64,
    errors: &mut Errors,
) -> Result<(), KafkaError> {
    let mut expected = 0i64;
    let mut bad_delta = None;
    batch::walk_records(plain, h.record_count, |r| {
        if r.offset_delta != expected && bad_delta.is_none() {
            bad_delta = Some((expected, r.offset_delta));
        }
        let i = first.saturating_add(i32::try_from(expected).unwrap_or(i32::MAX));
        expected += 1;
        if rules.compact && !r.has_key {
            errors.push(
                i,
                format!(
                    "Compacted topic cannot accept message without key in topic partition \
                     {partition}"
                ),
                code::INVALID_RECORD,
            );
        } else if let Some((before, after)) = rules.timestamps {
            let ts = h.base_timestamp.saturating_add(r.timestamp_delta);
            let (lo, hi) = (now_ms.saturating_sub(before), now_ms.saturating_add(after));
            if ts < lo || ts > hi {
                errors.push(
                    i,
                    format!(
                        "Timestamp {ts} of message with offset {i} is out of range. The \
                         timestamp should be within [{lo}, {hi}]"
                    ),
                    code::INVALID_TIMESTAMP,
                );
            }
        }
    })
    .map_err(|e| {
        KafkaError::new(
            code::INVALID_RECORD,
            format!("{partition}: a record of the batch is malformed: {e}"),
        )
    })?;
    match bad_delta {
        Some((want, got)) => Err(KafkaError::new(
            code::INVALID_RECORD,
            format!("{partition}: record {want} of the batch has offset delta {got}"),
        )),
        None => Ok(()),
    }
}

/// The partition's answer for records refused by the rules, as Kafka words it.
fn refusal(errors: Errors) -> KafkaError {
    let total = errors.total;
    let timestamp = errors.any_timestamp;
    let quoted: Vec<String> = errors
        .listed
        .iter()
        .take(QUOTED_ERRORS_MAX)
        .map(|(i, m, _)| format!("RecordError(batchIndex={i}, message='{m}')"))
        .collect();
    let listed = errors.listed.into_iter().map(|(i, m, _)| (i, m)).collect();
    if timestamp {
        return KafkaError::new(
            code::INVALID_TIMESTAMP,
            "One or more records have been rejected due to invalid timestamp",
        )
        .with_record_errors(listed);
    }
    let message = format!(
        "One or more records have been rejected due to {total} record errors in total, and \
         only showing the first three errors at most: [{}]",
        quoted.join(", ")
    );
    KafkaError::new(code::INVALID_RECORD, message).with_record_errors(listed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::batch::{build_batch, RecordSpec};

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0).unwrap()
    }

    fn rules(compact: bool, compression: Target) -> TopicRules {
        TopicRules {
            compact,
            compression,
            timestamps: None,
            max_message_bytes: 1 << 20,
        }
    }

    fn batch_of(keys: &[Option<&[u8]>]) -> Bytes {
        let specs: Vec<RecordSpec<'_>> = keys
            .iter()
            .map(|k| RecordSpec {
                key: *k,
                value: Some(b"value"),
                ..RecordSpec::default()
            })
            .collect();
        Bytes::from(build_batch(&specs, 1_700_000_000_000, (7, 3, 42)))
    }

    #[test]
    fn the_default_rules_do_not_touch_the_batch() {
        let b = batch_of(&[None, None]);
        let out = apply(&rules(false, Target::Producer), &tp(), b.clone(), 0).unwrap();
        assert_eq!(out.as_ptr(), b.as_ptr(), "not even copied");
    }

    #[test]
    fn keyless_records_of_a_compacted_topic_are_listed() {
        let b = batch_of(&[Some(b"a"), None, Some(b""), None]);
        let e = apply(&rules(true, Target::Producer), &tp(), b, 0).unwrap_err();
        assert_eq!(e.code, code::INVALID_RECORD);
        let indexes: Vec<i32> = e.record_errors.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, [1, 3], "an empty key is a key");
        assert!(e
            .message
            .starts_with("One or more records have been rejected due to 2 record errors in total"));
        assert!(e.record_errors[0]
            .1
            .ends_with("without key in topic partition t-0"));
        // With keys everywhere the batch passes unchanged.
        let b = batch_of(&[Some(b"a"), Some(b"b")]);
        assert_eq!(
            apply(&rules(true, Target::Producer), &tp(), b.clone(), 0).unwrap(),
            b
        );
    }

    #[test]
    fn recompression_keeps_the_header_and_every_record() {
        let plain = batch_of(&[Some(b"k1"), None, Some(b"k3")]);
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let packed = apply(
                &rules(false, Target::Codec(codec, 3)),
                &tp(),
                plain.clone(),
                0,
            )
            .unwrap();
            let (a, b) = (
                BatchHeader::parse(&plain).unwrap(),
                BatchHeader::parse(&packed).unwrap(),
            );
            assert_eq!(b.compression(), codec.id());
            assert!(batch::crc_matches(&packed), "{codec:?}");
            assert_eq!(
                (
                    a.base_timestamp,
                    a.max_timestamp,
                    a.producer_id,
                    a.producer_epoch
                ),
                (
                    b.base_timestamp,
                    b.max_timestamp,
                    b.producer_id,
                    b.producer_epoch
                )
            );
            assert_eq!(
                (a.base_sequence, a.record_count, a.last_offset_delta),
                (b.base_sequence, b.record_count, b.last_offset_delta)
            );
            // Back to uncompressed: byte for byte the original.
            let back = apply(
                &rules(false, Target::Codec(Codec::None, 0)),
                &tp(),
                packed,
                0,
            )
            .unwrap();
            assert_eq!(back, plain, "{codec:?}");
        }
    }

    #[test]
    fn a_damaged_batch_is_left_for_the_engine_to_refuse() {
        let gzip = rules(false, Target::Codec(Codec::Gzip, 6));
        let good = apply(&gzip, &tp(), batch_of(&[Some(b"a"), Some(b"b")]), 0).unwrap();
        let mut bad = good.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let bad = Bytes::from(bad);
        let lz4 = rules(false, Target::Codec(Codec::Lz4, 9));
        // Not given a fresh CRC: returned as sent, the engine's CRC check refuses it.
        assert_eq!(apply(&lz4, &tp(), bad.clone(), 0).unwrap(), bad);
        assert!(!batch::crc_matches(&bad));
        assert!(batch::crc_matches(&apply(&lz4, &tp(), good, 0).unwrap()));
    }

    #[test]
    fn records_with_wrong_offset_deltas_are_refused_when_opened() {
        // Record 0 says offset delta 1 (the byte after its length, attributes and
        // timestamp delta), with a CRC that matches.
        let b = batch_of(&[Some(b"a"), Some(b"b")]);
        let mut body = b[HEADER_BYTES..].to_vec();
        assert_eq!(&body[1..4], &[0, 0, 0]);
        body[3] = 2;
        let b = Bytes::from(batch::with_records(&b, &body, 0));
        assert!(batch::crc_matches(&b));
        for r in [
            rules(true, Target::Producer),
            rules(false, Target::Codec(Codec::Gzip, 6)),
        ] {
            let e = apply(&r, &tp(), b.clone(), 0).unwrap_err();
            assert_eq!(e.code, code::INVALID_RECORD, "{e}");
            assert!(e.message.contains("offset delta"), "{e}");
        }
    }

    #[test]
    fn decompressing_past_max_message_bytes_is_message_too_large() {
        // Highly compressible: 2 MiB of records in a small zstd batch.
        let big = vec![b'z'; 2 << 20];
        let specs = [RecordSpec {
            key: Some(b"k"),
            value: Some(&big),
            ..RecordSpec::default()
        }];
        let plain = build_batch(&specs, 0, (-1, -1, -1));
        let roomy = TopicRules {
            max_message_bytes: 4 << 20,
            ..rules(false, Target::Codec(Codec::Zstd, 3))
        };
        let zstd = apply(&roomy, &tp(), Bytes::from(plain), 0).unwrap();
        assert!(zstd.len() < 1 << 20);
        let e = apply(&rules(false, Target::Codec(Codec::None, 0)), &tp(), zstd, 0).unwrap_err();
        assert_eq!(e.code, code::MESSAGE_TOO_LARGE, "{e}");
    }

    #[test]
    fn timestamps_outside_the_bounds_are_refused() {
        let b = batch_of(&[Some(b"a")]);
        let mut r = rules(false, Target::Producer);
        r.timestamps = Some((1000, 1000));
        let now = 1_700_000_000_000;
        assert!(apply(&r, &tp(), b.clone(), now + 500).is_ok());
        let e = apply(&r, &tp(), b, now + 5000).unwrap_err();
        assert_eq!(e.code, code::INVALID_TIMESTAMP);
        assert_eq!(e.record_errors.len(), 1);
    }
}
