//! The real AWS clients against a node: boto3's `apigatewaymanagementapi` and the AWS CLI, with
//! SigV4 signatures verified (tests/aws_sdk.py drives them). scripts/test.sh installs boto3 and
//! awscli into `.venv`, and the JS SDK v3 into `tests/js` (driven by tests/js/sdk_v3.mjs).

use std::process::Command;

use crate::support::*;
use tokio_tungstenite::tungstenite::Message;

const AKID: &str = "AKIDGANGWAYTEST";
const SECRET: &str = "gangway/test+secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_and_the_aws_cli_work_unchanged_with_signatures_checked() {
    let py = venv_python();
    let node = node(&format!(
        "[routes.\"$default\"]\nintegration = \"mock\"\n\
         [[control.aws_credentials]]\naccess_key_id = \"{AKID}\"\nsecret_access_key = \"{SECRET}\"\n"
    ))
    .await;
    let mut ws = connect(&node).await;
    eventually("registered", || node.broker.connection_count() == 1).await;
    let id = node.broker.connection_ids().pop().expect("id");
    let gone = gangway_broker::ConnectionId::generate(gangway_broker::NodeTag::of("gone"))
        .expect("rng")
        .to_string();
    let endpoint = format!("{}/prod", control_url(&node));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws_sdk.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(py)
            .arg(script)
            .args([&endpoint, &id, &gone, AKID, SECRET])
            .output()
            .expect("run python")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "sdk checks failed:\n{stdout}\n{stderr}"
    );
    assert_eq!(next_message(&mut ws).await, Message::text("from boto3"));
    assert_eq!(next_message(&mut ws).await, Message::text("from cli"));
    assert_eq!(expect_close(&mut ws).await.0, 1000);
    println!("{stdout}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_js_sdk_v3_works_unchanged_with_signatures_checked() {
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        js.join("node_modules/@aws-sdk/client-apigatewaymanagementapi")
            .is_dir(),
        "the AWS SDK for JavaScript v3 is needed in tests/js: run scripts/test.sh (it installs it)"
    );
    let node = node(&format!(
        "[routes.\"$default\"]\nintegration = \"mock\"\n\
         [[control.aws_credentials]]\naccess_key_id = \"{AKID}\"\nsecret_access_key = \"{SECRET}\"\n"
    ))
    .await;
    let (mut ws, id) = connect_with_id(&node).await;
    let gone = gangway_broker::ConnectionId::generate(gangway_broker::NodeTag::of("gone"))
        .expect("rng")
        .to_string();
    let endpoint = format!("{}/prod", control_url(&node));
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(js.join("sdk_v3.mjs"))
            .args([&endpoint, &id, &gone, AKID, SECRET])
            .output()
            .expect("run node")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "js sdk checks failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    assert_eq!(next_message(&mut ws).await, Message::text("from js sdk v3"));
    assert_eq!(expect_close(&mut ws).await.0, 1000);
    node.shutdown().await;
}
