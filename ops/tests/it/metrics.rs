//! `/metrics` of a real `sluice serve`: counters move by what the clients did,
//! `promtool check metrics` finds no problem, and a real Prometheus server scrapes
//! the node.

// Values compared are integer counts, exact in an f64.
#![allow(clippy::float_cmp)]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_net::client::Client;

use crate::node::{run, Node};

/// Samples of an exposition: (name, labels) → value.
type Samples = Vec<(String, BTreeMap<String, String>, f64)>;

fn scrape(admin: &str) -> (String, Samples) {
    let (status, _, body) = crate::node::http(
        admin,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n",
    );
    assert_eq!(status, 200, "{body}");
    let samples = parse(&body);
    (body, samples)
}

/// A small parser of the text format (enough for our own label values).
fn parse(text: &str) -> Samples {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split("\",")
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once("=\"").expect("label");
                (k.to_string(), v.trim_end_matches('"').to_string())
            })
            .collect();
        out.push((name.to_string(), labels, value));
    }
    out
}

/// Sum of the samples named `name` whose labels include `want`.
fn value(samples: &Samples, name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, labels, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

fn sluice(args: &[&str], stdin: Option<&[u8]>) -> String {
    let (status, out, err) = run(Command::new(env!("CARGO_BIN_EXE_sluice")).args(args), stdin);
    assert!(status.success(), "sluice {args:?}: {status}\n{out}\n{err}");
    out
}

/// Reads partition 0 of `topic` from offset 0 with Fetch v13 (topic by id).
fn fetch_all_by_topic_id(addr: &str, topic: &str) {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{
        BrokerId, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse,
    };
    let mut client = Client::connect(addr, Duration::from_secs(10)).expect("connect");
    let (_, meta): (i16, MetadataResponse) = client
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(TopicName(s(topic))))
            ])),
        )
        .expect("Metadata");
    let id = meta.topics[0].topic_id;
    let mut offset = 0i64;
    while offset < 500 {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(100)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic_id(id)
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]);
        let (version, answer): (i16, FetchResponse) =
            client.call(ApiKey::Fetch, 13, &req).expect("Fetch");
        assert_eq!(version, 13);
        let part = &answer.responses[0].partitions[0];
        assert_eq!(part.error_code, 0);
        let mut records = part.records.clone().expect("records");
        let mut got = false;
        while bytes::Buf::has_remaining(&records) {
            let set =
                kafka_protocol::records::RecordBatchDecoder::decode(&mut records).expect("batch");
            for record in set.records {
                offset = record.offset + 1;
                got = true;
            }
        }
        assert!(got, "no progress at offset {offset}");
    }
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// A commit outside any generation (what admin tools do); returns the error code.
fn commit(addr: &str, group: &str, topic: &str, partition: i32, offset: i64) -> i16 {
    let mut c = Client::connect(addr, Duration::from_secs(10)).expect("connect");
    crate::groups::protocol::commit(&mut c, group, -1, "", topic, partition, offset, "")
}

#[test]
#[allow(clippy::too_many_lines)] // One story: produce, consume, commit, check.
fn counters_move_by_what_the_clients_did() {
    let node = Node::start();
    let admin = node.admin_addr();
    let topic = "metered";
    sluice(
        &["topic", "create", "-b", &node.addr, topic, "-p", "1"],
        None,
    );
    let (_, before) = scrape(&admin);

    // 500 records in 5 produce requests of 100, acks=all.
    let lines: String = (0..500)
        .map(|i| format!("record-{i:04}"))
        .collect::<Vec<_>>()
        .join("\n");
    sluice(
        &[
            "produce", "-b", &node.addr, topic, "--batch", "100", "--acks", "all",
        ],
        Some(lines.as_bytes()),
    );
    let (_, after) = scrape(&admin);
    let delta =
        |name: &str, want: &[(&str, &str)]| value(&after, name, want) - value(&before, name, want);
    let t = [("topic", topic)];
    let tp = [("topic", topic), ("partition", "0")];
    assert_eq!(
        delta("sluice_requests_total", &[("api", "Produce")]),
        5.0,
        "five produce requests"
    );
    assert_eq!(
        delta(
            "sluice_request_duration_seconds_count",
            &[("api", "Produce")]
        ),
        5.0
    );
    assert_eq!(value(&after, "sluice_topic_records_in_total", &t), 500.0);
    let bytes_in = value(&after, "sluice_topic_bytes_in_total", &t);
    // The log holds exactly the batches appended.
    assert_eq!(bytes_in, value(&after, "sluice_partition_size_bytes", &tp));
    assert!(bytes_in > 500.0 * 11.0, "{bytes_in}");
    assert_eq!(value(&after, "sluice_partition_high_watermark", &tp), 500.0);
    assert_eq!(value(&after, "sluice_partition_log_end_offset", &tp), 500.0);
    assert_eq!(value(&after, "sluice_partition_log_start_offset", &tp), 0.0);
    assert!(value(&after, "sluice_partition_segments", &tp) >= 1.0);
    // acks=all: each answer waited for an fdatasync, which took some time.
    let flushes = delta("sluice_shard_flushes_total", &[]);
    assert!(flushes >= 1.0, "{flushes}");
    assert!(delta("sluice_shard_flush_duration_seconds_sum", &[]) > 0.0);
    assert!(delta("sluice_connections_accepted_total", &[]) >= 1.0);
    for (_, labels, v) in after.iter().filter(|(n, _, _)| n == "sluice_shard_up") {
        assert_eq!(*v, 1.0, "shard {labels:?} answered");
    }

    // Everything consumed once: bytes out equal bytes in.
    let consumed = sluice(&["consume", "-b", &node.addr, topic, "-e"], None);
    assert_eq!(consumed.lines().count(), 500);
    // Once more with Fetch v13, which names the topic by id only.
    fetch_all_by_topic_id(&node.addr, topic);
    let (_, read) = scrape(&admin);
    assert_eq!(
        value(&read, "sluice_topic_bytes_out_total", &t),
        2.0 * bytes_in
    );
    assert!(
        !read
            .iter()
            .any(|(n, labels, _)| n.starts_with("sluice_topic_")
                && labels.get("topic").is_some_and(String::is_empty)),
        "a topic series without a name"
    );
    assert!(
        value(
            &read,
            "sluice_requests_total",
            &[("api", "Fetch"), ("version", "13")]
        ) >= 1.0
    );
    // Requests for APIs not served share one bucket, whatever their key.
    for key in [999u16, 1234] {
        let mut s = std::net::TcpStream::connect(&node.addr).expect("connect");
        let mut frame = vec![0, 0, 0, 10];
        frame.extend_from_slice(&key.to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0, 0, 7, 0xff, 0xff]);
        std::io::Write::write_all(&mut s, &frame).expect("write");
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s, &mut rest);
        assert!(rest.is_empty(), "an unknown API is answered by closing");
    }
    let (_, odd) = scrape(&admin);
    let unknown_api = [
        ("api", "Unknown"),
        ("version", "unsupported"),
        ("error", "ConnectionClosed"),
    ];
    assert_eq!(
        value(&odd, "sluice_request_errors_total", &unknown_api)
            - value(&read, "sluice_request_errors_total", &unknown_api),
        2.0
    );
    let read = odd;

    // A committed offset and the lag behind the high watermark.
    assert_eq!(commit(&node.addr, "metered-group", topic, 0, 300), 0);
    // An error code answered: a partition that does not exist.
    assert_eq!(commit(&node.addr, "metered-group", topic, 9, 1), 3);
    let (text, end) = scrape(&admin);
    let g = [
        ("group", "metered-group"),
        ("topic", topic),
        ("partition", "0"),
    ];
    assert_eq!(value(&end, "sluice_group_committed_offset", &g), 300.0);
    assert_eq!(value(&end, "sluice_group_lag", &g), 200.0);
    let unknown = [
        ("api", "OffsetCommit"),
        ("error", "UnknownTopicOrPartition"),
    ];
    assert_eq!(
        value(&end, "sluice_request_errors_total", &unknown)
            - value(&read, "sluice_request_errors_total", &unknown),
        1.0
    );
    assert_eq!(
        value(
            &end,
            "sluice_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(value(&end, "sluice_data_dir_filesystem_free_bytes", &[]) > 0.0);
    assert!(value(&end, "process_start_time_seconds", &[]) > 1.7e9);

    // promtool (Debian package `prometheus`) finds nothing wrong.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; .ci/test-all installs it)");
    std::io::Write::write_all(promtool.stdin.as_mut().expect("stdin"), text.as_bytes())
        .expect("write to promtool");
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // OpenMetrics when asked.
    let (status, head, body) = crate::node::http(
        &admin,
        b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(body.ends_with("# EOF\n"));
    assert!(body.contains("# TYPE sluice_requests counter"));
    assert!(!node.log().contains("panicked"));
}

/// GET on Prometheus's HTTP API; the JSON answer.
fn prom_query(prom: &str, query: &str) -> serde_json::Value {
    let q: String = query
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    // Prometheus may not listen yet.
    let Ok((200, _, body)) = crate::node::try_http(
        prom,
        format!("GET /api/v1/query?query={q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    ) else {
        return serde_json::Value::Null;
    };
    serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
}

/// The first result's value of an instant query, if any.
fn prom_value(prom: &str, query: &str) -> Option<f64> {
    prom_query(prom, query)["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
}

/// A child process killed when dropped.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_the_node() {
    let node = Node::start();
    let admin = node.admin_addr();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: ['{admin}']\n"
        ),
    )
    .expect("config");
    let prom = format!("127.0.0.1:{}", crate::node::free_fixed_port());
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
    let server = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={prom}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus (Debian package prometheus; .ci/test-all installs it)");
    let _server = Kill(server);

    let deadline = Instant::now() + Duration::from_secs(90);
    let mut up = None;
    let mut rate = None;
    let mut i = 0;
    while Instant::now() < deadline {
        // Traffic while Prometheus scrapes.
        let lines: String = (0..50)
            .map(|j| format!("r{i}-{j}"))
            .collect::<Vec<_>>()
            .join("\n");
        sluice(
            &["produce", "-b", &node.addr, "scraped", "--batch", "10"],
            Some(lines.as_bytes()),
        );
        i += 1;
        up = prom_value(&prom, "up{job=\"sluice\"}");
        rate = prom_value(
            &prom,
            "sum(rate(sluice_requests_total{job=\"sluice\"}[10s]))",
        );
        if up == Some(1.0) && rate.is_some_and(|r| r > 0.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    assert_eq!(
        up,
        Some(1.0),
        "up of the sluice target; prometheus log:\n{log}"
    );
    assert!(
        rate.is_some_and(|r| r > 0.0),
        "rate of sluice_requests_total: {rate:?}"
    );
    // Prometheus parsed every series: a topic counter arrived with its label.
    let bytes = prom_value(&prom, "sluice_topic_records_in_total{topic=\"scraped\"}");
    assert!(bytes.is_some_and(|b| b >= 50.0), "{bytes:?}");
}
