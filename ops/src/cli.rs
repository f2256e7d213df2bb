//! `sluice topic|produce|consume`: Kafka command-line tools that work against any
//! Kafka-compatible broker, built on the client in `sluice-net`.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::{
    create_partitions_request, create_topics_request, delete_topics_request,
    describe_configs_request, fetch_request, incremental_alter_configs_request,
    list_offsets_request, metadata_request, produce_request, ApiKey, CreatePartitionsRequest,
    CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse, FetchRequest,
    FetchResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kafka_protocol::ResponseError;
use sluice_net::client::{partition_for_key, Client, ClientError};

const TIMEOUT: Duration = Duration::from_secs(10);

use crate::console::{outln, Out};
pub use crate::console::{CliError, CliResult};

pub(crate) fn connect(bootstrap: &str) -> CliResult<Client> {
    Client::connect(bootstrap, TIMEOUT).map_err(fail)
}

fn err(e: &ClientError) -> CliError {
    CliError::Failed(e.to_string())
}

/// Any error as a failed command.
pub(crate) fn fail(e: impl std::fmt::Display) -> CliError {
    CliError::Failed(e.to_string())
}

/// `Err` with Kafka's name for a non-zero error code.
pub(crate) fn check(code: i16, what: &str, message: Option<&StrBytes>) -> CliResult<()> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(e) => Err(match message {
            Some(m) if !m.is_empty() => format!("{what}: {e} ({m})").into(),
            _ => format!("{what}: {e}").into(),
        }),
    }
}

pub(crate) fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Parses `key=value` pairs.
pub fn parse_configs(pairs: &[String]) -> CliResult<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| CliError::Failed(format!("`{p}` is not key=value")))
        })
        .collect()
}

/// Metadata of `topics` (`None`: all; an empty list: brokers only).
pub(crate) fn metadata(
    client: &mut Client,
    topics: Option<&[&str]>,
) -> CliResult<MetadataResponse> {
    let req = MetadataRequest::default()
        .with_topics(topics.map(|t| {
            t.iter()
                .map(|n| metadata_request::MetadataRequestTopic::default().with_name(Some(name(n))))
                .collect()
        }))
        .with_allow_auto_topic_creation(false);
    client
        .call(ApiKey::Metadata, 12, &req)
        .map(|(_, r)| r)
        .map_err(|e| err(&e))
}

/// Partition count of `topic`.
pub(crate) fn partitions_of(client: &mut Client, topic: &str) -> CliResult<i32> {
    let md = metadata(client, Some(&[topic]))?;
    let t = md
        .topics
        .first()
        .ok_or_else(|| format!("no metadata for {topic}"))?;
    check(t.error_code, &format!("topic {topic}"), None)?;
    i32::try_from(t.partitions.len()).map_err(fail)
}

pub fn topic_create(
    bootstrap: &str,
    topic: &str,
    (partitions, replication_factor): (i32, i16),
    configs: &BTreeMap<String, String>,
) -> CliResult<()> {
    let mut client = connect(bootstrap)?;
    let mut out = Out::new();
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        create_topics_request::CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.clone()))
                            .with_value(Some(StrBytes::from_string(v.clone())))
                    })
                    .collect(),
            )]);
    let (_, r): (i16, CreateTopicsResponse) = client
        .call(ApiKey::CreateTopics, 5, &req)
        .map_err(|e| err(&e))?;
    for t in &r.topics {
        check(
            t.error_code,
            &format!("create {topic}"),
            t.error_message.as_ref(),
        )?;
    }
    outln!(out, "created topic {topic} with {partitions} partitions")?;
    Ok(())
}

pub fn topic_list(bootstrap: &str) -> CliResult<()> {
    let mut client = connect(bootstrap)?;
    let mut out = Out::new();
    let md = metadata(&mut client, None)?;
    let mut names: Vec<String> = md
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.as_str().to_string()))
        .collect();
    names.sort();
    for n in names {
        outln!(out, "{n}")?;
    }
    Ok(())
}

/// The offset `ts` finds (-2 earliest, -1 latest, else a time) in each partition,
/// asked of each partition's leader (the brokers Metadata names); -1 for a
/// partition without a leader.
pub(crate) fn offsets(
    client: &mut Client,
    topic: &str,
    partitions: i32,
    ts: i64,
) -> CliResult<Vec<i64>> {
    let md = metadata(client, Some(&[topic]))?;
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for t in &md.topics {
        for p in &t.partitions {
            if p.leader_id.0 >= 0 {
                by_leader
                    .entry(p.leader_id.0)
                    .or_default()
                    .push(p.partition_index);
            }
        }
    }
    let mut out = vec![-1; usize::try_from(partitions).unwrap_or(0)];
    for (leader, parts) in by_leader {
        let b = md
            .brokers
            .iter()
            .find(|b| b.node_id.0 == leader)
            .ok_or_else(|| fail(format!("broker {leader} leads {topic} but is not listed")))?;
        let mut to_leader = connect(&format!("{}:{}", b.host.as_str(), b.port))?;
        for (p, offset) in leader_offsets(&mut to_leader, topic, &parts, ts)? {
            if let Some(slot) = usize::try_from(p).ok().and_then(|i| out.get_mut(i)) {
                *slot = offset;
            }
        }
    }
    Ok(out)
}

/// ListOffsets for `parts` of `topic` on the broker leading them.
fn leader_offsets(
    client: &mut Client,
    topic: &str,
    parts: &[i32],
    ts: i64,
) -> CliResult<Vec<(i32, i64)>> {
    let req = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(
                parts
                    .iter()
                    .map(|p| {
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(*p)
                            .with_timestamp(ts)
                    })
                    .collect(),
            )]);
    let (_, r): (i16, ListOffsetsResponse) = client
        .call(ApiKey::ListOffsets, 7, &req)
        .map_err(|e| err(&e))?;
    let mut out = Vec::new();
    for t in &r.topics {
        for p in &t.partitions {
            check(
                p.error_code,
                &format!("offsets of {topic}-{}", p.partition_index),
                None,
            )?;
            out.push((p.partition_index, p.offset));
        }
    }
    Ok(out)
}

pub fn topic_describe(bootstrap: &str, topic: &str) -> CliResult<()> {
    let mut client = connect(bootstrap)?;
    let mut out = Out::new();
    let md = metadata(&mut client, Some(&[topic]))?;
    let t = md.topics.first().ok_or("no metadata")?;
    check(t.error_code, &format!("topic {topic}"), None)?;
    let n = i32::try_from(t.partitions.len()).map_err(fail)?;
    let earliest = offsets(&mut client, topic, n, -2)?;
    let latest = offsets(&mut client, topic, n, -1)?;
    let rf = t.partitions.first().map_or(0, |p| p.replica_nodes.len());
    outln!(
        out,
        "topic {topic}  id {}  partitions {n}  replication factor {rf}",
        t.topic_id
    )?;
    outln!(
        out,
        "{:>9} {:>6} {:>5} {:<12} {:<12} {:>14} {:>14}",
        "partition",
        "leader",
        "epoch",
        "replicas",
        "isr",
        "log start",
        "high watermark"
    )?;
    let ids = |v: &[kafka_protocol::messages::BrokerId]| {
        v.iter()
            .map(|b| b.0.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut parts: Vec<_> = t.partitions.iter().collect();
    parts.sort_by_key(|p| p.partition_index);
    for p in parts {
        let i = usize::try_from(p.partition_index).unwrap_or(0);
        outln!(
            out,
            "{:>9} {:>6} {:>5} {:<12} {:<12} {:>14} {:>14}",
            p.partition_index,
            p.leader_id.0,
            p.leader_epoch,
            ids(&p.replica_nodes),
            ids(&p.isr_nodes),
            earliest.get(i).copied().unwrap_or(-1),
            latest.get(i).copied().unwrap_or(-1)
        )?;
    }
    let req = DescribeConfigsRequest::default().with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configuration_keys(None),
    ]);
    let (_, r): (i16, DescribeConfigsResponse) = client
        .call(ApiKey::DescribeConfigs, 1, &req)
        .map_err(|e| err(&e))?;
    outln!(out, "configs:")?;
    for res in &r.results {
        check(
            res.error_code,
            "describe configs",
            res.error_message.as_ref(),
        )?;
        for c in &res.configs {
            let source = if c.config_source == 1 {
                "  (set on the topic)"
            } else {
                ""
            };
            outln!(
                out,
                "  {}={}{source}",
                c.name.as_str(),
                c.value.as_ref().map_or("", |v| v.as_str())
            )?;
        }
    }
    Ok(())
}

pub fn topic_alter(
    bootstrap: &str,
    topic: &str,
    set: &BTreeMap<String, String>,
    delete: &[String],
    partitions: Option<i32>,
) -> CliResult<()> {
    let mut client = connect(bootstrap)?;
    let mut out = Out::new();
    if !set.is_empty() || !delete.is_empty() {
        let mut configs: Vec<_> = set
            .iter()
            .map(|(k, v)| {
                incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_string(v.clone())))
            })
            .collect();
        configs.extend(delete.iter().map(|k| {
            incremental_alter_configs_request::AlterableConfig::default()
                .with_name(StrBytes::from_string(k.clone()))
                .with_config_operation(1)
        }));
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_string(topic.to_string()))
                .with_configs(configs),
        ]);
        let (_, r): (i16, IncrementalAlterConfigsResponse) = client
            .call(ApiKey::IncrementalAlterConfigs, 1, &req)
            .map_err(|e| err(&e))?;
        for res in &r.responses {
            check(res.error_code, "alter configs", res.error_message.as_ref())?;
        }
        outln!(out, "altered configs of {topic}")?;
    }
    if let Some(count) = partitions {
        let req = CreatePartitionsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(name(topic))
                    .with_count(count),
            ]);
        let (_, r): (i16, CreatePartitionsResponse) = client
            .call(ApiKey::CreatePartitions, 1, &req)
            .map_err(|e| err(&e))?;
        for res in &r.results {
            check(res.error_code, "add partitions", res.error_message.as_ref())?;
        }
        outln!(out, "{topic} now has {count} partitions")?;
    }
    Ok(())
}

pub fn topic_delete(bootstrap: &str, topic: &str) -> CliResult<()> {
    let mut client = connect(bootstrap)?;
    let mut out = Out::new();
    let v = client
        .version(ApiKey::DeleteTopics, 6)
        .map_err(|e| err(&e))?;
    let req = if v >= 6 {
        DeleteTopicsRequest::default().with_topics(vec![
            delete_topics_request::DeleteTopicState::default().with_name(Some(name(topic))),
        ])
    } else {
        DeleteTopicsRequest::default().with_topic_names(vec![name(topic)])
    }
    .with_timeout_ms(10_000);
    let r: DeleteTopicsResponse = client
        .call_version(ApiKey::DeleteTopics, v, &req)
        .map_err(|e| err(&e))?;
    for t in &r.responses {
        check(
            t.error_code,
            &format!("delete {topic}"),
            t.error_message.as_ref(),
        )?;
    }
    outln!(out, "deleted topic {topic}")?;
    Ok(())
}

/// How `sluice produce` sends.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    pub key_separator: Option<String>,
    pub acks: i16,
    pub compression: Compression,
    pub partition: Option<i32>,
    pub batch_records: usize,
}

/// Parses a codec name as Kafka's `compression.type` spells it.
pub fn parse_compression(s: &str) -> CliResult<Compression> {
    Ok(match s {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        _ => {
            return Err(format!("compression `{s}` is not none, gzip, snappy, lz4 or zstd").into())
        }
    })
}

/// Parses acks: `0`, `1`, `all` or `-1`.
pub fn parse_acks(s: &str) -> CliResult<i16> {
    match s {
        "0" => Ok(0),
        "1" => Ok(1),
        "all" | "-1" => Ok(-1),
        _ => Err(format!("acks `{s}` is not 0, 1 or all").into()),
    }
}

/// Console producer: one record per line of stdin.
pub fn produce(bootstrap: &str, topic: &str, opts: &ProduceOptions) -> CliResult<u64> {
    let mut client = connect(bootstrap)?;
    // An unknown topic is left to the broker to auto-create, as other console
    // producers do.
    let partitions = if let Ok(n) = partitions_of(&mut client, topic) {
        n
    } else {
        metadata_auto_create(&mut client, topic)?.max(1)
    };
    let stdin = std::io::stdin();
    let mut pending: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    let mut next_unkeyed = 0i32;
    let mut total = 0u64;
    let mut buffered = 0usize;
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| format!("reading stdin: {e}"))?;
        let (key, value) = match &opts.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(Bytes::from(k.to_string())), v.to_string()),
                None => (None, line.clone()),
            },
            None => (None, line.clone()),
        };
        let partition = opts.partition.unwrap_or_else(|| {
            if let Some(k) = &key {
                partition_for_key(k, partitions)
            } else {
                next_unkeyed = (next_unkeyed + 1) % partitions;
                next_unkeyed
            }
        });
        pending.entry(partition).or_default().push(Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: sluice_engine::now_ms(),
            key,
            value: Some(Bytes::from(value)),
            headers: IndexMap::new(),
            delete_horizon: false,
        });
        total += 1;
        buffered += 1;
        if buffered >= opts.batch_records {
            send_batches(&mut client, topic, opts, &mut pending)?;
            buffered = 0;
        }
    }
    send_batches(&mut client, topic, opts, &mut pending)?;
    Ok(total)
}

fn metadata_auto_create(client: &mut Client, topic: &str) -> CliResult<i32> {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(name(topic)))]))
        .with_allow_auto_topic_creation(true);
    let (_, md): (i16, MetadataResponse) = client
        .call(ApiKey::Metadata, 12, &req)
        .map_err(|e| err(&e))?;
    let t = md.topics.first().ok_or("no metadata")?;
    check(t.error_code, &format!("topic {topic}"), None)?;
    i32::try_from(t.partitions.len()).map_err(fail)
}

fn send_batches(
    client: &mut Client,
    topic: &str,
    opts: &ProduceOptions,
    pending: &mut BTreeMap<i32, Vec<Record>>,
) -> CliResult<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let mut data = Vec::new();
    for (p, mut records) in std::mem::take(pending) {
        // Offsets within the batch count from 0; the broker assigns the real ones.
        for (i, r) in records.iter_mut().enumerate() {
            r.offset = i64::try_from(i).unwrap_or(i64::MAX);
        }
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: opts.compression,
            },
        )
        .map_err(|e| format!("encoding records: {e}"))?;
        data.push(
            produce_request::PartitionProduceData::default()
                .with_index(p)
                .with_records(Some(buf.freeze())),
        );
    }
    let req = ProduceRequest::default()
        .with_acks(opts.acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(data)]);
    let v = client.version(ApiKey::Produce, 9).map_err(|e| err(&e))?;
    if opts.acks == 0 {
        return client
            .send_only(ApiKey::Produce, v, &req)
            .map_err(|e| err(&e));
    }
    let r: ProduceResponse = client
        .call_version(ApiKey::Produce, v, &req)
        .map_err(|e| err(&e))?;
    for t in &r.responses {
        for p in &t.partition_responses {
            check(
                p.error_code,
                &format!("produce to {topic}-{}", p.index),
                p.error_message.as_ref(),
            )?;
        }
    }
    Ok(())
}

/// Where `sluice consume` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Beginning,
    End,
    Offset(i64),
    Timestamp(i64),
}

/// Parses `beginning`, `end`, an offset, or `@<unix ms>`.
pub fn parse_start(s: &str) -> CliResult<StartAt> {
    match s {
        "beginning" | "earliest" => Ok(StartAt::Beginning),
        "end" | "latest" => Ok(StartAt::End),
        _ => {
            if let Some(ts) = s.strip_prefix('@') {
                return ts.parse().map(StartAt::Timestamp).map_err(|_| {
                    fail(format!("`{s}`: @ takes a time in milliseconds since 1970"))
                });
            }
            s.parse()
                .ok()
                .filter(|&o: &i64| o >= 0)
                .map(StartAt::Offset)
                .ok_or_else(|| fail(format!("`{s}` is not beginning, end, an offset or @<ms>")))
        }
    }
}

/// How `sluice consume` prints and stops.
#[derive(Debug, Clone)]
#[allow(clippy::struct_excessive_bools)]
pub struct ConsumeOptions {
    pub start: StartAt,
    pub partition: Option<i32>,
    pub print_key: bool,
    pub print_headers: bool,
    pub print_position: bool,
    pub max_records: Option<u64>,
    /// Stop at the end of every partition instead of waiting for more.
    pub exit_at_end: bool,
}

/// Console consumer: prints values (and optionally keys, headers, partition and
/// offset), one record per line.
pub fn consume(bootstrap: &str, topic: &str, opts: &ConsumeOptions) -> CliResult<u64> {
    let mut client = connect(bootstrap)?;
    let n = partitions_of(&mut client, topic)?;
    let chosen: Vec<i32> = match opts.partition {
        Some(p) if (0..n).contains(&p) => vec![p],
        Some(p) => return Err(format!("{topic} has no partition {p}").into()),
        None => (0..n).collect(),
    };
    let mut position: BTreeMap<i32, i64> = BTreeMap::new();
    let starts = match opts.start {
        StartAt::Beginning => offsets(&mut client, topic, n, -2)?,
        StartAt::End => offsets(&mut client, topic, n, -1)?,
        StartAt::Offset(o) => vec![o; usize::try_from(n).unwrap_or(0)],
        StartAt::Timestamp(ts) => {
            let found = offsets(&mut client, topic, n, ts)?;
            let ends = offsets(&mut client, topic, n, -1)?;
            found
                .into_iter()
                .zip(ends)
                .map(|(f, e)| if f < 0 { e } else { f })
                .collect()
        }
    };
    for p in &chosen {
        position.insert(*p, starts[usize::try_from(*p).unwrap_or(0)]);
    }
    let mut printed = 0u64;
    let mut out = Out::new();
    loop {
        let req = FetchRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_max_wait_ms(if opts.exit_at_end { 100 } else { 500 })
            .with_min_bytes(1)
            .with_max_bytes(8 << 20)
            .with_isolation_level(1)
            .with_session_epoch(-1)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(
                    position
                        .iter()
                        .map(|(p, o)| {
                            fetch_request::FetchPartition::default()
                                .with_partition(*p)
                                .with_fetch_offset(*o)
                                .with_partition_max_bytes(1 << 20)
                        })
                        .collect(),
                )]);
        let (_, r): (i16, FetchResponse) =
            client.call(ApiKey::Fetch, 11, &req).map_err(|e| err(&e))?;
        check(r.error_code, "fetch", None)?;
        let mut all_at_end = true;
        for t in &r.responses {
            for p in &t.partitions {
                check(
                    p.error_code,
                    &format!("fetch {topic}-{}", p.partition_index),
                    None,
                )?;
                let Some(pos) = position.get_mut(&p.partition_index) else {
                    continue;
                };
                let mut records = p.records.clone().unwrap_or_default();
                let sets = RecordBatchDecoder::decode_all(&mut records).map_err(|e| {
                    format!("decoding records of {topic}-{}: {e}", p.partition_index)
                })?;
                for set in sets {
                    for rec in set.records {
                        if rec.offset < *pos || rec.control {
                            continue;
                        }
                        *pos = rec.offset + 1;
                        out.write(format_args!(
                            "{}",
                            record_line(p.partition_index, &rec, opts)
                        ))?;
                        printed += 1;
                        if out.closed() || opts.max_records.is_some_and(|m| printed >= m) {
                            return Ok(printed);
                        }
                    }
                }
                if *pos < p.high_watermark {
                    all_at_end = false;
                }
            }
        }
        out.flush()?;
        if out.closed() || (opts.exit_at_end && all_at_end) {
            return Ok(printed);
        }
    }
}

/// One record as `sluice consume` prints it (with its newline).
fn record_line(partition: i32, r: &Record, opts: &ConsumeOptions) -> String {
    use std::fmt::Write as _;
    let text = |b: &Option<Bytes>| {
        b.as_ref()
            .map_or_else(String::new, |b| String::from_utf8_lossy(b).into_owned())
    };
    let mut line = String::new();
    if opts.print_position {
        let _ = write!(line, "{partition}\t{}\t", r.offset);
    }
    if opts.print_key {
        let _ = write!(line, "{}\t", text(&r.key));
    }
    if opts.print_headers {
        let h: Vec<String> = r
            .headers
            .iter()
            .map(|(k, v)| format!("{}={}", k.as_str(), text(v)))
            .collect();
        let _ = write!(line, "{}\t", h.join(","));
    }
    let _ = writeln!(line, "{}", text(&r.value));
    line
}
