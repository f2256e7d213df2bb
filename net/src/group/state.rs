//! One consumer group under Kafka's classic protocol, as a state machine without
//! I/O: the coordinator feeds it requests and the time, stores what it asks to be
//! stored, and tells it when that is done.
//!
//! States: `Empty` (no members; offsets may remain), `PreparingRebalance` (members
//! are (re)joining; answers wait until every known member has joined or the
//! rebalance timeout passes), `CompletingRebalance` (a generation exists and the
//! leader's assignment is awaited), `Stable`, and `Dead` (deleted).
//!
//! Member ids are made as Kafka makes them: `client_id-uuid`, or
//! `group_instance_id-uuid` for static members. A JoinGroup v4+ without a member id
//! gets `MEMBER_ID_REQUIRED` and the id to use. A static member that rejoins under
//! a new member id replaces (fences) its old id.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;

use super::records::{GroupValue, MemberValue};
use crate::kafka_error as code;

/// Broker settings that bound groups (Kafka's `group.*` settings).
#[derive(Debug, Clone)]
pub struct GroupLimits {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long a first rebalance waits for
    /// more members.
    pub initial_rebalance_delay: Duration,
    /// `group.max.size`.
    pub max_size: usize,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay: Duration::from_secs(3),
            max_size: usize::MAX,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka's DescribeGroups and ListGroups use.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A JoinGroup for one member.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member first gets `MEMBER_ID_REQUIRED`.
    pub require_known_member_id: bool,
}

/// A member as JoinGroup's answer to the leader lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub error: i16,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only the leader gets the members.
    pub members: Vec<JoinedMember>,
}

impl JoinResponse {
    /// An answer carrying only an error (and the member id, for MEMBER_ID_REQUIRED).
    pub fn error(error: i16, member_id: &str) -> Self {
        JoinResponse {
            error,
            generation: -1,
            protocol_type: None,
            protocol: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// What JoinGroup does: answer now, or once the rebalance completes.
pub enum Join {
    Done(JoinResponse),
    Wait(oneshot::Receiver<JoinResponse>),
}

#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub generation: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// SyncGroup v5+ (checked when present).
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    /// The leader's assignment per member id (others send none).
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub error: i16,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    /// An answer carrying only an error.
    pub fn error(error: i16) -> Self {
        SyncResponse {
            error,
            protocol_type: None,
            protocol: None,
            assignment: Bytes::new(),
        }
    }
}

/// What SyncGroup does.
pub enum Sync {
    Done(SyncResponse),
    Wait(oneshot::Receiver<SyncResponse>),
    /// The leader's assignment arrived: store `value`, then call
    /// [`Group::assignment_stored`] with `generation`; the answer comes on `rx`.
    Store {
        value: GroupValue,
        generation: i32,
        rx: oneshot::Receiver<SyncResponse>,
    },
}

/// Who commits offsets.
#[derive(Debug, Clone)]
pub struct CommitAuth {
    pub generation: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

#[derive(Debug)]
struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_heartbeat: Instant,
    join_waiter: Option<oneshot::Sender<JoinResponse>>,
    sync_waiter: Option<oneshot::Sender<SyncResponse>>,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn same_protocols(&self, other: &[(String, Bytes)]) -> bool {
        self.protocols == other
    }
}

/// One consumer group.
#[derive(Debug)]
pub struct Group {
    pub id: String,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    /// By member id, in join order.
    members: BTreeMap<u64, Member>,
    next_seq: u64,
    /// Member ids handed out with MEMBER_ID_REQUIRED, and when they lapse.
    pending: HashMap<String, Instant>,
    /// Static members: instance id -> member id.
    statics: HashMap<String, String>,
    /// When the current rebalance must end, and (first rebalance) the earliest end.
    rebalance_deadline: Option<Instant>,
    initial_delay_until: Option<Instant>,
    /// When the state last changed (for offsets retention of empty groups).
    pub state_since_ms: i64,
    /// Group metadata changed and should be stored.
    persist: bool,
    /// The assignment awaiting storage: its generation.
    storing: Option<i32>,
}

fn new_member_id(prefix: &str) -> String {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    format!("{prefix}-{id}")
}

fn ms(d: i32) -> Duration {
    Duration::from_millis(u64::try_from(d.max(0)).unwrap_or(0))
}

impl Group {
    pub fn new(id: &str, now_ms: i64) -> Self {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            next_seq: 0,
            pending: HashMap::new(),
            statics: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            state_since_ms: now_ms,
            persist: false,
            storing: None,
        }
    }

    /// A group as stored: members come back without waiters and with a fresh
    /// session, as Kafka does when a coordinator loads a group.
    pub fn from_stored(id: &str, v: &GroupValue, now: Instant, now_ms: i64) -> Self {
        let mut g = Group::new(id, now_ms);
        g.generation = v.generation;
        g.protocol_type = (!v.protocol_type.is_empty()).then(|| v.protocol_type.clone());
        g.protocol.clone_from(&v.protocol);
        g.leader.clone_from(&v.leader);
        if v.current_state_timestamp >= 0 {
            g.state_since_ms = v.current_state_timestamp;
        }
        for m in &v.members {
            let protocols = match &v.protocol {
                Some(p) => vec![(p.clone(), m.subscription.clone())],
                None => Vec::new(),
            };
            g.add_member(Member {
                id: m.member_id.clone(),
                instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout: ms(m.session_timeout_ms),
                rebalance_timeout: ms(m.rebalance_timeout_ms),
                protocol_type: v.protocol_type.clone(),
                protocols,
                assignment: m.assignment.clone(),
                last_heartbeat: now,
                join_waiter: None,
                sync_waiter: None,
            });
        }
        g.state = if g.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        g
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// (member id, instance id, client id, client host, metadata, assignment).
    pub fn describe_members(&self) -> Vec<(String, Option<String>, String, String, Bytes, Bytes)> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| {
                (
                    m.id.clone(),
                    m.instance_id.clone(),
                    m.client_id.clone(),
                    m.client_host.clone(),
                    m.metadata_for(&protocol),
                    m.assignment.clone(),
                )
            })
            .collect()
    }

    /// The topics the current members' chosen protocol metadata subscribes to, if
    /// the group uses the consumer protocol.
    pub fn subscribed_topics(&self) -> Option<Vec<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.clone()?;
        let mut out = Vec::new();
        for m in self.members.values() {
            out.extend(subscription_topics(&m.metadata_for(&protocol))?);
        }
        out.sort();
        out.dedup();
        Some(out)
    }

    /// Takes the request to store the group's metadata, if it changed.
    pub fn take_persist(&mut self) -> Option<GroupValue> {
        if !std::mem::take(&mut self.persist) {
            return None;
        }
        Some(self.value())
    }

    /// The group's metadata as stored.
    pub fn value(&self) -> GroupValue {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp: self.state_since_ms,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: i32::try_from(m.rebalance_timeout.as_millis())
                        .unwrap_or(i32::MAX),
                    session_timeout_ms: i32::try_from(m.session_timeout.as_millis())
                        .unwrap_or(i32::MAX),
                    subscription: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    fn seq_of(&self, member_id: &str) -> Option<u64> {
        self.members
            .iter()
            .find(|(_, m)| m.id == member_id)
            .map(|(s, _)| *s)
    }

    fn member(&self, member_id: &str) -> Option<&Member> {
        self.members.values().find(|m| m.id == member_id)
    }

    fn member_mut(&mut self, member_id: &str) -> Option<&mut Member> {
        self.members.values_mut().find(|m| m.id == member_id)
    }

    fn add_member(&mut self, m: Member) {
        if let Some(i) = &m.instance_id {
            self.statics.insert(i.clone(), m.id.clone());
        }
        self.members.insert(self.next_seq, m);
        self.next_seq += 1;
    }

    fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let seq = self.seq_of(member_id)?;
        let m = self.members.remove(&seq)?;
        if let Some(i) = &m.instance_id {
            if self.statics.get(i) == Some(&m.id) {
                self.statics.remove(i);
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
        Some(m)
    }

    fn set_state(&mut self, s: GroupState, now_ms: i64) {
        if self.state != s {
            self.state = s;
            self.state_since_ms = now_ms;
        }
    }

    /// Checks a static member's instance id against its member id.
    fn fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        match instance_id {
            Some(i) => self
                .statics
                .get(i)
                .is_some_and(|current| current != member_id),
            None => false,
        }
    }

    /// Whether `protocols` share a protocol with every member.
    fn protocols_fit(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocols.is_empty() || protocol_type.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    /// JoinGroup.
    pub fn join(
        &mut self,
        req: JoinRequest,
        limits: &GroupLimits,
        now: Instant,
        now_ms: i64,
    ) -> Join {
        let done = |e: i16| Join::Done(JoinResponse::error(e, &req.member_id));
        if self.state == GroupState::Dead {
            return done(code::COORDINATOR_NOT_AVAILABLE);
        }
        if !(limits.min_session_timeout_ms..=limits.max_session_timeout_ms)
            .contains(&req.session_timeout_ms)
        {
            return done(code::INVALID_SESSION_TIMEOUT);
        }
        if !self.protocols_fit(&req.protocol_type, &req.protocols) {
            return done(code::INCONSISTENT_GROUP_PROTOCOL);
        }
        if req.member_id.is_empty() {
            return self.join_new(req, limits, now, now_ms);
        }
        // A known member id (or one handed out with MEMBER_ID_REQUIRED).
        if self.fenced(&req.member_id, req.group_instance_id.as_deref()) {
            return done(code::FENCED_INSTANCE_ID);
        }
        if self.pending.remove(&req.member_id).is_some() {
            if self.members.len() >= limits.max_size {
                return done(code::GROUP_MAX_SIZE_REACHED);
            }
            let member = Self::new_member(&req, req.member_id.clone(), now);
            self.add_member(member);
            return self.join_and_wait(&req.member_id, now, now_ms, limits);
        }
        let Some(m) = self.member(&req.member_id) else {
            return done(code::UNKNOWN_MEMBER_ID);
        };
        let unchanged = m.same_protocols(&req.protocols);
        let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
        if self.state == GroupState::Stable && unchanged && !is_leader {
            // A follower rejoining with nothing new: the current generation stands.
            if let Some(m) = self.member_mut(&req.member_id) {
                m.last_heartbeat = now;
            }
            return Join::Done(self.join_response(&req.member_id));
        }
        if self.state == GroupState::CompletingRebalance && unchanged {
            // The join answer was lost: answer the same again.
            return Join::Done(self.join_response(&req.member_id));
        }
        if let Some(m) = self.member_mut(&req.member_id) {
            m.protocols.clone_from(&req.protocols);
            m.session_timeout = ms(req.session_timeout_ms);
            m.rebalance_timeout = ms(req.rebalance_timeout_ms);
            m.client_id.clone_from(&req.client_id);
            m.client_host.clone_from(&req.client_host);
        }
        self.join_and_wait(&req.member_id, now, now_ms, limits)
    }

    fn join_new(
        &mut self,
        req: JoinRequest,
        limits: &GroupLimits,
        now: Instant,
        now_ms: i64,
    ) -> Join {
        if let Some(instance) = req.group_instance_id.clone() {
            let new_id = new_member_id(&instance);
            if let Some(old) = self.statics.get(&instance).cloned() {
                // A static member back under a new id: the old id is fenced.
                let Some(seq) = self.seq_of(&old) else {
                    self.statics.remove(&instance);
                    return self.join_new(req, limits, now, now_ms);
                };
                let was_leader = self.leader.as_deref() == Some(old.as_str());
                let stable = self.state == GroupState::Stable;
                let Some(mut m) = self.members.remove(&seq) else {
                    return Join::Done(JoinResponse::error(code::UNKNOWN_MEMBER_ID, ""));
                };
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(JoinResponse::error(code::FENCED_INSTANCE_ID, &old));
                }
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncResponse::error(code::FENCED_INSTANCE_ID));
                }
                let unchanged = m.same_protocols(&req.protocols);
                m.id.clone_from(&new_id);
                m.protocols.clone_from(&req.protocols);
                m.session_timeout = ms(req.session_timeout_ms);
                m.rebalance_timeout = ms(req.rebalance_timeout_ms);
                m.last_heartbeat = now;
                self.members.insert(seq, m);
                self.statics.insert(instance, new_id.clone());
                if was_leader {
                    self.leader = Some(new_id.clone());
                }
                self.persist = true;
                if stable && unchanged {
                    // Kafka's static rejoin: no rebalance, the assignment stays.
                    // The answer names the old id as the leader, so that a
                    // returning leader does not compute an assignment a Stable
                    // group would never hand out (as Kafka does).
                    let mut r = self.join_response(&new_id);
                    if was_leader {
                        r.leader.clone_from(&old);
                        r.members.clear();
                    }
                    return Join::Done(r);
                }
                return self.join_and_wait(&new_id, now, now_ms, limits);
            }
            if self.members.len() >= limits.max_size {
                return Join::Done(JoinResponse::error(code::GROUP_MAX_SIZE_REACHED, ""));
            }
            let member = Self::new_member(&req, new_id.clone(), now);
            self.add_member(member);
            return self.join_and_wait(&new_id, now, now_ms, limits);
        }
        let new_id = new_member_id(&req.client_id);
        if req.require_known_member_id {
            // Kafka: the member must come back with this id (within its session).
            self.pending
                .insert(new_id.clone(), now + ms(req.session_timeout_ms));
            return Join::Done(JoinResponse::error(code::MEMBER_ID_REQUIRED, &new_id));
        }
        if self.members.len() >= limits.max_size {
            return Join::Done(JoinResponse::error(code::GROUP_MAX_SIZE_REACHED, ""));
        }
        let member = Self::new_member(&req, new_id.clone(), now);
        self.add_member(member);
        self.join_and_wait(&new_id, now, now_ms, limits)
    }

    fn new_member(req: &JoinRequest, id: String, now: Instant) -> Member {
        Member {
            id,
            instance_id: req.group_instance_id.clone(),
            client_id: req.client_id.clone(),
            client_host: req.client_host.clone(),
            session_timeout: ms(req.session_timeout_ms),
            rebalance_timeout: ms(req.rebalance_timeout_ms),
            protocol_type: req.protocol_type.clone(),
            protocols: req.protocols.clone(),
            assignment: Bytes::new(),
            last_heartbeat: now,
            join_waiter: None,
            sync_waiter: None,
        }
    }

    /// Puts `member_id` among the joiners of a (new) rebalance and waits for it.
    fn join_and_wait(
        &mut self,
        member_id: &str,
        now: Instant,
        now_ms: i64,
        limits: &GroupLimits,
    ) -> Join {
        let (tx, rx) = oneshot::channel();
        let initial = self.state == GroupState::Empty;
        if let Some(m) = self.member_mut(member_id) {
            m.last_heartbeat = now;
            if let Some(old) = m.join_waiter.replace(tx) {
                // A duplicate join from the same member: the newer one wins.
                let _ = old.send(JoinResponse::error(code::REBALANCE_IN_PROGRESS, member_id));
            }
        }
        if self.protocol_type.is_none() {
            self.protocol_type = self.member(member_id).map(|m| m.protocol_type.clone());
        }
        self.prepare_rebalance(now, now_ms);
        if initial {
            let delay = limits.initial_rebalance_delay;
            let cap = self.rebalance_deadline.unwrap_or(now);
            self.initial_delay_until = Some((now + delay).min(cap));
        } else if let Some(until) = self.initial_delay_until {
            // More members during the first rebalance's delay extend it.
            let cap = self.rebalance_deadline.unwrap_or(now);
            self.initial_delay_until =
                Some((until.max(now + limits.initial_rebalance_delay)).min(cap));
        }
        self.try_complete_join(now, now_ms);
        Join::Wait(rx)
    }

    /// Enters PreparingRebalance (members must rejoin).
    fn prepare_rebalance(&mut self, now: Instant, now_ms: i64) {
        if self.state == GroupState::PreparingRebalance {
            return;
        }
        if self.state == GroupState::CompletingRebalance {
            // Followers waiting for the old generation's assignment must rejoin.
            for m in self.members.values_mut() {
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncResponse::error(code::REBALANCE_IN_PROGRESS));
                }
            }
        }
        self.storing = None;
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.rebalance_deadline = Some(now + timeout);
        self.initial_delay_until = None;
        self.set_state(GroupState::PreparingRebalance, now_ms);
    }

    /// Completes the rebalance if every member has joined (and the first
    /// rebalance's delay is over), or its time is up.
    fn try_complete_join(&mut self, now: Instant, now_ms: i64) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self.all_joined();
        let delay_over = self.initial_delay_until.is_none_or(|t| now >= t);
        let timed_out = self.rebalance_deadline.is_some_and(|t| now >= t);
        if !((all_joined && delay_over) || timed_out) {
            return;
        }
        // Who did not rejoin in time is out.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        if timed_out {
            self.pending.clear();
        }
        self.generation += 1;
        self.rebalance_deadline = None;
        self.initial_delay_until = None;
        self.persist = true;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(GroupState::Empty, now_ms);
            return;
        }
        self.protocol = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| self.member(l).is_none())
        {
            self.leader = self.members.values().next().map(|m| m.id.clone());
        }
        self.set_state(GroupState::CompletingRebalance, now_ms);
        let ids: Vec<String> = self.members.values().map(|m| m.id.clone()).collect();
        for id in ids {
            let response = self.join_response(&id);
            if let Some(m) = self.member_mut(&id) {
                m.last_heartbeat = now;
                if let Some(w) = m.join_waiter.take() {
                    let _ = w.send(response);
                }
            }
        }
    }

    /// Kafka's choice: of the protocols every member supports, the one most members
    /// list first among them.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(x, _)| &x == n))
            })
            .collect();
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0, *c)).collect();
        for m in self.members.values() {
            if let Some((choice, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(&n)) {
                if let Some(v) = votes.iter_mut().find(|(_, c)| *c == choice) {
                    v.0 += 1;
                }
            }
        }
        // Most votes; ties go to the earlier candidate in the first member's order.
        let best = votes.iter().map(|(n, _)| *n).max()?;
        votes
            .into_iter()
            .find(|(n, _)| *n == best)
            .map(|(_, c)| c.clone())
    }

    fn join_response(&self, member_id: &str) -> JoinResponse {
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol.clone();
        let members = if leader == member_id {
            let p = protocol.clone().unwrap_or_default();
            self.members
                .values()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    metadata: m.metadata_for(&p),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResponse {
            error: code::NONE,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol,
            leader,
            member_id: member_id.to_string(),
            members,
        }
    }

    /// Checks a member's generation and identity, for SyncGroup, Heartbeat and
    /// OffsetCommit.
    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), i16> {
        if self.state == GroupState::Dead {
            return Err(code::COORDINATOR_NOT_AVAILABLE);
        }
        if self.fenced(member_id, instance_id) {
            return Err(code::FENCED_INSTANCE_ID);
        }
        if self.member(member_id).is_none() {
            return Err(code::UNKNOWN_MEMBER_ID);
        }
        if generation != self.generation {
            return Err(code::ILLEGAL_GENERATION);
        }
        Ok(())
    }

    /// SyncGroup.
    pub fn sync(&mut self, req: SyncRequest, now: Instant) -> Sync {
        let done = |e: i16| Sync::Done(SyncResponse::error(e));
        if let Err(e) = self.check_member(
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation,
        ) {
            return done(e);
        }
        if req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != self.protocol_type.as_ref())
            || req
                .protocol
                .as_ref()
                .is_some_and(|p| Some(p) != self.protocol.as_ref())
        {
            return done(code::INCONSISTENT_GROUP_PROTOCOL);
        }
        match self.state {
            GroupState::PreparingRebalance => done(code::REBALANCE_IN_PROGRESS),
            GroupState::Stable => {
                let assignment = self
                    .member(&req.member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                if let Some(m) = self.member_mut(&req.member_id) {
                    m.last_heartbeat = now;
                }
                Sync::Done(SyncResponse {
                    error: code::NONE,
                    protocol_type: self.protocol_type.clone(),
                    protocol: self.protocol.clone(),
                    assignment,
                })
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.member_mut(&req.member_id) {
                    m.last_heartbeat = now;
                    if let Some(old) = m.sync_waiter.replace(tx) {
                        let _ = old.send(SyncResponse::error(code::REBALANCE_IN_PROGRESS));
                    }
                }
                let is_leader = self.leader.as_deref() == Some(req.member_id.as_str());
                if !is_leader || self.storing.is_some() {
                    return Sync::Wait(rx);
                }
                let given: HashMap<String, Bytes> = req.assignments.into_iter().collect();
                for m in self.members.values_mut() {
                    m.assignment = given.get(&m.id).cloned().unwrap_or_default();
                }
                self.storing = Some(self.generation);
                Sync::Store {
                    value: self.value(),
                    generation: self.generation,
                    rx,
                }
            }
            GroupState::Empty | GroupState::Dead => done(code::UNKNOWN_MEMBER_ID),
        }
    }

    /// The leader's assignment of `generation` was stored (or failed with `error`):
    /// the group becomes Stable and every member waiting in SyncGroup is answered.
    pub fn assignment_stored(&mut self, generation: i32, error: i16, now: Instant, now_ms: i64) {
        if self.storing != Some(generation)
            || self.generation != generation
            || self.state != GroupState::CompletingRebalance
        {
            // A newer rebalance began meanwhile; its members were told to rejoin.
            return;
        }
        self.storing = None;
        if error != code::NONE {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncResponse::error(error));
                }
            }
            self.prepare_rebalance(now, now_ms);
            return;
        }
        self.set_state(GroupState::Stable, now_ms);
        let (pt, p) = (self.protocol_type.clone(), self.protocol.clone());
        for m in self.members.values_mut() {
            m.last_heartbeat = now;
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResponse {
                    error: code::NONE,
                    protocol_type: pt.clone(),
                    protocol: p.clone(),
                    assignment: m.assignment.clone(),
                });
            }
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> i16 {
        if self.state == GroupState::Empty {
            return code::UNKNOWN_MEMBER_ID;
        }
        if let Err(e) = self.check_member(member_id, instance_id, generation) {
            return e;
        }
        if let Some(m) = self.member_mut(member_id) {
            m.last_heartbeat = now;
        }
        match self.state {
            GroupState::PreparingRebalance => code::REBALANCE_IN_PROGRESS,
            _ => code::NONE,
        }
    }

    /// LeaveGroup for one member (by member id, or by instance id for a static
    /// member whose member id the caller does not know).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
        now_ms: i64,
    ) -> i16 {
        if self.state == GroupState::Dead {
            return code::COORDINATOR_NOT_AVAILABLE;
        }
        let id = match instance_id {
            Some(i) => match self.statics.get(i) {
                Some(current) if member_id.is_empty() || current == member_id => current.clone(),
                Some(_) => return code::FENCED_INSTANCE_ID,
                None => return code::UNKNOWN_MEMBER_ID,
            },
            None => member_id.to_string(),
        };
        if self.pending.remove(&id).is_some() {
            // It may have been the last one a rebalance waited for.
            self.try_complete_join(now, now_ms);
            return code::NONE;
        }
        let Some(mut m) = self.remove_member(&id) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        if let Some(w) = m.join_waiter.take() {
            let _ = w.send(JoinResponse::error(code::UNKNOWN_MEMBER_ID, &id));
        }
        if let Some(w) = m.sync_waiter.take() {
            let _ = w.send(SyncResponse::error(code::UNKNOWN_MEMBER_ID));
        }
        self.member_gone(now, now_ms);
        code::NONE
    }

    /// After a member left or expired: rebalance, or become Empty.
    fn member_gone(&mut self, now: Instant, now_ms: i64) {
        self.persist = true;
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.generation += 1;
                    self.protocol = None;
                    self.leader = None;
                    self.set_state(GroupState::Empty, now_ms);
                } else {
                    self.prepare_rebalance(now, now_ms);
                }
            }
            GroupState::PreparingRebalance => self.try_complete_join(now, now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Time passes: members whose session lapsed are removed, rebalances that ran
    /// out of time complete. Returns the earliest time something may happen next.
    pub fn tick(&mut self, now: Instant, now_ms: i64) -> Option<Instant> {
        self.pending.retain(|_, until| *until > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.join_waiter.is_none()
                    && m.sync_waiter.is_none()
                    && now.duration_since(m.last_heartbeat) >= m.session_timeout
            })
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member's session expired");
            if let Some(mut m) = self.remove_member(&id) {
                m.join_waiter.take();
                m.sync_waiter.take();
            }
            self.member_gone(now, now_ms);
        }
        self.try_complete_join(now, now_ms);
        self.next_deadline(now)
    }

    /// The earliest time at which [`Group::tick`] may change something: a session
    /// running out (of a member not waiting in JoinGroup or SyncGroup, whose
    /// sessions are paused), the rebalance's deadline or first-rebalance delay, a
    /// pending member id lapsing. `None`: nothing is due until a request comes.
    ///
    /// A deadline that has already passed is returned too (the timer then fires at
    /// once): the caller may ask with a later `now` than the one its request or
    /// tick ran at, and a deadline that fell between the two must not be lost, or
    /// members waiting in JoinGroup would wait for the rebalance timeout. Every
    /// passed deadline is one `tick` acts on and clears, so this does not spin,
    /// with one exception: a first-rebalance delay that has passed while a member
    /// is still awaited ends nothing (the rebalance ends when it rejoins or its
    /// own deadline comes), so it counts only while it lies ahead.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let sessions = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none() && m.sync_waiter.is_none())
            .map(|m| m.last_heartbeat + m.session_timeout);
        let rebalancing = self.state == GroupState::PreparingRebalance;
        let rebalance = self.rebalance_deadline.filter(|_| rebalancing);
        let delay = self
            .initial_delay_until
            .filter(|t| rebalancing && (*t > now || self.all_joined()));
        sessions
            .chain(rebalance)
            .chain(delay)
            .chain(self.pending.values().copied())
            .min()
    }

    /// Every member is waiting in JoinGroup and no member id handed out is
    /// still awaited.
    fn all_joined(&self) -> bool {
        self.members.values().all(|m| m.join_waiter.is_some()) && self.pending.is_empty()
    }

    /// OffsetCommit's checks; Ok means the offsets may be stored.
    pub fn check_commit(&mut self, auth: &CommitAuth, now: Instant) -> Result<(), i16> {
        if self.state == GroupState::Dead {
            return Err(code::COORDINATOR_NOT_AVAILABLE);
        }
        let simple =
            auth.generation < 0 && auth.member_id.is_empty() && auth.group_instance_id.is_none();
        if simple {
            // Commits from outside the group (tools, manual assignment) only while
            // it has no members.
            return if self.state == GroupState::Empty {
                Ok(())
            } else {
                Err(code::UNKNOWN_MEMBER_ID)
            };
        }
        self.check_member(
            &auth.member_id,
            auth.group_instance_id.as_deref(),
            auth.generation,
        )?;
        if self.state == GroupState::CompletingRebalance {
            return Err(code::REBALANCE_IN_PROGRESS);
        }
        if let Some(m) = self.member_mut(&auth.member_id) {
            m.last_heartbeat = now;
        }
        Ok(())
    }

    /// Deleted: every waiter is told the coordinator is gone.
    pub fn kill(&mut self, error: i16) {
        for m in self.members.values_mut() {
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResponse::error(error, &m.id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResponse::error(error));
            }
        }
        self.members.clear();
        self.statics.clear();
        self.pending.clear();
        self.state = GroupState::Dead;
    }
}

/// The topics of a consumer protocol subscription (ConsumerProtocolSubscription:
/// version, then an array of topic names), or `None` if it does not parse.
pub fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut at = 2usize;
    let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
        let s = metadata.get(*at..at.checked_add(n)?)?;
        *at += n;
        Some(s)
    };
    let count = i32::from_be_bytes(take(&mut at, 4)?.try_into().ok()?);
    if count < 0 || usize::try_from(count).ok()? > metadata.len() / 2 {
        return None;
    }
    let mut out = Vec::new();
    for _ in 0..count {
        let len = i16::from_be_bytes(take(&mut at, 2)?.try_into().ok()?);
        let name = take(&mut at, usize::try_from(len).ok()?)?;
        out.push(String::from_utf8(name.to_vec()).ok()?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn limits() -> GroupLimits {
        GroupLimits {
            initial_rebalance_delay: Duration::ZERO,
            ..GroupLimits::default()
        }
    }

    fn join_req(member_id: &str, client: &str) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: client.into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
            require_known_member_id: true,
        }
    }

    fn ready<T>(rx: &mut oneshot::Receiver<T>) -> Option<T> {
        rx.now_or_never().map(|r| r.expect("sender kept"))
    }

    /// Joins a new dynamic member the v4 way; returns its id and the pending answer.
    fn join_new(
        g: &mut Group,
        client: &str,
        now: Instant,
    ) -> (String, oneshot::Receiver<JoinResponse>) {
        let Join::Done(first) = g.join(join_req("", client), &limits(), now, 0) else {
            panic!("first join must answer at once");
        };
        assert_eq!(first.error, code::MEMBER_ID_REQUIRED);
        assert!(first.member_id.starts_with(&format!("{client}-")));
        let Join::Wait(rx) = g.join(join_req(&first.member_id, client), &limits(), now, 0) else {
            panic!("the second join waits for the rebalance");
        };
        (first.member_id, rx)
    }

    fn sync(
        g: &mut Group,
        member: &str,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Sync {
        g.sync(
            SyncRequest {
                generation,
                member_id: member.into(),
                group_instance_id: None,
                protocol_type: None,
                protocol: None,
                assignments,
            },
            now,
        )
    }

    /// Two members through a whole rebalance: joins, the leader's assignment, the
    /// store, and both answers.
    fn two_stable_members(g: &mut Group, now: Instant) -> (String, String) {
        let (a, mut ra) = join_new(g, "a", now);
        let ja = ready(&mut ra).expect("a lone member completes the join at once");
        assert_eq!(
            (ja.error, ja.generation, ja.leader.as_str()),
            (0, 1, a.as_str())
        );
        let (b, mut rb) = join_new(g, "b", now);
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        assert!(ready(&mut rb).is_none(), "b waits for a to rejoin");
        assert_eq!(g.heartbeat(&a, None, 1, now), code::REBALANCE_IN_PROGRESS);
        let Join::Wait(mut ra) = g.join(join_req(&a, "a"), &limits(), now, 0) else {
            panic!("a's rejoin waits");
        };
        let ja = ready(&mut ra).expect("all joined");
        let jb = ready(&mut rb).expect("all joined");
        assert_eq!((ja.generation, jb.generation), (2, 2));
        assert_eq!(ja.leader, a);
        assert_eq!(ja.members.len(), 2, "the leader gets the members");
        assert!(jb.members.is_empty(), "followers get none");
        assert_eq!(ja.protocol.as_deref(), Some("range"));
        let Sync::Wait(mut sb) = sync(g, &b, 2, vec![], now) else {
            panic!("a follower waits for the leader");
        };
        let Sync::Store {
            value,
            generation,
            rx: mut sa,
        } = sync(
            g,
            &a,
            2,
            vec![
                (a.clone(), Bytes::from_static(b"A")),
                (b.clone(), Bytes::from_static(b"B")),
            ],
            now,
        )
        else {
            panic!("the leader's assignment must be stored");
        };
        assert_eq!(value.members.len(), 2);
        assert!(ready(&mut sb).is_none(), "no answer before the store");
        g.assignment_stored(generation, code::NONE, now, 0);
        assert_eq!(g.state(), GroupState::Stable);
        assert_eq!(ready(&mut sa).unwrap().assignment, Bytes::from_static(b"A"));
        assert_eq!(ready(&mut sb).unwrap().assignment, Bytes::from_static(b"B"));
        (a, b)
    }

    /// A first-rebalance delay that passed while a pending member is awaited is no
    /// longer a deadline: a timer armed for it would fire again at once, forever.
    #[test]
    fn a_passed_first_rebalance_delay_is_not_a_deadline() {
        let lim = GroupLimits {
            initial_rebalance_delay: Duration::from_secs(3),
            ..GroupLimits::default()
        };
        let t0 = Instant::now();
        let mut g = Group::new("g", 0);
        // b got a member id and never comes back with it.
        let Join::Done(b) = g.join(join_req("", "b"), &lim, t0, 0) else {
            panic!("answered at once");
        };
        assert_eq!(b.error, code::MEMBER_ID_REQUIRED);
        let Join::Done(a) = g.join(join_req("", "a"), &lim, t0, 0) else {
            panic!("answered at once");
        };
        let Join::Wait(_ra) = g.join(join_req(&a.member_id, "a"), &lim, t0, 0) else {
            panic!("a waits for the rebalance");
        };
        let later = t0 + Duration::from_secs(4);
        let next = g.tick(later, 0).expect("b's pending id still lapses");
        assert!(next > later, "{next:?} is not after {later:?}");
    }

    /// The first rebalance's delay, extended by later members, ends between a
    /// timer's tick and the moment its next deadline is asked for (a shard that
    /// was descheduled in between): that passed deadline is still the next one,
    /// not the rebalance timeout, and the next tick completes the join.
    #[test]
    fn a_delay_ending_between_tick_and_arming_is_still_due() {
        let lim = GroupLimits {
            initial_rebalance_delay: Duration::from_millis(200),
            ..GroupLimits::default()
        };
        let t0 = Instant::now();
        let mut g = Group::new("g", 0);
        let mut waiting = Vec::new();
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            let at = t0 + Duration::from_millis(30 * i as u64);
            let Join::Done(first) = g.join(join_req("", name), &lim, at, 0) else {
                panic!("answered at once");
            };
            let Join::Wait(rx) = g.join(join_req(&first.member_id, name), &lim, at, 0) else {
                panic!("{name} waits for the first rebalance's delay");
            };
            waiting.push(rx);
        }
        // The timer armed for a's delay (t0 + 200 ms) fires; c extended it to
        // t0 + 260 ms, so nothing completes yet.
        let fired = t0 + Duration::from_millis(200);
        let _ = g.tick(fired, 200);
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        // The next deadline is asked for only after the delay ended.
        let asked = t0 + Duration::from_millis(300);
        let next = g.next_deadline(asked).expect("a deadline is due");
        assert_eq!(next, t0 + Duration::from_millis(260));
        let _ = g.tick(asked, 300);
        assert_eq!(g.state(), GroupState::CompletingRebalance);
        for rx in &mut waiting {
            assert_eq!(ready(rx).expect("joined").error, code::NONE);
        }
    }

    /// A pending member that leaves may be the last one a rebalance waited for.
    #[test]
    fn a_pending_member_leaving_completes_the_join() {
        let now = Instant::now();
        let mut g = Group::new("g", 0);
        let (a, b) = two_stable_members(&mut g, now);
        // c gets a member id (the rebalance now waits for it), a and b rejoin.
        let Join::Done(c) = g.join(join_req("", "c"), &limits(), now, 0) else {
            panic!("answered at once");
        };
        assert_eq!(c.error, code::MEMBER_ID_REQUIRED);
        let Join::Wait(mut ra) = g.join(join_req(&a, "a"), &limits(), now, 0) else {
            panic!("waits for c");
        };
        let Join::Wait(mut rb) = g.join(join_req(&b, "b"), &limits(), now, 0) else {
            panic!("waits for c");
        };
        assert!(ready(&mut ra).is_none() && ready(&mut rb).is_none());
        assert_eq!(g.leave(&c.member_id, None, now, 0), code::NONE);
        assert_eq!(ready(&mut ra).expect("join completed").generation, 3);
        assert_eq!(ready(&mut rb).expect("join completed").generation, 3);
    }

    #[test]
    fn members_join_sync_and_get_their_assignments() {
        let now = Instant::now();
        let mut g = Group::new("g", 0);
        let (a, b) = two_stable_members(&mut g, now);
        assert_eq!(g.heartbeat(&a, None, 2, now), code::NONE);
        assert_eq!(g.heartbeat(&b, None, 1, now), code::ILLEGAL_GENERATION);
        assert_eq!(g.heartbeat("nobody", None, 2, now), code::UNKNOWN_MEMBER_ID);
        // A Stable SyncGroup (a lost answer) gets the same assignment again.
        let Sync::Done(again) = sync(&mut g, &b, 2, vec![], now) else {
            panic!("answered at once when Stable");
        };
        assert_eq!(again.assignment, Bytes::from_static(b"B"));
        // The stored value reads back as the same group.
        let stored = g.value();
        let back = Group::from_stored("g", &stored, now, 0);
        assert_eq!(back.state(), GroupState::Stable);
        assert_eq!(back.generation(), 2);
        assert_eq!(back.member_count(), 2);
    }

    #[test]
    fn an_unknown_member_id_and_bad_timeouts_are_refused() {
        let now = Instant::now();
        let mut g = Group::new("g", 0);
        let Join::Done(r) = g.join(join_req("made-up", "c"), &limits(), now, 0) else {
            panic!("refused at once");
        };
        assert_eq!(r.error, code::UNKNOWN_MEMBER_ID);
        let mut req = join_req("", "c");
        req.session_timeout_ms = 10;
        let Join::Done(r) = g.join(req, &limits(), now, 0) else {
            panic!("refused at once");
        };
        assert_eq!(r.error, code::INVALID_SESSION_TIMEOUT);
        let (_, _rx) = join_new(&mut g, "c", now);
        let mut other = join_req("", "d");
        other.protocols = vec![("roundrobin-only".into(), Bytes::new())];
        let Join::Done(r) = g.join(other, &limits(), now, 0) else {
            panic!("refused at once");
        };
        assert_eq!(r.error, code::INCONSISTENT_GROUP_PROTOCOL);
    }

    #[test]
    fn a_member_that_stops_heartbeating_is_removed_and_the_rest_rebalance() {
        let now = Instant::now();
        let mut g = Group::new("g", 0);
        let (a, b) = two_stable_members(&mut g, now);
        let later = now + Duration::from_secs(8);
        assert_eq!(g.heartbeat(&a, None, 2, later), code::NONE);
        // b's 10 s session ends at now + 10 s; a heartbeated at 8 s.
        let next = g.tick(now + Duration::from_secs(11), 11_000);
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        assert_eq!(g.member_count(), 1);
        assert!(next.is_some());
        assert_eq!(g.heartbeat(&b, None, 2, later), code::UNKNOWN_MEMBER_ID);
        let Join::Wait(mut ra) = g.join(join_req(&a, "a"), &limits(), later, 0) else {
            panic!("waits");
        };
        let ja = ready(&mut ra).expect("a is the only member");
        assert_eq!((ja.generation, ja.members.len()), (3, 1));
    }

    #[test]
    fn a_member_that_does_not_rejoin_in_time_is_dropped_from_the_generation() {
        let now = Instant::now();
        let mut g = Group::new("g", 0);
        let (a, b) = two_stable_members(&mut g, now);
        // a changes its subscription: a rebalance that b never joins.
        let mut req = join_req(&a, "a");
        req.protocols = vec![("range".into(), Bytes::from_static(b"new"))];
        let Join::Wait(mut ra) = g.join(req, &limits(), now, 0) else {
            panic!("waits");
        };
        assert!(ready(&mut ra).is_none());
        g.tick(now + Duration::from_secs(5), 5_000);
        assert!(ready(&mut ra).is_none(), "the rebalance timeout is 30 s");
        g.tick(now + Duration::from_secs(31), 31_000);
        let ja = ready(&mut ra).expect("completed at the rebalance timeout");
        assert_eq!((ja.generation, ja.members.len()), (3, 1));
        assert_eq!(g.heartbeat(&b, None, 3, now), code::UNKNOWN_MEMBER_ID);
    }

    #[test]
    fn leaving_rebalances_and_the_last_one_out_empties_the_group() {
        let now = Instant::now();
        let mut g = Group::new("g", 0);
        let (a, b) = two_stable_members(&mut g, now);
        assert_eq!(g.leave(&b, None, now, 0), code::NONE);
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        assert_eq!(g.leave(&b, None, now, 0), code::UNKNOWN_MEMBER_ID);
        assert_eq!(g.leave(&a, None, now, 0), code::NONE);
        assert_eq!(g.state(), GroupState::Empty);
        assert!(g.take_persist().is_some(), "the empty group is stored");
    }

    #[test]
    fn a_static_member_back_under_a_new_id_fences_the_old_one_without_a_rebalance() {
        let now = Instant::now();
        let mut g = Group::new("g", 0);
        let (a, _) = two_stable_members(&mut g, now);
        // Make a static follower.
        let mut s = join_req("", "s");
        s.group_instance_id = Some("inst-1".into());
        let Join::Wait(_rs) = g.join(s.clone(), &limits(), now, 0) else {
            panic!("a new static member joins at once (no MEMBER_ID_REQUIRED)");
        };
        let Join::Wait(mut ra) = g.join(join_req(&a, "a"), &limits(), now, 0) else {
            panic!("waits");
        };
        // b has not rejoined; let the rebalance time out to keep this short.
        g.tick(now + Duration::from_secs(31), 31_000);
        let ja = ready(&mut ra).unwrap();
        let static_id = ja
            .members
            .iter()
            .find(|m| m.group_instance_id.as_deref() == Some("inst-1"))
            .map(|m| m.member_id.clone())
            .expect("the static member is in the generation");
        let later = now + Duration::from_secs(31);
        let Sync::Store { generation, .. } = sync(&mut g, &a, ja.generation, vec![], later) else {
            panic!("leader stores");
        };
        g.assignment_stored(generation, code::NONE, later, 0);
        assert_eq!(g.state(), GroupState::Stable);
        // It restarts and joins again with only its instance id.
        let Join::Done(r) = g.join(s, &limits(), later, 0) else {
            panic!("a static follower with the same subscription is answered at once");
        };
        assert_eq!(r.error, code::NONE);
        assert_eq!(r.generation, generation, "no rebalance");
        assert_ne!(r.member_id, static_id);
        assert_eq!(g.state(), GroupState::Stable);
        assert_eq!(
            g.heartbeat(&static_id, Some("inst-1"), generation, later),
            code::FENCED_INSTANCE_ID
        );
        assert_eq!(
            g.heartbeat(&r.member_id, Some("inst-1"), generation, later),
            code::NONE
        );
        // Leaving by instance id alone.
        assert_eq!(g.leave("", Some("inst-1"), later, 0), code::NONE);
        assert_eq!(g.state(), GroupState::PreparingRebalance);
    }

    #[test]
    fn commits_are_fenced_by_generation_and_membership() {
        let now = Instant::now();
        let mut g = Group::new("g", 0);
        let tool = CommitAuth {
            generation: -1,
            member_id: String::new(),
            group_instance_id: None,
        };
        assert_eq!(
            g.check_commit(&tool, now),
            Ok(()),
            "an empty group takes simple commits"
        );
        let (a, _) = two_stable_members(&mut g, now);
        assert_eq!(g.check_commit(&tool, now), Err(code::UNKNOWN_MEMBER_ID));
        let stale = CommitAuth {
            generation: 1,
            member_id: a.clone(),
            group_instance_id: None,
        };
        assert_eq!(g.check_commit(&stale, now), Err(code::ILLEGAL_GENERATION));
        let ok = CommitAuth {
            generation: 2,
            ..stale
        };
        assert_eq!(g.check_commit(&ok, now), Ok(()));
    }

    #[test]
    fn the_protocol_most_members_prefer_is_chosen() {
        let now = Instant::now();
        let mut g = Group::new("g", 0);
        let lim = GroupLimits {
            initial_rebalance_delay: Duration::from_secs(1),
            ..limits()
        };
        let mut waits = Vec::new();
        for (client, prefs) in [
            ("a", vec!["range", "cooperative-sticky"]),
            ("b", vec!["cooperative-sticky", "range"]),
            ("c", vec!["cooperative-sticky", "range", "roundrobin"]),
        ] {
            let mut r = join_req("", client);
            r.require_known_member_id = false;
            r.protocols = prefs
                .iter()
                .map(|p| ((*p).to_string(), Bytes::new()))
                .collect();
            let Join::Wait(rx) = g.join(r, &lim, now, 0) else {
                panic!("waits");
            };
            waits.push(rx);
        }
        assert!(
            ready(&mut waits[0]).is_none(),
            "the first rebalance waits out its delay"
        );
        g.tick(now + Duration::from_secs(2), 2_000);
        let r = ready(&mut waits[0]).unwrap();
        assert_eq!(r.protocol.as_deref(), Some("cooperative-sticky"));
        assert_eq!(r.generation, 1);
    }

    #[test]
    fn subscriptions_are_parsed_and_damage_is_not_trusted() {
        // Version 1, topics ["t1", "topic"], user data null.
        let mut m = vec![0, 1, 0, 0, 0, 2, 0, 2, b't', b'1', 0, 5];
        m.extend_from_slice(b"topic");
        m.extend_from_slice(&[255, 255, 255, 255]);
        assert_eq!(
            subscription_topics(&m),
            Some(vec!["t1".to_string(), "topic".to_string()])
        );
        assert_eq!(subscription_topics(&[0, 1, 127, 255, 255, 255]), None);
        assert_eq!(subscription_topics(&m[..9]), None);
    }
}
