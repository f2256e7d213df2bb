//! The Kafka server of one node: starts the engine, opens the topic registry, and
//! opens a listener on every shard on the same port (`SO_REUSEPORT`, so the kernel
//! spreads connections over the shards). A connection lives on the shard that
//! accepted it; work for partitions of other shards goes through the shard router.
//!
//! Shutdown: every shard stops accepting, its connections stop reading new requests
//! and answer the ones already read, then the engine flushes and closes every log.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use sluice_engine::sync::Notify;
use sluice_engine::{Engine, EngineConfig, ShardRouter};

use crate::context::{BrokerContext, BrokerSettings};
use crate::kafka_error::KafkaError;
use crate::services::ShardServices;
use crate::topics::TopicStore;

/// Why the broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("storage: {0}")]
    Engine(#[from] sluice_engine::Error),
    #[error("topic registry: {0}")]
    Topics(KafkaError),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
}

/// A running node.
pub struct Broker {
    engine: Option<Engine>,
    router: ShardRouter,
    topics: Arc<TopicStore>,
    addr: SocketAddr,
    drain_timeout: Duration,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Broker({})", self.addr)
    }
}

/// A shard's listener and connections.
#[derive(Default)]
struct ShardServer {
    stopping: Cell<bool>,
    stop: Notify,
    open: Cell<usize>,
    closed: Notify,
}

impl Broker {
    /// Starts the engine and the listeners. `listen` may have port 0 (any free port;
    /// see [`Broker::local_addr`]); an advertised port of 0 means the bound port.
    pub fn start(
        engine: EngineConfig,
        listen: SocketAddr,
        settings: &BrokerSettings,
    ) -> Result<Broker, StartError> {
        let defaults = engine.log_defaults.clone();
        let engine = Engine::start(engine)?;
        // Absolute: the engine resolved it against the working directory.
        let data_dir = engine.data_dir().to_path_buf();
        let router = engine.router();
        // The shards bind with SO_REUSEPORT, which would let a second broker share a
        // port already in use; a plain bind first refuses that, and picks the port
        // when `listen` says 0 (a cluster registers it before the shards listen).
        let probe = match bind_probe(listen) {
            Ok(p) => p,
            Err(e) => {
                let _ = engine.shutdown();
                return Err(e);
            }
        };
        let port = probe.local_addr().map_or(listen.port(), |a| a.port());
        drop(probe);
        let listen = SocketAddr::new(listen.ip(), port);
        // Listening from here on, before the node registers with the cluster: a
        // peer connecting before the shards accept waits in this backlog (and is
        // reset when it closes) rather than being refused, which followers take
        // for a dead broker and fence it.
        let early = match early_listener(listen) {
            Ok(l) => l,
            Err(e) => {
                let _ = engine.shutdown();
                return Err(StartError::Listen {
                    addr: listen,
                    reason: e.to_string(),
                });
            }
        };
        let mut settings = settings.clone();
        if settings.advertised_port == 0 {
            settings.advertised_port = port;
        }
        let settings = &settings;
        let topics = match futures::executor::block_on(TopicStore::open(
            &data_dir,
            defaults,
            router.clone(),
            settings,
        )) {
            Ok(t) => Arc::new(t),
            Err(e) => {
                let _ = engine.shutdown();
                return Err(StartError::Topics(e));
            }
        };
        let mut broker = Broker {
            engine: Some(engine),
            router: router.clone(),
            topics,
            addr: listen,
            drain_timeout: settings.drain_timeout,
        };
        broker.addr = broker.listen_on(0, listen, settings)?;
        for shard in 1..router.shard_count() {
            broker.listen_on(shard, broker.addr, settings)?;
        }
        drop(early);
        tracing::info!(addr = %broker.addr, shards = router.shard_count(), "Kafka listener open");
        Ok(broker)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn router(&self) -> ShardRouter {
        self.router.clone()
    }

    pub fn topics(&self) -> Arc<TopicStore> {
        self.topics.clone()
    }

    fn listen_on(
        &self,
        shard: usize,
        addr: SocketAddr,
        settings: &BrokerSettings,
    ) -> Result<SocketAddr, StartError> {
        let settings = settings.clone();
        let router = self.router.clone();
        let topics = self.topics.clone();
        let bound = futures::executor::block_on(self.router.call(shard, move |s| async move {
            let listener = listen(addr).map_err(|e| e.to_string())?;
            let local = listener.local_addr().map_err(|e| e.to_string())?;
            let mut settings = settings;
            if settings.advertised_port == 0 {
                settings.advertised_port = local.port();
            }
            let services = ShardServices::of(&s);
            let ctx = Rc::new(BrokerContext {
                settings,
                router,
                topics,
                shard,
                peer: None,
                services: services.clone(),
            });
            let server = Rc::new(ShardServer::default());
            *services.server.borrow_mut() = Some(server.clone());
            let lag_max = ctx
                .settings
                .cluster
                .as_ref()
                .map_or(crate::replica::LAG_TIME_MAX_DEFAULT, |c| {
                    c.replica_lag_time_max
                });
            services.replicas.attach(&crate::replica::Env {
                topics: ctx.topics.clone(),
                lag_max,
            });
            glommio::spawn_local(isr_checks(Rc::downgrade(&services), lag_max)).detach();
            crate::group::coordinator::follow_leadership(&ctx);
            let loading = ctx.clone();
            glommio::spawn_local(async move {
                crate::group::coordinator::load_owned(&loading).await;
            })
            .detach();
            glommio::spawn_local(accept_loop(listener, ctx, server)).detach();
            Ok::<SocketAddr, String>(local)
        }))
        .map_err(|e| StartError::Listen {
            addr,
            reason: e.to_string(),
        })?;
        bound.map_err(|reason| StartError::Listen { addr, reason })
    }

    /// Closes every shard's listener and waits for its connections to finish.
    fn stop_listeners(&self) {
        let drain = self.drain_timeout;
        let jobs: Vec<_> = (0..self.router.shard_count())
            .map(|s| {
                (s, move |shard: Rc<sluice_engine::Shard>| async move {
                    let services = ShardServices::of(&shard);
                    let taken = services.server.borrow_mut().take();
                    let Some(server) = taken.and_then(|s| s.downcast::<ShardServer>().ok()) else {
                        return;
                    };
                    server.stopping.set(true);
                    server.stop.notify_all();
                    services.replicas.stop();
                    // Members waiting in JoinGroup or SyncGroup are answered now.
                    crate::group::coordinator::unload_local(&services);
                    let deadline = std::time::Instant::now() + drain;
                    while server.open.get() > 0 && std::time::Instant::now() < deadline {
                        let closed = server.closed.notified();
                        let tick = glommio::timer::sleep(Duration::from_millis(50));
                        futures::select! {
                            () = closed.fuse() => {},
                            () = tick.fuse() => {},
                        }
                    }
                    if server.open.get() > 0 {
                        tracing::warn!(
                            connections = server.open.get(),
                            "connections still open after the drain timeout"
                        );
                    }
                })
            })
            .collect();
        futures::executor::block_on(self.router.scatter(jobs));
    }

    /// Hands this node's leaderships to other in-sync replicas (a cluster's
    /// controlled shutdown), stops accepting, answers what was read, flushes and
    /// closes every log.
    pub fn shutdown(mut self) -> Result<(), sluice_engine::Error> {
        futures::executor::block_on(self.topics.controlled_shutdown());
        self.stop_listeners();
        self.topics.stop();
        match self.engine.take() {
            Some(engine) => engine.shutdown(),
            None => Ok(()),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(engine) = self.engine.take() {
            self.stop_listeners();
            self.topics.stop();
            let _ = engine.shutdown();
        }
    }
}

/// A listening socket for one shard: `SO_REUSEPORT` so every shard listens on the
/// port, and `SO_REUSEADDR`, which accepted connections inherit: connections this
/// broker closed stay in TIME_WAIT on the port for a minute, and without it they
/// would keep a restarted broker (after a crash) from binding the port.
fn listen(addr: SocketAddr) -> std::io::Result<glommio::net::TcpListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let sk = early_listener(addr)?;
    // SAFETY: a bound, listening TCP socket whose descriptor is handed over whole.
    Ok(unsafe { glommio::net::TcpListener::from_raw_fd(sk.into_raw_fd()) })
}

/// A plain listening socket on `addr` with `SO_REUSEPORT` and `SO_REUSEADDR`,
/// as the shards' are (see [`listen`]).
fn early_listener(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let sk = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    sk.set_reuse_address(true)?;
    sk.set_reuse_port(true)?;
    sk.bind(&addr.into())?;
    sk.listen(1024)?;
    Ok(sk)
}

/// How long a start waits for a port that is still in use: after a crash the
/// kernel may hold the old listener until the dead process's io_uring is torn down.
const PORT_IN_USE_WAIT: Duration = Duration::from_secs(10);

/// Binds `addr` without `SO_REUSEPORT`, waiting a little while the port is in use.
fn bind_probe(addr: SocketAddr) -> Result<std::net::TcpListener, StartError> {
    let deadline = std::time::Instant::now() + PORT_IN_USE_WAIT;
    let mut logged = false;
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(l) => return Ok(l),
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                if !logged {
                    tracing::warn!(%addr, "port in use; waiting up to 10 s for it to be released");
                    logged = true;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => {
                return Err(StartError::Listen {
                    addr,
                    reason: e.to_string(),
                })
            }
        }
    }
}

/// Proposes ISR shrinks for the shard's led partitions every half
/// `replica.lag.time.max.ms`, as Kafka checks, while the shard serves.
async fn isr_checks(services: std::rc::Weak<ShardServices>, lag_max: Duration) {
    let every = (lag_max / 2).max(Duration::from_millis(50));
    loop {
        glommio::timer::sleep(every).await;
        let Some(services) = services.upgrade() else {
            return;
        };
        if services.server.borrow().is_none() {
            return;
        }
        services.replicas.check_isr();
    }
}

async fn accept_loop(
    listener: glommio::net::TcpListener,
    ctx: Rc<BrokerContext>,
    server: Rc<ShardServer>,
) {
    loop {
        if server.stopping.get() {
            break;
        }
        let stop = server.stop.notified();
        let accepted = futures::select! {
            a = listener.accept().fuse() => a,
            () = stop.fuse() => break,
        };
        let stream = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors or a connection reset before accept: go on.
                tracing::warn!(error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
        let socket = match crate::body::set_nonblocking(fd) {
            Ok(()) => Some(fd),
            Err(e) => {
                tracing::warn!(error = %e, "cannot set the socket non-blocking; answers are copied");
                None
            }
        };
        let addr = stream.peer_addr().ok();
        let peer = addr.map_or_else(|| "?".to_string(), |a| a.to_string());
        tracing::debug!(%peer, shard = ctx.shard, "connection accepted");
        server.open.set(server.open.get() + 1);
        sluice_engine::metrics::connection_opened();
        let (srv, c) = (server.clone(), Rc::new(ctx.for_peer(addr.map(|a| a.ip()))));
        glommio::spawn_local(async move {
            let stop_srv = srv.clone();
            let stop = async move {
                if !stop_srv.stopping.get() {
                    stop_srv.stop.notified().await;
                }
            };
            crate::connection::serve(stream, socket, peer, c, stop).await;
            srv.open.set(srv.open.get() - 1);
            sluice_engine::metrics::connection_closed();
            srv.closed.notify_all();
        })
        .detach();
    }
    tracing::debug!(shard = ctx.shard, "listener closed");
}
