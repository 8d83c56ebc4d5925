//! The WebSocket edge: the accept loop ([`listener`]), the HTTP upgrade ([`handshake`]), the
//! `$connect` step ([`upgrade`]), one task per connection ([`session`]) and the frame meter
//! that guards its reads ([`meter`]). Generic over [`crate::conn::transport::Transport`].

pub mod handshake;
pub(crate) mod listener;
pub mod meter;
pub(crate) mod session;
pub(crate) mod upgrade;
