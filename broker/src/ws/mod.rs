//! The WebSocket edge: the accept loop ([`listener`]), the HTTP upgrade ([`handshake`]), the
//! `$connect` step ([`upgrade`]), one task per connection ([`session`]) and the frame meter
//! that guards its reads ([`meter`]), and the access log of every connection ([`access`]).
//! Generic over [`crate::conn::transport::Transport`].

pub mod access;
pub mod forwarded;
pub mod handshake;
pub(crate) mod listener;
pub mod meter;
pub(crate) mod session;
pub(crate) mod upgrade;
