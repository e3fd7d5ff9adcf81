//! Authentication and authorisation with real tokens: from the issuer, and crafted ones the
//! issuer would never issue.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use docbundle::config::AuthMode;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::harness::{self, TestApp};

async fn get_configurations(app: &TestApp, token: &str) -> reqwest::Response {
    app.http
        .get(app.url("/api/v1/configurations"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn assert_invalid_token(app: &TestApp, token: &str, case: &str) {
    let response = get_configurations(app, token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{case}: {challenge}"
    );
    harness::assert_envelope(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[tokio::test]
async fn crafted_valid_tokens_pass_and_every_bad_token_is_401() {
    let app = TestApp::spawn().await;
    let now = chrono::Utc::now().timestamp();
    let (_, kid) = harness::issuer_key();

    // Control: a correctly signed token with good claims is accepted.
    let good = harness::sign_as_issuer(&harness::valid_claims());
    assert_eq!(
        get_configurations(&app, &good).await.status(),
        StatusCode::OK
    );

    let mut expired = harness::valid_claims();
    expired.insert("exp".into(), json!(now - 3600));
    expired.insert("iat".into(), json!(now - 7200));
    assert_invalid_token(&app, &harness::sign_as_issuer(&expired), "expired").await;

    let mut not_yet = harness::valid_claims();
    not_yet.insert("nbf".into(), json!(now + 3600));
    assert_invalid_token(&app, &harness::sign_as_issuer(&not_yet), "not yet valid").await;

    let mut wrong_issuer = harness::valid_claims();
    wrong_issuer.insert("iss".into(), json!("http://127.0.0.1:8080/realms/other"));
    assert_invalid_token(
        &app,
        &harness::sign_as_issuer(&wrong_issuer),
        "wrong issuer",
    )
    .await;

    let mut wrong_audience = harness::valid_claims();
    wrong_audience.insert("aud".into(), json!("some-other-api"));
    assert_invalid_token(
        &app,
        &harness::sign_as_issuer(&wrong_audience),
        "wrong audience",
    )
    .await;

    let mut no_audience = harness::valid_claims();
    no_audience.remove("aud");
    assert_invalid_token(&app, &harness::sign_as_issuer(&no_audience), "no aud").await;

    let mut no_exp = harness::valid_claims();
    no_exp.remove("exp");
    assert_invalid_token(&app, &harness::sign_as_issuer(&no_exp), "no exp").await;

    // Signed by another key under the issuer's kid.
    let foreign = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/foreign-rsa-key.pem"
    ))
    .unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.clone());
    let wrongly_signed = jsonwebtoken::encode(
        &header,
        &harness::valid_claims(),
        &jsonwebtoken::EncodingKey::from_rsa_pem(&foreign).unwrap(),
    )
    .unwrap();
    assert_invalid_token(&app, &wrongly_signed, "wrong signature").await;

    // Unknown kid, correctly signed otherwise.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("no-such-key".into());
    let (pem, _) = harness::issuer_key();
    let unknown_kid = jsonwebtoken::encode(
        &header,
        &harness::valid_claims(),
        &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap();
    assert_invalid_token(&app, &unknown_kid, "unknown kid").await;

    // alg: none, no signature.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
        b64(&Value::Object(harness::valid_claims()))
    );
    assert_invalid_token(&app, &none, "alg none").await;

    // HS256 keyed with the issuer's public key material (the classic RS/HS confusion).
    let jwks: Value = reqwest::get(format!(
        "{}/protocol/openid-connect/certs",
        app.state.settings.auth.issuer
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let public = serde_json::to_vec(&jwks["keys"][0]).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.clone());
    let confused = jsonwebtoken::encode(
        &header,
        &harness::valid_claims(),
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert_invalid_token(&app, &confused, "HS/RS confusion").await;

    assert_invalid_token(&app, "not-a-jwt", "malformed").await;
    let mut tampered = good.clone();
    tampered.insert(good.len() / 2, 'x');
    assert_invalid_token(&app, &tampered, "tampered").await;

    // Wrong scheme and missing header.
    let response = app
        .http
        .get(app.url("/api/v1/configurations"))
        .header("authorization", format!("Basic {good}"))
        .send()
        .await
        .unwrap();
    harness::assert_envelope(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let response = app
        .http
        .get(app.url("/api/v1/configurations"))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("www-authenticate"));
    harness::assert_envelope(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
}

#[tokio::test]
async fn missing_scopes_are_403() {
    let app = TestApp::spawn().await;
    let reader = harness::token("merchant-a-reader").await;
    assert_eq!(
        get_configurations(&app, &reader).await.status(),
        StatusCode::OK
    );
    let response = app
        .http
        .post(app.url("/api/v1/configurations"))
        .bearer_auth(&reader)
        .json(&json!({"name": "x", "documents": [{"name": "a.txt", "format": "txt", "template": "x"}]}))
        .send()
        .await
        .unwrap();
    let body = harness::assert_envelope(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("config.write"));

    let merchant = harness::token("merchant-a").await;
    let response = app
        .http
        .get(app.url("/api/v1/merchants"))
        .bearer_auth(&merchant)
        .send()
        .await
        .unwrap();
    harness::assert_envelope(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;

    let admin = harness::token("platform-admin").await;
    let response = app
        .http
        .get(app.url("/api/v1/merchants"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn jwks_are_cached_in_redis() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    assert_eq!(
        get_configurations(&app, &token).await.status(),
        StatusCode::OK
    );
    let key = format!(
        "docbundle:jwks:{}",
        docbundle::domain::digest::sha256_hex(app.state.settings.auth.issuer.as_bytes())
    );
    let cached = app
        .state
        .cache
        .get(&key)
        .await
        .unwrap()
        .expect("JWKS cached in Redis");
    assert!(cached.contains("\"keys\""));
    let ttl = app.state.cache.ttl(&key).await.unwrap().unwrap();
    assert!(ttl <= app.state.settings.auth.jwks_cache_ttl.as_secs());
}

#[tokio::test]
async fn introspection_answers_are_cached_in_redis_for_at_most_the_token_lifetime() {
    let app = TestApp::spawn_with(|s| {
        s.auth.mode = AuthMode::Introspection;
        s.auth.introspection_cache_max = Duration::from_secs(120);
    })
    .await;
    let token = harness::token("merchant-a").await;
    assert_eq!(harness::introspections_of(&token).await, 0);
    for _ in 0..3 {
        assert_eq!(
            get_configurations(&app, &token).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        harness::introspections_of(&token).await,
        1,
        "the second and third requests are served from Redis"
    );
    let key = docbundle::http::auth::introspection::cache_key(&token);
    assert!(
        !key.contains(&token),
        "the token itself is never a cache key"
    );
    let ttl = app
        .state
        .cache
        .ttl(&key)
        .await
        .unwrap()
        .expect("cached with a TTL");
    assert!(
        (1..=120).contains(&ttl),
        "capped by the configured maximum: {ttl}"
    );

    // A token with 20 s left is cached for at most 20 s.
    let mut short = harness::valid_claims();
    short.insert("exp".into(), json!(chrono::Utc::now().timestamp() + 20));
    let short = harness::sign_as_issuer(&short);
    assert_eq!(
        get_configurations(&app, &short).await.status(),
        StatusCode::OK
    );
    let ttl = app
        .state
        .cache
        .ttl(&docbundle::http::auth::introspection::cache_key(&short))
        .await
        .unwrap()
        .expect("cached");
    assert!(ttl <= 20, "{ttl}");

    // An inactive (expired) token is refused.
    let mut expired = harness::valid_claims();
    expired.insert("exp".into(), json!(chrono::Utc::now().timestamp() - 10));
    let response = get_configurations(&app, &harness::sign_as_issuer(&expired)).await;
    harness::assert_envelope(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
}

/// A Redis of this test's own, stopped mid-test: requests keep succeeding without the cache.
#[tokio::test]
async fn redis_going_down_degrades_to_no_cache() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut redis = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server");
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for mode in [AuthMode::Introspection, AuthMode::Jwks] {
        let app = TestApp::spawn_with(|s| {
            s.auth.mode = mode;
            s.redis_url = format!("redis://127.0.0.1:{port}");
        })
        .await;
        let token = harness::token("merchant-a").await;
        assert_eq!(
            get_configurations(&app, &token).await.status(),
            StatusCode::OK,
            "{mode:?} with Redis"
        );
        if mode == AuthMode::Introspection {
            let key = docbundle::http::auth::introspection::cache_key(&token);
            assert!(
                app.state.cache.get(&key).await.unwrap().is_some(),
                "cached while Redis is up"
            );
            let _ = redis.kill();
            let _ = redis.wait();
        }
        let started = std::time::Instant::now();
        assert_eq!(
            get_configurations(&app, &token).await.status(),
            StatusCode::OK,
            "{mode:?} without Redis"
        );
        let fresh = harness::token("merchant-b").await;
        assert_eq!(
            get_configurations(&app, &fresh).await.status(),
            StatusCode::OK,
            "{mode:?} new token without Redis"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no long stalls on a dead Redis"
        );
    }
    let _ = redis.kill();
    let _ = redis.wait();
}

/// `OIDC_ENDPOINT_URL`: the issuer reached at another address than its `iss` (a private
/// endpoint; the local issuer from a container), tokens still checked against the `iss`.
#[tokio::test]
async fn the_issuer_is_reached_through_its_endpoint_url() {
    // Through an address where nothing listens: the issuer is out of reach, whatever `iss` says.
    let app = TestApp::spawn_with(|s| {
        s.auth.mode = AuthMode::Introspection;
        s.auth.endpoint = "http://127.0.0.1:9/realms/docbundle".into();
    })
    .await;
    let token = harness::token("merchant-a").await;
    let response = get_configurations(&app, &token).await;
    harness::assert_envelope(response, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE").await;
    assert_eq!(harness::introspections_of(&token).await, 0);

    // Through another name for the issuer: introspected there, accepted.
    let app = TestApp::spawn_with(|s| {
        s.auth.mode = AuthMode::Introspection;
        s.auth.endpoint = s.auth.issuer.replace("127.0.0.1", "localhost");
        assert_ne!(s.auth.endpoint, s.auth.issuer);
    })
    .await;
    assert_eq!(
        get_configurations(&app, &token).await.status(),
        StatusCode::OK
    );
    assert_eq!(harness::introspections_of(&token).await, 1);
}
