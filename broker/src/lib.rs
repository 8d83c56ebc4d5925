//! Gangway's data plane: one node's WebSocket listener, connections, route selection and
//! integrations.
//!
//! Layout (one noun per module):
//! - [`config`]: the typed, validated configuration (file < environment < flags);
//! - [`broker`]: the [`Broker`] handle — serve, push, get, delete, shut down;
//! - `listener`: accept loop, upgrade, `$connect`; `session`: one connection's task;
//! - `dispatch`: per-connection ordered backend calls; `disconnect`: `$disconnect` delivery;
//! - [`handshake`]: the HTTP upgrade; [`route`]: route selection expressions;
//! - [`event`]: AWS-shaped events; [`integration`]: http and mock integrations;
//! - [`signature`]: webhook signing; [`outbox`]: bounded per-connection send queues of
//!   encoded frames ([`frame`]);
//! - [`channels`]: channel subscriptions for fan-out;
//! - [`registry`], [`connection`], [`id`], [`close`], [`metrics`], [`gateway_frame`].

pub mod broker;
mod capacity;
pub mod channels;
pub mod close;
pub mod cluster;
pub mod config;
pub mod connection;
pub(crate) mod disconnect;
mod dispatch;
pub mod event;
pub mod frame;
pub mod gateway_frame;
pub mod handshake;
pub mod id;
pub mod integration;
mod listener;
pub mod metrics;
pub mod outbox;
pub mod registry;
pub mod route;
mod session;
pub mod signature;
mod socket;
pub mod write_through;

/// Internals the fuzz targets (`fuzz/`) drive directly; not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::socket::{FrameMeter, TooManyFragments};
}

pub use broker::{Broker, BrokerError, ConnectionError, ConnectionInfo, FanOut};
pub use config::{Config, ConfigBuilder, ConfigError};
