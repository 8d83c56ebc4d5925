//! Issue 13, item 6 — `integration = "aws_lambda"`: routes invoke Lambda functions through the
//! Invoke API with the SDK's standard credential chain. The endpoint (tests/lambda_endpoint.py)
//! stands in for Lambda: it recomputes every SigV4 signature with botocore, answers like the
//! Invoke API, and runs the AWS chat sample's handlers unchanged in what they answer — they call
//! back through boto3's `apigatewaymanagementapi`. Gangway runs as its own process so each test
//! gives it its own AWS environment.

use std::io::BufRead as _;
use std::time::Duration;

use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

const AKID: &str = "AKIDLAMBDATEST";
const SECRET: &str = "lambda/test+secret";
const REGION: &str = "eu-west-1";

/// The stand-in Lambda endpoint, killed when dropped.
struct LambdaEndpoint {
    child: std::process::Child,
    url: String,
}

impl LambdaEndpoint {
    fn start(session_token: Option<&str>) -> LambdaEndpoint {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lambda_endpoint.py");
        let mut child = std::process::Command::new(venv_python())
            .arg(script)
            .args([AKID, SECRET, REGION])
            .args(session_token)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the lambda endpoint");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("listening line");
        let port = line
            .trim()
            .strip_prefix("listening ")
            .expect("listening PORT")
            .to_string();
        LambdaEndpoint {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Every invocation the endpoint saw.
    async fn calls(&self) -> Vec<serde_json::Value> {
        http()
            .get(format!("{}/_calls", self.url))
            .send()
            .await
            .expect("calls")
            .json::<Vec<serde_json::Value>>()
            .await
            .expect("json")
    }

    /// Where the chat handlers post back to.
    async fn set_control(&self, url: &str) {
        http()
            .post(format!("{}/_control", self.url))
            .body(url.to_string())
            .send()
            .await
            .expect("set control");
    }
}

impl Drop for LambdaEndpoint {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A route invoking `function` at `endpoint` (plus `extra` TOML lines).
fn route(key: &str, function: &str, endpoint: &LambdaEndpoint, extra: &str) -> String {
    format!(
        "[routes.\"{key}\"]\nintegration = \"aws_lambda\"\nfunction_name = \"{function}\"\n\
         endpoint_url = \"{}\"\n{extra}",
        endpoint.url
    )
}

/// The environment of a gangway process that must only use what the test gives it.
const CLEAN: &[(&str, &str)] = &[
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_CONFIG_FILE", "/nonexistent/aws-config"),
    (
        "AWS_SHARED_CREDENTIALS_FILE",
        "/nonexistent/aws-credentials",
    ),
    ("AWS_PROFILE", ""),
    ("AWS_ACCESS_KEY_ID", ""),
    ("AWS_SECRET_ACCESS_KEY", ""),
    ("AWS_SESSION_TOKEN", ""),
    ("AWS_REGION", ""),
    ("AWS_DEFAULT_REGION", ""),
    ("AWS_ENDPOINT_URL", ""),
    ("AWS_ENDPOINT_URL_LAMBDA", ""),
    ("AWS_WEB_IDENTITY_TOKEN_FILE", ""),
    ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", ""),
    ("AWS_CONTAINER_CREDENTIALS_FULL_URI", ""),
];

fn with_env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env: Vec<(&str, &str)> = CLEAN
        .iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .copied()
        .collect();
    env.extend_from_slice(extra);
    env
}

fn ws(node: &NodeProcess, path: &str) -> String {
    format!("ws://{}{path}", node.websocket)
}

async fn connect_to(url: &str) -> Client {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connect")
        .0
}

async fn refused_status(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, the client was admitted"),
    }
}

async fn metric_count(node: &NodeProcess, route: &str, kind: &str) -> f64 {
    let text = http()
        .get(format!("http://{}/metrics", node.control))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| {
            l.starts_with("gangway_integration_errors_total")
                && l.contains(&format!("route=\"{route}\""))
                && l.contains(&format!("kind=\"{kind}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_sample_runs_as_lambda_functions_signed_with_environment_credentials() {
    let lambda = LambdaEndpoint::start(None);
    let dir = scratch_dir("aws-lambda-chat");
    let region = format!("region = \"{REGION}\"\n");
    let toml = [
        route("$connect", "chat-connect", &lambda, &region),
        // A full ARN carries its region; a partial one needs the route's.
        route(
            "$disconnect",
            &format!("arn:aws:lambda:{REGION}:123456789012:function:chat-disconnect"),
            &lambda,
            "",
        ),
        route(
            "sendmessage",
            "123456789012:function:chat-send",
            &lambda,
            &region,
        ),
        route(
            "echo",
            "echo",
            &lambda,
            &format!("{region}qualifier = \"live\"\ntwo_way = true\n"),
        ),
        route(
            "boom",
            "boom",
            &lambda,
            &format!("{region}two_way = true\n"),
        ),
        route(
            "void",
            "nothing",
            &lambda,
            &format!("{region}two_way = true\n"),
        ),
        route("$default", "no-such-function", &lambda, &region),
    ]
    .concat();
    let node = NodeProcess::spawn_with_env(
        &dir,
        "node",
        &toml,
        &[],
        &with_env(&[
            ("AWS_ACCESS_KEY_ID", AKID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ]),
    );
    lambda
        .set_control(&format!("http://{}/prod", node.control))
        .await;

    // onconnect decides: alice and bob in, mallory refused with the handler's statusCode.
    let mut alice = connect_to(&ws(&node, "/?who=alice")).await;
    let mut bob = connect_to(&ws(&node, "/?who=bob")).await;
    assert_eq!(refused_status(&ws(&node, "/?who=mallory")).await, 403);

    // sendmessage posts to every connection through boto3 and the control API.
    send_text(
        &mut alice,
        r#"{"action": "sendmessage", "data": "hello, room"}"#,
    )
    .await;
    assert_eq!(next_message(&mut alice).await, Message::text("hello, room"));
    assert_eq!(next_message(&mut bob).await, Message::text("hello, room"));

    // A two-way route replies with the result's body; the qualifier reached the function.
    send_text(&mut alice, r#"{"action": "echo", "n": 1}"#).await;
    assert_eq!(
        next_message(&mut alice).await,
        Message::text(r#"{"action": "echo", "n": 1} (live)"#)
    );

    // A function that raises, one that returns no proxy result and one that does not exist:
    // AWS's error frame.
    send_text(&mut alice, r#"{"action": "void"}"#).await;
    assert_eq!(
        next_json(&mut alice).await["message"],
        "Internal server error"
    );
    send_text(&mut alice, r#"{"action": "boom"}"#).await;
    assert_eq!(
        next_json(&mut alice).await["message"],
        "Internal server error"
    );
    send_text(&mut alice, r#"{"action": "unrouted"}"#).await;
    assert_eq!(
        next_json(&mut alice).await["message"],
        "Internal server error"
    );

    // ondisconnect runs when bob leaves; the room is alice alone afterwards.
    bob.close(None).await.expect("close");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let calls = lambda.calls().await;
        if calls.iter().any(|c| c["function"] == "chat-disconnect") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no $disconnect: {calls:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    send_text(
        &mut alice,
        r#"{"action": "sendmessage", "data": "still here?"}"#,
    )
    .await;
    assert_eq!(next_message(&mut alice).await, Message::text("still here?"));

    let calls = lambda.calls().await;
    assert!(
        calls.iter().all(|c| c["signature"] == "ok"),
        "every invocation is signed: {calls:?}"
    );
    let by = |f: &str| calls.iter().filter(|c| c["function"] == f).count();
    assert_eq!(by("chat-connect"), 3);
    assert_eq!(by("chat-disconnect"), 1);
    assert_eq!(by("chat-send"), 2);
    assert!(calls
        .iter()
        .any(|c| c["function"] == "echo" && c["qualifier"] == "live" && c["routeKey"] == "echo"));
    assert!(metric_count(&node, "boom", "function_error").await >= 1.0);
    assert!(metric_count(&node, "void", "malformed_result").await >= 1.0);
    assert!(metric_count(&node, "$default", "service_error").await >= 1.0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_web_identity_and_instance_credentials_sign_and_wrong_or_missing_ones_are_refused()
{
    let lambda = LambdaEndpoint::start(Some("session-token-123"));
    let dir = scratch_dir("aws-lambda-profile");
    let credentials = dir.join("credentials");
    std::fs::write(
        &credentials,
        format!(
            "[ci]\naws_access_key_id = {AKID}\naws_secret_access_key = {SECRET}\n\
             aws_session_token = session-token-123\n"
        ),
    )
    .expect("credentials file");
    let config = dir.join("config");
    std::fs::write(&config, format!("[profile ci]\nregion = {REGION}\n")).expect("config file");
    // No region in the route: it comes from the profile.
    let toml = route("$connect", "chat-connect", &lambda, "");

    let profiled = NodeProcess::spawn_with_env(
        &dir,
        "profiled",
        &toml,
        &[],
        &with_env(&[
            ("AWS_PROFILE", "ci"),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                credentials.to_str().expect("utf-8"),
            ),
            ("AWS_CONFIG_FILE", config.to_str().expect("utf-8")),
        ]),
    );
    let _client = connect_to(&ws(&profiled, "/?who=carol")).await;

    // Web identity (STS AssumeRoleWithWebIdentity) and the instance metadata service (IMDSv2),
    // both served by the endpoint, hand out the same temporary credentials.
    let token_file = dir.join("web-identity-token");
    std::fs::write(&token_file, "web-identity-token").expect("token file");
    let web_identity = NodeProcess::spawn_with_env(
        &dir,
        "web-identity",
        &toml,
        &[],
        &with_env(&[
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                token_file.to_str().expect("utf-8"),
            ),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/gangway"),
            ("AWS_ROLE_SESSION_NAME", "gangway-test"),
            ("AWS_ENDPOINT_URL_STS", &lambda.url),
            ("AWS_REGION", REGION),
        ]),
    );
    let _client = connect_to(&ws(&web_identity, "/?who=grace")).await;
    let instance = NodeProcess::spawn_with_env(
        &dir,
        "instance",
        &toml,
        &[],
        &with_env(&[
            ("AWS_EC2_METADATA_DISABLED", ""),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &lambda.url),
            ("AWS_REGION", REGION),
        ]),
    );
    let _client = connect_to(&ws(&instance, "/?who=heidi")).await;

    // The same keys without the session token, then a wrong secret: Lambda refuses the
    // signature, the client is refused with 502, nobody is admitted.
    let no_token = NodeProcess::spawn_with_env(
        &dir,
        "no-token",
        &toml,
        &[],
        &with_env(&[
            ("AWS_ACCESS_KEY_ID", AKID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_REGION", REGION),
        ]),
    );
    assert_eq!(refused_status(&ws(&no_token, "/?who=dave")).await, 502);
    let wrong = NodeProcess::spawn_with_env(
        &dir,
        "wrong",
        &toml,
        &[],
        &with_env(&[
            ("AWS_ACCESS_KEY_ID", AKID),
            ("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
            ("AWS_SESSION_TOKEN", "session-token-123"),
            ("AWS_REGION", REGION),
        ]),
    );
    assert_eq!(refused_status(&ws(&wrong, "/?who=erin")).await, 502);
    assert!(metric_count(&wrong, "$connect", "service_error").await >= 1.0);

    // No credentials anywhere: the SDK cannot sign, nothing is sent, the client is refused.
    let before = lambda.calls().await.len();
    let bare = NodeProcess::spawn_with_env(
        &dir,
        "bare",
        &toml,
        &[],
        &with_env(&[("AWS_REGION", REGION)]),
    );
    assert_eq!(refused_status(&ws(&bare, "/?who=frank")).await, 502);
    assert!(metric_count(&bare, "$connect", "unreachable").await >= 1.0);

    let calls = lambda.calls().await;
    assert_eq!(calls.len(), before, "an unsigned call never left the node");
    let verdicts: Vec<&str> = calls
        .iter()
        .map(|c| c["signature"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        verdicts,
        [
            "ok",
            "ok",
            "ok",
            "UnrecognizedClientException",
            "InvalidSignatureException"
        ],
        "{calls:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn aws_lambda_routes_are_checked() {
    let problem = |route: &str| {
        let toml = format!("[routes.\"$default\"]\nintegration = \"aws_lambda\"\n{route}");
        let err = gangway::GatewayConfig::from_toml_str(&toml).expect_err(&toml);
        err.problems[0].key.clone()
    };
    let key = |k: &str| format!("routes.\"$default\".{k}");
    assert_eq!(problem(""), key("function_name"));
    assert_eq!(
        problem("function_name = \"bad name!\"\n"),
        key("function_name")
    );
    assert_eq!(
        problem("function_name = \"arn:aws:lambda:eu-west-1:12:function:f\"\n"),
        key("function_name")
    );
    assert_eq!(
        problem("function_name = \"f:live\"\nqualifier = \"prod\"\n"),
        key("qualifier")
    );
    assert_eq!(
        problem(
            "function_name = \"arn:aws:lambda:eu-west-1:123456789012:function:f\"\n\
             region = \"us-east-1\"\n"
        ),
        key("region")
    );
    assert_eq!(
        problem("function_name = \"f\"\nregion = \"EU WEST\"\n"),
        key("region")
    );
    assert_eq!(
        problem("function_name = \"f\"\nendpoint_url = \"ftp://x\"\n"),
        key("endpoint_url")
    );
    assert_eq!(
        problem("function_name = \"f\"\nresponse_format = \"raw\"\n"),
        key("response_format")
    );
    assert_eq!(
        problem("function_name = \"f\"\nurl = \"http://x/\"\n"),
        key("url")
    );
    // A full ARN with a qualifier, no webhook secret needed (calls are signed with SigV4).
    let ok = gangway::GatewayConfig::from_toml_str(
        "[routes.\"$default\"]\nintegration = \"aws_lambda\"\n\
         function_name = \"arn:aws:lambda:eu-west-1:123456789012:function:f:live\"\n",
    )
    .expect("valid");
    let target = ok.broker.routes["$default"].lambda.clone().expect("target");
    assert_eq!(target.region.as_deref(), Some("eu-west-1"));
}
