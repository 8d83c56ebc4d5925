//! Channel subscriptions on this node: channel name → its local subscribers.
//!
//! Sharded by channel (dashmap): a publish takes one shard's read lock while it queues the
//! frame into each subscriber's outbox (which never waits), so publishes to different channels
//! never contend, and subscribes only wait for publishes to the same shard.
//!
//! Invariant: a closed connection is in no channel. Subscribing checks, under the connection's
//! channel-list lock, that its outbox is still open; cleanup closes the outbox first and then
//! takes that list, so a subscribe racing the end of a connection either lands before cleanup
//! (and is removed by it) or is refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use crate::conn::connection::Connection;
use crate::conn::id::ConnectionId;
use crate::conn::ordered::{self, Ordered};

pub use crate::config::channels::validate_channel_name as validate_name;

/// Why a subscribe was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeError {
    /// The connection is closing or closed.
    Closed,
    /// The connection is already in `max` channels.
    TooMany {
        /// The limit.
        max: usize,
    },
}

impl From<SubscribeError> for crate::error::ConnectionError {
    fn from(e: SubscribeError) -> Self {
        match e {
            SubscribeError::Closed => crate::error::ConnectionError::Gone,
            SubscribeError::TooMany { max } => {
                crate::error::ConnectionError::TooManyChannels { max }
            }
        }
    }
}

/// What [`Channels::remove_connection`] did.
#[derive(Debug, Default)]
pub struct Removed {
    /// The channels the connection was in.
    pub channels: Vec<Arc<str>>,
    /// Those with no local subscriber left.
    pub emptied: Vec<Arc<str>>,
}

/// One channel's local subscribers.
#[derive(Debug, Default)]
struct Members {
    conns: HashMap<ConnectionId, Arc<Connection>>,
    /// Stamped (from [`Channels::stamps`], unique across channels) at every change.
    stamp: u64,
    /// `conns` in descriptor order, kept for write-through fan-outs until the next change
    /// (see [`crate::conn::ordered`]).
    ordered: Option<Ordered>,
}

impl Members {
    /// Records a change; returns the kept list it invalidates, to be dropped outside the lock.
    fn changed(&mut self, stamp: u64) -> Option<Ordered> {
        self.stamp = stamp;
        self.ordered.take()
    }
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Channels {
    map: DashMap<Arc<str>, Members>,
    /// Source of [`Members::stamp`].
    stamps: AtomicU64,
}

impl Channels {
    /// No channels.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `conn` to `name` (idempotent). Returns true when it was not subscribed before.
    pub fn subscribe(
        &self,
        name: &str,
        conn: &Arc<Connection>,
        max_per_connection: usize,
    ) -> Result<bool, SubscribeError> {
        let mut list = conn.channels_lock();
        if conn.outbox.is_closed() {
            return Err(SubscribeError::Closed);
        }
        if list.iter().any(|c| &**c == name) {
            return Ok(false);
        }
        if list.len() >= max_per_connection {
            return Err(SubscribeError::TooMany {
                max: max_per_connection,
            });
        }
        let key: Arc<str> = match self.map.get(name) {
            Some(entry) => Arc::clone(entry.key()),
            None => Arc::from(name),
        };
        let stamp = self.next_stamp();
        let stale = {
            let mut members = self.map.entry(Arc::clone(&key)).or_default();
            members.conns.insert(conn.id, Arc::clone(conn));
            members.changed(stamp)
        };
        drop(stale);
        list.push(key);
        Ok(true)
    }

    /// Removes `conn` from `name`. Returns true when it was subscribed.
    pub fn unsubscribe(&self, name: &str, conn: &Connection) -> bool {
        let mut list = conn.channels_lock();
        let Some(pos) = list.iter().position(|c| &**c == name) else {
            return false;
        };
        list.swap_remove(pos);
        self.remove_member(name, &conn.id);
        true
    }

    /// Removes a closed connection from every channel it was in; returns those channels, and
    /// the ones among them that have no local subscriber left.
    pub fn remove_connection(&self, conn: &Connection) -> Removed {
        let names = std::mem::take(&mut *conn.channels_lock());
        let emptied = names
            .iter()
            .filter(|name| self.remove_member(name, &conn.id))
            .cloned()
            .collect();
        Removed {
            channels: names,
            emptied,
        }
    }

    fn next_stamp(&self) -> u64 {
        self.stamps.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Removes one member; true when the channel became empty.
    fn remove_member(&self, name: &str, id: &ConnectionId) -> bool {
        let stamp = self.next_stamp();
        let mut emptied = false;
        // Whatever the change lets go of (a kept list, the channel's record) is dropped after
        // the shard's lock: it may hold thousands of references.
        let mut stale = None;
        let mut gone = None;
        if let dashmap::mapref::entry::Entry::Occupied(mut e) = self.map.entry(Arc::from(name)) {
            let members = e.get_mut();
            members.conns.remove(id);
            stale = members.changed(stamp);
            if members.conns.is_empty() {
                gone = Some(e.remove());
                emptied = true;
            }
        }
        drop((stale, gone));
        emptied
    }

    /// Calls `f` for every subscriber of `name`, holding only that channel's shard.
    pub fn for_each_subscriber(&self, name: &str, mut f: impl FnMut(&Arc<Connection>)) {
        if let Some(subs) = self.map.get(name) {
            for conn in subs.conns.values() {
                f(conn);
            }
        }
    }

    /// The subscribers of `name` in socket-descriptor order (see [`crate::conn::ordered`]):
    /// the list kept since the channel last changed, or a new one, kept unless the channel
    /// changed meanwhile. The channel's shard is held only to copy its members or store
    /// the list.
    pub fn ordered_subscribers(&self, name: &str) -> Ordered {
        let (stamp, conns) = match self.map.get(name) {
            None => return Arc::from([]),
            Some(m) => {
                if let Some(list) = &m.ordered {
                    return Arc::clone(list);
                }
                (m.stamp, m.conns.values().cloned().collect::<Vec<_>>())
            }
        };
        let list = ordered::by_descriptor(conns);
        if let Some(mut m) = self.map.get_mut(name) {
            if m.stamp == stamp {
                m.ordered = Some(Arc::clone(&list));
            }
        }
        list
    }

    /// Local subscribers of `name`.
    pub fn subscriber_count(&self, name: &str) -> usize {
        self.map.get(name).map(|s| s.conns.len()).unwrap_or(0)
    }

    /// Channels with at least one local subscriber.
    pub fn channel_count(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::id::NodeTag;

    fn conn() -> Arc<Connection> {
        let id = ConnectionId::generate(NodeTag::of("t")).expect("rng");
        Arc::new(Connection::new(
            id,
            0,
            "127.0.0.1".parse().expect("ip"),
            None,
            "h".into(),
            None,
        ))
    }

    #[test]
    fn names() {
        assert!(validate_name("room:42").is_ok());
        assert!(validate_name("a.b-c_d@e=f+g").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("has space").is_err());
        assert!(validate_name("slash/no").is_err());
        assert!(validate_name(&"x".repeat(129)).is_err());
    }

    #[test]
    fn subscribe_unsubscribe_cleanup() {
        let ch = Channels::new();
        let a = conn();
        let b = conn();
        assert_eq!(ch.subscribe("r", &a, 10), Ok(true));
        assert_eq!(ch.subscribe("r", &a, 10), Ok(false));
        assert_eq!(ch.subscribe("r", &b, 10), Ok(true));
        assert_eq!(ch.subscribe("s", &a, 10), Ok(true));
        assert_eq!(ch.subscriber_count("r"), 2);
        assert!(ch.unsubscribe("r", &b));
        assert!(!ch.unsubscribe("r", &b));
        assert_eq!(ch.subscriber_count("r"), 1);
        a.outbox.close();
        let removed = ch.remove_connection(&a);
        assert_eq!(removed.channels.len(), 2);
        assert_eq!(removed.emptied.len(), 2);
        assert_eq!(ch.channel_count(), 0);
        assert_eq!(ch.subscribe("r", &a, 10), Err(SubscribeError::Closed));
    }

    #[test]
    fn a_channels_ordered_list_is_kept_until_its_members_change() {
        let ch = Channels::new();
        let (a, b) = (conn(), conn());
        assert!(ch.ordered_subscribers("r").is_empty(), "no such channel");
        assert_eq!(ch.subscribe("r", &a, 10), Ok(true));
        let first = ch.ordered_subscribers("r");
        assert_eq!(first.len(), 1);
        assert!(Arc::ptr_eq(&first, &ch.ordered_subscribers("r")), "kept");
        // Another channel's change leaves it alone.
        assert_eq!(ch.subscribe("s", &b, 10), Ok(true));
        assert!(Arc::ptr_eq(&first, &ch.ordered_subscribers("r")));
        assert_eq!(ch.subscribe("r", &b, 10), Ok(true));
        let second = ch.ordered_subscribers("r");
        assert_eq!(second.len(), 2, "a subscribe drops the kept list");
        assert!(ch.unsubscribe("r", &b));
        assert_eq!(
            ch.ordered_subscribers("r").len(),
            1,
            "so does an unsubscribe"
        );
        drop((first, second));
        a.outbox.close();
        ch.remove_connection(&a);
        assert!(ch.ordered_subscribers("r").is_empty());
        assert_eq!(Arc::strong_count(&a), 1, "nothing kept holds a gone member");
    }

    #[test]
    fn per_connection_limit() {
        let ch = Channels::new();
        let a = conn();
        assert_eq!(ch.subscribe("a", &a, 1), Ok(true));
        assert_eq!(
            ch.subscribe("b", &a, 1),
            Err(SubscribeError::TooMany { max: 1 })
        );
    }
}
