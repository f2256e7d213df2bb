//! ListOffsets (v1+): per partition, the earliest offset (-2, and -4 "earliest
//! local", the same here), the latest (-1: the high watermark, or the last stable
//! offset for `read_committed`, equal while there are no transactions), the record
//! with the largest timestamp (-3, KIP-734), or the first offset whose timestamp is
//! at or after a given time (-1 offset when every record is older).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse, RequestHeader};
use sluice_engine::TopicPartition;

use crate::context::BrokerContext;
use crate::kafka_error::{self as code, KafkaError};
use crate::registry::HandlerFuture;

const KEY: i16 = ApiKey::ListOffsets as i16;

/// `(timestamp, offset, leader epoch)` found for one partition, or why not.
type Found = Result<(i64, i64, i32), KafkaError>;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: ListOffsetsRequest = super::decode(&mut body, KEY, v)?;
        let image = ctx.topics.image();
        let mut slots: Vec<Vec<Option<Found>>> = Vec::new();
        let mut work = Vec::new();
        for (ti, topic) in req.topics.iter().enumerate() {
            slots.push(topic.partitions.iter().map(|_| None).collect());
            let info = image.get(&topic.name);
            for (pi, part) in topic.partitions.iter().enumerate() {
                let tp = match info {
                    Some(info) if (0..info.partitions).contains(&part.partition_index) => {
                        TopicPartition::new(&info.name, part.partition_index)
                            .map_err(KafkaError::from)
                    }
                    _ => Err(KafkaError::new(
                        code::UNKNOWN_TOPIC_OR_PARTITION,
                        format!(
                            "partition {}-{} does not exist",
                            topic.name.as_str(),
                            part.partition_index
                        ),
                    )),
                };
                match tp {
                    Ok(tp) => {
                        work.push((tp, (ti, pi, (part.timestamp, part.current_leader_epoch))));
                    }
                    Err(e) => slots[ti][pi] = Some(Err(e)),
                }
            }
        }
        let places: Vec<(usize, usize)> = work.iter().map(|(_, (t, p, _))| (*t, *p)).collect();
        let items = work.into_iter().map(|(tp, (_, _, ts))| (tp, ts)).collect();
        let results = super::on_owners(
            &ctx,
            items,
            super::Need::Leader,
            |r, (ts, current): (i64, i32)| async move {
                let epoch = r.check_leader(current)?;
                let (timestamp, offset) = find(&r.log, ts).await?;
                Ok((
                    timestamp,
                    offset,
                    epoch_at(&r.log.leader_epochs(), offset, epoch),
                ))
            },
        )
        .await;
        for ((ti, pi), r) in places.into_iter().zip(results) {
            slots[ti][pi] = Some(r);
        }
        let topics = req
            .topics
            .iter()
            .zip(slots)
            .map(|(topic, parts)| {
                ListOffsetsTopicResponse::default()
                    .with_name(topic.name.clone())
                    .with_partitions(
                        topic
                            .partitions
                            .iter()
                            .zip(parts)
                            .map(|(p, r)| {
                                let base = ListOffsetsPartitionResponse::default()
                                    .with_partition_index(p.partition_index);
                                match r {
                                    Some(Ok((timestamp, offset, epoch))) => base
                                        .with_timestamp(timestamp)
                                        .with_offset(offset)
                                        .with_leader_epoch(if v >= 4 { epoch } else { -1 }),
                                    Some(Err(e)) => base
                                        .with_error_code(sluice_engine::metrics::tally(e.code))
                                        .with_timestamp(-1)
                                        .with_offset(-1),
                                    None => base.with_error_code(sluice_engine::metrics::tally(
                                        code::UNKNOWN_SERVER_ERROR,
                                    )),
                                }
                            })
                            .collect(),
                    )
            })
            .collect();
        super::encode(&ListOffsetsResponse::default().with_topics(topics), KEY, v)
    })
}

/// `(timestamp, offset)` answering `ts` (a time or one of the special values).
async fn find(p: &Rc<sluice_engine::Partition>, ts: i64) -> Result<(i64, i64), KafkaError> {
    let o = p.offsets();
    let as_i64 = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
    Ok(match ts {
        LATEST => (-1, as_i64(o.high_watermark)),
        EARLIEST | EARLIEST_LOCAL => (-1, as_i64(o.log_start_offset)),
        MAX_TIMESTAMP => match p.max_timestamp() {
            Some((t, off)) => (t, as_i64(off)),
            None => (-1, -1),
        },
        t if t >= 0 => match p.offset_for_timestamp(t).await? {
            Some((off, found)) if off < o.high_watermark => (found, as_i64(off)),
            _ => (-1, -1),
        },
        t => {
            return Err(KafkaError::new(
                code::INVALID_REQUEST,
                format!("timestamp {t} is not a time or a known special value"),
            ))
        }
    })
}

/// The leader epoch of `offset` in the epoch cache `(epoch, start)`: the last
/// epoch starting at or before it; `current` when the cache has none (or for -1).
fn epoch_at(epochs: &[(i32, u64)], offset: i64, current: i32) -> i32 {
    let Ok(o) = u64::try_from(offset) else {
        return -1;
    };
    epochs
        .iter()
        .rev()
        .find(|(_, start)| *start <= o)
        .map_or(current, |(e, _)| *e)
}
