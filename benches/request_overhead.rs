//! Per-request cost of our own code on the HTTP path, with warm caches: request-id layer,
//! bearer-token verification (JWKS mode, keys cached in memory), scope check, JSON body
//! parsing, and the error envelope. Needs the local stack (`./dev services`) for the first
//! JWKS fetch only. Run: `cargo bench --bench request_overhead`.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use axum::routing::post;
use axum::Router;
use docbundle::domain::Scope;
use docbundle::error::ApiError;
use docbundle::http::auth::Principal;
use docbundle::http::{finish_router, ApiJson};
use docbundle::{AppState, Settings};
use serde::Deserialize;
use tower::ServiceExt;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Launch {
    #[serde(rename = "configurationId")]
    configuration_id: uuid::Uuid,
    seed: serde_json::Value,
}

async fn handler(principal: Principal, ApiJson(body): ApiJson<Launch>) -> Result<String, ApiError> {
    principal.require(Scope::BundleWrite)?;
    Ok(body.configuration_id.to_string())
}

fn load_env() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/stack/local.env");
    docbundle_local::load_env_file(std::path::Path::new(path)).expect("stack/local.env");
}

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    (p(0.5), p(0.9), p(0.99))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    load_env();
    let settings = Settings::from_env().expect("settings");
    let issuer = settings.auth.issuer.clone();
    let state = AppState::build(settings).await.expect("state");
    let app: Router = finish_router(
        Router::new()
            .route("/bench", post(handler))
            .with_state(state),
        1 << 20,
    );
    let token: serde_json::Value = reqwest::Client::new()
        .post(format!("{issuer}/protocol/openid-connect/token"))
        .basic_auth("merchant-a", Some("merchant-a-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("issuer up (./dev services)")
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let ok_body = r#"{"configurationId":"9b2f6a0e-3c1d-4e5f-8a7b-6c5d4e3f2a1b","seed":{"merchant":{"name":"Acme"},"lines":[1,2,3]}}"#;
    let bad_body =
        r#"{"configurationId":"9b2f6a0e-3c1d-4e5f-8a7b-6c5d4e3f2a1b","seed":{},"extra":1}"#;

    let request = |body: &'static str| {
        Request::post("/bench")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    // Warm up: the first call fetches the JWKS.
    let first = app.clone().oneshot(request(ok_body)).await.unwrap();
    assert_eq!(first.status(), 200);

    for (label, body, expected) in [
        ("accepted (200)", ok_body, 200u16),
        ("rejected body (422 envelope)", bad_body, 422),
    ] {
        let mut samples = Vec::with_capacity(20_000);
        for _ in 0..20_000 {
            let req = request(body);
            let started = Instant::now();
            let response = app.clone().oneshot(req).await.unwrap();
            let status = response.status().as_u16();
            let _ = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            samples.push(started.elapsed());
            assert_eq!(status, expected, "{label}");
        }
        let (p50, p90, p99) = stats(samples);
        println!(
            "request overhead, {label}: p50 {:.1} µs  p90 {:.1} µs  p99 {:.1} µs  (20000 requests, RS256 JWT, warm key cache)",
            p50.as_secs_f64() * 1e6,
            p90.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6
        );
    }
}
