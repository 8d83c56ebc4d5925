//! Integrations: what a route does with its events. Every integration implements
//! [`Integration`] — `$connect`, messages and `$disconnect` alike — so a new kind of
//! integration is one file (`http.rs`, `aws_lambda.rs`, `mock.rs`) plus one arm in
//! [`Routes::new`], and the compiler checks that it answers all three. Those that call out share
//! the node's [`budget::Budget`] (permits, deadlines, metrics).
//!
//! The tasks that drive integrations live beside them: [`dispatch`] (a connection's messages,
//! one at a time, in order) and [`disconnect`] (`$disconnect`, at least once).

pub mod aws_lambda;
pub mod budget;
pub mod disconnect;
pub mod dispatch;
pub mod event;
pub mod http;
pub mod lambda;
pub mod mock;
pub mod signature;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio_tungstenite::tungstenite::Message;

use crate::config::{Config, IntegrationKind};
use crate::error::BrokerError;
use crate::metrics::Metrics;
use event::{EventKind, EventSource};

/// One event for an integration: whose, what, and the request id it carries.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// What every event of the connection shares.
    pub source: EventSource<'a>,
    /// The event.
    pub kind: EventKind<'a>,
    /// `requestContext.requestId` (and `extendedRequestId`).
    pub request_id: &'a str,
}

/// An integration's answer to an event.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP-style status of the answer (a backend's own; 200 for in-process answers).
    pub status: u16,
    /// `Sec-WebSocket-Protocol` the answer selects, for `$connect`.
    pub subprotocol: Option<String>,
    /// Body, at most `max_message_bytes`.
    pub body: Bytes,
}

impl Answer {
    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why an integration produced no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IntegrationError {
    /// The call took longer than the route's timeout (waiting for a permit included).
    #[error("backend timed out after {0:?}")]
    Timeout(Duration),
    /// The backend could not be reached or broke the connection.
    #[error("backend unreachable: {0}")]
    Unreachable(String),
    /// The backend answered with a body over the bound.
    #[error("backend response larger than {0} bytes")]
    ResponseTooLarge(usize),
    /// A `response_format = "lambda"` backend answered 2xx with something that is not Lambda's
    /// proxy result.
    #[error("backend answer is not a Lambda proxy result: {0}")]
    MalformedResult(String),
    /// An `aws_lambda` function ran and failed (`X-Amz-Function-Error`): kind, type, message.
    #[error("function error: {0}")]
    Function(String),
    /// The Lambda service refused the invocation (not found, access denied, throttled…): its
    /// error code and message.
    #[error("lambda service refused the call: {0}")]
    Service(String),
}

impl IntegrationError {
    /// Short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            IntegrationError::Timeout(_) => "timeout",
            IntegrationError::Unreachable(_) => "unreachable",
            IntegrationError::ResponseTooLarge(_) => "response_too_large",
            IntegrationError::MalformedResult(_) => "malformed_result",
            IntegrationError::Function(_) => "function_error",
            IntegrationError::Service(_) => "service_error",
        }
    }
}

/// What a route does. See the module documentation.
pub trait Integration: Send + Sync + std::fmt::Debug {
    /// `$connect`: a 2xx answer lets the client in (its body may carry `context` and
    /// `channels`), anything else refuses the upgrade with that status.
    fn connect<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Answer, IntegrationError>>;

    /// Answers a message at once, in the connection's own task, when the integration can
    /// (in-process ones): the encoded reply frame. `None`: the message goes to the connection's
    /// dispatcher, which calls [`Integration::message`].
    fn answer_now(&self, message: &Message) -> Option<Bytes>;

    /// A message the dispatcher hands over, in the order the client sent it.
    fn message<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Answer, IntegrationError>>;

    /// Whether `$disconnect` events need delivering at all (false: no task is spawned).
    fn delivers_disconnect(&self) -> bool;

    /// Delivers one `$disconnect` attempt (the caller retries on failure).
    fn disconnect<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Answer, IntegrationError>>;
}

/// A configured route.
#[derive(Debug, Clone)]
pub struct Route {
    /// The route key.
    pub key: Arc<str>,
    /// What it does.
    pub integration: Arc<dyn Integration>,
    /// Whether a 2xx answer's body goes back to the client.
    pub two_way: bool,
    /// The route's node-wide bucket (`throttle_rate`), if any.
    pub throttle: Option<Arc<crate::conn::throttle::Bucket>>,
}

/// The routes of this node, by key.
#[derive(Debug)]
pub struct Routes {
    routes: HashMap<String, Arc<Route>>,
}

/// The key webhook calls are signed with. Validation requires a secret whenever a route calls
/// a backend; without one nothing is ever signed, so a random key stands in (never logged).
pub(crate) fn webhook_key(config: &Config) -> Vec<u8> {
    match &config.api.webhook_secret {
        Some(s) => s.as_bytes().to_vec(),
        None => {
            let mut raw = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut raw);
            raw.to_vec()
        }
    }
}

impl Routes {
    /// Builds the routes of `config`; `http` ones share one client signing with `secret`.
    ///
    /// # Errors
    /// Fails when the HTTP client cannot be built (TLS set-up).
    pub fn new(
        config: &Config,
        secret: Vec<u8>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, BrokerError> {
        let budget = Arc::new(budget::Budget::new(config, Arc::clone(&metrics)));
        let client = Arc::new(http::Client::new(Arc::clone(&budget), secret)?);
        let aws = Arc::new(aws_lambda::Shared::new(budget));
        let mut routes = HashMap::new();
        for (key, rc) in &config.routes {
            metrics.prime_route(key, rc.integration != IntegrationKind::Mock);
            let integration: Arc<dyn Integration> = match rc.integration {
                IntegrationKind::Http => match rc.url.as_deref().map(reqwest::Url::parse) {
                    Some(Ok(url)) => Arc::new(http::Http::new(
                        url,
                        rc.timeout,
                        rc.response_format,
                        Arc::clone(&client),
                    )),
                    // Config validation guarantees a parseable URL; skip defensively.
                    _ => continue,
                },
                IntegrationKind::AwsLambda => match &rc.lambda {
                    Some(target) => Arc::new(aws_lambda::AwsLambda::new(
                        target.clone(),
                        rc.timeout,
                        Arc::clone(&aws),
                    )),
                    // Config validation guarantees a function; skip defensively.
                    None => continue,
                },
                IntegrationKind::Mock => {
                    Arc::new(mock::Mock::new(rc.response.clone().map(Bytes::from)))
                }
            };
            routes.insert(
                key.clone(),
                Arc::new(Route {
                    key: Arc::from(key.as_str()),
                    integration,
                    two_way: rc.two_way,
                    throttle: crate::conn::throttle::Bucket::new(
                        rc.throttle_rate,
                        rc.throttle_burst,
                    )
                    .map(Arc::new),
                }),
            );
        }
        Ok(Routes { routes })
    }

    /// The route with this key.
    pub fn get(&self, key: &str) -> Option<&Arc<Route>> {
        self.routes.get(key)
    }

    /// True when a route with this key exists.
    pub fn has(&self, key: &str) -> bool {
        self.routes.contains_key(key)
    }
}

/// An error with its sources, for logs.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
