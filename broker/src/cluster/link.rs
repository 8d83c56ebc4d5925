//! The node's connection to Redis: one standalone server (classic pub/sub, `PUBLISH` /
//! `SUBSCRIBE`) or a Redis Cluster (sharded pub/sub, `SPUBLISH` / `SSUBSCRIBE`, so channel
//! traffic spreads over the shards). Everything else in the cluster module is the same for both.
//!
//! `rediss://` URLs connect over TLS (rustls), verified against `[cluster] tls_ca_file` when it
//! is set, else the system's roots. Credentials ride in the URL
//! (`redis://user:password@host:port`, Redis 6 ACLs or `requirepass`).

use redis::aio::{AsyncPushSender, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{FromRedisValue, IntoConnectionInfo, ProtocolVersion, RedisResult, TlsCertificates};
use std::time::Duration;

/// How long a link waits for Redis: connecting, answering, and between reconnection attempts.
/// The heartbeat's link uses short ones, so a node renews its liveness soon after Redis comes
/// back (the others give it one `node_ttl` before they may reap it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkTiming {
    /// Connecting (TCP, TLS, HELLO).
    pub connect: Duration,
    /// One command's answer.
    pub response: Duration,
    /// The longest pause between reconnection attempts.
    pub max_delay: Duration,
}

/// See the module documentation.
pub(crate) enum RedisLink {
    /// One Redis server; connected lazily, reconnected and resubscribed by the manager.
    Single(ConnectionManager),
    /// A Redis Cluster; connected on first use (the connection follows topology changes,
    /// reconnects and resubscribes by itself).
    Sharded {
        client: Box<ClusterClient>,
        con: tokio::sync::Mutex<Option<ClusterConnection>>,
    },
}

impl RedisLink {
    /// A link to one server at `url` (`rediss://`: TLS, verified against `ca` when given, else
    /// the system's roots); nothing is connected yet. Without `push` it carries commands only.
    pub(crate) fn single(
        url: &str,
        ca: Option<&[u8]>,
        push: Option<impl AsyncPushSender>,
        timing: LinkTiming,
    ) -> RedisResult<RedisLink> {
        let info = url.into_connection_info()?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let info = info.set_redis_settings(settings);
        let client = match ca {
            Some(pem) => redis::Client::build_with_tls(info, certificates(pem))?,
            None => redis::Client::open(info)?,
        };
        let mut config = ConnectionManagerConfig::new();
        if let Some(push) = push {
            config = config.set_push_sender(push).set_automatic_resubscription();
        }
        let config = config
            .set_connection_timeout(Some(timing.connect))
            .set_response_timeout(Some(timing.response))
            .set_number_of_retries(1)
            .set_min_delay(timing.max_delay / 4)
            .set_max_delay(timing.max_delay);
        Ok(RedisLink::Single(ConnectionManager::new_lazy_with_config(
            client, config,
        )?))
    }

    /// A link to a Redis Cluster reached through `seeds`; nothing is connected yet. Without
    /// `push` it carries commands only.
    pub(crate) fn sharded(
        seeds: &[String],
        ca: Option<&[u8]>,
        push: Option<impl AsyncPushSender>,
        timing: LinkTiming,
    ) -> RedisResult<RedisLink> {
        let mut builder = ClusterClient::builder(seeds.iter().map(String::as_str))
            .use_protocol(ProtocolVersion::RESP3);
        if let Some(pem) = ca {
            builder = builder.certs(certificates(pem));
        }
        if let Some(push) = push {
            builder = builder.push_sender(push);
        }
        let client = builder
            .connection_timeout(timing.connect)
            .response_timeout(timing.response)
            .retries(1)
            .build()?;
        Ok(RedisLink::Sharded {
            client: Box::new(client),
            con: tokio::sync::Mutex::new(None),
        })
    }

    async fn cluster_con(
        client: &ClusterClient,
        con: &tokio::sync::Mutex<Option<ClusterConnection>>,
    ) -> RedisResult<ClusterConnection> {
        let mut guard = con.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let c = client.get_async_connection().await?;
        *guard = Some(c.clone());
        Ok(c)
    }

    /// Runs one command.
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> RedisResult<T> {
        match self {
            RedisLink::Single(m) => cmd.query_async(&mut m.clone()).await,
            RedisLink::Sharded { client, con } => {
                let mut c = Self::cluster_con(client, con).await?;
                cmd.query_async(&mut c).await
            }
        }
    }

    /// The publish command: `PUBLISH`, or `SPUBLISH` in a Redis Cluster.
    pub(crate) fn publish_verb(&self) -> &'static str {
        match self {
            RedisLink::Single(_) => "PUBLISH",
            RedisLink::Sharded { .. } => "SPUBLISH",
        }
    }

    /// Publishes; returns how many subscribers (nodes) received it.
    pub(crate) async fn publish(&self, channel: &str, payload: Vec<u8>) -> RedisResult<i64> {
        self.query(redis::cmd(self.publish_verb()).arg(channel).arg(payload))
            .await
    }

    /// Subscribes this node to a channel (messages arrive on the push sender).
    pub(crate) async fn subscribe(&self, channel: String) -> RedisResult<()> {
        match self {
            RedisLink::Single(m) => m.clone().subscribe(channel).await,
            RedisLink::Sharded { client, con } => {
                Self::cluster_con(client, con)
                    .await?
                    .ssubscribe(channel)
                    .await
            }
        }
    }

    /// Unsubscribes this node from a channel.
    pub(crate) async fn unsubscribe(&self, channel: String) -> RedisResult<()> {
        match self {
            RedisLink::Single(m) => m.clone().unsubscribe(channel).await,
            RedisLink::Sharded { client, con } => {
                Self::cluster_con(client, con)
                    .await?
                    .sunsubscribe(channel)
                    .await
            }
        }
    }
}

/// Server verification against one CA (PEM), without a client certificate.
fn certificates(ca_pem: &[u8]) -> TlsCertificates {
    TlsCertificates {
        client_tls: None,
        root_cert: Some(ca_pem.to_vec()),
    }
}
