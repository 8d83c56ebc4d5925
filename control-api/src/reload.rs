//! The seam for `POST /@admin/reload`: the control API does not know where a node's
//! configuration comes from (a file, the environment, flags), so the binary that does hands it
//! a [`Reload`]. The same reload runs on SIGHUP.

use futures_util::future::BoxFuture;

/// What a reload did (or why it was refused).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Settings that changed and apply to new events now.
    pub applied: Vec<String>,
    /// Settings that changed but keep their running values until a restart.
    pub need_restart: Vec<String>,
}

/// Re-reads the configuration and applies what can change on a running node.
pub trait Reload: Send + Sync + std::fmt::Debug {
    /// Reloads. A configuration with problems is refused whole (the error lists them) and the
    /// running one stays.
    fn reload(&self) -> BoxFuture<'_, Result<Outcome, String>>;
}
