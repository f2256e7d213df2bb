//! Three real `sluice serve` processes on 127.0.0.1, .2 and .3 forming one cluster
//! through the metadata quorum: topics created on one node are placed on all
//! three, librdkafka follows the leaders and consumer groups have coordinators on
//! every node; the quorum survives the loss of its leader, fences a stopped
//! broker and takes it back, refuses metadata writes (retriably, in bounded time)
//! with two nodes down while the third serves its partitions, and a wiped node
//! catches up by snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_testkit::wire::{self, metadata, Client};
use sluice_testkit::{Cluster, Node};

/// Small caches: three nodes share this machine with the other tests.
fn storage(_: u8) -> String {
    "[storage]\ncache_mib_per_shard = 16\n".into()
}

/// Live brokers and, per (topic, partition), the leader, as `addr` answers.
type Leaders = BTreeMap<(String, i32), i32>;

fn leaders(md: &MetadataResponse) -> (Vec<i32>, Leaders) {
    let mut brokers: Vec<i32> = md.brokers.iter().map(|b| b.node_id.0).collect();
    brokers.sort_unstable();
    let mut out = BTreeMap::new();
    for t in &md.topics {
        let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
        for p in &t.partitions {
            out.insert((name.clone(), p.partition_index), p.leader_id.0);
        }
    }
    (brokers, out)
}

/// CreateTopics through the raw client: the topic's error code.
fn create_raw(addr: &str, topic: &str, partitions: i32) -> Result<i16, String> {
    let mut c = Client::connect(addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)]);
    let (_, r): (i16, CreateTopicsResponse) = c
        .call(ApiKey::CreateTopics, 5, &req)
        .map_err(|e| e.to_string())?;
    Ok(r.topics.first().map_or(-1, |t| t.error_code))
}

/// CreateTopics until it is not refused retriably (REQUEST_TIMED_OUT), or `within`.
fn create_when_possible(addr: &str, topic: &str, partitions: i32, within: Duration) -> i16 {
    let deadline = Instant::now() + within;
    loop {
        match create_raw(addr, topic, partitions) {
            Ok(7) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(code) => return code,
            Err(e) => panic!("CreateTopics to {addr}: {e}"),
        }
    }
}

/// `GET /v1/cluster` of a node.
fn cluster_view(node: &Node) -> serde_json::Value {
    let (status, _, body) = sluice_testkit::http(
        &node.admin_addr(),
        b"GET /v1/cluster HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

/// The quorum leader every node in `ids` agrees on, once they do.
fn agreed_leader(cluster: &mut Cluster, ids: &[u8], not: Option<u64>, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let seen: BTreeSet<Option<u64>> = ids
            .iter()
            .map(|i| cluster_view(cluster.node(*i))["quorum"]["leader"].as_u64())
            .collect();
        if let [Some(l)] = seen.iter().copied().collect::<Vec<_>>()[..] {
            if Some(l) != not && ids.contains(&u8::try_from(l).unwrap_or(0)) {
                return l;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no agreed leader among {ids:?}: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `check` holds for the Metadata `addr` answers.
fn wait_metadata(
    addr: &str,
    within: Duration,
    what: &str,
    check: impl Fn(&MetadataResponse) -> bool,
) {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok(md) = metadata(addr) {
            if check(&md) {
                return;
            }
            last = Some(leaders(&md));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} not seen at {addr} within {within:?}; last: {last:?}");
}

#[test]
fn three_nodes_form_a_cluster_and_librdkafka_follows_the_leaders() {
    let started = Instant::now();
    let cluster = Cluster::start_quorum(3, storage, |_| String::new());
    eprintln!("three nodes serving after {:?}", started.elapsed());
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.addr.clone()).collect();

    // 100 topics of 6 partitions, created through node 1 only.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &addrs[0])
        .create()
        .expect("admin client");
    let topics: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, 6, TopicReplication::Fixed(1)))
        .collect();
    let t0 = Instant::now();
    let results = futures::executor::block_on(admin.create_topics(
        &new,
        &AdminOptions::new().operation_timeout(Some(Duration::from_mins(1))),
    ))
    .expect("create_topics");
    for r in results {
        r.expect("topic created");
    }
    eprintln!("100 topics x 6 partitions created in {:?}", t0.elapsed());

    // Every node answers the same brokers and leaders (once it applied them all:
    // the creation was answered when node 1 had).
    for a in &addrs {
        wait_metadata(a, Duration::from_secs(30), "all 600 partitions", |md| {
            leaders(md)
                .1
                .keys()
                .filter(|(t, _)| t.starts_with('c'))
                .count()
                == 600
        });
    }
    let views: Vec<(Vec<i32>, Leaders)> = addrs
        .iter()
        .map(|a| leaders(&metadata(a).expect("metadata")))
        .collect();
    for (a, v) in addrs.iter().zip(&views) {
        assert_eq!(v.0, vec![1, 2, 3], "brokers at {a}");
        assert_eq!(v.1, views[0].1, "leaders at {a} differ from node 1's");
    }
    let mut per_node: BTreeMap<i32, usize> = BTreeMap::new();
    for ((t, _), l) in &views[0].1 {
        if t.starts_with('c') {
            *per_node.entry(*l).or_default() += 1;
        }
    }
    eprintln!("leaders per node: {per_node:?}");
    assert_eq!(per_node.values().sum::<usize>(), 600);
    let (min, max) = (
        per_node.values().min().copied().unwrap_or(0),
        per_node.values().max().copied().unwrap_or(0),
    );
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(max * 2 <= min * 3, "leaders unbalanced: {per_node:?}");
    hosts_what_it_leads(&cluster, &views[0].1);
    refuses_what_it_does_not_lead(&addrs[0], &views[0].1);

    produce_to_every_partition(&addrs[0], &topics);

    consume_everything(&addrs[1], &topics);
    // Group coordinators live on every node: __consumer_offsets is spread too.
    let md = metadata(&addrs[2]).expect("metadata");
    let offsets_leaders: BTreeSet<i32> = md
        .topics
        .iter()
        .filter(|t| {
            t.name
                .as_ref()
                .is_some_and(|n| &*n.0 == "__consumer_offsets")
        })
        .flat_map(|t| t.partitions.iter().map(|p| p.leader_id.0))
        .collect();
    assert_eq!(offsets_leaders, BTreeSet::from([1, 2, 3]));
    operators_see_the_quorum(&cluster);
    // `sluice group list` asks every broker: the group shows from any node.
    for a in &addrs {
        let (ok, out) = cluster_cli(&["group", "list", "--bootstrap", a]);
        assert!(ok && out.contains("cluster-readers"), "{a}: {out}");
    }
    grow_and_delete_across_nodes(&cluster);
}

/// Partitions added through one node are placed and created on their leaders; a
/// topic deleted through another leaves every node.
fn grow_and_delete_across_nodes(cluster: &Cluster) {
    use rdkafka::admin::NewPartitions;
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.addr.clone()).collect();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &addrs[2])
        .create()
        .expect("admin client");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let grown =
        futures::executor::block_on(admin.create_partitions(&[NewPartitions::new("c0", 9)], &opts))
            .expect("create_partitions");
    assert!(grown[0].is_ok(), "{grown:?}");
    let deleted =
        futures::executor::block_on(admin.delete_topics(&["c1"], &opts)).expect("delete_topics");
    assert!(deleted[0].is_ok(), "{deleted:?}");
    wait_metadata(
        &addrs[0],
        Duration::from_secs(30),
        "c0 with 9 partitions, no c1",
        |md| {
            let l = leaders(md).1;
            (0..9).all(|p| l.get(&("c0".to_string(), p)).is_some_and(|x| *x > 0))
                && !l.contains_key(&("c1".to_string(), 0))
        },
    );
    let l = leaders(&metadata(&addrs[0]).expect("metadata")).1;
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, node) in (1..=3).zip(&cluster.nodes) {
        loop {
            let dirs: BTreeSet<String> = std::fs::read_dir(node.data_dir())
                .expect("data dir")
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with("c0-") || n.starts_with("c1-"))
                .collect();
            let want: BTreeSet<String> = (0..9)
                .filter(|p| l.get(&("c0".to_string(), *p)) == Some(&i))
                .map(|p| format!("c0-{p}"))
                .collect();
            if dirs == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {i}: {dirs:?}, not {want:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A consumer group, given one node only, reads every record back (one per
/// partition of `topics`, 6 each), keys, values and offsets checked, and commits.
fn consume_everything(addr: &str, topics: &[String]) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "cluster-readers")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).expect("subscribe");
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while seen.len() < 600 && Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m.expect("record");
        let key = String::from_utf8(m.key().expect("key").to_vec()).expect("utf-8");
        assert_eq!(key, format!("{}/{}", m.topic(), m.partition()));
        assert_eq!(m.payload(), Some(format!("value of {key}").as_bytes()));
        assert_eq!(m.offset(), 0);
        seen.insert(key);
    }
    assert_eq!(seen.len(), 600, "records read back");
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");
}

/// `sluice cluster status` and `/metrics` show the quorum and the brokers.
fn operators_see_the_quorum(cluster: &Cluster) {
    let (status, out, err) = sluice_testkit::run(
        std::process::Command::new(sluice_testkit::sluice_bin()).args([
            "cluster",
            "status",
            "--bootstrap",
            &cluster.nodes[1].addr,
        ]),
        None,
    );
    assert!(status.success(), "{out}{err}");
    let leader: i32 = out
        .lines()
        .find_map(|l| l.strip_prefix("leader"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no leader line:\n{out}"));
    assert!((1..=3).contains(&leader), "{out}");
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.contains(" voter ") || l.contains(" leader "))
        .collect();
    assert_eq!(rows.len(), 3, "three voters:\n{out}");
    assert_eq!(
        out.matches(" alive").count(),
        3,
        "three live brokers:\n{out}"
    );
    let (code, _, metrics) = sluice_testkit::http(
        &cluster.nodes[0].admin_addr(),
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 200);
    for want in [
        "sluice_brokers{state=\"alive\"} 3".to_string(),
        format!("sluice_quorum_leader {leader}"),
    ] {
        assert!(metrics.contains(&want), "{want} in:\n{metrics}");
    }
    let appends = metric(&metrics, "sluice_quorum_append_duration_seconds_count");
    assert!(appends >= 100.0, "appends to the Raft log: {appends}");
}

/// Each node holds directories for exactly the partitions it leads.
fn hosts_what_it_leads(cluster: &Cluster, leaders: &Leaders) {
    // Each node hosts exactly the partitions it leads.
    for (i, node) in (1..=3).zip(&cluster.nodes) {
        let dirs: BTreeSet<String> = std::fs::read_dir(node.data_dir())
            .expect("data dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.starts_with('c'))
            .collect();
        let led: BTreeSet<String> = leaders
            .iter()
            .filter(|((t, _), l)| t.starts_with('c') && **l == i)
            .map(|((t, p), _)| format!("{t}-{p}"))
            .collect();
        assert_eq!(dirs, led, "partition directories of node {i}");
    }
}

/// A node asked for a partition another leads answers NOT_LEADER_OR_FOLLOWER.
fn refuses_what_it_does_not_lead(addr: &str, leaders: &Leaders) {
    // A node asked for a partition another leads says so.
    let ((topic, partition), leader) = leaders
        .iter()
        .find(|((t, _), l)| t.starts_with('c') && **l != 1)
        .map(|(k, l)| (k.clone(), *l))
        .expect("a partition led elsewhere");
    let mut c = Client::connect(addr, Duration::from_secs(5)).expect("connect");
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.clone())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(-1)])]);
    let (_, r): (i16, ListOffsetsResponse) =
        c.call(ApiKey::ListOffsets, 7, &req).expect("ListOffsets");
    assert_eq!(
        r.topics[0].partitions[0].error_code, 6,
        "{topic}-{partition} (led by {leader}) asked of node 1: NOT_LEADER_OR_FOLLOWER"
    );
    leader_hints(&mut c, &topic, partition, leader);
}

/// KIP-951: Produce v11 and Fetch v16 sent to the wrong node name the current
/// leader and its endpoint, the same one Metadata gives.
fn leader_hints(c: &mut Client, topic: &str, partition: i32, leader: i32) {
    let md: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .expect("Metadata")
        .1;
    let broker = md
        .brokers
        .iter()
        .find(|x| x.node_id.0 == leader)
        .expect("the leader in Metadata");
    let expected = (
        leader,
        broker.host.to_string(),
        broker.port,
        broker.rack.clone(),
    );
    let id = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .expect("the topic in Metadata")
        .topic_id;
    let r: ProduceResponse =
        wire::produce_one(c, 11, 1, (topic, partition), b"misdirected").expect("Produce");
    let part = &r.responses[0].partition_responses[0];
    let hint = Hint {
        error_code: part.error_code,
        leader: (
            part.current_leader.leader_id.0,
            part.current_leader.leader_epoch,
        ),
        endpoints: r
            .node_endpoints
            .iter()
            .map(|n| (n.node_id.0, n.host.to_string(), n.port, n.rack.clone()))
            .collect(),
    };
    hint.check("Produce", leader, &expected);

    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic_id(id)
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_partition_max_bytes(1 << 20)])]);
    let (_, r): (i16, FetchResponse) = c.call(ApiKey::Fetch, 16, &fetch).expect("Fetch");
    let part = &r.responses[0].partitions[0];
    let hint = Hint {
        error_code: part.error_code,
        leader: (
            part.current_leader.leader_id.0,
            part.current_leader.leader_epoch,
        ),
        endpoints: r
            .node_endpoints
            .iter()
            .map(|n| (n.node_id.0, n.host.to_string(), n.port, n.rack.clone()))
            .collect(),
    };
    hint.check("Fetch", leader, &expected);
}

/// A broker's endpoint as a response lists it: (id, host, port, rack).
type Endpoint = (i32, String, i32, Option<StrBytes>);

/// What a misdirected Produce or Fetch answered for its partition.
struct Hint {
    error_code: i16,
    /// (leader id, leader epoch)
    leader: (i32, i32),
    endpoints: Vec<Endpoint>,
}

impl Hint {
    fn check(&self, api: &str, leader: i32, expected: &Endpoint) {
        assert_eq!(self.error_code, 6, "{api}: NOT_LEADER_OR_FOLLOWER");
        assert_eq!(self.leader, (leader, 0), "{api}'s current leader");
        assert_eq!(
            self.endpoints,
            vec![expected.clone()],
            "{api}'s node endpoints"
        );
    }
}

/// librdkafka, given one node only, writes one record to every partition of
/// `topics` (6 each), each at offset 0.
fn produce_to_every_partition(addr: &str, topics: &[String]) {
    // librdkafka, given node 1 only, writes one record to every partition.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let records: Vec<(&str, i32, String, String)> = topics
        .iter()
        .flat_map(|t| (0..6).map(move |p| (t.as_str(), p)))
        .map(|(t, p)| (t, p, format!("{t}/{p}"), format!("value of {t}/{p}")))
        .collect();
    let pending: Vec<_> = records
        .iter()
        .map(|(t, p, key, value)| {
            producer
                .send_result(FutureRecord::to(t).partition(*p).key(key).payload(value))
                .map_err(|(e, _)| e)
        })
        .collect();
    for f in pending {
        let rdkafka::producer::future_producer::Delivery {
            partition: p,
            offset,
            ..
        } = futures::executor::block_on(f.expect("queued"))
            .expect("delivery")
            .expect("acknowledged");
        assert_eq!(offset, 0, "partition {p}");
    }
}

#[test]
fn the_quorum_loses_its_leader_fences_a_stopped_broker_and_survives_two_nodes_down() {
    let mut cluster = Cluster::start_quorum(3, storage, |_| "session_timeout_ms = 3000".into());
    assert_eq!(create_raw(&addr(&cluster, 1), "before", 6), Ok(0));

    let others = lose_the_leader(&mut cluster);

    let before = fence_and_take_back(&mut cluster, others[1], others[0]);

    // Two of three down: metadata writes are refused retriably, in bounded time;
    // the third node still serves the partitions it leads.
    let survivor = agreed_leader(&mut cluster, &[1, 2, 3], None, Duration::from_secs(10));
    let survivor = u8::try_from(survivor).expect("id");
    let down: Vec<u8> = (1..=3).filter(|i| *i != survivor).collect();
    for d in &down {
        cluster.node(*d).kill();
    }
    let asked = Instant::now();
    let code = create_raw(&addr(&cluster, survivor), "no-quorum", 1).expect("an answer");
    assert_eq!(code, 7, "REQUEST_TIMED_OUT (retriable) without a quorum");
    eprintln!("refused after {:?} without a quorum", asked.elapsed());
    let own: (String, i32) = before
        .iter()
        .find(|(_, l)| **l == i32::from(survivor))
        .map(|(k, _)| k.clone())
        .expect("a partition led by the survivor");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", addr(&cluster, survivor))
        .set("acks", "all")
        .set("message.timeout.ms", "20000")
        .create()
        .expect("producer");
    let rdkafka::producer::future_producer::Delivery {
        partition: p,
        offset,
        ..
    } = futures::executor::block_on(
        producer
            .send_result(
                FutureRecord::to(&own.0)
                    .partition(own.1)
                    .key("k")
                    .payload("alone"),
            )
            .expect("queued"),
    )
    .expect("delivery")
    .expect("acknowledged by the survivor");
    assert_eq!(p, own.1);
    drop(producer);
    // Everyone back: the same topics and leaders, and the record still there.
    for d in &down {
        cluster.node(*d).relaunch();
    }
    for d in &down {
        cluster.node(*d).wait_serving();
    }
    for i in 1..=3 {
        wait_metadata(
            &addr(&cluster, i),
            Duration::from_secs(30),
            "every broker back",
            |md| {
                let (brokers, l) = leaders(md);
                brokers == vec![1, 2, 3]
                    && before.iter().all(|(k, v)| l.get(k) == Some(v))
                    && l.contains_key(&("after-kill".to_string(), 0))
            },
        );
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr(&cluster, 1))
        .set("group.id", "after-restart")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&own.0, own.1, rdkafka::Offset::Offset(offset))
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            let m = m.expect("record");
            assert_eq!(m.payload(), Some(&b"alone"[..]));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the record written alone is gone"
        );
    }
}

fn addr(c: &Cluster, i: u8) -> String {
    c.nodes[usize::from(i) - 1].addr.clone()
}

/// SIGKILL the quorum's leader: the two others agree on a new one, topics can be
/// created again, and the killed node restarts and catches up. Returns the two
/// that stayed up.
fn lose_the_leader(cluster: &mut Cluster) -> Vec<u8> {
    // SIGKILL the leader: the two others agree on a new one.
    let old = agreed_leader(cluster, &[1, 2, 3], None, Duration::from_secs(10));
    let old_node = u8::try_from(old).expect("node id");
    let others: Vec<u8> = (1..=3).filter(|i| *i != old_node).collect();
    cluster.node(old_node).kill();
    let killed = Instant::now();
    let new = agreed_leader(cluster, &others, Some(old), Duration::from_secs(20));
    eprintln!(
        "leader {old} killed; {new} leads after {:?}",
        killed.elapsed()
    );
    let code = create_when_possible(
        &addr(cluster, others[0]),
        "after-kill",
        3,
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "topic creation after the leader's loss");
    eprintln!("first topic created {:?} after the kill", killed.elapsed());
    // The killed node comes back and catches up.
    cluster.node(old_node).restart();
    wait_metadata(
        &addr(cluster, old_node),
        Duration::from_secs(30),
        "after-kill at the restarted node",
        |md| {
            md.topics
                .iter()
                .any(|t| t.name.as_ref().is_some_and(|n| &*n.0 == "after-kill"))
                && md.brokers.len() == 3
        },
    );
    others
}

/// SIGSTOP `victim` past its session: fenced, its partitions offline (as
/// `watcher` answers); SIGCONT: back, and so are they. Returns the leaders.
fn fence_and_take_back(cluster: &mut Cluster, victim: u8, watcher: u8) -> Leaders {
    // SIGSTOP a broker past its session: fenced, its partitions offline; SIGCONT:
    // back, and so are they.
    let watcher = addr(cluster, watcher);
    let before: Leaders = leaders(&metadata(&watcher).expect("metadata")).1;
    let victims: Vec<(String, i32)> = before
        .iter()
        .filter(|(_, l)| **l == i32::from(victim))
        .map(|(k, _)| k.clone())
        .collect();
    assert!(
        !victims.is_empty(),
        "node {victim} leads nothing: {before:?}"
    );
    cluster.node(victim).pause();
    wait_metadata(
        &watcher,
        Duration::from_secs(30),
        "the stopped broker fenced",
        |md| {
            let (brokers, l) = leaders(md);
            !brokers.contains(&i32::from(victim)) && victims.iter().all(|k| l.get(k) == Some(&-1))
        },
    );
    cluster.node(victim).resume();
    wait_metadata(
        &watcher,
        Duration::from_secs(30),
        "the resumed broker back",
        |md| leaders(md) == (vec![1, 2, 3], before.clone()),
    );
    before
}

#[test]
fn a_wiped_node_catches_up_by_snapshot() {
    // Snapshots every 5 entries, the log behind them purged.
    let mut cluster = Cluster::start_quorum_with_env(
        3,
        storage,
        |_| String::new(),
        &[("SLUICE_TEST_SNAPSHOT_EVERY", "5")],
    );
    cluster.node(3).stop();
    cluster.node(3).wipe();
    let a1 = cluster.nodes[0].addr.clone();
    for i in 0..20 {
        assert_eq!(
            create_when_possible(&a1, &format!("s{i}"), 1, Duration::from_secs(30)),
            0
        );
    }
    cluster.node(3).restart();
    let a3 = cluster.nodes[2].addr.clone();
    wait_metadata(
        &a3,
        Duration::from_secs(30),
        "every topic at the wiped node",
        |md| {
            (0..20).all(|i| {
                md.topics
                    .iter()
                    .any(|t| t.name.as_ref().is_some_and(|n| *n.0 == format!("s{i}")))
            })
        },
    );
    let view = cluster_view(cluster.node(3));
    assert!(
        view["quorum"]["snapshot_index"].as_u64().is_some(),
        "the wiped node holds a snapshot: {view}"
    );
    let (_, _, metrics) = sluice_testkit::http(
        &cluster.node(3).admin_addr(),
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let installed = metric(
        &metrics,
        "sluice_quorum_snapshots_total{kind=\"installed\"}",
    );
    assert!(
        installed >= 1.0,
        "snapshots installed from the leader: {installed}"
    );
}

/// The voter ids `sluice cluster status` lists, and the learners.
fn roles(addr: &str) -> (Vec<i32>, Vec<i32>) {
    let (status, out, err) = sluice_testkit::run(
        std::process::Command::new(sluice_testkit::sluice_bin()).args([
            "cluster",
            "status",
            "--bootstrap",
            addr,
        ]),
        None,
    );
    assert!(status.success(), "{out}{err}");
    let mut voters = Vec::new();
    let mut learners = Vec::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [id, role, ..] = f[..] {
            match (id.parse::<i32>(), role) {
                (Ok(id), "voter" | "leader") => voters.push(id),
                (Ok(id), "learner") => learners.push(id),
                _ => {}
            }
        }
    }
    voters.sort_unstable();
    (voters, learners)
}

/// Waits until `sluice cluster status` shows these voters and learners (the
/// leader's metrics follow a committed membership change a moment later).
fn wait_roles(addr: &str, voters: &[i32], learners: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = roles(addr);
        if seen == (voters.to_vec(), learners.to_vec()) {
            return;
        }
        if Instant::now() >= deadline {
            // What the quorum's leader reports in full (a joint configuration
            // lists the voters of both halves).
            let (_, raw) = cluster_cli(&["cluster", "status", "--bootstrap", addr]);
            panic!("voters and learners {seen:?}, not {voters:?} and {learners:?}:\n{raw}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cluster_cli(args: &[&str]) -> (bool, String) {
    let (status, out, err) = sluice_testkit::run(
        std::process::Command::new(sluice_testkit::sluice_bin()).args(args),
        None,
    );
    (status.success(), format!("{out}{err}"))
}

#[test]
fn a_broker_joins_as_a_learner_and_voters_change_at_runtime() {
    let mut cluster = Cluster::start_quorum(3, storage, |_| String::new());
    let a1 = cluster.nodes[0].addr.clone();
    // Node 4 is not among the voters: it joins as a broker that follows the log.
    let a4 = cluster.join(&storage(4)).addr.clone();
    wait_roles(&a1, &[1, 2, 3], &[4]);
    wait_metadata(&a1, Duration::from_secs(30), "four brokers", |md| {
        leaders(md).0 == vec![1, 2, 3, 4]
    });
    // Partitions are placed on it too.
    assert_eq!(create_raw(&a4, "four", 8), Ok(0));
    // Node 4 answered once it applied the creation: its Metadata shows it.
    let placed: BTreeSet<i32> = leaders(&metadata(&a4).expect("metadata"))
        .1
        .iter()
        .filter(|((t, _), _)| t == "four")
        .map(|(_, l)| *l)
        .collect();
    assert_eq!(placed, BTreeSet::from([1, 2, 3, 4]));

    // It becomes a voter, and voter 1 becomes a learner; both through node 2.
    let port = cluster.cluster_port;
    let a2 = cluster.nodes[1].addr.clone();
    let (ok, out) = cluster_cli(&[
        "cluster",
        "add-voter",
        "--bootstrap",
        &a2,
        &format!("4@127.0.0.4:{port}"),
    ]);
    assert!(ok, "{out}");
    wait_roles(&a4, &[1, 2, 3, 4], &[]);
    let (ok, out) = cluster_cli(&["cluster", "remove-voter", "--bootstrap", &a2, "1"]);
    assert!(ok, "{out}");
    wait_roles(&a4, &[2, 3, 4], &[1]);
    // Refusals say why and change nothing.
    let (ok, out) = cluster_cli(&["cluster", "remove-voter", "--bootstrap", &a2, "9"]);
    assert!(!ok && out.contains("node 9 is not a voter"), "{out}");
    let (ok, out) = cluster_cli(&["cluster", "add-voter", "--bootstrap", &a2, "x@y"]);
    assert!(!ok && out.contains("ID@HOST:PORT"), "{out}");
    // The quorum of 2, 3, 4 takes changes with node 1 (now a learner) stopped.
    cluster.node(1).stop();
    assert_eq!(
        create_when_possible(&a4, "after-change", 1, Duration::from_secs(30)),
        0
    );
}

/// AlterConfigs on BROKER resources through the raw client: the error code.
fn alter_broker_raw(addr: &str, resource: &str, key: &str, value: &str) -> i16 {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
    let mut c = Client::connect(addr, Duration::from_secs(5)).expect("connect");
    let req = AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(4)
        .with_resource_name(StrBytes::from_string(resource.to_string()))
        .with_configs(vec![AlterableConfig::default()
            .with_name(StrBytes::from_string(key.to_string()))
            .with_value(Some(StrBytes::from_string(value.to_string())))])]);
    let (_, r): (i16, AlterConfigsResponse) =
        c.call(ApiKey::AlterConfigs, 2, &req).expect("AlterConfigs");
    r.responses[0].error_code
}

#[test]
fn dynamic_broker_configs_reach_every_node() {
    use rdkafka::admin::{AlterConfig, ConfigSource, ResourceSpecifier};
    let cluster = Cluster::start_quorum(3, storage, |_| String::new());
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.addr.clone()).collect();
    // The cluster-wide default through node 1 (raw: librdkafka names brokers by id
    // only), broker 2's own value through librdkafka.
    assert_eq!(
        alter_broker_raw(&addrs[0], "", "log.retention.ms", "3600000"),
        0
    );
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &addrs[0])
        .create()
        .expect("admin client");
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let altered = futures::executor::block_on(admin.alter_configs(
        &[AlterConfig::new(ResourceSpecifier::Broker(2)).set("log.retention.ms", "7200000")],
        &opts,
    ))
    .expect("alter_configs");
    assert!(altered[0].is_ok(), "{altered:?}");
    // Each broker describes its own: 2 its value, the others the cluster default.
    for (id, want, source) in [
        (1, "3600000", ConfigSource::DynamicDefaultBroker),
        (2, "7200000", ConfigSource::DynamicBroker),
        (3, "3600000", ConfigSource::DynamicDefaultBroker),
    ] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let described = futures::executor::block_on(
                admin.describe_configs(&[ResourceSpecifier::Broker(id)], &opts),
            )
            .expect("describe_configs");
            let r = described[0].as_ref().expect("broker configs");
            let e = r.get("log.retention.ms").expect("log.retention.ms");
            if e.value.as_deref() == Some(want) {
                assert_eq!(e.source, source, "broker {id}");
                assert!(!e.is_read_only, "broker {id}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "broker {id}: log.retention.ms {:?}, not {want}",
                e.value
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // A topic without its own retention.ms takes its node's dynamic default.
    assert_eq!(create_raw(&addrs[1], "dyn", 1), Ok(0));
    for a in &addrs {
        wait_metadata(a, Duration::from_secs(30), "topic dyn", |md| {
            leaders(md).1.contains_key(&("dyn".to_string(), 0))
        });
    }
    let described = futures::executor::block_on(
        admin.describe_configs(&[ResourceSpecifier::Topic("dyn")], &opts),
    )
    .expect("describe_configs");
    let r = described[0].as_ref().expect("topic configs");
    let retention = r.get("retention.ms").and_then(|e| e.value.clone());
    assert!(
        matches!(retention.as_deref(), Some("3600000" | "7200000")),
        "{retention:?}"
    );
    // Keys that come from the config file, bad values and unknown brokers: refused.
    assert_eq!(alter_broker_raw(&addrs[0], "", "num.partitions", "3"), 40);
    assert_eq!(
        alter_broker_raw(&addrs[0], "", "log.segment.bytes", "-5"),
        40
    );
    assert_eq!(
        alter_broker_raw(&addrs[0], "9", "log.retention.ms", "1"),
        42
    );
}

/// The value of the sample `name` (with its labels) in a Prometheus text page.
fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{page}"))
}

#[test]
fn a_node_without_a_quorum_waits_and_stops_on_sigterm() {
    let hosts = [std::net::IpAddr::from([127, 0, 0, 1])];
    let cport = sluice_testkit::free_fixed_port_on(&hosts);
    let toml = format!(
        "node_id = 1\n[cluster]\nvoters = \"1@127.0.0.1:{cport},2@127.0.0.2:{cport},3@127.0.0.3:{cport}\"\n"
    );
    let mut node = Node::launch(sluice_testkit::NodeOptions {
        toml,
        ..sluice_testkit::NodeOptions::default()
    });
    // It says what it waits for, and does not serve.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !node.log().contains("waiting for the metadata quorum") {
        assert!(Instant::now() < deadline, "{}", node.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !node.log().contains("serving Kafka clients"),
        "{}",
        node.log()
    );
    // A stop signal ends it at once (nothing was acknowledged yet).
    node.send_signal(nix::sys::signal::Signal::SIGTERM);
    let status = node.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", node.log());
    assert!(node.log().contains("while starting"), "{}", node.log());
}

/// Copies the directory tree `from` into `to` (files and directories only).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A node that ran on its own before it was given `cluster.voters` (a package's
/// first start with the default configuration does that): if it never held a
/// topic, its single-node metadata is set aside and it joins the cluster; if it
/// held one, it refuses to start and its data stays as it was.
#[test]
fn a_node_that_ran_alone_joins_only_if_it_never_held_a_topic() {
    let mut unused = Node::start();
    unused.stop();
    let mut used = Node::start();
    assert_eq!(create_raw(&used.addr, "kept", 1), Ok(0));
    used.stop();

    let mut cluster = Cluster::start_quorum(3, storage, |_| String::new());
    cluster.node(3).stop();

    // Held a topic: refused, nothing moved.
    cluster.node(3).wipe();
    let dir3 = cluster.node(3).data_dir();
    copy_tree(&used.data_dir(), &dir3);
    cluster.node(3).relaunch();
    let status = cluster.node(3).wait_exit();
    let log = cluster.node(3).log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("holds the metadata of a single-node broker"),
        "{log}"
    );
    assert!(dir3.join("metadata/log").exists());
    assert!(dir3.join("kept-0").exists());

    // Never held one: set aside, and the node joins.
    cluster.node(3).wipe();
    copy_tree(&unused.data_dir(), &dir3);
    cluster.node(3).restart();
    let log = cluster.node(3).log();
    assert!(log.contains("its metadata is set aside"), "{log}");
    let aside: Vec<String> = std::fs::read_dir(&dir3)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("metadata.single-node."))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let aside = dir3.join(&aside[0]).join("log");
    assert!(aside.exists());
    let a1 = cluster.nodes[0].addr.clone();
    assert_eq!(
        create_when_possible(&a1, "after", 3, Duration::from_secs(30)),
        0
    );
    let a3 = cluster.nodes[2].addr.clone();
    wait_metadata(
        &a3,
        Duration::from_secs(30),
        "three brokers and the topic at node 3",
        |md| {
            md.brokers.len() == 3
                && md
                    .topics
                    .iter()
                    .any(|t| t.name.as_ref().is_some_and(|n| *n.0 == *"after"))
        },
    );
    // What was set aside stays, through the partition reconciliation of another
    // start too (a NAME-NUMBER directory would be taken for a partition).
    cluster.node(3).stop();
    std::fs::create_dir(dir3.join("stray")).expect("a stray directory");
    cluster.node(3).restart();
    // Only the stray directory is worth a warning, not the metadata stores.
    let warned: Vec<String> = cluster
        .node(3)
        .log()
        .lines()
        .filter(|l| l.contains("ignoring a directory that is not a partition"))
        .map(str::to_string)
        .collect();
    assert!(
        warned.len() == 1 && warned[0].contains("stray"),
        "{warned:?}"
    );
    wait_metadata(
        &a3,
        Duration::from_secs(30),
        "the topic at node 3 again",
        |md| {
            md.topics
                .iter()
                .any(|t| t.name.as_ref().is_some_and(|n| *n.0 == *"after"))
        },
    );
    assert!(aside.exists(), "{}", cluster.node(3).log());
}
