//! The `sluice` command: `sluice serve` runs a node; more subcommands follow.

mod admin;
mod cli;
mod cluster_cli;
mod config;
mod console;
mod group_cli;
mod metrics;
mod systemd;

/// Huge blocks are reserved lazily, so a request announcing billions of elements
/// cannot abort the broker (see `sluice_net::alloc`).
#[global_allocator]
static ALLOC: sluice_net::alloc::LazyHugeAlloc = sluice_net::alloc::LazyHugeAlloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nix::sys::signal::{SigSet, Signal};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "A Kafka-compatible event streaming broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker node. With no arguments: a single-node broker with its data in
    /// ./sluice-data and Kafka on 127.0.0.1:9092.
    Serve {
        /// TOML configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Data directory (overrides `data_dir`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Kafka listener `host:port` (overrides `kafka.listen`).
        #[arg(long)]
        listen: Option<String>,
        /// Set any key, `section.key=value` (repeatable; wins over the file and
        /// the `SLUICE_*` environment variables).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// Check a configuration file, or print the defaults.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Create, list, describe, alter and delete topics on any Kafka broker.
    Topic {
        #[command(subcommand)]
        action: TopicAction,
    },
    /// List, describe (members, committed offsets, lag), delete consumer groups and
    /// reset their offsets, on any Kafka broker.
    Group {
        #[command(subcommand)]
        action: GroupAction,
    },
    /// The cluster: its metadata quorum and brokers.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Print the manual page sluice(1) or shell completions (for packagers).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: GenerateAction,
    },
    /// Console producer: each line of stdin becomes a record.
    Produce {
        /// Broker to talk to (`host:port`; any Kafka broker).
        #[arg(long, short, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// Topic name.
        topic: String,
        /// Split each line into key and value at the first SEP.
        #[arg(long, value_name = "SEP")]
        key_separator: Option<String>,
        /// 0, 1 or all.
        #[arg(long, default_value = "all")]
        acks: String,
        /// none, gzip, snappy, lz4 or zstd.
        #[arg(long, default_value = "none")]
        compression: String,
        /// Send every record to this partition (default: by key, else round robin).
        #[arg(long)]
        partition: Option<i32>,
        /// Records per produce request.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
    /// Console consumer: prints each record's value, one per line.
    Consume {
        /// Broker to talk to (`host:port`; any Kafka broker).
        #[arg(long, short, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// Topic name.
        topic: String,
        /// beginning, end, an offset, or @<milliseconds since 1970>.
        #[arg(long, default_value = "beginning")]
        from: String,
        /// Only this partition.
        #[arg(long)]
        partition: Option<i32>,
        /// Print the key before the value.
        #[arg(long)]
        print_key: bool,
        /// Print headers (k=v,...) before the value.
        #[arg(long)]
        print_headers: bool,
        /// Print partition and offset before the value.
        #[arg(long)]
        print_offset: bool,
        /// Stop after this many records.
        #[arg(long, short = 'n')]
        max_records: Option<u64>,
        /// Stop at the end of the log instead of waiting for more.
        #[arg(long, short = 'e')]
        exit_at_end: bool,
    },
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Voters, the leader, its term and last index, each voter's lag, and the
    /// brokers with their state.
    Status {
        /// Broker to talk to (`host:port`; any broker of the cluster).
        #[arg(long, short, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Make a running node a voter of the metadata quorum (it follows the log
    /// first, then votes; openraft's joint consensus).
    AddVoter {
        /// Broker to talk to (`host:port`; any broker of the cluster).
        #[arg(long, short, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// The node as ID@HOST:PORT, HOST:PORT being its cluster.listen.
        voter: String,
    },
    /// Make a voter a plain broker again (it keeps following the log).
    RemoveVoter {
        /// Broker to talk to (`host:port`; any broker of the cluster).
        #[arg(long, short, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// The voter's node id.
        id: i32,
    },
}

#[derive(Subcommand)]
enum GenerateAction {
    /// The manual page sluice(1), in roff, on stdout.
    Man,
    /// Completions for a shell (bash, zsh, fish, elvish, powershell) on stdout.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Check a file (with the `SLUICE_*` environment variables and `--set` pairs
    /// applied, as `sluice serve` would) without starting anything; exit 0 if it
    /// is good, else print what is wrong, naming the key, and exit 2.
    Check {
        /// The TOML file (none: the defaults).
        file: Option<PathBuf>,
        /// Set a key, `section.key=value` (repeatable), as `sluice serve --set`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// Print a complete configuration file with every key at its default.
    Defaults,
    /// Print the configuration reference (Markdown): every key with its type,
    /// default, environment variable and meaning.
    Reference,
}

#[derive(Subcommand)]
enum GroupAction {
    /// List the groups the broker knows, with their state and protocol type.
    List {
        /// Broker to talk to (`host:port`; any Kafka broker).
        #[arg(long, short, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Show a group's members and assignments, and per partition the committed
    /// offset, the log end and the lag.
    Describe {
        /// Broker to talk to (`host:port`; any Kafka broker).
        #[arg(long, short, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// Consumer group id.
        group: String,
    },
    /// Delete a group with no members, and its committed offsets.
    Delete {
        /// Broker to talk to (`host:port`; any Kafka broker).
        #[arg(long, short, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// Consumer group id.
        group: String,
    },
    /// Move a group's committed offsets on one topic (the group must have no
    /// active members).
    ResetOffsets {
        /// Broker to talk to (`host:port`; any Kafka broker).
        #[arg(long, short, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// Consumer group id.
        group: String,
        /// The topic whose offsets move (every partition of it).
        #[arg(long)]
        topic: String,
        /// Each partition's log start offset.
        #[arg(long)]
        to_earliest: bool,
        /// Each partition's log end offset.
        #[arg(long)]
        to_latest: bool,
        /// This offset on every partition (clamped to each partition's range).
        #[arg(long)]
        to_offset: Option<i64>,
        /// The first offset at or after this time, in milliseconds since 1970.
        #[arg(long)]
        to_timestamp: Option<i64>,
        /// Print the new offsets without committing them.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Subcommand)]
enum TopicAction {
    /// Create a topic.
    Create {
        /// Broker to talk to (`host:port`; any Kafka broker).
        #[arg(long, short, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// Topic name.
        topic: String,
        /// Number of partitions.
        #[arg(long, short, default_value_t = 1)]
        partitions: i32,
        /// Replicas of each partition (-1: the broker's default, 1).
        #[arg(long, short = 'r', default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i16,
        /// Topic config, key=value (repeatable).
        #[arg(long = "config", short = 'c')]
        configs: Vec<String>,
    },
    /// List the topics' names.
    List {
        /// Broker to talk to (`host:port`; any Kafka broker).
        #[arg(long, short, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Show a topic's partitions (leader, epoch, replicas, ISR, log start, high
    /// watermark) and configs.
    Describe {
        /// Broker to talk to (`host:port`; any Kafka broker).
        #[arg(long, short, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// Topic name.
        topic: String,
    },
    /// Change a topic's configs or grow its partition count.
    Alter {
        /// Broker to talk to (`host:port`; any Kafka broker).
        #[arg(long, short, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// Topic name.
        topic: String,
        /// Set a topic config, key=value (repeatable).
        #[arg(long = "config", short = 'c')]
        configs: Vec<String>,
        /// Remove a topic config override (repeatable).
        #[arg(long = "delete-config")]
        delete: Vec<String>,
        /// Grow the topic to this many partitions.
        #[arg(long, short)]
        partitions: Option<i32>,
    },
    /// Delete a topic and its data.
    Delete {
        /// Broker to talk to (`host:port`; any Kafka broker).
        #[arg(long, short, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// Topic name.
        topic: String,
    },
}

/// The manual page or completions, from the same definition `--help` prints.
fn generate(what: &GenerateAction) -> cli::CliResult<()> {
    use clap::CommandFactory;
    let mut out = Vec::new();
    match what {
        GenerateAction::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut out)
            .map_err(|e| cli::CliError::Failed(format!("cannot render the manual page: {e}")))?,
        GenerateAction::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "sluice", &mut out);
        }
    }
    console::Out::new().write(format_args!("{}", String::from_utf8_lossy(&out)))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            listen,
            sets,
        } => serve(config.as_ref(), data_dir, listen, &sets),
        Command::Config { action } => match action {
            ConfigAction::Defaults => finish(
                console::Out::new().write(format_args!("{}", config::Config::defaults_file())),
            ),
            ConfigAction::Reference => {
                finish(console::Out::new().write(format_args!("{}", config::Config::reference())))
            }
            ConfigAction::Check { file, sets } => match resolve(file.as_ref(), None, None, &sets) {
                Ok(r) => finish(console::outln!(
                    console::Out::new(),
                    "configuration is valid: data_dir {}, Kafka on {}",
                    r.engine.data_dir.display(),
                    r.listen
                )),
                Err(e) => {
                    eprintln!("sluice: {e}");
                    ExitCode::from(2)
                }
            },
        },
        Command::Generate { what } => finish(generate(&what)),
        Command::Topic { action } => finish(topic(action)),
        Command::Group { action } => finish(group(action)),
        Command::Cluster { action } => finish(match action {
            ClusterAction::Status { bootstrap } => cluster_cli::status(&bootstrap),
            ClusterAction::AddVoter { bootstrap, voter } => {
                cluster_cli::add_voter(&bootstrap, &voter)
            }
            ClusterAction::RemoveVoter { bootstrap, id } => {
                cluster_cli::remove_voter(&bootstrap, id)
            }
        }),
        Command::Produce {
            bootstrap,
            topic,
            key_separator,
            acks,
            compression,
            partition,
            batch,
        } => finish((|| {
            let opts = cli::ProduceOptions {
                key_separator,
                acks: cli::parse_acks(&acks)?,
                compression: cli::parse_compression(&compression)?,
                partition,
                batch_records: batch.max(1),
            };
            let n = cli::produce(&bootstrap, &topic, &opts)?;
            eprintln!("produced {n} records to {topic}");
            Ok(())
        })()),
        Command::Consume {
            bootstrap,
            topic,
            from,
            partition,
            print_key,
            print_headers,
            print_offset,
            max_records,
            exit_at_end,
        } => finish((|| {
            let opts = cli::ConsumeOptions {
                start: cli::parse_start(&from)?,
                partition,
                print_key,
                print_headers,
                print_position: print_offset,
                max_records,
                exit_at_end,
            };
            cli::consume(&bootstrap, &topic, &opts).map(|_| ())
        })()),
    }
}

fn topic(action: TopicAction) -> cli::CliResult<()> {
    match action {
        TopicAction::Create {
            bootstrap,
            topic,
            partitions,
            replication_factor,
            configs,
        } => cli::topic_create(
            &bootstrap,
            &topic,
            (partitions, replication_factor),
            &cli::parse_configs(&configs)?,
        ),
        TopicAction::List { bootstrap } => cli::topic_list(&bootstrap),
        TopicAction::Describe { bootstrap, topic } => cli::topic_describe(&bootstrap, &topic),
        TopicAction::Alter {
            bootstrap,
            topic,
            configs,
            delete,
            partitions,
        } => cli::topic_alter(
            &bootstrap,
            &topic,
            &cli::parse_configs(&configs)?,
            &delete,
            partitions,
        ),
        TopicAction::Delete { bootstrap, topic } => cli::topic_delete(&bootstrap, &topic),
    }
}

fn group(action: GroupAction) -> cli::CliResult<()> {
    match action {
        GroupAction::List { bootstrap } => group_cli::list(&bootstrap),
        GroupAction::Describe { bootstrap, group } => group_cli::describe(&bootstrap, &group),
        GroupAction::Delete { bootstrap, group } => group_cli::delete(&bootstrap, &group),
        GroupAction::ResetOffsets {
            bootstrap,
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            to_timestamp,
            dry_run,
        } => {
            let to = group_cli::parse_reset(to_earliest, to_latest, to_offset, to_timestamp)?;
            group_cli::reset_offsets(&bootstrap, &group, &topic, to, dry_run)
        }
    }
}

/// Logs go to journald with their fields when stderr is the journal (started by
/// systemd), else to stderr as text. `SLUICE_LOG` filters (default `info,openraft=warn`).
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
            // openraft narrates every vote and append at info.
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"))
    };
    if systemd::stderr_is_journal() {
        tracing_subscriber::registry()
            .with(filter())
            .with(systemd::JournalLayer)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

/// Exit status of a client command: errors go to stderr with status 1 (a reader
/// that closed our standard output early, `| head`, is not one).
fn finish(r: cli::CliResult<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(cli::CliError::Failed(e)) => {
            eprintln!("sluice: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The file, the environment, `--set` pairs and the two flags, checked, with the
/// data directory checked too.
fn resolve(
    file: Option<&PathBuf>,
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    sets: &[String],
) -> Result<config::Resolved, config::ConfigError> {
    let mut cfg = config::Config::assemble(file.map(PathBuf::as_path), std::env::vars(), sets)?;
    if let Some(d) = data_dir {
        cfg.data_dir = d;
    }
    if let Some(l) = listen {
        cfg.kafka.listen = l;
    }
    // Every configured path is made absolute once, here, against the working
    // directory, so what is logged and used is unambiguous.
    cfg.data_dir =
        sluice_engine::engine::absolute_data_dir(&cfg.data_dir).map_err(|e| match e {
            sluice_engine::Error::InvalidConfig { reason, .. } => {
                config::ConfigError(format!("invalid config `data_dir`: {reason}"))
            }
            other => config::ConfigError(format!("invalid config `data_dir`: {other}")),
        })?;
    let resolved = cfg.check()?;
    config::check_data_dir(&resolved.engine.data_dir)?;
    Ok(resolved)
}

fn serve(
    file: Option<&PathBuf>,
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    sets: &[String],
) -> ExitCode {
    let resolved = match resolve(file, data_dir, listen, sets) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sluice: {e}");
            return ExitCode::from(2);
        }
    };
    // Block the stop signals in every thread (the shards inherit this mask) and
    // wait for them here.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    if let Err(e) = signals.thread_block() {
        eprintln!("sluice: cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    let (serving, stop_rx) = match stop_signals(signals) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("sluice: cannot start the signal thread: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        data_dir = %resolved.engine.data_dir.display(),
        listen = %resolved.listen,
        "starting"
    );
    let admin = match admin::Admin::start(
        resolved.admin,
        resolved.broker.node_id,
        resolved.engine.data_dir.clone(),
    ) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "sluice: invalid config `admin.listen`: cannot listen on {}: {e}",
                resolved.admin
            );
            return ExitCode::from(2);
        }
    };
    tracing::info!(addr = %admin.state.admin, "admin endpoint open");
    let shutdown_timeout = resolved.broker.drain_timeout * 2;
    systemd::status(&format!(
        "recovering {} partitions{}",
        partition_dirs(&resolved.engine.data_dir),
        if resolved.broker.cluster.is_some() {
            "; joining the cluster (a majority of cluster.voters must be up)"
        } else {
            ""
        }
    ));
    let broker = match sluice_net::Broker::start(resolved.engine, resolved.listen, &resolved.broker)
    {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("sluice: {e}");
            admin
                .state
                .set_ready(false, &format!("failed to start: {e}"));
            admin.stop();
            return ExitCode::FAILURE;
        }
    };
    serving.store(true, std::sync::atomic::Ordering::SeqCst);
    announce_serving(&admin, &broker, &resolved.broker);
    let watchdog = systemd::watchdog_interval().and_then(|interval| {
        tracing::info!(interval_ms = interval.as_millis(), "systemd watchdog on");
        systemd::Watchdog::start(broker.router(), interval)
            .map_err(|e| tracing::error!(error = %e, "cannot start the watchdog thread"))
            .ok()
    });
    stall_shard_for_tests(&broker.router());
    let signal = stop_rx.recv().unwrap_or(Signal::SIGTERM);
    tracing::info!(signal = %signal, "stopping: finishing requests and flushing logs");
    stop(broker, admin, watchdog, shutdown_timeout)
}

/// The node serves: the admin endpoint learns its parts and goes ready, and
/// systemd is told (`READY=1`, `STATUS=` with the node's role).
fn announce_serving(
    admin: &admin::Admin,
    broker: &sluice_net::Broker,
    settings: &sluice_net::BrokerSettings,
) {
    admin.state.shards.store(
        broker.router().shard_count(),
        std::sync::atomic::Ordering::SeqCst,
    );
    let _ = admin.state.router.set(broker.router());
    let _ = admin.state.topics.set(broker.topics());
    if let Ok(mut k) = admin.state.kafka.lock() {
        *k = Some(broker.local_addr());
    }
    admin.state.set_ready(true, "");
    tracing::info!(addr = %broker.local_addr(), "serving Kafka clients");
    let role = match &settings.cluster {
        Some(c) => format!(
            "; broker {} of a cluster of {} voters",
            settings.node_id,
            c.quorum.voters.len()
        ),
        None => String::new(),
    };
    systemd::notify(&[
        ("READY", "1"),
        (
            "STATUS",
            &format!("serving Kafka clients on {}{role}", broker.local_addr()),
        ),
    ]);
}

/// One thread waits for the stop signals (blocked in every thread) from now on.
/// Before the node serves (recovery, or a cluster node waiting for a majority of
/// its voters), a stop signal ends the process at once: nothing was acknowledged
/// yet, and every store recovers from a stop at any point. Once the returned
/// flag is set, signals are passed on through the channel.
fn stop_signals(
    signals: SigSet,
) -> std::io::Result<(
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::sync::mpsc::Receiver<Signal>,
)> {
    let serving = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel::<Signal>();
    let flag = serving.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let signal = signals.wait().unwrap_or(Signal::SIGTERM);
            if !flag.load(std::sync::atomic::Ordering::SeqCst) {
                tracing::warn!(signal = %signal, "stopped while starting");
                eprintln!("sluice: {signal} while starting; exiting");
                std::process::exit(1);
            }
            if tx.send(signal).is_err() {
                return;
            }
        })?;
    Ok((serving, rx))
}

/// Graceful shutdown: readiness 503, `STOPPING=1`, connections finish what they
/// read (the listeners close first), logs flushed; exit 1 past `timeout`.
fn stop(
    broker: sluice_net::Broker,
    admin: admin::Admin,
    watchdog: Option<systemd::Watchdog>,
    timeout: std::time::Duration,
) -> ExitCode {
    admin.state.set_ready(false, "stopping");
    if let Some(w) = &watchdog {
        w.silence();
    }
    systemd::notify(&[
        ("STOPPING", "1"),
        ("STATUS", "stopping: finishing requests and flushing logs"),
    ]);
    if let Some(w) = watchdog {
        w.stop();
    }
    let stop_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = stop_done.clone();
    let _ = std::thread::Builder::new()
        .name("stop-deadline".into())
        .spawn(move || {
            std::thread::sleep(timeout);
            if !done.load(std::sync::atomic::Ordering::SeqCst) {
                tracing::error!(
                    timeout_ms = timeout.as_millis(),
                    "shutdown did not finish within kafka.shutdown_timeout_ms; exiting"
                );
                std::process::exit(1);
            }
        });
    let stopped = broker.shutdown();
    stop_done.store(true, std::sync::atomic::Ordering::SeqCst);
    admin.stop();
    match stopped {
        Ok(()) => {
            tracing::info!("stopped cleanly");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "stopped with an error");
            ExitCode::FAILURE
        }
    }
}

/// Directories in the data directory (partitions), for the recovery status line.
fn partition_dirs(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .count()
    })
}

/// Test hook: `SLUICE_TEST_STALL_SHARD=SHARD:AFTER_MS:FOR_MS` blocks that shard's
/// thread for FOR_MS, AFTER_MS after the node started serving (to see the systemd
/// watchdog stop). Not for production use.
fn stall_shard_for_tests(router: &sluice_engine::ShardRouter) {
    let Ok(spec) = std::env::var("SLUICE_TEST_STALL_SHARD") else {
        return;
    };
    let parts: Vec<u64> = spec.split(':').filter_map(|p| p.parse().ok()).collect();
    let [shard, after, hold] = parts[..] else {
        tracing::warn!(%spec, "SLUICE_TEST_STALL_SHARD wants SHARD:AFTER_MS:FOR_MS; ignored");
        return;
    };
    let router = router.clone();
    let _ = std::thread::Builder::new()
        .name("stall-test".into())
        .spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(after));
            tracing::warn!(shard, hold_ms = hold, "test hook: stalling a shard");
            let stalled = router.call(usize::try_from(shard).unwrap_or(0), move |_| async move {
                std::thread::sleep(std::time::Duration::from_millis(hold));
            });
            let _ = metrics::block_on_timeout(stalled, std::time::Duration::from_hours(1));
        });
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every subcommand at every depth and every argument has a help line, so
    /// `sluice topic --help` describes what it lists.
    #[test]
    fn every_subcommand_and_argument_is_described() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in cmd.get_subcommands() {
                let here = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(format!("`{here}` has no description"));
                }
                for arg in sub.get_arguments() {
                    let id = arg.get_id().as_str();
                    if id != "help" && id != "version" && arg.get_help().is_none() {
                        missing.push(format!("`{here}` argument `{id}` has no help"));
                    }
                }
                walk(sub, &here, missing);
            }
        }
        let cli = Cli::command();
        cli.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cli, "sluice", &mut missing);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }
}
