//! The Fetch response (v4-v16) encoded by hand, so that record data stays in the
//! parts it came in (cached batches, file ranges) and is never copied into the
//! response buffer. The fields around the records are written into small buffers
//! between them. A test checks the bytes against the `kafka-protocol` codec for every
//! version.

use bytes::{BufMut, BytesMut};
use uuid::Uuid;

use crate::body::Part;

/// One partition's answer.
#[derive(Debug, Default)]
pub struct PartitionOut {
    pub index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    /// Sent from v5.
    pub log_start_offset: i64,
    /// `(producer id, first offset)`; `None` is a null array.
    pub aborted_transactions: Option<Vec<(i64, i64)>>,
    /// `None` is null records.
    pub records: Option<Vec<Part>>,
    /// KIP-951, v12+: the leader `(id, epoch)` sent with `NOT_LEADER_OR_FOLLOWER`.
    pub current_leader: Option<(i32, i32)>,
}

/// A broker's endpoint (v16+, with a partition's current leader).
#[derive(Debug, Clone)]
pub struct EndpointOut {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// One topic's answer: the name up to v12, the id from v13.
#[derive(Debug, Default)]
pub struct TopicOut {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<PartitionOut>,
}

/// A whole Fetch response body for version `v` (4 to 16), with no throttle; the
/// only tagged fields are KIP-951's current leaders and (v16+) `endpoints`.
pub fn encode(
    v: i16,
    error_code: i16,
    session_id: i32,
    topics: Vec<TopicOut>,
    endpoints: &[EndpointOut],
) -> Vec<Part> {
    let flexible = v >= 12;
    let mut w = Writer {
        parts: Vec::new(),
        buf: BytesMut::with_capacity(256),
        flexible,
    };
    w.buf.put_i32(0); // throttle_time_ms
    if v >= 7 {
        w.buf.put_i16(error_code);
        w.buf.put_i32(session_id);
    }
    w.array_len(Some(topics.len()));
    for t in topics {
        if v <= 12 {
            w.string(&t.name);
        } else {
            w.buf.put_slice(t.id.as_bytes());
        }
        w.array_len(Some(t.partitions.len()));
        for p in t.partitions {
            w.buf.put_i32(p.index);
            w.buf.put_i16(p.error_code);
            w.buf.put_i64(p.high_watermark);
            w.buf.put_i64(p.last_stable_offset);
            if v >= 5 {
                w.buf.put_i64(p.log_start_offset);
            }
            w.array_len(p.aborted_transactions.as_ref().map(Vec::len));
            for (producer_id, first_offset) in p.aborted_transactions.unwrap_or_default() {
                w.buf.put_i64(producer_id);
                w.buf.put_i64(first_offset);
                w.no_tags();
            }
            if v >= 11 {
                w.buf.put_i32(-1); // preferred_read_replica
            }
            w.records(p.records);
            match p.current_leader.filter(|_| flexible) {
                Some((id, epoch)) => {
                    // One tagged field: tag 1, a struct of two int32 and no tags.
                    w.uvarint(1);
                    w.uvarint(1);
                    w.uvarint(9);
                    w.buf.put_i32(id);
                    w.buf.put_i32(epoch);
                    w.no_tags();
                }
                None => w.no_tags(),
            }
        }
        w.no_tags();
    }
    if v >= 16 && !endpoints.is_empty() {
        // One tagged field: tag 0, the endpoints' compact array.
        let mut e = Writer {
            parts: Vec::new(),
            buf: BytesMut::new(),
            flexible,
        };
        e.array_len(Some(endpoints.len()));
        for n in endpoints {
            e.buf.put_i32(n.node_id);
            e.string(&n.host);
            e.buf.put_i32(n.port);
            match &n.rack {
                Some(r) => e.string(r),
                None => e.uvarint(0),
            }
            e.no_tags();
        }
        w.uvarint(1);
        w.uvarint(0);
        w.uvarint(e.buf.len() as u64);
        w.buf.extend_from_slice(&e.buf);
    } else {
        w.no_tags();
    }
    w.finish()
}

struct Writer {
    parts: Vec<Part>,
    buf: BytesMut,
    flexible: bool,
}

impl Writer {
    fn uvarint(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.buf.put_u8(((n & 0x7f) as u8) | 0x80);
            n >>= 7;
        }
        self.buf.put_u8((n & 0x7f) as u8);
    }

    /// An array's length; `None` is null.
    fn array_len(&mut self, len: Option<usize>) {
        match (self.flexible, len) {
            (true, Some(n)) => self.uvarint(n as u64 + 1),
            (true, None) => self.uvarint(0),
            (false, Some(n)) => self.buf.put_i32(i32::try_from(n).unwrap_or(i32::MAX)),
            (false, None) => self.buf.put_i32(-1),
        }
    }

    fn string(&mut self, s: &str) {
        if self.flexible {
            self.uvarint(s.len() as u64 + 1);
        } else {
            self.buf.put_i16(i16::try_from(s.len()).unwrap_or(i16::MAX));
        }
        self.buf.put_slice(s.as_bytes());
    }

    fn no_tags(&mut self) {
        if self.flexible {
            self.buf.put_u8(0);
        }
    }

    /// The records' length, then the records as their own parts.
    fn records(&mut self, records: Option<Vec<Part>>) {
        let Some(records) = records else {
            if self.flexible {
                self.uvarint(0);
            } else {
                self.buf.put_i32(-1);
            }
            return;
        };
        let len: u64 = records.iter().map(Part::len).sum();
        if self.flexible {
            self.uvarint(len + 1);
        } else {
            self.buf.put_i32(i32::try_from(len).unwrap_or(i32::MAX));
        }
        if len == 0 {
            return;
        }
        let head = self.buf.split().freeze();
        self.parts.push(Part::Mem(head));
        self.parts
            .extend(records.into_iter().filter(|p| !p.is_empty()));
    }

    fn finish(mut self) -> Vec<Part> {
        if !self.buf.is_empty() {
            self.parts.push(Part::Mem(self.buf.split().freeze()));
        }
        self.parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{read_range, FileRange};
    use bytes::Bytes;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
    };
    use kafka_protocol::messages::{BrokerId, FetchResponse, ProducerId, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use std::io::Write;
    use std::sync::Arc;

    fn flat(parts: &[Part]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            match p {
                Part::Mem(b) => out.extend_from_slice(b),
                Part::File(r) => out.extend_from_slice(&read_range(r).expect("read")),
            }
        }
        out
    }

    /// The same answer built both ways: ours, and `kafka-protocol`'s.
    #[allow(clippy::too_many_lines)]
    fn both(v: i16, file: &Arc<std::fs::File>) -> (Vec<Part>, FetchResponse) {
        let big = Bytes::from(vec![7u8; 300]);
        let ours = vec![
            TopicOut {
                name: "alpha".into(),
                id: Uuid::from_u128(0x1234),
                partitions: vec![
                    PartitionOut {
                        index: 0,
                        high_watermark: 10,
                        last_stable_offset: 10,
                        log_start_offset: 2,
                        aborted_transactions: Some(vec![(5, 6)]),
                        records: Some(vec![
                            Part::Mem(Bytes::from_static(b"batch-one")),
                            Part::File(FileRange {
                                file: file.clone(),
                                offset: 2,
                                len: 5,
                            }),
                            Part::Mem(big.clone()),
                        ]),
                        ..PartitionOut::default()
                    },
                    PartitionOut {
                        index: 3,
                        error_code: 1,
                        high_watermark: -1,
                        last_stable_offset: -1,
                        log_start_offset: -1,
                        aborted_transactions: None,
                        records: Some(Vec::new()),
                        current_leader: Some((2, 7)),
                    },
                ],
            },
            TopicOut {
                name: "b".into(),
                id: Uuid::from_u128(99),
                partitions: vec![PartitionOut {
                    index: 1,
                    records: None,
                    ..PartitionOut::default()
                }],
            },
        ];
        let mut records = b"batch-one".to_vec();
        records.extend_from_slice(b"23456");
        records.extend_from_slice(&big);
        let theirs = FetchResponse::default()
            .with_error_code(if v >= 7 { 3 } else { 0 })
            .with_session_id(if v >= 7 { 42 } else { 0 })
            .with_responses(vec![
                FetchableTopicResponse::default()
                    .with_topic(if v <= 12 {
                        TopicName(StrBytes::from_static_str("alpha"))
                    } else {
                        TopicName::default()
                    })
                    .with_topic_id(if v >= 13 {
                        Uuid::from_u128(0x1234)
                    } else {
                        Uuid::nil()
                    })
                    .with_partitions(vec![
                        PartitionData::default()
                            .with_partition_index(0)
                            .with_high_watermark(10)
                            .with_last_stable_offset(10)
                            .with_log_start_offset(if v >= 5 { 2 } else { -1 })
                            .with_aborted_transactions(Some(vec![AbortedTransaction::default()
                                .with_producer_id(ProducerId(5))
                                .with_first_offset(6)]))
                            .with_preferred_read_replica(BrokerId(-1))
                            .with_records(Some(Bytes::from(records))),
                        PartitionData::default()
                            .with_partition_index(3)
                            .with_error_code(1)
                            .with_high_watermark(-1)
                            .with_last_stable_offset(-1)
                            .with_log_start_offset(-1)
                            .with_aborted_transactions(None)
                            .with_preferred_read_replica(BrokerId(-1))
                            .with_records(Some(Bytes::new()))
                            .with_current_leader(if v >= 12 {
                                LeaderIdAndEpoch::default()
                                    .with_leader_id(BrokerId(2))
                                    .with_leader_epoch(7)
                            } else {
                                LeaderIdAndEpoch::default()
                            }),
                    ]),
                FetchableTopicResponse::default()
                    .with_topic(if v <= 12 {
                        TopicName(StrBytes::from_static_str("b"))
                    } else {
                        TopicName::default()
                    })
                    .with_topic_id(if v >= 13 {
                        Uuid::from_u128(99)
                    } else {
                        Uuid::nil()
                    })
                    .with_partitions(vec![PartitionData::default()
                        .with_partition_index(1)
                        .with_high_watermark(0)
                        .with_last_stable_offset(0)
                        .with_aborted_transactions(None)
                        .with_log_start_offset(if v >= 5 { 0 } else { -1 })
                        .with_preferred_read_replica(BrokerId(-1))
                        .with_records(None)]),
            ])
            .with_node_endpoints(if v >= 16 {
                vec![
                    NodeEndpoint::default()
                        .with_node_id(BrokerId(2))
                        .with_host(StrBytes::from_static_str("127.0.0.2"))
                        .with_port(9092)
                        .with_rack(Some(StrBytes::from_static_str("r2"))),
                    NodeEndpoint::default()
                        .with_node_id(BrokerId(3))
                        .with_host(StrBytes::from_static_str("b3.example"))
                        .with_port(19092),
                ]
            } else {
                Vec::new()
            });
        let endpoints = [
            EndpointOut {
                node_id: 2,
                host: "127.0.0.2".into(),
                port: 9092,
                rack: Some("r2".into()),
            },
            EndpointOut {
                node_id: 3,
                host: "b3.example".into(),
                port: 19092,
                rack: None,
            },
        ];
        let (err, session) = if v >= 7 { (3, 42) } else { (0, 0) };
        (encode(v, err, session, ours, &endpoints), theirs)
    }

    #[test]
    fn every_version_encodes_as_the_kafka_protocol_codec_does() {
        let mut f = tempfile::tempfile().expect("tempfile");
        f.write_all(b"0123456789").expect("write");
        let file = Arc::new(f);
        for v in 4..=16 {
            let (ours, theirs) = both(v, &file);
            let mut expected = BytesMut::new();
            theirs.encode(&mut expected, v).expect("encode");
            assert_eq!(flat(&ours), expected.to_vec(), "fetch response v{v}");
            // The records are not copied: the file range and the large batch are
            // parts of their own.
            assert!(ours.iter().any(|p| matches!(p, Part::File(_))), "v{v}");
            assert!(ours.iter().any(|p| p.len() == 300), "v{v}");
        }
    }
}
