//! A minimal `$connect` backend the load tool runs itself, so it learns every connection's id
//! (for `direct` pushes) and can put each subscriber in a channel (`?ch=` in its URL).
//!
//! Point the node's `$connect` route at it: `[routes."$connect"] integration = "http"`,
//! `url = "http://127.0.0.1:3999/connect"`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};

/// Connection ids reported by CONNECT events, keyed by the `i` query parameter.
#[derive(Clone, Default)]
pub struct Registry {
    ids: Arc<Mutex<Vec<Option<String>>>>,
}

impl Registry {
    /// The id of connection `i`, once its CONNECT event arrived.
    pub fn id(&self, i: usize) -> Option<String> {
        self.ids
            .lock()
            .ok()
            .and_then(|ids| ids.get(i).cloned().flatten())
    }

    fn record(&self, i: usize, id: String) {
        if let Ok(mut ids) = self.ids.lock() {
            if ids.len() <= i {
                ids.resize(i + 1, None);
            }
            ids[i] = Some(id);
        }
    }
}

/// Serves CONNECT events on `addr` until the process ends.
pub async fn start(addr: SocketAddr) -> anyhow::Result<Registry> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let registry = Registry::default();
    let r = registry.clone();
    serve(listener, move |body| answer(&r, body));
    Ok(registry)
}

/// Answers every HTTP/1 request on `listener` with 200 and `respond(body)`, until the process
/// ends (webhook backends: the load tool's and the chaos run's).
pub fn serve(
    listener: tokio::net::TcpListener,
    respond: impl Fn(&[u8]) -> String + Send + Sync + 'static,
) {
    let respond = Arc::new(respond);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let respond = Arc::clone(&respond);
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let respond = Arc::clone(&respond);
                    async move {
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let answer = respond(&body);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(answer))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

fn answer(registry: &Registry, body: &[u8]) -> String {
    let Ok(event) = serde_json::from_slice::<serde_json::Value>(body) else {
        return "{}".into();
    };
    let query = &event["queryStringParameters"];
    if let (Some(i), Some(id)) = (
        query["i"].as_str().and_then(|i| i.parse::<usize>().ok()),
        event["requestContext"]["connectionId"].as_str(),
    ) {
        registry.record(i, id.to_string());
    }
    match query["ch"].as_str() {
        Some(ch) => serde_json::json!({ "channels": [ch] }).to_string(),
        None => "{}".into(),
    }
}
