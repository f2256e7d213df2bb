//! Fetch (v4+): whole batches from each partition's fetch offset, read on the shard
//! that owns the partition (one hop per shard and round), up to the partition's
//! `partition_max_bytes` and the response's `max_bytes`: the answer's records stay
//! within `max_bytes`, except that the first partition with data always gets its
//! first batch whole, as in Kafka (KIP-74), so a consumer never stalls on a batch
//! larger than its limits. When fewer than `min_bytes` are ready the request
//! waits, up to `max_wait_ms`, for an append to any of its partitions and reads again.
//!
//! Consumers read below the high watermark (`read_committed` reads below the last
//! stable offset, which equals it while there are no transactions). Fetch sessions
//! (KIP-227) are kept per shard in [`crate::fetch_session`]: a full request with epoch
//! 0 opens one, incremental requests name only what changed, and the answer to an
//! incremental request holds only partitions with data or changed offsets.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, RequestHeader};
use sluice_engine::{ReadChunk, TopicPartition};

use crate::body::{FileRange, Part};
use crate::context::BrokerContext;
use crate::fetch_response::{self, EndpointOut, PartitionOut, TopicOut};
use crate::fetch_session::{self, Asked, Plan};
use crate::kafka_error::{self as code, KafkaError};
use crate::registry::HandlerFuture;

const KEY: i16 = ApiKey::Fetch as i16;

/// What one partition's read found.
pub(crate) struct Read {
    data: Vec<Part>,
    high_watermark: i64,
    log_start_offset: i64,
    /// What a follower's wait compares (consumers wait on the high watermark).
    log_end_offset: u64,
}

impl Read {
    fn len(&self) -> usize {
        self.data
            .iter()
            .map(|p| usize::try_from(p.len()).unwrap_or(usize::MAX))
            .sum()
    }
}

/// One partition to read: its place in the asked list and what to read.
struct Wanted {
    index: usize,
    tp: TopicPartition,
    offset: u64,
    max_bytes: usize,
    current_leader_epoch: i32,
}

#[allow(clippy::needless_pass_by_value)]
pub fn handle(ctx: Rc<BrokerContext>, header: RequestHeader, mut body: Bytes) -> HandlerFuture {
    Box::pin(async move {
        let v = header.request_api_version;
        let req: FetchRequest = super::decode(&mut body, KEY, v)?;
        let wait = Duration::from_millis(
            u64::try_from(req.max_wait_ms.max(0))
                .unwrap_or(0)
                .min(ctx.settings.fetch_wait_max_ms),
        );
        let min_bytes = usize::try_from(req.min_bytes.max(0)).unwrap_or(0);
        let max_bytes = usize::try_from(req.max_bytes.max(0)).unwrap_or(0);
        let plan = match fetch_session::plan(&ctx.services.fetch_sessions, &req, v) {
            Ok(plan) => plan,
            Err(e) => {
                let response = FetchResponse::default()
                    .with_error_code(sluice_engine::metrics::tally(e.code))
                    .with_session_id(0);
                return super::encode(&response, KEY, v);
            }
        };
        // A follower's fetch (Kafka's replica id): read up to the log end, and the
        // leader records how far the follower got.
        let replica_id = if v >= 15 {
            req.replica_state.replica_id.0
        } else {
            req.replica_id.0
        };
        let follower = (replica_id >= 0).then_some(replica_id);
        let (errors, wanted) = resolve(&ctx, &plan.asked, v, max_bytes);
        let reads = read_until_ready(&ctx, &wanted, follower, min_bytes, wait).await;
        let mut results = kept_to_max_bytes(errors, &wanted, reads, max_bytes);
        let include = fetch_session::record_sent(&ctx.services.fetch_sessions, &plan, &results);
        let (topics, endpoints) = respond(
            &ctx,
            &plan,
            &wanted,
            &mut results,
            &include,
            req.isolation_level,
            v,
        );
        Ok(fetch_response::encode(
            v,
            0,
            plan.session_id,
            topics,
            &endpoints,
        ))
    })
}

/// What each asked partition got, in asked order.
pub(crate) type Results = Vec<Option<Result<Read, KafkaError>>>;

/// Offsets a fetch answer carries for a partition (what sessions compare).
pub(crate) fn answered_offsets(r: Option<&Result<Read, KafkaError>>) -> Option<(i64, i64, bool)> {
    match r {
        Some(Ok(read)) => Some((
            read.high_watermark,
            read.log_start_offset,
            !read.data.is_empty(),
        )),
        _ => None,
    }
}

/// Keeps the answer within `max_bytes`, in asked order, as Kafka does (KIP-74): the
/// first partition with data keeps what it read (each read was already limited to
/// `max_bytes`, so that is more only when its first batch alone is larger); later
/// partitions keep the whole batches that fit in what is left, possibly none.
fn kept_to_max_bytes(
    errors: Vec<Option<KafkaError>>,
    wanted: &[Wanted],
    reads: Vec<Result<Read, KafkaError>>,
    max_bytes: usize,
) -> Results {
    let mut budget = max_bytes;
    let mut first = true;
    let mut results: Results = errors.into_iter().map(|e| e.map(Err)).collect();
    for (w, r) in wanted.iter().zip(reads) {
        let r = r.map(|mut read| {
            if read.len() > 0 {
                if !first {
                    read.data = whole_batches_within(std::mem::take(&mut read.data), budget);
                }
                budget = budget.saturating_sub(read.len());
                first = false;
            }
            read
        });
        results[w.index] = Some(r);
    }
    results
}

/// The longest prefix of `parts` made of whole batches and at most `budget` bytes.
/// Parts are whole batches; a part in memory that does not fit is cut at its last
/// batch boundary that does (a file range is kept whole or not at all: its batch
/// boundaries are not known without reading it).
fn whole_batches_within(parts: Vec<Part>, mut budget: usize) -> Vec<Part> {
    let mut kept = Vec::new();
    for part in parts {
        let n = usize::try_from(part.len()).unwrap_or(usize::MAX);
        if n <= budget {
            budget -= n;
            kept.push(part);
            continue;
        }
        if let Part::Mem(bytes) = part {
            let cut = batch_prefix_len(&bytes, budget);
            if cut > 0 {
                kept.push(Part::Mem(bytes.slice(..cut)));
            }
        }
        break;
    }
    kept
}

/// Length of the longest run of whole record batches at the start of `batches`
/// that is at most `limit` bytes.
fn batch_prefix_len(batches: &[u8], limit: usize) -> usize {
    let mut at = 0usize;
    while let Some(size) = batches
        .get(at..)
        .and_then(sluice_engine::batch::BatchHeader::parse)
        .and_then(|h| h.total_bytes())
    {
        match at.checked_add(size) {
            Some(next) if next <= limit && next <= batches.len() => at = next,
            _ => break,
        }
    }
    at
}

/// The response topics: consecutive asked partitions of one topic form one entry;
/// only partitions with `include` set are answered.
fn respond(
    ctx: &BrokerContext,
    plan: &Plan,
    wanted: &[Wanted],
    results: &mut Results,
    include: &[bool],
    isolation: i8,
    v: i16,
) -> (Vec<TopicOut>, Vec<EndpointOut>) {
    let mut out: Vec<TopicOut> = Vec::new();
    let mut endpoints: BTreeMap<i32, EndpointOut> = BTreeMap::new();
    // Topic names as resolved (from v13 requests name topics by id only).
    let mut names: Vec<Option<&str>> = vec![None; plan.asked.len()];
    for w in wanted {
        if let Some(n) = names.get_mut(w.index) {
            *n = Some(&w.tp.topic);
        }
    }
    for (i, a) in plan.asked.iter().enumerate() {
        if !include.get(i).copied().unwrap_or(true) {
            continue;
        }
        if let (Some(Ok(read)), Some(name)) = (&results[i], names[i]) {
            let n = read.len();
            if n > 0 {
                sluice_engine::metrics::fetched(name, n as u64);
            }
        }
        let mut part = answer(a.partition, results[i].take(), isolation, v);
        if v >= 12 && part.error_code == code::NOT_LEADER_OR_FOLLOWER {
            if let Some((leader, epoch, b)) =
                names[i].and_then(|n| super::leader_hint(ctx, n, a.partition))
            {
                part.current_leader = Some((leader, epoch));
                endpoints.entry(leader).or_insert_with(|| EndpointOut {
                    node_id: b.id,
                    host: b.host,
                    port: i32::from(b.port),
                    rack: b.rack,
                });
            }
        }
        match out.last_mut() {
            Some(t) if *t.name == *a.topic.0 && t.id == a.topic_id => t.partitions.push(part),
            _ => out.push(TopicOut {
                name: a.topic.0.to_string(),
                id: a.topic_id,
                partitions: vec![part],
            }),
        }
    }
    (out, endpoints.into_values().collect())
}

/// Finds every asked partition: the ones to read (each up to its own limit and the
/// response's `max_bytes`), and errors for the rest.
fn resolve(
    ctx: &BrokerContext,
    asked: &[Asked],
    v: i16,
    max_bytes: usize,
) -> (Vec<Option<KafkaError>>, Vec<Wanted>) {
    let image = ctx.topics.image();
    let mut errors = Vec::with_capacity(asked.len());
    let mut wanted = Vec::new();
    for (index, a) in asked.iter().enumerate() {
        let info = if v >= 13 {
            image
                .by_id(&a.topic_id)
                .ok_or_else(|| KafkaError::new(code::UNKNOWN_TOPIC_ID, "unknown topic id"))
        } else {
            image
                .get(&a.topic)
                .ok_or_else(|| KafkaError::new(code::UNKNOWN_TOPIC_OR_PARTITION, "unknown topic"))
        };
        let tp = match &info {
            Ok(info) if (0..info.partitions).contains(&a.partition) => {
                TopicPartition::new(&info.name, a.partition).map_err(KafkaError::from)
            }
            Ok(_) => Err(KafkaError::new(
                code::UNKNOWN_TOPIC_OR_PARTITION,
                "no such partition",
            )),
            Err(e) => Err(e.clone()),
        };
        let offset = u64::try_from(a.fetch_offset)
            .map_err(|_| KafkaError::new(code::OFFSET_OUT_OF_RANGE, "negative fetch offset"));
        match (tp, offset) {
            (Ok(tp), Ok(offset)) => {
                errors.push(None);
                wanted.push(Wanted {
                    index,
                    tp,
                    offset,
                    current_leader_epoch: a.current_leader_epoch,
                    max_bytes: usize::try_from(a.max_bytes.max(0))
                        .unwrap_or(0)
                        .min(max_bytes),
                });
            }
            (Err(e), _) | (_, Err(e)) => errors.push(Some(e)),
        }
    }
    (errors, wanted)
}

/// Reads until `min_bytes` are ready, a partition fails, or `wait` passed.
async fn read_until_ready(
    ctx: &BrokerContext,
    wanted: &[Wanted],
    follower: Option<i32>,
    min_bytes: usize,
    wait: Duration,
) -> Vec<Result<Read, KafkaError>> {
    let started = Instant::now();
    let mut reads = read_all(ctx, wanted, follower).await;
    loop {
        let available: usize = reads.iter().map(|r| r.as_ref().map_or(0, Read::len)).sum();
        let failed = reads.iter().any(Result::is_err);
        let Some(left) = wait.checked_sub(started.elapsed()).filter(|d| !d.is_zero()) else {
            return reads;
        };
        if available >= min_bytes || failed || wanted.is_empty() {
            return reads;
        }
        let seen: Vec<u64> = reads
            .iter()
            .map(|r| {
                r.as_ref().map_or(0, |r| {
                    if follower.is_some() {
                        r.log_end_offset
                    } else {
                        u64::try_from(r.high_watermark).unwrap_or(0)
                    }
                })
            })
            .collect();
        wait_for_append(ctx, wanted, &seen, follower.is_some(), left).await;
        reads = read_all(ctx, wanted, follower).await;
    }
}

/// A partition's answer as `v` can carry it.
fn answer(index: i32, r: Option<Result<Read, KafkaError>>, isolation: i8, v: i16) -> PartitionOut {
    match r {
        Some(Ok(read)) => PartitionOut {
            index,
            error_code: code::NONE,
            high_watermark: read.high_watermark,
            last_stable_offset: read.high_watermark,
            log_start_offset: if v >= 5 { read.log_start_offset } else { -1 },
            aborted_transactions: (isolation == 1).then(Vec::new),
            records: Some(read.data),
            current_leader: None,
        },
        Some(Err(e)) => PartitionOut {
            index,
            error_code: sluice_engine::metrics::tally(e.code),
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            aborted_transactions: None,
            records: Some(Vec::new()),
            current_leader: None,
        },
        None => PartitionOut {
            index,
            error_code: sluice_engine::metrics::tally(code::UNKNOWN_SERVER_ERROR),
            high_watermark: 0,
            last_stable_offset: -1,
            log_start_offset: -1,
            aborted_transactions: None,
            records: None,
            current_leader: None,
        },
    }
}

/// Reads every wanted partition once, on the owning shards.
async fn read_all(
    ctx: &BrokerContext,
    wanted: &[Wanted],
    follower: Option<i32>,
) -> Vec<Result<Read, KafkaError>> {
    let items = wanted
        .iter()
        .map(|w| {
            (
                w.tp.clone(),
                (w.offset, w.max_bytes, w.current_leader_epoch),
            )
        })
        .collect();
    super::on_owners(
        ctx,
        items,
        super::Need::Leader,
        move |replica, (offset, max_bytes, current): (u64, usize, i32)| async move {
            replica.check_leader(current)?;
            let p = replica.log.clone();
            let o = p.offsets();
            let upper = match follower {
                Some(id) => {
                    if offset > o.log_end_offset {
                        return Err(KafkaError::new(
                            code::OFFSET_OUT_OF_RANGE,
                            format!(
                                "follower {id} fetches offset {offset} past the log end {}",
                                o.log_end_offset
                            ),
                        ));
                    }
                    replica.follower_fetched(id, offset)?;
                    None
                }
                None => Some(o.high_watermark),
            };
            let r = p.read(offset, max_bytes.max(1), upper).await?;
            let mut data = Vec::with_capacity(r.chunks.len());
            for c in &r.chunks {
                match c {
                    ReadChunk::Memory(b) => data.push(Part::Mem(b.clone())),
                    // Only ranges the page cache held when they were read come as
                    // file ranges (see the engine's read-ahead): `sendfile` them.
                    ReadChunk::File {
                        path,
                        position,
                        length,
                        ..
                    } => match buffered_open(path) {
                        Some(file) => data.push(Part::File(FileRange {
                            file,
                            offset: *position,
                            len: *length,
                        })),
                        None => data.push(Part::Mem(materialize(c, &r).await?)),
                    },
                }
            }
            if follower.is_some() {
                sluice_engine::metrics::replicated_out(data.iter().map(Part::len).sum());
            }
            Ok(Read {
                data,
                high_watermark: i64::try_from(r.high_watermark).unwrap_or(i64::MAX),
                log_start_offset: i64::try_from(r.log_start_offset).unwrap_or(0),
                log_end_offset: r.log_end_offset,
            })
        },
    )
    .await
}

/// Reads one chunk into memory through the engine (asynchronous O_DIRECT reads).
async fn materialize(
    c: &ReadChunk,
    r: &sluice_engine::ReadResult,
) -> Result<Bytes, sluice_engine::Error> {
    sluice_engine::ReadResult {
        chunks: vec![c.clone()],
        ..r.clone()
    }
    .materialize()
    .await
}

/// A buffered descriptor of a segment file for `sendfile`; `None` when it cannot be
/// opened (deleted by retention since the read), and the caller reads through the
/// engine's descriptor instead.
fn buffered_open(path: &std::path::Path) -> Option<Arc<std::fs::File>> {
    match std::fs::File::open(path) {
        Ok(f) => Some(Arc::new(f)),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "no buffered descriptor; copying");
            None
        }
    }
}

/// Waits until any wanted partition's high watermark (a follower's: log end)
/// moves past `seen` (what the last read saw), or `limit` passes.
async fn wait_for_append(
    ctx: &BrokerContext,
    wanted: &[Wanted],
    seen: &[u64],
    log_end: bool,
    limit: Duration,
) {
    let mut per_shard: std::collections::BTreeMap<usize, Vec<(TopicPartition, u64)>> =
        std::collections::BTreeMap::new();
    for (w, seen) in wanted.iter().zip(seen) {
        if let Some(s) = ctx.router.shard_of(&w.tp) {
            per_shard.entry(s).or_default().push((w.tp.clone(), *seen));
        }
    }
    let mut cancels = Vec::new();
    let mut waits = Vec::new();
    for (s, tps) in per_shard {
        let (cancel_tx, cancel_rx) = futures::channel::oneshot::channel::<()>();
        cancels.push(cancel_tx);
        let router = ctx.router.clone();
        waits.push(
            async move {
                let _ = router
                    .call(s, move |shard| async move {
                        let parts: Vec<_> = tps
                            .iter()
                            .filter_map(|(tp, _)| shard.partition(tp).ok())
                            .collect();
                        let waits: Vec<_> = parts.iter().map(|p| p.appended()).collect();
                        // Data that arrived since the read needs no wait.
                        let mark = |o: sluice_engine::log::LogOffsets| {
                            if log_end {
                                o.log_end_offset
                            } else {
                                o.high_watermark
                            }
                        };
                        if parts
                            .iter()
                            .zip(&tps)
                            .any(|(p, (_, seen))| mark(p.offsets()) > *seen)
                        {
                            return;
                        }
                        let appended = async move {
                            if waits.is_empty() {
                                futures::future::pending::<()>().await;
                            } else {
                                futures::future::select_all(waits).await;
                            }
                        };
                        let timer = glommio::timer::sleep(limit);
                        futures::select! {
                            () = appended.fuse() => {},
                            () = timer.fuse() => {},
                            _ = cancel_rx.fuse() => {},
                        }
                    })
                    .await;
            }
            .boxed_local(),
        );
    }
    if waits.is_empty() {
        glommio::timer::sleep(limit).await;
        return;
    }
    futures::future::select_all(waits).await;
    drop(cancels);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two fake batches of 100 and 70 bytes (12-byte prefix + body; a header is 61).
    fn batches() -> Bytes {
        let mut b = Vec::new();
        for total in [100usize, 70] {
            let mut one = vec![0u8; total];
            one[8..12].copy_from_slice(&i32::try_from(total - 12).unwrap().to_be_bytes());
            b.extend(one);
        }
        Bytes::from(b)
    }

    #[test]
    fn only_whole_batches_within_the_budget_are_kept() {
        assert_eq!(batch_prefix_len(&batches(), 99), 0);
        assert_eq!(batch_prefix_len(&batches(), 100), 100);
        assert_eq!(batch_prefix_len(&batches(), 169), 100);
        assert_eq!(batch_prefix_len(&batches(), 170), 170);
        assert_eq!(batch_prefix_len(&batches(), 10_000), 170);
        // A length pointing past the end, or negative, stops the walk.
        let mut bad = batches().to_vec();
        bad[108..112].copy_from_slice(&1000i32.to_be_bytes());
        assert_eq!(batch_prefix_len(&bad, 10_000), 100);
        bad[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(batch_prefix_len(&bad, 10_000), 0);

        let kept = whole_batches_within(vec![Part::Mem(batches()), Part::Mem(batches())], 280);
        let lens: Vec<u64> = kept.iter().map(Part::len).collect();
        assert_eq!(lens, [170, 100]);
        assert!(whole_batches_within(vec![Part::Mem(batches())], 20).is_empty());
    }
}
