//! OffsetForLeaderEpoch (v2+): the end offset of a leader epoch, from each
//! partition's leader-epoch cache on its leader: the start of the next epoch, or
//! the log end for the latest. Consumers ask it after a leader change to detect
//! truncation; followers ask it before they fetch from a new leader
//! ([`crate::replica::fetcher`]).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, RequestHeader,
};

use crate::context::BrokerContext;
use crate::registry::HandlerFuture;

const KEY: i16 = ApiKey::OffsetForLeaderEpoch as i16;

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: OffsetForLeaderEpochRequest = super::decode(&mut body, KEY, v)?;
        let asked = req
            .topics
            .iter()
            .map(|t| {
                (
                    t.topic.to_string(),
                    t.partitions
                        .iter()
                        .map(|p| (p.partition, (p.current_leader_epoch, p.leader_epoch)))
                        .collect(),
                )
            })
            .collect();
        let results = super::per_partition(
            &ctx,
            asked,
            super::Need::Leader,
            |r, (current, wanted): (i32, i32)| async move {
                let epoch = r.check_leader(current)?;
                let p = &r.log;
                Ok(end_of_epoch(
                    &p.leader_epochs(),
                    p.offsets().log_end_offset,
                    epoch,
                    wanted,
                ))
            },
        )
        .await;
        let topics = req
            .topics
            .iter()
            .zip(results)
            .map(|(t, parts)| {
                OffsetForLeaderTopicResult::default()
                    .with_topic(t.topic.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .zip(parts)
                            .map(|(p, r)| {
                                let out = EpochEndOffset::default().with_partition(p.partition);
                                match r {
                                    Ok((epoch, end)) => {
                                        out.with_leader_epoch(epoch).with_end_offset(end)
                                    }
                                    Err(e) => out
                                        .with_error_code(sluice_engine::metrics::tally(e.code))
                                        .with_leader_epoch(-1)
                                        .with_end_offset(-1),
                                }
                            })
                            .collect(),
                    )
            })
            .collect();
        super::encode(
            &OffsetForLeaderEpochResponse::default().with_topics(topics),
            KEY,
            v,
        )
    })
}

/// `(epoch, end offset)` for `wanted` given the cache `(epoch, start offset)`
/// ascending: the largest epoch at or below `wanted` and where the next one starts
/// (or the log end); `(-1, -1)` when `wanted` is older than every epoch. An empty
/// cache (nothing written yet) answers the `current` epoch at the log end.
pub fn end_of_epoch(epochs: &[(i32, u64)], log_end: u64, current: i32, wanted: i32) -> (i32, i64) {
    let as_i64 = |x: u64| i64::try_from(x).unwrap_or(i64::MAX);
    if epochs.is_empty() {
        return if wanted >= current {
            (current, as_i64(log_end))
        } else {
            (-1, -1)
        };
    }
    let Some(i) = epochs.iter().rposition(|(e, _)| *e <= wanted) else {
        return (-1, -1);
    };
    let end = epochs.get(i + 1).map_or(log_end, |(_, start)| *start);
    (epochs[i].0, as_i64(end))
}

#[cfg(test)]
mod tests {
    use super::end_of_epoch;

    #[test]
    fn an_epoch_ends_where_the_next_begins() {
        let cache = [(0, 0), (3, 100), (5, 250)];
        assert_eq!(end_of_epoch(&cache, 400, 5, 0), (0, 100));
        assert_eq!(end_of_epoch(&cache, 400, 5, 2), (0, 100));
        assert_eq!(end_of_epoch(&cache, 400, 5, 4), (3, 250));
        assert_eq!(end_of_epoch(&cache, 400, 5, 9), (5, 400));
        assert_eq!(end_of_epoch(&cache[1..], 400, 5, 1), (-1, -1));
        assert_eq!(end_of_epoch(&[], 0, 0, 0), (0, 0));
    }
}
