//! Fencing: a node cut off from Redis while the others still reach it closes its clients before
//! any survivor can reap it, so no connection is ever reported gone while it is open.
//!
//! The contract (ARCHITECTURE.md, "The `$disconnect` contract"): every connection is either
//! open, reachable from every node, with no `$disconnect` sent for it; or closed, with its
//! `$disconnect` delivered at least once, every copy carrying the same `requestId`.
//!
//! Invariants:
//! - the heartbeat renews the node's liveness key at t0 (when the command was sent: Redis starts
//!   the TTL later), so no survivor can find the key expired before t0 + `node_ttl`;
//! - a node that has not renewed by t0 + [`ClusterSettings::ask_peers_after`] asks its peers
//!   (each question bounded by [`ClusterSettings::peer_timeout`]) and so decides by
//!   t0 + `node_ttl` − margin ([`ClusterSettings::fence_margin`]):
//!   - a peer reaches Redis → it is cut off alone: fence;
//!   - no peer answers → it is isolated: fence;
//!   - peers answer, none reaches Redis → Redis is down for everyone, nobody can reap: keep
//!     serving, and ask again every heartbeat interval (survivors wait a full `node_ttl` of
//!     healthy heartbeats before reaping, see the reaper, so a recovery is noticed in time);
//!   - no peer known, or no witness configured → nobody could reap: keep serving;
//! - fenced: every client is closed with 1012 (their `$disconnect` goes out as usual, with the
//!   connection's fixed `requestId`), upgrades are refused with 503 and `/readyz` says so; the
//!   fence lifts only once a heartbeat succeeds and the node has checked whether it was reaped
//!   (see [`super::membership`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt as _};
use tokio::time::Instant;

use super::{Cluster, ClusterSettings};
use crate::conn::close;
use crate::peer::PeerAnswer;
use crate::state::NodeState;

/// The heartbeat's record of this node's hold on its liveness key.
#[derive(Debug, Default)]
pub(super) struct Lease {
    /// When the last successful heartbeat was sent.
    pub renewed_at: Option<Instant>,
    /// When it was answered.
    pub ok_at: Option<Instant>,
    /// Since when every heartbeat has succeeded.
    pub healthy_since: Option<Instant>,
}

impl Lease {
    /// A heartbeat sent at `sent` succeeded.
    pub(super) fn renewed(&mut self, sent: Instant) {
        self.renewed_at = Some(sent);
        self.ok_at = Some(Instant::now());
        self.healthy_since.get_or_insert(sent);
    }

    /// A heartbeat failed.
    pub(super) fn failed(&mut self) {
        self.healthy_since = None;
    }

    /// True when the key may have expired between the last renewal and one sent at `sent`.
    pub(super) fn lapsed(&self, sent: Instant, s: &ClusterSettings) -> bool {
        self.renewed_at.is_some_and(|t0| {
            sent.saturating_duration_since(t0) >= s.node_ttl.saturating_sub(s.fence_margin())
        })
    }

    /// True when the last heartbeat succeeded recently enough to vouch for Redis to a peer.
    pub(super) fn fresh(&self, s: &ClusterSettings) -> bool {
        self.ok_at.is_some_and(|t| t.elapsed() <= s.fresh_for())
    }

    /// True when every heartbeat for at least `span` has succeeded.
    pub(super) fn healthy_for(&self, span: std::time::Duration) -> bool {
        self.healthy_since.is_some_and(|t| t.elapsed() >= span)
    }

    /// For how long every heartbeat has succeeded (zero when the last one failed).
    pub(super) fn healthy(&self) -> std::time::Duration {
        self.healthy_since
            .map_or(std::time::Duration::ZERO, |t| t.elapsed())
    }
}

/// What the peers' answers say about a node that cannot reach Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// A peer reaches Redis: this node is cut off alone.
    Partitioned,
    /// No peer answered: this node is isolated.
    Isolated,
    /// Peers answered and none reaches Redis: a whole outage.
    Outage,
    /// No peer to ask.
    Alone,
}

impl Verdict {
    /// True when the node must fence.
    pub(super) fn fences(self) -> bool {
        matches!(self, Verdict::Partitioned | Verdict::Isolated)
    }
}

/// True when a peer that reaches Redis could reap this node before the next round of questions
/// is decided: it has been healthy for nearly a full `node_ttl` (reapers wait that long).
pub(super) fn reap_is_near(answers: &[Option<PeerAnswer>], s: &ClusterSettings) -> bool {
    let next_decision = s.heartbeat + s.peer_timeout() + s.fence_margin();
    answers
        .iter()
        .flatten()
        .any(|a| a.reaches_redis && s.node_ttl.saturating_sub(a.healthy_for) <= next_decision)
}

/// Judges the answers (`None`: no usable answer in time).
pub(super) fn judge(answers: &[Option<bool>]) -> Verdict {
    if answers.is_empty() {
        Verdict::Alone
    } else if answers.contains(&Some(true)) {
        Verdict::Partitioned
    } else if answers.iter().all(Option::is_none) {
        Verdict::Isolated
    } else {
        Verdict::Outage
    }
}

/// Watches the lease; asks the peers and fences when it is about to lapse. Ends when the node
/// leaves.
pub(super) async fn watch(state: Arc<NodeState>, cluster: Arc<Cluster>) {
    let s = &cluster.settings;
    let mut said: Option<Verdict> = None;
    loop {
        if cluster.leaving.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        let renewed = cluster.lease().renewed_at;
        let ask_at = renewed.map(|t0| t0 + s.ask_peers_after());
        match ask_at {
            Some(at) if now >= at && !cluster.fenced.load(Ordering::Relaxed) => {}
            Some(at) if now < at => {
                said = None;
                tokio::time::sleep_until(at.min(now + s.heartbeat)).await;
                continue;
            }
            // Never joined (nobody knows this node), or already fenced.
            _ => {
                tokio::time::sleep(s.heartbeat).await;
                continue;
            }
        }
        let answers = ask_peers(&cluster).await;
        if cluster.lease().renewed_at != renewed {
            continue; // the heartbeat got through meanwhile
        }
        let verdict = judge(
            &answers
                .iter()
                .map(|a| a.map(|a| a.reaches_redis))
                .collect::<Vec<_>>(),
        );
        if verdict == Verdict::Partitioned && !reap_is_near(&answers, s) {
            // The peers reaching Redis have only just got it back (after a whole outage): none
            // can reap before the next round, and this node's own heartbeat may get through by
            // then. No new clients meanwhile.
            cluster.outage.store(false, Ordering::Relaxed);
            tokio::time::sleep(s.heartbeat).await;
            continue;
        }
        cluster.outage.store(!verdict.fences(), Ordering::Relaxed);
        if verdict.fences() {
            fence(&state, &cluster, verdict);
        } else if said != Some(verdict) {
            tracing::warn!(node_id = %cluster.node_id, ?verdict, "Redis unreachable, and no other node reaches it: serving local traffic");
        }
        said = Some(verdict);
        tokio::time::sleep(s.heartbeat).await;
    }
}

/// Asks every known peer at once; stops at the first that reaches Redis.
async fn ask_peers(cluster: &Cluster) -> Vec<Option<PeerAnswer>> {
    let Some((_, witness)) = cluster.witness.get() else {
        return Vec::new();
    };
    let peers = cluster
        .peers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let limit = cluster.settings.peer_timeout();
    let mut asks: FuturesUnordered<_> = peers
        .iter()
        .map(|url| async move {
            tokio::time::timeout(limit, witness.ask(url, limit))
                .await
                .ok()
                .flatten()
        })
        .collect();
    let mut answers = Vec::with_capacity(peers.len());
    while let Some(answer) = asks.next().await {
        answers.push(answer);
        if answer.is_some_and(|a| a.reaches_redis) {
            break;
        }
    }
    answers
}

/// Fences the node: closes every client with 1012 and refuses new ones until lifted.
fn fence(state: &NodeState, cluster: &Cluster, verdict: Verdict) {
    if cluster.fenced.swap(true, Ordering::SeqCst) {
        return;
    }
    cluster.metrics.cluster_fenced.set(1);
    let closed = close_all(state);
    cluster
        .metrics
        .cluster_fenced_connections_total
        .inc_by(closed);
    tracing::error!(node_id = %cluster.node_id, ?verdict, closed, "cut off from Redis while other nodes may reap this node: fenced (clients closed with 1012, upgrades refused until Redis answers)");
}

/// Lifts the fence (the heartbeat got through and the reaped check is done).
pub(super) fn lift(cluster: &Cluster) {
    if cluster.fenced.swap(false, Ordering::SeqCst) {
        cluster.metrics.cluster_fenced.set(0);
        tracing::info!(node_id = %cluster.node_id, "Redis answers again: fence lifted, accepting clients");
    }
}

/// Asks every open connection to close with 1012 Service Restart; how many were asked.
pub(super) fn close_all(state: &NodeState) -> u64 {
    let mut asked = 0;
    state.registry.for_each(|c| {
        if c.outbox
            .request_close(close::SERVICE_RESTART, "Service Restart")
        {
            asked += 1;
        }
    });
    asked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peers_answers_decide() {
        assert_eq!(judge(&[]), Verdict::Alone);
        assert_eq!(judge(&[None, None]), Verdict::Isolated);
        assert_eq!(judge(&[Some(false), None]), Verdict::Outage);
        assert_eq!(judge(&[Some(false), Some(false)]), Verdict::Outage);
        assert_eq!(judge(&[None, Some(true)]), Verdict::Partitioned);
        assert_eq!(judge(&[Some(false), Some(true)]), Verdict::Partitioned);
        assert!(Verdict::Partitioned.fences() && Verdict::Isolated.fences());
        assert!(!Verdict::Outage.fences() && !Verdict::Alone.fences());
    }

    fn settings(heartbeat_ms: u64, ttl_ms: u64) -> ClusterSettings {
        ClusterSettings {
            redis_url: "redis://127.0.0.1".into(),
            mode: crate::config::RedisMode::Standalone,
            seed_urls: Vec::new(),
            heartbeat: std::time::Duration::from_millis(heartbeat_ms),
            node_ttl: std::time::Duration::from_millis(ttl_ms),
            rpc_timeout: std::time::Duration::from_secs(1),
            tls_ca_pem: None,
        }
    }

    #[test]
    fn the_decision_falls_inside_the_ttl_whenever_the_config_is_accepted() {
        for (h, ttl) in [
            (500, 2000),
            (200, 1000),
            (1000, 5000),
            (100, 400),
            (60_000, 600_000),
        ] {
            crate::config::fencing_fits(h, ttl).expect("accepted");
            let s = settings(h, ttl);
            // Decided (asked and answered) with the margin to spare.
            assert!(s.ask_peers_after() + s.peer_timeout() + s.fence_margin() <= s.node_ttl);
            // Not before the next heartbeat had its chance.
            assert!(s.ask_peers_after() > s.heartbeat);
            // A peer that lost Redis together with this node no longer vouches for it when asked
            // (its last success was at most one interval before this node's).
            assert!(s.ask_peers_after() > s.fresh_for() + s.heartbeat);
            // A healthy peer vouches between two heartbeats, with room for a slow beat.
            assert!(s.fresh_for() >= s.heartbeat * 3 / 2, "{h}/{ttl}");
            // A black-holed beat is given up on before the decision.
            assert!(s.beat_timeout() < s.ask_peers_after());
        }
        assert!(crate::config::fencing_fits(500, 1999).is_err());
    }

    #[test]
    fn a_peer_just_back_from_an_outage_cannot_reap_yet() {
        let s = settings(200, 1000);
        let up = |ms| {
            Some(PeerAnswer {
                reaches_redis: true,
                healthy_for: std::time::Duration::from_millis(ms),
            })
        };
        // Healthy for 100 ms: it reaps 900 ms from now at the earliest; the next decision is
        // 200 + 100 + 100 ms away.
        assert!(!reap_is_near(&[up(100)], &s));
        assert!(reap_is_near(&[up(600)], &s));
        assert!(reap_is_near(&[up(100), up(5_000)], &s));
        let down = Some(PeerAnswer {
            reaches_redis: false,
            healthy_for: std::time::Duration::ZERO,
        });
        assert!(!reap_is_near(&[down, None], &s));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_lapses_after_the_ttl_less_the_margin() {
        let s = settings(500, 2000);
        let mut lease = Lease::default();
        let t0 = Instant::now();
        lease.renewed(t0);
        assert!(lease.fresh(&s));
        assert!(!lease.lapsed(t0 + std::time::Duration::from_millis(1700), &s));
        assert!(lease.lapsed(t0 + std::time::Duration::from_millis(1800), &s));
        // 2000 − 200 − 250 − 500 − 200 = 850 ms.
        tokio::time::advance(std::time::Duration::from_millis(800)).await;
        assert!(lease.fresh(&s));
        tokio::time::advance(std::time::Duration::from_millis(100)).await;
        assert!(!lease.fresh(&s));
        assert!(lease.healthy_for(std::time::Duration::from_millis(800)));
        lease.failed();
        assert!(!lease.healthy_for(std::time::Duration::ZERO));
    }
}
