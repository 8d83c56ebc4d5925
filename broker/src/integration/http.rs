//! The `http` integration: POSTs AWS's Lambda-proxy event to a backend URL, signed.
//!
//! Invariants: one shared keep-alive HTTP client that never follows redirects (a 3xx is a
//! non-2xx answer: a backend cannot send the signed event, with the client's headers, to
//! another URL); calls run inside the node's [`Budget`] (permits, deadline, metrics); every
//! call carries `X-Gangway-Signature`; answers are read up to `max_message_bytes`.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use tokio_tungstenite::tungstenite::Message;

use crate::config::ResponseFormat;
use crate::integration::budget::{Budget, Lane};
use crate::integration::event::build_event;
use crate::integration::signature::{sign, SIGNATURE_HEADER};
use crate::integration::{error_chain, lambda, Answer, Call, Integration, IntegrationError};

/// The HTTP client every `http` route shares.
#[derive(Debug)]
pub struct Client {
    client: reqwest::Client,
    secret: Vec<u8>,
    budget: Arc<Budget>,
}

impl Client {
    /// A client calling within `budget`, signing with `secret`.
    ///
    /// # Errors
    /// Fails when the TLS set-up fails.
    pub fn new(budget: Arc<Budget>, secret: Vec<u8>) -> Result<Self, reqwest::Error> {
        // rustls needs a process-wide crypto provider; installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Client {
            client,
            secret,
            budget,
        })
    }

    /// POSTs the signed event of `call` to `url` within the budget's `lane` and `timeout`, and
    /// reads the answer as `format` says.
    async fn call(
        &self,
        url: &reqwest::Url,
        timeout: Duration,
        format: ResponseFormat,
        call: Call<'_>,
        lane: Lane,
    ) -> Result<Answer, IntegrationError> {
        self.budget
            .run(lane, call.kind.route_key(), timeout, async {
                let answer = self.post(url, call).await?;
                match format {
                    ResponseFormat::Raw => Ok(answer),
                    ResponseFormat::Lambda => lambda::decode(answer),
                }
            })
            .await
    }

    async fn post(&self, url: &reqwest::Url, call: Call<'_>) -> Result<Answer, IntegrationError> {
        let event = build_event(
            &call.source,
            &call.kind,
            call.request_id,
            chrono::Utc::now(),
        );
        let signature = sign(&self.secret, chrono::Utc::now().timestamp(), &event);
        let mut response = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header("X-Gangway-Route-Key", call.kind.route_key())
            .header("X-Gangway-Event-Type", call.kind.event_type())
            .header("X-Gangway-Connection-Id", call.source.connection_id)
            .body(event)
            .send()
            .await
            .map_err(|e| IntegrationError::Unreachable(error_chain(&e)))?;
        let status = response.status().as_u16();
        let subprotocol = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| IntegrationError::Unreachable(error_chain(&e)))?
        {
            if body.len() + chunk.len() > self.budget.max_response_bytes {
                return Err(IntegrationError::ResponseTooLarge(
                    self.budget.max_response_bytes,
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            subprotocol,
            body: body.freeze(),
        })
    }
}

/// One `http` route: its URL, timeout and answer format over the shared [`Client`].
#[derive(Debug)]
pub struct Http {
    url: reqwest::Url,
    timeout: Duration,
    format: ResponseFormat,
    client: Arc<Client>,
}

impl Http {
    /// A route POSTing to `url`, each call within `timeout`, reading answers as `format`.
    pub fn new(
        url: reqwest::Url,
        timeout: Duration,
        format: ResponseFormat,
        client: Arc<Client>,
    ) -> Self {
        Http {
            url,
            timeout,
            format,
            client,
        }
    }

    async fn call(&self, call: Call<'_>, lane: Lane) -> Result<Answer, IntegrationError> {
        self.client
            .call(&self.url, self.timeout, self.format, call, lane)
            .await
    }
}

impl Integration for Http {
    fn connect<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Answer, IntegrationError>> {
        Box::pin(self.call(call, Lane::Calls))
    }

    fn answer_now(&self, _message: &Message) -> Option<Bytes> {
        None
    }

    fn message<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Answer, IntegrationError>> {
        Box::pin(self.call(call, Lane::Calls))
    }

    fn delivers_disconnect(&self) -> bool {
        true
    }

    fn disconnect<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Answer, IntegrationError>> {
        Box::pin(self.call(call, Lane::Disconnect))
    }
}
