//! Channel history on one node: each channel with `history_size > 0` keeps a bounded log of
//! its newest messages, numbered by offset within an epoch.
//!
//! Invariants:
//! - a channel's offsets are 1, 2, 3, … with no gap within one epoch; an offset is assigned
//!   under the log's lock, and the message is queued for the subscribers under the same lock,
//!   so every subscriber's queue holds the channel's messages in offset order;
//! - a recovery subscribes the connection and queues what it missed under that lock too: a
//!   publish lands either before it (and is replayed) or after it (and arrives live), never
//!   both, never neither;
//! - the epoch changes whenever the history could have been lost: a log is created with a
//!   fresh epoch (node start, or after its channel went quiet past its TTL and was dropped), so
//!   an offset of another epoch never matches;
//! - memory is bounded: per channel by `history_size`, node-wide by `[limits]
//!   history_max_bytes` and `history_max_messages`, each message counted with its bookkeeping;
//!   the oldest messages go first. A replay clones frames (reference counts), never payloads.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use rand::RngCore as _;

use crate::config::ChannelRule;

/// Bytes counted per kept message beyond its payload and frame: the entry, two `Bytes`
/// handles, and the allocator's headers of two allocations.
pub const ENTRY_OVERHEAD_BYTES: usize = std::mem::size_of::<Entry>() + 2 * 16 + 32;

/// Where a message sits in its channel: an offset within an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position<'a> {
    /// 1 for the epoch's first message.
    pub offset: u64,
    /// The epoch.
    pub epoch: &'a str,
}

/// A position a client or backend names (`?recover=c:offset:epoch`, `since`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    /// The newest offset the client has.
    pub offset: u64,
    /// Its epoch.
    pub epoch: String,
}

/// One kept message.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its offset.
    pub offset: u64,
    /// When it was published (Unix milliseconds).
    pub published_ms: i64,
    /// The published bytes.
    pub payload: Bytes,
    /// The frame subscribers received (replayed as it is).
    pub frame: Bytes,
    born: Instant,
    cost: usize,
}

/// One channel's log. In cluster mode the messages live in Redis, and a node's log only
/// serialises the channel's deliveries and holds its recoveries in progress.
#[derive(Debug)]
pub struct Log {
    epoch: Arc<str>,
    head: u64,
    entries: VecDeque<Entry>,
    /// The last publish or recovery.
    touched: Instant,
    /// Cluster mode: connections whose replay is being fetched, with the live messages that
    /// arrived for them meanwhile.
    pub(crate) pending: Vec<Pending>,
    /// Cluster mode: connections whose replay went up to an offset, with when it ended. Redis
    /// answers the fetch on one connection and pushes the live messages on another (through
    /// the inbox), so a message the replay held may still arrive live afterwards: it is
    /// skipped. The entry goes with the first later offset, or after [`FLOOR_LIFETIME`].
    pub(crate) floors: std::collections::HashMap<crate::conn::id::ConnectionId, (u64, Instant)>,
}

/// How long a replay's floor is kept when no later message arrives to clear it.
pub const FLOOR_LIFETIME: Duration = Duration::from_secs(60);

/// Most live messages held for one recovering connection while its replay is fetched; past
/// it the recovery ends `recovered:false` (the client reloads) rather than hold more.
pub const MAX_PENDING_FRAMES: usize = 4_096;

/// A recovering connection's live messages, held until its replay is queued (cluster mode).
#[derive(Debug)]
pub struct Pending {
    /// The connection.
    pub conn: crate::conn::id::ConnectionId,
    /// Live messages, by offset, in arrival (= offset) order.
    pub frames: Vec<(u64, Bytes)>,
    /// More than [`MAX_PENDING_FRAMES`] arrived.
    pub overflowed: bool,
}

impl Pending {
    /// Holds `frame` (offset `offset`) for the connection.
    pub fn hold(&mut self, offset: u64, frame: Bytes) {
        if self.frames.len() < MAX_PENDING_FRAMES {
            self.frames.push((offset, frame));
        } else {
            self.overflowed = true;
        }
    }
}

/// A channel's history as Redis answered it (cluster mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The channel's epoch.
    pub epoch: String,
    /// Its newest offset.
    pub head: u64,
    /// The oldest offset Redis keeps (`head + 1` when it keeps none).
    pub first: u64,
    /// Kept messages after the asked offset, oldest first.
    pub items: Vec<FetchedItem>,
}

/// One message of a [`Fetched`] history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedItem {
    /// Its offset.
    pub offset: u64,
    /// When it was published (Unix milliseconds).
    pub published_ms: i64,
    /// The published bytes.
    pub payload: Bytes,
}

impl Fetched {
    /// The messages a client at `since` missed, oldest first, or `None` when the gap cannot be
    /// filled (another epoch, beyond the newest, trimmed, or expired by `ttl` at `now_ms`).
    pub fn missed(&self, since: &Since, ttl: Duration, now_ms: i64) -> Option<&[FetchedItem]> {
        if since.epoch != self.epoch || since.offset > self.head {
            return None;
        }
        if since.offset == self.head {
            return Some(&[]);
        }
        let start = self.items.iter().position(|i| i.offset > since.offset)?;
        let missed = &self.items[start..];
        let oldest_fresh =
            now_ms.saturating_sub(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let contiguous = missed
            .iter()
            .enumerate()
            .all(|(k, i)| i.offset == since.offset + 1 + k as u64);
        (contiguous && missed.iter().all(|i| i.published_ms >= oldest_fresh)).then_some(missed)
    }
}

/// The live messages held during a replay that ended at offset `replayed_to`: those after it
/// (the earlier ones were in the replay), in order.
pub fn after_replay(held: Vec<(u64, Bytes)>, replayed_to: u64) -> impl Iterator<Item = Bytes> {
    held.into_iter()
        .filter(move |(o, _)| *o > replayed_to)
        .map(|(_, f)| f)
}

/// What a recovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// The gap can be filled: these frames, oldest first (maybe none).
    Frames(Vec<Bytes>),
    /// It cannot (another epoch, trimmed, expired, or an offset beyond the newest).
    Lost,
}

/// A page of history (the history API).
#[derive(Debug, Clone)]
pub struct Page {
    /// The channel's epoch.
    pub epoch: Arc<str>,
    /// The channel's newest offset.
    pub head: u64,
    /// The oldest offset still kept (`head + 1` when none is).
    pub oldest: u64,
    /// Messages after `since`, oldest first, at most `limit`.
    pub items: Vec<Entry>,
    /// True when more messages follow the last item.
    pub more: bool,
}

impl Log {
    fn new() -> Log {
        Log {
            epoch: new_epoch(),
            head: 0,
            entries: VecDeque::new(),
            touched: Instant::now(),
            pending: Vec::new(),
            floors: std::collections::HashMap::new(),
        }
    }

    /// The epoch and the newest offset.
    pub fn now(&self) -> Position<'_> {
        Position {
            offset: self.head,
            epoch: &self.epoch,
        }
    }

    /// The epoch (shared).
    pub fn epoch(&self) -> Arc<str> {
        Arc::clone(&self.epoch)
    }

    /// The offset the next publish gets.
    pub fn next_offset(&self) -> u64 {
        self.head + 1
    }

    /// What a client at `since` missed.
    pub fn replay(&self, since: &Since, ttl: Duration) -> Replay {
        if since.epoch != *self.epoch || since.offset > self.head {
            return Replay::Lost;
        }
        if since.offset == self.head {
            return Replay::Frames(Vec::new());
        }
        let fresh = self.fresh(ttl);
        match fresh.clone().next() {
            Some(first) if first.offset <= since.offset + 1 => Replay::Frames(
                fresh
                    .filter(|e| e.offset > since.offset)
                    .map(|e| e.frame.clone())
                    .collect(),
            ),
            _ => Replay::Lost,
        }
    }

    /// Up to `limit` kept messages after offset `since`.
    pub fn page(&self, since: u64, limit: usize, ttl: Duration) -> Page {
        let mut items: Vec<Entry> = Vec::with_capacity(limit.min(self.entries.len()));
        let mut more = false;
        let mut oldest = self.head + 1;
        for e in self.fresh(ttl) {
            oldest = oldest.min(e.offset);
            if e.offset <= since {
                continue;
            }
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(e.clone());
        }
        Page {
            epoch: Arc::clone(&self.epoch),
            head: self.head,
            oldest,
            items,
            more,
        }
    }

    /// The entries younger than `ttl`.
    fn fresh(&self, ttl: Duration) -> impl Iterator<Item = &Entry> + Clone {
        let now = Instant::now();
        self.entries
            .iter()
            .filter(move |e| now.saturating_duration_since(e.born) < ttl)
    }
}

/// A fresh epoch: 12 random hex digits.
pub fn new_epoch() -> Arc<str> {
    let mut raw = [0u8; 6];
    rand::rng().fill_bytes(&mut raw);
    Arc::from(hex::encode(raw))
}

/// Every channel's log on this node (see the module documentation).
#[derive(Debug, Default)]
pub struct History {
    logs: DashMap<Arc<str>, Arc<Mutex<Log>>>,
    bytes: AtomicUsize,
    messages: AtomicUsize,
    evicted_memory: AtomicUsize,
    /// Evictions not yet added to the metric.
    evicted_unreported: AtomicUsize,
    /// Unix milliseconds of the last sweep for expired messages.
    swept_ms: AtomicI64,
}

/// A locked channel log, with the store it accounts to.
pub struct Locked<'a> {
    history: &'a History,
    mutex: &'a Mutex<Log>,
    log: MutexGuard<'a, Log>,
}

impl std::ops::Deref for Locked<'_> {
    type Target = Log;
    fn deref(&self) -> &Log {
        &self.log
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Log {
        &mut self.log
    }
}

impl History {
    /// No logs.
    pub fn new() -> History {
        History::default()
    }

    /// The log of `channel`, created (with a fresh epoch) when it has none.
    pub fn log(&self, channel: &str) -> Arc<Mutex<Log>> {
        if let Some(log) = self.logs.get(channel) {
            return Arc::clone(log.value());
        }
        Arc::clone(
            self.logs
                .entry(Arc::from(channel))
                .or_insert_with(|| Arc::new(Mutex::new(Log::new())))
                .value(),
        )
    }

    /// The log of `channel`, if it has one.
    pub fn existing(&self, channel: &str) -> Option<Arc<Mutex<Log>>> {
        self.logs.get(channel).map(|l| Arc::clone(l.value()))
    }

    /// Locks a log (a poisoned lock is taken over: the log's fields are always consistent
    /// between statements that can panic).
    pub fn lock<'a>(&'a self, log: &'a Mutex<Log>) -> Locked<'a> {
        Locked {
            history: self,
            mutex: log,
            log: log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        }
    }

    /// Bytes kept (with bookkeeping) and messages kept, node-wide.
    pub fn usage(&self) -> (usize, usize) {
        (
            self.bytes.load(Ordering::Relaxed),
            self.messages.load(Ordering::Relaxed),
        )
    }

    /// Messages dropped to keep the node-wide bounds, since start.
    #[cfg(test)]
    pub fn evicted_for_memory(&self) -> usize {
        self.evicted_memory.load(Ordering::Relaxed)
    }

    /// Evictions since the last call (for the metric).
    pub fn take_evicted(&self) -> usize {
        self.evicted_unreported.swap(0, Ordering::Relaxed)
    }

    /// Channels with a log.
    #[cfg(test)]
    pub fn channel_count(&self) -> usize {
        self.logs.len()
    }

    /// Removes the messages older than their channel's TTL and the logs of channels quiet for
    /// longer than it (or that lost their rule), at most once a second; `rule` looks a
    /// channel's rule up in the configuration in force. Locks are only tried: a busy log is
    /// swept next time.
    pub fn sweep(&self, rule: impl Fn(&str) -> Option<Duration>) {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let last = self.swept_ms.load(Ordering::Relaxed);
        if now_ms - last < 1_000
            || self
                .swept_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let now = Instant::now();
        self.logs.retain(|name, log| {
            let Ok(mut log) = log.try_lock() else {
                return true;
            };
            let Some(ttl) = rule(name) else {
                self.release_all(&mut log);
                return !log.pending.is_empty();
            };
            while log
                .entries
                .front()
                .is_some_and(|e| now.saturating_duration_since(e.born) >= ttl)
            {
                if let Some(e) = log.entries.pop_front() {
                    self.release(&e);
                }
            }
            log.floors
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < FLOOR_LIFETIME);
            !(log.entries.is_empty()
                && log.pending.is_empty()
                && log.floors.is_empty()
                && now.saturating_duration_since(log.touched) >= ttl)
        });
    }

    /// Forgets every message of `channel` (the offsets go on: a client behind them cannot
    /// recover). Returns how many were dropped.
    pub fn clear(&self, channel: &str) -> usize {
        let Some(log) = self.existing(channel) else {
            return 0;
        };
        let mut locked = self.lock(&log);
        let n = locked.log.entries.len();
        let log = &mut *locked.log;
        self.release_all(log);
        n
    }

    fn release_all(&self, log: &mut Log) {
        for e in log.entries.drain(..) {
            self.release(&e);
        }
    }

    fn evicted(&self, n: usize) {
        self.evicted_memory.fetch_add(n, Ordering::Relaxed);
        self.evicted_unreported.fetch_add(n, Ordering::Relaxed);
    }

    fn release(&self, e: &Entry) {
        self.bytes.fetch_sub(e.cost, Ordering::Relaxed);
        self.messages.fetch_sub(1, Ordering::Relaxed);
    }

    /// Drops one message of another channel than `except`, the oldest of the first log that
    /// is free; false when none could be.
    fn evict_elsewhere(&self, except: &Mutex<Log>) -> bool {
        for entry in self.logs.iter() {
            if std::ptr::eq(Arc::as_ptr(entry.value()), except) {
                continue;
            }
            let Ok(mut log) = entry.value().try_lock() else {
                continue;
            };
            if let Some(e) = log.entries.pop_front() {
                self.release(&e);
                self.evicted(1);
                return true;
            }
        }
        false
    }
}

impl Locked<'_> {
    /// Records the message the caller just queued at [`Log::next_offset`], then trims this
    /// channel to its rule and the node to its bounds (`max_bytes`, `max_messages`).
    pub fn append(
        &mut self,
        rule: &ChannelRule,
        payload: Bytes,
        frame: Bytes,
        max_bytes: usize,
        max_messages: usize,
    ) {
        let log = &mut *self.log;
        log.head += 1;
        log.touched = Instant::now();
        let shared = frame.as_ptr_range().contains(&payload.as_ptr()) || payload.is_empty();
        let cost = ENTRY_OVERHEAD_BYTES + frame.len() + if shared { 0 } else { payload.len() };
        log.entries.push_back(Entry {
            offset: log.head,
            published_ms: chrono::Utc::now().timestamp_millis(),
            payload,
            frame,
            born: log.touched,
            cost,
        });
        let h = self.history;
        h.bytes.fetch_add(cost, Ordering::Relaxed);
        h.messages.fetch_add(1, Ordering::Relaxed);
        while log.entries.len() > rule.history_size {
            if let Some(e) = log.entries.pop_front() {
                h.release(&e);
            }
        }
        // Node-wide: this channel's oldest first (it is locked already), then other channels'.
        let over = || {
            let (b, m) = h.usage();
            b > max_bytes || m > max_messages
        };
        while over() && self.log.entries.len() > 1 {
            if let Some(e) = self.log.entries.pop_front() {
                h.release(&e);
                h.evicted(1);
            }
        }
        while over() {
            if !h.evict_elsewhere(self.mutex) {
                break;
            }
        }
        if over() {
            // Nothing else to give: the newest message itself does not fit.
            if let Some(e) = self.log.entries.pop_front() {
                h.release(&e);
                h.evicted(1);
            }
        }
    }

    /// Cluster mode: marks the log used by a delivery from Redis.
    pub fn touch_relay(&mut self) {
        self.log.touched = Instant::now();
    }

    /// Cluster mode: `conn`'s replay went up to `offset`; live messages up to it are skipped.
    pub fn set_floor(&mut self, conn: crate::conn::id::ConnectionId, offset: u64) {
        self.log.floors.insert(conn, (offset, Instant::now()));
    }

    /// Marks the log used (a recovery), so a quiet channel's epoch lives on.
    pub fn touch(&mut self) {
        self.log.touched = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::channels::ChannelPattern;
    use crate::config::{ChannelRule, Envelope};

    fn rule(size: usize) -> ChannelRule {
        ChannelRule {
            pattern: ChannelPattern::Prefix(String::new()),
            history_size: size,
            history_ttl: Duration::from_secs(60),
            envelope: Envelope::None,
            presence: false,
            join_leave: false,
        }
    }

    fn publish(h: &History, ch: &str, rule: &ChannelRule, text: &str, max_bytes: usize) -> u64 {
        let log = h.log(ch);
        let mut l = h.lock(&log);
        let offset = l.next_offset();
        let frame = Bytes::from(format!("{offset:03}:{text}"));
        l.append(
            rule,
            Bytes::from(text.to_string()),
            frame,
            max_bytes,
            usize::MAX,
        );
        offset
    }

    fn frames(r: Replay) -> Vec<String> {
        match r {
            Replay::Frames(f) => f
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect(),
            Replay::Lost => vec!["LOST".into()],
        }
    }

    #[test]
    fn offsets_replay_and_the_ways_a_gap_is_lost() {
        let h = History::new();
        let r = rule(3);
        for i in 1..=5 {
            assert_eq!(publish(&h, "c", &r, &format!("m{i}"), usize::MAX), i);
        }
        let log = h.log("c");
        let l = h.lock(&log);
        let ttl = r.history_ttl;
        // Kept: 3, 4, 5.
        let epoch = l.epoch.to_string();
        let at = |o: u64| Since {
            offset: o,
            epoch: epoch.clone(),
        };
        assert_eq!(
            frames(l.replay(&at(2), ttl)),
            vec!["003:m3", "004:m4", "005:m5"]
        );
        assert_eq!(frames(l.replay(&at(4), ttl)), vec!["005:m5"]);
        assert!(frames(l.replay(&at(5), ttl)).is_empty());
        // Trimmed, beyond the head, another epoch, expired.
        assert_eq!(frames(l.replay(&at(1), ttl)), vec!["LOST"]);
        assert_eq!(frames(l.replay(&at(6), ttl)), vec!["LOST"]);
        let other = Since {
            offset: 4,
            epoch: "000000000000".into(),
        };
        assert_eq!(frames(l.replay(&other, ttl)), vec!["LOST"]);
        assert_eq!(frames(l.replay(&at(4), Duration::ZERO)), vec!["LOST"]);
        let page = l.page(2, 2, ttl);
        assert_eq!(
            (page.items.len(), page.more, page.head, page.oldest),
            (2, true, 5, 3)
        );
        drop(l);
        assert_eq!(h.usage().1, 3);
        assert_eq!(h.clear("c"), 3);
        assert_eq!(h.usage(), (0, 0));
        // The offsets go on after a clear; the gap is lost.
        assert_eq!(publish(&h, "c", &r, "m6", usize::MAX), 6);
        let l = h.lock(&log);
        assert_eq!(frames(l.replay(&at(4), ttl)), vec!["LOST"]);
        assert_eq!(frames(l.replay(&at(5), ttl)), vec!["006:m6"]);
    }

    #[test]
    fn node_wide_bytes_evict_the_oldest_messages_first() {
        let h = History::new();
        let r = rule(1000);
        let per = ENTRY_OVERHEAD_BYTES + "001:aaaa".len() + 4;
        let max = per * 10;
        for _ in 0..10 {
            publish(&h, "a", &r, "aaaa", max);
        }
        assert_eq!(h.usage().1, 10);
        // A new channel's messages push channel a's oldest out, not its own newest.
        for _ in 0..4 {
            publish(&h, "b", &r, "bbbb", max);
        }
        let (bytes, messages) = h.usage();
        assert!(bytes <= max, "{bytes} > {max}");
        assert_eq!(messages, 10);
        assert_eq!(h.evicted_for_memory(), 4);
        // A channel alone over the bound keeps its newest messages.
        let h = History::new();
        for _ in 0..20 {
            publish(&h, "a", &r, "aaaa", max);
        }
        let log = h.log("a");
        let l = h.lock(&log);
        assert_eq!(l.page(0, 100, r.history_ttl).oldest, 11);
    }

    fn fetched(first: u64, head: u64, published_ms: i64) -> Fetched {
        Fetched {
            epoch: "e".into(),
            head,
            first,
            items: (first..=head)
                .map(|offset| FetchedItem {
                    offset,
                    published_ms,
                    payload: Bytes::from(offset.to_string()),
                })
                .collect(),
        }
    }

    #[test]
    fn what_a_fetched_history_can_fill() {
        let ttl = Duration::from_secs(60);
        let now = 1_000_000;
        let at = |offset: u64, epoch: &str| Since {
            offset,
            epoch: epoch.into(),
        };
        let f = fetched(3, 6, now);
        let offsets =
            |m: Option<&[FetchedItem]>| m.map(|m| m.iter().map(|i| i.offset).collect::<Vec<_>>());
        assert_eq!(
            offsets(f.missed(&at(2, "e"), ttl, now)),
            Some(vec![3, 4, 5, 6])
        );
        assert_eq!(offsets(f.missed(&at(5, "e"), ttl, now)), Some(vec![6]));
        assert_eq!(offsets(f.missed(&at(1, "e"), ttl, now)), None, "trimmed");
        assert_eq!(
            offsets(f.missed(&at(7, "e"), ttl, now)),
            None,
            "beyond the head"
        );
        assert_eq!(
            offsets(f.missed(&at(4, "x"), ttl, now)),
            None,
            "another epoch"
        );
        assert_eq!(
            offsets(f.missed(&at(4, "e"), ttl, now + 61_000)),
            None,
            "expired"
        );
        // At the head: a fetch after `since` holds nothing, and nothing is missed.
        let empty = Fetched {
            items: Vec::new(),
            ..fetched(3, 6, now)
        };
        assert_eq!(offsets(empty.missed(&at(6, "e"), ttl, now)), Some(vec![]));
        assert_eq!(offsets(empty.missed(&at(5, "e"), ttl, now)), None);
    }

    #[test]
    fn live_messages_held_during_a_replay_follow_it_once() {
        // The replay went to 7; live 6 and 7 arrived during the fetch (and were in it).
        let held = vec![
            (6, Bytes::from_static(b"6")),
            (7, Bytes::from_static(b"7")),
            (8, Bytes::from_static(b"8")),
            (9, Bytes::from_static(b"9")),
        ];
        let out: Vec<Bytes> = after_replay(held, 7).collect();
        assert_eq!(
            out,
            vec![Bytes::from_static(b"8"), Bytes::from_static(b"9")]
        );
    }

    #[test]
    fn sweep_drops_expired_messages_and_ruleless_logs() {
        let h = History::new();
        let r = rule(10);
        publish(&h, "keep", &r, "x", usize::MAX);
        publish(&h, "gone", &r, "x", usize::MAX);
        h.sweep(|name| (name == "keep").then_some(Duration::from_secs(60)));
        assert_eq!(h.channel_count(), 1);
        assert_eq!(h.usage().1, 1);
        // Once a second at most.
        publish(&h, "gone", &r, "x", usize::MAX);
        h.sweep(|_| None);
        assert_eq!(h.channel_count(), 2);
    }
}
