//! DeleteRecords, OffsetForLeaderEpoch, DescribeLogDirs and ListOffsets over a real
//! socket, after records were produced with raw Produce requests.

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    delete_records_request, describe_log_dirs_request, list_offsets_request,
    offset_for_leader_epoch_request, ApiKey, DeleteRecordsRequest, DeleteRecordsResponse,
    DescribeLogDirsRequest, DescribeLogDirsResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ProduceRequest, ProduceResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::server::*;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.into()))
}

fn produce(s: &mut std::net::TcpStream, topic: &str, values: &[&[u8]], ts: i64, cid: i32) -> i64 {
    let batch =
        sluice_engine::batch::build_values_batch(values, ts, sluice_engine::batch::NO_PRODUCER);
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(batch)))])]);
    send(s, &request(ApiKey::Produce, 9, cid, &req));
    let (_, r): (i32, ProduceResponse) = response(s, 1, 9);
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0);
    p.base_offset
}

fn list_offset(s: &mut std::net::TcpStream, topic: &str, timestamp: i64) -> (i16, i64, i64) {
    let req = ListOffsetsRequest::default().with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(timestamp)]),
    ]);
    send(s, &request(ApiKey::ListOffsets, 7, 50, &req));
    let (_, r): (i32, ListOffsetsResponse) = response(s, 1, 7);
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

#[test]
fn log_admin_apis_answer_from_the_partition_logs() {
    let node = start(1 << 20);
    let mut s = connect(node.addr);
    // Auto-created by the first produce: 10 records at t=1000.., 10 at t=5000...
    assert_eq!(produce(&mut s, "logs", &[b"a".as_slice(); 10], 1000, 1), 0);
    assert_eq!(produce(&mut s, "logs", &[b"b".as_slice(); 10], 5000, 2), 10);

    assert_eq!(list_offset(&mut s, "logs", -2), (0, 0, -1));
    assert_eq!(list_offset(&mut s, "logs", -1), (0, 20, -1));
    assert_eq!(list_offset(&mut s, "logs", 1004), (0, 4, 1004));
    assert_eq!(list_offset(&mut s, "logs", 2000), (0, 10, 5000));
    assert_eq!(list_offset(&mut s, "logs", 9999), (0, -1, -1));
    assert_eq!(list_offset(&mut s, "logs", -3), (0, 19, 5009));

    let epochs = OffsetForLeaderEpochRequest::default().with_topics(vec![
        offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
            .with_topic(name("logs"))
            .with_partitions(vec![
                offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(0)
                    .with_leader_epoch(0),
                offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                    .with_partition(7)
                    .with_leader_epoch(0),
            ]),
    ]);
    send(
        &mut s,
        &request(ApiKey::OffsetForLeaderEpoch, 4, 3, &epochs),
    );
    let (_, r): (i32, OffsetForLeaderEpochResponse) = response(&mut s, 1, 4);
    let ps = &r.topics[0].partitions;
    assert_eq!(
        (ps[0].error_code, ps[0].leader_epoch, ps[0].end_offset),
        (0, 0, 20)
    );
    assert_eq!(ps[1].error_code, 3, "partition 7 does not exist");

    let delete = DeleteRecordsRequest::default().with_topics(vec![
        delete_records_request::DeleteRecordsTopic::default()
            .with_name(name("logs"))
            .with_partitions(vec![
                delete_records_request::DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(12),
            ]),
    ]);
    send(&mut s, &request(ApiKey::DeleteRecords, 2, 4, &delete));
    let (_, r): (i32, DeleteRecordsResponse) = response(&mut s, 1, 2);
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.low_watermark), (0, 12));
    assert_eq!(list_offset(&mut s, "logs", -2), (0, 12, -1));
    // Past the high watermark is refused.
    let past = DeleteRecordsRequest::default().with_topics(vec![
        delete_records_request::DeleteRecordsTopic::default()
            .with_name(name("logs"))
            .with_partitions(vec![
                delete_records_request::DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(21),
            ]),
    ]);
    send(&mut s, &request(ApiKey::DeleteRecords, 2, 5, &past));
    let (_, r): (i32, DeleteRecordsResponse) = response(&mut s, 1, 2);
    assert_eq!(r.topics[0].partitions[0].error_code, 1);

    let dirs = DescribeLogDirsRequest::default().with_topics(Some(vec![
        describe_log_dirs_request::DescribableLogDirTopic::default()
            .with_topic(name("logs"))
            .with_partitions(vec![0]),
    ]));
    send(&mut s, &request(ApiKey::DescribeLogDirs, 4, 6, &dirs));
    let (_, r): (i32, DescribeLogDirsResponse) = response(&mut s, 1, 4);
    let d = &r.results[0];
    assert!(d.total_bytes > 0 && d.usable_bytes > 0 && d.usable_bytes <= d.total_bytes);
    let size = d.topics[0].partitions[0].partition_size;
    assert!(size > 0, "the log has bytes: {size}");
}
