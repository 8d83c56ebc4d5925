//! Delivery to this node's connections: one frame to one connection ([`deliver`]), or one frame
//! to every subscriber of a channel or every connection ([`fan_out`]).
//!
//! Invariants:
//! - a frame is encoded once and every recipient queues the same bytes (a reference count);
//! - no producer ever waits for a client: a full queue is a drop, counted, and the connection's
//!   slow-consumer policy applies;
//! - a fan-out updates its metrics once, not per recipient;
//! - a quiet, bounded fan-out may write straight to idle sockets (see [`write_through`]), but
//!   only when the caller allows it (never on a runtime worker, e.g. a fan-out from Redis).

pub mod channels;
pub mod envelope;
pub mod history;
pub mod join_leave;
pub mod recovery;
pub mod write_through;

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;

use crate::config::Envelope;
use crate::conn::connection::Connection;
use crate::conn::frame;
use crate::conn::id::ConnectionId;
use crate::conn::outbox::PushOutcome;
use crate::conn::uring::UringSender;
use crate::error::ConnectionError;
use crate::state::NodeState;

/// What a publish or broadcast did on this node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanOut {
    /// Connections the frame was queued for (or written to).
    pub recipients: usize,
    /// Recipients whose send queue was full (slow-consumer policy applied).
    pub dropped_queue_full: usize,
    /// Recipients that were closing.
    pub dropped_closing: usize,
    /// The message could not be handed to the cluster (Redis unreachable): only this node's
    /// subscribers got it.
    pub cluster_failed: bool,
}

/// Who a fan-out goes to.
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    /// The subscribers of a channel.
    Channel(&'a str),
    /// Every connection.
    Everyone,
}

/// Queues `data` (encoded once) for this node's `audience` but `exclude`; `source` labels the
/// metrics; `allow_write_through` lets a quiet, bounded fan-out write to idle sockets itself.
pub fn fan_out(
    state: &NodeState,
    audience: Audience<'_>,
    data: &[u8],
    exclude: Option<ConnectionId>,
    source: &'static str,
    allow_write_through: bool,
) -> FanOut {
    let frame = frame::text_or_binary(data);
    fan_out_frame(state, audience, frame, exclude, source, allow_write_through)
}

/// As [`fan_out`], with the frame already encoded.
fn fan_out_frame(
    state: &NodeState,
    audience: Audience<'_>,
    frame: Bytes,
    exclude: Option<ConnectionId>,
    source: &'static str,
    allow_write_through: bool,
) -> FanOut {
    let count = match audience {
        Audience::Channel(name) => state.channels.subscriber_count(name),
        Audience::Everyone => state.registry.len(),
    };
    let write_through = allow_write_through && state.write_through.begin(count);
    let mut fan = FanOutState::new(state, frame, exclude, write_through);
    if write_through {
        // Writing takes microseconds per recipient: do it outside the map's shard locks, which
        // subscribes and new connections (on runtime workers) must not wait for. The list
        // (bounded by `write_through_max_recipients`) is in descriptor order (see
        // `write_through`'s "Order"), and kept for the next fan-out to the same audience while
        // it does not change.
        let recipients = match audience {
            Audience::Channel(name) => state.channels.ordered_subscribers(name),
            Audience::Everyone => state.registry.ordered(),
        };
        fan.write_in_lanes(&recipients);
    } else {
        for_each_recipient(state, audience, |c| fan.push(c));
    }
    state.write_through.end(count, write_through);
    fan.finish(source)
}

/// What a publish did on this node: its fan-out, and where the message sits in the channel's
/// history when the channel keeps one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// This node's fan-out.
    pub fan: FanOut,
    /// The message's offset (channels with history).
    pub offset: Option<u64>,
    /// The channel's epoch (channels with history).
    pub epoch: Option<Arc<str>>,
}

/// Publishes `data` to this node's subscribers of `channel` but `exclude`, as the channel's
/// rule says: raw, or in the JSON envelope; with history, the message gets the next offset
/// and is kept (see [`history`] for the ordering this holds).
pub fn publish(
    state: &NodeState,
    channel: &str,
    data: &[u8],
    exclude: Option<ConnectionId>,
    source: &'static str,
    allow_write_through: bool,
) -> Published {
    let config = state.config();
    let audience = Audience::Channel(channel);
    let Some(rule) = config.channels.get(channel) else {
        let fan = fan_out(state, audience, data, exclude, source, allow_write_through);
        return Published {
            fan,
            ..Published::default()
        };
    };
    if !rule.keeps_history() {
        let frame = match rule.envelope {
            Envelope::None => frame::text_or_binary(data),
            Envelope::Json => {
                frame::encode(frame::OPCODE_TEXT, &envelope::message(channel, None, data))
            }
        };
        let fan = fan_out_frame(state, audience, frame, exclude, source, allow_write_through);
        return Published {
            fan,
            ..Published::default()
        };
    }
    let h = &state.history;
    let log = h.log(channel);
    let mut locked = h.lock(&log);
    let offset = locked.next_offset();
    let epoch = locked.epoch();
    let (frame, payload) = match rule.envelope {
        Envelope::None => {
            let frame = frame::text_or_binary(data);
            let payload = frame.slice(frame.len() - data.len()..);
            (frame, payload)
        }
        Envelope::Json => {
            let at = history::Position {
                offset,
                epoch: &epoch,
            };
            let frame = frame::encode(
                frame::OPCODE_TEXT,
                &envelope::message(channel, Some(at), data),
            );
            (frame, Bytes::copy_from_slice(data))
        }
    };
    let fan = fan_out_frame(
        state,
        audience,
        frame.clone(),
        exclude,
        source,
        allow_write_through,
    );
    let limits = &config.limits;
    locked.append(
        rule,
        payload,
        frame,
        limits.history_max_bytes,
        limits.history_max_messages,
    );
    drop(locked);
    sweep(state, &config);
    let m = &state.metrics;
    let (bytes, messages) = h.usage();
    m.history_bytes
        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    m.history_messages
        .set(i64::try_from(messages).unwrap_or(i64::MAX));
    m.history_evicted_total.inc_by(h.take_evicted() as u64);
    Published {
        fan,
        offset: Some(offset),
        epoch: Some(epoch),
    }
}

/// The frame subscribers of `channel` get for `data`: the payload as it is, or in the JSON
/// envelope (with its position when the channel keeps history).
fn channel_frame(
    channel: &str,
    envelope: Envelope,
    at: Option<history::Position<'_>>,
    data: &[u8],
) -> Bytes {
    match envelope {
        Envelope::None => frame::text_or_binary(data),
        Envelope::Json => frame::encode(frame::OPCODE_TEXT, &envelope::message(channel, at, data)),
    }
}

/// Cluster mode: delivers a message of a channel with history as Redis sent it (its offset
/// and epoch assigned by the publish script) to this node's subscribers but `exclude`, under
/// the channel's log lock, holding it for connections whose replay is being fetched (see
/// [`recovery`]).
pub fn relay(
    state: &NodeState,
    channel: &str,
    data: &[u8],
    exclude: Option<ConnectionId>,
    offset: u64,
    epoch: &str,
) -> FanOut {
    let config = state.config();
    let rule = config.channels.get(channel);
    let envelope = rule.map(|r| r.envelope).unwrap_or_default();
    let frame = channel_frame(
        channel,
        envelope,
        Some(history::Position { offset, epoch }),
        data,
    );
    let h = &state.history;
    let log = h.log(channel);
    let mut locked = h.lock(&log);
    locked.touch_relay();
    let mut fan = FanOutState::new(state, frame.clone(), exclude, false);
    let log = &mut *locked;
    let (pending, floors) = (&mut log.pending, &mut log.floors);
    state.channels.for_each_subscriber(channel, |c| {
        if let Some(p) = pending.iter_mut().find(|p| p.conn == c.id) {
            if exclude != Some(c.id) {
                p.hold(offset, frame.clone());
            }
            return;
        }
        if !floors.is_empty() {
            match floors.get(&c.id) {
                // Replayed already.
                Some((to, _)) if offset <= *to => return,
                Some(_) => {
                    floors.remove(&c.id);
                }
                None => {}
            }
        }
        fan.push(c);
    });
    let out = fan.finish("cluster_publish");
    drop(locked);
    sweep(state, &config);
    out
}

/// Drops expired history and quiet logs (at most once a second).
fn sweep(state: &NodeState, config: &crate::config::Config) {
    state.history.sweep(|name| {
        config
            .channels
            .get(name)
            .filter(|r| r.keeps_history())
            .map(|r| r.history_ttl)
    });
}

fn for_each_recipient(state: &NodeState, audience: Audience<'_>, f: impl FnMut(&Arc<Connection>)) {
    match audience {
        Audience::Channel(name) => state.channels.for_each_subscriber(name, f),
        Audience::Everyone => state.registry.for_each(f),
    }
}

/// Queues an encoded frame for one connection, applying its slow-consumer policy, and counts it.
pub fn deliver(
    state: &NodeState,
    conn: &Connection,
    frame: Bytes,
    source: &'static str,
) -> Result<(), ConnectionError> {
    let config = state.config();
    let limits = &config.limits;
    let m = &state.metrics;
    match conn.outbox.push(
        frame,
        limits.send_queue_max_bytes,
        limits.slow_consumer_policy,
    ) {
        PushOutcome::Queued | PushOutcome::Written => {
            m.messages_sent_total.with_label_values(&[source]).inc();
            Ok(())
        }
        PushOutcome::Full => {
            m.outbound_dropped_total
                .with_label_values(&["queue_full"])
                .inc();
            tracing::warn!(connection_id = %conn.id_text, source, "send queue full: message dropped");
            Err(ConnectionError::LimitExceeded)
        }
        PushOutcome::Closed => {
            m.outbound_dropped_total
                .with_label_values(&["connection_closing"])
                .inc();
            Err(ConnectionError::Gone)
        }
    }
}

/// One fan-out in progress: counts locally, updates metrics once at the end.
struct FanOutState<'a> {
    state: &'a NodeState,
    frame: Bytes,
    exclude: Option<ConnectionId>,
    /// Write straight to idle sockets (see `write_through`); `now_ms` marks them active.
    write_through: bool,
    now_ms: i64,
    written_through: u64,
    out: FanOut,
}

impl<'a> FanOutState<'a> {
    fn new(
        state: &'a NodeState,
        frame: Bytes,
        exclude: Option<ConnectionId>,
        write_through: bool,
    ) -> Self {
        FanOutState {
            state,
            frame,
            exclude,
            write_through,
            now_ms: if write_through {
                Utc::now().timestamp_millis()
            } else {
                0
            },
            written_through: 0,
            out: FanOut::default(),
        }
    }

    /// A fresh count for a share of this fan-out's recipients (see [`FanOutState::merge`]).
    fn lane(&self) -> Self {
        FanOutState {
            frame: self.frame.clone(),
            written_through: 0,
            out: FanOut::default(),
            ..*self
        }
    }

    /// Adds a lane's counts to this one's.
    fn merge(&mut self, lane: FanOutState<'_>) {
        self.written_through += lane.written_through;
        self.out.recipients += lane.out.recipients;
        self.out.dropped_queue_full += lane.out.dropped_queue_full;
        self.out.dropped_closing += lane.out.dropped_closing;
    }

    /// Writes through to `recipients`, spread over [`write_through::lanes`] threads: this one
    /// takes the first share, short-lived scoped threads the others, and it returns when every
    /// share is written (each connection is in one share, so its frames stay in order). A
    /// thread that cannot be started leaves its share to this one.
    fn write_in_lanes(&mut self, recipients: &[Arc<Connection>]) {
        let lanes = write_through::lanes(recipients.len());
        if lanes <= 1 {
            self.write_share(recipients);
            return;
        }
        let mut shares = recipients.chunks(recipients.len().div_ceil(lanes));
        let first = shares.next().unwrap_or_default();
        std::thread::scope(|scope| {
            let mut running = Vec::with_capacity(lanes - 1);
            let mut left = Vec::new();
            for share in shares {
                let mut lane = self.lane();
                let started = std::thread::Builder::new()
                    .name("gangway-fanout".into())
                    .spawn_scoped(scope, move || {
                        lane.write_share(share);
                        lane
                    });
                match started {
                    Ok(handle) => running.push(handle),
                    Err(e) => {
                        tracing::warn!(error = %e, "no thread for a fan-out lane: written by the publisher's");
                        left.push(share);
                    }
                }
            }
            self.write_share(first);
            for share in left {
                self.write_share(share);
            }
            for handle in running {
                match handle.join() {
                    Ok(lane) => self.merge(lane),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        });
    }

    /// Writes through to one share of the recipients on this thread.
    fn write_share(&mut self, recipients: &[Arc<Connection>]) {
        match self.state.write_through.uring() {
            Some(uring) => {
                for batch in recipients.chunks(crate::conn::uring::BATCH) {
                    self.push_batch(uring, batch);
                }
            }
            None => {
                for c in recipients {
                    self.push(c);
                }
            }
        }
    }

    fn push(&mut self, conn: &Arc<Connection>) {
        if self.exclude == Some(conn.id) {
            return;
        }
        let (max, policy) = self.queue_limits();
        let outcome = if self.write_through {
            conn.outbox.push_or_write(&self.frame, max, policy)
        } else {
            conn.outbox.push(self.frame.clone(), max, policy)
        };
        self.count(conn, outcome);
    }

    /// Writes through to a batch of recipients with one `io_uring` submission: every idle
    /// outbox of the batch is locked (without waiting: a busy one queues, after the batch) and
    /// stays locked until the kernel has answered for its socket, so each write-through keeps
    /// `conn::outbox`'s rules exactly as a single `send` does.
    fn push_batch(&mut self, uring: &UringSender, batch: &[Arc<Connection>]) {
        let (max, policy) = self.queue_limits();
        let mut slots = Vec::with_capacity(batch.len());
        let mut fds = Vec::with_capacity(batch.len());
        let mut busy = Vec::new();
        for conn in batch {
            if self.exclude == Some(conn.id) {
                continue;
            }
            match conn.outbox.try_write_slot() {
                Some(slot) => {
                    fds.push(slot.fd());
                    slots.push((conn, slot));
                }
                None => busy.push(conn),
            }
        }
        let mut sent = Vec::with_capacity(fds.len());
        if let Err(e) = uring.send_all(&fds, &self.frame, &mut sent) {
            self.state.metrics.send_path_uring.set(0);
            tracing::warn!(error = %e, "io_uring send failed: write-through fan-outs use sendmsg from now on");
        }
        for ((conn, slot), sent) in slots.into_iter().zip(sent) {
            let outcome = slot.finish(sent, &self.frame, max, policy);
            self.count(conn, outcome);
        }
        for conn in busy {
            let outcome = conn.outbox.push(self.frame.clone(), max, policy);
            self.count(conn, outcome);
        }
    }

    fn queue_limits(&self) -> (usize, crate::config::SlowConsumerPolicy) {
        let config = self.state.config();
        let limits = &config.limits;
        (limits.send_queue_max_bytes, limits.slow_consumer_policy)
    }

    fn count(&mut self, conn: &Arc<Connection>, outcome: PushOutcome) {
        match outcome {
            PushOutcome::Written => {
                conn.touch(self.now_ms);
                self.out.recipients += 1;
                self.written_through += 1;
            }
            PushOutcome::Queued => self.out.recipients += 1,
            PushOutcome::Full => {
                self.out.dropped_queue_full += 1;
                tracing::warn!(connection_id = %conn.id_text, "send queue full: fan-out message dropped");
            }
            PushOutcome::Closed => self.out.dropped_closing += 1,
        }
    }

    fn finish(self, source: &'static str) -> FanOut {
        let m = &self.state.metrics;
        m.messages_sent_total
            .with_label_values(&[source])
            .inc_by(self.out.recipients as u64);
        if self.written_through > 0 {
            m.messages_written_through_total
                .inc_by(self.written_through);
        }
        if self.out.dropped_queue_full > 0 {
            m.outbound_dropped_total
                .with_label_values(&["queue_full"])
                .inc_by(self.out.dropped_queue_full as u64);
        }
        if self.out.dropped_closing > 0 {
            m.outbound_dropped_total
                .with_label_values(&["connection_closing"])
                .inc_by(self.out.dropped_closing as u64);
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SlowConsumerPolicy;
    use crate::conn::outbox::FRAME_OVERHEAD_BYTES;

    fn open(state: &NodeState, n: usize) -> Vec<Arc<Connection>> {
        (0..n).map(|_| crate::test_connection(state)).collect()
    }

    fn queued(c: &Connection) -> Vec<Bytes> {
        let mut out = Vec::new();
        let _ = c.outbox.drain(&mut out);
        out
    }

    #[test]
    fn one_encoding_reaches_every_subscriber_but_the_excluded() {
        let state = crate::test_state(crate::config::Config::default());
        let conns = open(&state, 3);
        for c in &conns[..2] {
            state.channels.subscribe("news", c, 10).expect("subscribe");
        }
        let fan = fan_out(
            &state,
            Audience::Channel("news"),
            b"hi",
            Some(conns[1].id),
            "publish",
            false,
        );
        assert_eq!(
            fan,
            FanOut {
                recipients: 1,
                ..FanOut::default()
            }
        );
        let got = queued(&conns[0]);
        assert_eq!(got, vec![frame::text("hi")]);
        assert!(queued(&conns[1]).is_empty() && queued(&conns[2]).is_empty());
        // A broadcast reaches all three with the same allocation.
        let fan = fan_out(&state, Audience::Everyone, b"all", None, "broadcast", false);
        assert_eq!(fan.recipients, 3);
        let frames: Vec<Bytes> = conns.iter().flat_map(|c| queued(c)).collect();
        assert!(frames.windows(2).all(|w| w[0].as_ptr() == w[1].as_ptr()));
        let metrics = state.metrics.render();
        assert!(
            metrics.contains("gangway_messages_sent_total{source=\"broadcast\"} 3"),
            "{metrics}"
        );
    }

    #[test]
    fn a_write_through_spread_over_lanes_reaches_each_recipient_once_and_counts_all() {
        let state = crate::test_state(crate::config::Config::default());
        let n = 3 * write_through::MIN_PER_LANE + 5;
        let conns = open(&state, n);
        conns[9].outbox.close();
        // In-memory connections have no socket: every write-through queues, through whichever
        // lane took the connection.
        let fan = fan_out(
            &state,
            Audience::Everyone,
            b"x",
            Some(conns[3].id),
            "broadcast",
            true,
        );
        assert_eq!(
            fan,
            FanOut {
                recipients: n - 2,
                dropped_closing: 1,
                ..FanOut::default()
            }
        );
        for (i, c) in conns.iter().enumerate() {
            let want = usize::from(i != 3 && i != 9);
            assert_eq!(queued(c).len(), want, "connection {i}");
        }
        assert!(state.write_through.begin(1), "the gate was released");
    }

    #[test]
    fn full_and_closing_recipients_are_counted_not_waited_for() {
        let mut config = crate::config::Config::default();
        config.limits.send_queue_max_bytes = 8 + FRAME_OVERHEAD_BYTES;
        config.limits.slow_consumer_policy = SlowConsumerPolicy::Drop;
        let state = crate::test_state(config);
        let conns = open(&state, 3);
        assert!(deliver(&state, &conns[0], frame::text("123456"), "push").is_ok());
        conns[1].outbox.close();
        let fan = fan_out(&state, Audience::Everyone, b"x", None, "broadcast", false);
        assert_eq!(
            fan,
            FanOut {
                recipients: 1,
                dropped_queue_full: 1,
                dropped_closing: 1,
                cluster_failed: false
            }
        );
        assert_eq!(
            deliver(&state, &conns[0], frame::text("y"), "push"),
            Err(ConnectionError::LimitExceeded)
        );
        assert_eq!(
            deliver(&state, &conns[1], frame::text("y"), "push"),
            Err(ConnectionError::Gone)
        );
        let metrics = state.metrics.render();
        assert!(
            metrics.contains("gangway_outbound_dropped_total{reason=\"queue_full\"} 2"),
            "{metrics}"
        );
    }
}
