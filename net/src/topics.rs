//! The topic registry of a single node: names, topic ids, partition counts and config
//! overrides, kept in `<data_dir>/topics.json` and served to every shard as an
//! immutable image.
//!
//! Readers (Metadata, Produce, Fetch on any shard) load the current image without a
//! lock. Changes (create, delete, add partitions, alter configs) are serialised by
//! one async lock, change the partitions through the shard router, then write the
//! file (write a temporary file, fsync, rename, fsync the directory) and install the
//! next image. The metadata quorum replaces this file when clustering arrives.
//!
//! Crash order: a topic is written to the file after its partitions exist, and a
//! deleted topic is first marked `deleting` in the file. On start the file and the
//! partition directories are reconciled: partitions missing from disk are created
//! empty, directories of topics the file does not know are adopted, and deletions
//! that were under way are finished.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use sluice_engine::{LogConfig, ShardRouter, TopicPartition};
use uuid::Uuid;

use crate::kafka_error::{self as code, KafkaError};
use crate::topic_config::{self, TopicSettings};

/// The registry file in the data directory.
pub const TOPICS_FILE: &str = "topics.json";

/// Most partitions one topic may have.
pub const PARTITIONS_MAX: i32 = 100_000;

/// One topic as handlers see it.
#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub name: Arc<str>,
    pub id: Uuid,
    pub partitions: i32,
    /// The overrides as given; `settings` is what they amount to.
    pub configs: BTreeMap<String, String>,
    pub settings: TopicSettings,
}

/// One version of the registry.
#[derive(Debug, Default)]
pub struct TopicsImage {
    pub cluster_id: String,
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

    fn with(&self, changed: Vec<Arc<TopicInfo>>, removed: &[Arc<str>]) -> TopicsImage {
        let mut by_name = self.by_name.clone();
        for name in removed {
            by_name.remove(name);
        }
        for t in changed {
            by_name.insert(t.name.clone(), t);
        }
        let by_id = by_name.values().map(|t| (t.id, t.name.clone())).collect();
        TopicsImage {
            cluster_id: self.cluster_id.clone(),
            by_name,
            by_id,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTopic {
    id: Uuid,
    partitions: i32,
    #[serde(default)]
    configs: BTreeMap<String, String>,
    #[serde(default)]
    deleting: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileContents {
    version: u32,
    cluster_id: String,
    /// Producer ids below this may have been handed out.
    #[serde(default)]
    producer_ids_reserved: i64,
    topics: BTreeMap<String, FileTopic>,
}

/// Producer ids are reserved in the file this many at a time.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// The registry.
pub struct TopicStore {
    path: PathBuf,
    defaults: LogConfig,
    router: ShardRouter,
    image: ArcSwap<TopicsImage>,
    change: futures::lock::Mutex<()>,
    /// The next producer id and the end of the reserved block.
    producer_ids: std::sync::Mutex<(i64, i64)>,
}

impl std::fmt::Debug for TopicStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TopicStore({})", self.path.display())
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

impl TopicStore {
    /// Opens the registry of `data_dir` (creating it on first start) and reconciles
    /// it with the partitions the engine found. Runs before the listeners open.
    pub async fn open(
        data_dir: &Path,
        defaults: LogConfig,
        router: ShardRouter,
    ) -> Result<TopicStore, KafkaError> {
        let path = data_dir.join(TOPICS_FILE);
        let mut contents = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<FileContents>(&bytes).map_err(|e| {
                KafkaError::new(
                    code::KAFKA_STORAGE_ERROR,
                    format!("{} is not a valid topic registry: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileContents {
                version: 1,
                cluster_id: new_cluster_id(),
                producer_ids_reserved: 0,
                topics: BTreeMap::new(),
            },
            Err(e) => {
                return Err(KafkaError::new(
                    code::KAFKA_STORAGE_ERROR,
                    format!("cannot read {}: {e}", path.display()),
                ))
            }
        };
        let store = TopicStore {
            path,
            defaults,
            router,
            image: ArcSwap::from_pointee(TopicsImage::default()),
            change: futures::lock::Mutex::new(()),
            // Ids reserved before this start are never handed out again.
            producer_ids: std::sync::Mutex::new((
                contents.producer_ids_reserved,
                contents.producer_ids_reserved,
            )),
        };
        store.reconcile(&mut contents).await?;
        store.write_file(&contents)?;
        let mut topics = Vec::new();
        for (name, t) in &contents.topics {
            let (settings, configs) = stored_settings(&store.defaults, name, &t.configs);
            topics.push(Arc::new(TopicInfo {
                name: name.as_str().into(),
                id: t.id,
                partitions: t.partitions,
                configs,
                settings,
            }));
        }
        for t in &topics {
            store.apply_settings(t).await;
        }
        let image = TopicsImage {
            cluster_id: contents.cluster_id.clone(),
            ..TopicsImage::default()
        }
        .with(topics, &[]);
        store.image.store(Arc::new(image));
        Ok(store)
    }

    /// Brings the file and the partition directories into agreement.
    async fn reconcile(&self, contents: &mut FileContents) -> Result<(), KafkaError> {
        let table = self.router.table();
        let mut on_disk: BTreeMap<Arc<str>, i32> = BTreeMap::new();
        for tp in table.partitions() {
            let n = on_disk.entry(tp.topic.clone()).or_insert(0);
            *n = (*n).max(tp.partition + 1);
        }
        let deleting: Vec<String> = contents
            .topics
            .iter()
            .filter(|(_, t)| t.deleting)
            .map(|(n, _)| n.clone())
            .collect();
        for name in deleting {
            tracing::info!(topic = %name, "finishing the deletion of a topic");
            if let Some(n) = on_disk.remove(name.as_str()) {
                self.delete_partitions(&name, 0..n).await?;
            }
            contents.topics.remove(&name);
        }
        for (name, n) in &on_disk {
            if let Some(t) = contents.topics.get_mut(name.as_ref()) {
                if *n > t.partitions {
                    tracing::warn!(topic = %name, registry = t.partitions, on_disk = n,
                        "more partitions on disk than registered; keeping them");
                    t.partitions = *n;
                }
            } else {
                tracing::warn!(topic = %name, partitions = n,
                    "adopting partition directories of a topic the registry does not list");
                contents.topics.insert(
                    name.to_string(),
                    FileTopic {
                        id: new_uuid(),
                        partitions: *n,
                        configs: BTreeMap::new(),
                        deleting: false,
                    },
                );
            }
        }
        for (name, t) in &contents.topics {
            let missing: Vec<TopicPartition> = (0..t.partitions)
                .filter_map(|p| TopicPartition::new(name, p).ok())
                .filter(|tp| table.shard_of(tp).is_none())
                .collect();
            if !missing.is_empty() {
                tracing::warn!(topic = %name, partitions = missing.len(),
                    "registered partitions missing on disk; creating them empty");
                let (settings, _) = stored_settings(&self.defaults, name, &t.configs);
                self.create_partitions(missing, &settings.log).await?;
            }
        }
        Ok(())
    }

    pub fn image(&self) -> Arc<TopicsImage> {
        self.image.load_full()
    }

    /// The data directory the registry lives in.
    pub fn data_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    pub fn defaults(&self) -> &LogConfig {
        &self.defaults
    }

    /// Creates a topic. With `validate_only` only the checks run.
    pub async fn create(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<TopicInfo>, KafkaError> {
        TopicPartition::new(name, 0)
            .map_err(|e| KafkaError::new(code::INVALID_TOPIC_EXCEPTION, e.to_string()))?;
        if !(1..=PARTITIONS_MAX).contains(&partitions) {
            return Err(KafkaError::new(
                code::INVALID_PARTITIONS,
                format!("{partitions} partitions: a topic has 1 to {PARTITIONS_MAX}"),
            ));
        }
        let settings = topic_config::settings(&self.defaults, &configs)
            .map_err(|e| KafkaError::new(code::INVALID_CONFIG, e.to_string()))?;
        let _guard = self.change.lock().await;
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
        });
        if validate_only {
            return Ok(info);
        }
        let tps: Vec<TopicPartition> = (0..partitions)
            .filter_map(|p| TopicPartition::new(name, p).ok())
            .collect();
        if let Err(e) = self.create_partitions(tps, &info.settings.log).await {
            let _ = self.delete_partitions(name, 0..partitions).await;
            return Err(e);
        }
        self.commit(vec![info.clone()], &[], None)?;
        tracing::info!(topic = %name, partitions, "created topic");
        Ok(info)
    }

    /// Deletes a topic and its data.
    pub async fn delete(&self, name: &str) -> Result<(), KafkaError> {
        let _guard = self.change.lock().await;
        let Some(info) = self.image().get(name).cloned() else {
            return Err(unknown_topic(name));
        };
        self.commit(Vec::new(), &[], Some(&info.name))?;
        self.delete_partitions(name, 0..info.partitions).await?;
        self.commit(Vec::new(), std::slice::from_ref(&info.name), None)?;
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
        let _guard = self.change.lock().await;
        let Some(info) = self.image().get(name).cloned() else {
            return Err(unknown_topic(name));
        };
        if total <= info.partitions || total > PARTITIONS_MAX {
            return Err(KafkaError::new(
                code::INVALID_PARTITIONS,
                format!(
                    "topic '{name}' has {} partitions; the new count must be larger and at most {PARTITIONS_MAX}, not {total}",
                    info.partitions
                ),
            ));
        }
        if validate_only {
            return Ok(());
        }
        let tps: Vec<TopicPartition> = (info.partitions..total)
            .filter_map(|p| TopicPartition::new(name, p).ok())
            .collect();
        self.create_partitions(tps, &info.settings.log).await?;
        let next = Arc::new(TopicInfo {
            partitions: total,
            ..(*info).clone()
        });
        self.commit(vec![next], &[], None)?;
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
        let settings = topic_config::settings(&self.defaults, &configs)
            .map_err(|e| KafkaError::new(code::INVALID_CONFIG, e.to_string()))?;
        let _guard = self.change.lock().await;
        let Some(info) = self.image().get(name).cloned() else {
            return Err(unknown_topic(name));
        };
        if validate_only {
            return Ok(());
        }
        let next = Arc::new(TopicInfo {
            configs,
            settings,
            ..(*info).clone()
        });
        self.commit(vec![next.clone()], &[], None)?;
        self.apply_settings(&next).await;
        tracing::info!(topic = %name, configs = ?next.configs, "altered topic configs");
        Ok(())
    }

    fn producer_ids_reserved(&self) -> i64 {
        self.producer_ids.lock().map_or(0, |p| p.1)
    }

    /// A producer id never handed out before (InitProducerId). Ids are reserved in
    /// the file a block at a time, so a restart never repeats one.
    pub async fn new_producer_id(&self) -> Result<i64, KafkaError> {
        let poisoned = || KafkaError::new(code::UNKNOWN_SERVER_ERROR, "producer id lock poisoned");
        {
            let mut ids = self.producer_ids.lock().map_err(|_| poisoned())?;
            if ids.0 < ids.1 {
                ids.0 += 1;
                return Ok(ids.0 - 1);
            }
        }
        let _guard = self.change.lock().await;
        {
            let mut ids = self.producer_ids.lock().map_err(|_| poisoned())?;
            if ids.0 >= ids.1 {
                ids.1 = ids.0 + PRODUCER_ID_BLOCK;
            }
        }
        self.commit(Vec::new(), &[], None)?;
        let mut ids = self.producer_ids.lock().map_err(|_| poisoned())?;
        ids.0 += 1;
        Ok(ids.0 - 1)
    }

    /// Writes the file with `changed` added/replaced, `removed` gone and `deleting`
    /// marked, then installs the image.
    fn commit(
        &self,
        changed: Vec<Arc<TopicInfo>>,
        removed: &[Arc<str>],
        deleting: Option<&Arc<str>>,
    ) -> Result<(), KafkaError> {
        let next = self.image().with(changed, removed);
        let contents = FileContents {
            version: 1,
            cluster_id: next.cluster_id.clone(),
            producer_ids_reserved: self.producer_ids_reserved(),
            topics: next
                .topics()
                .map(|t| {
                    (
                        t.name.to_string(),
                        FileTopic {
                            id: t.id,
                            partitions: t.partitions,
                            configs: t.configs.clone(),
                            deleting: deleting.is_some_and(|d| *d == t.name),
                        },
                    )
                })
                .collect(),
        };
        self.write_file(&contents)?;
        // A topic being deleted is already gone for clients.
        let next = match deleting {
            Some(d) => next.with(Vec::new(), std::slice::from_ref(d)),
            None => next,
        };
        self.image.store(Arc::new(next));
        Ok(())
    }

    /// Replaces the file atomically and durably. Small and rare: done inline.
    fn write_file(&self, contents: &FileContents) -> Result<(), KafkaError> {
        let storage = |what: &str, e: &dyn std::fmt::Display| {
            KafkaError::new(
                code::KAFKA_STORAGE_ERROR,
                format!("cannot {what} {}: {e}", self.path.display()),
            )
        };
        let json = serde_json::to_vec_pretty(contents).map_err(|e| storage("encode", &e))?;
        let tmp = self.path.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(|e| storage("write", &e))?;
            f.write_all(&json).map_err(|e| storage("write", &e))?;
            f.sync_all().map_err(|e| storage("sync", &e))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| storage("rename", &e))?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| storage("sync the directory of", &e))?;
        }
        Ok(())
    }

    async fn create_partitions(
        &self,
        tps: Vec<TopicPartition>,
        log: &LogConfig,
    ) -> Result<(), KafkaError> {
        for r in self.router.create_partitions(tps, Some(log.clone())).await {
            match r {
                Ok(_) | Err(sluice_engine::Error::PartitionExists(_)) => {}
                Err(e) => return Err(KafkaError::new(e.kafka_code(), e.to_string())),
            }
        }
        Ok(())
    }

    async fn delete_partitions(
        &self,
        name: &str,
        range: std::ops::Range<i32>,
    ) -> Result<(), KafkaError> {
        for p in range {
            let Ok(tp) = TopicPartition::new(name, p) else {
                continue;
            };
            match self.router.delete_partition(tp).await {
                Ok(()) | Err(sluice_engine::Error::UnknownPartition(_)) => {}
                Err(e) => return Err(KafkaError::new(e.kafka_code(), e.to_string())),
            }
        }
        Ok(())
    }

    /// Pushes a topic's log settings to its partitions, one hop per shard.
    async fn apply_settings(&self, info: &TopicInfo) {
        let mut per_shard: BTreeMap<usize, Vec<TopicPartition>> = BTreeMap::new();
        for p in 0..info.partitions {
            if let Ok(tp) = TopicPartition::new(&info.name, p) {
                if let Some(s) = self.router.shard_of(&tp) {
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
        for r in self.router.scatter(jobs).await {
            if let Err(e) = r {
                tracing::warn!(error = %e, "a shard did not take new topic settings");
            }
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
