//! What a shard keeps for the protocol layer, in one value carried in every
//! request's context ([`crate::context::BrokerContext::services`]) and reachable
//! from every job the router runs on the shard ([`ShardServices::of`]): the group
//! coordinators of the `__consumer_offsets` partitions it owns, the fetch sessions
//! opened on it, its listener's state, its replica manager, and the hooks of what
//! follows partition leadership.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use sluice_engine::{Partition, Shard, TopicPartition};

use crate::fetch_session::Sessions;
use crate::group::coordinator::Coordinator;
use crate::replica::{Assignment, Change, ReplicaManager};

/// Something that follows partition leadership on a shard: group coordinators now,
/// transaction coordinators later. Called on the shard that owns the partition.
pub trait Leadership {
    /// This shard became the partition's leader (created here, or elected).
    fn elected(&self, services: &Rc<ShardServices>, partition: &Rc<Partition>);
    /// This shard no longer leads the partition (deleted, or another leader).
    fn resigned(&self, services: &Rc<ShardServices>, tp: &TopicPartition);
}

/// One shard's services.
#[derive(Default)]
pub struct ShardServices {
    /// Group coordinators by `__consumer_offsets` partition.
    pub(crate) coordinators: RefCell<HashMap<i32, Rc<Coordinator>>>,
    /// The offsets-retention task runs (while there are coordinators).
    pub(crate) retaining: Cell<bool>,
    pub(crate) fetch_sessions: RefCell<Sessions>,
    /// The listener and its connections (see `server`).
    pub(crate) server: RefCell<Option<Rc<dyn std::any::Any>>>,
    /// Every partition replica of the shard: role, epochs, ISR, high watermark.
    pub replicas: ReplicaManager,
    leadership: RefCell<Vec<Rc<dyn Leadership>>>,
}

impl ShardServices {
    /// The services of `shard` (made on first use).
    pub fn of(shard: &Shard) -> Rc<ShardServices> {
        shard.services(ShardServices::default)
    }

    /// Registers a follower of leadership (once per kind).
    pub fn follow_leadership(&self, l: Rc<dyn Leadership>) {
        self.leadership.borrow_mut().push(l);
    }

    /// Tells every follower that this shard leads `partition` now.
    pub fn elected(self: &Rc<Self>, partition: &Rc<Partition>) {
        let all: Vec<_> = self.leadership.borrow().clone();
        for l in all {
            l.elected(self, partition);
        }
    }

    /// Applies the image's record of a partition this shard hosts: the replica
    /// manager changes its role, and what follows leadership is told.
    pub fn assign(self: &Rc<Self>, node_id: i32, a: &Assignment, partition: &Rc<Partition>) {
        let tp = a.tp.clone();
        match self.replicas.assign(node_id, a, partition.clone()) {
            Change::Elected => self.elected(partition),
            Change::Resigned => self.resigned(&tp),
            Change::None | Change::Updated => {}
        }
    }

    /// Forgets a partition this shard no longer hosts (deleted, or moved away).
    pub fn unassign(self: &Rc<Self>, tp: &TopicPartition) {
        if self.replicas.remove(tp) {
            self.resigned(tp);
        }
    }

    /// Tells every follower that this shard no longer leads `tp`.
    pub fn resigned(self: &Rc<Self>, tp: &TopicPartition) {
        let all: Vec<_> = self.leadership.borrow().clone();
        for l in all {
            l.resigned(self, tp);
        }
    }
}
