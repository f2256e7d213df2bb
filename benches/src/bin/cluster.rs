//! The cluster's metadata figures on real processes: three `sluice serve` (the
//! `sluice` binary next to this one, or `$SLUICE_BIN`) on 127.0.0.1, .2 and .3,
//! each a voter of the metadata quorum with default timeouts.
//!
//! - formation: from launching the three to all three serving;
//! - commits: CreateTopics of one partition, one after another through one node
//!   (the leader, then a follower that forwards), for `--seconds` each: commits
//!   per second and latency percentiles as a Kafka client sees them (the change
//!   committed by a majority and applied on the node asked);
//! - failover, `--kills` times: SIGKILL the quorum's leader, then time the first
//!   CreateTopics that succeeds through a surviving node; the killed node is
//!   started again and the cluster settles before the next round.

use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_testkit::wire::Client;
use sluice_testkit::{Cluster, Node};

#[derive(Parser)]
#[command(about = "Cluster metadata on 3 real processes: commits, latency, failover")]
struct Args {
    /// Seconds of sequential commits through each of the two nodes
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Leader kills to time
    #[arg(long, default_value_t = 10)]
    kills: u32,
}

fn ms(us: u64) -> f64 {
    f64::from(u32::try_from(us).unwrap_or(u32::MAX)) / 1000.0
}

/// CreateTopics of one topic through `client`: its error code.
fn create(client: &mut Client, topic: &str) -> Result<i16, String> {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_num_partitions(1)
            .with_replication_factor(-1)]);
    let (_, r): (i16, CreateTopicsResponse) = client
        .call(ApiKey::CreateTopics, 5, &req)
        .map_err(|e| e.to_string())?;
    Ok(r.topics.first().map_or(-1, |t| t.error_code))
}

fn view(node: &Node) -> Result<serde_json::Value, String> {
    let (status, _, body) = sluice_testkit::try_http(
        &node.admin_addr(),
        b"GET /v1/cluster HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )?;
    if status != 200 {
        return Err(format!("/v1/cluster: {status} {body}"));
    }
    serde_json::from_str(&body).map_err(|e| e.to_string())
}

/// The leader all running nodes agree on.
fn leader(cluster: &Cluster, up: &[usize], within: Duration) -> Result<u64, String> {
    let deadline = Instant::now() + within;
    loop {
        let seen: Vec<Option<u64>> = up
            .iter()
            .map(|i| {
                view(&cluster.nodes[*i])
                    .ok()
                    .and_then(|v| v["quorum"]["leader"].as_u64())
            })
            .collect();
        if let Some(Some(l)) = seen.first() {
            if seen.iter().all(|s| *s == Some(*l)) {
                return Ok(*l);
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("no agreed leader: {seen:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn commits(addr: &str, prefix: &str, seconds: u64) -> Result<(), String> {
    let mut client = Client::connect(addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let mut h = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        let t = Instant::now();
        let code = create(&mut client, &format!("{prefix}-{n}"))?;
        if code != 0 {
            return Err(format!("CreateTopics answered error {code}"));
        }
        h.record(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX))
            .map_err(|e| e.to_string())?;
        n += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let rate = n as f64 / secs;
    println!(
        "  {prefix:<9} {n:>6} commits in {secs:.1} s: {rate:>6.0}/s, latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max())
    );
    Ok(())
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let started = Instant::now();
    let storage = |_| "[storage]\ncache_mib_per_shard = 16\n".to_string();
    let mut cluster = Cluster::start_quorum(3, storage, |_| String::new());
    println!(
        "3 nodes (real processes, {}) serving after {:.0} ms",
        sluice_testkit::sluice_bin().display(),
        started.elapsed().as_secs_f64() * 1000.0
    );
    let all = [0usize, 1, 2];
    let l = leader(&cluster, &all, Duration::from_secs(10))?;
    let leader_i = usize::try_from(l - 1).map_err(|e| e.to_string())?;
    let follower_i = (leader_i + 1) % 3;
    println!("metadata commits (CreateTopics of 1 partition, one at a time):");
    commits(
        &cluster.nodes[leader_i].addr.clone(),
        "leader",
        args.seconds,
    )?;
    commits(
        &cluster.nodes[follower_i].addr.clone(),
        "follower",
        args.seconds,
    )?;

    let mut h = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    let mut elect = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    for round in 0..args.kills {
        let l = leader(&cluster, &all, Duration::from_secs(30))?;
        let victim = usize::try_from(l - 1).map_err(|e| e.to_string())?;
        let survivor = (victim + 1) % 3;
        let up: Vec<usize> = all.iter().copied().filter(|i| *i != victim).collect();
        let addr = cluster.nodes[survivor].addr.clone();
        let mut client =
            Client::connect(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
        cluster.nodes[victim].kill();
        let killed = Instant::now();
        let mut elected = None;
        loop {
            if elected.is_none() {
                if let Ok(n) = leader(&cluster, &up, Duration::from_millis(1)) {
                    if n != l {
                        elected = Some(killed.elapsed());
                    }
                }
            }
            match create(&mut client, &format!("failover-{round}")) {
                // 36: an earlier try was committed after all (TOPIC_ALREADY_EXISTS).
                Ok(0 | 36) => break,
                Ok(_) => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(5));
                    if let Ok(c) = Client::connect(&addr, Duration::from_secs(5)) {
                        client = c;
                    }
                }
            }
            if killed.elapsed() > Duration::from_mins(1) {
                return Err(format!("round {round}: no commit within 60 s"));
            }
        }
        let took = killed.elapsed();
        let elected = elected.unwrap_or(took);
        h.record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX))
            .map_err(|e| e.to_string())?;
        elect
            .record(u64::try_from(elected.as_micros()).unwrap_or(u64::MAX))
            .map_err(|e| e.to_string())?;
        println!(
            "  kill {round}: leader {l} killed, new leader seen after {:.0} ms, first commit after {:.0} ms",
            elected.as_secs_f64() * 1000.0,
            took.as_secs_f64() * 1000.0
        );
        cluster.nodes[victim].restart();
        std::thread::sleep(Duration::from_secs(2));
    }
    if args.kills > 0 {
        println!(
            "failover over {} kills of the leader: first commit p50 {:.0} ms, max {:.0} ms (new leader seen: p50 {:.0} ms, max {:.0} ms)",
            args.kills,
            ms(h.value_at_quantile(0.5)),
            ms(h.max()),
            ms(elect.value_at_quantile(0.5)),
            ms(elect.max())
        );
    }
    Ok(())
}
