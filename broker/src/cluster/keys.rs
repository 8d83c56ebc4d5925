//! Every Redis key and pub/sub channel name the cluster uses, in one place.
//!
//! | name | type | holds |
//! |---|---|---|
//! | `gangway:nodes` | hash | node tag → node id, for every member |
//! | `gangway:node:{tag}` | string with TTL | the node's liveness (refreshed every heartbeat) |
//! | `gangway:conns:{tag}` | hash | connection id → record, the node's open connections |
//! | `gangway:reap:{tag}` | string with TTL | the survivor reaping a dead node (SET NX) |
//! | `gangway:reaped:{tag}` | string, 1 h TTL | tombstone: a survivor started reaping this node |
//! | `gangway:control` | hash | node tag → control URL, for peer checks |
//! | `gangway:n:{tag}` | channel | the node's inbox: requests to it and answers for it |
//! | `gangway:c:{channel}` | channel | publishes to a Gangway channel |
//! | `gangway:all` | channel | broadcasts and subscriber-count queries |
//! | `{gangway:c:<channel>}:meta` | hash, TTL | a channel's history: `e` epoch, `o` newest offset |
//! | `{gangway:c:<channel>}:log` | list, TTL | its newest messages: `<offset>:<ms>:<payload>` |
//!
//! A channel's history keys hash (their `{…}` tag) to the slot of its pub/sub channel, so in a
//! Redis Cluster the publish script touches one shard and can `SPUBLISH` from it.

use std::fmt::Display;

/// The member list.
pub const NODES: &str = "gangway:nodes";
/// The channel every node listens on.
pub const ALL: &str = "gangway:all";

/// A node's liveness key (`tag` is a [`crate::conn::id::NodeTag`] or its hex text).
pub fn node(tag: impl Display) -> String {
    format!("gangway:node:{tag}")
}

/// A node's connection records.
pub fn conns(tag: impl Display) -> String {
    format!("gangway:conns:{tag}")
}

/// The reaping lock of a dead node.
pub fn reap(tag: impl Display) -> String {
    format!("gangway:reap:{tag}")
}

/// The tombstone a reaper leaves on a node it reaps (the node, if it comes back, closes the
/// connections the backend was told are gone).
pub fn reaped(tag: impl Display) -> String {
    format!("gangway:reaped:{tag}")
}

/// The members' control URLs (tag → URL).
pub const CONTROL: &str = "gangway:control";

/// A node's inbox channel.
pub fn inbox(tag: impl Display) -> String {
    format!("gangway:n:{tag}")
}

/// The Redis channel of a Gangway channel.
pub fn channel(name: &str) -> String {
    format!("gangway:c:{name}")
}

/// A channel's history metadata (epoch, newest offset).
pub fn history_meta(name: &str) -> String {
    format!("{{{}}}:meta", channel(name))
}

/// A channel's kept messages.
pub fn history_log(name: &str) -> String {
    format!("{{{}}}:log", channel(name))
}
