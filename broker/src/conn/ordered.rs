//! Connections in socket-descriptor order — the order a write-through fan-out writes in (see
//! `fanout::write_through`) — and a list of them kept between fan-outs while the set it was
//! taken from (the registry, a channel's subscribers) does not change.
//!
//! Building the list costs a pass over the set, a reference count per connection and a sort
//! (about 2 ms for 10 000 connections), and every recipient of the fan-out waits for it; a
//! steady audience (10 000 subscribers of a notification channel) builds it once.
//!
//! Invariant: a kept list holds exactly the set's members as they were when it was built, and
//! the first change to the set after that drops it — so it never keeps a connection alive
//! longer than the set does, and it is never used once the set moved on.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::conn::connection::Connection;

/// Connections sorted by their socket's descriptor (see [`by_descriptor`]).
pub type Ordered = Arc<[Arc<Connection>]>;

/// `conns` sorted by socket descriptor (connections without a socket first): the kernel hands
/// out the lowest free descriptor, so this is about the order the connections came in, and the
/// order the kernel allocated their sockets' state in.
pub fn by_descriptor(conns: impl IntoIterator<Item = Arc<Connection>>) -> Ordered {
    let mut keyed: Vec<(RawFd, Arc<Connection>)> =
        conns.into_iter().map(|c| (c.outbox.fd_hint(), c)).collect();
    keyed.sort_unstable_by_key(|k| k.0);
    keyed.into_iter().map(|k| k.1).collect()
}

/// The kept list of a set that changes elsewhere (the registry): the set calls
/// [`Kept::changed`] after every change, a fan-out calls [`Kept::get_or_build`].
#[derive(Debug, Default)]
pub struct Kept {
    /// Bumped by every change of the set.
    version: AtomicU64,
    /// The list and the version it was built at.
    list: Mutex<Option<(u64, Ordered)>>,
}

impl Kept {
    fn lock(&self) -> MutexGuard<'_, Option<(u64, Ordered)>> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The set changed (call once the change is visible to readers of the set): the kept list
    /// is dropped (outside the lock).
    pub fn changed(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
        let old = self.lock().take();
        drop(old);
    }

    /// The kept list, or the one `build` makes from the set now — kept, unless the set
    /// changed while it was built.
    pub fn get_or_build(&self, build: impl FnOnce() -> Ordered) -> Ordered {
        let version = self.version.load(Ordering::Acquire);
        if let Some((at, list)) = &*self.lock() {
            if *at == version {
                return Arc::clone(list);
            }
        }
        let list = build();
        let mut kept = self.lock();
        // A change after `version` was read may be missing from `list`; that change's
        // `changed` bumped the version before dropping the kept list, so it shows here.
        if self.version.load(Ordering::Acquire) == version {
            *kept = Some((version, Arc::clone(&list)));
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Arc<Connection> {
        let id = crate::conn::id::ConnectionId::generate(crate::conn::id::NodeTag::of("t"))
            .expect("rng");
        Arc::new(Connection::new(
            id,
            0,
            [127, 0, 0, 1].into(),
            None,
            "h".into(),
            None,
        ))
    }

    #[tokio::test]
    async fn connections_come_in_descriptor_order_whatever_order_they_are_given_in() {
        let mut clients = Vec::new();
        let mut sockets = Vec::new();
        for _ in 0..5 {
            let (client, server) = crate::test_socket_pair().await;
            clients.push(client);
            sockets.push(server);
        }
        let conns: Vec<Arc<Connection>> = (0..6).map(|_| conn()).collect();
        // Attach in reverse descriptor order; the last connection gets no socket.
        for (c, s) in conns.iter().zip(sockets.into_iter().rev()) {
            c.outbox.attach(Arc::new(s));
        }
        let ordered = by_descriptor(conns.iter().cloned());
        let fds: Vec<RawFd> = ordered.iter().map(|c| c.outbox.fd_hint()).collect();
        assert_eq!(fds[0], -1, "no socket: first");
        assert!(fds.windows(2).all(|w| w[0] < w[1]), "{fds:?}");
        assert_eq!(ordered.len(), conns.len());
        drop(clients);
    }

    #[test]
    fn a_kept_list_is_reused_until_the_set_changes() {
        let k = Kept::default();
        let set = [conn(), conn()];
        let mut builds = 0;
        let first = k.get_or_build(|| {
            builds += 1;
            by_descriptor(set.iter().cloned())
        });
        let again = k.get_or_build(|| {
            builds += 1;
            by_descriptor(set.iter().cloned())
        });
        assert!(Arc::ptr_eq(&first, &again) && builds == 1, "kept");
        k.changed();
        let after = k.get_or_build(|| {
            builds += 1;
            by_descriptor(set.iter().take(1).cloned())
        });
        assert_eq!((builds, after.len()), (2, 1), "rebuilt after a change");
        drop((first, again));
        k.changed();
        drop(after);
        assert_eq!(
            Arc::strong_count(&set[0]),
            1,
            "a change drops the kept list: only the set holds its members"
        );
    }

    #[test]
    fn a_list_built_while_the_set_changed_is_not_kept() {
        let k = Kept::default();
        let set = [conn()];
        let stale = k.get_or_build(|| {
            // The set changes while the list is being built.
            k.changed();
            by_descriptor(set.iter().cloned())
        });
        assert_eq!(stale.len(), 1, "the caller still gets its list");
        let mut rebuilt = false;
        k.get_or_build(|| {
            rebuilt = true;
            by_descriptor(Vec::new())
        });
        assert!(rebuilt, "the stale list was not kept");
    }
}
