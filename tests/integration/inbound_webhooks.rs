//! Inbound webhooks end to end: sources and secrets, verification, launches, deduplication.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::configurations::{create, statement_config};
use crate::harness::{self, TestApp, MERCHANT_A, MERCHANT_B};

/// A new webhook source of `merchant`: `(id, secret)`.
pub async fn new_source(app: &TestApp, merchant: &str) -> (String, String) {
    let admin = harness::token("platform-admin").await;
    let response = app
        .http
        .post(app.url(&format!("/api/v1/merchants/{merchant}/webhook-sources")))
        .bearer_auth(&admin)
        .json(&json!({"name": "billing system"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    (
        body["id"].as_str().unwrap().to_owned(),
        body["secret"].as_str().unwrap().to_owned(),
    )
}

async fn deliver(
    app: &TestApp,
    source: &str,
    secret: &str,
    id: &str,
    body: &str,
    timestamp: i64,
) -> reqwest::Response {
    let signature =
        docbundle::domain::inbound::sign(secret, id, timestamp, body.as_bytes()).unwrap();
    app.http
        .post(app.url(&format!("/api/v1/webhooks/{source}")))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn event(kind: &str) -> String {
    json!({"type": kind, "data": {"merchant": {"name": "Acme GmbH"}, "period": "2026-10", "lines": []}}).to_string()
}

async fn triggered_config(app: &TestApp, token: &str, name: &str, trigger: &str) -> String {
    let mut body = statement_config(name);
    body["triggers"] = json!([trigger]);
    let created: Value = create(app, token, &body).await.json().await.unwrap();
    created["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn sources_hand_out_their_secret_once_and_keep_it_out_of_postgres() {
    let app = TestApp::spawn().await;
    let (id, secret) = new_source(&app, MERCHANT_A).await;
    assert!(secret.starts_with("whsec_"));
    let conn = app.state.db.get().await.unwrap();
    for table in ["webhook_sources", "webhook_events"] {
        let rows = conn
            .query(&format!("SELECT row_to_json(t)::text FROM {table} t"), &[])
            .await
            .unwrap();
        for row in rows {
            assert!(
                !row.get::<_, String>(0).contains(&secret[6..]),
                "secret stored in {table}"
            );
        }
    }
    let admin = harness::token("platform-admin").await;
    let list: Value = app
        .get_json(
            &format!("/api/v1/merchants/{MERCHANT_A}/webhook-sources"),
            &admin,
        )
        .await;
    assert_eq!(list["items"][0]["id"], id.as_str());
    assert!(list["items"][0].get("secret").is_none());
    assert!(!list.to_string().contains(&secret[6..]));

    let merchant = harness::token("merchant-a").await;
    let response = app
        .http
        .post(app.url(&format!("/api/v1/merchants/{MERCHANT_A}/webhook-sources")))
        .bearer_auth(&merchant)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    harness::assert_envelope(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let response = app
        .http
        .post(app.url(&format!(
            "/api/v1/merchants/{}/webhook-sources",
            Uuid::new_v4()
        )))
        .bearer_auth(&admin)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    harness::assert_envelope(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

#[tokio::test]
async fn a_signed_event_launches_every_matching_configuration_once() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let first = triggered_config(&app, &token, "Statement", "statement.period_closed").await;
    let second = triggered_config(&app, &token, "Invoice", "statement.period_closed").await;
    let _other = triggered_config(&app, &token, "Onboarding", "merchant.created").await;
    let mut strict = statement_config("Strict");
    strict["triggers"] = json!(["statement.period_closed"]);
    strict["dataSchema"]["required"] = json!(["merchant", "period", "accountNumber"]);
    strict["defaults"]["accountNumber"] = json!("DE00");
    let strict: Value = create(&app, &token, &strict).await.json().await.unwrap();
    let (source, secret) = new_source(&app, MERCHANT_A).await;

    let body = event("statement.period_closed");
    let response = deliver(&app, &source, &secret, "msg_1", &body, now()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let answer: Value = response.json().await.unwrap();
    let runs: Vec<String> = answer["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(runs.len(), 2);
    assert_eq!(answer["skipped"][0]["configurationId"], strict["id"]);
    assert!(answer["skipped"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("dataSchema"));
    assert!(answer["eventId"].is_string());

    let mut launched_configs = Vec::new();
    for run in &runs {
        let done = app.run_to_end(&token, run).await;
        assert_eq!(done["status"], "completed");
        assert_eq!(done["triggeredByType"], "webhook");
        assert_eq!(done["triggeredById"], "msg_1");
        launched_configs.push(done["configurationId"].as_str().unwrap().to_owned());
    }
    launched_configs.sort();
    let mut expected = vec![first, second];
    expected.sort();
    assert_eq!(launched_configs, expected);

    // The same event again, later: the same answer, nothing new.
    let again = deliver(&app, &source, &secret, "msg_1", &body, now()).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.json::<Value>().await.unwrap(), answer);

    // Twice at once with a new id: one set of runs.
    let (a, b) = tokio::join!(
        deliver(&app, &source, &secret, "msg_2", &body, now()),
        deliver(&app, &source, &secret, "msg_2", &body, now())
    );
    let (a, b): (Value, Value) = (a.json().await.unwrap(), b.json().await.unwrap());
    assert_eq!(a, b);
    let conn = app.state.db.get().await.unwrap();
    let count: i64 = conn
        .query_one(
            "SELECT count(*) FROM bundle_runs WHERE triggered_by_type = 'webhook'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 4, "two events, two runs each");
    let events: i64 = conn
        .query_one(
            "SELECT count(*) FROM webhook_events WHERE status = 'processed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 2);
}

#[tokio::test]
async fn every_failed_check_is_a_401_that_says_which() {
    let app = TestApp::spawn().await;
    let (source, secret) = new_source(&app, MERCHANT_A).await;
    let body = event("statement.period_closed");
    let url = app.url(&format!("/api/v1/webhooks/{source}"));
    let signature =
        docbundle::domain::inbound::sign(&secret, "msg_x", now(), body.as_bytes()).unwrap();
    let ts = now().to_string();

    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no id",
            vec![
                ("webhook-timestamp", ts.clone()),
                ("webhook-signature", signature.clone()),
            ],
            "webhook-id",
        ),
        (
            "no timestamp",
            vec![
                ("webhook-id", "msg_x".into()),
                ("webhook-signature", signature.clone()),
            ],
            "webhook-timestamp",
        ),
        (
            "no signature",
            vec![
                ("webhook-id", "msg_x".into()),
                ("webhook-timestamp", ts.clone()),
            ],
            "webhook-signature",
        ),
        (
            "wrong id",
            vec![
                ("webhook-id", "msg_y".into()),
                ("webhook-timestamp", ts.clone()),
                ("webhook-signature", signature.clone()),
            ],
            "signature",
        ),
    ];
    for (case, headers, says) in cases {
        let mut request = app.http.post(&url).body(body.clone());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        let envelope =
            harness::assert_envelope(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        let message = envelope["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{case}: {message}");
        assert!(!message.contains(&secret[6..]));
    }
    let stale = deliver(&app, &source, &secret, "msg_old", &body, now() - 600).await;
    let envelope = harness::assert_envelope(stale, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert!(envelope["error"]["message"]
        .as_str()
        .unwrap()
        .contains("timestamp"));
    let future = deliver(&app, &source, &secret, "msg_future", &body, now() + 600).await;
    harness::assert_envelope(future, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let forged = deliver(
        &app,
        &source,
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_f",
        &body,
        now(),
    )
    .await;
    harness::assert_envelope(forged, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let unknown = deliver(
        &app,
        &Uuid::new_v4().to_string(),
        &secret,
        "msg_u",
        &body,
        now(),
    )
    .await;
    harness::assert_envelope(unknown, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    // Well signed but malformed, too large, or not an event.
    let malformed = deliver(&app, &source, &secret, "msg_m", "{not json", now()).await;
    harness::assert_envelope(malformed, StatusCode::BAD_REQUEST, "INVALID_JSON").await;
    let shapeless = deliver(
        &app,
        &source,
        &secret,
        "msg_s",
        r#"{"type": "x", "data": [1]}"#,
        now(),
    )
    .await;
    harness::assert_envelope(
        shapeless,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let huge = format!(
        r#"{{"type":"x","data":{{"blob":"{}"}}}}"#,
        "x".repeat(app.state.settings.max_body_bytes)
    );
    let too_large = deliver(&app, &source, &secret, "msg_l", &huge, now()).await;
    harness::assert_envelope(
        too_large,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    )
    .await;

    // A disabled source is refused.
    let admin = harness::token("platform-admin").await;
    let response = app
        .http
        .delete(app.url(&format!(
            "/api/v1/merchants/{MERCHANT_A}/webhook-sources/{source}"
        )))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let disabled = deliver(&app, &source, &secret, "msg_d", &body, now()).await;
    harness::assert_envelope(disabled, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
}

#[tokio::test]
async fn a_rotated_secret_keeps_verifying_for_the_overlap_only() {
    let app = TestApp::spawn_with(|s| s.webhook_rotation_overlap = Duration::from_secs(3)).await;
    let (source, old) = new_source(&app, MERCHANT_A).await;
    let body = event("nothing.subscribes");
    assert_eq!(
        deliver(&app, &source, &old, "msg_1", &body, now())
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let admin = harness::token("platform-admin").await;
    let rotated: Value = app
        .http
        .post(app.url(&format!(
            "/api/v1/merchants/{MERCHANT_A}/webhook-sources/{source}/rotate"
        )))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(rotated["secretVersion"], 2);
    assert!(rotated["previousSecretValidUntil"].is_string());
    assert_eq!(
        deliver(&app, &source, &new, "msg_2", &body, now())
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        deliver(&app, &source, &old, "msg_3", &body, now())
            .await
            .status(),
        StatusCode::ACCEPTED,
        "inside the overlap"
    );
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let response = deliver(&app, &source, &old, "msg_4", &body, now()).await;
    harness::assert_envelope(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    assert_eq!(
        deliver(&app, &source, &new, "msg_5", &body, now())
            .await
            .status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn a_source_of_merchant_b_never_launches_merchant_a_configurations() {
    let app = TestApp::spawn().await;
    let a = harness::token("merchant-a").await;
    let b = harness::token("merchant-b").await;
    let _a_config = triggered_config(&app, &a, "A statements", "statement.period_closed").await;
    let b_config = triggered_config(&app, &b, "B statements", "statement.period_closed").await;
    let (source, secret) = new_source(&app, MERCHANT_B).await;
    let answer: Value = deliver(
        &app,
        &source,
        &secret,
        "msg_b",
        &event("statement.period_closed"),
        now(),
    )
    .await
    .json()
    .await
    .unwrap();
    let runs = answer["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let run = app.run_to_end(&b, runs[0].as_str().unwrap()).await;
    assert_eq!(run["configurationId"], b_config.as_str());
    assert_eq!(run["merchantId"], MERCHANT_B);
    let conn = app.state.db.get().await.unwrap();
    let a_runs: i64 = conn
        .query_one(
            "SELECT count(*) FROM bundle_runs WHERE merchant_id = $1",
            &[&Uuid::parse_str(MERCHANT_A).unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(a_runs, 0);
}

#[tokio::test]
async fn vault_unreachable_is_503_and_records_nothing() {
    let app = TestApp::spawn().await;
    let (source, secret) = new_source(&app, MERCHANT_A).await;
    let no_vault = app
        .state_with(|s| {
            s.vault.addr = "http://127.0.0.1:9".to_owned();
            s.dependency_timeout = Duration::from_secs(2);
        })
        .await;
    let (base, _server) = harness::serve(no_vault).await;
    let body = event("statement.period_closed");
    let ts = now();
    let response = app
        .http
        .post(format!("{base}/api/v1/webhooks/{source}"))
        .header("webhook-id", "msg_v")
        .header("webhook-timestamp", ts.to_string())
        .header(
            "webhook-signature",
            docbundle::domain::inbound::sign(&secret, "msg_v", ts, body.as_bytes()).unwrap(),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    harness::assert_envelope(response, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE").await;
    let conn = app.state.db.get().await.unwrap();
    let events: i64 = conn
        .query_one("SELECT count(*) FROM webhook_events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 0);
    // The sender's retry, once Vault is back, is accepted.
    assert_eq!(
        deliver(&app, &source, &secret, "msg_v", &body, now())
            .await
            .status(),
        StatusCode::ACCEPTED
    );
}
