//! Asking another node directly — not through Redis — whether it reaches Redis.
//!
//! A node that loses Redis cannot tell from that alone whether it is cut off alone (the others
//! will reap its connections, so it must close them first) or Redis is down for everyone
//! (nobody can reap, so it keeps serving). Its peers are the second witness. The control API
//! implements [`PeerWitness`] (its credentials, its `GET /@node` endpoint); the cluster only
//! calls it, bounded in time.

use std::time::Duration;

use futures_util::future::BoxFuture;

/// Asks a peer node, over its control API, whether it reaches Redis.
pub trait PeerWitness: Send + Sync + std::fmt::Debug {
    /// Asks the node whose control API is at `control_url` (`http://host:port`), waiting at most
    /// `limit`. `Some(true)`: it reaches Redis now; `Some(false)`: it does not; `None`: no usable
    /// answer (silence, an error status, or garbage all count as no answer).
    fn reaches_redis<'a>(
        &'a self,
        control_url: &'a str,
        limit: Duration,
    ) -> BoxFuture<'a, Option<bool>>;
}

/// What a node says of its own membership (`GET /@node`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterHealth {
    /// Its last heartbeat reached Redis recently (see ARCHITECTURE.md, "The `$disconnect`
    /// contract", for how recently) and it is not fenced: a peer that hears this must fence
    /// itself if it cannot reach Redis.
    pub reaches_redis: bool,
    /// It is fenced: cut off from Redis while its peers reach it, its clients closed.
    pub fenced: bool,
}
