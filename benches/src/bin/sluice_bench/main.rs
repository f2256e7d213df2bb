//! `sluice-bench`: a load generator for any Kafka-compatible broker.
//!
//! ```sh
//! sluice-bench produce --bootstrap 127.0.0.1:9092 --partitions 4 --record-bytes 1024 \
//!     --batch-records 1000 --acks all --producers 2 --in-flight 8 --seconds 10 \
//!     --broker-pid "$(pidof sluice)" --json out.json
//! ```
//!
//! Scenarios: `produce`, `consume` (from offset 0 of data already written) and `e2e`
//! (both at once, latency from each record's timestamp). Clients: `raw` (pre-encoded
//! batches, many requests in flight: the broker's ceiling) and `rdkafka` (librdkafka
//! with the usual settings). Prints MB/s (record values for produce and rdkafka;
//! batch bytes on the wire for the raw consumer), records/s, latency percentiles and,
//! given the broker's pid, its CPU seconds and peak RSS over the run.

#![allow(clippy::cast_precision_loss)]

mod kafka_client;
mod partitions;
mod raw;
mod raw_consume;
mod stats;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

#[derive(Parser, Debug)]
#[command(
    name = "sluice-bench",
    about = "Load generator for Kafka-compatible brokers"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Produce as fast as possible (or at --rate) and measure acknowledgements.
    Produce {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        produce: ProduceArgs,
    },
    /// Read the topic from offset 0 to the log end offsets found at the start.
    Consume {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        consume: ConsumeArgs,
    },
    /// Produce and consume at once; latency from each batch's timestamp to its
    /// arrival at a consumer (millisecond timestamps).
    E2e {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        produce: ProduceArgs,
        #[command(flatten)]
        consume: ConsumeArgs,
    },
    /// Create a topic with many partitions, write a small batch to each, read each
    /// back, and show the broker's memory (raw client).
    Partitions {
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[arg(long, default_value = "sluice-many")]
        topic: String,
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(i32).range(1..=100_000))]
        count: i32,
        /// The broker's process id, for its memory.
        #[arg(long)]
        broker_pid: Option<u32>,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    /// The project's own framing replaying pre-encoded batches.
    Raw,
    /// librdkafka (the `rdkafka` crate).
    Rdkafka,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Acks {
    #[value(name = "0")]
    None,
    #[value(name = "1")]
    Leader,
    #[value(name = "all")]
    All,
}

#[derive(clap::Args, Debug)]
struct Common {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, value_enum, default_value = "raw")]
    client: Client,
    #[arg(long, default_value = "sluice-bench")]
    topic: String,
    /// Partitions of the topic (created if missing).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..=100_000))]
    partitions: i32,
    /// Length of the run (consume: the longest it may take).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// The broker's process id, for its CPU seconds and peak RSS.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(clap::Args, Debug)]
struct ProduceArgs {
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Records per batch (one batch per Produce request).
    #[arg(long, default_value_t = 1000)]
    batch_records: usize,
    #[arg(long, value_enum, default_value = "1")]
    acks: Acks,
    /// Connections producing at once.
    #[arg(long, default_value_t = 2)]
    producers: usize,
    /// Unanswered requests per connection.
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// Stop after this many records (or --seconds, whichever comes first).
    #[arg(long)]
    records: Option<u64>,
    /// Records per second over all producers (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// rdkafka: `linger.ms`.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// rdkafka: `batch.size` in bytes.
    #[arg(long, default_value_t = 1_000_000)]
    batch_bytes: usize,
    /// rdkafka: `compression.codec` (none, gzip, snappy, lz4, zstd).
    #[arg(long, default_value = "none", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    compression: String,
    /// rdkafka: `enable.idempotence`.
    #[arg(long)]
    idempotence: bool,
}

#[derive(clap::Args, Debug)]
struct ConsumeArgs {
    /// Connections consuming at once (partitions are split between them).
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Fetch `max_bytes`.
    #[arg(long, default_value_t = 50 << 20)]
    fetch_max_bytes: i32,
    /// Fetch per-partition `max_bytes`.
    #[arg(long, default_value_t = 1 << 20)]
    partition_max_bytes: i32,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.scenario {
        Scenario::Produce { common, produce } => run_produce(&common, &produce),
        Scenario::Consume { common, consume } => run_consume(&common, &consume),
        Scenario::E2e {
            common,
            produce,
            consume,
        } => run_e2e(&common, &produce, &consume),
        Scenario::Partitions {
            bootstrap,
            topic,
            count,
            broker_pid,
            json,
        } => run_partitions(&bootstrap, &topic, count, broker_pid, json.as_deref()),
    };
    if let Err(e) = result {
        eprintln!("sluice-bench: {e}");
        std::process::exit(1);
    }
}

fn check_common(c: &Common) -> Result<(), String> {
    if !(c.seconds.is_finite() && c.seconds > 0.0) {
        return Err("--seconds must be a positive number".into());
    }
    Ok(())
}

fn produce_options(
    c: &Common,
    a: &ProduceArgs,
    stamp: bool,
) -> Result<raw::ProduceOptions, String> {
    if a.record_bytes == 0 || a.batch_records == 0 || a.producers == 0 || a.in_flight == 0 {
        return Err(
            "--record-bytes, --batch-records, --producers and --in-flight must be positive".into(),
        );
    }
    if a.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err("--rate must be a positive number".into());
    }
    Ok(raw::ProduceOptions {
        bootstrap: c.bootstrap.clone(),
        topic: c.topic.clone(),
        partitions: c.partitions,
        record_bytes: a.record_bytes,
        batch_records: a.batch_records,
        acks: match a.acks {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        },
        producers: a.producers,
        in_flight: a.in_flight,
        duration: Duration::from_secs_f64(c.seconds),
        records: a.records,
        rate: a.rate,
        stamp,
    })
}

fn consume_options(c: &Common, a: &ConsumeArgs) -> Result<raw_consume::ConsumeOptions, String> {
    if a.consumers == 0 || a.fetch_max_bytes <= 0 || a.partition_max_bytes <= 0 {
        return Err(
            "--consumers, --fetch-max-bytes and --partition-max-bytes must be positive".into(),
        );
    }
    Ok(raw_consume::ConsumeOptions {
        bootstrap: c.bootstrap.clone(),
        topic: c.topic.clone(),
        partitions: c.partitions,
        consumers: a.consumers,
        fetch_max_bytes: a.fetch_max_bytes,
        partition_max_bytes: a.partition_max_bytes,
        duration: Duration::from_secs_f64(c.seconds),
    })
}

/// Prints the report and writes it as JSON when asked.
fn report(c: &Common, r: &stats::Report) -> Result<(), String> {
    stats::Report::print_header();
    r.print_row();
    if let Some(path) = &c.json {
        let text = serde_json::to_string_pretty(r).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn client_name(c: Client) -> &'static str {
    match c {
        Client::Raw => "raw",
        Client::Rdkafka => "rdkafka",
    }
}

fn settings(a: &ProduceArgs) -> kafka_client::Settings {
    kafka_client::Settings {
        linger_ms: a.linger_ms,
        batch_bytes: a.batch_bytes,
        compression: a.compression.clone(),
        idempotence: a.idempotence,
    }
}

fn run_produce(c: &Common, a: &ProduceArgs) -> Result<(), String> {
    check_common(c)?;
    let opts = produce_options(c, a, false)?;
    ensure_topic(&c.bootstrap, &c.topic, c.partitions)?;
    let watch = c.broker_pid.map(stats::ProcWatch::start);
    let p = match c.client {
        Client::Raw => raw::produce(&opts)?,
        Client::Rdkafka => kafka_client::produce(&opts, &settings(a))?,
    };
    let usage = watch.map(stats::ProcWatch::finish);
    report(
        c,
        &stats::Report::new(
            "produce",
            client_name(c.client),
            p.elapsed,
            p.records,
            p.bytes,
            &p.latency,
            usage,
        ),
    )
}

fn run_consume(c: &Common, a: &ConsumeArgs) -> Result<(), String> {
    check_common(c)?;
    let opts = consume_options(c, a)?;
    let end = raw_consume::end_offsets(&c.bootstrap, &c.topic, c.partitions)?;
    if end.iter().all(|e| *e <= 0) {
        return Err(format!(
            "topic {} has no records to consume: run the produce scenario first",
            c.topic
        ));
    }
    let from = vec![0; end.len()];
    let stop = Arc::new(AtomicBool::new(false));
    let watch = c.broker_pid.map(stats::ProcWatch::start);
    let r = match c.client {
        Client::Raw => raw_consume::consume(&opts, &from, Some(&end), &stop)?,
        Client::Rdkafka => kafka_client::consume(&opts, &from, Some(&end), &stop)?,
    };
    let usage = watch.map(stats::ProcWatch::finish);
    let expected: i64 = end.iter().sum();
    if i64::try_from(r.records).unwrap_or(i64::MAX) < expected {
        eprintln!(
            "sluice-bench: only {} of {expected} records were read in {:.1} s",
            r.records, c.seconds
        );
    }
    report(
        c,
        &stats::Report::new(
            "consume",
            client_name(c.client),
            r.elapsed,
            r.records,
            r.bytes,
            &r.latency,
            usage,
        ),
    )
}

fn run_e2e(c: &Common, p: &ProduceArgs, a: &ConsumeArgs) -> Result<(), String> {
    check_common(c)?;
    let popts = produce_options(c, p, true)?;
    let copts = consume_options(c, a)?;
    ensure_topic(&c.bootstrap, &c.topic, c.partitions)?;
    let from = raw_consume::end_offsets(&c.bootstrap, &c.topic, c.partitions)?;
    let stop = Arc::new(AtomicBool::new(false));
    let watch = c.broker_pid.map(stats::ProcWatch::start);
    let consumers = {
        let (stop, from) = (stop.clone(), from.clone());
        let copts = raw_consume::ConsumeOptions {
            // Consumers outlast producers by the time they need to catch up.
            duration: copts.duration + Duration::from_secs(30),
            ..copts
        };
        let client = c.client;
        std::thread::spawn(move || match client {
            Client::Raw => raw_consume::consume(&copts, &from, None, &stop),
            Client::Rdkafka => kafka_client::consume(&copts, &from, None, &stop),
        })
    };
    let produced = match c.client {
        Client::Raw => raw::produce(&popts),
        Client::Rdkafka => kafka_client::produce(&popts, &settings(p)),
    };
    // A second for the consumers to read what was produced last, then stop them;
    // records left unread are reported below.
    if produced.is_ok() {
        std::thread::sleep(Duration::from_secs(1));
    }
    stop.store(true, Ordering::Relaxed);
    let consumed = consumers
        .join()
        .map_err(|_| "the consumers panicked".to_string())??;
    let produced = produced?;
    let usage = watch.map(stats::ProcWatch::finish);
    if consumed.records < produced.records {
        eprintln!(
            "sluice-bench: consumers read {} of {} records produced",
            consumed.records, produced.records
        );
    }
    report(
        c,
        &stats::Report::new(
            "e2e",
            client_name(c.client),
            produced.elapsed,
            consumed.records,
            consumed.bytes,
            &consumed.latency,
            usage,
        ),
    )
}

fn run_partitions(
    bootstrap: &str,
    topic: &str,
    count: i32,
    broker_pid: Option<u32>,
    json: Option<&std::path::Path>,
) -> Result<(), String> {
    let r = partitions::run(bootstrap, topic, count, broker_pid)?;
    let mib = |m: Option<f64>| m.map_or_else(|| "-".to_string(), |m| format!("{m:.1}"));
    println!(
        "{:>10} {:>9} {:>10} {:>8} {:>11} {:>13} {:>13}",
        "partitions",
        "create s",
        "produce s",
        "fetch s",
        "rss before",
        "after create",
        "idle w/ data"
    );
    println!(
        "{:>10} {:>9.2} {:>10.2} {:>8.2} {:>11} {:>13} {:>13}",
        r.partitions,
        r.create_seconds,
        r.produce_seconds,
        r.fetch_seconds,
        mib(r.rss_mib_before),
        mib(r.rss_mib_after_create),
        mib(r.rss_mib_idle_with_data)
    );
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// Creates the topic through the admin API; one that exists already is fine.
fn ensure_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<(), String> {
    let mut c = sluice_net::client::Client::connect(bootstrap, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]);
    let (_, r): (i16, CreateTopicsResponse) = c
        .call(ApiKey::CreateTopics, 5, &req)
        .map_err(|e| e.to_string())?;
    for t in &r.topics {
        // 36: TOPIC_ALREADY_EXISTS.
        if t.error_code != 0 && t.error_code != 36 {
            return Err(format!(
                "creating topic {topic}: error code {} {}",
                t.error_code,
                t.error_message.as_deref().unwrap_or("")
            ));
        }
    }
    Ok(())
}
