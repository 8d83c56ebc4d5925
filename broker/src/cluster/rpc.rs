//! The bookkeeping of cross-node calls: each call or count query gets an id, a waiter is
//! registered under it, and the answer that arrives on the inbox is handed to that waiter.
//!
//! Invariants:
//! - at most [`MAX_PENDING`] calls wait at once; the next one fails fast (never unbounded);
//! - a waiter is removed when its call ends, answered or not ([`Waiting`] removes it on drop),
//!   so a late answer finds nobody and is dropped;
//! - an answer for an unknown id is ignored (a late reply, or a forged one).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};

use crate::conn::op::OpOutcome;
use crate::error::ConnectionError;

/// Most cross-node calls waiting for an answer at once.
pub const MAX_PENDING: usize = 65_536;
/// Most count answers buffered for one query.
const COUNT_BUFFER: usize = 256;

/// An owner node's answer to a call.
pub type CallResult = Result<OpOutcome, ConnectionError>;

enum Waiter {
    Call(oneshot::Sender<CallResult>),
    Count(mpsc::Sender<u64>),
}

/// See the module documentation.
#[derive(Default)]
pub struct Calls {
    next_id: AtomicU64,
    waiting: Mutex<HashMap<u64, Waiter>>,
}

/// A registered call; dropping it forgets the waiter.
pub struct Waiting<'a, R> {
    calls: &'a Calls,
    /// The id the answer will carry.
    pub id: u64,
    /// Where the answer arrives.
    pub answer: R,
}

impl<R> Drop for Waiting<'_, R> {
    fn drop(&mut self) {
        self.calls.lock().remove(&self.id);
    }
}

impl Calls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiter>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, waiter: Waiter) -> Result<u64, ConnectionError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut w = self.lock();
        if w.len() >= MAX_PENDING {
            return Err(ConnectionError::Unavailable(
                "too many cross-node calls in flight".into(),
            ));
        }
        w.insert(id, waiter);
        Ok(id)
    }

    /// Registers a call awaiting one answer.
    pub fn call(&self) -> Result<Waiting<'_, oneshot::Receiver<CallResult>>, ConnectionError> {
        let (tx, rx) = oneshot::channel();
        let id = self.register(Waiter::Call(tx))?;
        Ok(Waiting {
            calls: self,
            id,
            answer: rx,
        })
    }

    /// Registers a count query awaiting one answer per node.
    pub fn count(&self) -> Result<Waiting<'_, mpsc::Receiver<u64>>, ConnectionError> {
        let (tx, rx) = mpsc::channel(COUNT_BUFFER);
        let id = self.register(Waiter::Count(tx))?;
        Ok(Waiting {
            calls: self,
            id,
            answer: rx,
        })
    }

    /// Hands a call's answer to its waiter; false when nobody waits for `id`.
    pub fn answer(&self, id: u64, result: CallResult) -> bool {
        let waiter = {
            let mut w = self.lock();
            match w.get(&id) {
                Some(Waiter::Call(_)) => w.remove(&id),
                _ => None,
            }
        };
        match waiter {
            Some(Waiter::Call(tx)) => tx.send(result).is_ok(),
            _ => false,
        }
    }

    /// Hands one node's count to its query; false when nobody waits for `id`.
    pub fn answer_count(&self, id: u64, count: u64) -> bool {
        match self.lock().get(&id) {
            Some(Waiter::Count(tx)) => tx.try_send(count).is_ok(),
            _ => false,
        }
    }

    /// Calls and queries waiting now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_reaches_its_waiter_once() {
        let calls = Calls::default();
        let mut w = calls.call().expect("room");
        assert!(calls.answer(w.id, Ok(OpOutcome::Done)));
        assert_eq!(w.answer.try_recv().expect("answered"), Ok(OpOutcome::Done));
        // A second (duplicated) answer finds nobody.
        assert!(!calls.answer(w.id, Err(ConnectionError::Gone)));
    }

    #[test]
    fn unknown_and_late_answers_are_ignored() {
        let calls = Calls::default();
        assert!(!calls.answer(12345, Ok(OpOutcome::Done)));
        let id = {
            let w = calls.call().expect("room");
            w.id
        };
        // The call ended (timed out): its waiter is gone.
        assert_eq!(calls.len(), 0);
        assert!(!calls.answer(id, Ok(OpOutcome::Done)));
    }

    #[test]
    fn counts_and_calls_do_not_mix() {
        let calls = Calls::default();
        let mut q = calls.count().expect("room");
        let c = calls.call().expect("room");
        assert!(!calls.answer(q.id, Ok(OpOutcome::Done)));
        assert!(!calls.answer_count(c.id, 3));
        assert!(calls.answer_count(q.id, 3));
        assert!(calls.answer_count(q.id, 4));
        assert_eq!(q.answer.try_recv().ok(), Some(3));
        assert_eq!(q.answer.try_recv().ok(), Some(4));
        assert_eq!(calls.len(), 2);
    }

    #[test]
    fn ids_are_unique() {
        let calls = Calls::default();
        let a = calls.call().expect("room");
        let b = calls.call().expect("room");
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn pending_calls_are_bounded() {
        let calls = Calls::default();
        let mut held = Vec::new();
        for _ in 0..MAX_PENDING {
            held.push(calls.call().expect("room"));
        }
        assert!(matches!(calls.call(), Err(ConnectionError::Unavailable(_))));
        held.pop();
        assert!(calls.call().is_ok());
    }
}
