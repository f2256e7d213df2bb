//! Kafka v2 record batches: reading the header, checking a batch before it is
//! appended and after it is read back, and rewriting the fields the broker owns
//! (base offset, partition leader epoch, LogAppendTime) in place.
//!
//! Layout of the 61-byte header (all big-endian):
//! ```text
//!  0 baseOffset i64        8 batchLength i32     12 partitionLeaderEpoch i32
//! 16 magic i8             17 crc u32 (CRC-32C of bytes 21..end)
//! 21 attributes i16       23 lastOffsetDelta i32 27 baseTimestamp i64
//! 35 maxTimestamp i64     43 producerId i64      51 producerEpoch i16
//! 53 baseSequence i32     57 recordCount i32     61 records...
//! ```
//! The CRC does not cover the first 21 bytes, so the broker can assign offsets and
//! leader epochs without recomputing it.

use crate::error::{Error, Result};

/// Bytes of the v2 batch header.
pub const HEADER_BYTES: usize = 61;
/// Bytes before `batchLength` counts: baseOffset and batchLength itself.
pub const LOG_OVERHEAD: usize = 12;
const CRC_START: usize = 21;
const OFF_LENGTH: usize = 8;
const OFF_EPOCH: usize = 12;
const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_DELTA: usize = 23;
const OFF_BASE_TS: usize = 27;
const OFF_MAX_TS: usize = 35;
const OFF_PRODUCER_ID: usize = 43;
const OFF_PRODUCER_EPOCH: usize = 51;
const OFF_BASE_SEQUENCE: usize = 53;
const OFF_COUNT: usize = 57;
const _: () = assert!(OFF_COUNT + 4 == HEADER_BYTES);

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// `producerId` of a batch from a non-idempotent producer.
pub const NO_PRODUCER_ID: i64 = -1;

/// The decoded header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// `batchLength`: bytes after the length field.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Decodes the header at the start of `buf`; `None` if `buf` is shorter than one.
    pub fn parse(buf: &[u8]) -> Option<BatchHeader> {
        if buf.len() < HEADER_BYTES {
            return None;
        }
        Some(BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, OFF_LENGTH),
            partition_leader_epoch: be_i32(buf, OFF_EPOCH),
            magic: i8::from_be_bytes([buf[OFF_MAGIC]]),
            crc: u32::from_be_bytes([
                buf[OFF_CRC],
                buf[OFF_CRC + 1],
                buf[OFF_CRC + 2],
                buf[OFF_CRC + 3],
            ]),
            attributes: be_i16(buf, OFF_ATTRIBUTES),
            last_offset_delta: be_i32(buf, OFF_LAST_DELTA),
            base_timestamp: be_i64(buf, OFF_BASE_TS),
            max_timestamp: be_i64(buf, OFF_MAX_TS),
            producer_id: be_i64(buf, OFF_PRODUCER_ID),
            producer_epoch: be_i16(buf, OFF_PRODUCER_EPOCH),
            base_sequence: be_i32(buf, OFF_BASE_SEQUENCE),
            record_count: be_i32(buf, OFF_COUNT),
        })
    }

    /// Bytes of the whole batch on the wire and on disk, if the length is sane.
    pub fn total_bytes(&self) -> Option<usize> {
        let len = usize::try_from(self.batch_length).ok()?;
        (len >= HEADER_BYTES - LOG_OVERHEAD).then_some(len + LOG_OVERHEAD)
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }

    /// Sequence number of the last record, wrapping as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return self.base_sequence;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        // Kafka wraps sequences at i32::MAX back to 0.
        i32::try_from(last % (i64::from(i32::MAX) + 1)).unwrap_or(0)
    }
}

/// CRC-32C over the part of a batch the CRC covers.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START..])
}

/// `batch` with its records replaced by `records` (already in `compression`, a
/// codec id 0-4): the same header fields (offsets, timestamps, producer fields,
/// flags), with the new compression bits, batch length and CRC. For a broker that
/// recompresses a batch to its topic's `compression.type`.
pub fn with_records(batch: &[u8], records: &[u8], compression: i16) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + records.len());
    out.extend_from_slice(&batch[..HEADER_BYTES]);
    out.extend_from_slice(records);
    let length = i32::try_from(out.len() - LOG_OVERHEAD).unwrap_or(i32::MAX);
    out[OFF_LENGTH..OFF_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    let attributes = (be_i16(&out, OFF_ATTRIBUTES) & !ATTR_COMPRESSION_MASK)
        | (compression & ATTR_COMPRESSION_MASK);
    out[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = compute_crc(&out);
    out[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Checks that the batch's stored CRC matches its contents.
pub fn crc_matches(batch: &[u8]) -> bool {
    BatchHeader::parse(batch).is_some_and(|h| h.crc == compute_crc(batch))
}

/// Facts about one checked batch of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedBatch {
    /// Byte position of the batch in the appended buffer.
    pub position: usize,
    pub header: BatchHeader,
    pub size: usize,
    /// Offset delta of the first record holding the batch's max timestamp (the last
    /// record for compressed batches, whose records are not opened).
    pub max_timestamp_delta: i32,
}

/// Checks every batch of a produce request's records before anything is written:
/// framing, magic 2, CRC-32C, record count (and, for uncompressed batches, every
/// record's framing and offset delta), and `max.message.bytes`. Control batches are
/// refused: only the broker writes them.
pub fn check_append(buf: &[u8], max_message_bytes: usize) -> Result<Vec<CheckedBatch>> {
    check_batches(buf, max_message_bytes, false)
}

/// Checks the batches a follower copies from its leader before anything is
/// written: the same framing, magic, CRC-32C and record checks as
/// [`check_append`] (control batches allowed: a leader writes them), and that they
/// continue this log: the first starts at `next_offset`, each starts right after
/// the one before, and leader epochs never go back (from `last_epoch`, the log's
/// latest). Nothing in them is changed: a follower stores the leader's bytes.
pub fn check_replicated(
    buf: &[u8],
    next_offset: u64,
    last_epoch: i32,
) -> Result<Vec<CheckedBatch>> {
    let batches = check_batches(buf, usize::MAX, true)?;
    let mut expected = next_offset;
    let mut epoch = last_epoch;
    for c in &batches {
        let h = &c.header;
        if u64::try_from(h.base_offset).ok() != Some(expected) {
            return Err(Error::InvalidBatch {
                position: c.position,
                reason: format!(
                    "replicated batch at offset {} does not continue the log at {expected}",
                    h.base_offset
                ),
            });
        }
        if h.partition_leader_epoch < epoch {
            return Err(Error::InvalidBatch {
                position: c.position,
                reason: format!(
                    "replicated batch at offset {} has leader epoch {}, older than {epoch}",
                    h.base_offset, h.partition_leader_epoch
                ),
            });
        }
        epoch = h.partition_leader_epoch;
        expected += u64::from(h.last_offset_delta.unsigned_abs()) + 1;
    }
    Ok(batches)
}

fn check_batches(
    buf: &[u8],
    max_message_bytes: usize,
    control_allowed: bool,
) -> Result<Vec<CheckedBatch>> {
    let mut batches = Vec::new();
    let mut pos = 0usize;
    if buf.is_empty() {
        return Err(Error::InvalidBatch {
            position: 0,
            reason: "no record batch".into(),
        });
    }
    while pos < buf.len() {
        let c = check_batch(&buf[pos..], pos, max_message_bytes, control_allowed)?;
        pos += c.size;
        batches.push(c);
    }
    Ok(batches)
}

/// Checks the batch at the start of `rest` (at `pos` in the whole buffer).
fn check_batch(
    rest: &[u8],
    pos: usize,
    max_message_bytes: usize,
    control_allowed: bool,
) -> Result<CheckedBatch> {
    let corrupt = |reason: String| Error::CorruptBatch {
        position: pos,
        reason,
    };
    let invalid = |reason: String| Error::InvalidBatch {
        position: pos,
        reason,
    };
    let Some(header) = BatchHeader::parse(rest) else {
        return Err(corrupt(format!(
            "{} trailing bytes are not a whole batch header",
            rest.len()
        )));
    };
    let Some(size) = header.total_bytes() else {
        return Err(corrupt(format!(
            "batch length {} is too small",
            header.batch_length
        )));
    };
    if size > rest.len() {
        return Err(corrupt(format!(
            "batch length {} runs past the end of the records",
            header.batch_length
        )));
    }
    if size > max_message_bytes {
        return Err(Error::BatchTooLarge {
            size,
            max: max_message_bytes,
        });
    }
    if header.magic != 2 {
        return Err(invalid(format!(
            "magic {} is not supported, only magic 2",
            header.magic
        )));
    }
    let batch = &rest[..size];
    let crc = compute_crc(batch);
    if crc != header.crc {
        return Err(corrupt(format!(
            "CRC-32C {crc:#010x} does not match the stored {:#010x}",
            header.crc
        )));
    }
    if header.is_control() && !control_allowed {
        return Err(invalid(
            "control batches may only be written by the broker".into(),
        ));
    }
    if header.record_count <= 0 {
        return Err(invalid(format!(
            "record count {} must be positive",
            header.record_count
        )));
    }
    if header.last_offset_delta != header.record_count - 1 {
        return Err(invalid(format!(
            "last offset delta {} does not match record count {}",
            header.last_offset_delta, header.record_count
        )));
    }
    if header.compression() > 4 {
        return Err(invalid(format!(
            "unknown compression codec {}",
            header.compression()
        )));
    }
    let mut max_timestamp_delta = header.last_offset_delta;
    if header.compression() == 0 {
        max_timestamp_delta =
            check_records(&batch[HEADER_BYTES..], header.record_count).map_err(invalid)?;
    }
    Ok(CheckedBatch {
        position: pos,
        header,
        size,
        max_timestamp_delta,
    })
}

/// Reads a zig-zag varint (Kafka's `varint`/`varlong`).
pub(crate) fn read_varlong(buf: &[u8], at: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    for shift in (0..70).step_by(7) {
        let byte = *buf.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            #[allow(clippy::cast_possible_wrap)]
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

/// What the checks of a batch need of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    pub offset_delta: i64,
    pub timestamp_delta: i64,
    /// The key is not null (an empty key is a key).
    pub has_key: bool,
}

/// Walks the records of an uncompressed batch body (a batch's bytes after the
/// header, decompressed if the batch was compressed), checking each record's
/// framing, and calls `each` with each record in order.
pub fn walk_records(
    body: &[u8],
    count: i32,
    mut each: impl FnMut(RecordMeta),
) -> std::result::Result<(), String> {
    let mut at = 0usize;
    for i in 0..count {
        let len =
            read_varlong(body, &mut at).ok_or_else(|| format!("record {i}: bad length varint"))?;
        let len = usize::try_from(len).map_err(|_| format!("record {i}: negative length {len}"))?;
        let end = at
            .checked_add(len)
            .filter(|e| *e <= body.len())
            .ok_or_else(|| format!("record {i}: length {len} runs past the batch"))?;
        let rec = &body[at..end];
        let mut p = 1usize; // attributes byte
        if rec.is_empty() {
            return Err(format!("record {i}: empty"));
        }
        let timestamp_delta =
            read_varlong(rec, &mut p).ok_or_else(|| format!("record {i}: bad timestamp delta"))?;
        let offset_delta =
            read_varlong(rec, &mut p).ok_or_else(|| format!("record {i}: bad offset delta"))?;
        let has_key = skip_bytes(rec, &mut p).ok_or_else(|| format!("record {i}: bad key"))?;
        skip_bytes(rec, &mut p).ok_or_else(|| format!("record {i}: bad value"))?;
        let headers =
            read_varlong(rec, &mut p).ok_or_else(|| format!("record {i}: bad header count"))?;
        if headers < 0 {
            return Err(format!("record {i}: negative header count"));
        }
        for _ in 0..headers {
            skip_bytes(rec, &mut p).ok_or_else(|| format!("record {i}: bad header key"))?;
            skip_bytes(rec, &mut p).ok_or_else(|| format!("record {i}: bad header value"))?;
        }
        if p != rec.len() {
            return Err(format!(
                "record {i}: {} bytes left after its fields",
                rec.len().saturating_sub(p)
            ));
        }
        each(RecordMeta {
            offset_delta,
            timestamp_delta,
            has_key,
        });
        at = end;
    }
    if at != body.len() {
        return Err(format!(
            "{} bytes after the last of {count} records",
            body.len() - at
        ));
    }
    Ok(())
}

/// Skips a length-prefixed field; `Some(false)` for a null one.
fn skip_bytes(rec: &[u8], p: &mut usize) -> Option<bool> {
    let len = read_varlong(rec, p)?;
    if len < 0 {
        return Some(false);
    }
    let len = usize::try_from(len).ok()?;
    *p = p.checked_add(len).filter(|e| *e <= rec.len())?;
    Some(true)
}

/// Checks the records of an uncompressed batch; returns the offset delta of the first
/// record with the largest timestamp.
fn check_records(body: &[u8], count: i32) -> std::result::Result<i32, String> {
    let mut expected = 0i64;
    let mut bad = None;
    let mut max = (i64::MIN, 0i64);
    walk_records(body, count, |r| {
        if r.offset_delta != expected && bad.is_none() {
            bad = Some(format!(
                "record {expected} has offset delta {}",
                r.offset_delta
            ));
        }
        if r.timestamp_delta > max.0 {
            max = (r.timestamp_delta, r.offset_delta);
        }
        expected += 1;
    })?;
    match bad {
        Some(reason) => Err(reason),
        None => Ok(i32::try_from(max.1).unwrap_or(0)),
    }
}

/// Writes the broker-owned header fields of a batch in place. Neither is covered by
/// the CRC.
pub fn assign(batch: &mut [u8], base_offset: u64, partition_leader_epoch: i32) {
    batch[..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[OFF_EPOCH..OFF_EPOCH + 4].copy_from_slice(&partition_leader_epoch.to_be_bytes());
}

/// Marks the batch `LogAppendTime` with `now_ms` as its max timestamp and
/// recomputes the CRC, as Kafka does for topics with `message.timestamp.type=LogAppendTime`.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attrs = be_i16(batch, OFF_ATTRIBUTES) | ATTR_LOG_APPEND_TIME;
    batch[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
    batch[OFF_MAX_TS..OFF_MAX_TS + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Why a stored batch could not be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredBatchError {
    /// Fewer bytes than a header or than the batch length says: a torn tail.
    Truncated,
    /// The batch is present but wrong.
    Corrupt(String),
}

/// Checks a batch read back from disk: framing, magic, CRC, offsets not going back.
/// Returns the header and size.
pub fn check_stored(
    buf: &[u8],
    next_offset: u64,
) -> std::result::Result<(BatchHeader, usize), StoredBatchError> {
    let header = BatchHeader::parse(buf).ok_or(StoredBatchError::Truncated)?;
    if header.batch_length == 0 && header.base_offset == 0 && header.magic == 0 {
        // Zeroes past the end of the data: the unwritten rest of a block.
        return Err(StoredBatchError::Truncated);
    }
    let size = header.total_bytes().ok_or_else(|| {
        StoredBatchError::Corrupt(format!("batch length {} is too small", header.batch_length))
    })?;
    if size > buf.len() {
        return Err(StoredBatchError::Truncated);
    }
    if header.magic != 2 {
        return Err(StoredBatchError::Corrupt(format!("magic {}", header.magic)));
    }
    let crc = compute_crc(&buf[..size]);
    if crc != header.crc {
        return Err(StoredBatchError::Corrupt(format!(
            "CRC-32C {crc:#010x} != stored {:#010x}",
            header.crc
        )));
    }
    let base = u64::try_from(header.base_offset).map_err(|_| {
        StoredBatchError::Corrupt(format!("negative base offset {}", header.base_offset))
    })?;
    if base < next_offset {
        return Err(StoredBatchError::Corrupt(format!(
            "base offset {base} goes back below {next_offset}"
        )));
    }
    if header.last_offset_delta < 0 {
        return Err(StoredBatchError::Corrupt(format!(
            "last offset delta {}",
            header.last_offset_delta
        )));
    }
    Ok((header, size))
}

/// Finds the offset of the first record with timestamp >= `target` in an
/// uncompressed batch. For compressed batches (whose records the engine does not
/// decompress) the batch's base offset stands in.
pub(crate) fn first_offset_at_or_after(batch: &[u8], target: i64) -> Option<(i64, i64)> {
    let h = BatchHeader::parse(batch)?;
    if h.max_timestamp < target {
        return None;
    }
    if h.is_log_append_time() || h.compression() != 0 {
        return Some((h.base_offset, h.max_timestamp));
    }
    let size = h.total_bytes()?.min(batch.len());
    let mut found = None;
    walk_records(&batch[HEADER_BYTES..size], h.record_count, |r| {
        let ts = h.base_timestamp.saturating_add(r.timestamp_delta);
        if found.is_none() && ts >= target {
            found = Some((h.base_offset.saturating_add(r.offset_delta), ts));
        }
    })
    .ok()?;
    found.or(Some((h.base_offset, h.max_timestamp)))
}

/// Splits bytes holding whole batches into one `Bytes` per batch (a trailing
/// partial batch is left out).
pub fn split_batches_of(data: &bytes::Bytes) -> Vec<bytes::Bytes> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(h) = BatchHeader::parse(&data[pos..]) {
        let Some(size) = h.total_bytes() else { break };
        if pos + size > data.len() {
            break;
        }
        out.push(data.slice(pos..pos + size));
        pos += size;
    }
    out
}

/// One record of a stored batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: i64,
    pub timestamp: i64,
    /// `None`: a null key or value (a null value is a tombstone).
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// The records of an uncompressed batch (`None` for a compressed or malformed
/// batch); headers are skipped. For internal topics the broker writes itself, tests
/// and tools.
pub fn stored_records(batch: &[u8]) -> Option<Vec<StoredRecord>> {
    let h = BatchHeader::parse(batch)?;
    if h.compression() != 0 {
        return None;
    }
    let body = batch.get(HEADER_BYTES..h.total_bytes()?)?;
    let mut at = 0usize;
    let mut out = Vec::new();
    let field = |rec: &[u8], p: &mut usize| -> Option<Option<Vec<u8>>> {
        let len = read_varlong(rec, p)?;
        if len < 0 {
            return Some(None);
        }
        let end = p.checked_add(usize::try_from(len).ok()?)?;
        let v = rec.get(*p..end)?.to_vec();
        *p = end;
        Some(Some(v))
    };
    for _ in 0..h.record_count {
        let len = usize::try_from(read_varlong(body, &mut at)?).ok()?;
        let rec = body.get(at..at.checked_add(len)?)?;
        at += len;
        let mut p = 1usize;
        let ts_delta = read_varlong(rec, &mut p)?;
        let offset_delta = read_varlong(rec, &mut p)?;
        let key = field(rec, &mut p)?;
        let value = field(rec, &mut p)?;
        out.push(StoredRecord {
            offset: h.base_offset.checked_add(offset_delta)?,
            timestamp: h.base_timestamp.checked_add(ts_delta)?,
            key,
            value,
        });
    }
    Some(out)
}

/// The values of an uncompressed batch's records (`None` for a compressed or
/// malformed batch; a null value reads as empty). For tests and tools.
pub fn record_values(batch: &[u8]) -> Option<Vec<Vec<u8>>> {
    Some(
        stored_records(batch)?
            .into_iter()
            .map(|r| r.value.unwrap_or_default())
            .collect(),
    )
}

/// One record for [`build_batch`].
#[derive(Debug, Clone, Default)]
pub struct RecordSpec<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, &'a [u8])],
    /// Added to the batch's base timestamp.
    pub timestamp_delta: i64,
}

/// Idempotent-producer fields of a batch: `(producer id, epoch, base sequence)`;
/// `(-1, -1, -1)` for a plain producer.
pub type ProducerFields = (i64, i16, i32);

/// Plain producer fields.
pub const NO_PRODUCER: ProducerFields = (-1, -1, -1);

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    #[allow(clippy::cast_sign_loss)]
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        #[allow(clippy::cast_possible_truncation)]
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            put_varlong(out, i64::try_from(b.len()).unwrap_or(i64::MAX));
            out.extend_from_slice(b);
        }
        None => put_varlong(out, -1),
    }
}

/// Encodes an uncompressed v2 record batch as a producer would send it (base offset
/// 0, CRC set). For tests, benchmarks and tools; the broker never re-encodes.
pub fn build_batch(
    records: &[RecordSpec<'_>],
    base_timestamp: i64,
    producer: ProducerFields,
) -> Vec<u8> {
    let mut body = Vec::new();
    let mut max_delta = 0;
    for (i, r) in records.iter().enumerate() {
        let mut rec = vec![0u8];
        put_varlong(&mut rec, r.timestamp_delta);
        put_varlong(&mut rec, i64::try_from(i).unwrap_or(0));
        put_bytes(&mut rec, r.key);
        put_bytes(&mut rec, r.value);
        put_varlong(&mut rec, i64::try_from(r.headers.len()).unwrap_or(0));
        for (k, v) in r.headers {
            put_bytes(&mut rec, Some(k.as_bytes()));
            put_bytes(&mut rec, Some(v));
        }
        put_varlong(&mut body, i64::try_from(rec.len()).unwrap_or(0));
        body.extend_from_slice(&rec);
        max_delta = max_delta.max(r.timestamp_delta);
    }
    let n = i32::try_from(records.len()).unwrap_or(i32::MAX);
    let mut b = vec![0u8; HEADER_BYTES];
    b.extend_from_slice(&body);
    let len = i32::try_from(b.len() - LOG_OVERHEAD).unwrap_or(i32::MAX);
    b[OFF_LENGTH..OFF_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
    b[OFF_EPOCH..OFF_EPOCH + 4].copy_from_slice(&(-1i32).to_be_bytes());
    b[OFF_MAGIC] = 2;
    b[OFF_LAST_DELTA..OFF_LAST_DELTA + 4].copy_from_slice(&(n - 1).to_be_bytes());
    b[OFF_BASE_TS..OFF_BASE_TS + 8].copy_from_slice(&base_timestamp.to_be_bytes());
    b[OFF_MAX_TS..OFF_MAX_TS + 8].copy_from_slice(&(base_timestamp + max_delta).to_be_bytes());
    b[OFF_PRODUCER_ID..OFF_PRODUCER_ID + 8].copy_from_slice(&producer.0.to_be_bytes());
    b[OFF_PRODUCER_EPOCH..OFF_PRODUCER_EPOCH + 2].copy_from_slice(&producer.1.to_be_bytes());
    b[OFF_BASE_SEQUENCE..OFF_BASE_SEQUENCE + 4].copy_from_slice(&producer.2.to_be_bytes());
    b[OFF_COUNT..OFF_COUNT + 4].copy_from_slice(&n.to_be_bytes());
    let crc = compute_crc(&b);
    b[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A batch of values with timestamps `base_timestamp + i`.
pub fn build_values_batch(
    values: &[&[u8]],
    base_timestamp: i64,
    producer: ProducerFields,
) -> Vec<u8> {
    let specs: Vec<RecordSpec<'_>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| RecordSpec {
            value: Some(v),
            timestamp_delta: i64::try_from(i).unwrap_or(0),
            ..RecordSpec::default()
        })
        .collect();
    build_batch(&specs, base_timestamp, producer)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn build(values: &[&[u8]], ts0: i64, producer: ProducerFields) -> Vec<u8> {
        build_values_batch(values, ts0, producer)
    }

    #[test]
    fn a_built_batch_passes_and_reports_its_fields() {
        let b = build(&[b"a", b"bb", b"ccc"], 1000, (-1, -1, -1));
        let checked = check_append(&b, 1 << 20).unwrap();
        assert_eq!(checked.len(), 1);
        assert_eq!(checked[0].header.record_count, 3);
        assert_eq!(checked[0].header.max_timestamp, 1002);
        assert_eq!(checked[0].size, b.len());
    }

    #[test]
    fn every_single_byte_flip_after_the_offset_fields_is_refused() {
        let b = build(&[b"hello", b"world"], 5, (-1, -1, -1));
        for i in 8..b.len() {
            if (12..16).contains(&i) {
                continue; // partition leader epoch: broker-owned, not covered by the CRC
            }
            let mut c = b.clone();
            c[i] ^= 0x5a;
            assert!(
                check_append(&c, 1 << 20).is_err(),
                "flip at byte {i} accepted"
            );
        }
    }

    #[test]
    fn errors_map_to_kafka_codes() {
        let b = build(&[b"x"], 0, (-1, -1, -1));
        let mut bad_crc = b.clone();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 1;
        assert_eq!(check_append(&bad_crc, 1 << 20).unwrap_err().kafka_code(), 2);
        let mut magic1 = b.clone();
        magic1[16] = 1;
        assert_eq!(check_append(&magic1, 1 << 20).unwrap_err().kafka_code(), 87);
        assert_eq!(check_append(&b, 10).unwrap_err().kafka_code(), 10);
        assert_eq!(check_append(&b[..30], 1 << 20).unwrap_err().kafka_code(), 2);
    }

    #[test]
    fn log_append_time_rewrites_the_crc() {
        let mut b = build(&[b"x", b"y"], 7, (-1, -1, -1));
        set_log_append_time(&mut b, 123_456);
        let h = BatchHeader::parse(&b).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 123_456);
        assert!(crc_matches(&b));
    }

    #[test]
    fn timestamp_search_finds_the_first_record_at_or_after() {
        let mut b = build(&[b"a", b"b", b"c", b"d"], 100, (-1, -1, -1));
        assign(&mut b, 40, 0);
        assert_eq!(first_offset_at_or_after(&b, 102), Some((42, 102)));
        assert_eq!(first_offset_at_or_after(&b, 0), Some((40, 100)));
        assert_eq!(first_offset_at_or_after(&b, 104), None);
    }

    #[test]
    fn sequences_wrap_like_kafka() {
        let mut b = build(&[b"a", b"b"], 0, (7, 0, i32::MAX));
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.last_sequence(), 0);
        assign(&mut b, 9, 3);
        assert_eq!(BatchHeader::parse(&b).unwrap().partition_leader_epoch, 3);
    }
}
