//! The control API's operations, the table of routes that reach them, and their handlers, one
//! file per resource: [`connections`] (AWS's `@connections`), [`channels`], [`broadcast`],
//! [`batch`], [`node`] (cluster membership, the peer check), [`admin`] (reload), [`probes`]
//! (health, readiness, metrics, OpenAPI). The dispatcher resolves requests
//! through [`resolve`] and calls [`Op::run`]; the OpenAPI document is generated from
//! [`ROUTES`]; a test checks that the two agree.
//!
//! A new endpoint: an [`Op`], its row in [`ROUTES`], and its arm in [`Op::run`] calling a handler
//! in the file of its resource.

pub mod admin;
pub mod batch;
pub mod broadcast;
pub mod channels;
pub mod connections;
pub mod node;
pub mod probes;

use actix_web::http::Method;
use actix_web::HttpResponse;
use bytes::Bytes;
use gangway_broker::Broker;

use crate::error::ApiError;
use crate::path::ControlPath;

/// A control-API operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `GET /healthz`.
    Health,
    /// `GET /readyz`.
    Ready,
    /// `GET /metrics`.
    Metrics,
    /// `GET /openapi.json`.
    OpenApi,
    /// List open connections (cluster-wide), with paging.
    ListConnections,
    /// AWS PostToConnection.
    PostToConnection,
    /// AWS GetConnection.
    GetConnection,
    /// AWS DeleteConnection (plus `?code=&reason=`).
    DeleteConnection,
    /// Subscribe a connection to a channel.
    Subscribe,
    /// Unsubscribe a connection from a channel.
    Unsubscribe,
    /// Publish to a channel.
    Publish,
    /// Count a channel's subscribers.
    GetChannel,
    /// Read a channel's history, a page at a time.
    GetHistory,
    /// Forget a channel's history.
    DeleteHistory,
    /// List a channel's subscribers, a page at a time.
    GetPresence,
    /// Count a channel's subscribers and distinct principals.
    GetPresenceStats,
    /// Send to every connection.
    Broadcast,
    /// Several pushes and publishes in one request.
    Batch,
    /// This node's cluster membership (what a peer asks when it loses Redis).
    DescribeNode,
    /// Re-read the configuration and apply what can change without a restart.
    Reload,
}

impl Op {
    /// Every operation.
    pub const ALL: [Op; 20] = [
        Op::Health,
        Op::Ready,
        Op::Metrics,
        Op::OpenApi,
        Op::ListConnections,
        Op::PostToConnection,
        Op::GetConnection,
        Op::DeleteConnection,
        Op::Subscribe,
        Op::Unsubscribe,
        Op::Publish,
        Op::GetChannel,
        Op::GetHistory,
        Op::DeleteHistory,
        Op::GetPresence,
        Op::GetPresenceStats,
        Op::Broadcast,
        Op::Batch,
        Op::DescribeNode,
        Op::Reload,
    ];

    /// The name used in metrics and as the OpenAPI operationId.
    pub fn name(self) -> &'static str {
        match self {
            Op::Health => "Health",
            Op::Ready => "Ready",
            Op::Metrics => "Metrics",
            Op::OpenApi => "OpenApi",
            Op::ListConnections => "ListConnections",
            Op::PostToConnection => "PostToConnection",
            Op::GetConnection => "GetConnection",
            Op::DeleteConnection => "DeleteConnection",
            Op::Subscribe => "Subscribe",
            Op::Unsubscribe => "Unsubscribe",
            Op::Publish => "Publish",
            Op::GetChannel => "GetChannel",
            Op::GetHistory => "GetChannelHistory",
            Op::DeleteHistory => "DeleteChannelHistory",
            Op::GetPresence => "GetChannelPresence",
            Op::GetPresenceStats => "GetChannelPresenceStats",
            Op::Broadcast => "Broadcast",
            Op::Batch => "Batch",
            Op::DescribeNode => "DescribeNode",
            Op::Reload => "Reload",
        }
    }

    /// Probes and scrapers call these without credentials.
    pub fn is_public(self) -> bool {
        matches!(self, Op::Health | Op::Ready | Op::Metrics | Op::OpenApi)
    }
}

/// One route: method, path template, operation, one-line summary.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    /// HTTP method.
    pub method: &'static str,
    /// OpenAPI path template, without the stage prefix.
    pub path: &'static str,
    /// The operation it reaches.
    pub op: Op,
    /// One-line summary.
    pub summary: &'static str,
    /// Also served under `/{stage}`.
    pub staged: bool,
}

const fn route(
    method: &'static str,
    path: &'static str,
    op: Op,
    summary: &'static str,
) -> RouteSpec {
    RouteSpec {
        method,
        path,
        op,
        summary,
        staged: true,
    }
}

const fn plain(
    method: &'static str,
    path: &'static str,
    op: Op,
    summary: &'static str,
) -> RouteSpec {
    RouteSpec {
        method,
        path,
        op,
        summary,
        staged: false,
    }
}

/// Every route the control API serves (staged ones also under `/{stage}`; see [`all_routes`]).
pub const ROUTES: &[RouteSpec] = &[
    plain(
        "GET",
        "/healthz",
        Op::Health,
        "Liveness: 200 while the process runs",
    ),
    plain(
        "GET",
        "/readyz",
        Op::Ready,
        "Readiness: 503 with a JSON reason while draining",
    ),
    plain(
        "GET",
        "/metrics",
        Op::Metrics,
        "Prometheus metrics (text format)",
    ),
    plain("GET", "/openapi.json", Op::OpenApi, "This document"),
    route(
        "GET",
        "/@connections",
        Op::ListConnections,
        "List open connections (every node's in cluster mode), a page at a time",
    ),
    route(
        "POST",
        "/@connections/{connectionId}",
        Op::PostToConnection,
        "Send the raw body to one connection (AWS PostToConnection)",
    ),
    route(
        "GET",
        "/@connections/{connectionId}",
        Op::GetConnection,
        "Describe one connection (AWS GetConnection)",
    ),
    route(
        "DELETE",
        "/@connections/{connectionId}",
        Op::DeleteConnection,
        "Close one connection (AWS DeleteConnection, plus code and reason)",
    ),
    route(
        "PUT",
        "/@connections/{connectionId}/channels/{channel}",
        Op::Subscribe,
        "Subscribe a connection to a channel",
    ),
    route(
        "DELETE",
        "/@connections/{connectionId}/channels/{channel}",
        Op::Unsubscribe,
        "Unsubscribe a connection from a channel",
    ),
    route(
        "POST",
        "/@channels/{channel}",
        Op::Publish,
        "Send the raw body to every subscriber of a channel",
    ),
    route(
        "GET",
        "/@channels/{channel}",
        Op::GetChannel,
        "Count a channel's subscribers",
    ),
    route(
        "GET",
        "/@channels/{channel}/history",
        Op::GetHistory,
        "Read what a channel with history keeps, a page at a time, with its epoch and newest offset",
    ),
    route(
        "DELETE",
        "/@channels/{channel}/history",
        Op::DeleteHistory,
        "Forget what a channel keeps (offsets go on; clients behind them cannot recover)",
    ),
    route(
        "GET",
        "/@channels/{channel}/presence",
        Op::GetPresence,
        "List the subscribers of a channel with presence (every node's), a page at a time",
    ),
    route(
        "GET",
        "/@channels/{channel}/presence-stats",
        Op::GetPresenceStats,
        "Count the subscribers and distinct principals of a channel with presence (every node's)",
    ),
    route(
        "POST",
        "/@broadcast",
        Op::Broadcast,
        "Send the raw body to every connection",
    ),
    route(
        "POST",
        "/@batch",
        Op::Batch,
        "Several pushes and publishes in one request",
    ),
    route(
        "GET",
        "/@node",
        Op::DescribeNode,
        "This node's id and cluster membership: whether it reaches Redis, whether it is fenced",
    ),
    plain(
        "POST",
        "/@admin/reload",
        Op::Reload,
        "Re-read the configuration file and apply what can change without a restart (as SIGHUP does)",
    ),
];

/// Every (method, full path template, route) the server answers, stage forms included.
pub fn all_routes() -> Vec<(&'static str, String, &'static RouteSpec)> {
    let mut out = Vec::new();
    for r in ROUTES {
        out.push((r.method, r.path.to_string(), r));
        if r.staged {
            out.push((r.method, format!("/{{stage}}{}", r.path), r));
        }
    }
    out
}

/// The operation a request reaches, or the error for a path or method the API does not have.
pub fn resolve(target: &ControlPath, method: &Method) -> Result<Op, ApiError> {
    let m = method.as_str();
    let op = match (target, m) {
        (ControlPath::Health, "GET") => Op::Health,
        (ControlPath::Ready, "GET") => Op::Ready,
        (ControlPath::Metrics, "GET") => Op::Metrics,
        (ControlPath::OpenApi, "GET") => Op::OpenApi,
        (ControlPath::Connections, "GET") => Op::ListConnections,
        (ControlPath::Connection(_), "POST") => Op::PostToConnection,
        (ControlPath::Connection(_), "GET") => Op::GetConnection,
        (ControlPath::Connection(_), "DELETE") => Op::DeleteConnection,
        (ControlPath::ConnectionChannel(..), "PUT") => Op::Subscribe,
        (ControlPath::ConnectionChannel(..), "DELETE") => Op::Unsubscribe,
        (ControlPath::Channel(_), "POST") => Op::Publish,
        (ControlPath::Channel(_), "GET") => Op::GetChannel,
        (ControlPath::ChannelHistory(_), "GET") => Op::GetHistory,
        (ControlPath::ChannelHistory(_), "DELETE") => Op::DeleteHistory,
        (ControlPath::ChannelPresence(_), "GET") => Op::GetPresence,
        (ControlPath::ChannelPresenceStats(_), "GET") => Op::GetPresenceStats,
        (ControlPath::Broadcast, "POST") => Op::Broadcast,
        (ControlPath::Batch, "POST") => Op::Batch,
        (ControlPath::Node, "GET") => Op::DescribeNode,
        (ControlPath::AdminReload, "POST") => Op::Reload,
        (ControlPath::Unknown, _) => return Err(ApiError::not_found()),
        (ControlPath::WrongStage, _) => return Err(ApiError::forbidden()),
        (ControlPath::BadSegment(what), _) => {
            return Err(ApiError::bad_request(format!(
                "Invalid {what}: not valid percent-encoded UTF-8, or empty"
            )))
        }
        _ => {
            return Err(ApiError::new(
                405,
                "MethodNotAllowedException",
                format!("{m} is not allowed on this path"),
            ))
        }
    };
    Ok(op)
}

/// What a handler gets: the node, the (authenticated, bounded) body and the raw query string.
pub struct Call<'a> {
    /// The node.
    pub broker: &'a Broker,
    /// The request body (empty for operations without one).
    pub body: Bytes,
    /// The query string, undecoded.
    pub query: &'a str,
    /// What `POST /@admin/reload` runs, when the node has it.
    pub reload: Option<&'a dyn crate::reload::Reload>,
}

impl Call<'_> {
    /// The first value of query parameter `name`, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

impl Op {
    /// Runs the operation on its target (the path `resolve` paired it with).
    pub async fn run(self, call: Call<'_>, target: ControlPath) -> Result<HttpResponse, ApiError> {
        match (self, target) {
            (Op::Health, _) => Ok(probes::health()),
            (Op::Ready, _) => Ok(probes::ready(call.broker)),
            (Op::Metrics, _) => Ok(probes::metrics(call.broker)),
            (Op::OpenApi, _) => Ok(probes::openapi()),
            (Op::ListConnections, _) => connections::list(call).await,
            (Op::PostToConnection, ControlPath::Connection(id)) => {
                connections::post(call, &id).await
            }
            (Op::GetConnection, ControlPath::Connection(id)) => connections::get(call, &id).await,
            (Op::DeleteConnection, ControlPath::Connection(id)) => {
                connections::delete(call, &id).await
            }
            (Op::Subscribe, ControlPath::ConnectionChannel(id, channel)) => {
                channels::subscribe(call, &id, &channel).await
            }
            (Op::Unsubscribe, ControlPath::ConnectionChannel(id, channel)) => {
                channels::unsubscribe(call, &id, &channel).await
            }
            (Op::Publish, ControlPath::Channel(channel)) => channels::publish(call, &channel).await,
            (Op::GetChannel, ControlPath::Channel(channel)) => {
                channels::count(call, &channel).await
            }
            (Op::GetHistory, ControlPath::ChannelHistory(channel)) => {
                channels::history(call, &channel).await
            }
            (Op::DeleteHistory, ControlPath::ChannelHistory(channel)) => {
                channels::clear_history(call, &channel).await
            }
            (Op::GetPresence, ControlPath::ChannelPresence(channel)) => {
                channels::presence(call, &channel).await
            }
            (Op::GetPresenceStats, ControlPath::ChannelPresenceStats(channel)) => {
                channels::presence_stats(call, &channel).await
            }
            (Op::Broadcast, _) => broadcast::broadcast(call).await,
            (Op::Batch, _) => batch::post(call).await,
            (Op::DescribeNode, _) => Ok(node::describe(call.broker)),
            (Op::Reload, _) => admin::reload(call).await,
            // `resolve` only pairs operations with their own paths.
            _ => Err(ApiError::not_found()),
        }
    }
}

/// A JSON answer with `status`.
pub fn json_response(status: u16, body: String) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
    )
    .content_type("application/json")
    .body(body)
}

/// `{"recipients": N}`, plus `"cluster": "unavailable"` when other nodes could not be reached.
pub fn fan_out_body(fan: &gangway_broker::FanOut) -> String {
    fan_out_json(fan).to_string()
}

/// [`fan_out_body`] as a JSON value.
pub fn fan_out_json(fan: &gangway_broker::FanOut) -> serde_json::Value {
    let mut body = serde_json::json!({ "recipients": fan.recipients });
    if fan.cluster_failed {
        body["cluster"] = "unavailable".into();
    }
    body
}

/// A publish's answer: [`fan_out_json`], plus `offset` and `epoch` on a channel with history.
pub fn published_json(p: &gangway_broker::Published) -> serde_json::Value {
    let mut body = fan_out_json(&p.fan);
    if let (Some(offset), Some(epoch)) = (p.offset, &p.epoch) {
        body["offset"] = offset.into();
        body["epoch"] = epoch.as_ref().into();
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path;

    #[test]
    fn every_route_resolves_to_its_operation_and_every_operation_has_a_route() {
        for (method, path, r) in all_routes() {
            let concrete = path
                .replace("{stage}", "prod")
                .replace("{connectionId}", "AVpvRk1vGeeYed9gPVVeYgSb")
                .replace("{channel}", "news");
            let target = path::parse(&concrete, "prod");
            let m = Method::from_bytes(method.as_bytes()).expect("method");
            let op = resolve(&target, &m).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            assert_eq!(op, r.op, "{method} {path}");
        }
        for op in Op::ALL {
            assert!(ROUTES.iter().any(|r| r.op == op), "{op:?} has no route");
        }
    }
}
