//! DescribeLogDirs: the one data directory, its partitions' sizes, and (v4) the
//! filesystem's total and usable bytes.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    ApiKey, DescribeLogDirsRequest, DescribeLogDirsResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::context::BrokerContext;
use crate::registry::HandlerFuture;

const KEY: i16 = ApiKey::DescribeLogDirs as i16;

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: DescribeLogDirsRequest = super::decode(&mut body, KEY, v)?;
        let image = ctx.topics.image();
        let asked: Vec<(String, Vec<(i32, ())>)> = match &req.topics {
            None => image
                .topics()
                .map(|t| {
                    (
                        t.name.to_string(),
                        (0..t.partitions).map(|p| (p, ())).collect(),
                    )
                })
                .collect(),
            Some(list) => list
                .iter()
                .filter(|t| image.get(&t.topic).is_some())
                .map(|t| {
                    (
                        t.topic.to_string(),
                        t.partitions.iter().map(|p| (*p, ())).collect(),
                    )
                })
                .collect(),
        };
        let sizes = super::per_partition(
            &ctx,
            asked.clone(),
            super::Need::Replica,
            |r, ()| async move { Ok(i64::try_from(r.log.size_bytes()).unwrap_or(i64::MAX)) },
        )
        .await;
        let topics = asked
            .iter()
            .zip(sizes)
            .map(|((name, parts), sizes)| {
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name.clone())))
                    .with_partitions(
                        parts
                            .iter()
                            .zip(sizes)
                            .filter_map(|((p, ()), size)| {
                                Some(
                                    DescribeLogDirsPartition::default()
                                        .with_partition_index(*p)
                                        .with_partition_size(size.ok()?),
                                )
                            })
                            .collect(),
                    )
            })
            .collect();
        let dir = ctx.topics.data_dir();
        let mut result = DescribeLogDirsResult::default()
            .with_log_dir(StrBytes::from_string(dir.display().to_string()))
            .with_topics(topics);
        if v >= 4 {
            if let Ok(fs) = nix::sys::statvfs::statvfs(dir) {
                let block = fs.fragment_size();
                let total = fs.blocks().saturating_mul(block);
                let free = fs.blocks_available().saturating_mul(block);
                result = result
                    .with_total_bytes(i64::try_from(total).unwrap_or(i64::MAX))
                    .with_usable_bytes(i64::try_from(free).unwrap_or(i64::MAX));
            }
        }
        super::encode(
            &DescribeLogDirsResponse::default().with_results(vec![result]),
            KEY,
            v,
        )
    })
}
