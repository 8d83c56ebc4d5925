//! Operations on one connection, as the node that owns it runs them — asked by this node's
//! control API or, through the cluster, by another node's — and what they answer.

use bytes::Bytes;

use crate::conn::connection::ConnectionInfo;
use crate::conn::id::ConnectionId;
use crate::error::ConnectionError;

/// An operation on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnOp {
    /// PostToConnection with the payload.
    Post(Bytes),
    /// GetConnection.
    Get,
    /// DeleteConnection with a close code and reason.
    Delete {
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// Subscribe to a channel.
    Subscribe(String),
    /// Unsubscribe from a channel.
    Unsubscribe(String),
    /// Several PostToConnection calls for connections of one node, in order (a batch).
    PostMany(Vec<(ConnectionId, Bytes)>),
    /// Up to `limit` of the owner's open connections whose ids sort after `after` (raw bytes),
    /// in id order. Sent to the node that owns the request's connection id (for the first page
    /// of a node, [`ConnectionId::first_of`] that node).
    List {
        /// Exclusive lower bound.
        after: ConnectionId,
        /// Most connections answered.
        limit: u32,
    },
    /// As `List`, only the owner's subscribers of `channel` (presence).
    ListChannel {
        /// The channel.
        channel: String,
        /// Exclusive lower bound.
        after: ConnectionId,
        /// Most connections answered.
        limit: u32,
    },
}

/// One connection as `GET /@connections` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its id.
    pub id: ConnectionId,
    /// GetConnection's fields.
    pub info: ConnectionInfo,
    /// The channels it is subscribed to.
    pub channels: Vec<String>,
}

impl Listed {
    /// The `principalId` of its `requestContext.authorizer`, if it has one.
    pub fn principal(&self) -> Option<&str> {
        self.info
            .authorizer
            .as_ref()
            .and_then(|a| a.get("principalId"))
            .and_then(|p| p.as_str())
    }
}

/// What a successful operation answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpOutcome {
    /// Done; nothing to say.
    Done,
    /// GetConnection's answer.
    Info(ConnectionInfo),
    /// One result per item of a `PostMany`, in order.
    Each(Vec<Result<(), ConnectionError>>),
    /// A `List` page; `more` when the node holds further connections after the last.
    Listed {
        /// The connections, in id order.
        items: Vec<Listed>,
        /// More follow on this node.
        more: bool,
    },
}
