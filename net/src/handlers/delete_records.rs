//! DeleteRecords: move each partition's log start offset up to the given offset
//! (-1: the high watermark), deleting segments that fall wholly below it. Answers
//! the new low watermark.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{
    ApiKey, DeleteRecordsRequest, DeleteRecordsResponse, RequestHeader,
};

use crate::context::BrokerContext;
use crate::kafka_error::{self as code, KafkaError};
use crate::registry::HandlerFuture;

const KEY: i16 = ApiKey::DeleteRecords as i16;

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: DeleteRecordsRequest = super::decode(&mut body, KEY, v)?;
        let asked = req
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.to_string(),
                    t.partitions
                        .iter()
                        .map(|p| (p.partition_index, p.offset))
                        .collect(),
                )
            })
            .collect();
        let results = super::per_partition(
            &ctx,
            asked,
            super::Need::Leader,
            |r, offset: i64| async move {
                let p = r.log.clone();
                let hw = p.offsets().high_watermark;
                let target = match offset {
                    -1 => hw,
                    o => u64::try_from(o).ok().filter(|&o| o <= hw).ok_or_else(|| {
                        KafkaError::new(
                            code::OFFSET_OUT_OF_RANGE,
                            format!("offset {o} is not between 0 and the high watermark {hw}"),
                        )
                    })?,
                };
                let low = p.delete_records_before(target).await?;
                Ok(i64::try_from(low).unwrap_or(i64::MAX))
            },
        )
        .await;
        let topics = req
            .topics
            .iter()
            .zip(results)
            .map(|(t, parts)| {
                DeleteRecordsTopicResult::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .zip(parts)
                            .map(|(p, r)| {
                                let out = DeleteRecordsPartitionResult::default()
                                    .with_partition_index(p.partition_index);
                                match r {
                                    Ok(low) => out.with_low_watermark(low),
                                    Err(e) => out
                                        .with_error_code(sluice_engine::metrics::tally(e.code))
                                        .with_low_watermark(-1),
                                }
                            })
                            .collect(),
                    )
            })
            .collect();
        super::encode(
            &DeleteRecordsResponse::default().with_topics(topics),
            KEY,
            v,
        )
    })
}
