//! The broker's errors: what went wrong and whose fault it is, never an HTTP status (the control
//! API keeps the one table from these to statuses).
//!
//! A [`ConnectionError`] means the same thing whether the connection is on this node or on
//! another: the cluster carries it between nodes as a [`ConnectionError::code`] with its fields
//! (see `cluster::wire`), and rebuilds the same variant.

/// Why a text is not a connection id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid connectionId: {0}")]
pub struct InvalidConnectionId(pub String);

/// Why an operation on a connection (or a channel) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    /// The caller's id is not a Gangway connection id.
    #[error(transparent)]
    BadId(#[from] InvalidConnectionId),
    /// No such open connection: never existed, closed, or still in `$connect`.
    #[error("connection is gone")]
    Gone,
    /// The caller's payload is over `max_message_bytes`.
    #[error("message is {size} bytes; the limit is {max}")]
    PayloadTooLarge {
        /// Payload size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The client does not keep up: its outbound queue is full.
    #[error("the connection's send queue is full")]
    LimitExceeded,
    /// The caller's close code is outside 1000 and 3000–4999, or its reason over 123 bytes.
    #[error("{0}")]
    InvalidClose(String),
    /// The caller's channel name breaks the naming rules.
    #[error("{0}")]
    InvalidChannel(String),
    /// The connection is already subscribed to the most channels allowed.
    #[error("the connection is already subscribed to {max} channels, the most allowed")]
    TooManyChannels {
        /// `max_channels_per_connection`.
        max: usize,
    },
    /// The cluster cannot answer now: Redis unreachable, or the owner node silent.
    #[error("{0}")]
    Unavailable(String),
}

/// Codes of [`ConnectionError`] variants, as they travel between nodes.
pub mod code {
    /// [`super::ConnectionError::BadId`].
    pub const BAD_ID: u8 = 1;
    /// [`super::ConnectionError::Gone`].
    pub const GONE: u8 = 2;
    /// [`super::ConnectionError::PayloadTooLarge`].
    pub const PAYLOAD_TOO_LARGE: u8 = 3;
    /// [`super::ConnectionError::LimitExceeded`].
    pub const LIMIT_EXCEEDED: u8 = 4;
    /// [`super::ConnectionError::InvalidClose`].
    pub const INVALID_CLOSE: u8 = 5;
    /// [`super::ConnectionError::InvalidChannel`].
    pub const INVALID_CHANNEL: u8 = 6;
    /// [`super::ConnectionError::TooManyChannels`].
    pub const TOO_MANY_CHANNELS: u8 = 7;
    /// [`super::ConnectionError::Unavailable`].
    pub const UNAVAILABLE: u8 = 8;
}

impl ConnectionError {
    /// The variant's code (never 0, which means success on the wire).
    pub fn code(&self) -> u8 {
        match self {
            ConnectionError::BadId(_) => code::BAD_ID,
            ConnectionError::Gone => code::GONE,
            ConnectionError::PayloadTooLarge { .. } => code::PAYLOAD_TOO_LARGE,
            ConnectionError::LimitExceeded => code::LIMIT_EXCEEDED,
            ConnectionError::InvalidClose(_) => code::INVALID_CLOSE,
            ConnectionError::InvalidChannel(_) => code::INVALID_CHANNEL,
            ConnectionError::TooManyChannels { .. } => code::TOO_MANY_CHANNELS,
            ConnectionError::Unavailable(_) => code::UNAVAILABLE,
        }
    }

    /// The variant's fields: two numbers and a text (unused ones are 0 and empty).
    pub fn fields(&self) -> (u64, u64, &str) {
        match self {
            ConnectionError::BadId(InvalidConnectionId(t))
            | ConnectionError::InvalidClose(t)
            | ConnectionError::InvalidChannel(t)
            | ConnectionError::Unavailable(t) => (0, 0, t),
            ConnectionError::PayloadTooLarge { size, max } => (*size as u64, *max as u64, ""),
            ConnectionError::TooManyChannels { max } => (*max as u64, 0, ""),
            ConnectionError::Gone | ConnectionError::LimitExceeded => (0, 0, ""),
        }
    }

    /// Rebuilds a variant from its code and fields; `None` for an unknown code.
    pub fn from_parts(code: u8, a: u64, b: u64, text: String) -> Option<ConnectionError> {
        let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Some(match code {
            code::BAD_ID => ConnectionError::BadId(InvalidConnectionId(text)),
            code::GONE => ConnectionError::Gone,
            code::PAYLOAD_TOO_LARGE => ConnectionError::PayloadTooLarge {
                size: n(a),
                max: n(b),
            },
            code::LIMIT_EXCEEDED => ConnectionError::LimitExceeded,
            code::INVALID_CLOSE => ConnectionError::InvalidClose(text),
            code::INVALID_CHANNEL => ConnectionError::InvalidChannel(text),
            code::TOO_MANY_CHANNELS => ConnectionError::TooManyChannels { max: n(a) },
            code::UNAVAILABLE => ConnectionError::Unavailable(text),
            _ => return None,
        })
    }
}

/// Errors starting a broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The webhook HTTP client could not be built (TLS set-up).
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// The Redis URL cannot be used.
    #[error("cannot use [cluster] redis_url: {0}")]
    Redis(#[from] redis::RedisError),
    /// `[cluster] tls_ca_file` cannot be read.
    #[error("cannot read [cluster] tls_ca_file {}: {source}", path.display())]
    TlsCa {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The heartbeat's thread or runtime could not be started (the system is out of threads
    /// or memory).
    #[error("cannot start the cluster heartbeat's thread: {0}")]
    Lifeline(std::io::Error),
    /// `[limits] send_path = "uring"`, and this kernel cannot do it.
    #[error("[limits] send_path = \"uring\": {0} (use \"auto\" to fall back to sendmsg)")]
    SendPath(#[from] UringError),
}

/// Why `io_uring` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UringError {
    /// The kernel refused to set up a ring (too old, disabled by `kernel.io_uring_disabled`, or
    /// filtered by seccomp).
    #[error("io_uring is unavailable: {0}")]
    Unavailable(std::io::Error),
    /// The kernel's `io_uring` has no `IORING_OP_SEND` (Linux before 5.6).
    #[error("io_uring has no send operation on this kernel")]
    NoSend,
    /// An earlier submission failed and the ring was set aside.
    #[error("io_uring failed earlier and was set aside")]
    Poisoned,
    /// Submitting or completing a batch failed.
    #[error("io_uring submission failed: {0}")]
    Submit(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_survives_its_parts() {
        let all = [
            ConnectionError::BadId(InvalidConnectionId("x".into())),
            ConnectionError::Gone,
            ConnectionError::PayloadTooLarge { size: 9, max: 8 },
            ConnectionError::LimitExceeded,
            ConnectionError::InvalidClose("code".into()),
            ConnectionError::InvalidChannel("name".into()),
            ConnectionError::TooManyChannels { max: 3 },
            ConnectionError::Unavailable("redis".into()),
        ];
        for e in all {
            let (a, b, t) = e.fields();
            assert_eq!(
                ConnectionError::from_parts(e.code(), a, b, t.to_string()),
                Some(e.clone())
            );
        }
        assert_eq!(ConnectionError::from_parts(0, 0, 0, String::new()), None);
    }
}
