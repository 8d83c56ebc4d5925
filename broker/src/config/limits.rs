//! `[limits]`: every bound of the data plane, with units in the names, and the checks between them.

use super::reader::Section;
use super::ConfigProblem;

/// What happens when a slow client's outbound queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowConsumerPolicy {
    /// Close the connection with code 1008 and reason "slow consumer" (the default).
    Disconnect,
    /// Drop the new message and keep the connection.
    Drop,
}

/// How write-through fan-outs reach the sockets (`send_path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendPath {
    /// `io_uring` when the kernel allows it (probed at startup), else `sendmsg` (the default).
    Auto,
    /// `io_uring`: batches of sends, one kernel entry each; the node refuses to start without it.
    Uring,
    /// One `send` system call per socket.
    Sendmsg,
}

/// `[limits]` section. Names carry their units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Largest inbound or pushed message, bytes (AWS: 131 072). Over it: close 1009 / HTTP 413.
    pub max_message_bytes: usize,
    /// Largest inbound frame, bytes (AWS: 32 768). Over it: close 1009.
    pub max_frame_bytes: usize,
    /// Most frames one inbound message may arrive in. Over it: close 1009.
    pub max_fragments_per_message: u32,
    /// Close a connection with no data frames in either direction for this long (AWS: 600 s).
    pub idle_timeout_secs: u64,
    /// Close any connection after this long (AWS: 7 200 s).
    pub max_connection_secs: u64,
    /// Bound of each connection's outbound queue, bytes.
    pub send_queue_max_bytes: usize,
    /// What to do when that queue is full.
    pub slow_consumer_policy: SlowConsumerPolicy,
    /// A write to a client that takes longer than this closes it as a slow consumer, seconds.
    pub write_timeout_secs: u64,
    /// Most connections this node holds, counting those still in `$connect`; further upgrades
    /// get 503.
    pub max_connections: usize,
    /// Most sockets that have not finished their upgrade (reading the request or waiting for
    /// `$connect`); further sockets get 503 and are closed at once.
    pub max_pending_handshakes: usize,
    /// Server ping period, seconds; a peer silent for two periods is closed. 0 turns pings off.
    pub ping_interval_secs: u64,
    /// How long a client may take to send its upgrade request, seconds.
    pub handshake_timeout_secs: u64,
    /// Node-wide cap on concurrent `$connect` and message backend calls.
    pub max_concurrent_integration_calls: usize,
    /// Node-wide cap on concurrent `$disconnect` deliveries (their own, so a failing
    /// `$disconnect` backend cannot hold the permits `$connect` and messages need).
    pub max_concurrent_disconnect_calls: usize,
    /// Most items in one `POST /@batch`.
    pub max_batch_items: usize,
    /// Largest `POST /@batch` body, bytes.
    pub max_batch_bytes: usize,
    /// Most channels one connection may be subscribed to.
    pub max_channels_per_connection: usize,
    /// Inbound messages a connection may have waiting for the backend before reads pause.
    pub inbound_queue_messages: usize,
    /// Per-connection inbound frames per second (a token bucket's rate); 0 means no limit.
    pub inbound_messages_per_sec: u32,
    /// The bucket's burst; 0 means the rate.
    pub inbound_burst: u32,
    /// New upgrades per source address per second (burst: the rate); 0 means no limit. Over
    /// it: 429 before `$connect`.
    pub connections_per_ip_per_sec: u32,
    /// Reject binary frames with close 1003, as AWS does (default false: binary goes to `$default`).
    pub reject_binary_frames: bool,
    /// How many times a failed `$disconnect` delivery is tried in all.
    pub disconnect_max_attempts: u32,
    /// How long SIGTERM waits for connections to close and `$disconnect` events to land, seconds.
    pub shutdown_grace_secs: u64,
    /// Largest fan-out a quiet node writes straight to the sockets from the publishing thread
    /// (see `write_through`); 0 turns write-through off.
    pub write_through_max_recipients: usize,
    /// How write-through fan-outs reach the sockets (`"auto"`, `"uring"`, `"sendmsg"`).
    pub send_path: SendPath,
    /// `history_max_bytes`: memory all channels' history may take on this node, counted with
    /// each message's bookkeeping (default 256 MiB); the oldest messages go first.
    pub history_max_bytes: usize,
    /// `history_max_messages`: messages all channels' history may keep on this node.
    pub history_max_messages: usize,
}

/// `max_frame_bytes` when unset, unless `max_message_bytes` is lower (then that).
const DEFAULT_MAX_FRAME_BYTES: u64 = 32_768;

/// `send_queue_max_bytes` when unset, unless twice `max_message_bytes` is larger (then that).
const DEFAULT_SEND_QUEUE_MAX_BYTES: u64 = 1_048_576;

/// Reads `[limits]`, recording every problem.
pub(super) fn read(table: &toml::Table, problems: &mut Vec<ConfigProblem>) -> LimitsConfig {
    let mut r = Section::new(table, "limits", problems);
    let max_message_bytes = r.uint("max_message_bytes", 131_072, 1, 1 << 30);
    let limits = LimitsConfig {
        max_message_bytes: max_message_bytes as usize,
        // Unset, the frame limit follows a lowered message limit and the send queue a raised
        // one; only limits the user set both ways can disagree.
        max_frame_bytes: r.uint(
            "max_frame_bytes",
            DEFAULT_MAX_FRAME_BYTES.min(max_message_bytes),
            1,
            1 << 30,
        ) as usize,
        max_fragments_per_message: r.uint("max_fragments_per_message", 1_024, 1, 1 << 24) as u32,
        idle_timeout_secs: r.uint("idle_timeout_secs", 600, 1, u32::MAX as u64),
        max_connection_secs: r.uint("max_connection_secs", 7_200, 1, u32::MAX as u64),
        send_queue_max_bytes: r.uint(
            "send_queue_max_bytes",
            DEFAULT_SEND_QUEUE_MAX_BYTES.max(2 * max_message_bytes),
            1,
            1 << 32,
        ) as usize,
        slow_consumer_policy: match r.string("slow_consumer_policy").as_deref() {
            None | Some("disconnect") => SlowConsumerPolicy::Disconnect,
            Some("drop") => SlowConsumerPolicy::Drop,
            Some(other) => {
                r.problem(
                    "slow_consumer_policy",
                    format!("must be \"disconnect\" or \"drop\", not {other:?}"),
                );
                SlowConsumerPolicy::Disconnect
            }
        },
        write_timeout_secs: r.uint("write_timeout_secs", 10, 1, 3_600),
        max_connections: r.uint("max_connections", 100_000, 1, u32::MAX as u64) as usize,
        max_pending_handshakes: r.uint("max_pending_handshakes", 4_096, 1, 1 << 24) as usize,
        ping_interval_secs: r.uint("ping_interval_secs", 30, 0, 86_400),
        handshake_timeout_secs: r.uint("handshake_timeout_secs", 10, 1, 3_600),
        max_concurrent_integration_calls: r.uint(
            "max_concurrent_integration_calls",
            1_024,
            1,
            1 << 20,
        ) as usize,
        max_concurrent_disconnect_calls: r.uint("max_concurrent_disconnect_calls", 256, 1, 1 << 20)
            as usize,
        max_batch_items: r.uint("max_batch_items", 10_000, 1, 1_000_000) as usize,
        max_batch_bytes: r.uint("max_batch_bytes", 16 << 20, 1, 1 << 30) as usize,
        max_channels_per_connection: r.uint("max_channels_per_connection", 100, 1, 100_000)
            as usize,
        inbound_queue_messages: r.uint("inbound_queue_messages", 16, 1, 1 << 16) as usize,
        inbound_messages_per_sec: r.uint("inbound_messages_per_sec", 0, 0, 1 << 20) as u32,
        inbound_burst: r.uint("inbound_burst", 0, 0, 1 << 20) as u32,
        connections_per_ip_per_sec: r.uint("connections_per_ip_per_sec", 0, 0, 1 << 20) as u32,
        reject_binary_frames: r.bool("reject_binary_frames", false),
        disconnect_max_attempts: r.uint("disconnect_max_attempts", 8, 1, 1_000) as u32,
        shutdown_grace_secs: r.uint("shutdown_grace_secs", 10, 0, 3_600),
        write_through_max_recipients: r.uint("write_through_max_recipients", 20_000, 0, 1 << 24)
            as usize,
        send_path: match r.string("send_path").as_deref() {
            None | Some("auto") => SendPath::Auto,
            Some("uring") => SendPath::Uring,
            Some("sendmsg") => SendPath::Sendmsg,
            Some(other) => {
                r.problem(
                    "send_path",
                    format!("must be \"auto\", \"uring\" or \"sendmsg\", not {other:?}"),
                );
                SendPath::Auto
            }
        },
        history_max_bytes: r.uint("history_max_bytes", 256 << 20, 0, 1 << 40) as usize,
        history_max_messages: r.uint("history_max_messages", 1_000_000, 0, 1 << 32) as usize,
    };
    r.finish();
    // The derived defaults always pass these checks: only values the user set can fail them.
    if limits.send_queue_max_bytes < limits.max_message_bytes {
        problems.push(ConfigProblem {
            key: "limits.send_queue_max_bytes".into(),
            message: format!(
                "{} is smaller than limits.max_message_bytes ({}): a largest message could never be queued",
                limits.send_queue_max_bytes, limits.max_message_bytes
            ),
        });
    }
    if limits.max_frame_bytes > limits.max_message_bytes {
        problems.push(ConfigProblem {
            key: "limits.max_frame_bytes".into(),
            message: format!(
                "{} is larger than limits.max_message_bytes ({})",
                limits.max_frame_bytes, limits.max_message_bytes
            ),
        });
    }
    limits
}
