//! The `aws_lambda` integration: invokes a Lambda function with the same event an `http` route
//! POSTs, through the Lambda Invoke API (the official AWS SDK), and reads its answer as
//! Lambda's proxy result ([`lambda::decode`]).
//!
//! Invariants: credentials come from the SDK's standard chain (environment, shared profile
//! files, web identity, container and instance metadata), resolved lazily on the first call and
//! cached and refreshed by the SDK — never from Gangway's own config; calls run inside the
//! node's [`Budget`] (permits, deadline, metrics); the SDK never retries an invocation (Invoke
//! is not idempotent: one event, at most one run per attempt, as API Gateway does; `$disconnect`
//! has its own retries); a function error (`X-Amz-Function-Error`) is an
//! [`IntegrationError::Function`], a refusal by the Lambda service an
//! [`IntegrationError::Service`], never an answer; answers over `max_message_bytes` are refused
//! (after the SDK has read them: Lambda caps them at 6 MB); text from the function or the service
//! reaches the logs escaped (an error message often quotes what a client sent). `$disconnect`'s
//! result is ignored as on AWS — an invocation without a function error is a delivery, unless
//! its result is a proxy result with a non-2xx `statusCode` (the handler said it failed, so the
//! delivery is retried, as failed invocations are).

use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata as _, SdkError};
use aws_sdk_lambda::primitives::Blob;
use aws_smithy_http_client::tls;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::OnceCell;
use tokio_tungstenite::tungstenite::Message;

use crate::config::LambdaTarget;
use crate::integration::budget::{Budget, Lane};
use crate::integration::event::build_event;
use crate::integration::{lambda, Answer, Call, Integration, IntegrationError};

/// What every `aws_lambda` route of a node shares: the budget and the SDK configuration
/// (credential chain, HTTP client), loaded on first use.
#[derive(Debug)]
pub struct Shared {
    budget: Arc<Budget>,
    sdk: OnceCell<aws_config::SdkConfig>,
}

impl Shared {
    /// Shared state for routes calling within `budget`.
    pub fn new(budget: Arc<Budget>) -> Self {
        Shared {
            budget,
            sdk: OnceCell::new(),
        }
    }

    async fn sdk(&self) -> &aws_config::SdkConfig {
        self.sdk
            .get_or_init(|| async {
                // The SDK's default HTTPS client would bring its own aws-lc set-up; the node's
                // outbound TLS (webhooks, Redis, peers) is ring, and so is this.
                let http = aws_smithy_http_client::Builder::new()
                    .tls_provider(tls::Provider::Rustls(
                        tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https();
                aws_config::defaults(BehaviorVersion::latest())
                    .http_client(http)
                    .load()
                    .await
            })
            .await
    }
}

/// One `aws_lambda` route.
#[derive(Debug)]
pub struct AwsLambda {
    target: LambdaTarget,
    timeout: Duration,
    shared: Arc<Shared>,
    client: OnceCell<aws_sdk_lambda::Client>,
}

impl AwsLambda {
    /// A route invoking `target`, each call within `timeout`.
    pub fn new(target: LambdaTarget, timeout: Duration, shared: Arc<Shared>) -> Self {
        AwsLambda {
            target,
            timeout,
            shared,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> &aws_sdk_lambda::Client {
        self.client
            .get_or_init(|| async {
                let sdk = self.shared.sdk().await;
                let mut config = aws_sdk_lambda::config::Builder::from(sdk)
                    .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled());
                if let Some(region) = &self.target.region {
                    config = config.region(aws_config::Region::new(region.clone()));
                }
                if let Some(url) = &self.target.endpoint_url {
                    config = config.endpoint_url(url.clone());
                }
                aws_sdk_lambda::Client::from_conf(config.build())
            })
            .await
    }

    /// Invokes the function with the event of `call` and returns its raw payload.
    async fn invoke(&self, call: Call<'_>) -> Result<Bytes, IntegrationError> {
        let event = build_event(
            &call.source,
            &call.kind,
            call.request_id,
            chrono::Utc::now(),
        );
        let output = self
            .client()
            .await
            .invoke()
            .function_name(&self.target.function_name)
            .set_qualifier(self.target.qualifier.clone())
            .payload(Blob::new(event))
            .send()
            .await
            .map_err(|e| match e {
                SdkError::ServiceError(service) => {
                    let err = service.err();
                    IntegrationError::Service(bounded(&format!(
                        "{}: {}",
                        err.code().unwrap_or("unknown"),
                        err.message().unwrap_or("")
                    )))
                }
                other => {
                    IntegrationError::Unreachable(bounded(&DisplayErrorContext(&other).to_string()))
                }
            })?;
        let payload = output.payload.map(Blob::into_inner).unwrap_or_default();
        let max = self.shared.budget.max_response_bytes;
        if payload.len() > max {
            return Err(IntegrationError::ResponseTooLarge(max));
        }
        if let Some(kind) = output.function_error {
            return Err(IntegrationError::Function(function_error(&kind, &payload)));
        }
        Ok(Bytes::from(payload))
    }

    async fn call(&self, call: Call<'_>) -> Result<Answer, IntegrationError> {
        let route_key = call.kind.route_key();
        self.shared
            .budget
            .run(Lane::Calls, route_key, self.timeout, async {
                lambda::decode(invoked(self.invoke(call).await?))
            })
            .await
    }

    async fn deliver_disconnect(&self, call: Call<'_>) -> Result<Answer, IntegrationError> {
        let route_key = call.kind.route_key();
        self.shared
            .budget
            .run(Lane::Disconnect, route_key, self.timeout, async {
                let payload = invoked(self.invoke(call).await?);
                match lambda::decode(payload) {
                    Err(IntegrationError::MalformedResult(_)) => Ok(invoked(Bytes::new())),
                    other => other,
                }
            })
            .await
    }
}

/// A successful invocation's payload as an answer for [`lambda::decode`].
fn invoked(body: Bytes) -> Answer {
    Answer {
        status: 200,
        subprotocol: None,
        body,
    }
}

/// `Unhandled: TypeError: boom` from a function error's kind and Lambda's error payload
/// (`errorType`, `errorMessage`), escaped and bounded for logs.
fn function_error(kind: &str, payload: &[u8]) -> String {
    let detail = serde_json::from_slice::<serde_json::Value>(payload)
        .ok()
        .map(|v| {
            format!(
                "{}: {}",
                v["errorType"].as_str().unwrap_or("Error"),
                v["errorMessage"].as_str().unwrap_or("")
            )
        })
        .unwrap_or_else(|| "no error payload".to_string());
    bounded(&format!("{kind}: {detail}"))
}

/// Text from outside (a function's error, the service's message) made safe for one log line:
/// control characters and quotes escaped, at most 300 bytes.
fn bounded(text: &str) -> String {
    let mut s = String::with_capacity(text.len().min(300));
    for c in text.chars() {
        let escaped: String = if c.is_control() || c == '"' || c == '\\' {
            c.escape_default().collect()
        } else {
            c.to_string()
        };
        if s.len() + escaped.len() > 300 {
            break;
        }
        s.push_str(&escaped);
    }
    s
}

impl Integration for AwsLambda {
    fn connect<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Answer, IntegrationError>> {
        Box::pin(self.call(call))
    }

    fn answer_now(&self, _message: &Message) -> Option<Bytes> {
        None
    }

    fn message<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Answer, IntegrationError>> {
        Box::pin(self.call(call))
    }

    fn delivers_disconnect(&self) -> bool {
        true
    }

    fn disconnect<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Result<Answer, IntegrationError>> {
        Box::pin(self.deliver_disconnect(call))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_errors_name_the_type_and_message() {
        assert_eq!(
            function_error(
                "Unhandled",
                br#"{"errorType": "KeyError", "errorMessage": "'body'", "stackTrace": []}"#
            ),
            "Unhandled: KeyError: 'body'"
        );
        assert_eq!(
            function_error("Handled", b"not json"),
            "Handled: no error payload"
        );
        let long = format!(r#"{{"errorMessage": "{}"}}"#, "é".repeat(400));
        assert!(function_error("Unhandled", long.as_bytes()).len() <= 300);
        // A client's text quoted in an error cannot start a log line of its own.
        let forged =
            br#"{"errorType": "SyntaxError", "errorMessage": "bad \"x\nINFO forged line"}"#;
        let line = function_error("Unhandled", forged);
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(line, r#"Unhandled: SyntaxError: bad \"x\nINFO forged line"#);
    }
}
