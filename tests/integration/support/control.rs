//! A typed client of a node's control API, so tests say what they ask
//! (`control.subscribe(id, "room:1")`) instead of building requests by hand.

use reqwest::Method;

/// What the control API answered.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `x-amzn-ErrorType`, when the answer is an error.
    pub error_type: Option<String>,
    /// `x-amzn-RequestId`, when sent.
    pub request_id: Option<String>,
    /// Every header.
    pub headers: reqwest::header::HeaderMap,
    /// The body, as text.
    pub body: String,
}

impl Answer {
    /// The body as JSON (panics when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// A client of one node's control API.
#[derive(Clone)]
pub struct Control {
    base: String,
    prefix: String,
    bearer: Option<String>,
    http: reqwest::Client,
}

impl Control {
    /// The control API of `node`, called as a local program (no credentials).
    pub fn of(node: &gangway::Node) -> Control {
        Control::at(&super::control_url(node))
    }

    /// The control API at `base` (`http://host:port`).
    pub fn at(base: &str) -> Control {
        Control {
            base: base.to_string(),
            prefix: String::new(),
            bearer: None,
            http: super::http(),
        }
    }

    /// The same API with every path under `/{stage}` (as AWS SDKs call it).
    pub fn stage(&self, stage: &str) -> Control {
        Control {
            prefix: format!("/{stage}"),
            ..self.clone()
        }
    }

    /// The same API called with a bearer token.
    pub fn bearer(&self, token: &str) -> Control {
        Control {
            bearer: Some(token.to_string()),
            ..self.clone()
        }
    }

    /// Every page of `GET /@connections` with `limit` per page, following `nextCursor`.
    pub async fn list_connections(&self, limit: usize) -> Vec<serde_json::Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let path = match &cursor {
                Some(c) => format!("/@connections?limit={limit}&cursor={c}"),
                None => format!("/@connections?limit={limit}"),
            };
            let r = self.request(Method::GET, &path, "").await;
            assert_eq!(r.status, 200, "{}", r.body);
            let j = r.json();
            let page = j["items"].as_array().expect("items").clone();
            assert!(page.len() <= limit);
            items.extend(page);
            match j["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return items,
            }
        }
        panic!("paging did not end");
    }

    /// Any request: `path` is everything after the host (and stage), query included.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> Answer {
        let url = format!("{}{}{}", self.base, self.prefix, path);
        let mut req = self.http.request(method.clone(), &url).body(body);
        if let Some(t) = &self.bearer {
            req = req.bearer_auth(t);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = r.status().as_u16();
        let header = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (error_type, request_id) = (header("x-amzn-errortype"), header("x-amzn-requestid"));
        let headers = r.headers().clone();
        let body = r.text().await.unwrap_or_default();
        Answer {
            status,
            error_type,
            request_id,
            headers,
            body,
        }
    }

    /// PostToConnection.
    pub async fn post(&self, id: &str, body: impl Into<reqwest::Body>) -> Answer {
        self.request(Method::POST, &format!("/@connections/{id}"), body)
            .await
    }

    /// GetConnection.
    pub async fn get(&self, id: &str) -> Answer {
        self.request(Method::GET, &format!("/@connections/{id}"), "")
            .await
    }

    /// DeleteConnection; `query` is appended as is (e.g. `?code=4001&reason=moved`).
    pub async fn delete(&self, id: &str, query: &str) -> Answer {
        self.request(Method::DELETE, &format!("/@connections/{id}{query}"), "")
            .await
    }

    /// Subscribes connection `id` to `channel`.
    pub async fn subscribe(&self, id: &str, channel: &str) -> Answer {
        self.request(
            Method::PUT,
            &format!("/@connections/{id}/channels/{channel}"),
            "",
        )
        .await
    }

    /// Unsubscribes connection `id` from `channel`.
    pub async fn unsubscribe(&self, id: &str, channel: &str) -> Answer {
        self.request(
            Method::DELETE,
            &format!("/@connections/{id}/channels/{channel}"),
            "",
        )
        .await
    }

    /// Publishes to `channel`; `query` is appended as is (e.g. `?exclude=ID`).
    pub async fn publish(
        &self,
        channel: &str,
        query: &str,
        body: impl Into<reqwest::Body>,
    ) -> Answer {
        self.request(Method::POST, &format!("/@channels/{channel}{query}"), body)
            .await
    }

    /// A channel's subscriber count.
    pub async fn channel(&self, channel: &str) -> Answer {
        self.request(Method::GET, &format!("/@channels/{channel}"), "")
            .await
    }

    /// Broadcasts; `query` is appended as is.
    pub async fn broadcast(&self, query: &str, body: impl Into<reqwest::Body>) -> Answer {
        self.request(Method::POST, &format!("/@broadcast{query}"), body)
            .await
    }

    /// A batch of pushes and publishes.
    pub async fn batch(&self, body: impl Into<reqwest::Body>) -> Answer {
        self.request(Method::POST, "/@batch", body).await
    }

    /// A page of a channel's history; `query` is appended as is (e.g. `?since=3&limit=2`).
    pub async fn history(&self, channel: &str, query: &str) -> Answer {
        self.request(
            Method::GET,
            &format!("/@channels/{channel}/history{query}"),
            "",
        )
        .await
    }

    /// Forgets a channel's history.
    pub async fn clear_history(&self, channel: &str) -> Answer {
        self.request(Method::DELETE, &format!("/@channels/{channel}/history"), "")
            .await
    }

    /// A page of a channel's subscribers; `query` is appended as is.
    pub async fn presence(&self, channel: &str, query: &str) -> Answer {
        self.request(
            Method::GET,
            &format!("/@channels/{channel}/presence{query}"),
            "",
        )
        .await
    }

    /// A channel's subscriber and principal counts.
    pub async fn presence_stats(&self, channel: &str) -> Answer {
        self.request(
            Method::GET,
            &format!("/@channels/{channel}/presence-stats"),
            "",
        )
        .await
    }
}
