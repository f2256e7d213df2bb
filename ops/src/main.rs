//! The `sluice` command: `sluice serve` runs a node; more subcommands follow.

mod config;

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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            listen,
        } => serve(config.as_ref(), data_dir, listen),
    }
}

fn serve(file: Option<&PathBuf>, data_dir: Option<PathBuf>, listen: Option<String>) -> ExitCode {
    let mut cfg = match file {
        Some(path) => match config::Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("sluice: {e}");
                return ExitCode::from(2);
            }
        },
        None => config::Config::default(),
    };
    if let Some(d) = data_dir {
        cfg.data_dir = d;
    }
    if let Some(l) = listen {
        cfg.kafka.listen = l;
    }
    let resolved = match cfg.check() {
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
    tracing::info!(
        data_dir = %resolved.engine.data_dir.display(),
        listen = %resolved.listen,
        "starting"
    );
    let broker = match sluice_net::Broker::start(resolved.engine, resolved.listen, &resolved.broker)
    {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("sluice: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(addr = %broker.local_addr(), "serving Kafka clients");
    let signal = match signals.wait() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "waiting for signals failed; stopping");
            Signal::SIGTERM
        }
    };
    tracing::info!(signal = %signal, "stopping: finishing requests and flushing logs");
    match broker.shutdown() {
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
