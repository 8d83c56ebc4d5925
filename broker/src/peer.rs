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
    /// `limit`. `None`: no usable answer (silence, an error status, or garbage all count as no
    /// answer).
    fn ask<'a>(
        &'a self,
        control_url: &'a str,
        limit: Duration,
    ) -> BoxFuture<'a, Option<PeerAnswer>>;
}

/// What a peer said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAnswer {
    /// It reaches Redis now.
    pub reaches_redis: bool,
    /// For how long every one of its heartbeats has succeeded: a peer can reap only after a
    /// full `node_ttl` of them, so this says how soon it could.
    pub healthy_for: Duration,
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
    /// For how long every one of its heartbeats has succeeded.
    pub healthy_for: Duration,
}
