//! The metadata quorum's figures: three voters (in-process, each on its own glommio
//! executor and thread, over real TCP on 127.0.0.1 with the RPC frames, log files
//! fdatasync'ed on the data directory's disk) commit metadata commands one after
//! another for `--seconds`; then the leader is stopped `--kills` times and the time
//! to the first write committed through a new leader is measured (the stopped
//! voter is started again before the next round).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use sluice_raft::quorum::harness::{test_config, Voter, Voters};
use sluice_raft::Command;

#[derive(Parser)]
#[command(about = "Metadata quorum: commits per second, commit latency, failover time")]
struct Args {
    /// A directory on the disk under test (the voters' logs go in a new subdirectory)
    #[arg(long)]
    dir: PathBuf,
    /// Seconds of sequential commits
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Leader stops to time
    #[arg(long, default_value_t = 10)]
    kills: u32,
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn ms(us: u64) -> f64 {
    // Microseconds as milliseconds, for printing.
    f64::from(u32::try_from(us).unwrap_or(u32::MAX)) / 1000.0
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let root = args
        .dir
        .join(format!("quorum-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let addrs: BTreeMap<u64, String> = (1..=3)
        .map(|i| free_port().map(|p| (i, format!("127.0.0.1:{p}"))))
        .collect::<Result<_, _>>()?;
    let config = test_config();
    let mut voters = Voters::start(&root, &addrs, &config)?;
    let all = [1, 2, 3];
    let within = Duration::from_secs(30);
    voters.commit(
        &all,
        None,
        &Command::InitCluster {
            cluster_id: "bench".into(),
        },
        within,
    )?;

    let mut lat = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    let leader = voters
        .agreed_leader(&all, None, within)
        .ok_or("no leader")?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(args.seconds) {
        let t = Instant::now();
        let out = voters.0[&leader].write(Command::ReserveProducerIds { count: 1 })?;
        out.result.map_err(|e| e.to_string())?;
        lat.record(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX))
            .map_err(|e| e.to_string())?;
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("3 voters, one commit at a time through the leader, {secs:.1} s:");
    println!(
        "  {n} commits, {:.0} commits/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        f64::from(u32::try_from(n).unwrap_or(u32::MAX)) / secs,
        ms(lat.value_at_quantile(0.5)),
        ms(lat.value_at_quantile(0.99)),
        ms(lat.max())
    );

    let mut failover = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    for k in 0..args.kills {
        let leader = voters
            .agreed_leader(&all, None, within)
            .ok_or("no leader")?;
        let t = Instant::now();
        if let Some(v) = voters.0.get_mut(&leader) {
            v.stop();
        }
        let rest: Vec<u64> = all.iter().copied().filter(|i| *i != leader).collect();
        voters.commit(
            &rest,
            Some(leader),
            &Command::ReserveProducerIds { count: 1 },
            within,
        )?;
        let took = t.elapsed();
        failover
            .record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX))
            .map_err(|e| e.to_string())?;
        println!(
            "  stop {k}: leader {leader} stopped, first commit after {:.0} ms",
            took.as_secs_f64() * 1000.0
        );
        let dir = root.join(format!("v{leader}"));
        voters.0.insert(
            leader,
            Voter::start(leader, &addrs[&leader], &dir, config.clone()),
        );
    }
    println!(
        "leader stopped -> first committed write, {} stops: p50 {:.0} ms, max {:.0} ms (election timeout {}-{} ms, heartbeat {} ms)",
        args.kills,
        ms(failover.value_at_quantile(0.5)),
        ms(failover.max()),
        config.election_timeout_min,
        config.election_timeout_max,
        config.heartbeat_interval
    );
    drop(voters);
    std::fs::remove_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))
}
