//! The commands that change the image, and the one function that applies them.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::image::{MetadataImage, TopicRecord};

/// Most partitions one topic may have.
pub const PARTITIONS_MAX: i32 = 100_000;

/// A change to the metadata. Commands that name a topic carry its id too, so a
/// command meant for a deleted topic never touches a new topic of the same name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Command {
    /// Sets the cluster id; refused once one is set.
    InitCluster {
        cluster_id: String,
    },
    CreateTopic {
        name: String,
        id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
        id: Uuid,
    },
    /// Grows a topic to `total` partitions.
    CreatePartitions {
        name: String,
        id: Uuid,
        total: i32,
    },
    /// Replaces a topic's config overrides.
    SetTopicConfigs {
        name: String,
        id: Uuid,
        configs: BTreeMap<String, String>,
    },
    /// Reserves the next `count` producer ids for the proposer.
    ReserveProducerIds {
        count: i64,
    },
}

/// What an applied command produced, beyond the new image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    Done,
    /// The first id of a reserved producer-id block.
    ProducerIds {
        first: i64,
    },
}

/// Why a command does not fit the image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Refusal {
    #[error("the cluster id is already set")]
    ClusterIdSet,
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("topic '{name}' has {have} partitions; the new count must be larger and at most {PARTITIONS_MAX}, not {asked}")]
    PartitionCount { name: String, have: i32, asked: i32 },
    #[error("{0} partitions: a topic has 1 to {PARTITIONS_MAX}")]
    InvalidPartitions(i32),
    #[error("a producer-id block of {0} ids")]
    InvalidBlock(i64),
}

/// Applies `cmd` as entry `index`. The image's version becomes `index` whether or
/// not the command is refused (a refused entry still takes its place in the log),
/// and a refused command changes nothing else. Deterministic: the same image and
/// command give the same result on every node.
pub fn apply(image: &mut MetadataImage, index: u64, cmd: &Command) -> Result<Applied, Refusal> {
    image.version = index;
    let topic =
        |image: &MetadataImage, name: &str, id: &Uuid| -> Result<Arc<TopicRecord>, Refusal> {
            image
                .topics
                .get(name)
                .filter(|t| t.id == *id)
                .cloned()
                .ok_or_else(|| Refusal::UnknownTopic(name.to_string()))
        };
    match cmd {
        Command::InitCluster { cluster_id } => {
            if !image.cluster_id.is_empty() {
                return Err(Refusal::ClusterIdSet);
            }
            image.cluster_id.clone_from(cluster_id);
        }
        Command::CreateTopic {
            name,
            id,
            partitions,
            configs,
        } => {
            if image.topics.contains_key(name) {
                return Err(Refusal::TopicExists(name.clone()));
            }
            if !(1..=PARTITIONS_MAX).contains(partitions) {
                return Err(Refusal::InvalidPartitions(*partitions));
            }
            image.topics.insert(
                name.clone(),
                Arc::new(TopicRecord {
                    id: *id,
                    partitions: *partitions,
                    configs: configs.clone(),
                }),
            );
        }
        Command::DeleteTopic { name, id } => {
            topic(image, name, id)?;
            image.topics.remove(name);
        }
        Command::CreatePartitions { name, id, total } => {
            let t = topic(image, name, id)?;
            if *total <= t.partitions || *total > PARTITIONS_MAX {
                return Err(Refusal::PartitionCount {
                    name: name.clone(),
                    have: t.partitions,
                    asked: *total,
                });
            }
            let next = TopicRecord {
                partitions: *total,
                ..(*t).clone()
            };
            image.topics.insert(name.clone(), Arc::new(next));
        }
        Command::SetTopicConfigs { name, id, configs } => {
            let t = topic(image, name, id)?;
            let next = TopicRecord {
                configs: configs.clone(),
                ..(*t).clone()
            };
            image.topics.insert(name.clone(), Arc::new(next));
        }
        Command::ReserveProducerIds { count } => {
            if *count <= 0 || image.producer_ids_reserved.checked_add(*count).is_none() {
                return Err(Refusal::InvalidBlock(*count));
            }
            let first = image.producer_ids_reserved;
            image.producer_ids_reserved += count;
            return Ok(Applied::ProducerIds { first });
        }
    }
    Ok(Applied::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(name: &str, id: u128, partitions: i32) -> Command {
        Command::CreateTopic {
            name: name.into(),
            id: Uuid::from_u128(id),
            partitions,
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn a_refused_command_changes_only_the_version() {
        let mut image = MetadataImage::default();
        assert_eq!(apply(&mut image, 1, &create("a", 1, 3)), Ok(Applied::Done));
        let before = image.clone();
        let refused = [
            create("a", 2, 1),
            create("b", 3, 0),
            Command::DeleteTopic {
                name: "a".into(),
                id: Uuid::from_u128(9),
            },
            Command::CreatePartitions {
                name: "a".into(),
                id: Uuid::from_u128(1),
                total: 3,
            },
            Command::ReserveProducerIds { count: 0 },
        ];
        for (i, cmd) in refused.iter().enumerate() {
            let index = 2 + i as u64;
            assert!(apply(&mut image, index, cmd).is_err(), "{cmd:?}");
            assert_eq!(image.version, index);
            assert_eq!(image.topics, before.topics);
            assert_eq!(image.producer_ids_reserved, before.producer_ids_reserved);
        }
    }

    #[test]
    fn the_same_commands_give_the_same_image() {
        let cmds = [
            Command::InitCluster {
                cluster_id: "c".into(),
            },
            create("a", 1, 3),
            create("b", 2, 1),
            Command::CreatePartitions {
                name: "a".into(),
                id: Uuid::from_u128(1),
                total: 5,
            },
            Command::ReserveProducerIds { count: 1000 },
            Command::SetTopicConfigs {
                name: "b".into(),
                id: Uuid::from_u128(2),
                configs: [("retention.ms".to_string(), "1".to_string())].into(),
            },
            Command::DeleteTopic {
                name: "a".into(),
                id: Uuid::from_u128(1),
            },
            Command::ReserveProducerIds { count: 1000 },
        ];
        let run = || {
            let mut image = MetadataImage::default();
            let mut out = Vec::new();
            for (i, c) in cmds.iter().enumerate() {
                out.push(apply(&mut image, i as u64 + 1, c));
            }
            (image, out)
        };
        let (a, ra) = run();
        let (b, rb) = run();
        assert_eq!(a, b);
        assert_eq!(ra, rb);
        assert_eq!(a.version, 8);
        assert_eq!(a.producer_ids_reserved, 2000);
        assert_eq!(ra[7], Ok(Applied::ProducerIds { first: 1000 }));
        assert!(a.topic("a").is_none());
        assert_eq!(a.topic("b").map(|t| t.configs.len()), Some(1));
    }
}
