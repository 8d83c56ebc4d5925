//! The shared record of one open connection: who it is, when it came, and its outbox.
//!
//! Held in the registry and by the connection's own task; the control API reads it to answer
//! GetConnection and pushes into its outbox. Kept small: idle connections must stay cheap.

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::conn::id::ConnectionId;
use crate::conn::outbox::Outbox;

/// See the module documentation.
#[derive(Debug)]
pub struct Connection {
    /// The id.
    pub id: ConnectionId,
    /// The id's text form, cached for events and logs.
    pub id_text: Box<str>,
    /// When the upgrade completed, ms since the epoch.
    pub connected_at_ms: i64,
    /// Last inbound or outbound data message, ms since the epoch.
    last_active_ms: AtomicI64,
    /// Client address of the TCP connection.
    pub source_ip: IpAddr,
    /// The client's `User-Agent`, when sent.
    pub user_agent: Option<Box<str>>,
    /// `domainName` for events: configured, or the client's `Host`.
    pub domain_name: Box<str>,
    /// `context` from the `$connect` response: `requestContext.authorizer` of later events.
    pub authorizer: Option<Box<serde_json::Value>>,
    /// Messages waiting to be written to the client.
    pub outbox: Outbox,
    /// Channels this connection is subscribed to (empty: no allocation).
    channels: Mutex<Vec<Arc<str>>>,
}

impl Connection {
    /// A record for a connection that just completed its upgrade.
    pub fn new(
        id: ConnectionId,
        connected_at_ms: i64,
        source_ip: IpAddr,
        user_agent: Option<String>,
        domain_name: String,
        authorizer: Option<serde_json::Value>,
    ) -> Self {
        Connection {
            id_text: id.to_string().into_boxed_str(),
            id,
            connected_at_ms,
            last_active_ms: AtomicI64::new(connected_at_ms),
            source_ip,
            user_agent: user_agent.map(String::into_boxed_str),
            domain_name: domain_name.into_boxed_str(),
            authorizer: authorizer.map(Box::new),
            outbox: Outbox::new(),
            channels: Mutex::new(Vec::new()),
        }
    }

    /// Records activity now.
    pub fn touch(&self, now_ms: i64) {
        self.last_active_ms.store(now_ms, Ordering::Relaxed);
    }

    /// The connection's channel list; see `channels` for the locking rule.
    pub(crate) fn channels_lock(&self) -> MutexGuard<'_, Vec<Arc<str>>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Last activity, ms since the epoch.
    pub fn last_active_ms(&self) -> i64 {
        self.last_active_ms.load(Ordering::Relaxed)
    }

    /// What GetConnection answers about it now.
    pub fn info(&self) -> ConnectionInfo {
        ConnectionInfo {
            connected_at_ms: self.connected_at_ms,
            last_active_at_ms: self.last_active_ms(),
            source_ip: self.source_ip.to_string(),
            user_agent: self.user_agent.as_deref().map(str::to_string),
            authorizer: self.authorizer.as_deref().cloned(),
        }
    }
}

/// What GetConnection returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// ms since the epoch.
    pub connected_at_ms: i64,
    /// ms since the epoch.
    pub last_active_at_ms: i64,
    /// Client address.
    pub source_ip: String,
    /// Client `User-Agent`.
    pub user_agent: Option<String>,
    /// `requestContext.authorizer` of its events (the authorizer's result, `$connect`'s
    /// context), when it has one.
    pub authorizer: Option<serde_json::Value>,
}
