//! `sluice-bench`: a load generator for any Kafka-compatible broker.
//!
//! ```sh
//! sluice-bench produce --bootstrap 127.0.0.1:9092 --partitions 4 --record-bytes 1024 \
//!     --batch-records 1000 --acks all --producers 2 --in-flight 8 --seconds 10 \
//!     --broker-pid "$(pidof sluice)" --json out.json
//! ```
//!
//! Built so far: the `raw` client's produce scenario (pre-encoded batches, many
//! requests in flight). Prints MB/s, records/s, latency percentiles and, given the
//! broker's pid, its CPU seconds and peak RSS over the run.

#![allow(clippy::cast_precision_loss)]

mod raw;
mod stats;

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
    Produce(ProduceArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    /// The project's own framing replaying pre-encoded batches.
    Raw,
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
struct ProduceArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[arg(long, value_enum, default_value = "raw")]
    client: Client,
    #[arg(long, default_value = "sluice-bench")]
    topic: String,
    /// Partitions of the topic (created if missing).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..=100_000))]
    partitions: i32,
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
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Stop after this many records (or --seconds, whichever comes first).
    #[arg(long)]
    records: Option<u64>,
    /// Records per second over all producers (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// The broker's process id, for its CPU seconds and peak RSS.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.scenario {
        Scenario::Produce(a) => run_produce(&a),
    };
    if let Err(e) = result {
        eprintln!("sluice-bench: {e}");
        std::process::exit(1);
    }
}

fn run_produce(a: &ProduceArgs) -> Result<(), String> {
    if a.record_bytes == 0 || a.batch_records == 0 || a.producers == 0 || a.in_flight == 0 {
        return Err(
            "--record-bytes, --batch-records, --producers and --in-flight must be positive".into(),
        );
    }
    if !(a.seconds.is_finite() && a.seconds > 0.0) {
        return Err("--seconds must be a positive number".into());
    }
    ensure_topic(&a.bootstrap, &a.topic, a.partitions)?;
    let opts = raw::ProduceOptions {
        bootstrap: a.bootstrap.clone(),
        topic: a.topic.clone(),
        partitions: a.partitions,
        record_bytes: a.record_bytes,
        batch_records: a.batch_records,
        acks: match a.acks {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        },
        producers: a.producers,
        in_flight: a.in_flight,
        duration: Duration::from_secs_f64(a.seconds),
        records: a.records,
        rate: a.rate,
    };
    let watch = a.broker_pid.map(stats::ProcWatch::start);
    let p = match a.client {
        Client::Raw => raw::produce(&opts)?,
    };
    let usage = watch.map(stats::ProcWatch::finish);
    let report = stats::Report::new(
        "produce", "raw", p.elapsed, p.records, p.bytes, &p.latency, usage,
    );
    stats::Report::print_header();
    report.print_row();
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
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
