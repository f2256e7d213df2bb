//! Crash safety with real processes: a child appends with durable acknowledgements
//! on two shards and is killed with SIGKILL at a random moment, 50 times. After each
//! kill the log is recovered and every acknowledged batch must be present, intact,
//! at its acknowledged offset, and the log must have no gaps.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::common::*;
use sluice_engine::batch::BatchHeader;
use sluice_engine::{AppendOptions, Durability, EngineConfig, LogConfig, Shard};

const KILLS: usize = 50;
const PARTITIONS: i32 = 4;
const LANES: usize = 3;
const DIR_VAR: &str = "SLUICE_CRASH_CHILD_DIR";
const RUN_VAR: &str = "SLUICE_CRASH_CHILD_RUN";

fn config(dir: &std::path::Path) -> EngineConfig {
    let mut c = small_config(dir, 2);
    c.log_defaults = LogConfig {
        segment_bytes: 32 << 10,
        index_interval_bytes: 512,
        ..LogConfig::default()
    };
    c
}

/// Not a test on its own: the body the crash test runs in its child processes.
#[test]
#[ignore = "runs only as the child of crash_safety_under_sigkill"]
fn crash_child_process() {
    let (Ok(dir), Ok(run)) = (std::env::var(DIR_VAR), std::env::var(RUN_VAR)) else {
        panic!("run by crash_safety_under_sigkill with {DIR_VAR} and {RUN_VAR} set");
    };
    let engine = start(config(std::path::Path::new(&dir)));
    let router = engine.router();
    let tps: Vec<_> = (0..PARTITIONS).map(|p| tp("crash", p)).collect();
    // A child killed while creating leaves some partitions made and some not.
    let missing: Vec<_> = tps
        .iter()
        .filter(|t| router.shard_of(t).is_none())
        .cloned()
        .collect();
    if !missing.is_empty() {
        create(&engine, &missing, None);
    }
    println!("READY");
    let _ = std::io::stdout().flush();
    let mut waits = Vec::new();
    for t in tps {
        let shard = router.shard_of(&t).expect("placed");
        let run = run.clone();
        waits.push(router.call(shard, move |s: Rc<Shard>| async move {
            let p = s.partition(&t).expect("owned");
            let lanes = (0..LANES).map(|lane| {
                let p = p.clone();
                let t = t.clone();
                let run = run.clone();
                async move {
                    for n in 0u64.. {
                        let tag = format!("r{run}-p{}-l{lane}-n{n}", t.partition);
                        let size = 1 + (n as usize * 7 + lane) % 30;
                        let opts = AppendOptions {
                            leader_epoch: 0,
                            durability: Durability::Durable,
                        };
                        let Ok(info) = p.append(batch(&tag, size, n as i64), opts).await else {
                            return;
                        };
                        let mut out = std::io::stdout().lock();
                        let _ =
                            writeln!(out, "ACK {} {} {tag} {size}", t.partition, info.base_offset);
                        let _ = out.flush();
                    }
                }
            });
            futures::future::join_all(lanes).await;
        }));
    }
    block_on(futures::future::join_all(waits));
}

#[test]
fn crash_safety_under_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = rand::thread_rng();
    let mut total_acks = 0usize;
    for run in 0..KILLS {
        let mut child = Command::new(&exe)
            .args([
                "crash::crash_child_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_VAR, dir.path())
            .env(RUN_VAR, run.to_string())
            .env("RUST_LOG", "off")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let f: Vec<&str> = line.split(' ').collect();
                if f.len() == 5 && f[0] == "ACK" {
                    acks.push((
                        f[1].parse::<i32>().expect("p"),
                        f[2].parse::<u64>().expect("o"),
                        f[3].to_string(),
                        f[4].parse::<usize>().expect("n"),
                    ));
                }
            }
            acks
        });
        // Kill at a random moment: during startup and recovery or while appending.
        let delay = Duration::from_millis(rng.gen_range(5..400));
        let t0 = Instant::now();
        while t0.elapsed() < delay {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("child exited by itself: {status}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill");
        let _ = child.wait();
        let acks = reader.join().expect("reader");
        total_acks += acks.len();
        verify(dir.path(), &acks, run);
    }
    assert!(
        total_acks > 1000,
        "the children acknowledged only {total_acks} batches"
    );
}

/// Recovers the log in this process and checks every acknowledgement against it.
fn verify(dir: &std::path::Path, acks: &[(i32, u64, String, usize)], run: usize) {
    let engine = start(config(dir));
    let mut by_partition: HashMap<i32, HashMap<u64, (String, usize)>> = HashMap::new();
    for (p, o, tag, n) in acks {
        by_partition
            .entry(*p)
            .or_default()
            .insert(*o, (tag.clone(), *n));
    }
    for p in 0..PARTITIONS {
        let t = tp("crash", p);
        if engine.router().shard_of(&t).is_none() {
            assert!(
                acks.is_empty(),
                "run {run}: acknowledged appends to a partition that does not exist"
            );
            continue;
        }
        let offline = with_partition(&engine, &t, |p| async move { p.offline_reason() });
        assert!(
            offline.is_none(),
            "run {run}: {t} offline after a crash: {offline:?}"
        );
        let batches = read_all(&engine, &t, 0);
        let mut next = 0u64;
        let mut stored: HashMap<u64, Vec<String>> = HashMap::new();
        for b in &batches {
            let h = BatchHeader::parse(b).expect("header");
            assert_eq!(
                h.base_offset as u64, next,
                "run {run}: {t} has a gap or overlap"
            );
            let (base, values) = decode(b);
            next = base + values.len() as u64;
            stored.insert(base, values);
        }
        let end = with_partition(&engine, &t, |p| async move { p.offsets().log_end_offset });
        assert_eq!(end, next, "run {run}: {t} log end matches its batches");
        for (offset, (tag, n)) in by_partition.get(&p).into_iter().flatten() {
            let values = stored.get(offset).unwrap_or_else(|| {
                panic!("run {run}: acknowledged batch {tag} at {t}@{offset} is missing")
            });
            assert_eq!(values.len(), *n, "run {run}: {tag}");
            assert_eq!(
                values[0],
                format!("{tag}-0"),
                "run {run}: wrong batch at {t}@{offset}"
            );
        }
    }
    engine.shutdown().expect("shutdown");
}
