//! Channel history in Redis (cluster mode): one script assigns a publish its offset, appends it
//! to the channel's bounded list and publishes it to every node, in one atomic step, so no node
//! can see offset n+1 before n and no offset is ever handed out twice; another reads what a
//! recovering client missed. Keys: `keys::history_meta` and `keys::history_log`, hash-tagged so
//! both and the channel's pub/sub channel share a Redis Cluster slot.
//!
//! A node that finds no epoch (first use, keys expired after a quiet TTL, or Redis restarted
//! empty) sets a fresh one, so offsets of a lost history never match again.

use std::time::Duration;

use bytes::Bytes;
use redis::Value;

use super::keys;
use super::link::RedisLink;
use crate::conn::id::{ConnectionId, NodeTag};
use crate::error::ConnectionError;
use crate::fanout::history::{Fetched, FetchedItem};

/// KEYS: meta, log. ARGV: epoch if none, size, TTL s, now ms, payload, publish verb, pub/sub
/// channel, message prefix. Returns `{offset, epoch}`.
const PUBLISH: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
end
local off = redis.call('HINCRBY', KEYS[1], 'o', 1)
redis.call('RPUSH', KEYS[2], string.format('%d:%s:', off, ARGV[4]) .. ARGV[5])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
local tail = struct.pack('>I4', string.len(epoch)) .. epoch
  .. struct.pack('>I4I4', math.floor(off / 4294967296), off % 4294967296)
redis.call(ARGV[6], ARGV[7], ARGV[8] .. tail)
return {off, epoch}
";

/// KEYS: meta, log. ARGV: epoch if none, TTL s, after, limit. Returns `{epoch, head, first,
/// items}`: the kept messages after offset `after`, at most `limit`.
const FETCH: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
local head = tonumber(redis.call('HGET', KEYS[1], 'o'))
local len = redis.call('LLEN', KEYS[2])
local first = head - len + 1
local from = tonumber(ARGV[3]) + 1 - first
if from < 0 then from = 0 end
local items = {}
if tonumber(ARGV[4]) > 0 then
  items = redis.call('LRANGE', KEYS[2], from, from + tonumber(ARGV[4]) - 1)
end
return {epoch, head, first, items}
";

/// KEYS: log. Returns how many messages it held.
const CLEAR: &str = r"
local n = redis.call('LLEN', KEYS[1])
redis.call('DEL', KEYS[1])
return n
";

fn unavailable(e: impl std::fmt::Display) -> ConnectionError {
    ConnectionError::Unavailable(format!("cluster unavailable: {e}"))
}

fn malformed(what: &str) -> ConnectionError {
    ConnectionError::Unavailable(format!("Redis answered a malformed history {what}"))
}

/// Runs `script` by its hash, loading it once when Redis does not know it (a restart).
async fn eval(
    link: &RedisLink,
    script: &str,
    keys: &[String],
    args: &[&[u8]],
) -> Result<Value, ConnectionError> {
    let sha = redis::Script::new(script).get_hash().to_string();
    let build = |verb: &str, first: &str| {
        let mut cmd = redis::cmd(verb);
        cmd.arg(first).arg(keys.len());
        for k in keys {
            cmd.arg(k);
        }
        for a in args {
            cmd.arg(*a);
        }
        cmd
    };
    match link.query::<Value>(&build("EVALSHA", &sha)).await {
        Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => link
            .query::<Value>(&build("EVAL", script))
            .await
            .map_err(unavailable),
        other => other.map_err(unavailable),
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// What the node publishes with.
pub(crate) struct Publication<'a> {
    pub(crate) origin: NodeTag,
    pub(crate) channel: &'a str,
    pub(crate) exclude: Option<ConnectionId>,
    pub(crate) payload: &'a [u8],
    pub(crate) size: usize,
    pub(crate) ttl: Duration,
    /// A fresh epoch, used if the channel has none.
    pub(crate) epoch: &'a str,
}

/// Publishes to a channel with history: its offset and epoch.
pub(crate) async fn publish(
    link: &RedisLink,
    p: Publication<'_>,
) -> Result<(u64, String), ConnectionError> {
    let prefix = super::wire::history_prefix(p.origin, p.channel, p.exclude, p.payload);
    let now_ms = chrono::Utc::now().timestamp_millis().to_string();
    let size = p.size.max(1).to_string();
    let ttl = p.ttl.as_secs().max(1).to_string();
    let channel = keys::channel(p.channel);
    let answer = eval(
        link,
        PUBLISH,
        &[keys::history_meta(p.channel), keys::history_log(p.channel)],
        &[
            p.epoch.as_bytes(),
            size.as_bytes(),
            ttl.as_bytes(),
            now_ms.as_bytes(),
            p.payload,
            link.publish_verb().as_bytes(),
            channel.as_bytes(),
            &prefix,
        ],
    )
    .await?;
    match &answer {
        Value::Array(a) if a.len() == 2 => {
            let offset = int(&a[0])
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| malformed("offset"))?;
            let epoch = text(&a[1]).ok_or_else(|| malformed("epoch"))?;
            Ok((offset, epoch))
        }
        _ => Err(malformed("publish answer")),
    }
}

/// Up to `limit` kept messages of `channel` after offset `after`.
pub(crate) async fn fetch(
    link: &RedisLink,
    channel: &str,
    after: u64,
    limit: usize,
    ttl: Duration,
    epoch: &str,
) -> Result<Fetched, ConnectionError> {
    let ttl = ttl.as_secs().max(1).to_string();
    let after = after.to_string();
    let limit = limit.to_string();
    let answer = eval(
        link,
        FETCH,
        &[keys::history_meta(channel), keys::history_log(channel)],
        &[
            epoch.as_bytes(),
            ttl.as_bytes(),
            after.as_bytes(),
            limit.as_bytes(),
        ],
    )
    .await?;
    let Value::Array(a) = answer else {
        return Err(malformed("fetch answer"));
    };
    let [epoch, head, first, items] = a.as_slice() else {
        return Err(malformed("fetch answer"));
    };
    let epoch = text(epoch).ok_or_else(|| malformed("epoch"))?;
    let head = int(head)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| malformed("offset"))?;
    let first = int(first)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| malformed("first offset"))?;
    let Value::Array(raw) = items else {
        return Err(malformed("items"));
    };
    let items = raw
        .iter()
        .map(|v| match v {
            Value::BulkString(b) => item(b).ok_or_else(|| malformed("item")),
            _ => Err(malformed("item")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Fetched {
        epoch,
        head,
        first,
        items,
    })
}

/// `<offset>:<ms>:<payload>`.
fn item(b: &[u8]) -> Option<FetchedItem> {
    let mut parts = b.splitn(3, |c| *c == b':');
    let offset = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let published_ms = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let payload = Bytes::copy_from_slice(parts.next()?);
    Some(FetchedItem {
        offset,
        published_ms,
        payload,
    })
}

/// Forgets what `channel` keeps; how many messages it held.
pub(crate) async fn clear(link: &RedisLink, channel: &str) -> Result<usize, ConnectionError> {
    let answer = eval(link, CLEAR, &[keys::history_log(channel)], &[]).await?;
    int(&answer)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| malformed("count"))
}

#[cfg(test)]
mod tests {
    use super::item;

    #[test]
    fn items_keep_colons_in_payloads_and_refuse_garbage() {
        let i = item(b"12:1700000000000:a:b:c").expect("item");
        assert_eq!(
            (i.offset, i.published_ms, &i.payload[..]),
            (12, 1_700_000_000_000, &b"a:b:c"[..])
        );
        assert!(item(b"12:x:a").is_none());
        assert!(item(b"12").is_none());
        assert!(item(b"-1:0:a").is_none());
    }
}
