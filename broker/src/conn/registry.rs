//! Which connections this node holds: a sharded map from id to record.
//!
//! Sharded (dashmap), so pushes to different connections never contend on one lock.

use std::sync::Arc;

use dashmap::DashMap;

use crate::conn::connection::Connection;
use crate::conn::id::ConnectionId;
use crate::conn::ordered::{self, Kept, Ordered};

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Registry {
    map: DashMap<ConnectionId, Arc<Connection>>,
    /// Every connection in descriptor order, while none came or went (for write-through
    /// broadcasts).
    ordered: Kept,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an open connection.
    pub fn insert(&self, conn: Arc<Connection>) {
        self.map.insert(conn.id, conn);
        self.ordered.changed();
    }

    /// Removes a connection that ended.
    pub fn remove(&self, id: &ConnectionId) -> Option<Arc<Connection>> {
        let removed = self.map.remove(id).map(|(_, c)| c);
        if removed.is_some() {
            self.ordered.changed();
        }
        removed
    }

    /// Every open connection, in socket-descriptor order (see [`crate::conn::ordered`]): the
    /// list kept since the last connection came or went, or a new one.
    pub fn ordered(&self) -> Ordered {
        self.ordered
            .get_or_build(|| ordered::by_descriptor(self.map.iter().map(|e| Arc::clone(e.value()))))
    }

    /// The record of an open connection.
    pub fn get(&self, id: &ConnectionId) -> Option<Arc<Connection>> {
        self.map.get(id).map(|c| Arc::clone(c.value()))
    }

    /// Up to `limit` open connections whose ids sort after `after`, in id order, and whether
    /// more follow. Costs one pass over the ids and a partial sort: an operator's listing, not
    /// a data-plane path.
    pub fn page_after(&self, after: ConnectionId, limit: usize) -> (Vec<Arc<Connection>>, bool) {
        let mut ids: Vec<ConnectionId> = self
            .map
            .iter()
            .map(|e| *e.key())
            .filter(|id| *id > after)
            .collect();
        let more = ids.len() > limit;
        if more {
            ids.select_nth_unstable(limit);
            ids.truncate(limit);
        }
        ids.sort_unstable();
        let conns = ids.iter().filter_map(|id| self.get(id)).collect();
        (conns, more)
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Calls `f` for every open connection (snapshot per shard; no lock held across calls
    /// into other shards).
    pub fn for_each(&self, mut f: impl FnMut(&Arc<Connection>)) {
        for entry in self.map.iter() {
            f(entry.value());
        }
    }
}
