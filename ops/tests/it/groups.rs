//! Consumer groups with librdkafka against a real `sluice serve`: members split the
//! partitions, rebalance when members come and go (eager `range` and
//! `cooperative-sticky`), every record is consumed once when offsets are committed
//! synchronously after processing, and committed offsets survive a restart
//! (SIGTERM and SIGKILL).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::TopicPartitionList;

use crate::librdkafka::create_topic;
use crate::node::Node;

const PARTITIONS: i32 = 6;

/// Short rebalance delays so the test does not wait for Kafka's 3 s default.
const CONFIG: &str = "[group]\ninitial_rebalance_delay_ms = 200\n";

fn produce(addr: &str, topic: &str, from: usize, count: usize) {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for i in from..from + count {
        let key = format!("k{i}");
        let value = format!("v{i}");
        let mut record = BaseRecord::<String, String>::to(topic)
            .key(&key)
            .payload(&value);
        loop {
            match p.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    p.flush(Duration::from_mins(1)).expect("flush");
}

fn consumer(addr: &str, group: &str, strategy: &str, name: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("client.id", name)
        .set("partition.assignment.strategy", strategy)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .expect("consumer")
}

/// What the members saw: records counted once their commit succeeded, and each
/// member's current assignment.
#[derive(Default)]
struct Seen {
    /// (partition, offset) -> how many times it was processed and committed.
    committed: BTreeMap<(i32, i64), u32>,
    assignments: BTreeMap<String, BTreeSet<i32>>,
}

struct Member {
    name: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Member {
    /// A member that processes each record and commits it synchronously; a record
    /// whose commit fails (a rebalance took its partition) does not count, as an
    /// application would not have finished it.
    fn start(
        addr: &str,
        topic: &str,
        group: &str,
        strategy: &str,
        name: &str,
        seen: &Arc<Mutex<Seen>>,
    ) -> Member {
        let c = consumer(addr, group, strategy, name);
        c.subscribe(&[topic]).expect("subscribe");
        let stop = Arc::new(AtomicBool::new(false));
        let (s, seen, n) = (stop.clone(), seen.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                    let key = (m.partition(), m.offset());
                    if c.commit_message(&m, CommitMode::Sync).is_ok() {
                        *seen.lock().unwrap().committed.entry(key).or_default() += 1;
                    }
                }
                let mine: BTreeSet<i32> = c
                    .assignment()
                    .map(|a| {
                        a.elements()
                            .iter()
                            .map(rdkafka::topic_partition_list::TopicPartitionListElem::partition)
                            .collect()
                    })
                    .unwrap_or_default();
                seen.lock().unwrap().assignments.insert(n.clone(), mine);
            }
            // Dropping the consumer closes it: LeaveGroup.
            drop(c);
            seen.lock().unwrap().assignments.remove(&n);
        });
        Member {
            name: name.to_string(),
            stop,
            thread: Some(thread),
        }
    }

    fn leave(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("member thread");
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits until `members` hold every partition exactly once between them.
fn wait_for_split(seen: &Arc<Mutex<Seen>>, members: &[&str], what: &str) {
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        {
            let s = seen.lock().unwrap();
            let parts: Vec<&BTreeSet<i32>> = members
                .iter()
                .filter_map(|m| s.assignments.get(*m))
                .collect();
            let all: Vec<i32> = parts.iter().flat_map(|p| p.iter().copied()).collect();
            let distinct: BTreeSet<i32> = all.iter().copied().collect();
            if parts.len() == members.len()
                && all.len() == PARTITIONS as usize
                && distinct.len() == PARTITIONS as usize
                && parts.iter().all(|p| !p.is_empty())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: members never split the partitions: {:?}",
                s.assignments
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_for_all_consumed(seen: &Arc<Mutex<Seen>>, total: usize) {
    let deadline = Instant::now() + Duration::from_mins(1);
    while seen.lock().unwrap().committed.len() < total {
        assert!(
            Instant::now() < deadline,
            "only {} of {total} records were consumed",
            seen.lock().unwrap().committed.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn group_split_and_rebalance(strategy: &str) {
    let node = Node::start_with_config(CONFIG);
    let topic = format!("groups-{strategy}");
    let group = format!("g-{strategy}");
    create_topic(&node.addr, &topic, PARTITIONS);
    produce(&node.addr, &topic, 0, 3000);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut members: Vec<Member> = (0..3)
        .map(|i| {
            Member::start(
                &node.addr,
                &topic,
                &group,
                strategy,
                &format!("m{i}"),
                &seen,
            )
        })
        .collect();
    wait_for_split(&seen, &["m0", "m1", "m2"], "3 members");
    wait_for_all_consumed(&seen, 3000);

    // A fourth member takes partitions from the others.
    members.push(Member::start(
        &node.addr, &topic, &group, strategy, "m3", &seen,
    ));
    wait_for_split(&seen, &["m0", "m1", "m2", "m3"], "4 members");
    produce(&node.addr, &topic, 3000, 1000);
    wait_for_all_consumed(&seen, 4000);

    // One leaves; the others take its partitions over.
    let gone = members.remove(1);
    assert_eq!(gone.name, "m1");
    gone.leave();
    wait_for_split(&seen, &["m0", "m2", "m3"], "after m1 left");
    produce(&node.addr, &topic, 4000, 1000);
    wait_for_all_consumed(&seen, 5000);
    drop(members);

    let s = seen.lock().unwrap();
    let twice: Vec<_> = s.committed.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "records consumed more than once: {twice:?}"
    );
    assert_eq!(s.committed.len(), 5000);
    // Offsets are contiguous per partition from 0: nothing was skipped.
    for p in 0..PARTITIONS {
        let offs: Vec<i64> = s
            .committed
            .keys()
            .filter(|(q, _)| *q == p)
            .map(|(_, o)| *o)
            .collect();
        assert!(!offs.is_empty(), "partition {p} got nothing");
        assert_eq!(
            offs,
            (0..offs.len() as i64).collect::<Vec<_>>(),
            "partition {p}"
        );
    }
}

#[test]
fn eager_range_members_split_rebalance_and_consume_every_record_once() {
    group_split_and_rebalance("range");
}

#[test]
fn cooperative_sticky_members_split_rebalance_and_consume_every_record_once() {
    group_split_and_rebalance("cooperative-sticky");
}

/// Commits part of a topic, restarts the broker (`kill`: SIGKILL, else SIGTERM),
/// and checks that a new member resumes at the committed offsets.
fn resume_after_restart(kill: bool) {
    let mut node = Node::start_with_config(CONFIG);
    let topic = "resume";
    create_topic(&node.addr, topic, PARTITIONS);
    produce(&node.addr, topic, 0, 600);
    // Commit offset 40 + partition for every partition.
    let c = consumer(&node.addr, "resumers", "range", "first");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Offset(40 + i64::from(p)))
            .expect("tpl");
    }
    c.commit(&tpl, CommitMode::Sync)
        .expect("commit while the group is empty");
    drop(c);
    if kill {
        node.kill();
    } else {
        let status = node.stop();
        assert!(status.success(), "SIGTERM exit: {status}\n{}", node.log());
    }
    node.restart();

    let c = consumer(&node.addr, "resumers", "range", "second");
    let committed = c
        .committed_offsets(
            {
                let mut t = TopicPartitionList::new();
                for p in 0..PARTITIONS {
                    t.add_partition(topic, p);
                }
                t
            },
            Duration::from_secs(30),
        )
        .expect("committed offsets");
    for e in committed.elements() {
        assert_eq!(
            e.offset(),
            rdkafka::Offset::Offset(40 + i64::from(e.partition())),
            "committed offset of partition {} after the restart",
            e.partition()
        );
    }
    c.subscribe(&[topic]).expect("subscribe");
    let mut first: BTreeMap<i32, i64> = BTreeMap::new();
    let mut count = 0;
    let deadline = Instant::now() + Duration::from_mins(1);
    while count < 600 - (0..PARTITIONS).map(|p| 40 + p as usize).sum::<usize>() {
        assert!(
            Instant::now() < deadline,
            "consumed only {count}; first {first:?}"
        );
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.expect("message");
            first.entry(m.partition()).or_insert(m.offset());
            count += 1;
        }
    }
    for p in 0..PARTITIONS {
        assert_eq!(
            first.get(&p),
            Some(&(40 + i64::from(p))),
            "partition {p} resumed at"
        );
    }
}

#[test]
fn committed_offsets_survive_sigterm() {
    resume_after_restart(false);
}

#[test]
fn committed_offsets_survive_sigkill() {
    resume_after_restart(true);
}
