//! `sluice group list|describe|delete|reset-offsets`: consumer groups on any Kafka
//! cluster (every broker is asked for its groups): members and what they are assigned, committed offsets and lag, and
//! moving a stopped group's offsets.

use std::collections::BTreeMap;

use kafka_protocol::messages::{
    offset_commit_request, ApiKey, DeleteGroupsRequest, DeleteGroupsResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, ListGroupsRequest, ListGroupsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_net::client::Client;

use crate::cli::{self, fail, CliResult};
use crate::console::{outln, Out};

fn gid(s: &str) -> GroupId {
    GroupId(StrBytes::from_string(s.to_string()))
}

/// Every broker's groups: each broker answers ListGroups for the groups it
/// coordinates, so the brokers Metadata names are asked in turn (as Kafka's admin
/// client does).
pub fn list(bootstrap: &str) -> CliResult<()> {
    let mut client = cli::connect(bootstrap)?;
    let mut out = Out::new();
    let md = cli::metadata(&mut client, Some(&[]))?;
    let mut groups: BTreeMap<String, (String, String)> = BTreeMap::new();
    let brokers: Vec<String> = md
        .brokers
        .iter()
        .map(|b| format!("{}:{}", b.host.as_str(), b.port))
        .collect();
    for (i, addr) in brokers.iter().enumerate() {
        // The broker asked first answers on the connection already open.
        let mut other;
        let c = if i == 0 && brokers.len() == 1 {
            &mut client
        } else {
            other = cli::connect(addr)?;
            &mut other
        };
        let (_, r): (i16, ListGroupsResponse) = c
            .call(ApiKey::ListGroups, 4, &ListGroupsRequest::default())
            .map_err(|e| fail(format!("{addr}: {e}")))?;
        cli::check(r.error_code, &format!("list groups at {addr}"), None)?;
        for g in &r.groups {
            groups.insert(
                g.group_id.0.to_string(),
                (g.group_state.to_string(), g.protocol_type.to_string()),
            );
        }
    }
    outln!(out, "{:<40} {:<20} protocol type", "group", "state")?;
    for (id, (state, protocol)) in groups {
        outln!(out, "{id:<40} {state:<20} {protocol}")?;
    }
    Ok(())
}

/// The (topic, partitions) of a consumer-protocol assignment (its version first,
/// then the body); empty if it does not decode (another protocol).
fn assignment_partitions(b: &bytes::Bytes) -> Vec<(String, Vec<i32>)> {
    use kafka_protocol::protocol::Decodable;
    let mut buf = b.clone();
    if buf.len() < 2 {
        return Vec::new();
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]).clamp(0, 3);
    bytes::Buf::advance(&mut buf, 2);
    kafka_protocol::messages::ConsumerProtocolAssignment::decode(&mut buf, version)
        .map(|a| {
            a.assigned_partitions
                .into_iter()
                .map(|tp| (tp.topic.0.to_string(), tp.partitions))
                .collect()
        })
        .unwrap_or_default()
}

/// Committed offsets of a group: (topic, partition) -> offset.
fn committed(client: &mut Client, group: &str) -> CliResult<BTreeMap<(String, i32), i64>> {
    let req = OffsetFetchRequest::default()
        .with_group_id(gid(group))
        .with_topics(None);
    let (_, r): (i16, OffsetFetchResponse) =
        client.call(ApiKey::OffsetFetch, 7, &req).map_err(fail)?;
    cli::check(r.error_code, &format!("offsets of group {group}"), None)?;
    let mut out = BTreeMap::new();
    for t in &r.topics {
        for p in &t.partitions {
            if p.committed_offset >= 0 {
                out.insert(
                    (t.name.0.to_string(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }
    Ok(out)
}

pub fn describe(bootstrap: &str, group: &str) -> CliResult<()> {
    let mut client = cli::connect(bootstrap)?;
    let mut out = Out::new();
    let req = DescribeGroupsRequest::default().with_groups(vec![gid(group)]);
    let (_, r): (i16, DescribeGroupsResponse) =
        client.call(ApiKey::DescribeGroups, 5, &req).map_err(fail)?;
    let g = r.groups.first().ok_or("no answer for the group")?;
    cli::check(g.error_code, &format!("group {group}"), None)?;
    let offsets = committed(&mut client, group)?;
    if g.group_state.as_str() == "Dead" && offsets.is_empty() {
        return Err(format!("group {group} does not exist").into());
    }
    outln!(
        out,
        "group {group}  state {}  protocol {} {}  members {}",
        g.group_state.as_str(),
        g.protocol_type.as_str(),
        g.protocol_data.as_str(),
        g.members.len()
    )?;
    // Who owns each partition.
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    for m in &g.members {
        let parts = assignment_partitions(&m.member_assignment);
        let shown: Vec<String> = parts.iter().map(|(t, ps)| format!("{t}{ps:?}")).collect();
        outln!(
            out,
            "  member {}  client {}  instance {}  assigned {}",
            m.member_id.as_str(),
            m.client_id.as_str(),
            m.group_instance_id.as_ref().map_or("-", |i| i.as_str()),
            shown.join(" ")
        )?;
        for (t, ps) in parts {
            for p in ps {
                owner.insert((t.clone(), p), m.client_id.to_string());
            }
        }
    }
    // Every partition of every topic with a commit or an owner.
    let mut topics: Vec<String> = offsets.keys().map(|(t, _)| t.clone()).collect();
    topics.extend(owner.keys().map(|(t, _)| t.clone()));
    topics.sort();
    topics.dedup();
    outln!(
        out,
        "{:<30} {:>9} {:>14} {:>14} {:>10}  owner",
        "topic",
        "partition",
        "committed",
        "log end",
        "lag"
    )?;
    for t in topics {
        let n = cli::partitions_of(&mut client, &t)?;
        let ends = cli::offsets(&mut client, &t, n, -1)?;
        for p in 0..n {
            let c = offsets.get(&(t.clone(), p)).copied();
            let end = ends
                .get(usize::try_from(p).unwrap_or(0))
                .copied()
                .unwrap_or(-1);
            let lag = c.map_or_else(|| "-".to_string(), |c| (end - c).max(0).to_string());
            outln!(
                out,
                "{:<30} {:>9} {:>14} {:>14} {:>10}  {}",
                t,
                p,
                c.map_or_else(|| "-".to_string(), |c| c.to_string()),
                end,
                lag,
                owner.get(&(t.clone(), p)).map_or("-", String::as_str)
            )?;
        }
    }
    Ok(())
}

pub fn delete(bootstrap: &str, group: &str) -> CliResult<()> {
    let mut client = cli::connect(bootstrap)?;
    let mut out = Out::new();
    let req = DeleteGroupsRequest::default().with_groups_names(vec![gid(group)]);
    let (_, r): (i16, DeleteGroupsResponse) =
        client.call(ApiKey::DeleteGroups, 2, &req).map_err(fail)?;
    for g in &r.results {
        cli::check(g.error_code, &format!("delete group {group}"), None)?;
    }
    outln!(out, "deleted group {group}")?;
    Ok(())
}

/// Where reset-offsets moves a group.
#[derive(Debug, Clone, Copy)]
pub enum ResetTo {
    Earliest,
    Latest,
    Offset(i64),
    /// Milliseconds since 1970: the first offset at or after it.
    Timestamp(i64),
}

pub fn parse_reset(
    earliest: bool,
    latest: bool,
    offset: Option<i64>,
    ts: Option<i64>,
) -> CliResult<ResetTo> {
    match (earliest, latest, offset, ts) {
        (true, false, None, None) => Ok(ResetTo::Earliest),
        (false, true, None, None) => Ok(ResetTo::Latest),
        (false, false, Some(o), None) if o >= 0 => Ok(ResetTo::Offset(o)),
        (false, false, Some(o), None) => {
            Err(format!("--to-offset {o}: must not be negative").into())
        }
        (false, false, None, Some(t)) if t >= 0 => Ok(ResetTo::Timestamp(t)),
        (false, false, None, Some(t)) => {
            Err(format!("--to-timestamp {t}: must not be negative").into())
        }
        _ => Err(
            "give exactly one of --to-earliest, --to-latest, --to-offset, --to-timestamp".into(),
        ),
    }
}

pub fn reset_offsets(
    bootstrap: &str,
    group: &str,
    topic: &str,
    to: ResetTo,
    dry_run: bool,
) -> CliResult<()> {
    let mut client = cli::connect(bootstrap)?;
    let mut out = Out::new();
    let n = cli::partitions_of(&mut client, topic)?;
    let earliest = cli::offsets(&mut client, topic, n, -2)?;
    let latest = cli::offsets(&mut client, topic, n, -1)?;
    let at_time = match to {
        ResetTo::Timestamp(t) => Some(cli::offsets(&mut client, topic, n, t)?),
        _ => None,
    };
    let before = committed(&mut client, group)?;
    let mut targets = Vec::new();
    for p in 0..n {
        let i = usize::try_from(p).unwrap_or(0);
        let (lo, hi) = (earliest[i], latest[i]);
        let want = match to {
            ResetTo::Earliest => lo,
            ResetTo::Latest => hi,
            ResetTo::Offset(o) => o.clamp(lo, hi),
            // No record at or after the time: the end.
            ResetTo::Timestamp(_) => at_time
                .as_ref()
                .map_or(hi, |v| if v[i] < 0 { hi } else { v[i] }),
        };
        targets.push((p, want));
    }
    outln!(
        out,
        "{:<30} {:>9} {:>14} {:>14}",
        "topic",
        "partition",
        "committed",
        "new offset"
    )?;
    for (p, want) in &targets {
        outln!(
            out,
            "{:<30} {:>9} {:>14} {:>14}",
            topic,
            p,
            before
                .get(&(topic.to_string(), *p))
                .map_or_else(|| "-".to_string(), ToString::to_string),
            want
        )?;
    }
    if dry_run {
        outln!(out, "(dry run: nothing changed)")?;
        return Ok(());
    }
    let req = OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(cli::name(topic))
                .with_partitions(
                    targets
                        .iter()
                        .map(|(p, o)| {
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(*p)
                                .with_committed_offset(*o)
                                .with_committed_leader_epoch(-1)
                                .with_committed_metadata(Some(StrBytes::from_static_str("")))
                        })
                        .collect(),
                ),
        ]);
    let (_, r): (i16, OffsetCommitResponse) =
        client.call(ApiKey::OffsetCommit, 8, &req).map_err(fail)?;
    for t in &r.topics {
        for p in &t.partitions {
            if p.error_code == 25 {
                return Err(format!(
                    "group {group} has active members: stop its consumers before resetting offsets"
                )
                .into());
            }
            cli::check(
                p.error_code,
                &format!("commit {topic}-{}", p.partition_index),
                None,
            )?;
        }
    }
    outln!(out, "reset group {group} on {topic}")?;
    Ok(())
}
