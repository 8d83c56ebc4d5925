//! One connection's task: reads frames, writes its outbox, keeps its timers.
//!
//! Invariants:
//! - one task per connection, plus a dispatcher task only once the connection sends a message
//!   that needs a backend, so idle connections cost one small future;
//! - the task never awaits a backend: messages for `http` routes go to the dispatcher through a
//!   bounded queue; when that queue is full, reading pauses (TCP backpressure) but writes and
//!   timers go on;
//! - everything queued in the outbox leaves in one flush (frames coalesce into one write);
//! - a write that cannot finish within `write_timeout_secs` closes the connection as a slow consumer;
//! - timers fire under any inbound load: the timer is polled before the socket, so a client
//!   that keeps the socket readable (an endless fragmented message, a ping flood) cannot starve
//!   the ping, idle and maximum-duration limits;
//! - before tungstenite writes anything of its own (a pong, a ping, a close), the rest of a
//!   frame a write-through put on the wire in part is written first (see
//!   `Outbox::hold_for_write`); a pong tungstenite owes is flushed only after it too.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::conn::close;
use crate::conn::connection::Connection;
use crate::conn::frame;
use crate::conn::throttle::Bucket;
use crate::conn::transport::{write_frames, Transport};
use crate::fanout::deliver;
use crate::integration::dispatch::{self, Inbound};
use crate::selection::{select_route, RouteChoice};
use crate::state::NodeState;
use crate::ws::meter::{Metered, TooManyFragments};

/// How long to wait for the client's answer to our close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection's WebSocket stream over transport `T`, its reads metered.
pub(crate) type Ws<T> = WebSocketStream<Metered<T>>;

/// How a session ended: what `$disconnect` reports.
pub(crate) struct Ended {
    pub(crate) code: u16,
    pub(crate) reason: String,
    /// Metric label for `gangway_connections_closed_total`.
    pub(crate) label: &'static str,
    /// The dispatcher, if one ran: `$disconnect` waits for it so the backend sees every
    /// MESSAGE before the DISCONNECT.
    pub(crate) dispatcher: Option<JoinHandle<()>>,
    /// Data messages the client sent, and their payload bytes (the access log's "in").
    pub(crate) received: u64,
    pub(crate) received_bytes: u64,
}

struct Session {
    state: Arc<NodeState>,
    conn: Arc<Connection>,
    dispatcher: Option<(mpsc::Sender<Inbound>, JoinHandle<()>)>,
    /// A message waiting for room in the dispatcher's queue; reading pauses meanwhile.
    pending: Option<Inbound>,
    last_data: Instant,
    last_heard: Instant,
    last_ping: Instant,
    max_deadline: Instant,
    /// The connection's inbound bucket (`inbound_messages_per_sec`, `inbound_burst`), boxed:
    /// only connections of a node with a limit pay for it.
    bucket: Option<Box<Bucket>>,
    /// Frames refused in a row: past the burst, reading pauses until the bucket refills.
    refused_in_a_row: u32,
    /// Reading pauses until then: the client sent more than twice its frame rate.
    read_paused_until: Option<Instant>,
    /// A ping arrived since the last write: tungstenite may hold its pong unwritten, and it
    /// must leave before our frames. (tungstenite buffers nothing else between our writes.)
    pong_pending: bool,
    /// Data messages read, and their payload bytes.
    received: u64,
    received_bytes: u64,
}

/// What the read side decided.
enum Step {
    Continue,
    End(u16, String, &'static str),
    /// Close with this code and reason (we initiate).
    Close(u16, &'static str, &'static str),
}

/// Runs the session to its end.
/// `key_rate`: the connection's API key's own inbound rate and burst, over the node's.
pub(crate) async fn run<T: Transport>(
    state: Arc<NodeState>,
    conn: Arc<Connection>,
    mut ws: Box<Ws<T>>,
    key_rate: Option<(u32, u32)>,
) -> Ended {
    let now = Instant::now();
    let config = state.config();
    let limits = &config.limits;
    let mut s = Session {
        max_deadline: now + Duration::from_secs(limits.max_connection_secs),
        state: Arc::clone(&state),
        conn,
        dispatcher: None,
        pending: None,
        last_data: now,
        last_heard: now,
        last_ping: now,
        bucket: match key_rate {
            Some((rate, burst)) => Bucket::new(rate, burst),
            None => Bucket::new(limits.inbound_messages_per_sec, limits.inbound_burst),
        }
        .map(Box::new),
        refused_in_a_row: 0,
        read_paused_until: None,
        pong_pending: false,
        received: 0,
        received_bytes: 0,
    };
    let (code, reason, label) = s.drive(&mut ws).await;
    Ended {
        code,
        reason,
        label,
        dispatcher: s.dispatcher.map(|(_, handle)| handle),
        received: s.received,
        received_bytes: s.received_bytes,
    }
}

impl Session {
    async fn drive<T: Transport>(&mut self, ws: &mut Ws<T>) -> (u16, String, &'static str) {
        let mut batch: Vec<Bytes> = Vec::new();
        // Write-through needs a raw socket (plain TCP); over other transports fan-outs queue.
        if let Some(socket) = ws.get_ref().get_ref().raw_socket() {
            self.conn.outbox.attach(Arc::clone(socket));
        }
        let timer = tokio::time::sleep_until(self.next_deadline());
        tokio::pin!(timer);
        loop {
            // Draining reaches this task as a close request in its outbox (see
            // `Broker::shutdown`): no state cancellation future is polled per message.
            let step = tokio::select! {
                biased;
                _ = self.conn.outbox.wait() => {
                    let drained = self.conn.outbox.drain(&mut batch);
                    if !batch.is_empty() {
                        let written = self.write_batch(ws, &mut batch, drained.partial_first);
                        if let Err(step) = Box::pin(written).await {
                            return Box::pin(self.finish(ws, step)).await;
                        }
                        // Everything drained has left (and any pong before it).
                        self.conn.outbox.release();
                    }
                    match drained.close {
                        Some(c) if c.code == close::SLOW_CONSUMER => {
                            self.state.metrics.outbound_dropped_total
                                .with_label_values(&["slow_consumer"]).inc();
                            tracing::warn!(connection_id = %self.conn.id_text, "slow consumer: disconnecting");
                            return Box::pin(self.close_with(ws, c.code, c.reason, "slow_consumer")).await;
                        }
                        Some(c) => {
                            let label = match c.code {
                                close::GOING_AWAY => "shutdown",
                                close::SERVICE_RESTART => "fenced",
                                _ => "deleted",
                            };
                            return Box::pin(self.close_with(ws, c.code, c.reason, label)).await;
                        }
                        None => Step::Continue,
                    }
                }
                _ = has_room(self.dispatcher.as_ref().map(|(tx, _)| tx)), if self.pending.is_some() => {
                    // This task is the queue's only sender, so the room it saw is still there.
                    if let (Some((tx, _)), Some(inbound)) = (&self.dispatcher, self.pending.take()) {
                        if let Err(mpsc::error::TrySendError::Full(inbound)) = tx.try_send(inbound) {
                            self.pending = Some(inbound);
                        }
                    }
                    Step::Continue
                }
                // Before the socket: a client that keeps it readable cannot starve the timers.
                _ = &mut timer => Box::pin(self.on_timer(ws)).await,
                frame = ws.next(), if self.pending.is_none() && self.read_paused_until.is_none() => {
                    let extra = ws.get_mut().take_extra_frames();
                    self.on_frame(frame, extra)
                }
            };
            match step {
                Step::Continue => {}
                Step::End(code, reason, label) => {
                    // The peer closed or vanished; answer a close frame if one is owed.
                    Box::pin(self.answer_close(ws)).await;
                    return (code, reason, label);
                }
                Step::Close(code, reason, label) => {
                    return Box::pin(self.close_with(ws, code, reason.to_string(), label)).await;
                }
            }
            // Deadlines only move later while a connection is busy, so the timer is reset only
            // when it fired or must fire sooner: no timer-wheel work per message.
            let next = self.next_deadline();
            if timer.is_elapsed() || next < timer.deadline() {
                timer.as_mut().reset(next);
            }
        }
    }

    async fn finish<T: Transport>(
        &mut self,
        ws: &mut Ws<T>,
        step: Step,
    ) -> (u16, String, &'static str) {
        self.conn.outbox.hold();
        match step {
            Step::End(code, reason, label) => (code, reason, label),
            Step::Close(code, reason, label) => {
                self.close_with(ws, code, reason.to_string(), label).await
            }
            Step::Continue => (close::ABNORMAL, String::new(), "error"),
        }
    }

    fn next_deadline(&self) -> Instant {
        let config = self.state.config();
        let limits = &config.limits;
        let mut next = self
            .max_deadline
            .min(self.last_data + Duration::from_secs(limits.idle_timeout_secs));
        if limits.ping_interval_secs > 0 {
            next = next.min(self.last_ping + Duration::from_secs(limits.ping_interval_secs));
        }
        if let Some(paused) = self.read_paused_until {
            next = next.min(paused);
        }
        next
    }

    /// Flushes what tungstenite owes the peer (the answer to its close frame), briefly.
    async fn answer_close<T: Transport>(&mut self, ws: &mut Ws<T>) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            if self.take_socket(ws).await.is_ok() {
                let _ = ws.flush().await;
            }
        })
        .await;
    }

    /// Holds the socket for a write of tungstenite's own (a ping, a pong, a close), first
    /// finishing a frame a write-through left half-written, so the byte stream stays whole.
    async fn take_socket<T: Transport>(&mut self, ws: &mut Ws<T>) -> std::io::Result<()> {
        if let Some(rest) = self.conn.outbox.hold_for_write() {
            write_frames(ws.get_mut().get_mut(), &mut [rest]).await?;
        }
        Ok(())
    }

    /// Checks every deadline against the clock; the timer may fire early (it is reset lazily).
    async fn on_timer<T: Transport>(&mut self, ws: &mut Ws<T>) -> Step {
        let now = Instant::now();
        let config = self.state.config();
        let limits = &config.limits;
        if self.read_paused_until.is_some_and(|until| now >= until) {
            self.read_paused_until = None;
        }
        if now >= self.max_deadline {
            return Step::Close(
                close::GOING_AWAY,
                "Connection duration limit reached",
                "max_duration",
            );
        }
        // Write-through deliveries bypass this task; they leave their time on the connection.
        let since_active = Utc::now().timestamp_millis() - self.conn.last_active_ms();
        if let Some(active) = u64::try_from(since_active)
            .ok()
            .and_then(|ms| now.checked_sub(Duration::from_millis(ms)))
        {
            self.last_data = self.last_data.max(active);
        }
        if now >= self.last_data + Duration::from_secs(limits.idle_timeout_secs) {
            return Step::Close(close::GOING_AWAY, "Idle timeout", "idle");
        }
        if limits.ping_interval_secs > 0 {
            let interval = Duration::from_secs(limits.ping_interval_secs);
            if now >= self.last_heard + 2 * interval {
                return Step::End(close::ABNORMAL, "Ping timeout".into(), "ping_timeout");
            }
            if now >= self.last_ping + interval {
                self.last_ping = now;
                let write_timeout = Duration::from_secs(limits.write_timeout_secs);
                let sent = tokio::time::timeout(write_timeout, async {
                    self.take_socket(ws).await.map_err(WsError::Io)?;
                    ws.send(Message::Ping(Bytes::new())).await
                })
                .await;
                if !matches!(sent, Ok(Ok(()))) {
                    return Step::End(close::ABNORMAL, "Connection lost".into(), "error");
                }
                // `send` flushed tungstenite completely, a pending pong included.
                self.pong_pending = false;
                self.conn.outbox.release();
            }
        }
        Step::Continue
    }

    /// Writes encoded frames straight to the socket in as few `sendmsg` calls as possible,
    /// after anything tungstenite itself queued (pongs), so the byte stream stays in order —
    /// except the rest of a partly written frame (`partial_first`), which goes before all.
    async fn write_batch<T: Transport>(
        &mut self,
        ws: &mut Ws<T>,
        batch: &mut Vec<Bytes>,
        partial_first: bool,
    ) -> Result<(), Step> {
        let write_timeout = Duration::from_secs(self.state.config().limits.write_timeout_secs);
        let flush_pong = std::mem::take(&mut self.pong_pending);
        let written = tokio::time::timeout(write_timeout, async {
            let (partial, rest) = batch.split_at_mut(usize::from(partial_first));
            write_frames(ws.get_mut().get_mut(), partial).await?;
            if flush_pong {
                ws.flush().await.map_err(std::io::Error::other)?;
            }
            write_frames(ws.get_mut().get_mut(), rest).await
        })
        .await;
        batch.clear();
        if batch.capacity() > 64 {
            *batch = Vec::new();
        }
        match written {
            Ok(Ok(())) => {
                let now = Instant::now();
                self.last_data = now;
                self.conn.touch(Utc::now().timestamp_millis());
                Ok(())
            }
            Ok(Err(_)) => Err(Step::End(
                close::ABNORMAL,
                "Connection lost".into(),
                "error",
            )),
            Err(_) => {
                self.state
                    .metrics
                    .outbound_dropped_total
                    .with_label_values(&["write_timeout"])
                    .inc();
                Err(Step::End(
                    close::SLOW_CONSUMER,
                    "slow consumer".into(),
                    "slow_consumer",
                ))
            }
        }
    }

    /// Sends a close frame, waits briefly for the peer's answer, and reports `code`/`reason`.
    async fn close_with<T: Transport>(
        &mut self,
        ws: &mut Ws<T>,
        code: u16,
        reason: String,
        label: &'static str,
    ) -> (u16, String, &'static str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.clone().into(),
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            if self.take_socket(ws).await.is_ok() && ws.close(Some(frame)).await.is_ok() {
                // Read until the peer's close frame (or the end of the stream).
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_close() {
                        break;
                    }
                }
            }
        })
        .await;
        (code, reason, label)
    }

    /// One message from tungstenite; `extra` is how many frames that completed no message the
    /// client sent since the last one (fragments), counted by the socket's meter.
    fn on_frame(&mut self, frame: Option<Result<Message, WsError>>, extra: u32) -> Step {
        let now = Instant::now();
        self.last_heard = now;
        let over_rate = self.count_frames(now, extra.saturating_add(1));
        let message = match frame {
            None => {
                return Step::End(
                    close::ABNORMAL,
                    "Connection closed abnormally".into(),
                    "lost",
                )
            }
            Some(Err(e)) => return self.on_read_error(e),
            Some(Ok(m)) => m,
        };
        match message {
            Message::Text(text) => {
                self.last_data = now;
                self.on_data(Some(text.as_str()), Message::Text(text.clone()), over_rate)
            }
            Message::Binary(data) => {
                self.last_data = now;
                if self.state.config().limits.reject_binary_frames {
                    return Step::Close(
                        close::UNSUPPORTED_DATA,
                        "Binary frames are not supported",
                        "binary_rejected",
                    );
                }
                self.on_data(None, Message::Binary(data), over_rate)
            }
            Message::Ping(_) => {
                // tungstenite owes a pong now and sends it on its next read or flush: no
                // write-through until it has left (the next write of our own flushes it).
                self.pong_pending = true;
                self.conn.outbox.hold();
                Step::Continue
            }
            Message::Pong(_) | Message::Frame(_) => Step::Continue,
            Message::Close(frame) => {
                let (code, reason) = match frame {
                    Some(f) => (u16::from(f.code), f.reason.to_string()),
                    None => (
                        close::NO_STATUS,
                        "Client-side close frame status not set".into(),
                    ),
                };
                Step::End(code, reason, "client")
            }
        }
    }

    /// Takes `frames` tokens from the connection's bucket; true when it had too few (the
    /// message is over the limit). Past another burst's worth of refusals in a row, reading
    /// pauses for a second (TCP pushes back), so a flood of frames costs no CPU.
    fn count_frames(&mut self, now: Instant, frames: u32) -> bool {
        let Some(bucket) = &self.bucket else {
            return false;
        };
        if bucket.take(frames) {
            self.refused_in_a_row = 0;
            return false;
        }
        // Refused: the message gets the throttling error frame. A client that keeps going
        // past another burst's worth gets no more of them: reading pauses for a second, so
        // TCP pushes back and nothing queues here.
        self.refused_in_a_row = self.refused_in_a_row.saturating_add(1);
        let config = self.state.config();
        let limits = &config.limits;
        let burst = if limits.inbound_burst == 0 {
            limits.inbound_messages_per_sec
        } else {
            limits.inbound_burst
        };
        if self.refused_in_a_row > burst {
            self.read_paused_until = Some(now + Duration::from_secs(1));
            self.refused_in_a_row = 0;
        }
        true
    }

    fn on_read_error(&mut self, e: WsError) -> Step {
        if let WsError::Io(io) = &e {
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<TooManyFragments>())
            {
                return Step::Close(close::MESSAGE_TOO_BIG, "Too many fragments", "too_big");
            }
        }
        match e {
            WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
                Step::Close(close::MESSAGE_TOO_BIG, "Message too big", "too_big")
            }
            WsError::Capacity(_) => {
                Step::Close(close::MESSAGE_TOO_BIG, "Message too big", "too_big")
            }
            WsError::Utf8(_) => Step::Close(
                close::INVALID_PAYLOAD,
                "Invalid UTF-8 in text frame",
                "invalid_utf8",
            ),
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Step::End(
                close::ABNORMAL,
                "Connection closed abnormally".into(),
                "lost",
            ),
            WsError::Protocol(p) => {
                tracing::debug!(connection_id = %self.conn.id_text, error = %p, "protocol error");
                Step::Close(close::PROTOCOL_ERROR, "Protocol error", "protocol_error")
            }
            WsError::ConnectionClosed | WsError::AlreadyClosed => Step::End(
                close::ABNORMAL,
                "Connection closed abnormally".into(),
                "lost",
            ),
            other => {
                tracing::debug!(connection_id = %self.conn.id_text, error = %other, "read error");
                Step::End(
                    close::ABNORMAL,
                    "Connection closed abnormally".into(),
                    "lost",
                )
            }
        }
    }

    /// A data message: rate limit, route, then answer inline (mock, Forbidden) or hand to the
    /// dispatcher (http).
    fn on_data(&mut self, text: Option<&str>, message: Message, over_rate: bool) -> Step {
        self.received += 1;
        self.received_bytes += message.len() as u64;
        let state = Arc::clone(&self.state);
        self.conn.touch(Utc::now().timestamp_millis());
        {
            if over_rate {
                state
                    .metrics
                    .messages_received_total
                    .with_label_values(&["rate_limited"])
                    .inc();
                let frame = frame::gateway_error("Too many requests", &self.conn.id_text);
                let _ = deliver(&state, &self.conn, frame, "gateway");
                return Step::Continue;
            }
        }
        // One configuration and one set of routes for the whole message, even across a reload.
        let (config, routes) = (state.config(), state.routes());
        let choice = select_route(&config.api.route_selection_expression, text, |k| {
            routes.has(k)
        });
        let route_key = match choice {
            RouteChoice::Forbidden => {
                state
                    .metrics
                    .messages_received_total
                    .with_label_values(&["forbidden"])
                    .inc();
                let frame = frame::gateway_error("Forbidden", &self.conn.id_text);
                let _ = deliver(&state, &self.conn, frame, "gateway");
                return Step::Continue;
            }
            RouteChoice::Route(key) => key,
        };
        let Some(route) = routes.get(&route_key).cloned() else {
            return Step::Continue;
        };
        if route.throttle.as_ref().is_some_and(|b| !b.take(1)) {
            // The route's node-wide limit (AWS's route throttling): refused like the
            // connection's own, counted apart.
            state
                .metrics
                .messages_received_total
                .with_label_values(&["route_throttled"])
                .inc();
            let frame = frame::gateway_error("Too many requests", &self.conn.id_text);
            let _ = deliver(&state, &self.conn, frame, "gateway");
            return Step::Continue;
        }
        state
            .metrics
            .messages_received_total
            .with_label_values(&[&route_key])
            .inc();
        if let Some(reply) = route.integration.answer_now(&message) {
            let _ = deliver(&state, &self.conn, reply, "route");
            return Step::Continue;
        }
        let inbound = Inbound {
            route: route.clone(),
            message,
        };
        let tx = match &self.dispatcher {
            Some((tx, _)) => tx.clone(),
            None => {
                let (tx, handle) = dispatch::spawn(Arc::clone(&state), Arc::clone(&self.conn));
                self.dispatcher = Some((tx.clone(), handle));
                tx
            }
        };
        if let Err(mpsc::error::TrySendError::Full(inbound)) = tx.try_send(inbound) {
            self.pending = Some(inbound);
        }
        Step::Continue
    }
}

/// Waits until the dispatcher's queue has room (or is closed); never resolves without one.
async fn has_room(tx: Option<&mpsc::Sender<Inbound>>) {
    match tx {
        Some(tx) => drop(tx.reserve().await),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    //! The session's state machine over an in-memory duplex: no sockets, time paused where a
    //! timer is the subject.
    use super::*;
    use crate::config::{Config, SlowConsumerPolicy};
    use crate::conn::id::ConnectionId;
    use crate::conn::outbox::PushOutcome;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
    use tokio_tungstenite::tungstenite::protocol::Role;

    use crate::ws::meter::tests::frame as client_frame;

    /// The built-in config (an echo `$default` route) with `change` applied.
    fn config(change: impl FnOnce(&mut crate::config::LimitsConfig)) -> Config {
        let mut c = Config::embedded_default();
        change(&mut c.limits);
        c
    }

    fn connection(state: &NodeState) -> Arc<Connection> {
        let id = ConnectionId::generate(state.node_tag).expect("rng");
        Arc::new(Connection::new(
            id,
            0,
            "127.0.0.1".parse().expect("ip"),
            None,
            "h".into(),
            None,
        ))
    }

    /// A session's parts over a duplex, and the client's raw end.
    async fn parts(config: Config) -> (Session, Box<Ws<DuplexStream>>, DuplexStream) {
        let state = crate::test_state(config);
        let (server, client) = tokio::io::duplex(1 << 16);
        let conn = connection(&state);
        let ws = WebSocketStream::from_raw_socket(
            Metered::new(server, state.config().limits.max_fragments_per_message),
            Role::Server,
            Some(state.ws_config),
        )
        .await;
        let now = Instant::now();
        let s = Session {
            state,
            conn,
            dispatcher: None,
            pending: None,
            last_data: now,
            last_heard: now,
            last_ping: now,
            max_deadline: now + Duration::from_secs(60),
            bucket: None,
            refused_in_a_row: 0,
            read_paused_until: None,
            pong_pending: false,
            received: 0,
            received_bytes: 0,
        };
        (s, Box::new(ws), client)
    }

    /// Runs a whole session over a duplex; the client's end and the session's task.
    async fn running(config: Config) -> (Arc<Connection>, DuplexStream, JoinHandle<Ended>) {
        let state = crate::test_state(config);
        let (server, client) = tokio::io::duplex(1 << 16);
        let conn = connection(&state);
        state.registry.insert(Arc::clone(&conn));
        let ws = WebSocketStream::from_raw_socket(
            Metered::new(server, state.config().limits.max_fragments_per_message),
            Role::Server,
            Some(state.ws_config),
        )
        .await;
        let task = tokio::spawn(run(state, Arc::clone(&conn), Box::new(ws), None));
        (conn, client, task)
    }

    /// Reads one server frame (unmasked, payload under 126 bytes): opcode and payload.
    async fn server_frame(client: &mut DuplexStream) -> (u8, Vec<u8>) {
        let mut head = [0u8; 2];
        client.read_exact(&mut head).await.expect("frame head");
        assert!(head[1] < 126, "short frames only");
        let mut payload = vec![0u8; head[1] as usize];
        client.read_exact(&mut payload).await.expect("payload");
        (head[0] & 0x0f, payload)
    }

    fn close_code(payload: &[u8]) -> u16 {
        u16::from_be_bytes([payload[0], payload[1]])
    }

    /// The rest of a frame a write-through left half-written goes before the pong tungstenite
    /// owes, and before the session's own frames: the byte stream stays whole.
    #[tokio::test]
    async fn a_partly_written_frame_is_finished_before_the_pong() {
        let (mut s, mut ws, mut client) = parts(Config::default()).await;
        // The client pings (a masked, empty ping frame); tungstenite now owes a pong.
        client
            .write_all(&client_frame(0x9, true, b""))
            .await
            .expect("ping");
        let message = ws.next().await;
        assert!(matches!(message, Some(Ok(Message::Ping(_)))));
        assert!(matches!(s.on_frame(message, 0), Step::Continue));
        // Meanwhile a write-through put the first bytes of a frame on the wire.
        let frame = frame::text("hello");
        s.conn.outbox.set_partial(frame.slice(3..));
        assert_eq!(
            s.conn
                .outbox
                .push(frame::text("next"), 1 << 20, SlowConsumerPolicy::Drop),
            PushOutcome::Queued
        );
        let mut batch = Vec::new();
        let drained = s.conn.outbox.drain(&mut batch);
        assert!(s
            .write_batch(&mut ws, &mut batch, drained.partial_first)
            .await
            .is_ok());
        let mut got = vec![0u8; frame.len() - 3 + 2 + 6];
        client.read_exact(&mut got).await.expect("read");
        let mut want = frame[3..].to_vec();
        want.extend_from_slice(&[0x8a, 0x00]);
        want.extend_from_slice(&frame::text("next"));
        assert_eq!(
            got, want,
            "rest of the frame, then the pong, then the next frame"
        );
    }

    /// Before tungstenite writes a ping of its own, the rest of a half-written frame leaves.
    #[tokio::test]
    async fn a_partly_written_frame_is_finished_before_a_ping() {
        let (mut s, mut ws, mut client) = parts(Config::default()).await;
        let frame = frame::text("hello");
        s.conn.outbox.set_partial(frame.slice(2..));
        s.last_ping = Instant::now() - Duration::from_secs(3600);
        s.last_heard = Instant::now();
        assert!(matches!(
            Box::pin(s.on_timer(&mut ws)).await,
            Step::Continue
        ));
        let mut got = vec![0u8; frame.len() - 2 + 2];
        client.read_exact(&mut got).await.expect("read");
        let mut want = frame[2..].to_vec();
        want.extend_from_slice(&[0x89, 0x00]);
        assert_eq!(got, want);
    }

    /// The default `$default` route (mock echo) answers a text message on the same session.
    #[tokio::test]
    async fn a_message_to_the_echo_route_comes_back() {
        let (_conn, mut client, _task) = running(Config::embedded_default()).await;
        client
            .write_all(&client_frame(0x1, true, b"hello"))
            .await
            .expect("send");
        assert_eq!(server_frame(&mut client).await, (0x1, b"hello".to_vec()));
    }

    /// A push queued in the outbox reaches the client; a close request closes with its code.
    #[tokio::test]
    async fn pushes_and_close_requests_reach_the_client() {
        let (conn, mut client, task) = running(Config::default()).await;
        assert_eq!(
            conn.outbox
                .push(frame::text("pushed"), 1 << 20, SlowConsumerPolicy::Drop),
            PushOutcome::Queued
        );
        assert_eq!(server_frame(&mut client).await, (0x1, b"pushed".to_vec()));
        assert!(conn.outbox.request_close(4000, "bye"));
        let (op, payload) = server_frame(&mut client).await;
        assert_eq!((op, close_code(&payload)), (0x8, 4000));
        assert_eq!(&payload[2..], b"bye");
        // The client answers the close; the session ends with the code it sent.
        client
            .write_all(&client_frame(0x8, true, &[0x0f, 0xa0]))
            .await
            .expect("close");
        let ended = task.await.expect("session");
        assert_eq!(ended.code, 4000);
    }

    /// A connection with no data frames for `idle_timeout_secs` is closed with 1001.
    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed() {
        let (_conn, mut client, task) = running(config(|l| {
            l.idle_timeout_secs = 5;
            l.ping_interval_secs = 0;
        }))
        .await;
        let (op, payload) = server_frame(&mut client).await;
        assert_eq!((op, close_code(&payload)), (0x8, 1001));
        drop(client);
        let ended = task.await.expect("session");
        assert_eq!(ended.label, "idle");
    }

    /// A client over its message rate gets a "Too many requests" error frame, not an echo.
    #[tokio::test]
    async fn the_rate_limit_answers_with_an_error_frame() {
        let (_conn, mut client, _task) = running(config(|l| l.inbound_messages_per_sec = 1)).await;
        for _ in 0..2 {
            client
                .write_all(&client_frame(0x1, true, b"x"))
                .await
                .expect("send");
        }
        assert_eq!(server_frame(&mut client).await, (0x1, b"x".to_vec()));
        let (op, payload) = server_frame(&mut client).await;
        assert_eq!(op, 0x1);
        let error: serde_json::Value = serde_json::from_slice(&payload).expect("json");
        assert_eq!(error["message"], "Too many requests");
    }

    /// A message in more fragments than allowed closes the connection with 1009.
    #[tokio::test]
    async fn too_many_fragments_close_with_1009() {
        let (_conn, mut client, task) = running(config(|l| l.max_fragments_per_message = 2)).await;
        let mut frames = client_frame(0x1, false, b"a");
        frames.extend(client_frame(0x0, false, b"b"));
        frames.extend(client_frame(0x0, true, b"c"));
        client.write_all(&frames).await.expect("send");
        let (op, payload) = server_frame(&mut client).await;
        assert_eq!((op, close_code(&payload)), (0x8, 1009));
        drop(client);
        assert_eq!(task.await.expect("session").code, 1009);
    }
}
