//! `sluice cluster status`: the metadata quorum (voters, leader, term, the
//! leader's last log index and each voter's lag behind it) from DescribeQuorum,
//! and the brokers from Metadata, asked of any broker of the cluster.

use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{
    ApiKey, DescribeQuorumRequest, DescribeQuorumResponse, MetadataRequest, MetadataResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_net::handlers::describe_quorum::METADATA_TOPIC;

use crate::cli::{self, fail, CliResult};
use crate::console::{outln, Out};

pub fn status(bootstrap: &str) -> CliResult<()> {
    let mut client = cli::connect(bootstrap)?;
    let mut out = Out::new();
    let req = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(cli::name(METADATA_TOPIC))
        .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
    let (_, q): (i16, DescribeQuorumResponse) =
        client.call(ApiKey::DescribeQuorum, 1, &req).map_err(fail)?;
    cli::check(q.error_code, "describe quorum", q.error_message.as_ref())?;
    let p = q
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or("describe quorum: no partition in the answer")?;
    cli::check(
        p.error_code,
        "describe quorum",
        p.error_message.as_ref().filter(|m| !m.is_empty()),
    )?;
    outln!(out, "leader        {}", p.leader_id.0)?;
    outln!(out, "term          {}", p.leader_epoch)?;
    outln!(out, "last index    {}", p.high_watermark)?;
    outln!(out, "")?;
    outln!(
        out,
        "{:<8} {:<10} {:>12} {:>8}",
        "node",
        "role",
        "log end",
        "lag"
    )?;
    let rows = p
        .current_voters
        .iter()
        .map(|r| (r, "voter"))
        .chain(p.observers.iter().map(|r| (r, "learner")));
    for (r, kind) in rows {
        let role = if r.replica_id == p.leader_id {
            "leader"
        } else {
            kind
        };
        let (end, lag) = if r.log_end_offset < 0 {
            ("?".to_string(), "?".to_string())
        } else {
            (
                r.log_end_offset.to_string(),
                (p.high_watermark - r.log_end_offset).max(0).to_string(),
            )
        };
        outln!(
            out,
            "{:<8} {:<10} {:>12} {:>8}",
            r.replica_id.0,
            role,
            end,
            lag
        )?;
    }
    let (_, md): (i16, MetadataResponse) = client
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(Vec::new())),
        )
        .map_err(fail)?;
    outln!(out, "")?;
    outln!(
        out,
        "{:<8} {:<30} {:<12} state",
        "broker",
        "endpoint",
        "rack"
    )?;
    let mut ids: Vec<i32> = md.brokers.iter().map(|b| b.node_id.0).collect();
    for b in &md.brokers {
        outln!(
            out,
            "{:<8} {:<30} {:<12} alive",
            b.node_id.0,
            format!("{}:{}", b.host.as_str(), b.port),
            b.rack.as_ref().map_or("-", StrBytes::as_str)
        )?;
    }
    ids.sort_unstable();
    for v in p.current_voters.iter().map(|r| r.replica_id.0) {
        if ids.binary_search(&v).is_err() {
            outln!(out, "{v:<8} {:<30} {:<12} fenced or down", "-", "-")?;
        }
    }
    Ok(())
}
