//! The records of `__consumer_offsets` in Kafka's own format, so that Kafka's tools
//! read what Sluice writes and the other way round. Keys start with a version:
//! 0 and 1 are a committed offset (group, topic, partition), 2 is a group's
//! metadata (group). Values start with their own version. A record with a null
//! value (a tombstone) removes its key.
//!
//! Written: offset values v3 (with the leader epoch), or v1 when the commit carries
//! an expiry time (OffsetCommit v1); group values v3 (with static member ids). Read:
//! offset values v0 to v3, group values v0 to v3. Flexible versions (v4 and up,
//! which Kafka writes only for new features) are refused by name.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Why a stored record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("__consumer_offsets record: {0}")]
pub struct RecordError(String);

fn bad(what: impl Into<String>) -> RecordError {
    RecordError(what.into())
}

/// What a key names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

impl RecordKey {
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. } | RecordKey::Group { group } => group,
        }
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    /// -1: unknown.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
    /// Set only by OffsetCommit v1 clients; -1 otherwise.
    pub expire_timestamp: i64,
}

/// One member of a group as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's metadata as stored after each completed rebalance.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// -1: unknown (v0 and v1 records).
    pub current_state_timestamp: i64,
    pub members: Vec<MemberValue>,
}

// ---------------------------------------------------------------------------
// Writing

/// Longest string the record format holds (an `i16` length).
pub const STRING_MAX: usize = i16::MAX as usize;

fn put_str(out: &mut BytesMut, s: &str) {
    // Group ids and offset metadata are refused above STRING_MAX before they get
    // here. Anything else longer (a client-made id) is cut at a character
    // boundary, so the record still reads back.
    let mut end = s.len().min(STRING_MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.put_i16(i16::try_from(end).unwrap_or(i16::MAX));
    out.put_slice(&s.as_bytes()[..end]);
}

fn put_nullable_str(out: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => out.put_i16(-1),
    }
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_i32(i32::try_from(b.len()).unwrap_or(i32::MAX));
    out.put_slice(b);
}

impl RecordKey {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        match self {
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => {
                out.put_i16(1);
                put_str(&mut out, group);
                put_str(&mut out, topic);
                out.put_i32(*partition);
            }
            RecordKey::Group { group } => {
                out.put_i16(2);
                put_str(&mut out, group);
            }
        }
        out.freeze()
    }
}

impl OffsetValue {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        if self.expire_timestamp >= 0 {
            out.put_i16(1);
            out.put_i64(self.offset);
            put_str(&mut out, &self.metadata);
            out.put_i64(self.commit_timestamp);
            out.put_i64(self.expire_timestamp);
        } else {
            out.put_i16(3);
            out.put_i64(self.offset);
            out.put_i32(self.leader_epoch);
            put_str(&mut out, &self.metadata);
            out.put_i64(self.commit_timestamp);
        }
        out.freeze()
    }
}

impl GroupValue {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_i16(3);
        put_str(&mut out, &self.protocol_type);
        out.put_i32(self.generation);
        put_nullable_str(&mut out, self.protocol.as_deref());
        put_nullable_str(&mut out, self.leader.as_deref());
        out.put_i64(self.current_state_timestamp);
        out.put_i32(i32::try_from(self.members.len()).unwrap_or(i32::MAX));
        for m in &self.members {
            put_str(&mut out, &m.member_id);
            put_nullable_str(&mut out, m.group_instance_id.as_deref());
            put_str(&mut out, &m.client_id);
            put_str(&mut out, &m.client_host);
            out.put_i32(m.rebalance_timeout_ms);
            out.put_i32(m.session_timeout_ms);
            put_bytes(&mut out, &m.subscription);
            put_bytes(&mut out, &m.assignment);
        }
        out.freeze()
    }
}

// ---------------------------------------------------------------------------
// Reading: every length is checked against the bytes left before it is used.

struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl Reader<'_> {
    fn need(&self, n: usize) -> Result<(), RecordError> {
        if self.buf.remaining() < n {
            return Err(bad(format!(
                "{} ends early: {n} more bytes wanted, {} left",
                self.what,
                self.buf.remaining()
            )));
        }
        Ok(())
    }
    fn i16(&mut self) -> Result<i16, RecordError> {
        self.need(2)?;
        Ok(self.buf.get_i16())
    }
    fn i32(&mut self) -> Result<i32, RecordError> {
        self.need(4)?;
        Ok(self.buf.get_i32())
    }
    fn i64(&mut self) -> Result<i64, RecordError> {
        self.need(8)?;
        Ok(self.buf.get_i64())
    }
    fn nullable_str(&mut self) -> Result<Option<String>, RecordError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let len = usize::try_from(len).unwrap_or(0);
        self.need(len)?;
        let s = std::str::from_utf8(&self.buf[..len])
            .map_err(|_| bad(format!("{}: a string is not UTF-8", self.what)))?
            .to_string();
        self.buf.advance(len);
        Ok(Some(s))
    }
    fn str(&mut self) -> Result<String, RecordError> {
        self.nullable_str()?
            .ok_or_else(|| bad(format!("{}: a required string is null", self.what)))
    }
    fn bytes(&mut self) -> Result<Bytes, RecordError> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        self.need(len)?;
        let b = Bytes::copy_from_slice(&self.buf[..len]);
        self.buf.advance(len);
        Ok(b)
    }
}

impl RecordKey {
    pub fn decode(buf: &[u8]) -> Result<RecordKey, RecordError> {
        let mut r = Reader { buf, what: "key" };
        match r.i16()? {
            0 | 1 => Ok(RecordKey::Offset {
                group: r.str()?,
                topic: r.str()?,
                partition: r.i32()?,
            }),
            2 => Ok(RecordKey::Group { group: r.str()? }),
            v => Err(bad(format!(
                "key version {v} is not known (0 and 1: offsets, 2: group metadata)"
            ))),
        }
    }
}

impl OffsetValue {
    pub fn decode(buf: &[u8]) -> Result<OffsetValue, RecordError> {
        let mut r = Reader {
            buf,
            what: "offset value",
        };
        let version = r.i16()?;
        if !(0..=3).contains(&version) {
            return Err(bad(format!(
                "offset value version {version} is not supported (0 to 3)"
            )));
        }
        let offset = r.i64()?;
        let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
        let metadata = r.str()?;
        let commit_timestamp = r.i64()?;
        let expire_timestamp = if version == 1 { r.i64()? } else { -1 };
        Ok(OffsetValue {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp,
            expire_timestamp,
        })
    }
}

impl GroupValue {
    pub fn decode(buf: &[u8]) -> Result<GroupValue, RecordError> {
        let mut r = Reader {
            buf,
            what: "group value",
        };
        let version = r.i16()?;
        if !(0..=3).contains(&version) {
            return Err(bad(format!(
                "group value version {version} is not supported (0 to 3)"
            )));
        }
        let protocol_type = r.str()?;
        let generation = r.i32()?;
        let protocol = r.nullable_str()?;
        let leader = r.nullable_str()?;
        let current_state_timestamp = if version >= 2 { r.i64()? } else { -1 };
        let count = r.i32()?;
        // Each member takes at least 18 bytes: a count beyond that is damage.
        let count = usize::try_from(count).unwrap_or(0);
        if count > r.buf.remaining() / 18 {
            return Err(bad(format!(
                "group value announces {count} members in {} bytes",
                r.buf.remaining()
            )));
        }
        let mut members = Vec::with_capacity(count);
        for _ in 0..count {
            let member_id = r.str()?;
            let group_instance_id = if version >= 3 {
                r.nullable_str()?
            } else {
                None
            };
            let client_id = r.str()?;
            let client_host = r.str()?;
            let session_timeout_ms;
            let rebalance_timeout_ms;
            if version >= 1 {
                rebalance_timeout_ms = r.i32()?;
                session_timeout_ms = r.i32()?;
            } else {
                session_timeout_ms = r.i32()?;
                rebalance_timeout_ms = session_timeout_ms;
            }
            members.push(MemberValue {
                member_id,
                group_instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms,
                session_timeout_ms,
                subscription: r.bytes()?,
                assignment: r.bytes()?,
            });
        }
        Ok(GroupValue {
            protocol_type,
            generation,
            protocol,
            leader,
            current_state_timestamp,
            members,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_key_has_kafkas_layout() {
        let k = RecordKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 7,
        };
        let b = k.encode();
        assert_eq!(&b[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 7]);
        assert_eq!(RecordKey::decode(&b).unwrap(), k);
        // Version 0 keys (old brokers) read the same.
        let v0 = [0, 0, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 7];
        assert_eq!(RecordKey::decode(&v0).unwrap(), k);
        let g = RecordKey::Group { group: "g".into() };
        assert_eq!(&g.encode()[..], &[0, 2, 0, 1, b'g']);
        assert_eq!(RecordKey::decode(&g.encode()).unwrap(), g);
    }

    #[test]
    fn offset_values_of_every_version_are_read() {
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 5,
            metadata: "m".into(),
            commit_timestamp: 1000,
            expire_timestamp: -1,
        };
        let b = v.encode();
        assert_eq!(
            &b[..],
            &[0, 3, 0, 0, 0, 0, 0, 0, 0, 42, 0, 0, 0, 5, 0, 1, b'm', 0, 0, 0, 0, 0, 0, 3, 232]
        );
        assert_eq!(OffsetValue::decode(&b).unwrap(), v);
        // v1: with an expiry, no epoch.
        let v1 = OffsetValue {
            leader_epoch: -1,
            expire_timestamp: 2000,
            ..v.clone()
        };
        let b1 = v1.encode();
        assert_eq!(b1[1], 1);
        assert_eq!(OffsetValue::decode(&b1).unwrap(), v1);
        // v0 and v2: offset, metadata, commit time.
        for version in [0u8, 2] {
            let raw = [
                0, version, 0, 0, 0, 0, 0, 0, 0, 42, 0, 1, b'm', 0, 0, 0, 0, 0, 0, 3, 232,
            ];
            let got = OffsetValue::decode(&raw).unwrap();
            assert_eq!(
                (got.offset, got.leader_epoch, got.commit_timestamp),
                (42, -1, 1000)
            );
        }
    }

    #[test]
    fn group_values_round_trip_and_old_versions_are_read() {
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 3,
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            current_state_timestamp: 99,
            members: vec![MemberValue {
                member_id: "m-1".into(),
                group_instance_id: Some("i-1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(GroupValue::decode(&g.encode()).unwrap(), g);
        // v0: no state time, no instance id, one timeout that is both.
        let mut raw = BytesMut::new();
        raw.put_i16(0);
        put_str(&mut raw, "consumer");
        raw.put_i32(1);
        put_nullable_str(&mut raw, None);
        put_nullable_str(&mut raw, None);
        raw.put_i32(1);
        put_str(&mut raw, "m");
        put_str(&mut raw, "c");
        put_str(&mut raw, "h");
        raw.put_i32(10_000);
        put_bytes(&mut raw, b"s");
        put_bytes(&mut raw, b"a");
        let got = GroupValue::decode(&raw).unwrap();
        assert_eq!(got.current_state_timestamp, -1);
        assert_eq!(got.members[0].session_timeout_ms, 10_000);
        assert_eq!(got.members[0].rebalance_timeout_ms, 10_000);
        assert_eq!(got.members[0].group_instance_id, None);
    }

    #[test]
    fn an_overlong_string_is_cut_at_a_character_boundary_and_reads_back() {
        let long = "é".repeat(STRING_MAX);
        let k = RecordKey::Group { group: long };
        let RecordKey::Group { group } = RecordKey::decode(&k.encode()).unwrap() else {
            panic!("a group key");
        };
        assert_eq!(group.len(), STRING_MAX - 1);
        assert!(group.chars().all(|c| c == 'é'));
    }

    #[test]
    fn damaged_records_are_refused_not_trusted() {
        assert!(RecordKey::decode(&[0, 9, 0, 0]).is_err());
        assert!(RecordKey::decode(&[0, 1, 0, 50, b'g']).is_err());
        assert!(OffsetValue::decode(&[0, 4]).is_err());
        assert!(OffsetValue::decode(&[0, 3, 0, 0]).is_err());
        // A member count far beyond the bytes that follow.
        let mut raw = BytesMut::new();
        raw.put_i16(3);
        put_str(&mut raw, "consumer");
        raw.put_i32(1);
        put_nullable_str(&mut raw, None);
        put_nullable_str(&mut raw, None);
        raw.put_i64(0);
        raw.put_i32(i32::MAX);
        let e = GroupValue::decode(&raw).unwrap_err();
        assert!(e.to_string().contains("members"), "{e}");
        // Every truncation of a good record fails cleanly.
        let good = GroupValue {
            protocol_type: "consumer".into(),
            members: vec![MemberValue::default()],
            ..GroupValue::default()
        }
        .encode();
        for n in 0..good.len() {
            assert!(GroupValue::decode(&good[..n]).is_err(), "prefix {n}");
        }
    }
}
