//! Hostile and clumsy clients: every bad request is a clear `4xx` in the error envelope, never a
//! `5xx` or a panic. NUL characters, crafted cursors, extreme timestamps, contention on one
//! configuration, scope before body, security headers and download dispositions.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::configurations::{create, created_id, statement_config};
use crate::harness::{self, TestApp, MERCHANT_A};

/// A change made to a valid configuration body.
type Change = Box<dyn Fn(&mut Value)>;

/// `422 VALIDATION_FAILED` whose first detail names `field`.
async fn assert_field(response: reqwest::Response, field: &str, case: &str) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{case}: {body}");
    assert_eq!(body["error"]["code"], "VALIDATION_FAILED", "{case}: {body}");
    assert_eq!(
        body["error"]["details"][0]["field"], field,
        "{case}: {body}"
    );
}

#[tokio::test]
async fn nul_characters_anywhere_are_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    const NUL: &str = "a\u{0}b";
    let nul = NUL;
    let cases: Vec<(&str, Change)> = vec![
        ("name", Box::new(|b| b["name"] = json!(NUL))),
        ("description", Box::new(|b| b["description"] = json!(NUL))),
        (
            "documents[1].template",
            Box::new(|b| b["documents"][1]["template"] = json!(NUL)),
        ),
        (
            "defaults.period",
            Box::new(|b| b["defaults"]["period"] = json!(NUL)),
        ),
        (
            "defaults.a\\u0000b",
            Box::new(|b| b["defaults"][NUL] = json!(1)),
        ),
        (
            "dataSchema.properties.period.description",
            Box::new(|b| b["dataSchema"]["properties"]["period"]["description"] = json!(NUL)),
        ),
        ("triggers[0]", Box::new(|b| b["triggers"][0] = json!(NUL))),
    ];
    for (field, change) in &cases {
        let mut body = statement_config("NUL");
        change(&mut body);
        assert_field(create(&app, &token, &body).await, field, field).await;
    }

    // Query filters and path parameters.
    for path in [
        "/api/v1/configurations?name=%00",
        "/api/v1/configurations?name=ok%00",
        "/api/v1/bundles?status=%00",
    ] {
        let response = app
            .http
            .get(app.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
    }
    let response = app
        .http
        .get(app.url("/api/v1/configurations/ab%00cd"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    harness::assert_envelope(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    // A seed.
    let created: Value = create(&app, &token, &statement_config("Seeds"))
        .await
        .json()
        .await
        .unwrap();
    let response = app
        .launch(
            &token,
            &json!({"configurationId": created["id"], "seed": {"merchant": {"name": nul}, "period": "x"}}),
        )
        .await;
    assert_field(response, "seed.merchant.name", "seed").await;

    // A lone surrogate is not JSON text: 400.
    let response = app
        .http
        .post(app.url("/api/v1/configurations"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"name": "\ud800"}"#)
        .send()
        .await
        .unwrap();
    harness::assert_envelope(response, StatusCode::BAD_REQUEST, "INVALID_JSON").await;
}

#[tokio::test]
async fn signed_webhooks_with_nul_or_extreme_timestamps_get_a_4xx() {
    let app = TestApp::spawn().await;
    let (id, secret) = crate::inbound_webhooks::new_source(&app, MERCHANT_A).await;
    let (id, secret) = (id.as_str(), secret.as_str());
    let send = |body: String, timestamp: String| {
        let signature = docbundle::domain::inbound::sign(secret, "msg_1", 0, body.as_bytes());
        let signature = match timestamp.parse::<i64>() {
            Ok(ts) => docbundle::domain::inbound::sign(secret, "msg_1", ts, body.as_bytes()),
            Err(_) => signature,
        };
        app.http
            .post(app.url(&format!("/api/v1/webhooks/{id}")))
            .header("content-type", "application/json")
            .header("webhook-id", "msg_1")
            .header("webhook-timestamp", timestamp)
            .header("webhook-signature", signature.unwrap())
            .body(body)
            .send()
    };
    let now = chrono::Utc::now().timestamp().to_string();
    for body in [
        json!({"type": "statement\u{0}closed", "data": {}}),
        json!({"type": "statement.closed", "data": {"merchant": "\u{0}"}}),
    ] {
        let response = send(body.to_string(), now.clone()).await.unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
    }
    for extreme in ["-9223372036854775808", "9223372036854775807"] {
        let response = send(json!({"type": "x", "data": {}}).to_string(), extreme.into())
            .await
            .unwrap();
        harness::assert_envelope(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    }
}

#[tokio::test]
async fn crafted_cursors_are_422() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let admin = harness::token("platform-admin").await;
    use base64::Engine;
    let craft = |t: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({"t": t, "id": "11111111-1111-4111-8111-111111111111"}).to_string())
    };
    let cursors = [
        craft("-200000-01-01T00:00:00Z"),
        craft("+200000-01-01T00:00:00Z"),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"t": 5, "id": []}"#),
        "%%%".to_owned(),
        "A".repeat(5000),
    ];
    for cursor in &cursors {
        for (path, token) in [
            ("/api/v1/configurations", &token),
            ("/api/v1/bundles", &token),
            ("/api/v1/merchants", &admin),
        ] {
            let response = app
                .http
                .get(app.url(path))
                .query(&[("cursor", cursor.as_str())])
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path} {cursor}: {body}"
            );
        }
    }
}

#[tokio::test]
async fn fifty_conflicting_updates_answer_one_200_and_forty_nine_412() {
    // About conflicting writes, not the pool's size: every writer may wait for a connection
    // as long as it needs (by default one that waits more than `DATABASE_TIMEOUT_MS` is
    // answered `503` with `Retry-After`, as a debug build under a parallel suite can be).
    let app =
        TestApp::spawn_with(|s| s.database_timeout = std::time::Duration::from_secs(20)).await;
    let token = harness::token("merchant-a").await;
    let id = created_id(&app, &token, &statement_config("Contended")).await;
    let url = app.url(&format!("/api/v1/configurations/{id}"));
    let updates = (0..50).map(|i| {
        let request = app
            .http
            .put(&url)
            .bearer_auth(&token)
            .header("if-match", "\"v1\"")
            .json(&statement_config(&format!("Writer {i}")));
        async move { request.send().await.unwrap().status() }
    });
    let statuses = futures::future::join_all(updates).await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let stale = statuses
        .iter()
        .filter(|s| **s == StatusCode::PRECONDITION_FAILED)
        .count();
    assert_eq!((ok, stale), (1, 49), "{statuses:?}");
}

#[tokio::test]
async fn scope_is_checked_before_the_body_is_read() {
    let app = TestApp::spawn().await;
    let reader = harness::token("merchant-a-reader").await;
    for (path, body) in [
        ("/api/v1/configurations", "{not json"),
        ("/api/v1/configurations", r#"{"name": 5}"#),
        ("/api/v1/bundles", "{not json"),
        ("/api/v1/merchants", r#"{"unknown": true}"#),
    ] {
        let response = app
            .http
            .post(app.url(path))
            .bearer_auth(&reader)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        harness::assert_envelope(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    }
}

#[tokio::test]
async fn answers_are_uncacheable_and_downloads_are_attachments() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    for (path, auth) in [
        ("/api/v1/configurations", true),
        ("/api/v1/configurations", false),
        ("/api/v1/nowhere", true),
    ] {
        let mut request = app.http.get(app.url(path));
        if auth {
            request = request.bearer_auth(&token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    }
    let response = app
        .http
        .post(app.url(&format!("/api/v1/webhooks/{}", uuid::Uuid::new_v4())))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store");

    let id = created_id(&app, &token, &statement_config("Downloads")).await;
    let launched: Value = app
        .launch(&token, &json!({"configurationId": id}))
        .await
        .json()
        .await
        .unwrap();
    let run = app
        .run_to_end(&token, launched["id"].as_str().unwrap())
        .await;
    assert_eq!(run["status"], "completed", "{run}");
    let html = run["artefacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "statement.html")
        .unwrap();
    let download = reqwest::get(html["downloadUrl"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(
        download.headers()["content-disposition"],
        "attachment; filename=\"statement.html\""
    );
    assert_eq!(
        download.headers()["content-type"],
        "text/html; charset=utf-8"
    );
}

/// The public OpenAPI document: whatever a client sends along, the same document or a clear
/// `4xx`; a body, a garbage token or odd query bytes change nothing.
#[tokio::test]
async fn the_openapi_document_ignores_what_it_does_not_read() {
    let app = TestApp::spawn().await;
    let issuer = &app.state.settings.auth.issuer;
    let served = docbundle::http::openapi::for_issuer(&docbundle_local::openapi_json(), issuer);
    let expected: Value = serde_json::from_str(&served).unwrap();
    // Served, the token URL is the deployment's issuer's.
    assert_eq!(
        expected["components"]["securitySchemes"]["oauth2"]["flows"]["clientCredentials"]
            ["tokenUrl"],
        format!("{issuer}/protocol/openid-connect/token")
    );
    for (case, url, token) in [
        ("plain", "/api/v1/openapi.json", None),
        ("a NUL in the query", "/api/v1/openapi.json?%00=%00", None),
        (
            "a huge query",
            &*format!("/api/v1/openapi.json?q={}", "x".repeat(6000)),
            None,
        ),
        (
            "a garbage token",
            "/api/v1/openapi.json",
            Some("garbage-\u{e9}-not.a.token"),
        ),
    ] {
        let mut request = app.http.get(app.url(url));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{case}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{case}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, expected, "{case}");
    }
    let response = app
        .http
        .post(app.url("/api/v1/openapi.json"))
        .body("x".repeat(100_000))
        .send()
        .await
        .unwrap();
    harness::assert_envelope(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    )
    .await;
}
