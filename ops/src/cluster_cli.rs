//! `sluice cluster status`: the metadata quorum (voters, leader, term, the
//! leader's last log index and each voter's lag behind it) from DescribeQuorum,
//! and the brokers from Metadata, asked of any broker of the cluster.
//! `sluice cluster add-voter ID@HOST:PORT` / `remove-voter ID`: AddRaftVoter and
//! RemoveRaftVoter (KIP-853).

use kafka_protocol::messages::add_raft_voter_request::Listener;
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::{
    AddRaftVoterRequest, AddRaftVoterResponse, ApiKey, DescribeQuorumRequest,
    DescribeQuorumResponse, RemoveRaftVoterRequest, RemoveRaftVoterResponse,
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
        // A leader that was just removed from the voters leads until it steps
        // down; its row says what it is in the membership (the first line says
        // who leads).
        let role = if r.replica_id == p.leader_id && kind == "voter" {
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
    let md = cli::metadata(&mut client, Some(&[]))?;
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

/// `ID@HOST:PORT`, as in `cluster.voters`.
fn parse_voter(text: &str) -> CliResult<(i32, String, u16)> {
    let bad = || -> crate::console::CliError {
        format!("`{text}`: use ID@HOST:PORT (the node's cluster.listen)").into()
    };
    let (id, addr) = text.split_once('@').ok_or_else(bad)?;
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let id: i32 = id.parse().ok().filter(|i| *i >= 0).ok_or_else(bad)?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((id, host.to_string(), port))
}

pub fn add_voter(bootstrap: &str, voter: &str) -> CliResult<()> {
    let (id, host, port) = parse_voter(voter)?;
    let mut client = cli::connect(bootstrap)?;
    let req = AddRaftVoterRequest::default()
        .with_voter_id(id)
        .with_timeout_ms(30_000)
        .with_listeners(vec![Listener::default()
            .with_name(StrBytes::from_static_str("CONTROLLER"))
            .with_host(StrBytes::from_string(host))
            .with_port(port)]);
    let (_, r): (i16, AddRaftVoterResponse) =
        client.call(ApiKey::AddRaftVoter, 0, &req).map_err(fail)?;
    cli::check(
        r.error_code,
        &format!("add voter {id}"),
        r.error_message.as_ref(),
    )?;
    outln!(Out::new(), "node {id} is a voter")?;
    Ok(())
}

pub fn remove_voter(bootstrap: &str, id: i32) -> CliResult<()> {
    let mut client = cli::connect(bootstrap)?;
    let req = RemoveRaftVoterRequest::default().with_voter_id(id);
    let (_, r): (i16, RemoveRaftVoterResponse) = client
        .call(ApiKey::RemoveRaftVoter, 0, &req)
        .map_err(fail)?;
    cli::check(
        r.error_code,
        &format!("remove voter {id}"),
        r.error_message.as_ref(),
    )?;
    outln!(
        Out::new(),
        "node {id} is no longer a voter (it still follows the log as a broker)"
    )?;
    Ok(())
}
