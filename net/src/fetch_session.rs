//! Fetch sessions (KIP-227), kept per shard: a connection stays on its shard, so
//! the sessions a client uses live where its requests arrive. A client that
//! reconnects onto another shard gets `FETCH_SESSION_ID_NOT_FOUND` and starts a new
//! session, as KIP-227 expects after any session loss.
//!
//! - `session_id` 0, epoch -1: a full fetch without a session.
//! - `session_id` 0, epoch 0: a full fetch that opens a session; the answer carries
//!   its id.
//! - `session_id` N, epoch -1: closes session N; a full fetch without a session.
//! - `session_id` N, epoch E > 0: an incremental fetch. E must be the session's next
//!   epoch. The request's partitions are added or updated, `forgotten_topics_data`
//!   removed; every partition of the session is read, and the answer holds only the
//!   ones with records, an error, or offsets that changed since the last answer.
//!   Partitions that returned records move to the end of the session's order, so a
//!   busy partition cannot take every answer's `max_bytes` (as in Kafka).
//!
//! At most [`SESSIONS_PER_SHARD`] sessions live on a shard; opening one more evicts the
//! least recently used.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

use kafka_protocol::messages::{FetchRequest, TopicName};
use uuid::Uuid;

use crate::handlers::fetch::{answered_offsets, Results};
use crate::kafka_error::{self as code, KafkaError};

/// Sessions one shard keeps.
pub const SESSIONS_PER_SHARD: usize = 1000;

/// One partition a fetch reads.
#[derive(Debug, Clone)]
pub struct Asked {
    pub topic: TopicName,
    pub topic_id: Uuid,
    pub partition: i32,
    pub fetch_offset: i64,
    pub max_bytes: i32,
    /// The leader epoch the client knows (-1: none; checked against the leader's).
    pub current_leader_epoch: i32,
}

impl Asked {
    fn same_partition(&self, topic: &TopicName, topic_id: &Uuid, partition: i32) -> bool {
        self.partition == partition && self.topic == *topic && self.topic_id == *topic_id
    }
}

/// What a request reads and how it is answered.
#[derive(Debug)]
pub struct Plan {
    /// The session id to put in the answer (0: none).
    pub session_id: i32,
    pub asked: Vec<Asked>,
    /// The session whose partitions `asked` are, if any.
    session: Option<i32>,
    incremental: bool,
}

struct Part {
    asked: Asked,
    /// `(high watermark, log start)` last answered; `None`: never answered.
    sent: Option<(i64, i64)>,
    /// The last answer carried records of it.
    returned_records: bool,
}

struct Session {
    /// The epoch the next incremental request must carry.
    next_epoch: i32,
    parts: Vec<Part>,
    used: Instant,
}

#[derive(Default)]
pub struct Sessions {
    next_id: i32,
    by_id: HashMap<i32, Session>,
}

fn asked_in(req: &FetchRequest) -> Vec<Asked> {
    req.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Asked {
                topic: t.topic.clone(),
                topic_id: t.topic_id,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
            })
        })
        .collect()
}

/// Works out what `req` reads, opening, closing or updating its session.
pub fn plan(sessions: &RefCell<Sessions>, req: &FetchRequest, v: i16) -> Result<Plan, KafkaError> {
    let full = |session_id, session| Plan {
        session_id,
        asked: asked_in(req),
        session,
        incremental: false,
    };
    // Fetch v4-v6 have no sessions.
    if v < 7 {
        return Ok(full(0, None));
    }
    {
        let mut s = sessions.borrow_mut();
        match (req.session_id, req.session_epoch) {
            (0, -1) => Ok(full(0, None)),
            (0, 0) => {
                let id = s.open(asked_in(req));
                Ok(full(id, Some(id)))
            }
            (0, e) => Err(KafkaError::new(
                code::INVALID_FETCH_SESSION_EPOCH,
                format!("epoch {e} without a session"),
            )),
            (id, -1) => {
                s.by_id.remove(&id);
                Ok(full(0, None))
            }
            (id, epoch) => {
                let session = s.by_id.get_mut(&id).ok_or_else(|| {
                    KafkaError::new(code::FETCH_SESSION_ID_NOT_FOUND, format!("no session {id}"))
                })?;
                if epoch != session.next_epoch {
                    return Err(KafkaError::new(
                        code::INVALID_FETCH_SESSION_EPOCH,
                        format!(
                            "session {id} expects epoch {}, not {epoch}",
                            session.next_epoch
                        ),
                    ));
                }
                session.next_epoch = session.next_epoch.checked_add(1).unwrap_or(1);
                session.used = Instant::now();
                for f in &req.forgotten_topics_data {
                    session.parts.retain(|p| {
                        !(f.partitions.contains(&p.asked.partition)
                            && p.asked.topic == f.topic
                            && p.asked.topic_id == f.topic_id)
                    });
                }
                for a in asked_in(req) {
                    match session
                        .parts
                        .iter_mut()
                        .find(|p| p.asked.same_partition(&a.topic, &a.topic_id, a.partition))
                    {
                        Some(p) => p.asked = a,
                        None => session.parts.push(Part {
                            asked: a,
                            sent: None,
                            returned_records: false,
                        }),
                    }
                }
                Ok(Plan {
                    session_id: id,
                    asked: session.parts.iter().map(|p| p.asked.clone()).collect(),
                    session: Some(id),
                    incremental: true,
                })
            }
        }
    }
}

impl Sessions {
    fn open(&mut self, asked: Vec<Asked>) -> i32 {
        if self.by_id.len() >= SESSIONS_PER_SHARD {
            if let Some(oldest) = self
                .by_id
                .iter()
                .min_by_key(|(_, s)| s.used)
                .map(|(id, _)| *id)
            {
                self.by_id.remove(&oldest);
            }
        }
        // Ids are positive and not reused while the session lives.
        loop {
            self.next_id = if self.next_id >= i32::MAX - 1 {
                1
            } else {
                self.next_id + 1
            };
            if !self.by_id.contains_key(&self.next_id) {
                break;
            }
        }
        self.by_id.insert(
            self.next_id,
            Session {
                next_epoch: 1,
                parts: asked
                    .into_iter()
                    .map(|asked| Part {
                        asked,
                        sent: None,
                        returned_records: false,
                    })
                    .collect(),
                used: Instant::now(),
            },
        );
        self.next_id
    }
}

/// Records what the answer tells the client and says which asked partitions the
/// answer includes (all for a full fetch; for an incremental one, those with
/// records, an error, or offsets changed since the last answer).
pub(crate) fn record_sent(
    sessions: &RefCell<Sessions>,
    plan: &Plan,
    results: &Results,
) -> Vec<bool> {
    let Some(id) = plan.session else {
        return vec![true; plan.asked.len()];
    };
    {
        let mut s = sessions.borrow_mut();
        let Some(session) = s.by_id.get_mut(&id) else {
            return vec![true; plan.asked.len()];
        };
        for p in &mut session.parts {
            p.returned_records = false;
        }
        let include = plan
            .asked
            .iter()
            .zip(results)
            .map(|(a, r)| {
                let part = session
                    .parts
                    .iter_mut()
                    .find(|p| p.asked.same_partition(&a.topic, &a.topic_id, a.partition));
                let now = answered_offsets(r.as_ref());
                let changed = match (&part, now) {
                    (Some(p), Some((hw, start, has_data))) => {
                        has_data || p.sent != Some((hw, start))
                    }
                    // Errors and partitions new to the session are always answered.
                    _ => true,
                };
                if let (Some(p), Some((hw, start, has_data))) = (part, now) {
                    p.sent = Some((hw, start));
                    p.returned_records = has_data;
                }
                !plan.incremental || changed
            })
            .collect();
        // As Kafka's sessions do: partitions that returned records go to the end,
        // so when max_bytes binds, the next fetch starts with the others.
        session.parts.sort_by_key(|p| p.returned_records);
        include
    }
}
