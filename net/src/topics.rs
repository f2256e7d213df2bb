//! The node's view of the topics, and the only way to change them.
//!
//! The metadata lives in `sluice-raft`: a versioned [`MetadataImage`] changed only by
//! [`Command`]s that the [`MetadataStore`] commits (durable in
//! `<data_dir>/metadata/`, on a thread of its own, never on a shard). Commit first,
//! then apply: a change is proposed, and once committed, this node's reconciler
//! (a thread of its own) compares the image with the partitions the shards host,
//! deletes the partitions of topics the image no longer has, creates the ones it
//! lacks and pushes changed topic configs to the shards. Then it publishes the
//! image to the handlers as a [`TopicsImage`] with each topic's settings; readers
//! load it without a lock. A request that changed something is answered once this
//! node applied it.
//!
//! A crash anywhere leaves a committed image and partition directories that are
//! reconciled on the next start: partitions of topics the image does not list
//! were being deleted and are deleted; partitions it lists and the disk lacks are
//! created empty. A data directory from before this store (`topics.json`) is
//! imported on first start and the file renamed `topics.json.imported`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::channel::oneshot;
use serde::Deserialize;
use sluice_engine::{LogConfig, ShardRouter, TopicPartition};
use sluice_raft::{
    Applied, Command, LocalLog, MetadataImage, MetadataStore, Outcome, ProposeError, Refusal,
    TopicRecord,
};
pub use sluice_raft::{BrokerRecord, PartitionRecord};
use uuid::Uuid;

use crate::context::BrokerSettings;
use crate::kafka_error::{self as code, KafkaError};
use crate::replica::Assignment;
use crate::topic_config::{self, TopicSettings};

/// The registry file of versions before the metadata store; imported once.
pub const TOPICS_FILE: &str = "topics.json";

/// Most partitions one topic may have.
pub const PARTITIONS_MAX: i32 = sluice_raft::PARTITIONS_MAX;

/// One topic as handlers see it.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub name: Arc<str>,
    pub id: Uuid,
    pub partitions: i32,
    /// The overrides as given; `settings` is what they amount to.
    pub configs: BTreeMap<String, String>,
    pub settings: TopicSettings,
    /// One record per partition: replicas, leader, epochs.
    pub placement: Arc<[PartitionRecord]>,
    /// Partitions whose replicas are being moved.
    pub reassigning: BTreeMap<i32, sluice_raft::Reassignment>,
}

impl TopicInfo {
    /// The broker leading `partition`, or -1 (offline or unknown).
    pub fn leader(&self, partition: i32) -> i32 {
        self.record(partition).map_or(-1, |r| r.leader)
    }

    /// The placement record of `partition`.
    pub fn record(&self, partition: i32) -> Option<&PartitionRecord> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.placement.get(p))
    }
}

/// One version of the topics, as this node has applied it.
#[derive(Debug, Default)]
pub struct TopicsImage {
    pub cluster_id: String,
    /// The metadata version this view reflects.
    pub version: u64,
    /// Registered brokers, fenced ones too, by id (this node alone for the
    /// single-node store).
    pub brokers: Vec<BrokerRecord>,
    /// Topic defaults: the config file's, with the dynamic broker configs applied.
    pub defaults: LogConfig,
    /// Dynamic broker configs by resource (`""`: cluster default; a broker id).
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    by_name: BTreeMap<Arc<str>, Arc<TopicInfo>>,
    by_id: HashMap<Uuid, Arc<str>>,
}

impl TopicsImage {
    pub fn get(&self, name: &str) -> Option<&Arc<TopicInfo>> {
        self.by_name.get(name)
    }

    pub fn by_id(&self, id: &Uuid) -> Option<&Arc<TopicInfo>> {
        self.by_id.get(id).and_then(|n| self.by_name.get(n))
    }

    pub fn topics(&self) -> impl Iterator<Item = &Arc<TopicInfo>> {
        self.by_name.values()
    }

    /// A live broker.
    pub fn broker(&self, id: i32) -> Option<&BrokerRecord> {
        self.live_brokers().find(|b| b.id == id)
    }

    /// Brokers not fenced, by id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRecord> {
        self.brokers.iter().filter(|b| !b.fenced)
    }

    fn from_topics(
        image: &MetadataImage,
        brokers: Vec<BrokerRecord>,
        defaults: LogConfig,
        topics: Vec<Arc<TopicInfo>>,
    ) -> TopicsImage {
        let by_name: BTreeMap<Arc<str>, Arc<TopicInfo>> =
            topics.into_iter().map(|t| (t.name.clone(), t)).collect();
        let by_id = by_name.values().map(|t| (t.id, t.name.clone())).collect();
        TopicsImage {
            cluster_id: image.cluster_id.clone(),
            version: image.version,
            brokers,
            defaults,
            broker_configs: image.broker_configs.clone(),
            by_name,
            by_id,
        }
    }
}

/// The pre-store registry file, read once to import it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTopic {
    id: Uuid,
    partitions: i32,
    #[serde(default)]
    configs: BTreeMap<String, String>,
    #[serde(default)]
    deleting: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileContents {
    #[allow(dead_code)]
    version: u32,
    cluster_id: String,
    #[serde(default)]
    producer_ids_reserved: i64,
    topics: BTreeMap<String, FileTopic>,
}

/// Producer ids are reserved through the metadata this many at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// How long the reconciler waits before trying again after a failure.
const RECONCILE_RETRY: Duration = Duration::from_secs(1);

/// Which metadata versions this node has applied, and who waits for which.
#[derive(Default)]
struct Progress {
    applied: u64,
    waiters: Vec<(u64, oneshot::Sender<Result<(), String>>)>,
}

impl Progress {
    fn finish(&mut self, version: u64, result: &Result<(), String>) {
        if result.is_ok() {
            self.applied = self.applied.max(version);
        }
        let (done, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|(v, _)| *v <= version);
        self.waiters = wait;
        for (_, tx) in done {
            let _ = tx.send(result.clone());
        }
    }
}

/// The registry.
pub struct TopicStore {
    data_dir: PathBuf,
    node_id: i32,
    /// One of a cluster (not the single-node store).
    cluster: bool,
    defaults: LogConfig,
    meta: MetadataStore,
    view: Arc<ArcSwap<TopicsImage>>,
    progress: Arc<Mutex<Progress>>,
    reconciler: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The next producer id and the end of this node's reserved block.
    producer_ids: Mutex<(i64, i64)>,
    /// Serialises the reservation of producer-id blocks.
    reserving: futures::lock::Mutex<()>,
}

impl std::fmt::Debug for TopicStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TopicStore({})", self.data_dir.display())
    }
}

fn new_uuid() -> Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

/// Kafka prints cluster ids as URL-safe base64 of 16 bytes, without padding.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes: [u8; 16] = rand::random();
    let mut out = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(char::from(ALPHABET[((acc >> bits) & 63) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (6 - bits)) & 63) as usize]));
    }
    out
}

fn storage(e: impl std::fmt::Display) -> KafkaError {
    KafkaError::new(code::KAFKA_STORAGE_ERROR, e.to_string())
}

fn refusal_error(r: &Refusal) -> KafkaError {
    let c = match r {
        Refusal::TopicExists(_) => code::TOPIC_ALREADY_EXISTS,
        Refusal::UnknownTopic(_) => code::UNKNOWN_TOPIC_OR_PARTITION,
        Refusal::PartitionCount { .. } | Refusal::InvalidPartitions(_) => code::INVALID_PARTITIONS,
        Refusal::ReplicationFactor { .. } => code::INVALID_REPLICATION_FACTOR,
        Refusal::BrokerResource(_) | Refusal::InvalidIsr { .. } => code::INVALID_REQUEST,
        Refusal::InvalidReplicas { .. } => 39,
        Refusal::Reassignment { .. } => 60,
        Refusal::NoReassignment { .. } => 85,
        Refusal::StalePartition { .. } => code::FENCED_LEADER_EPOCH,
        Refusal::ClusterIdSet | Refusal::InvalidBlock(_) | Refusal::UnknownBroker(_) => {
            code::UNKNOWN_SERVER_ERROR
        }
    };
    KafkaError::new(c, r.to_string())
}

fn proposal_error(e: ProposeError) -> KafkaError {
    match e {
        ProposeError::Storage(e) => storage(e),
        // Retriable: no quorum answered in time, or the node is stopping.
        ProposeError::Unavailable(_) | ProposeError::Stopped => {
            KafkaError::new(code::REQUEST_TIMED_OUT, e.to_string())
        }
    }
}

/// Partition numbers on disk, by topic.
fn hosted_partitions(router: &ShardRouter) -> BTreeMap<Arc<str>, BTreeSet<i32>> {
    let mut out: BTreeMap<Arc<str>, BTreeSet<i32>> = BTreeMap::new();
    for tp in router.table().partitions() {
        out.entry(tp.topic.clone())
            .or_default()
            .insert(tp.partition);
    }
    out
}

/// Commits a command during start (before the store's thread runs).
fn commit_at_start(log: &mut LocalLog, cmd: Command) -> Result<Applied, KafkaError> {
    log.commit(cmd).map_err(storage)
}

/// Opens the single-node store of `dir`: imports `topics.json` and partition
/// directories on first start; later, keeps partitions beyond the registered
/// count (they can only come from outside, a copied directory), as before the
/// store.
fn open_single(dir: &Path, data_dir: &Path, router: &ShardRouter) -> Result<LocalLog, KafkaError> {
    let mut log = LocalLog::open(dir).map_err(storage)?;
    if log.is_empty() {
        import(&mut log, data_dir, router)?;
        return Ok(log);
    }
    let image = log.image().clone();
    for (name, parts) in hosted_partitions(router) {
        let n = parts.iter().max().map_or(0, |m| m + 1);
        match image.topic(&name) {
            Some(t) if n > t.partitions => {
                tracing::warn!(topic = %name, registry = t.partitions, on_disk = n,
                    "more partitions on disk than registered; keeping them");
                commit_at_start(
                    &mut log,
                    Command::CreatePartitions {
                        name: name.to_string(),
                        id: t.id,
                        total: n,
                    },
                )?;
            }
            Some(_) => {}
            None => tracing::warn!(topic = %name, partitions = parts.len(),
                "deleting the partitions of a topic the metadata no longer lists (a deletion was under way)"),
        }
    }
    Ok(log)
}

/// First start on a data directory without a metadata store: the topics of
/// `topics.json` (if any) and of partition directories it does not list.
fn import(log: &mut LocalLog, data_dir: &Path, router: &ShardRouter) -> Result<(), KafkaError> {
    let path = data_dir.join(TOPICS_FILE);
    let file = match std::fs::read(&path) {
        Ok(bytes) => Some(serde_json::from_slice::<FileContents>(&bytes).map_err(|e| {
            storage(format!(
                "{} is not a valid topic registry: {e}",
                path.display()
            ))
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(storage(format!("cannot read {}: {e}", path.display()))),
    };
    let cluster_id = file
        .as_ref()
        .map_or_else(new_cluster_id, |f| f.cluster_id.clone());
    commit_at_start(log, Command::InitCluster { cluster_id })?;
    let mut topics: BTreeMap<String, (Uuid, i32, BTreeMap<String, String>)> = BTreeMap::new();
    let mut deleting = BTreeSet::new();
    if let Some(f) = &file {
        if f.producer_ids_reserved > 0 {
            commit_at_start(
                log,
                Command::ReserveProducerIds {
                    count: f.producer_ids_reserved,
                },
            )?;
        }
        for (name, t) in &f.topics {
            if t.deleting {
                deleting.insert(name.clone());
            } else {
                topics.insert(name.clone(), (t.id, t.partitions, t.configs.clone()));
            }
        }
    }
    for (name, parts) in hosted_partitions(router) {
        if deleting.contains(name.as_ref()) {
            continue;
        }
        let n = parts.iter().max().map_or(0, |m| m + 1);
        match topics.get_mut(name.as_ref()) {
            Some(t) if n > t.1 => {
                tracing::warn!(topic = %name, registry = t.1, on_disk = n,
                    "more partitions on disk than registered; keeping them");
                t.1 = n;
            }
            Some(_) => {}
            None => {
                tracing::warn!(topic = %name, partitions = n,
                    "adopting partition directories of a topic the registry does not list");
                topics.insert(name.to_string(), (new_uuid(), n, BTreeMap::new()));
            }
        }
    }
    for (name, (id, partitions, configs)) in topics {
        commit_at_start(
            log,
            Command::CreateTopic {
                name,
                id,
                partitions,
                configs,
                replication_factor: 1,
            },
        )?;
    }
    if file.is_some() {
        let to = data_dir.join(format!("{TOPICS_FILE}.imported"));
        std::fs::rename(&path, &to)
            .and_then(|()| std::fs::File::open(data_dir)?.sync_all())
            .map_err(|e| storage(format!("cannot rename {}: {e}", path.display())))?;
        tracing::info!(from = %path.display(), to = %to.display(),
            "imported the topic registry into the metadata store");
    }
    Ok(())
}

/// How often a node asks again while the quorum does not answer at start.
const JOIN_RETRY: Duration = Duration::from_secs(1);

/// Commits `cmd` through the quorum at start, asking again while no quorum
/// answers (the other voters may not be up yet).
async fn commit_when_quorate(meta: &MetadataStore, cmd: &Command) -> Result<Outcome, KafkaError> {
    let started = std::time::Instant::now();
    loop {
        match meta.propose(cmd.clone()).await {
            Ok(out) => return Ok(out),
            Err(ProposeError::Unavailable(why)) => {
                tracing::warn!(waited_s = started.elapsed().as_secs(), reason = %why,
                    "waiting for the metadata quorum (a majority of cluster.voters must be up)");
                std::thread::sleep(JOIN_RETRY);
            }
            Err(e) => return Err(proposal_error(e)),
        }
    }
}

/// The single-node store in `dir` holds no topic and no dynamic config, and
/// `data_dir` holds no partition: the broker ran on its own but was never used.
fn single_node_store_unused(dir: &Path, data_dir: &Path) -> Result<bool, KafkaError> {
    if data_dir.join(TOPICS_FILE).exists() {
        return Ok(false);
    }
    let log = LocalLog::open(dir).map_err(storage)?;
    let image = log.image();
    if !image.topics.is_empty() || !image.broker_configs.is_empty() {
        return Ok(false);
    }
    let entries = std::fs::read_dir(data_dir)
        .map_err(|e| storage(format!("cannot list {}: {e}", data_dir.display())))?;
    for entry in entries {
        let entry =
            entry.map_err(|e| storage(format!("cannot list {}: {e}", data_dir.display())))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // The store itself, and the broker's lock and probe files.
        if entry.path() != dir && !name.starts_with('.') {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Renames an unused single-node store out of the way (kept, not deleted).
fn set_aside(dir: &Path, data_dir: &Path) -> Result<(), KafkaError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = dir
        .file_name()
        .map_or("metadata".into(), |n| n.to_string_lossy());
    // Not `NAME-NUMBER`: that would be taken for a partition directory (and
    // deleted as one of a topic the metadata does not list).
    let to = data_dir.join(format!("{name}.single-node.{secs}"));
    std::fs::rename(dir, &to)
        .and_then(|()| std::fs::File::open(data_dir)?.sync_all())
        .map_err(|e| storage(format!("cannot rename {}: {e}", dir.display())))?;
    tracing::warn!(from = %dir.display(), to = %to.display(),
        "this node ran as a single-node broker that never held a topic; \
         its metadata is set aside and the node joins the cluster");
    Ok(())
}

/// Joins the cluster: the quorum member starts, the cluster id is set if no
/// voter set it yet, and this broker registers with a new incarnation. Returns
/// the store and the first image this node applied at or after its
/// registration (so it holds every change before it: nothing is reconciled
/// against a stale image).
async fn join(
    dir: &Path,
    data_dir: &Path,
    settings: &BrokerSettings,
    cluster: &crate::context::ClusterSettings,
) -> Result<
    (
        MetadataStore,
        Arc<MetadataImage>,
        mpsc::Receiver<Arc<MetadataImage>>,
    ),
    KafkaError,
> {
    // A single-node store is not carried into a cluster: refuse rather than start
    // a cluster that does not know this node's topics (and would delete them).
    // One that never held anything (a package's first start with the default
    // configuration leaves one) is set aside instead.
    let single = [
        dir.join("log"),
        dir.join("snapshot"),
        data_dir.join(TOPICS_FILE),
    ];
    if let Some(found) = single.iter().find(|p| p.exists()) {
        if !single_node_store_unused(dir, data_dir)? {
            return Err(storage(format!(
                "{} holds the metadata of a single-node broker; moving a single node into a \
                 cluster is not supported yet: start it without cluster.voters, or give this \
                 node an empty data directory",
                found.display()
            )));
        }
        set_aside(dir, data_dir)?;
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| storage(format!("cannot create {}: {e}", dir.display())))?;
    let (tx, rx) = mpsc::channel();
    let mut quorum = cluster.quorum.clone();
    quorum.dir = dir.to_path_buf();
    let meta = MetadataStore::start_quorum(quorum, tx).map_err(storage)?;
    let init = Command::InitCluster {
        cluster_id: new_cluster_id(),
    };
    commit_when_quorate(&meta, &init).await?;
    let register = Command::RegisterBroker {
        id: settings.node_id,
        incarnation: rand::random(),
        rack: cluster.rack.clone(),
        host: settings.advertised_host.clone(),
        port: settings.advertised_port,
    };
    let out = commit_when_quorate(&meta, &register).await?;
    if let Err(r) = &out.result {
        return Err(storage(format!(
            "could not register broker {}: {r}",
            settings.node_id
        )));
    }
    tracing::info!(
        node_id = settings.node_id,
        version = out.version,
        "registered with the cluster"
    );
    meta.keep_alive(register);
    let first = loop {
        let image = rx
            .recv()
            .map_err(|_| storage("the metadata quorum stopped while joining"))?;
        if image.version >= out.version {
            break image;
        }
    };
    Ok((meta, first, rx))
}

impl TopicStore {
    /// Opens the metadata of `data_dir` (importing `topics.json` on first start) and
    /// reconciles the partitions with it. Runs before the listeners open, off the
    /// shards. With `settings.cluster` the node joins the metadata quorum first
    /// and hosts only the partitions placed on it.
    pub async fn open(
        data_dir: &Path,
        defaults: LogConfig,
        router: ShardRouter,
        settings: &BrokerSettings,
    ) -> Result<TopicStore, KafkaError> {
        let dir = data_dir.join(sluice_raft::METADATA_DIR);
        let (meta, first, rx) = if let Some(cluster) = &settings.cluster {
            join(&dir, data_dir, settings, cluster).await?
        } else {
            let log = open_single(&dir, data_dir, &router)?;
            let first = Arc::new(log.image().clone());
            let (tx, rx) = mpsc::channel();
            (MetadataStore::start(log, tx).map_err(storage)?, first, rx)
        };
        let view = Arc::new(ArcSwap::from_pointee(TopicsImage::default()));
        let progress = Arc::new(Mutex::new(Progress::default()));
        let owners = Owners::load(&dir, &first, &router)?;
        let mut reconciler = Reconciler {
            router,
            static_defaults: defaults.clone(),
            defaults: defaults.clone(),
            view: view.clone(),
            hosted: HashMap::new(),
            owners,
            node_id: settings.node_id,
            cluster: settings.cluster.is_some(),
            this: BrokerRecord {
                id: settings.node_id,
                incarnation: 0,
                rack: settings.cluster.as_ref().and_then(|c| c.rack.clone()),
                host: settings.advertised_host.clone(),
                port: settings.advertised_port,
                fenced: false,
            },
        };
        reconciler.reconcile(&first).await.map_err(storage)?;
        if let Ok(mut p) = progress.lock() {
            p.applied = first.version;
        }
        let prog = progress.clone();
        let thread = std::thread::Builder::new()
            .name("reconciler".into())
            .spawn(move || reconciler.run(&rx, &prog))
            .map_err(storage)?;
        Ok(TopicStore {
            data_dir: data_dir.to_path_buf(),
            node_id: settings.node_id,
            cluster: settings.cluster.is_some(),
            defaults,
            meta,
            view,
            progress,
            reconciler: Mutex::new(Some(thread)),
            producer_ids: Mutex::new((0, 0)),
            reserving: futures::lock::Mutex::new(()),
        })
    }

    /// The node id of the metadata quorum's leader (Kafka's controller id), -1
    /// while none is known; this node for the single-node store.
    pub fn controller(&self) -> i32 {
        if self.meta.is_quorum() {
            self.meta
                .leader()
                .and_then(|l| i32::try_from(l).ok())
                .unwrap_or(-1)
        } else {
            self.node_id
        }
    }

    /// The quorum as its leader sees it (asked of the leader).
    pub async fn leader_status(&self) -> Result<sluice_raft::QuorumStatus, String> {
        self.meta.leader_status().await
    }

    /// Changes the metadata quorum's membership (through its leader).
    pub async fn change_membership(
        &self,
        change: sluice_raft::quorum::node::MembershipChange,
    ) -> Result<(), String> {
        self.meta.change_membership(change).await
    }

    /// The quorum as this node sees it (`None` for the single-node store).
    pub async fn quorum_status(&self) -> Option<sluice_raft::QuorumStatus> {
        self.meta.quorum_status().await
    }

    /// Stops the metadata store and the reconciler (before the engine stops).
    pub fn stop(&self) {
        self.meta.stop();
        let thread = self.reconciler.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }

    pub fn image(&self) -> Arc<TopicsImage> {
        self.view.load_full()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Topic defaults: the config file's, with the dynamic broker configs applied.
    pub fn defaults(&self) -> LogConfig {
        self.image().defaults.clone()
    }

    /// Replaces the dynamic broker configs of `resource` (`""`: the cluster-wide
    /// default; else a broker id), after checking them.
    pub async fn set_broker_configs(
        &self,
        resource: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), KafkaError> {
        topic_config::dynamic_defaults(&self.defaults, &[&configs])
            .map_err(|e| KafkaError::new(code::INVALID_CONFIG, e.to_string()))?;
        if validate_only {
            return Ok(());
        }
        tracing::info!(resource, configs = ?configs, "altering dynamic broker configs");
        self.change(Command::SetBrokerConfigs {
            resource: resource.to_string(),
            configs,
        })
        .await?;
        Ok(())
    }

    /// Controlled shutdown: this broker stops heartbeating and fences itself, so
    /// the controller hands what it leads to other in-sync replicas and takes it
    /// out of the ISRs, and waits until this node applied that (its replicas
    /// resign; clients asking it are told the new leaders). Nothing for the
    /// single-node store. Bounded by the proposal timeout.
    pub async fn controlled_shutdown(&self) {
        if !self.cluster {
            return;
        }
        let Some(incarnation) = self
            .image()
            .brokers
            .iter()
            .find(|b| b.id == self.node_id && !b.fenced)
            .map(|b| b.incarnation)
        else {
            return;
        };
        self.meta.retire();
        tracing::info!(
            node_id = self.node_id,
            "controlled shutdown: handing over leaderships"
        );
        match self
            .change(Command::FenceBroker {
                id: self.node_id,
                incarnation,
            })
            .await
        {
            Ok(_) => tracing::info!("controlled shutdown: leaderships handed over"),
            Err(e) => tracing::warn!(error = %e, "controlled shutdown not taken; stopping anyway"),
        }
    }

    /// Moves the replicas of `tp` to `target` (`None`: cancels a move in progress).
    pub async fn reassign(
        &self,
        tp: &TopicPartition,
        id: Uuid,
        target: Option<Vec<i32>>,
    ) -> Result<(), KafkaError> {
        self.change(Command::Reassign {
            name: tp.topic.to_string(),
            id,
            partition: tp.partition,
            target,
        })
        .await?;
        Ok(())
    }

    /// Preferred leader election of `(topic, id, partition)`s (ElectLeaders).
    pub async fn elect_preferred(
        &self,
        partitions: Vec<(String, Uuid, i32)>,
    ) -> Result<(), KafkaError> {
        self.change(Command::ElectPreferred { partitions }).await?;
        Ok(())
    }

    /// Fences incarnation `incarnation` of broker `id`, which a follower found not
    /// running (its address refuses connections). A broker already fenced, or
    /// registered again since, is left alone (the command checks the incarnation).
    pub async fn fence_unreachable(&self, id: i32, incarnation: u64) -> Result<(), KafkaError> {
        tracing::info!(
            broker = id,
            incarnation,
            "broker refuses connections; fencing it"
        );
        self.change(Command::FenceBroker { id, incarnation })
            .await?;
        Ok(())
    }

    /// A partition leader's ISR change (Kafka's AlterPartition), from the record
    /// the leader last saw; refused when that record is no longer current.
    pub async fn alter_isr(
        &self,
        tp: &TopicPartition,
        id: Uuid,
        seen: &PartitionRecord,
        isr: Vec<i32>,
    ) -> Result<(), KafkaError> {
        self.change(Command::AlterIsr {
            name: tp.topic.to_string(),
            id,
            partition: tp.partition,
            leader: seen.leader,
            leader_epoch: seen.leader_epoch,
            partition_epoch: seen.partition_epoch,
            isr,
        })
        .await?;
        Ok(())
    }

    /// Commits `cmd` and waits until this node applied it (a refusal too: it was
    /// decided against an image this node may not show yet, such as a concurrent
    /// create of the same topic).
    async fn change(&self, cmd: Command) -> Result<Applied, KafkaError> {
        let out = self.meta.propose(cmd).await.map_err(proposal_error)?;
        self.wait_applied(out.version).await?;
        out.result.map_err(|r| refusal_error(&r))
    }

    async fn wait_applied(&self, version: u64) -> Result<(), KafkaError> {
        let rx = {
            let mut p = self
                .progress
                .lock()
                .map_err(|_| storage("reconciler state poisoned"))?;
            if p.applied >= version {
                return Ok(());
            }
            let (tx, rx) = oneshot::channel();
            p.waiters.push((version, tx));
            rx
        };
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(storage(format!(
                "committed, but this node could not apply it yet (it keeps trying): {e}"
            ))),
            Err(_) => Err(KafkaError::new(
                code::REQUEST_TIMED_OUT,
                "the node is stopping; the change is committed",
            )),
        }
    }

    fn current(&self, name: &str) -> Result<Arc<TopicInfo>, KafkaError> {
        self.image()
            .get(name)
            .cloned()
            .ok_or_else(|| unknown_topic(name))
    }

    /// Creates a topic. With `validate_only` only the checks run.
    pub async fn create(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<TopicInfo>, KafkaError> {
        TopicPartition::new(name, 0)
            .map_err(|e| KafkaError::new(code::INVALID_TOPIC_EXCEPTION, e.to_string()))?;
        let live = self.image().live_brokers().count();
        let rf = if replication_factor == -1 {
            1
        } else {
            replication_factor
        };
        if usize::try_from(rf).map_or(true, |r| r == 0 || r > live) {
            return Err(refusal_error(&Refusal::ReplicationFactor {
                asked: rf,
                brokers: live,
            }));
        }
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Err(KafkaError::new(
                code::INVALID_PARTITIONS,
                format!("{partitions} partitions: a topic has 1 to {PARTITIONS_MAX}"),
            ));
        }
        let settings = topic_config::settings(&self.defaults(), &configs)
            .map_err(|e| KafkaError::new(code::INVALID_CONFIG, e.to_string()))?;
        if self.image().get(name).is_some() {
            return Err(KafkaError::new(
                code::TOPIC_ALREADY_EXISTS,
                format!("topic '{name}' already exists"),
            ));
        }
        let info = Arc::new(TopicInfo {
            name: name.into(),
            id: new_uuid(),
            partitions,
            configs,
            settings,
            placement: Arc::from([]),
            reassigning: BTreeMap::new(),
        });
        if validate_only {
            return Ok(info);
        }
        self.change(Command::CreateTopic {
            name: name.to_string(),
            id: info.id,
            partitions,
            configs: info.configs.clone(),
            replication_factor: rf,
        })
        .await?;
        tracing::info!(topic = %name, partitions, replication_factor = rf, "created topic");
        Ok(self.image().get(name).cloned().unwrap_or(info))
    }

    /// Deletes a topic and its data.
    pub async fn delete(&self, name: &str) -> Result<(), KafkaError> {
        let info = self.current(name)?;
        self.change(Command::DeleteTopic {
            name: name.to_string(),
            id: info.id,
        })
        .await?;
        tracing::info!(topic = %name, "deleted topic");
        Ok(())
    }

    /// Grows a topic to `total` partitions.
    pub async fn add_partitions(
        &self,
        name: &str,
        total: i32,
        validate_only: bool,
    ) -> Result<(), KafkaError> {
        let info = self.current(name)?;
        if total <= info.partitions || total > PARTITIONS_MAX {
            return Err(refusal_error(&Refusal::PartitionCount {
                name: name.to_string(),
                have: info.partitions,
                asked: total,
            }));
        }
        if validate_only {
            return Ok(());
        }
        self.change(Command::CreatePartitions {
            name: name.to_string(),
            id: info.id,
            total,
        })
        .await?;
        tracing::info!(topic = %name, partitions = total, "added partitions");
        Ok(())
    }

    /// Replaces a topic's config overrides.
    pub async fn set_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), KafkaError> {
        topic_config::settings(&self.defaults(), &configs)
            .map_err(|e| KafkaError::new(code::INVALID_CONFIG, e.to_string()))?;
        let info = self.current(name)?;
        if validate_only {
            return Ok(());
        }
        tracing::info!(topic = %name, configs = ?configs, "altering topic configs");
        self.change(Command::SetTopicConfigs {
            name: name.to_string(),
            id: info.id,
            configs,
        })
        .await?;
        Ok(())
    }

    /// A producer id never handed out before (InitProducerId). Ids are reserved in
    /// the metadata a block at a time, so a restart never repeats one.
    pub async fn new_producer_id(&self) -> Result<i64, KafkaError> {
        let poisoned = || KafkaError::new(code::UNKNOWN_SERVER_ERROR, "producer id lock poisoned");
        let take = |ids: &mut (i64, i64)| {
            (ids.0 < ids.1).then(|| {
                ids.0 += 1;
                ids.0 - 1
            })
        };
        if let Some(id) = take(&mut *self.producer_ids.lock().map_err(|_| poisoned())?) {
            return Ok(id);
        }
        let _guard = self.reserving.lock().await;
        if let Some(id) = take(&mut *self.producer_ids.lock().map_err(|_| poisoned())?) {
            return Ok(id);
        }
        let out = self
            .meta
            .propose(Command::ReserveProducerIds {
                count: PRODUCER_ID_BLOCK,
            })
            .await
            .map_err(proposal_error)?;
        let Ok(Applied::ProducerIds { first }) = out.result else {
            return Err(KafkaError::new(
                code::UNKNOWN_SERVER_ERROR,
                "the metadata store reserved no producer ids",
            ));
        };
        let mut ids = self.producer_ids.lock().map_err(|_| poisoned())?;
        *ids = (first + 1, first + PRODUCER_ID_BLOCK);
        Ok(first)
    }
}

/// A topic as this node last applied it.
struct Hosted {
    record: Arc<TopicRecord>,
    info: Arc<TopicInfo>,
}

/// Brings the shards' partitions to what committed images say, one image at a
/// time (level-triggered: it compares with what the shards host, so a failed
/// pass is simply repeated).
struct Reconciler {
    router: ShardRouter,
    /// The config file's topic defaults.
    static_defaults: LogConfig,
    /// The same with the image's dynamic broker configs applied.
    defaults: LogConfig,
    view: Arc<ArcSwap<TopicsImage>>,
    /// Topics as applied, by name.
    hosted: HashMap<String, Hosted>,
    /// Which topic id the partition directories of each name belong to.
    owners: Owners,
    node_id: i32,
    /// In a cluster only the partitions placed on this node are hosted; the
    /// single-node store hosts every partition and leads them all.
    cluster: bool,
    /// This broker as clients reach it (the single-node store's only broker).
    this: BrokerRecord,
}

/// The topic id each name's partition directories belong to, kept durably in
/// `metadata/owners.json` by the reconciler: a topic deleted and created again
/// under the same name, with a crash before the old directories went, must not
/// adopt the old data. An id is recorded before its partitions are created and
/// removed after they are deleted, so the file never names the wrong owner.
struct Owners {
    path: PathBuf,
    ids: BTreeMap<String, Uuid>,
}

/// The file of [`Owners`] under the metadata directory.
const OWNERS_FILE: &str = "owners.json";

impl Owners {
    /// Loads the file; without one (the first start of this version), the
    /// directories on disk belong to the image's topics of their names.
    fn load(dir: &Path, image: &MetadataImage, router: &ShardRouter) -> Result<Owners, KafkaError> {
        let path = dir.join(OWNERS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let ids = serde_json::from_slice(&bytes).map_err(|e| {
                    storage(format!(
                        "{} is damaged: {e}; remove it to trust the directories' names",
                        path.display()
                    ))
                })?;
                Ok(Owners { path, ids })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let ids = hosted_partitions(router)
                    .keys()
                    .filter_map(|n| image.topic(n).map(|t| (n.to_string(), t.id)))
                    .collect();
                let owners = Owners { path, ids };
                owners.save().map_err(storage)?;
                Ok(owners)
            }
            Err(e) => Err(storage(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// The directories of `name` belong to another topic than `id`.
    fn other_than(&self, name: &str, id: Uuid) -> bool {
        self.ids.get(name).is_some_and(|o| *o != id)
    }

    fn set(&mut self, name: &str, id: Option<Uuid>) -> Result<(), String> {
        let before = self.ids.get(name).copied();
        if before == id {
            return Ok(());
        }
        match id {
            Some(id) => self.ids.insert(name.to_string(), id),
            None => self.ids.remove(name),
        };
        self.save()
    }

    /// Replaces the file (temporary file, fsync, rename, directory fsync). On the
    /// reconciler's thread or before the shards serve.
    fn save(&self) -> Result<(), String> {
        let bytes = serde_json::to_vec_pretty(&self.ids).map_err(|e| e.to_string())?;
        sluice_raft::replace_file(&self.path, &bytes)
            .map_err(|e| format!("cannot replace {}: {e}", self.path.display()))
    }
}

impl Reconciler {
    fn run(mut self, rx: &mpsc::Receiver<Arc<MetadataImage>>, progress: &Mutex<Progress>) {
        let mut pending: Option<Arc<MetadataImage>> = None;
        loop {
            let next = if pending.is_some() {
                rx.recv_timeout(RECONCILE_RETRY)
            } else {
                rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
            };
            match next {
                Ok(image) => pending = Some(image),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            // Only the newest image matters; the ones before it are covered.
            while let Ok(image) = rx.try_recv() {
                pending = Some(image);
            }
            let Some(image) = pending.clone() else {
                continue;
            };
            let r = futures::executor::block_on(self.reconcile(&image));
            if let Err(e) = &r {
                tracing::error!(version = image.version, error = %e,
                    "could not apply the metadata; trying again");
            } else {
                pending = None;
            }
            if let Ok(mut p) = progress.lock() {
                p.finish(image.version, &r);
            }
        }
    }

    fn publish(&self, image: &MetadataImage) {
        let topics = self.hosted.values().map(|h| h.info.clone()).collect();
        let brokers = if self.cluster {
            image.brokers.values().cloned().collect()
        } else {
            vec![self.this.clone()]
        };
        self.view.store(Arc::new(TopicsImage::from_topics(
            image,
            brokers,
            self.defaults.clone(),
            topics,
        )));
    }

    /// A topic's partitions as handlers see them: the image's placement in a
    /// cluster; this node leading every partition for the single-node store.
    fn placement(&self, record: &TopicRecord) -> Arc<[PartitionRecord]> {
        (0..record.partitions)
            .map(|p| {
                let placed = usize::try_from(p)
                    .ok()
                    .and_then(|p| record.placement.get(p));
                match placed {
                    Some(r) if self.cluster => r.clone(),
                    // Not placed yet: offline until a broker takes it.
                    None if self.cluster => PartitionRecord {
                        replicas: Vec::new(),
                        leader: -1,
                        leader_epoch: 0,
                        isr: Vec::new(),
                        partition_epoch: 0,
                    },
                    _ => PartitionRecord {
                        replicas: vec![self.node_id],
                        leader: self.node_id,
                        leader_epoch: 0,
                        isr: vec![self.node_id],
                        partition_epoch: 0,
                    },
                }
            })
            .collect()
    }

    /// Whether this node holds a replica of `partition`.
    fn placed_here(&self, record: &TopicRecord, partition: i32) -> bool {
        !self.cluster
            || usize::try_from(partition)
                .ok()
                .and_then(|p| record.placement.get(p))
                .is_some_and(|r| r.replicas.contains(&self.node_id))
    }

    /// The topic defaults `image`'s dynamic broker configs give this node.
    fn dynamic_defaults(&self, image: &MetadataImage) -> LogConfig {
        let empty = BTreeMap::new();
        let layers = [
            image.broker_configs.get("").unwrap_or(&empty),
            image
                .broker_configs
                .get(&self.node_id.to_string())
                .unwrap_or(&empty),
        ];
        topic_config::dynamic_defaults(&self.static_defaults, &layers).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "dynamic broker configs refused; the config file's apply");
            self.static_defaults.clone()
        })
    }

    async fn reconcile(&mut self, image: &MetadataImage) -> Result<(), String> {
        // New topic defaults (dynamic broker configs): every topic's settings again.
        let defaults = self.dynamic_defaults(image);
        let force = defaults != self.defaults;
        if force {
            tracing::info!("topic defaults changed by dynamic broker configs");
            self.defaults = defaults;
        }
        let on_disk = hosted_partitions(&self.router);
        // Topics gone, or replaced by a new topic of the same name: out of the view
        // first, then their partitions.
        let gone: Vec<String> = on_disk
            .keys()
            .map(ToString::to_string)
            .chain(self.hosted.keys().cloned())
            .filter(|name| match (image.topic(name), self.hosted.get(name)) {
                (None, _) => true,
                (Some(t), Some(h)) => h.record.id != t.id,
                (Some(t), None) => self.owners.other_than(name, t.id),
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !gone.is_empty() {
            for name in &gone {
                self.hosted.remove(name);
            }
            self.publish(image);
            for name in &gone {
                let tps: Vec<TopicPartition> = on_disk
                    .get(name.as_str())
                    .into_iter()
                    .flatten()
                    .filter_map(|p| TopicPartition::new(name, *p).ok())
                    .collect();
                unassign(&self.router, tps).await;
                for p in on_disk.get(name.as_str()).into_iter().flatten() {
                    let Ok(tp) = TopicPartition::new(name, *p) else {
                        continue;
                    };
                    match self.router.delete_partition(tp).await {
                        Ok(()) | Err(sluice_engine::Error::UnknownPartition(_)) => {}
                        Err(e) => return Err(e.to_string()),
                    }
                }
                self.owners.set(name, None)?;
                tracing::info!(topic = %name, "deleted the partitions of a deleted topic");
            }
        }
        let on_disk = hosted_partitions(&self.router);
        let mut result = Ok(());
        for (name, record) in &image.topics {
            if !force
                && self
                    .hosted
                    .get(name)
                    .is_some_and(|h| Arc::ptr_eq(&h.record, record))
            {
                continue;
            }
            if let Err(e) = self
                .apply_topic(name, record, on_disk.get(name.as_str()), force)
                .await
            {
                result = Err(format!("topic '{name}': {e}"));
            }
        }
        self.publish(image);
        result
    }

    async fn apply_topic(
        &mut self,
        name: &str,
        record: &Arc<TopicRecord>,
        on_disk: Option<&BTreeSet<i32>>,
        defaults_changed: bool,
    ) -> Result<(), String> {
        let configs_changed = defaults_changed
            || self
                .hosted
                .get(name)
                .is_none_or(|h| h.record.configs != record.configs);
        let placement = self.placement(record);
        let info = match self.hosted.get(name) {
            Some(h) if !configs_changed => Arc::new(TopicInfo {
                partitions: record.partitions,
                placement,
                reassigning: record.reassigning.clone(),
                ..(*h.info).clone()
            }),
            _ => {
                let (settings, configs) = stored_settings(&self.defaults, name, &record.configs);
                Arc::new(TopicInfo {
                    name: name.into(),
                    id: record.id,
                    partitions: record.partitions,
                    configs,
                    settings,
                    placement,
                    reassigning: record.reassigning.clone(),
                })
            }
        };
        let missing: Vec<TopicPartition> = (0..record.partitions)
            .filter(|p| self.placed_here(record, *p))
            .filter(|p| !on_disk.is_some_and(|d| d.contains(p)))
            .filter_map(|p| TopicPartition::new(name, p).ok())
            .collect();
        if configs_changed {
            apply_settings(&self.router, &info).await;
        }
        // Recorded before any of its partitions is created.
        self.owners.set(name, Some(record.id))?;
        if !missing.is_empty() {
            if on_disk.is_some() && !self.hosted.contains_key(name) {
                tracing::warn!(topic = %name, partitions = missing.len(),
                    "registered partitions missing on disk; creating them empty");
            }
            let created = self
                .router
                .create_partitions(missing.clone(), Some(info.settings.log.clone()))
                .await;
            for r in created {
                match r {
                    Ok(_) | Err(sluice_engine::Error::PartitionExists(_)) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
        // Every replica here learns its record (role, epochs, ISR).
        let assignments: Vec<Assignment> = (0..record.partitions)
            .filter(|p| self.placed_here(record, *p))
            .filter_map(|p| {
                Some(Assignment {
                    tp: TopicPartition::new(name, p).ok()?,
                    topic_id: record.id,
                    record: info.record(p)?.clone(),
                    min_insync: info.settings.min_insync_replicas,
                })
            })
            .collect();
        assign(&self.router, self.node_id, assignments).await;
        // Replicas moved off this node (a reassignment completed) go.
        if self.cluster {
            let moved: Vec<TopicPartition> = on_disk
                .into_iter()
                .flatten()
                .filter(|p| {
                    usize::try_from(**p)
                        .ok()
                        .and_then(|i| record.placement.get(i))
                        .is_some_and(|r| !r.replicas.contains(&self.node_id))
                })
                .filter_map(|p| TopicPartition::new(name, *p).ok())
                .collect();
            if !moved.is_empty() {
                unassign(&self.router, moved.clone()).await;
                for tp in moved {
                    tracing::info!(partition = %tp, "replica moved to other brokers; deleting it here");
                    match self.router.delete_partition(tp).await {
                        Ok(()) | Err(sluice_engine::Error::UnknownPartition(_)) => {}
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }
        }
        self.hosted.insert(
            name.to_string(),
            Hosted {
                record: record.clone(),
                info,
            },
        );
        Ok(())
    }
}

/// Hands each shard the records of the partitions it hosts (its replica manager
/// changes roles and tells what follows leadership); one hop per shard.
async fn assign(router: &ShardRouter, node_id: i32, assignments: Vec<Assignment>) {
    let mut per_shard: BTreeMap<usize, Vec<Assignment>> = BTreeMap::new();
    for a in assignments {
        if let Some(s) = router.shard_of(&a.tp) {
            per_shard.entry(s).or_default().push(a);
        }
    }
    let jobs: Vec<_> = per_shard
        .into_iter()
        .map(|(s, list)| {
            (s, move |shard: Rc<sluice_engine::Shard>| async move {
                let services = crate::services::ShardServices::of(&shard);
                for a in list {
                    if let Ok(p) = shard.partition(&a.tp) {
                        services.assign(node_id, &a, &p);
                    }
                }
            })
        })
        .collect();
    for r in router.scatter(jobs).await {
        if let Err(e) = r {
            tracing::warn!(error = %e, "a shard did not take a replica assignment");
        }
    }
}

/// Tells the shards owning `tps` that they no longer host them (before the
/// partitions are deleted); one hop per shard.
async fn unassign(router: &ShardRouter, tps: Vec<TopicPartition>) {
    let mut per_shard: BTreeMap<usize, Vec<TopicPartition>> = BTreeMap::new();
    for tp in tps {
        if let Some(s) = router.shard_of(&tp) {
            per_shard.entry(s).or_default().push(tp);
        }
    }
    let jobs: Vec<_> = per_shard
        .into_iter()
        .map(|(s, tps)| {
            (s, move |shard: Rc<sluice_engine::Shard>| async move {
                let services = crate::services::ShardServices::of(&shard);
                for tp in tps {
                    services.unassign(&tp);
                }
            })
        })
        .collect();
    for r in router.scatter(jobs).await {
        if let Err(e) = r {
            tracing::warn!(error = %e, "a shard did not take a partition's removal");
        }
    }
}

/// Pushes a topic's log settings to its partitions, one hop per shard.
async fn apply_settings(router: &ShardRouter, info: &TopicInfo) {
    let mut per_shard: BTreeMap<usize, Vec<TopicPartition>> = BTreeMap::new();
    for p in 0..info.partitions {
        if let Ok(tp) = TopicPartition::new(&info.name, p) {
            if let Some(s) = router.shard_of(&tp) {
                per_shard.entry(s).or_default().push(tp);
            }
        }
    }
    let jobs: Vec<_> = per_shard
        .into_iter()
        .map(|(s, tps)| {
            let log = info.settings.log.clone();
            (s, move |shard: Rc<sluice_engine::Shard>| async move {
                for tp in tps {
                    if let Ok(p) = shard.partition(&tp) {
                        if let Err(e) = p.set_config(log.clone()) {
                            tracing::warn!(partition = %tp, error = %e, "config not applied");
                        }
                    }
                }
            })
        })
        .collect();
    for r in router.scatter(jobs).await {
        if let Err(e) = r {
            tracing::warn!(error = %e, "a shard did not take new topic settings");
        }
    }
}

fn unknown_topic(name: &str) -> KafkaError {
    KafkaError::new(
        code::UNKNOWN_TOPIC_OR_PARTITION,
        format!("topic '{name}' does not exist"),
    )
}

/// A stored topic's settings; overrides this version refuses are dropped with a
/// warning naming them (their defaults apply), so an upgrade never fails to start.
fn stored_settings(
    defaults: &LogConfig,
    topic: &str,
    configs: &BTreeMap<String, String>,
) -> (TopicSettings, BTreeMap<String, String>) {
    let (settings, kept, dropped) = topic_config::settings_of_stored(defaults, configs);
    for e in dropped {
        tracing::warn!(topic, key = %e.key, error = %e,
            "stored topic config refused by this version; its default applies");
    }
    (settings, kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_look_like_kafkas() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(id, new_cluster_id());
    }
}
