//! The binary wire format between nodes (over Redis pub/sub). Versioned, compact, and decoded
//! without panicking: garbage is an error, never a crash.
//!
//! Every message starts with `version: u8` (2) and `kind: u8`. Integers are big-endian; byte
//! strings are a `u32` length then the bytes; a node tag is 5 raw bytes; a connection id is its
//! 18 raw bytes. An operation's result is `code: u8` (0: success, else a
//! [`ConnectionError::code`]) followed by the outcome or the error's fields, so the caller
//! rebuilds the very error the owner returned. See ARCHITECTURE.md ("Cluster wire format").

use bytes::Bytes;

use crate::conn::connection::ConnectionInfo;
use crate::conn::id::{ConnectionId, NodeTag};
use crate::conn::op::{ConnOp, Listed, OpOutcome};
use crate::error::ConnectionError;

/// Current wire version (2: typed results, channel names in publishes).
pub const VERSION: u8 = 2;
/// Largest byte string a message may carry (a message is at most this plus a few headers).
pub const MAX_FIELD_BYTES: usize = 64 << 20;
/// Most items one `PostMany` (or its answer) may carry.
pub const MAX_POST_MANY: usize = 1_000_000;

/// A message between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// An operation on a connection owned by the receiving node.
    Request {
        /// Correlates the reply.
        req_id: u64,
        /// Where to send the reply.
        reply_to: NodeTag,
        /// The connection.
        conn: ConnectionId,
        /// What to do.
        op: ConnOp,
    },
    /// The owner's answer to a request: exactly what its local operation returned.
    Reply {
        /// The request's id.
        req_id: u64,
        /// The outcome.
        result: Result<OpOutcome, ConnectionError>,
    },
    /// A channel publish.
    Publish {
        /// The publishing node, which delivered locally already.
        origin: NodeTag,
        /// The channel.
        channel: String,
        /// A connection not to deliver to.
        exclude: Option<ConnectionId>,
        /// The exact bytes to send.
        payload: Bytes,
    },
    /// A publish to a channel with history, as Redis sent it: the offset and epoch were added
    /// by the script that assigned them (see `cluster::history`), so every node, the
    /// publisher's included, receives the channel's messages in offset order.
    HistoryPublish {
        /// The publishing node.
        origin: NodeTag,
        /// The channel.
        channel: String,
        /// A connection not to deliver to.
        exclude: Option<ConnectionId>,
        /// The exact bytes published.
        payload: Bytes,
        /// The channel's epoch.
        epoch: String,
        /// The message's offset.
        offset: u64,
    },
    /// A channel's join or leave message, sent to its subscribers as it is (no envelope
    /// added, no offset).
    ChannelEvent {
        /// The node of the connection that joined or left.
        origin: NodeTag,
        /// The channel.
        channel: String,
        /// The connection that joined or left (not told).
        exclude: Option<ConnectionId>,
        /// The message.
        payload: Bytes,
    },
    /// A broadcast to every connection of every node.
    Broadcast {
        /// The publishing node, which delivered locally already.
        origin: NodeTag,
        /// A connection not to deliver to.
        exclude: Option<ConnectionId>,
        /// The exact bytes to send.
        payload: Bytes,
    },
    /// "How many local subscribers has this channel?"
    CountQuery {
        /// Correlates the answer.
        req_id: u64,
        /// Where to send the answer.
        reply_to: NodeTag,
        /// The channel.
        channel: String,
    },
    /// The answer to a [`Msg::CountQuery`].
    Count {
        /// The query's id.
        req_id: u64,
        /// Local subscribers of the answering node.
        count: u64,
    },
}

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Ended before a field did.
    #[error("truncated message")]
    Truncated,
    /// A version this node does not speak.
    #[error("unsupported wire version {0}")]
    Version(u8),
    /// An unknown kind, op, outcome or error byte.
    #[error("unknown {what} {value}")]
    Unknown {
        /// `kind`, `op`, `outcome` or `error`.
        what: &'static str,
        /// The byte.
        value: u8,
    },
    /// A field that is not what it should be (UTF-8, a connection id, a length).
    #[error("malformed field: {0}")]
    Malformed(&'static str),
    /// Bytes left after the message.
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

const KIND_REQUEST: u8 = 1;
const KIND_REPLY: u8 = 2;
const KIND_PUBLISH: u8 = 3;
const KIND_BROADCAST: u8 = 4;
const KIND_COUNT_QUERY: u8 = 5;
const KIND_COUNT: u8 = 6;
const KIND_HISTORY_PUBLISH: u8 = 7;
const KIND_CHANNEL_EVENT: u8 = 8;

const OP_POST: u8 = 1;
const OP_GET: u8 = 2;
const OP_DELETE: u8 = 3;
const OP_SUBSCRIBE: u8 = 4;
const OP_UNSUBSCRIBE: u8 = 5;
const OP_POST_MANY: u8 = 6;
const OP_LIST: u8 = 7;
const OP_LIST_CHANNEL: u8 = 8;

const OUTCOME_DONE: u8 = 1;
const OUTCOME_INFO: u8 = 2;
const OUTCOME_EACH: u8 = 3;
const OUTCOME_LISTED: u8 = 4;
/// GetConnection's answer with `authorizer` (since the authorizers; `OUTCOME_INFO` has none).
const OUTCOME_INFO_AUTHORIZER: u8 = 5;

/// The code of a success in a result.
const OK: u8 = 0;

impl Msg {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(64);
        w.push(VERSION);
        match self {
            Msg::Request {
                req_id,
                reply_to,
                conn,
                op,
            } => {
                w.push(KIND_REQUEST);
                w.extend_from_slice(&req_id.to_be_bytes());
                w.extend_from_slice(&reply_to.to_bytes());
                w.extend_from_slice(&conn.to_bytes());
                put_op(&mut w, op);
            }
            Msg::Reply { req_id, result } => {
                w.push(KIND_REPLY);
                w.extend_from_slice(&req_id.to_be_bytes());
                match result {
                    Ok(outcome) => {
                        w.push(OK);
                        put_outcome(&mut w, outcome);
                    }
                    Err(e) => put_error(&mut w, e),
                }
            }
            Msg::Publish {
                origin,
                channel,
                exclude,
                payload,
            } => {
                w.push(KIND_PUBLISH);
                w.extend_from_slice(&origin.to_bytes());
                put_bytes(&mut w, channel.as_bytes());
                put_exclude(&mut w, *exclude);
                put_bytes(&mut w, payload);
            }
            Msg::HistoryPublish {
                origin,
                channel,
                exclude,
                payload,
                epoch,
                offset,
            } => {
                w = history_prefix(*origin, channel, *exclude, payload);
                put_bytes(&mut w, epoch.as_bytes());
                w.extend_from_slice(&offset.to_be_bytes());
            }
            Msg::ChannelEvent {
                origin,
                channel,
                exclude,
                payload,
            } => {
                w.push(KIND_CHANNEL_EVENT);
                w.extend_from_slice(&origin.to_bytes());
                put_bytes(&mut w, channel.as_bytes());
                put_exclude(&mut w, *exclude);
                put_bytes(&mut w, payload);
            }
            Msg::Broadcast {
                origin,
                exclude,
                payload,
            } => {
                w.push(KIND_BROADCAST);
                w.extend_from_slice(&origin.to_bytes());
                put_exclude(&mut w, *exclude);
                put_bytes(&mut w, payload);
            }
            Msg::CountQuery {
                req_id,
                reply_to,
                channel,
            } => {
                w.push(KIND_COUNT_QUERY);
                w.extend_from_slice(&req_id.to_be_bytes());
                w.extend_from_slice(&reply_to.to_bytes());
                put_bytes(&mut w, channel.as_bytes());
            }
            Msg::Count { req_id, count } => {
                w.push(KIND_COUNT);
                w.extend_from_slice(&req_id.to_be_bytes());
                w.extend_from_slice(&count.to_be_bytes());
            }
        }
        w
    }

    /// Decodes a message; any malformation is an error.
    pub fn decode(bytes: &[u8]) -> Result<Msg, WireError> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u8()?;
        if version != VERSION {
            return Err(WireError::Version(version));
        }
        let msg = match r.u8()? {
            KIND_REQUEST => Msg::Request {
                req_id: r.u64()?,
                reply_to: r.tag()?,
                conn: r.conn()?,
                op: r.op()?,
            },
            KIND_REPLY => {
                let req_id = r.u64()?;
                let result = match r.u8()? {
                    OK => Ok(r.outcome()?),
                    code => Err(r.error(code)?),
                };
                Msg::Reply { req_id, result }
            }
            KIND_PUBLISH => Msg::Publish {
                origin: r.tag()?,
                channel: r.string()?,
                exclude: r.exclude()?,
                payload: Bytes::copy_from_slice(r.bytes()?),
            },
            KIND_HISTORY_PUBLISH => Msg::HistoryPublish {
                origin: r.tag()?,
                channel: r.string()?,
                exclude: r.exclude()?,
                payload: Bytes::copy_from_slice(r.bytes()?),
                epoch: r.string()?,
                offset: r.u64()?,
            },
            KIND_CHANNEL_EVENT => Msg::ChannelEvent {
                origin: r.tag()?,
                channel: r.string()?,
                exclude: r.exclude()?,
                payload: Bytes::copy_from_slice(r.bytes()?),
            },
            KIND_BROADCAST => Msg::Broadcast {
                origin: r.tag()?,
                exclude: r.exclude()?,
                payload: Bytes::copy_from_slice(r.bytes()?),
            },
            KIND_COUNT_QUERY => Msg::CountQuery {
                req_id: r.u64()?,
                reply_to: r.tag()?,
                channel: r.string()?,
            },
            KIND_COUNT => Msg::Count {
                req_id: r.u64()?,
                count: r.u64()?,
            },
            value => {
                return Err(WireError::Unknown {
                    what: "kind",
                    value,
                })
            }
        };
        match bytes.len() - r.pos {
            0 => Ok(msg),
            n => Err(WireError::Trailing(n)),
        }
    }
}

/// The start of a [`Msg::HistoryPublish`], up to its payload: the publish script appends the
/// epoch (`bytes`) and the offset (`u64`) it assigned.
pub fn history_prefix(
    origin: NodeTag,
    channel: &str,
    exclude: Option<ConnectionId>,
    payload: &[u8],
) -> Vec<u8> {
    let mut w = Vec::with_capacity(32 + channel.len() + payload.len());
    w.push(VERSION);
    w.push(KIND_HISTORY_PUBLISH);
    w.extend_from_slice(&origin.to_bytes());
    put_bytes(&mut w, channel.as_bytes());
    put_exclude(&mut w, exclude);
    put_bytes(&mut w, payload);
    w
}

fn put_bytes(w: &mut Vec<u8>, b: &[u8]) {
    w.extend_from_slice(&(b.len() as u32).to_be_bytes());
    w.extend_from_slice(b);
}

fn put_exclude(w: &mut Vec<u8>, exclude: Option<ConnectionId>) {
    match exclude {
        Some(c) => {
            w.push(1);
            w.extend_from_slice(&c.to_bytes());
        }
        None => w.push(0),
    }
}

fn put_op(w: &mut Vec<u8>, op: &ConnOp) {
    match op {
        ConnOp::Post(p) => {
            w.push(OP_POST);
            put_bytes(w, p);
        }
        ConnOp::Get => w.push(OP_GET),
        ConnOp::Delete { code, reason } => {
            w.push(OP_DELETE);
            w.extend_from_slice(&code.to_be_bytes());
            put_bytes(w, reason.as_bytes());
        }
        ConnOp::Subscribe(c) => {
            w.push(OP_SUBSCRIBE);
            put_bytes(w, c.as_bytes());
        }
        ConnOp::Unsubscribe(c) => {
            w.push(OP_UNSUBSCRIBE);
            put_bytes(w, c.as_bytes());
        }
        ConnOp::PostMany(items) => {
            w.push(OP_POST_MANY);
            w.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for (c, p) in items {
                w.extend_from_slice(&c.to_bytes());
                put_bytes(w, p);
            }
        }
        ConnOp::List { after, limit } => {
            w.push(OP_LIST);
            w.extend_from_slice(&after.to_bytes());
            w.extend_from_slice(&limit.to_be_bytes());
        }
        ConnOp::ListChannel {
            channel,
            after,
            limit,
        } => {
            w.push(OP_LIST_CHANNEL);
            put_bytes(w, channel.as_bytes());
            w.extend_from_slice(&after.to_bytes());
            w.extend_from_slice(&limit.to_be_bytes());
        }
    }
}

/// The info, then its `authorizer` (a flag, then its JSON text).
fn put_info_authorizer(w: &mut Vec<u8>, info: &ConnectionInfo) {
    put_info(w, info);
    match &info.authorizer {
        Some(a) => {
            w.push(1);
            put_bytes(w, a.to_string().as_bytes());
        }
        None => w.push(0),
    }
}

fn put_info(w: &mut Vec<u8>, info: &ConnectionInfo) {
    w.extend_from_slice(&info.connected_at_ms.to_be_bytes());
    w.extend_from_slice(&info.last_active_at_ms.to_be_bytes());
    put_bytes(w, info.source_ip.as_bytes());
    match &info.user_agent {
        Some(ua) => {
            w.push(1);
            put_bytes(w, ua.as_bytes());
        }
        None => w.push(0),
    }
}

fn put_outcome(w: &mut Vec<u8>, outcome: &OpOutcome) {
    match outcome {
        OpOutcome::Done => w.push(OUTCOME_DONE),
        OpOutcome::Info(info) => {
            w.push(OUTCOME_INFO_AUTHORIZER);
            put_info_authorizer(w, info);
        }
        OpOutcome::Listed { items, more } => {
            w.push(OUTCOME_LISTED);
            w.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for item in items {
                w.extend_from_slice(&item.id.to_bytes());
                put_info_authorizer(w, &item.info);
                w.extend_from_slice(&(item.channels.len() as u32).to_be_bytes());
                for c in &item.channels {
                    put_bytes(w, c.as_bytes());
                }
            }
            w.push(u8::from(*more));
        }
        OpOutcome::Each(results) => {
            w.push(OUTCOME_EACH);
            w.extend_from_slice(&(results.len() as u32).to_be_bytes());
            for r in results {
                match r {
                    Ok(()) => w.push(OK),
                    Err(e) => put_error(w, e),
                }
            }
        }
    }
}

fn put_error(w: &mut Vec<u8>, e: &ConnectionError) {
    let (a, b, text) = e.fields();
    w.push(e.code());
    w.extend_from_slice(&a.to_be_bytes());
    w.extend_from_slice(&b.to_be_bytes());
    put_bytes(w, text.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        let s = self.bytes.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }

    fn i64(&mut self) -> Result<i64, WireError> {
        Ok(self.u64()? as i64)
    }

    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.u32()? as usize;
        if len > MAX_FIELD_BYTES {
            return Err(WireError::Malformed("field length"));
        }
        self.take(len)
    }

    fn string(&mut self) -> Result<String, WireError> {
        std::str::from_utf8(self.bytes()?)
            .map(str::to_string)
            .map_err(|_| WireError::Malformed("utf-8"))
    }

    fn tag(&mut self) -> Result<NodeTag, WireError> {
        NodeTag::from_bytes(self.take(NodeTag::LEN)?).ok_or(WireError::Malformed("node tag"))
    }

    fn conn(&mut self) -> Result<ConnectionId, WireError> {
        ConnectionId::from_bytes(self.take(ConnectionId::LEN)?)
            .ok_or(WireError::Malformed("connection id"))
    }

    fn exclude(&mut self) -> Result<Option<ConnectionId>, WireError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.conn()?)),
            _ => Err(WireError::Malformed("exclude flag")),
        }
    }

    fn count(&mut self) -> Result<usize, WireError> {
        let n = self.u32()? as usize;
        if n > MAX_POST_MANY {
            return Err(WireError::Malformed("item count"));
        }
        Ok(n)
    }

    fn op(&mut self) -> Result<ConnOp, WireError> {
        Ok(match self.u8()? {
            OP_POST => ConnOp::Post(Bytes::copy_from_slice(self.bytes()?)),
            OP_GET => ConnOp::Get,
            OP_DELETE => ConnOp::Delete {
                code: self.u16()?,
                reason: self.string()?,
            },
            OP_SUBSCRIBE => ConnOp::Subscribe(self.string()?),
            OP_UNSUBSCRIBE => ConnOp::Unsubscribe(self.string()?),
            OP_POST_MANY => {
                let n = self.count()?;
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    let c = self.conn()?;
                    items.push((c, Bytes::copy_from_slice(self.bytes()?)));
                }
                ConnOp::PostMany(items)
            }
            OP_LIST => ConnOp::List {
                after: self.conn()?,
                limit: self.u32()?,
            },
            OP_LIST_CHANNEL => ConnOp::ListChannel {
                channel: self.string()?,
                after: self.conn()?,
                limit: self.u32()?,
            },
            value => return Err(WireError::Unknown { what: "op", value }),
        })
    }

    fn info(&mut self) -> Result<ConnectionInfo, WireError> {
        Ok(ConnectionInfo {
            connected_at_ms: self.i64()?,
            last_active_at_ms: self.i64()?,
            source_ip: self.string()?,
            user_agent: match self.u8()? {
                0 => None,
                1 => Some(self.string()?),
                _ => return Err(WireError::Malformed("user agent flag")),
            },
            authorizer: None,
        })
    }

    fn info_authorizer(&mut self) -> Result<ConnectionInfo, WireError> {
        let mut info = self.info()?;
        info.authorizer = match self.u8()? {
            0 => None,
            1 => Some(
                serde_json::from_slice(self.bytes()?)
                    .map_err(|_| WireError::Malformed("authorizer"))?,
            ),
            _ => return Err(WireError::Malformed("authorizer flag")),
        };
        Ok(info)
    }

    fn outcome(&mut self) -> Result<OpOutcome, WireError> {
        Ok(match self.u8()? {
            OUTCOME_DONE => OpOutcome::Done,
            OUTCOME_INFO => OpOutcome::Info(self.info()?),
            OUTCOME_INFO_AUTHORIZER => OpOutcome::Info(self.info_authorizer()?),
            OUTCOME_LISTED => {
                let n = self.count()?;
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    let id = self.conn()?;
                    let info = self.info_authorizer()?;
                    let k = self.count()?;
                    let mut channels = Vec::with_capacity(k.min(128));
                    for _ in 0..k {
                        channels.push(self.string()?);
                    }
                    items.push(Listed { id, info, channels });
                }
                let more = match self.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(WireError::Malformed("more flag")),
                };
                OpOutcome::Listed { items, more }
            }
            OUTCOME_EACH => {
                let n = self.count()?;
                let mut results = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    results.push(match self.u8()? {
                        OK => Ok(()),
                        code => Err(self.error(code)?),
                    });
                }
                OpOutcome::Each(results)
            }
            value => {
                return Err(WireError::Unknown {
                    what: "outcome",
                    value,
                })
            }
        })
    }

    fn error(&mut self, code: u8) -> Result<ConnectionError, WireError> {
        let (a, b, text) = (self.u64()?, self.u64()?, self.string()?);
        ConnectionError::from_parts(code, a, b, text).ok_or(WireError::Unknown {
            what: "error",
            value: code,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::id::InvalidConnectionId;

    fn samples() -> Vec<Msg> {
        let tag = NodeTag::of("a");
        let conn = ConnectionId::generate(NodeTag::of("b")).expect("rng");
        let request = |req_id, op| Msg::Request {
            req_id,
            reply_to: tag,
            conn,
            op,
        };
        let reply = |req_id, result| Msg::Reply { req_id, result };
        vec![
            request(7, ConnOp::Post(Bytes::from_static(b"hello"))),
            request(8, ConnOp::Get),
            request(
                9,
                ConnOp::Delete {
                    code: 4000,
                    reason: "bye".into(),
                },
            ),
            request(10, ConnOp::Subscribe("room:1".into())),
            request(11, ConnOp::Unsubscribe("room:1".into())),
            request(
                13,
                ConnOp::PostMany(vec![(conn, Bytes::from_static(b"a")), (conn, Bytes::new())]),
            ),
            reply(7, Ok(OpOutcome::Done)),
            reply(7, Err(ConnectionError::Gone)),
            reply(7, Err(ConnectionError::InvalidChannel("bad name".into()))),
            reply(7, Err(ConnectionError::PayloadTooLarge { size: 9, max: 8 })),
            reply(
                8,
                Ok(OpOutcome::Info(ConnectionInfo {
                    connected_at_ms: 1,
                    last_active_at_ms: -2,
                    source_ip: "127.0.0.1".into(),
                    user_agent: Some("ua".into()),
                    authorizer: Some(serde_json::json!({"principalId": "u", "n": 1})),
                })),
            ),
            request(
                14,
                ConnOp::List {
                    after: ConnectionId::first_of(tag),
                    limit: 100,
                },
            ),
            request(
                15,
                ConnOp::ListChannel {
                    channel: "news:eu".into(),
                    after: ConnectionId::first_of(tag),
                    limit: 100,
                },
            ),
            reply(
                14,
                Ok(OpOutcome::Listed {
                    items: vec![Listed {
                        id: conn,
                        info: ConnectionInfo {
                            connected_at_ms: 3,
                            last_active_at_ms: 4,
                            source_ip: "::1".into(),
                            user_agent: None,
                            authorizer: None,
                        },
                        channels: vec!["a".into(), "b:c".into()],
                    }],
                    more: true,
                }),
            ),
            reply(
                13,
                Ok(OpOutcome::Each(vec![
                    Ok(()),
                    Err(ConnectionError::LimitExceeded),
                    Err(ConnectionError::BadId(InvalidConnectionId("x".into()))),
                ])),
            ),
            Msg::Publish {
                origin: tag,
                channel: "news".into(),
                exclude: Some(conn),
                payload: Bytes::from_static(&[0, 255]),
            },
            Msg::Broadcast {
                origin: tag,
                exclude: None,
                payload: Bytes::from_static(b"all"),
            },
            Msg::ChannelEvent {
                origin: tag,
                channel: "room".into(),
                exclude: Some(conn),
                payload: Bytes::from_static(br#"{"type":"join"}"#),
            },
            Msg::HistoryPublish {
                origin: tag,
                channel: "news:eu".into(),
                exclude: Some(conn),
                payload: Bytes::from_static(b"{}"),
                epoch: "3f9a0c1b2d4e".into(),
                offset: (1 << 40) + 7,
            },
            Msg::CountQuery {
                req_id: 12,
                reply_to: tag,
                channel: "news".into(),
            },
            Msg::Count {
                req_id: 12,
                count: 42,
            },
        ]
    }

    #[test]
    fn round_trips() {
        for m in samples() {
            assert_eq!(Msg::decode(&m.encode()).expect("decode"), m);
        }
    }

    #[test]
    fn is_compact() {
        let tag = NodeTag::of("a");
        let m = Msg::Broadcast {
            origin: tag,
            exclude: None,
            payload: Bytes::from(vec![b'x'; 100]),
        };
        // version, kind, tag, flag, length, payload.
        assert_eq!(m.encode().len(), 1 + 1 + 5 + 1 + 4 + 100);
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        assert!(matches!(Msg::decode(&[]), Err(WireError::Truncated)));
        assert!(matches!(Msg::decode(&[1, 1]), Err(WireError::Version(1))));
        assert!(matches!(
            Msg::decode(&[VERSION, 99]),
            Err(WireError::Unknown { what: "kind", .. })
        ));
        // An error code this node does not know.
        let mut unknown = vec![VERSION, KIND_REPLY];
        unknown.extend_from_slice(&0u64.to_be_bytes());
        unknown.push(200);
        unknown.extend_from_slice(&[0; 16]);
        unknown.extend_from_slice(&0u32.to_be_bytes());
        assert!(matches!(
            Msg::decode(&unknown),
            Err(WireError::Unknown { what: "error", .. })
        ));
        for m in samples() {
            let bytes = m.encode();
            // Every truncation fails cleanly.
            for n in 0..bytes.len() {
                assert!(Msg::decode(&bytes[..n]).is_err(), "{m:?} cut at {n}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(matches!(Msg::decode(&longer), Err(WireError::Trailing(1))));
        }
        // Huge declared lengths do not allocate.
        let mut evil = vec![VERSION, KIND_PUBLISH];
        evil.extend_from_slice(&NodeTag::of("a").to_bytes());
        evil.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(Msg::decode(&evil).is_err());
        // Pseudo-random bytes.
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let len = (x % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = Msg::decode(&bytes);
        }
    }
}
