//! `[routes."<key>"]`: which integration answers each route key.

use std::collections::BTreeMap;
use std::time::Duration;

use super::reader::Section;
use super::ConfigProblem;

/// Which integration a route uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrationKind {
    /// POST the AWS-shaped event to a backend URL.
    Http,
    /// Answer in-process: echo the message, or a fixed `response`.
    Mock,
}

/// One `[routes."<key>"]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// `integration = "http" | "mock"`.
    pub integration: IntegrationKind,
    /// `url`: the backend endpoint (required for `http`).
    pub url: Option<String>,
    /// `two_way`: send the backend's 2xx body back to the client (default: false for http, true for mock).
    pub two_way: bool,
    /// `timeout_ms`: how long one backend call may take (default 29 000).
    pub timeout: Duration,
    /// `response`: fixed body of a `mock` route; absent means echo.
    pub response: Option<String>,
    /// `response_format`: how an `http` backend's answer is read (default raw).
    pub response_format: ResponseFormat,
    /// `throttle_rate`: node-wide messages per second for this route (0: off).
    pub throttle_rate: u32,
    /// `throttle_burst`: the route's bucket's burst (0: the rate).
    pub throttle_burst: u32,
}

/// How an `http` route reads its backend's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseFormat {
    /// `"raw"`: the HTTP status decides, the body is the reply (and `$connect`'s JSON).
    #[default]
    Raw,
    /// `"lambda"`: the body is Lambda's proxy result — `statusCode` decides, `headers` apply,
    /// `body` (base64-decoded when `isBase64Encoded`) is the reply.
    Lambda,
}

/// Reads `[routes]`, recording every problem.
pub(super) fn read(
    value: Option<&toml::Value>,
    problems: &mut Vec<ConfigProblem>,
) -> BTreeMap<String, RouteConfig> {
    let mut routes = BTreeMap::new();
    let Some(value) = value else {
        return routes;
    };
    let Some(table) = value.as_table() else {
        problems.push(ConfigProblem {
            key: "routes".into(),
            message: "must be a table of route keys".into(),
        });
        return routes;
    };
    for (route_key, route) in table {
        let prefix = format!("routes.\"{route_key}\"");
        if route_key.starts_with('$')
            && !matches!(route_key.as_str(), "$connect" | "$disconnect" | "$default")
        {
            problems.push(ConfigProblem {
                key: prefix.clone(),
                message: "route keys starting with '$' are reserved; use $connect, $disconnect, \
                          $default or a key without '$'"
                    .into(),
            });
        }
        if route_key.is_empty() {
            problems.push(ConfigProblem {
                key: prefix.clone(),
                message: "a route key must not be empty".into(),
            });
        }
        let Some(rt) = route.as_table() else {
            problems.push(ConfigProblem {
                key: prefix,
                message: "must be a table".into(),
            });
            continue;
        };
        let mut r = Section::from_table(rt, prefix.clone(), problems);
        let integration = match r.string("integration").as_deref() {
            Some("http") => IntegrationKind::Http,
            Some("mock") => IntegrationKind::Mock,
            Some(other) => {
                r.problem(
                    "integration",
                    format!("must be \"http\" or \"mock\", not {other:?}"),
                );
                IntegrationKind::Mock
            }
            None => {
                r.problem("integration", "missing (\"http\" or \"mock\")".into());
                IntegrationKind::Mock
            }
        };
        let url = r.string("url");
        let two_way = r.bool("two_way", integration == IntegrationKind::Mock);
        let timeout_ms = r.uint("timeout_ms", 29_000, 1, 3_600_000);
        let response = r.string("response");
        let throttle_rate = r.uint("throttle_rate", 0, 0, 1 << 24) as u32;
        let throttle_burst = r.uint("throttle_burst", 0, 0, 1 << 24) as u32;
        let response_format = match r.string("response_format").as_deref() {
            None | Some("raw") => ResponseFormat::Raw,
            Some("lambda") if integration == IntegrationKind::Http => ResponseFormat::Lambda,
            Some("lambda") => {
                r.problem(
                    "response_format",
                    "\"lambda\" reads an http backend's answer; a mock route has none".into(),
                );
                ResponseFormat::Raw
            }
            Some(other) => {
                r.problem(
                    "response_format",
                    format!("must be \"raw\" or \"lambda\", not {other:?}"),
                );
                ResponseFormat::Raw
            }
        };
        r.finish();
        match (integration, &url) {
            (IntegrationKind::Http, None) => problems.push(ConfigProblem {
                key: format!("{prefix}.url"),
                message: "an http route needs a url".into(),
            }),
            (IntegrationKind::Http, Some(u)) => {
                if let Err(e) = reqwest::Url::parse(u)
                    .map_err(|e| e.to_string())
                    .and_then(|p| {
                        if matches!(p.scheme(), "http" | "https") {
                            Ok(())
                        } else {
                            Err("scheme must be http or https".to_string())
                        }
                    })
                {
                    problems.push(ConfigProblem {
                        key: format!("{prefix}.url"),
                        message: format!("not a usable URL ({e}): {u:?}"),
                    });
                }
            }
            (IntegrationKind::Mock, Some(_)) => problems.push(ConfigProblem {
                key: format!("{prefix}.url"),
                message: "a mock route takes no url".into(),
            }),
            (IntegrationKind::Mock, None) => {}
        }
        routes.insert(
            route_key.clone(),
            RouteConfig {
                integration,
                url,
                two_way,
                timeout: Duration::from_millis(timeout_ms),
                response,
                response_format,
                throttle_rate,
                throttle_burst,
            },
        );
    }
    routes
}
