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
    /// Invoke a Lambda function with the same event (the Invoke API, the SDK's credentials).
    AwsLambda,
    /// Answer in-process: echo the message, or a fixed `response`.
    Mock,
}

/// One `[routes."<key>"]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// `integration = "http" | "aws_lambda" | "mock"`.
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
    /// The function an `aws_lambda` route invokes.
    pub lambda: Option<LambdaTarget>,
}

/// Where an `aws_lambda` route sends its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaTarget {
    /// `function_name`: a name, a partial ARN (`123456789012:function:name`) or a full ARN,
    /// optionally ending in `:qualifier`.
    pub function_name: String,
    /// `qualifier`: a version or alias.
    pub qualifier: Option<String>,
    /// `region`: overrides the SDK's region chain (when absent, a full ARN's region; then
    /// `AWS_REGION` or the profile's).
    pub region: Option<String>,
    /// `endpoint_url`: overrides the Lambda endpoint (a local emulator, a VPC endpoint).
    pub endpoint_url: Option<String>,
}

/// What a valid `function_name` says about region and qualifier.
struct FunctionName<'a> {
    region: Option<&'a str>,
    qualifier: Option<&'a str>,
}

fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn valid_qualifier(s: &str) -> bool {
    s == "$LATEST"
        || ((1..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

fn valid_region(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Parses the Invoke API's `FunctionName` forms: `name[:qualifier]`,
/// `account:function:name[:qualifier]`, `arn:partition:lambda:region:account:function:name[:qualifier]`.
fn parse_function_name(s: &str) -> Result<FunctionName<'_>, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let account = |a: &str| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit());
    let (region, name, qualifier) = match parts.as_slice() {
        [name] => (None, *name, None),
        [name, q] => (None, *name, Some(*q)),
        [acct, "function", name] if account(acct) => (None, *name, None),
        [acct, "function", name, q] if account(acct) => (None, *name, Some(*q)),
        ["arn", partition, "lambda", region, acct, "function", name, rest @ ..]
            if partition.starts_with("aws") && account(acct) && rest.len() <= 1 =>
        {
            if !valid_region(region) {
                return Err(format!("the ARN's region {region:?} is not a region"));
            }
            (Some(*region), *name, rest.first().copied())
        }
        _ => {
            return Err(
                "expected a function name, \"123456789012:function:name\" or \
                 \"arn:aws:lambda:region:123456789012:function:name\" (each optionally \
                 ending in \":qualifier\")"
                    .to_string(),
            )
        }
    };
    if !valid_name(name) {
        return Err(format!(
            "the function name {name:?} must be 1-64 letters, digits, '-' or '_'"
        ));
    }
    if let Some(q) = qualifier {
        if !valid_qualifier(q) {
            return Err(format!("the qualifier {q:?} is not a version or alias"));
        }
    }
    Ok(FunctionName { region, qualifier })
}

/// Reads and checks the `aws_lambda` keys of a route.
fn read_lambda(r: &mut Section<'_>) -> Option<LambdaTarget> {
    let function_name = r.string("function_name");
    let qualifier = r.string("qualifier");
    let region = r.string("region");
    let endpoint_url = r.string("endpoint_url");
    let Some(function_name) = function_name else {
        r.problem(
            "function_name",
            "an aws_lambda route needs a function_name (a name or an ARN)".into(),
        );
        return None;
    };
    let mut arn_region = None;
    match parse_function_name(&function_name) {
        Err(e) => r.problem("function_name", format!("{e}: {function_name:?}")),
        Ok(parsed) => {
            arn_region = parsed.region.map(str::to_string);
            if let (Some(a), Some(b)) = (parsed.qualifier, qualifier.as_deref()) {
                if a != b {
                    r.problem(
                        "qualifier",
                        format!("{b:?} differs from the qualifier in function_name ({a:?})"),
                    );
                }
            }
            if let (Some(a), Some(b)) = (parsed.region, region.as_deref()) {
                if a != b {
                    r.problem(
                        "region",
                        format!("{b:?} differs from the region in function_name's ARN ({a:?})"),
                    );
                }
            }
        }
    }
    if let Some(q) = qualifier.as_deref().filter(|q| !valid_qualifier(q)) {
        r.problem(
            "qualifier",
            format!("{q:?} is not a version or alias (letters, digits, '-', '_', or $LATEST)"),
        );
    }
    if let Some(reg) = region.as_deref().filter(|x| !valid_region(x)) {
        r.problem("region", format!("{reg:?} is not a region name"));
    }
    if let Some(u) = endpoint_url.as_deref() {
        if !reqwest::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "http" | "https")) {
            r.problem("endpoint_url", format!("not a usable http(s) URL: {u:?}"));
        }
    }
    Some(LambdaTarget {
        region: region.or(arn_region),
        function_name,
        qualifier,
        endpoint_url,
    })
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
            Some("aws_lambda") => IntegrationKind::AwsLambda,
            Some("mock") => IntegrationKind::Mock,
            Some(other) => {
                r.problem(
                    "integration",
                    format!("must be \"http\", \"aws_lambda\" or \"mock\", not {other:?}"),
                );
                IntegrationKind::Mock
            }
            None => {
                r.problem(
                    "integration",
                    "missing (\"http\", \"aws_lambda\" or \"mock\")".into(),
                );
                IntegrationKind::Mock
            }
        };
        let url = r.string("url");
        let two_way = r.bool("two_way", integration == IntegrationKind::Mock);
        let timeout_ms = r.uint("timeout_ms", 29_000, 1, 3_600_000);
        let response = r.string("response");
        let throttle_rate = r.uint("throttle_rate", 0, 0, 1 << 24) as u32;
        let throttle_burst = r.uint("throttle_burst", 0, 0, 1 << 24) as u32;
        let lambda = (integration == IntegrationKind::AwsLambda)
            .then(|| read_lambda(&mut r))
            .flatten();
        let response_format = match r.string("response_format").as_deref() {
            None | Some("lambda") if integration == IntegrationKind::AwsLambda => {
                ResponseFormat::Lambda
            }
            Some(_) if integration == IntegrationKind::AwsLambda => {
                r.problem(
                    "response_format",
                    "an aws_lambda route always reads Lambda's proxy result (\"lambda\")".into(),
                );
                ResponseFormat::Lambda
            }
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
            (IntegrationKind::AwsLambda, Some(_)) => problems.push(ConfigProblem {
                key: format!("{prefix}.url"),
                message: "an aws_lambda route takes function_name (and endpoint_url), not url"
                    .into(),
            }),
            (IntegrationKind::Mock | IntegrationKind::AwsLambda, None) => {}
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
                lambda,
            },
        );
    }
    routes
}
