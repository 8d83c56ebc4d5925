//! Recovery on reconnect: a client names where it stopped in each channel
//! (`?recover=<channel>:<offset>:<epoch>`, or its `$connect` backend does with `since`), and is
//! subscribed with every message it missed queued first, in offset order, then the live ones.
//!
//! The subscription and the replay happen under the channel log's lock (see [`history`]), so a
//! publish racing the recovery is queued once, in its place. When the gap cannot be filled the
//! client gets a `recovered:false` notice (see [`envelope`]) before anything live.
//!
//! [`history`]: super::history
//! [`envelope`]: super::envelope

use std::collections::HashMap;
use std::sync::Arc;

use crate::conn::connection::Connection;
use crate::conn::frame;
use crate::error::ConnectionError;
use crate::fanout::channels::validate_name;
use crate::fanout::history::{after_replay, Pending, Position, Replay, Since};
use crate::fanout::{deliver, envelope, join_leave};
use crate::state::NodeState;
use bytes::Bytes;

/// Longest epoch a client may name.
pub const MAX_EPOCH_BYTES: usize = 64;

/// The `recover` parameters of an upgrade request, by channel.
pub type RecoverRequests = HashMap<String, Since>;

/// How one recovery ended (the `result` label of `gangway_recoveries_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovered {
    /// Every missed message was queued (maybe none).
    Yes,
    /// The gap could not be filled: the client was told.
    Lost,
    /// The channel keeps no history: the client was told.
    NoHistory,
}

impl Recovered {
    fn label(self) -> &'static str {
        match self {
            Recovered::Yes => "recovered",
            Recovered::Lost => "lost",
            Recovered::NoHistory => "no_history",
        }
    }
}

/// Checks an epoch's text: 1–64 characters of `A-Z a-z 0-9 - _`.
pub fn valid_epoch(epoch: &str) -> bool {
    (1..=MAX_EPOCH_BYTES).contains(&epoch.len())
        && epoch
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Reads every `recover` value of a query: `<channel>:<offset>:<epoch>` (a channel name may
/// itself hold `:`, so the last two fields are taken from the right). At most `max` of them,
/// one per channel.
///
/// # Errors
/// The first bad value, as a message for the client.
pub fn parse_recover<'a>(
    query: impl IntoIterator<Item = (&'a str, &'a str)>,
    max: usize,
) -> Result<RecoverRequests, String> {
    let mut out = RecoverRequests::new();
    for (key, value) in query {
        if key != "recover" {
            continue;
        }
        if out.len() == max {
            return Err(format!("at most {max} recover parameters"));
        }
        let mut fields = value.rsplitn(3, ':');
        let (Some(epoch), Some(offset), Some(channel)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err("recover must be <channel>:<offset>:<epoch>".into());
        };
        validate_name(channel)?;
        let offset: u64 = offset
            .parse()
            .ok()
            .filter(|_| offset.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("recover offset {offset:?} is not a whole number"))?;
        if !valid_epoch(epoch) {
            return Err(format!(
                "recover epoch {epoch:?} is not 1-{MAX_EPOCH_BYTES} characters of A-Z, a-z, 0-9, - and _"
            ));
        }
        let since = Since {
            offset,
            epoch: epoch.to_string(),
        };
        if out.insert(channel.to_string(), since).is_some() {
            return Err(format!(
                "channel {channel:?} is named by two recover parameters"
            ));
        }
    }
    Ok(out)
}

/// Subscribes `conn` to `channel` and queues what it missed since `since` (or the notice that
/// it cannot be told). The caller has checked the channel's name.
pub fn subscribe_recovering(
    state: &NodeState,
    conn: &Arc<Connection>,
    channel: &str,
    since: &Since,
) -> Result<Recovered, ConnectionError> {
    let config = state.config();
    let max = config.limits.max_channels_per_connection;
    let subscribe = || state.channels.subscribe(channel, conn, max);
    let joined = |new: bool| joined(state, conn, channel, new);
    let Some(rule) = config.channels.get(channel).filter(|r| r.keeps_history()) else {
        let new = subscribe()?;
        return Ok(without_history(state, conn, channel, new));
    };
    let log = state.history.log(channel);
    let mut locked = state.history.lock(&log);
    let new = subscribe()?;
    locked.touch();
    let outcome = match locked.replay(since, rule.history_ttl) {
        Replay::Frames(frames) => {
            for f in frames {
                if deliver(state, conn, f, "recovery").is_err() {
                    break;
                }
            }
            Recovered::Yes
        }
        Replay::Lost => {
            let notice = frame::encode(
                frame::OPCODE_TEXT,
                &envelope::not_recovered(channel, locked.now()),
            );
            let _ = deliver(state, conn, notice, "recovery");
            Recovered::Lost
        }
    };
    drop(locked);
    joined(new);
    Ok(count(state, outcome))
}

/// Cluster mode: as [`subscribe_recovering`], with the history in Redis. The connection is
/// subscribed (and live messages for it held) under the channel's log lock; then the node's
/// Redis subscription is made live and the missed messages fetched; then, under the lock
/// again, the replay is queued, followed by the held live messages after it — each offset
/// once, in order.
pub async fn subscribe_recovering_via(
    state: &NodeState,
    cluster: &dyn crate::state::ClusterLink,
    conn: &Arc<Connection>,
    channel: &str,
    since: &Since,
) -> Result<Recovered, ConnectionError> {
    let config = state.config.load_full();
    let max = config.limits.max_channels_per_connection;
    let subscribe = || state.channels.subscribe(channel, conn, max);
    let joined = |new: bool| joined(state, conn, channel, new);
    let Some(rule) = config.channels.get(channel).filter(|r| r.keeps_history()) else {
        let new = subscribe()?;
        cluster.reconcile(channel).await;
        return Ok(without_history(state, conn, channel, new));
    };
    let new = {
        let log = state.history.log(channel);
        let mut locked = state.history.lock(&log);
        let new = subscribe()?;
        locked.pending.push(Pending {
            conn: conn.id,
            frames: Vec::new(),
            overflowed: false,
        });
        new
    };
    cluster.reconcile(channel).await;
    let fetched = cluster
        .fetch_history(channel, since.offset, rule.history_size, rule.history_ttl)
        .await;
    let log = state.history.log(channel);
    let mut locked = state.history.lock(&log);
    let held = match locked.pending.iter().position(|p| p.conn == conn.id) {
        Some(i) => locked.pending.swap_remove(i),
        None => Pending {
            conn: conn.id,
            frames: Vec::new(),
            overflowed: false,
        },
    };
    let now_ms = chrono::Utc::now().timestamp_millis();
    let send = |f: Bytes| deliver(state, conn, f, "recovery").is_ok();
    let outcome = match &fetched {
        Ok(f) => match f.missed(since, rule.history_ttl, now_ms) {
            Some(items) if !held.overflowed => {
                let mut ok = true;
                for it in items {
                    let at = Position {
                        offset: it.offset,
                        epoch: &f.epoch,
                    };
                    ok = ok
                        && send(super::channel_frame(
                            channel,
                            rule.envelope,
                            Some(at),
                            &it.payload,
                        ));
                }
                let to = items.last().map_or(since.offset, |i| i.offset);
                let held_to = held.frames.last().map_or(to, |(o, _)| (*o).max(to));
                for fr in after_replay(held.frames, to) {
                    ok = ok && send(fr);
                }
                // What Redis pushes later for offsets already sent is skipped.
                locked.set_floor(conn.id, held_to);
                Recovered::Yes
            }
            _ => {
                let now = Position {
                    offset: f.head,
                    epoch: &f.epoch,
                };
                send(frame::encode(
                    frame::OPCODE_TEXT,
                    &envelope::not_recovered(channel, now),
                ));
                for (_, fr) in held.frames {
                    send(fr);
                }
                Recovered::Lost
            }
        },
        Err(e) => {
            tracing::warn!(connection_id = %conn.id_text, channel, error = %e, "recovery: history unavailable");
            send(frame::encode(
                frame::OPCODE_TEXT,
                &envelope::unavailable(channel),
            ));
            for (_, fr) in held.frames {
                send(fr);
            }
            Recovered::Lost
        }
    };
    drop(locked);
    joined(new);
    Ok(count(state, outcome))
}

/// Announces a new subscription (when the channel's rule asks for join messages).
fn joined(state: &NodeState, conn: &Connection, channel: &str, new: bool) {
    if new {
        join_leave::announce(state, channel, conn, join_leave::Change::Join);
    }
}

/// A recovery on a channel that keeps no history: the client, now subscribed, is told.
fn without_history(state: &NodeState, conn: &Connection, channel: &str, new: bool) -> Recovered {
    let notice = frame::encode(frame::OPCODE_TEXT, &envelope::no_history(channel));
    let _ = deliver(state, conn, notice, "recovery");
    joined(state, conn, channel, new);
    count(state, Recovered::NoHistory)
}

/// Tells `conn` that it asked to recover `channel` without being subscribed to it.
pub fn refuse_unsubscribed(state: &NodeState, conn: &Connection, channel: &str) {
    let notice = frame::encode(frame::OPCODE_TEXT, &envelope::not_subscribed(channel));
    let _ = deliver(state, conn, notice, "recovery");
    state
        .metrics
        .recoveries_total
        .with_label_values(&["not_subscribed"])
        .inc();
}

fn count(state: &NodeState, r: Recovered) -> Recovered {
    state
        .metrics
        .recoveries_total
        .with_label_values(&[r.label()])
        .inc();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(v: &[&'static str]) -> Vec<(&'static str, &'static str)> {
        v.iter().map(|s| ("recover", *s)).collect()
    }

    #[test]
    fn recover_values_are_validated() {
        let ok = parse_recover(q(&["news:eu:12:ab-c_1", "room:0:e"]), 10).expect("valid");
        assert_eq!(
            ok.get("news:eu"),
            Some(&Since {
                offset: 12,
                epoch: "ab-c_1".into()
            })
        );
        assert_eq!(ok.get("room").map(|s| s.offset), Some(0));
        for bad in [
            "news",
            "news:12",
            ":12:e",
            "news:-1:e",
            "news:+1:e",
            "news:1.5:e",
            "news:99999999999999999999999:e",
            "news:1:",
            "news:1:e/x",
            "bad channel:1:e",
        ] {
            assert!(parse_recover(q(&[bad]), 10).is_err(), "{bad} accepted");
        }
        assert!(parse_recover(q(&["a:1:e", "a:2:e"]), 10).is_err());
        assert!(parse_recover(q(&["a:1:e", "b:2:e"]), 1).is_err());
        let long_epoch = format!("a:1:{}", "e".repeat(65));
        assert!(parse_recover([("recover", long_epoch.as_str())], 10).is_err());
        assert!(parse_recover([("other", "x")], 10)
            .expect("ignored")
            .is_empty());
    }

    fn open(state: &NodeState) -> Arc<Connection> {
        crate::test_connection(state)
    }

    fn texts(c: &Connection) -> Vec<serde_json::Value> {
        let mut out: Vec<Bytes> = Vec::new();
        let _ = c.outbox.drain(&mut out);
        out.iter()
            .map(|f| serde_json::from_slice(&f[2..]).expect("a short JSON text frame"))
            .collect()
    }

    /// Publishes racing a recovery on other threads: the recovering client sees every offset
    /// once, in order, whichever side of the lock each publish lands on.
    #[test]
    fn live_publishes_racing_the_replay_arrive_once_in_order() {
        let config = crate::config::Config::from_toml_str(
            "[[channels]]\npattern = \"c\"\nhistory_size = 1000\nenvelope = \"json\"\n",
        )
        .expect("valid");
        for round in 0..20 {
            let state = crate::test_state(config.clone());
            let watcher = open(&state);
            state.channels.subscribe("c", &watcher, 10).expect("sub");
            for _ in 0..10 {
                crate::fanout::publish(&state, "c", b"{}", None, "publish", false);
            }
            let epoch = texts(&watcher)[0]["epoch"]
                .as_str()
                .expect("epoch")
                .to_string();
            let publisher = {
                let state = Arc::clone(&state);
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        crate::fanout::publish(&state, "c", b"{}", None, "publish", false);
                    }
                })
            };
            // Let a round start the recovery before, during and after the publishes.
            std::thread::sleep(std::time::Duration::from_micros(50 * round));
            let client = open(&state);
            let since = Since {
                offset: 3,
                epoch: epoch.clone(),
            };
            assert_eq!(
                subscribe_recovering(&state, &client, "c", &since),
                Ok(Recovered::Yes)
            );
            publisher.join().expect("publisher");
            let offsets: Vec<u64> = texts(&client)
                .iter()
                .map(|m| m["offset"].as_u64().expect("offset"))
                .collect();
            assert_eq!(offsets, (4..=210).collect::<Vec<u64>>(), "round {round}");
        }
    }

    /// Cluster mode: Redis answers a recovery's fetch on one connection and pushes live messages
    /// on another, so a message the replay sent may still arrive live: it is skipped, and the
    /// first later one clears the floor. Live messages for a connection whose fetch is under
    /// way are held, not sent.
    #[test]
    fn relayed_messages_respect_pending_recoveries_and_replay_floors() {
        let config = crate::config::Config::from_toml_str(
            "[[channels]]\npattern = \"c\"\nhistory_size = 10\nenvelope = \"json\"\n",
        )
        .expect("valid");
        let state = crate::test_state(config);
        let (replayed, fetching, other) = (open(&state), open(&state), open(&state));
        for c in [&replayed, &fetching, &other] {
            state.channels.subscribe("c", c, 10).expect("sub");
        }
        let log = state.history.log("c");
        {
            let mut locked = state.history.lock(&log);
            locked.set_floor(replayed.id, 5);
            locked.pending.push(Pending {
                conn: fetching.id,
                frames: Vec::new(),
                overflowed: false,
            });
        }
        for offset in 4..=7 {
            crate::fanout::relay(&state, "c", b"{}", None, offset, "e");
        }
        let offsets = |c: &Connection| -> Vec<u64> {
            texts(c)
                .iter()
                .map(|m| m["offset"].as_u64().expect("offset"))
                .collect()
        };
        assert_eq!(offsets(&replayed), vec![6, 7]);
        assert_eq!(offsets(&other), vec![4, 5, 6, 7]);
        assert!(offsets(&fetching).is_empty());
        let locked = state.history.lock(&log);
        assert!(locked.floors.is_empty());
        let held: Vec<u64> = locked.pending[0].frames.iter().map(|(o, _)| *o).collect();
        assert_eq!(held, vec![4, 5, 6, 7]);
    }

    #[test]
    fn a_lost_gap_is_told_first_then_live_messages_follow() {
        let config = crate::config::Config::from_toml_str(
            "[[channels]]\npattern = \"c\"\nhistory_size = 2\n",
        )
        .expect("valid");
        let state = crate::test_state(config);
        for _ in 0..5 {
            crate::fanout::publish(&state, "c", b"x", None, "publish", false);
        }
        let epoch = state
            .history
            .lock(&state.history.log("c"))
            .epoch()
            .to_string();
        let client = open(&state);
        let since = Since { offset: 1, epoch };
        assert_eq!(
            subscribe_recovering(&state, &client, "c", &since),
            Ok(Recovered::Lost)
        );
        crate::fanout::publish(&state, "c", b"live", None, "publish", false);
        let mut frames: Vec<Bytes> = Vec::new();
        let _ = client.outbox.drain(&mut frames);
        let notice: serde_json::Value = serde_json::from_slice(&frames[0][2..]).expect("json");
        assert_eq!(notice["recovered"], false);
        assert_eq!(notice["offset"], 5);
        assert_eq!(&frames[1][2..], b"live");
        assert_eq!(frames.len(), 2);
        // No history at all: told too; the subscription stands.
        let other = open(&state);
        assert_eq!(
            subscribe_recovering(
                &state,
                &other,
                "plain",
                &Since {
                    offset: 1,
                    epoch: "e".into()
                }
            ),
            Ok(Recovered::NoHistory)
        );
        assert_eq!(state.channels.subscriber_count("plain"), 1);
    }
}
