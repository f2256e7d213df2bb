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
    /// Errors the members' polls returned (for a failure's message).
    errors: Vec<String>,
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
                match c.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        let key = (m.partition(), m.offset());
                        if c.commit_message(&m, CommitMode::Sync).is_ok() {
                            *seen.lock().unwrap().committed.entry(key).or_default() += 1;
                        }
                    }
                    Some(Err(e)) => seen.lock().unwrap().errors.push(format!("{n}: {e}")),
                    None => {}
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
fn wait_for_split(seen: &Arc<Mutex<Seen>>, members: &[&str], what: &str, node: &Node) {
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
                "{what}: members never split the partitions: {:?}\nmember errors: {:?}\n--- broker log\n{}",
                s.assignments,
                s.errors,
                node.log()
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
    wait_for_split(&seen, &["m0", "m1", "m2"], "3 members", &node);
    wait_for_all_consumed(&seen, 3000);

    // A fourth member takes partitions from the others.
    members.push(Member::start(
        &node.addr, &topic, &group, strategy, "m3", &seen,
    ));
    wait_for_split(&seen, &["m0", "m1", "m2", "m3"], "4 members", &node);
    produce(&node.addr, &topic, 3000, 1000);
    wait_for_all_consumed(&seen, 4000);

    // One leaves; the others take its partitions over.
    let gone = members.remove(1);
    assert_eq!(gone.name, "m1");
    gone.leave();
    wait_for_split(&seen, &["m0", "m2", "m3"], "after m1 left", &node);
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
    // The coordinator loads the group at start, before any client asks.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !node
        .log()
        .lines()
        .any(|l| l.contains("loaded consumer groups") && l.contains("groups=1"))
    {
        assert!(
            Instant::now() < deadline,
            "group not loaded at start:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

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

pub(crate) mod protocol {
    //! Group requests that must be refused, sent as raw requests with the
    //! project's client, each answered with Kafka's error code while another
    //! group's committed offsets stay as they were.

    use std::time::Duration;

    use bytes::Bytes;
    use kafka_protocol::messages::{
        heartbeat_request::HeartbeatRequest, join_group_request, offset_commit_request,
        produce_request, ApiKey, GroupId, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
        OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
        ProduceRequest, ProduceResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    use sluice_net::client::Client;

    use super::{create_topic, CONFIG};
    use crate::node::Node;

    fn s(x: &str) -> StrBytes {
        StrBytes::from_string(x.to_string())
    }

    /// OffsetCommit v8 of one offset; the partition's error code.
    #[allow(clippy::too_many_arguments)] // One raw request, field by field.
    pub(crate) fn commit(
        c: &mut Client,
        group: &str,
        generation: i32,
        member: &str,
        topic: &str,
        partition: i32,
        offset: i64,
        meta: &str,
    ) -> i16 {
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(member))
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(partition)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(-1)
                            .with_committed_metadata(Some(s(meta))),
                    ]),
            ]);
        let (_, r): (i16, OffsetCommitResponse) =
            c.call(ApiKey::OffsetCommit, 8, &req).expect("OffsetCommit");
        r.topics[0].partitions[0].error_code
    }

    fn fetch(c: &mut Client, group: &str, topic: &str) -> Vec<i64> {
        let req = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(None);
        let (_, r): (i16, OffsetFetchResponse) =
            c.call(ApiKey::OffsetFetch, 7, &req).expect("OffsetFetch");
        assert_eq!(r.error_code, 0);
        let mut out: Vec<(i32, i64)> = r
            .topics
            .iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (p.partition_index, p.committed_offset))
            })
            .collect();
        out.sort_unstable();
        out.into_iter().map(|(_, o)| o).collect()
    }

    fn join(c: &mut Client, group: &str, member: &str) -> JoinGroupResponse {
        join_with_timeout(c, group, member, 10_000)
    }

    fn join_with_timeout(
        c: &mut Client,
        group: &str,
        member: &str,
        rebalance_ms: i32,
    ) -> JoinGroupResponse {
        let req = join_request(group, member, 10_000, rebalance_ms);
        let (_, r): (i16, JoinGroupResponse) =
            c.call(ApiKey::JoinGroup, 5, &req).expect("JoinGroup");
        r
    }

    /// A consumer-protocol JoinGroup (one `range` protocol, empty subscription).
    fn join_request(
        group: &str,
        member: &str,
        session_ms: i32,
        rebalance_ms: i32,
    ) -> JoinGroupRequest {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(session_ms)
            .with_rebalance_timeout_ms(rebalance_ms)
            .with_member_id(s(member))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"\0\0\0\0\0\0"))])
    }

    /// Joins `group` as the static member `instance` (JoinGroup v5, SyncGroup v3),
    /// alone: (generation, member id).
    pub(crate) fn static_member(
        c: &mut Client,
        group: &str,
        instance: &str,
        session_ms: i32,
    ) -> (i32, String) {
        let req =
            join_request(group, "", session_ms, 10_000).with_group_instance_id(Some(s(instance)));
        let (_, joined): (i16, JoinGroupResponse) =
            c.call(ApiKey::JoinGroup, 5, &req).expect("JoinGroup");
        assert_eq!(joined.error_code, 0, "join {group}");
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id(joined.generation_id)
            .with_member_id(joined.member_id.clone())
            .with_group_instance_id(Some(s(instance)));
        let (_, synced): (i16, SyncGroupResponse) =
            c.call(ApiKey::SyncGroup, 3, &sync).expect("SyncGroup");
        assert_eq!(synced.error_code, 0, "sync {group}");
        (joined.generation_id, joined.member_id.to_string())
    }

    pub(crate) fn heartbeat(c: &mut Client, group: &str, generation: i32, member: &str) -> i16 {
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id(generation)
            .with_member_id(s(member));
        let (_, r): (i16, HeartbeatResponse) =
            c.call(ApiKey::Heartbeat, 4, &req).expect("Heartbeat");
        r.error_code
    }

    #[test]
    fn bad_commits_and_stale_members_get_kafkas_error_codes() {
        let node = Node::start_with_config(CONFIG);
        create_topic(&node.addr, "t", 2);
        let mut c = Client::connect(&node.addr, Duration::from_secs(10)).expect("connect");
        // Another group with committed offsets, to check nothing below touches it.
        assert_eq!(commit(&mut c, "bystander", -1, "", "t", 0, 7, "keep"), 0);
        assert_eq!(commit(&mut c, "bystander", -1, "", "t", 1, 9, "keep"), 0);

        // Unknown topic, unknown partition, metadata over offset.metadata.max.bytes.
        assert_eq!(commit(&mut c, "g", -1, "", "nope", 0, 1, ""), 3);
        assert_eq!(commit(&mut c, "g", -1, "", "t", 5, 1, ""), 3);
        assert_eq!(
            commit(&mut c, "g", -1, "", "t", 0, 1, &"m".repeat(5000)),
            12
        );
        assert_eq!(
            commit(&mut c, "", -1, "", "t", 0, 1, ""),
            24,
            "empty group id"
        );
        let huge_group = "g".repeat(40_000);
        assert_eq!(
            commit(&mut c, &huge_group, -1, "", "t", 0, 1, ""),
            24,
            "a group id over 32767 bytes"
        );

        // A real member: MEMBER_ID_REQUIRED, then generation 1 as the leader.
        let first = join(&mut c, "g", "");
        assert_eq!(first.error_code, 79);
        let member = first.member_id.to_string();
        let joined = join(&mut c, "g", &member);
        assert_eq!(joined.error_code, 0);
        assert_eq!(joined.leader.as_str(), member);
        let generation = joined.generation_id;
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id(generation)
            .with_member_id(s(&member));
        let (_, r): (i16, SyncGroupResponse) =
            c.call(ApiKey::SyncGroup, 3, &sync).expect("SyncGroup");
        assert_eq!(r.error_code, 0);

        assert_eq!(heartbeat(&mut c, "g", generation, &member), 0);
        assert_eq!(
            heartbeat(&mut c, "g", generation + 1, &member),
            22,
            "stale generation"
        );
        assert_eq!(
            heartbeat(&mut c, "g", generation, "made-up"),
            25,
            "unknown member"
        );
        assert_eq!(
            commit(&mut c, "g", generation - 1, &member, "t", 0, 1, ""),
            22
        );
        assert_eq!(
            commit(&mut c, "g", generation, "made-up", "t", 0, 1, ""),
            25
        );
        assert_eq!(
            commit(&mut c, "g", -1, "", "t", 0, 1, ""),
            25,
            "outsiders while it has members"
        );
        assert_eq!(commit(&mut c, "g", generation, &member, "t", 0, 3, ""), 0);
        assert_eq!(fetch(&mut c, "g", "t"), vec![3]);

        // Clients may not write the internal topic.
        let produce = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(TopicName(s("__consumer_offsets")))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(Bytes::from(sluice_engine::batch::build_values_batch(
                            &[b"x"],
                            0,
                            sluice_engine::batch::NO_PRODUCER,
                        )))),
                ])]);
        let (_, r): (i16, ProduceResponse) = c.call(ApiKey::Produce, 9, &produce).expect("Produce");
        assert_eq!(r.responses[0].partition_responses[0].error_code, 17);

        assert_eq!(
            fetch(&mut c, "bystander", "t"),
            vec![7, 9],
            "the other group"
        );
        drop(c);
        let log = node.log();
        assert!(!log.contains("panicked"), "{log}");
    }

    /// SIGTERM while a member waits in JoinGroup: it is answered NOT_COORDINATOR
    /// (so it looks for the coordinator again) instead of hanging until the drain
    /// timeout, and the node exits cleanly.
    #[test]
    fn a_member_waiting_in_join_is_answered_when_the_node_stops() {
        let mut node = Node::start_with_config(CONFIG);
        let mut a = Client::connect(&node.addr, Duration::from_secs(10)).expect("connect");
        let id = join_with_timeout(&mut a, "w", "", 60_000)
            .member_id
            .to_string();
        let joined = join_with_timeout(&mut a, "w", &id, 60_000);
        assert_eq!(joined.error_code, 0);
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s("w")))
            .with_generation_id(joined.generation_id)
            .with_member_id(s(&id));
        let (_, r): (i16, SyncGroupResponse) =
            a.call(ApiKey::SyncGroup, 3, &sync).expect("SyncGroup");
        assert_eq!(r.error_code, 0);
        // A second member: its join waits for the first to rejoin, which it never does.
        let addr = node.addr.clone();
        let waiting = std::thread::spawn(move || {
            let mut b = Client::connect(&addr, Duration::from_mins(2)).expect("connect");
            let id = join_with_timeout(&mut b, "w", "", 60_000)
                .member_id
                .to_string();
            join_with_timeout(&mut b, "w", &id, 60_000)
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while heartbeat(&mut a, "w", joined.generation_id, &id) != 27 {
            assert!(std::time::Instant::now() < deadline, "no rebalance began");
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = node.stop();
        assert!(status.success(), "{status}\n{}", node.log());
        let answer = waiting.join().expect("joiner thread");
        assert_eq!(answer.error_code, 16, "NOT_COORDINATOR");
    }
}

/// Runs `sluice group ARGS -b ADDR` and returns its stdout (asserting success).
fn group_cli(addr: &str, args: &[&str]) -> String {
    let (status, out, err) = crate::node::run(
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("group")
            .args(args)
            .args(["-b", addr]),
        None,
    );
    assert!(
        status.success(),
        "sluice group {args:?}: {status}\n{out}\n{err}"
    );
    out
}

/// Sum of the lag column of `sluice group describe` for `topic`.
fn lag_of(describe: &str, topic: &str) -> i64 {
    describe
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(topic))
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols[4]
                .parse::<i64>()
                .unwrap_or_else(|_| panic!("lag in {l:?}"))
        })
        .sum()
}

/// Consumes `n` records in `group` (committing each) and returns the first offset
/// seen per partition.
fn consume_committing(addr: &str, group: &str, topic: &str, n: usize) -> BTreeMap<i32, i64> {
    let c = consumer(addr, group, "range", "cli-test");
    c.subscribe(&[topic]).expect("subscribe");
    let mut first = BTreeMap::new();
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_mins(1);
    while got < n {
        assert!(Instant::now() < deadline, "consumed {got} of {n}");
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.expect("message");
            first.entry(m.partition()).or_insert(m.offset());
            c.commit_message(&m, CommitMode::Sync).expect("commit");
            got += 1;
        }
    }
    first
}

#[test]
fn group_cli_shows_lag_and_resets_a_group_to_the_beginning() {
    let node = Node::start_with_config(CONFIG);
    let topic = "lagging";
    create_topic(&node.addr, topic, 2);
    produce(&node.addr, topic, 0, 100);
    consume_committing(&node.addr, "lagger", topic, 100);
    let listed = group_cli(&node.addr, &["list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("lagger ") && l.contains("Empty")),
        "{listed}"
    );
    assert_eq!(
        lag_of(&group_cli(&node.addr, &["describe", "lagger"]), topic),
        0
    );

    produce(&node.addr, topic, 100, 50);
    let described = group_cli(&node.addr, &["describe", "lagger"]);
    assert_eq!(lag_of(&described, topic), 50, "{described}");

    let dry = group_cli(
        &node.addr,
        &[
            "reset-offsets",
            "lagger",
            "--topic",
            topic,
            "--to-earliest",
            "--dry-run",
        ],
    );
    assert!(dry.contains("dry run"), "{dry}");
    assert_eq!(
        lag_of(&group_cli(&node.addr, &["describe", "lagger"]), topic),
        50
    );

    group_cli(
        &node.addr,
        &["reset-offsets", "lagger", "--topic", topic, "--to-earliest"],
    );
    assert_eq!(
        lag_of(&group_cli(&node.addr, &["describe", "lagger"]), topic),
        150
    );
    // A consumer started now reads everything again, from offset 0.
    let first = consume_committing(&node.addr, "lagger", topic, 150);
    assert_eq!(first, BTreeMap::from([(0, 0), (1, 0)]));

    // While a member is active, resetting is refused and nothing changes.
    let c = consumer(&node.addr, "lagger", "range", "active");
    c.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_mins(1);
    while c.assignment().map_or(0, |a| a.count()) == 0 {
        assert!(Instant::now() < deadline, "no assignment");
        let _ = c.poll(Duration::from_millis(100));
    }
    let (status, out, err) = crate::node::run(
        std::process::Command::new(env!("CARGO_BIN_EXE_sluice")).args([
            "group",
            "reset-offsets",
            "lagger",
            "--topic",
            topic,
            "--to-earliest",
            "-b",
            &node.addr,
        ]),
        None,
    );
    assert!(!status.success(), "{out}");
    assert!(err.contains("active members"), "{err}");
    drop(c);
}

/// Offsets of a group that stays empty longer than `offsets.retention.minutes` are
/// deleted (and stay deleted across a restart); a group with a member keeps its
/// offsets. Takes a little over a minute: the retention is at least one minute.
#[test]
fn offsets_of_a_group_empty_past_the_retention_are_deleted() {
    let mut node = Node::start_with_config(
        "[group]\ninitial_rebalance_delay_ms = 200\noffsets_retention_minutes = 1\n\
         offsets_retention_check_interval_ms = 500\n",
    );
    let topic = "retained";
    create_topic(&node.addr, topic, 2);
    produce(&node.addr, topic, 0, 20);
    let committed = |group: &str, addr: &str| -> Vec<rdkafka::Offset> {
        let c = consumer(addr, group, "range", "probe");
        let mut t = TopicPartitionList::new();
        t.add_partition(topic, 0);
        t.add_partition(topic, 1);
        let r = c
            .committed_offsets(t, Duration::from_secs(30))
            .expect("committed");
        r.elements()
            .iter()
            .map(rdkafka::topic_partition_list::TopicPartitionListElem::offset)
            .collect()
    };
    // "idle": commits and leaves. "busy": keeps a member the whole time.
    let c = consumer(&node.addr, "idle", "range", "idle");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Offset(5))
        .expect("tpl");
    c.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(c);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let busy = Member::start(&node.addr, topic, "busy", "range", "busy", &seen);
    wait_for_all_consumed(&seen, 20);
    assert_eq!(committed("idle", &node.addr)[0], rdkafka::Offset::Offset(5));

    let deadline = Instant::now() + Duration::from_secs(100);
    while committed("idle", &node.addr)[0] != rdkafka::Offset::Invalid {
        assert!(
            Instant::now() < deadline,
            "idle group's offsets never expired:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        node.log().contains("expired committed offsets"),
        "{}",
        node.log()
    );
    // The member's group keeps its offsets.
    let kept = committed("busy", &node.addr);
    assert!(
        kept.iter().all(|o| matches!(o, rdkafka::Offset::Offset(_))),
        "{kept:?}"
    );
    drop(busy);

    node.kill();
    node.restart();
    assert_eq!(
        committed("idle", &node.addr)[0],
        rdkafka::Offset::Invalid,
        "back after a restart"
    );
}

/// Counts the rebalances a consumer goes through.
struct Counting(Arc<std::sync::atomic::AtomicUsize>);

impl rdkafka::client::ClientContext for Counting {}

impl rdkafka::consumer::ConsumerContext for Counting {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, _: &rdkafka::consumer::Rebalance<'_>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn static_member(
    addr: &str,
    instance: &str,
    count: &Arc<std::sync::atomic::AtomicUsize>,
) -> BaseConsumer<Counting> {
    let c: BaseConsumer<Counting> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "statics")
        .set("group.instance.id", instance)
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "500")
        .set("enable.auto.commit", "false")
        .create_with_context(Counting(count.clone()))
        .expect("consumer");
    c.subscribe(&["static-topic"]).expect("subscribe");
    c
}

fn assigned<C: rdkafka::consumer::ConsumerContext>(c: &BaseConsumer<C>) -> BTreeSet<i32> {
    c.assignment()
        .map(|a| {
            a.elements()
                .iter()
                .map(rdkafka::topic_partition_list::TopicPartitionListElem::partition)
                .collect()
        })
        .unwrap_or_default()
}

/// A static member (`group.instance.id`) that restarts within its session gets
/// its partitions back without a rebalance: the other member sees none.
#[test]
fn a_static_member_restarting_within_its_session_causes_no_rebalance() {
    let node = Node::start_with_config(CONFIG);
    create_topic(&node.addr, "static-topic", 4);
    let (ca, cb) = (
        Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        Arc::new(std::sync::atomic::AtomicUsize::new(0)),
    );
    let a = static_member(&node.addr, "instance-a", &ca);
    let b = static_member(&node.addr, "instance-b", &cb);
    let deadline = Instant::now() + Duration::from_mins(1);
    while !(assigned(&a).len() == 2 && assigned(&b).len() == 2) {
        assert!(
            Instant::now() < deadline,
            "a {:?} b {:?}",
            assigned(&a),
            assigned(&b)
        );
        let _ = a.poll(Duration::from_millis(50));
        let _ = b.poll(Duration::from_millis(50));
    }
    let (a_parts, b_parts) = (assigned(&a), assigned(&b));
    // Let any rebalance still in flight settle, then count from here.
    for _ in 0..20 {
        let _ = a.poll(Duration::from_millis(50));
        let _ = b.poll(Duration::from_millis(50));
    }
    let b_before = cb.load(Ordering::Relaxed);
    // Static members do not send LeaveGroup when they close.
    drop(a);
    let again = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let a2 = static_member(&node.addr, "instance-a", &again);
    let deadline = Instant::now() + Duration::from_mins(1);
    while assigned(&a2).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the restarted static member got nothing"
        );
        let _ = a2.poll(Duration::from_millis(50));
        let _ = b.poll(Duration::from_millis(50));
    }
    for _ in 0..40 {
        let _ = a2.poll(Duration::from_millis(50));
        let _ = b.poll(Duration::from_millis(50));
    }
    assert_eq!(assigned(&a2), a_parts, "the same partitions come back");
    assert_eq!(assigned(&b), b_parts);
    assert_eq!(
        cb.load(Ordering::Relaxed),
        b_before,
        "the other member saw a rebalance"
    );
}

/// A static member whose session ran out is gone at that moment, not on a later
/// polling tick (librdkafka's admin test deletes groups one session timeout after
/// closing their static members, and a group still holding its member answers
/// `NON_EMPTY_GROUP`). The members here speak the raw protocol, so the test knows
/// exactly when each sent its last heartbeat; librdkafka's AdminClient deletes each
/// group 30 ms after its member's session ran out. The five last heartbeats are 30
/// ms apart, so a coordinator checking sessions every 100 ms could not be on time
/// for all of them.
#[test]
fn static_members_leave_at_their_session_deadline() {
    const GROUPS: usize = 5;
    const SESSION_MS: i32 = 6000;
    const STAGGER: Duration = Duration::from_millis(30);
    let node = Node::start_with_config(CONFIG);
    let names: Vec<String> = (0..GROUPS).map(|i| format!("deadline-{i}")).collect();
    let mut c =
        sluice_net::client::Client::connect(&node.addr, Duration::from_secs(10)).expect("connect");
    let members: Vec<(i32, String)> = names
        .iter()
        .map(|g| protocol::static_member(&mut c, g, &format!("{g}-instance"), SESSION_MS))
        .collect();
    let session = Duration::from_millis(u64::try_from(SESSION_MS).expect("positive"));
    // Each member's last sign of life.
    let mut last = Vec::new();
    for (g, (generation, member)) in names.iter().zip(&members) {
        assert_eq!(protocol::heartbeat(&mut c, g, *generation, member), 0);
        last.push(Instant::now());
        std::thread::sleep(STAGGER);
    }

    // Shortly before the sessions end, every member is still there (so what is
    // checked below is the deadline, not an early expiry).
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &node.addr)
        .create()
        .expect("probe");
    std::thread::sleep(
        (last[0] + Duration::from_millis(u64::try_from(SESSION_MS - 500).expect("positive")))
            .saturating_duration_since(Instant::now()),
    );
    for g in &names {
        let described = probe
            .fetch_group_list(Some(g), Duration::from_secs(5))
            .expect("describe");
        let n = described.groups().first().map_or(0, |d| d.members().len());
        assert_eq!(n, 1, "{g} lost its member before its session ended");
    }

    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new()
            .set("bootstrap.servers", &node.addr)
            .create()
            .expect("admin");
    let options =
        rdkafka::admin::AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    // Connected, before the moments that count.
    let warm = futures::executor::block_on(admin.delete_groups(&["deadline-none"], &options))
        .expect("delete_groups");
    assert_eq!(warm.len(), 1);
    for (g, last) in names.iter().zip(last) {
        std::thread::sleep((last + session + STAGGER).saturating_duration_since(Instant::now()));
        let sent = last.elapsed().saturating_sub(session);
        let result = futures::executor::block_on(admin.delete_groups(&[g.as_str()], &options))
            .expect("delete_groups");
        assert!(
            result.iter().all(Result::is_ok),
            "{result:?}: DeleteGroups sent {sent:?} after the session ran out\nbroker log:\n{}",
            node.log()
        );
    }
}
