//! Living under systemd (`Type=notify`, `WatchdogSec=`), through the `systemd` crate:
//!
//! - `STATUS=` says what the node is doing (recovering N partitions, serving,
//!   stopping), `READY=1` once the logs are recovered and the listeners open,
//!   `STOPPING=1` when shutdown begins.
//! - With `WATCHDOG_USEC` set, a thread sends `WATCHDOG=1` every half of it, but
//!   only after every shard's reactor ran a probe job within a quarter of it: a
//!   stuck shard stops the pings and systemd restarts the node.
//! - When stderr is connected to the journal (`JOURNAL_STREAM`), log events go to
//!   journald with their fields (topic, partition, shard, ...) as journal fields.
//!
//! Without `NOTIFY_SOCKET` every notification is a no-op.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_engine::ShardRouter;

/// Sends `pairs` to the service manager, if there is one.
pub fn notify(pairs: &[(&str, &str)]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = systemd::daemon::notify(false, pairs.iter()) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

pub fn status(text: &str) {
    notify(&[("STATUS", text)]);
}

/// The watchdog interval systemd asked for, if any.
pub fn watchdog_interval() -> Option<Duration> {
    match systemd::daemon::watchdog_enabled(false) {
        Ok(0) | Err(_) => None,
        Ok(us) => Some(Duration::from_micros(us)),
    }
}

/// Pings the watchdog while every shard answers; stopped by [`Watchdog::stop`].
pub struct Watchdog {
    stop: Arc<AtomicBool>,
    /// Held while a ping is sent, so that once [`Watchdog::silence`] returns no
    /// ping follows (systemd must see `STOPPING=1` after the last one).
    gate: Arc<std::sync::Mutex<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    pub fn start(router: ShardRouter, interval: Duration) -> std::io::Result<Watchdog> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let gate = Arc::new(std::sync::Mutex::new(()));
        let g = gate.clone();
        let period = interval / 2;
        let probe_timeout = (interval / 4).min(Duration::from_secs(5));
        let thread = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                let mut stuck_before = false;
                while !s.load(Ordering::SeqCst) {
                    let started = std::time::Instant::now();
                    let stuck = unresponsive(&router, probe_timeout);
                    // Under the lock `silence` takes: nothing is sent after it.
                    let gate = g.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if s.load(Ordering::SeqCst) {
                        return;
                    }
                    if stuck.is_empty() {
                        notify(&[("WATCHDOG", "1")]);
                        if stuck_before {
                            tracing::info!("every shard responsive again; watchdog pings resumed");
                            status("serving Kafka clients");
                        }
                    } else {
                        tracing::error!(shards = ?stuck, "shard reactor unresponsive; withholding the watchdog ping");
                        status(&format!("shards {stuck:?} unresponsive"));
                    }
                    drop(gate);
                    stuck_before = !stuck.is_empty();
                    let left = period.saturating_sub(started.elapsed());
                    sleep_unless_stopped(&s, left);
                }
            })?;
        Ok(Watchdog {
            stop,
            gate,
            thread: Some(thread),
        })
    }

    /// No ping is sent once this returns; the thread may still be probing.
    pub fn silence(&self) {
        let _gate = self
            .gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.stop.store(true, Ordering::SeqCst);
    }

    pub fn stop(mut self) {
        self.silence();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sleep_unless_stopped(stop: &AtomicBool, d: Duration) {
    let end = std::time::Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let left = end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Shards that did not run a probe job within `timeout`.
fn unresponsive(router: &ShardRouter, timeout: Duration) -> Vec<usize> {
    crate::metrics::on_every_shard(router, timeout, |_| async {})
        .iter()
        .enumerate()
        .filter(|(_, answered)| answered.is_none())
        .map(|(s, _)| s)
        .collect()
}

/// Whether stderr is the journal's stream (`JOURNAL_STREAM` is `device:inode` of it).
pub fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(2) else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(st.st_dev) && ino.parse::<u64>().ok() == Some(st.st_ino)
}

/// A `tracing` layer that sends each event to journald with its fields.
pub struct JournalLayer;

/// The journal fields of one event: `MESSAGE`, `PRIORITY`, `SYSLOG_IDENTIFIER`,
/// `TARGET`, and each field of the event upper-cased (`topic` → `TOPIC`).
pub fn journal_fields(
    level: tracing::Level,
    target: &str,
    fields: &[(String, String)],
) -> Vec<String> {
    let priority = match level {
        tracing::Level::ERROR => 3,
        tracing::Level::WARN => 4,
        tracing::Level::INFO => 6,
        _ => 7,
    };
    let mut message = String::new();
    let mut out = vec![
        format!("PRIORITY={priority}"),
        "SYSLOG_IDENTIFIER=sluice".to_string(),
        format!("TARGET={target}"),
    ];
    for (k, v) in fields {
        if k == "message" {
            message.clone_from(v);
            continue;
        }
        // Journal field names: A-Z, 0-9 and _, not starting with _ or a digit.
        let name: String = k
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        let name = name.trim_start_matches(|c: char| c == '_' || c.is_ascii_digit());
        if name.is_empty() {
            continue;
        }
        out.push(format!("{name}={v}"));
    }
    // The fields are also in the message, for `journalctl` without `-o verbose`.
    let extra: Vec<String> = fields
        .iter()
        .filter(|(k, _)| k != "message")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if extra.is_empty() {
        out.insert(0, format!("MESSAGE={message}"));
    } else {
        out.insert(0, format!("MESSAGE={message} {}", extra.join(" ")));
    }
    out
}

struct Fields(Vec<(String, String)>);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .push((field.name().to_string(), format!("{value:?}")));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push((field.name().to_string(), value.to_string()));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for JournalLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        let meta = event.metadata();
        let lines = journal_fields(*meta.level(), meta.target(), &fields.0);
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let _ = systemd::journal::send(&refs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_fields_carry_the_event_fields() {
        let f = journal_fields(
            tracing::Level::WARN,
            "sluice_net::server",
            &[
                ("message".into(), "partition offline".into()),
                ("topic".into(), "orders".into()),
                ("partition".into(), "3".into()),
                ("shard".into(), "1".into()),
                ("peer.addr".into(), "x".into()),
                ("_secret".into(), "y".into()),
            ],
        );
        assert_eq!(
            f[0],
            "MESSAGE=partition offline topic=orders partition=3 shard=1 peer.addr=x _secret=y"
        );
        assert!(f.contains(&"PRIORITY=4".to_string()));
        assert!(f.contains(&"TOPIC=orders".to_string()));
        assert!(f.contains(&"PARTITION=3".to_string()));
        assert!(f.contains(&"SHARD=1".to_string()));
        assert!(f.contains(&"PEER_ADDR=x".to_string()));
        assert!(f.contains(&"SECRET=y".to_string()));
        assert!(f.contains(&"SYSLOG_IDENTIFIER=sluice".to_string()));
    }
}
