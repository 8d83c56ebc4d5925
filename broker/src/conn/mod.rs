//! One connection's state, below everything that acts on it: its id, its record and outbox of
//! encoded frames, the registry of open connections, connection slots, close codes, frame
//! encoding, the operations a caller may ask of a connection, the transport it runs on, and
//! connections in the order a write-through writes to them.
//!
//! Imports only `config`, `error` and `metrics` from the rest of the crate.

pub mod capacity;
pub mod close;
pub mod connection;
pub mod frame;
pub mod id;
pub mod op;
pub mod ordered;
pub mod outbox;
pub mod registry;
pub mod throttle;
pub mod transport;
pub mod uring;
