//! The `request` authorizer: AWS's REQUEST authorizer contract over HTTP, so an existing
//! authorizer ports behind the same thin adapter as the route handlers. Gangway POSTs the event
//! AWS sends a WebSocket REQUEST authorizer — the `$connect` event's headers, query and
//! `requestContext`, plus `type: "REQUEST"`, `methodArn` and `stageVariables` — signed with
//! `X-Gangway-Signature`, and reads AWS's answer: `principalId`, a `policyDocument` that must
//! `Allow` `execute-api:Invoke` on the method ARN (a matching `Deny` wins: 403), and a
//! `context` of string, number and boolean values. An `Unauthorized` answer (HTTP 401, or
//! Lambda's `{"errorMessage": "Unauthorized"}`) is 401; a missing identity source is 401
//! without a call; anything else — a timeout, a non-2xx, non-JSON, a malformed policy — is 500,
//! as on AWS.
//!
//! Decisions are cached by the identity sources' values for `ttl_secs`, in at most
//! [`MAX_CACHED`] entries (expired ones are dropped first; when all are live, nothing new is
//! cached).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::{header, Refused};
use crate::config::authorizer::{IdentitySource, RequestConfig};
use crate::integration::event::{build_event, EventKind, EventSource};
use crate::integration::signature::{sign, SIGNATURE_HEADER};

/// Most cached decisions.
pub const MAX_CACHED: usize = 10_000;
/// Largest answer read from the authorizer.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The region and account in `methodArn` (Gangway has neither; the shape is AWS's).
const ARN_REGION: &str = "us-east-1";
const ARN_ACCOUNT: &str = "000000000000";

type Decision = Result<Map<String, Value>, Refused>;

/// A cache entry: when its call started, and its decision once made. Concurrent checks of one
/// identity share the entry, so a burst of them costs one call (single flight).
type Entry = (Instant, Arc<tokio::sync::OnceCell<Decision>>);

/// A configured `request` authorizer.
#[derive(Debug)]
pub struct RequestAuthorizer {
    config: RequestConfig,
    client: reqwest::Client,
    secret: Vec<u8>,
    cache: Mutex<HashMap<String, Entry>>,
}

fn refused(status: u16, reason: &'static str) -> Refused {
    Refused { status, reason }
}

impl RequestAuthorizer {
    /// Builds it; `secret` signs its calls.
    pub fn new(config: &RequestConfig, secret: Vec<u8>) -> RequestAuthorizer {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(config.timeout_ms))
            .build()
            .unwrap_or_default();
        RequestAuthorizer {
            config: config.clone(),
            client,
            secret,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Decides the upgrade (`headers`, `query`) of the connection `source` describes.
    pub async fn check(
        &self,
        headers: &[(String, String)],
        query: &[(String, String)],
        source: &EventSource<'_>,
    ) -> Decision {
        let mut key = String::new();
        for s in &self.config.identity_sources {
            let value = match s {
                IdentitySource::Header(h) => header(headers, h),
                IdentitySource::Query(q) => {
                    query.iter().find(|(k, _)| k == q).map(|(_, v)| v.as_str())
                }
            };
            match value {
                Some(v) if !v.is_empty() => {
                    key.push_str(v);
                    key.push('\u{0}');
                }
                _ => return Err(refused(401, "identity_source_missing")),
            }
        }
        let ttl = Duration::from_secs(self.config.ttl_secs);
        if ttl.is_zero() {
            return self.call(headers, query, source).await;
        }
        let cell = {
            let mut cache = self.lock();
            match cache.get(&key) {
                Some((at, cell)) if at.elapsed() < ttl => Some(Arc::clone(cell)),
                _ => {
                    if cache.len() >= MAX_CACHED {
                        cache.retain(|_, (at, _)| at.elapsed() < ttl);
                    }
                    (cache.len() < MAX_CACHED).then(|| {
                        let cell = Arc::new(tokio::sync::OnceCell::new());
                        cache.insert(key.clone(), (Instant::now(), Arc::clone(&cell)));
                        cell
                    })
                }
            }
        };
        let Some(cell) = cell else {
            // The cache is full of live entries: decide without caching.
            return self.call(headers, query, source).await;
        };
        let decision = cell
            .get_or_init(|| self.call(headers, query, source))
            .await
            .clone();
        // Errors are not cached: the next client tries again.
        if matches!(&decision, Err(r) if r.status == 500) {
            let mut cache = self.lock();
            if cache.get(&key).is_some_and(|(_, c)| Arc::ptr_eq(c, &cell)) {
                cache.remove(&key);
            }
        }
        decision
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn method_arn(&self, source: &EventSource<'_>) -> String {
        format!(
            "arn:aws:execute-api:{ARN_REGION}:{ARN_ACCOUNT}:{}/{}/$connect",
            source.api_id, source.stage
        )
    }

    async fn call(
        &self,
        headers: &[(String, String)],
        query: &[(String, String)],
        source: &EventSource<'_>,
    ) -> Decision {
        let error = |reason| refused(500, reason);
        let rid = crate::conn::id::request_id();
        let base = build_event(
            source,
            &EventKind::Connect { headers, query },
            &rid,
            chrono::Utc::now(),
        );
        let mut event: Value =
            serde_json::from_slice(&base).map_err(|_| error("authorizer_event"))?;
        let arn = self.method_arn(source);
        if let Some(o) = event.as_object_mut() {
            o.insert("type".into(), "REQUEST".into());
            o.insert("methodArn".into(), arn.clone().into());
            o.insert("stageVariables".into(), Value::Object(Map::new()));
        }
        let body = serde_json::to_vec(&event).map_err(|_| error("authorizer_event"))?;
        let signature = sign(&self.secret, chrono::Utc::now().timestamp(), &body);
        let response = self
            .client
            .post(&self.config.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .map_err(|_| error("authorizer_unreachable"))?;
        let status = response.status().as_u16();
        if status == 401 {
            return Err(refused(401, "authorizer_unauthorized"));
        }
        let mut response = response;
        let mut answer = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| error("authorizer_unreachable"))?
        {
            if answer.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(error("authorizer_answer_too_large"));
            }
            answer.extend_from_slice(&chunk);
        }
        let value: Value =
            serde_json::from_slice(&answer).map_err(|_| error("authorizer_malformed"))?;
        if value.get("errorMessage").and_then(Value::as_str) == Some("Unauthorized")
            || value.get("message").and_then(Value::as_str) == Some("Unauthorized")
        {
            return Err(refused(401, "authorizer_unauthorized"));
        }
        if !(200..300).contains(&status) {
            return Err(error("authorizer_status"));
        }
        decide(&value, &arn)
    }
}

/// Reads AWS's authorizer answer for `arn`.
pub fn decide(answer: &Value, arn: &str) -> Decision {
    let malformed = || refused(500, "authorizer_malformed");
    let principal = answer
        .get("principalId")
        .and_then(Value::as_str)
        .ok_or_else(malformed)?;
    let statements = answer
        .pointer("/policyDocument/Statement")
        .ok_or_else(malformed)?;
    let statements: Vec<&Value> = match statements {
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![statements],
        _ => return Err(malformed()),
    };
    let (mut allowed, mut denied) = (false, false);
    for st in statements {
        let effect = st
            .get("Effect")
            .and_then(Value::as_str)
            .ok_or_else(malformed)?;
        let actions = strings(st.get("Action")).ok_or_else(malformed)?;
        let resources = strings(st.get("Resource")).ok_or_else(malformed)?;
        let invokes = actions
            .iter()
            .any(|a| *a == "execute-api:Invoke" || *a == "execute-api:*" || *a == "*");
        let covers = resources.iter().any(|r| matches(r, arn));
        if invokes && covers {
            match effect {
                "Allow" => allowed = true,
                "Deny" => denied = true,
                _ => return Err(malformed()),
            }
        }
    }
    if denied || !allowed {
        return Err(refused(403, "authorizer_denied"));
    }
    let mut context = Map::new();
    context.insert("principalId".into(), principal.into());
    match answer.get("context") {
        None | Some(Value::Null) => {}
        Some(Value::Object(c)) => {
            for (k, v) in c {
                if !matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                    return Err(malformed());
                }
                context.insert(k.clone(), v.clone());
            }
        }
        Some(_) => return Err(malformed()),
    }
    Ok(context)
}

/// A string or a list of strings.
fn strings(v: Option<&Value>) -> Option<Vec<&str>> {
    match v? {
        Value::String(s) => Some(vec![s.as_str()]),
        Value::Array(a) => a.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

/// An IAM resource pattern (`*` matches any run of characters) against `arn`.
fn matches(pattern: &str, arn: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == arn;
    }
    let mut rest = arn;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ARN: &str = "arn:aws:execute-api:us-east-1:000000000000:gangway/prod/$connect";

    fn policy(effect: &str, resource: &str) -> Value {
        json!({"principalId": "u1", "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}]},
            "context": {"tier": "gold", "n": 3, "ok": true}})
    }

    #[test]
    fn policies_decide() {
        let c = decide(&policy("Allow", ARN), ARN).expect("allowed");
        assert_eq!(c["principalId"], "u1");
        assert_eq!(c["tier"], "gold");
        assert!(decide(&policy("Allow", "arn:aws:execute-api:*:*:gangway/*"), ARN).is_ok());
        assert_eq!(
            decide(&policy("Deny", ARN), ARN).err().map(|r| r.status),
            Some(403)
        );
        assert_eq!(
            decide(
                &policy(
                    "Allow",
                    "arn:aws:execute-api:us-east-1:000000000000:other/prod/$connect"
                ),
                ARN
            )
            .err()
            .map(|r| r.status),
            Some(403),
            "an Allow on another resource allows nothing"
        );
        let mut both = policy("Allow", "*");
        both["policyDocument"]["Statement"]
            .as_array_mut()
            .expect("array")
            .push(json!({"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": ARN}));
        assert_eq!(
            decide(&both, ARN).err().map(|r| r.status),
            Some(403),
            "Deny wins"
        );
    }

    #[test]
    fn malformed_answers_are_500() {
        for bad in [
            json!({}),
            json!({"principalId": "u"}),
            json!({"principalId": "u", "policyDocument": {"Statement": "x"}}),
            json!({"principalId": "u", "policyDocument": {"Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]}}),
            json!({"principalId": "u", "policyDocument": {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}, "context": {"nested": {"a": 1}}}),
        ] {
            assert_eq!(
                decide(&bad, ARN).err().map(|r| r.status),
                Some(500),
                "{bad}"
            );
        }
    }
}
