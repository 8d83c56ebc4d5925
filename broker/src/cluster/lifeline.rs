//! The lifeline: a thread with a one-thread runtime of its own for what must keep time however
//! busy the node is — the heartbeat and the fencing decision (see [`super::Cluster`]).
//!
//! On the node's runtime each of a heartbeat's Redis round trips waited in the run queue behind
//! every runnable connection task: a storm of 10 000 handshakes/s over five nodes on two cores
//! (`scripts/bench-95k.sh`) held beats back past the fencing decision, and every node fenced,
//! closing every client (which would then reconnect in another storm). Here a beat waits only
//! for Redis and for a core.
//!
//! Invariants: the runtime lives and dies on its own thread (never dropped inside the node's
//! runtime); what is made under [`Lifeline::enter`] (the heartbeat's Redis link) spawns its
//! tasks, reconnections included, on it.

use futures_util::future::BoxFuture;
use tokio::runtime::{EnterGuard, Handle};
use tokio::sync::oneshot;

use crate::error::BrokerError;

/// A started lifeline thread, waiting for its task (see the module documentation).
pub(super) struct Lifeline {
    handle: Handle,
    start: oneshot::Sender<BoxFuture<'static, ()>>,
}

impl Lifeline {
    /// Starts the thread and its runtime. Dropped without [`Lifeline::run`], the thread ends.
    pub(super) fn spawn(name: &str) -> Result<Lifeline, BrokerError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let (start, task) = oneshot::channel::<BoxFuture<'static, ()>>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(runtime.handle().clone()));
                if let Ok(task) = runtime.block_on(task) {
                    runtime.block_on(task);
                }
            })
            .map_err(BrokerError::Lifeline)?;
        // Waits only for a new thread to build a one-thread runtime.
        let handle = ready_rx
            .recv()
            .map_err(|_| BrokerError::Lifeline(std::io::Error::other("the thread ended at once")))?
            .map_err(BrokerError::Lifeline)?;
        Ok(Lifeline { handle, start })
    }

    /// Makes the lifeline's runtime the current one until the guard is dropped: what is
    /// created meanwhile spawns its tasks there.
    pub(super) fn enter(&self) -> EnterGuard<'_> {
        self.handle.enter()
    }

    /// Runs `task` on the lifeline until it ends; then the thread ends.
    pub(super) fn run(self, task: BoxFuture<'static, ()>) {
        // The thread waits for its task for as long as this sender lives: it cannot be gone.
        let _ = self.start.send(task);
    }
}
