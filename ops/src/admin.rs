//! The admin HTTP endpoint (`[admin] listen`, default 127.0.0.1:9644): health checks
//! for load balancers and supervisors, and what the node is.
//!
//! - `GET /v1/health/live`: 200 while the process runs.
//! - `GET /v1/health/ready`: 200 only while the node serves Kafka clients; 503 with a
//!   JSON reason while starting or stopping.
//! - `GET /v1/node`: id, version, shards, listeners, data directory and its usage.
//! - `GET /v1/partitions`: every partition with its shard, offsets, size, segments
//!   and leader epoch.
//! - `GET /v1/cluster`: the metadata quorum as this node and as its leader see it
//!   (role, leader, term, log and applied indexes, each voter's progress) and the
//!   registered brokers with their state (alive, fenced).
//! - `GET /metrics`: Prometheus metrics ([`crate::metrics`]); OpenMetrics when the
//!   `Accept` header asks for `application/openmetrics-text`.
//!
//! It runs on one plain thread, away from the shards, one connection at a time: a
//! request (line and headers) may be at most 8 KiB and must arrive within 2 s;
//! anything else is answered 400, 404, 405 or 431 and the connection closed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest request head accepted.
const HEAD_MAX: usize = 8 * 1024;
/// How long a client may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// What the endpoint reports; shared with `sluice serve`.
pub struct AdminState {
    pub node_id: i32,
    pub shards: AtomicUsize,
    pub data_dir: PathBuf,
    pub kafka: Mutex<Option<SocketAddr>>,
    pub admin: SocketAddr,
    /// Serving Kafka clients.
    pub ready: AtomicBool,
    /// Why not ready (starting, stopping).
    pub reason: Mutex<String>,
    /// The shards, once the broker runs (metrics and partitions come from them).
    pub router: std::sync::OnceLock<sluice_engine::ShardRouter>,
    /// The metadata, once the broker runs (`/v1/cluster`).
    pub topics: std::sync::OnceLock<Arc<sluice_net::topics::TopicStore>>,
    /// Seconds since 1970 when the process started.
    pub started: f64,
    stop: AtomicBool,
}

impl AdminState {
    pub fn set_ready(&self, ready: bool, reason: &str) {
        if let Ok(mut r) = self.reason.lock() {
            *r = reason.to_string();
        }
        self.ready.store(ready, Ordering::SeqCst);
    }
}

/// The running endpoint.
pub struct Admin {
    pub state: Arc<AdminState>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Admin {
    /// Binds `addr` and starts answering; not ready until told.
    pub fn start(addr: SocketAddr, node_id: i32, data_dir: PathBuf) -> std::io::Result<Admin> {
        let listener = TcpListener::bind(addr)?;
        let state = Arc::new(AdminState {
            node_id,
            shards: AtomicUsize::new(0),
            data_dir,
            kafka: Mutex::new(None),
            admin: listener.local_addr()?,
            ready: AtomicBool::new(false),
            reason: Mutex::new("starting: recovering partitions".into()),
            router: std::sync::OnceLock::new(),
            topics: std::sync::OnceLock::new(),
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            stop: AtomicBool::new(false),
        });
        let s = state.clone();
        let thread = std::thread::Builder::new()
            .name("admin-http".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    match conn {
                        Ok(stream) => {
                            if let Err(e) = answer(stream, &s) {
                                tracing::debug!(error = %e, "admin connection");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "admin accept failed"),
                    }
                }
            })?;
        Ok(Admin {
            state,
            thread: Some(thread),
        })
    }

    /// Stops answering (readiness should have gone 503 before).
    pub fn stop(mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.state.admin, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(mut stream: TcpStream, state: &AdminState) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    // The whole request within IO_TIMEOUT, not each read: a client trickling a
    // byte at a time must not hold the endpoint.
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    let end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break Some(i + 4);
        }
        if head.len() > HEAD_MAX {
            break None;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    };
    let head_only = head.starts_with(b"HEAD ");
    let reply = match end {
        Some(end) if end <= HEAD_MAX => route(&head[..end], state),
        _ => Reply::json(431, error_json("request head over 8 KiB")),
    };
    let Reply {
        status,
        body,
        allow,
        content_type,
    } = reply;
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if allow {
        out.push_str("Allow: GET\r\n");
    }
    out.push_str("\r\n");
    if !head_only {
        out.push_str(&body);
    }
    stream.write_all(out.as_bytes())?;
    stream.flush()
}

fn error_json(reason: &str) -> String {
    serde_json::json!({ "error": reason }).to_string()
}

/// An answer.
struct Reply {
    status: u16,
    body: String,
    /// Send `Allow: GET` (405).
    allow: bool,
    content_type: &'static str,
}

impl Reply {
    fn json(status: u16, body: String) -> Reply {
        Reply {
            status,
            body,
            allow: false,
            content_type: "application/json",
        }
    }
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

fn route(head: &[u8], state: &AdminState) -> Reply {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Reply::json(400, error_json("malformed request line"));
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return Reply::json(400, error_json("malformed request line"));
    }
    let path = target.split('?').next().unwrap_or_default();
    let known = matches!(
        path,
        "/v1/health/live"
            | "/v1/health/ready"
            | "/v1/node"
            | "/v1/partitions"
            | "/v1/cluster"
            | "/metrics"
    );
    if !known {
        return Reply::json(404, error_json("no such endpoint"));
    }
    if method != "GET" && method != "HEAD" {
        let mut r = Reply::json(405, error_json("only GET"));
        r.allow = true;
        return r;
    }
    match path {
        "/v1/health/live" => Reply::json(200, serde_json::json!({ "status": "live" }).to_string()),
        "/v1/health/ready" => {
            if state.ready.load(Ordering::SeqCst) {
                Reply::json(200, serde_json::json!({ "status": "ready" }).to_string())
            } else {
                let reason = state.reason.lock().map(|r| r.clone()).unwrap_or_default();
                Reply::json(
                    503,
                    serde_json::json!({ "status": "not ready", "reason": reason }).to_string(),
                )
            }
        }
        "/metrics" => {
            let openmetrics = accepts_openmetrics(head);
            let reports = state.router.get().map_or_else(Vec::new, |r| {
                crate::metrics::collect(r, crate::metrics::SHARD_TIMEOUT)
            });
            let topics = state.topics.get();
            let process = crate::metrics::Process {
                start_time_seconds: state.started,
                data_dir: state.data_dir.clone(),
                quorum: topics.and_then(|t| {
                    crate::metrics::block_on_timeout(
                        t.quorum_status(),
                        crate::metrics::SHARD_TIMEOUT,
                    )
                    .flatten()
                }),
                metadata: topics.map(|t| {
                    let image = t.image();
                    let fenced = image.brokers.iter().filter(|b| b.fenced).count();
                    (image.version, image.brokers.len() - fenced, fenced)
                }),
                offline_partitions: topics.map(|t| {
                    t.image()
                        .topics()
                        .map(|t| t.placement.iter().filter(|p| p.leader < 0).count())
                        .sum()
                }),
            };
            Reply {
                status: 200,
                body: crate::metrics::render(&reports, &process, openmetrics),
                allow: false,
                content_type: if openmetrics {
                    OPENMETRICS
                } else {
                    PROMETHEUS_TEXT
                },
            }
        }
        "/v1/partitions" => partitions_json(state),
        "/v1/cluster" => cluster_json(state),
        _ => Reply::json(200, node_json(state)),
    }
}

/// Whether the request's `Accept` header names OpenMetrics.
fn accepts_openmetrics(head: &[u8]) -> bool {
    String::from_utf8_lossy(head).lines().any(|line| {
        line.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("accept")
                && v.to_ascii_lowercase()
                    .contains("application/openmetrics-text")
        })
    })
}

fn partitions_json(state: &AdminState) -> Reply {
    let Some(router) = state.router.get() else {
        return Reply::json(503, error_json("not serving yet"));
    };
    let reports = crate::metrics::collect(router, crate::metrics::SHARD_TIMEOUT);
    let missing: Vec<usize> = reports
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_none())
        .map(|(s, _)| s)
        .collect();
    if !missing.is_empty() {
        return Reply::json(
            503,
            serde_json::json!({
                "error": "shards did not answer in time",
                "shards": missing,
            })
            .to_string(),
        );
    }
    let mut parts: Vec<&sluice_net::stats::PartitionStats> = reports
        .iter()
        .flatten()
        .flat_map(|r| r.partitions.iter())
        .collect();
    parts.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let list: Vec<serde_json::Value> = parts
        .iter()
        .map(|p| {
            serde_json::json!({
                "topic": p.topic,
                "partition": p.partition,
                "shard": p.shard,
                "log_start_offset": p.log_start_offset,
                "high_watermark": p.high_watermark,
                "log_end_offset": p.log_end_offset,
                "size_bytes": p.size_bytes,
                "segments": p.segments,
                "leader_epoch": p.leader_epoch,
                "offline": p.offline,
                "replica": p.replica.as_ref().map(|r| serde_json::json!({
                    "role": r.role,
                    "leader": r.leader,
                    "leader_epoch": r.leader_epoch,
                    "replicas": r.replicas,
                    "isr": r.isr,
                    "followers": r.followers.iter().map(|f| serde_json::json!({
                        "follower": f.follower,
                        "lag_records": f.records,
                        "lag_seconds": f.seconds,
                    })).collect::<Vec<_>>(),
                })),
            })
        })
        .collect();
    Reply::json(200, serde_json::json!({ "partitions": list }).to_string())
}

/// The cluster as this node knows it: its quorum member's view, the leader's view
/// (with every voter's progress), and the registered brokers.
fn cluster_json(state: &AdminState) -> Reply {
    let Some(topics) = state.topics.get() else {
        return Reply::json(503, error_json("not serving yet"));
    };
    let image = topics.image();
    let brokers: Vec<serde_json::Value> = image
        .brokers
        .iter()
        .map(|b| {
            serde_json::json!({
                "id": b.id,
                "rack": b.rack,
                "host": b.host,
                "port": b.port,
                "incarnation": b.incarnation.to_string(),
                "state": if b.fenced { "fenced" } else { "alive" },
            })
        })
        .collect();
    let local = futures::executor::block_on(topics.quorum_status());
    let leader = local.as_ref().map(|_| {
        futures::executor::block_on(topics.leader_status()).map_or_else(
            |e| serde_json::json!({ "error": e }),
            |s| serde_json::json!(s),
        )
    });
    Reply::json(
        200,
        serde_json::json!({
            "node_id": state.node_id,
            "mode": if local.is_some() { "cluster" } else { "single" },
            "cluster_id": image.cluster_id,
            "metadata_version": image.version,
            "quorum": local,
            "leader": leader,
            "brokers": brokers,
        })
        .to_string(),
    )
}

fn node_json(state: &AdminState) -> String {
    let kafka = state
        .kafka
        .lock()
        .ok()
        .and_then(|k| *k)
        .map(|a| a.to_string());
    let (total, free) = nix::sys::statvfs::statvfs(&state.data_dir).map_or((None, None), |s| {
        let f = s.fragment_size();
        (
            Some(s.blocks().saturating_mul(f)),
            Some(s.blocks_available().saturating_mul(f)),
        )
    });
    serde_json::json!({
        "node_id": state.node_id,
        "version": env!("CARGO_PKG_VERSION"),
        "shards": state.shards.load(Ordering::SeqCst),
        "listeners": { "kafka": kafka, "admin": state.admin.to_string() },
        "data_dir": state.data_dir.display().to_string(),
        "data_dir_bytes_used": dir_bytes(&state.data_dir),
        "filesystem_bytes_total": total,
        "filesystem_bytes_free": free,
    })
    .to_string()
}

/// Bytes of the files under `dir` (their sizes).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total = total.saturating_add(m.len()),
                Err(_) => {}
            }
        }
    }
    total
}
