//! Issue 13, item 3 — what decides a connection before `$connect`: the `jwt` authorizer (keys
//! made by `openssl`, tokens signed by the `jsonwebtoken` crate) and API keys. Every refusal is
//! checked to reach no backend; every bad token shape named in the issue is tried.

use std::process::Command;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A key pair: (private key PEM in PKCS#8, public key PEM).
fn key_pair(dir: &std::path::Path, name: &str, genpkey: &[&str]) -> (Vec<u8>, String) {
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let mut args = vec!["genpkey"];
    args.extend_from_slice(genpkey);
    args.extend_from_slice(&["-out", private.to_str().expect("path")]);
    openssl(&args);
    openssl(&[
        "pkey",
        "-in",
        private.to_str().expect("path"),
        "-pubout",
        "-out",
        public.to_str().expect("path"),
    ]);
    (
        std::fs::read(&private).expect("key"),
        std::fs::read_to_string(&public).expect("pub"),
    )
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut c = serde_json::json!({
        "sub": "user-42", "iss": "https://issuer.test", "aud": "gangway",
        "exp": now() + 300, "tenant": "acme", "email": "u@example.test"
    });
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &serde_json::Value) -> String {
    encode(&Header::new(alg), claims, key).expect("sign")
}

/// Upgrades with `query` and extra `headers`; the response status.
async fn status(node: &gangway::Node, query: &str, headers: &[(&str, &str)]) -> u16 {
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        ws_url(node, &format!("/{query}")),
    )
    .expect("request");
    for (k, v) in headers {
        req.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
                .expect("name"),
            v.parse().expect("value"),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        // 101, but the client objects to the answer (e.g. no subprotocol picked).
        Err(tokio_tungstenite::tungstenite::Error::Protocol(_)) => 101,
        Err(e) => panic!("{e}"),
    }
}

fn backend_routes(backend: &Backend) -> String {
    format!(
        "[api]\nwebhook_secret = \"authorizer-secret\"\n\
         [routes.\"$connect\"]\nintegration = \"http\"\nurl = \"{}\"\n\
         [routes.\"$default\"]\nintegration = \"http\"\nurl = \"{}\"\n",
        backend.url("/connect"),
        backend.url("/message")
    )
}

#[tokio::test]
async fn a_jwt_authorizer_admits_valid_tokens_only() {
    let dir = scratch_dir("jwt");
    let (es_private, es_public) = key_pair(
        &dir,
        "es",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let (other_private, _) = key_pair(
        &dir,
        "other",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let es = EncodingKey::from_ec_pem(&es_private).expect("es key");
    let other = EncodingKey::from_ec_pem(&other_private).expect("other key");
    let backend = Backend::start().await;
    let node = node(&format!(
        "{}[authorizer]\ntype = \"jwt\"\ntoken_source = \"query:token\"\nalgorithms = [\"ES256\"]\n\
         public_keys = ['''{es_public}''']\nissuer = \"https://issuer.test\"\naudience = \"gangway\"\n\
         leeway_secs = 5\ncontext_claims = [\"tenant\", \"email\"]\n",
        backend_routes(&backend)
    ))
    .await;

    // A valid token: admitted; $connect and later events carry principalId and the claims.
    let good = sign(Algorithm::ES256, &es, &claims(serde_json::json!({})));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url(&node, &format!("/?token={good}")))
        .await
        .expect("admitted");
    let connect = backend.wait_event("CONNECT", 1).await;
    let auth = &connect.event["requestContext"]["authorizer"];
    assert_eq!(auth["principalId"], "user-42");
    assert_eq!(auth["tenant"], "acme");
    // GetConnection says it too (Gangway's `authorizer` field).
    let id = connect.connection_id();
    let info = Control::of(&node)
        .request(reqwest::Method::GET, &format!("/@connections/{id}"), "")
        .await
        .json();
    assert_eq!(info["authorizer"]["principalId"], "user-42", "{info}");
    assert_eq!(info["authorizer"]["tenant"], "acme");
    send_text(&mut ws, "hello").await;
    let message = backend.wait_event("MESSAGE", 1).await;
    assert_eq!(
        message.event["requestContext"]["authorizer"]["email"],
        "u@example.test"
    );
    drop(ws);

    // Every bad token: 401, and no backend call.
    let before = backend
        .calls()
        .iter()
        .filter(|c| c.event_type() == "CONNECT")
        .count();
    let none_alg = {
        let h = base64_url(br#"{"alg":"none","typ":"JWT"}"#);
        let c = base64_url(claims(serde_json::json!({})).to_string().as_bytes());
        format!("{h}.{c}.")
    };
    let hs_over_public = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(es_public.as_bytes()),
        &claims(serde_json::json!({})),
    );
    for (what, token) in [
        ("missing", String::new()),
        ("garbage", "not.a.token".to_string()),
        ("alg none", none_alg),
        ("HMAC over the public key", hs_over_public),
        (
            "another key",
            sign(Algorithm::ES256, &other, &claims(serde_json::json!({}))),
        ),
        (
            "expired",
            sign(
                Algorithm::ES256,
                &es,
                &claims(serde_json::json!({"exp": now() - 60})),
            ),
        ),
        (
            "not yet valid",
            sign(
                Algorithm::ES256,
                &es,
                &claims(serde_json::json!({"nbf": now() + 60})),
            ),
        ),
        (
            "wrong issuer",
            sign(
                Algorithm::ES256,
                &es,
                &claims(serde_json::json!({"iss": "https://evil.test"})),
            ),
        ),
        (
            "wrong audience",
            sign(
                Algorithm::ES256,
                &es,
                &claims(serde_json::json!({"aud": "other"})),
            ),
        ),
    ] {
        let q = if token.is_empty() {
            String::new()
        } else {
            format!("?token={token}")
        };
        assert_eq!(status(&node, &q, &[]).await, 401, "{what}");
    }
    // Expired a moment ago, within the leeway: admitted.
    let fresh = sign(
        Algorithm::ES256,
        &es,
        &claims(serde_json::json!({"exp": now() - 2})),
    );
    assert_eq!(status(&node, &format!("?token={fresh}"), &[]).await, 101);
    let after = backend
        .calls()
        .iter()
        .filter(|c| c.event_type() == "CONNECT")
        .count();
    assert_eq!(after, before + 1, "refused upgrades never reach $connect");
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn tokens_come_from_headers_cookies_and_subprotocols() {
    let secret = "a-hmac-secret-of-at-least-32-characters!";
    let key = EncodingKey::from_secret(secret.as_bytes());
    let token = sign(Algorithm::HS256, &key, &claims(serde_json::json!({})));
    for (source, headers) in [
        (
            "header:Authorization",
            vec![("Authorization", format!("Bearer {token}"))],
        ),
        (
            "cookie:session",
            vec![("Cookie", format!("theme=dark; session={token}"))],
        ),
        (
            "subprotocol",
            vec![("Sec-WebSocket-Protocol", format!("chat, {token}"))],
        ),
    ] {
        let node = node(&format!(
            "[routes.\"$default\"]\nintegration = \"mock\"\n\
             [authorizer]\ntype = \"jwt\"\ntoken_source = \"{source}\"\nalgorithms = [\"HS256\"]\nsecret = \"{secret}\"\n"
        ))
        .await;
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        // (With the subprotocol source nothing picks a protocol here, so the client objects
        // to the 101; `status` reports the 101 all the same.)
        assert_eq!(status(&node, "", &h).await, 101, "{source}");
        assert_eq!(
            status(&node, "", &[]).await,
            401,
            "{source} without a token"
        );
        node.shutdown().await;
    }
}

#[tokio::test]
async fn api_keys_are_required_and_carry_their_own_rate() {
    let hash = |k: &str| {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(k.as_bytes()))
    };
    let node = node(&format!(
        "[routes.\"$default\"]\nintegration = \"mock\"\n\
         [api]\napi_key_required = true\n\
         [[api.keys]]\nsha256 = \"{}\"\nrate = 1\nburst = 1\n\
         [[api.keys]]\nsha256 = \"{}\"\n",
        hash("slow-key"),
        hash("fast-key")
    ))
    .await;
    assert_eq!(status(&node, "", &[]).await, 403, "missing key");
    assert_eq!(
        status(&node, "", &[("x-api-key", "guess")]).await,
        403,
        "unknown key"
    );
    assert_eq!(status(&node, "", &[("x-api-key", "fast-key")]).await, 101);
    // The slow key's connections get its rate: one message, then "Too many requests".
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        ws_url(&node, "/"),
    )
    .expect("request");
    req.headers_mut()
        .insert("x-api-key", "slow-key".parse().expect("value"));
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("admitted");
    send_text(&mut ws, "one").await;
    send_text(&mut ws, "two").await;
    assert_eq!(next_message(&mut ws).await, Message::text("one"));
    assert_eq!(next_json(&mut ws).await["message"], "Too many requests");
    node.shutdown().await;
}

#[test]
fn authorizer_configuration_errors_name_their_key() {
    let key = |toml: &str| {
        gangway::GatewayConfig::from_toml_str(toml)
            .expect_err("invalid")
            .problems
            .iter()
            .map(|p| p.key.clone())
            .collect::<Vec<_>>()
    };
    assert!(
        key("[authorizer]\ntype = \"jwt\"\nalgorithms = [\"HS999\"]\n")
            .contains(&"authorizer.algorithms[0]".to_string())
    );
    assert!(key(
        "[authorizer]\ntype = \"jwt\"\nalgorithms = [\"RS256\"]\npublic_keys = [\"nope\"]\n"
    )
    .contains(&"authorizer.public_keys[0]".to_string()));
    assert!(
        key("[authorizer]\ntype = \"jwt\"\nalgorithms = [\"HS256\"]\nsecret = \"short\"\n")
            .contains(&"authorizer.secret".to_string())
    );
    assert!(key("[authorizer]\ntype = \"magic\"\n").contains(&"authorizer.type".to_string()));
    assert!(key("[api]\napi_key_required = true\n").contains(&"api.api_key_required".to_string()));
    assert!(key("[[api.keys]]\nsha256 = \"xyz\"\n").contains(&"api.keys[0].sha256".to_string()));
}

#[tokio::test]
async fn rsa_pss_and_eddsa_keys_verify_their_own_algorithms() {
    let dir = scratch_dir("jwt-algs");
    let (rsa_private, rsa_public) = key_pair(
        &dir,
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let (ed_private, ed_public) = key_pair(&dir, "ed", &["-algorithm", "ed25519"]);
    let rsa = EncodingKey::from_rsa_pem(&rsa_private).expect("rsa");
    let ed = EncodingKey::from_ed_pem(&ed_private).expect("ed");
    let node = node(&format!(
        "[routes.\"$default\"]\nintegration = \"mock\"\n\
         [authorizer]\ntype = \"jwt\"\ntoken_source = \"query:t\"\nalgorithms = [\"RS256\", \"PS256\", \"EdDSA\"]\n\
         public_keys = ['''{rsa_public}''', '''{ed_public}''']\n"
    ))
    .await;
    let c = claims(serde_json::json!({}));
    for (alg, key) in [
        (Algorithm::RS256, &rsa),
        (Algorithm::PS256, &rsa),
        (Algorithm::EdDSA, &ed),
    ] {
        let t = sign(alg, key, &c);
        assert_eq!(status(&node, &format!("?t={t}"), &[]).await, 101, "{alg:?}");
    }
    // An algorithm the authorizer does not list, with a key it has: refused.
    let t = sign(Algorithm::RS384, &rsa, &c);
    assert_eq!(status(&node, &format!("?t={t}"), &[]).await, 401);
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_request_authorizer_speaks_aws_contract_and_caches_by_identity() {
    let allow = |ctx: &str| {
        Reply::ok(format!(
            r#"{{"principalId": "p-1", "policyDocument": {{"Version": "2012-10-17", "Statement": [
                {{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "arn:aws:execute-api:*:*:gangway/prod/*"}}]}},
                "context": {ctx}}}"#
        ))
    };
    let backend = Backend::with(move |call, _| {
        if call.path != "/authorize" {
            return Reply::ok("");
        }
        let h = &call.event["headers"];
        match h["auth"].as_str().or(h["Auth"].as_str()).unwrap_or("") {
            "good" => allow(r#"{"tier": "gold", "seats": 3}"#),
            "deny" => Reply::ok(
                r#"{"principalId": "p-2", "policyDocument": {"Statement": [{"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": "*"}]}}"#,
            ),
            "unauthorized" => Reply::status(401),
            "lambda-unauthorized" => Reply::ok(r#"{"errorMessage": "Unauthorized"}"#),
            "nested" => allow(r#"{"bad": {"nested": true}}"#),
            "slow" => allow("{}").after(std::time::Duration::from_secs(3)),
            _ => Reply::ok("<html>not json</html>"),
        }
    })
    .await;
    let node = node(&format!(
        "{}[authorizer]\ntype = \"request\"\nurl = \"{}\"\n\
         identity_sources = [\"route.request.header.Auth\"]\nttl_secs = 60\ntimeout_ms = 1000\n",
        backend_routes(&backend),
        backend.url("/authorize")
    ))
    .await;
    let authorize_calls = || {
        backend
            .calls()
            .iter()
            .filter(|c| c.path == "/authorize")
            .count()
    };

    // Missing identity source: 401 without a call.
    assert_eq!(status(&node, "", &[]).await, 401);
    assert_eq!(authorize_calls(), 0);
    // Allowed: the event is AWS's, the context reaches $connect.
    assert_eq!(status(&node, "", &[("Auth", "good")]).await, 101);
    let call = backend
        .calls()
        .into_iter()
        .find(|c| c.path == "/authorize")
        .expect("called");
    assert_eq!(call.event["type"], "REQUEST");
    assert_eq!(
        call.event["methodArn"],
        "arn:aws:execute-api:us-east-1:000000000000:gangway/prod/$connect"
    );
    assert_eq!(call.event["requestContext"]["routeKey"], "$connect");
    assert!(call.event["requestContext"]["connectionId"].is_string());
    let connect = backend
        .wait_for("the $connect call", |c| {
            c.iter().any(|c| c.path == "/connect")
        })
        .await
        .into_iter()
        .find(|c| c.path == "/connect")
        .expect("$connect");
    let auth = &connect.event["requestContext"]["authorizer"];
    assert_eq!(
        (auth["principalId"].as_str(), auth["tier"].as_str()),
        (Some("p-1"), Some("gold"))
    );
    assert_eq!(auth["seats"], 3);
    // The same identity again: served from the cache.
    assert_eq!(status(&node, "", &[("Auth", "good")]).await, 101);
    assert_eq!(authorize_calls(), 1);
    // Refusals: Deny 403, Unauthorized 401 (status or Lambda's error), anything malformed,
    // slow or non-JSON 500 — and never a $connect call.
    for (auth, want) in [
        ("deny", 403),
        ("unauthorized", 401),
        ("lambda-unauthorized", 401),
        ("nested", 500),
        ("slow", 500),
        ("garbage", 500),
    ] {
        assert_eq!(status(&node, "", &[("Auth", auth)]).await, want, "{auth}");
    }
    assert_eq!(
        backend
            .calls()
            .iter()
            .filter(|c| c.path == "/connect")
            .count(),
        2,
        "only the two admitted connections reached $connect"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn jwks_keys_are_fetched_for_new_kids_rate_limited_and_kept_when_the_url_fails() {
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::Arc;
    let dir = scratch_dir("jwks");
    let (private, _) = key_pair(
        &dir,
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let out = Command::new("openssl")
        .args([
            "rsa",
            "-in",
            dir.join("rsa.key").to_str().expect("path"),
            "-noout",
            "-modulus",
        ])
        .output()
        .expect("openssl");
    let modulus = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("Modulus=")
        .to_string();
    let n = base64_url(&hex::decode(modulus).expect("hex"));
    let jwks = format!(
        r#"{{"keys": [{{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig", "n": "{n}", "e": "AQAB"}}]}}"#
    );
    // 0: the key set; 1: down (500); 2: garbage.
    let mode = Arc::new(AtomicU8::new(0));
    let m = Arc::clone(&mode);
    let backend =
        Backend::with(
            move |call, _| match (call.path.as_str(), m.load(Ordering::SeqCst)) {
                ("/jwks", 0) => Reply::ok(jwks.clone()),
                ("/jwks", 1) => Reply::status(500),
                ("/jwks", _) => Reply::ok("{\"keys\": \"nope\"}"),
                _ => Reply::ok(""),
            },
        )
        .await;
    let config = format!(
        "[routes.\"$default\"]\nintegration = \"mock\"\n\
         [authorizer]\ntype = \"jwt\"\ntoken_source = \"query:t\"\nalgorithms = [\"RS256\"]\njwks_url = \"{}\"\n",
        backend.url("/jwks")
    );
    let node = node(&config).await;
    let fetches = || backend.calls().iter().filter(|c| c.path == "/jwks").count();
    let key = EncodingKey::from_rsa_pem(&private).expect("key");
    let token = |kid: &str| {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some(kid.into());
        encode(&h, &claims(serde_json::json!({})), &key).expect("sign")
    };
    assert_eq!(
        status(&node, &format!("?t={}", token("k1")), &[]).await,
        101
    );
    assert_eq!(fetches(), 1);
    assert_eq!(
        status(&node, &format!("?t={}", token("k1")), &[]).await,
        101
    );
    assert_eq!(fetches(), 1, "a known kid needs no fetch");
    // An unknown kid right after a fetch: refused without another fetch (rate limit).
    assert_eq!(
        status(&node, &format!("?t={}", token("k9")), &[]).await,
        401
    );
    assert_eq!(fetches(), 1);
    // The URL goes down: the last good set keeps serving.
    mode.store(1, Ordering::SeqCst);
    assert_eq!(
        status(&node, &format!("?t={}", token("k1")), &[]).await,
        101
    );
    node.shutdown().await;

    // A node whose key set is garbage admits nobody, and does not fall over.
    mode.store(2, Ordering::SeqCst);
    let node = crate::support::node(&config).await;
    assert_eq!(
        status(&node, &format!("?t={}", token("k1")), &[]).await,
        401
    );
    assert_eq!(status(&node, "", &[]).await, 401);
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
