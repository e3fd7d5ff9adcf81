//! Dependencies that stop answering (frozen behind a proxy, or unreachable) and workers that
//! die mid-run: the API answers `503` with `Retry-After` within seconds, a transient fault
//! costs a message seconds of back-off rather than the queue's visibility timeout, a dead
//! worker costs one lease, and nothing is lost or done twice.

use std::time::Duration;

use docbundle_local::poller::{self, Consumer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{self, FreezableProxy, TestApp};
use crate::pipeline::configuration;

/// As long as AWS's visibility timeout for the run queue: a message that comes back before it
/// was brought back by a back-off or a lost lease.
const LONG_VISIBILITY: u32 = 360;

async fn launch(app: &TestApp, token: &str, config: &str) -> String {
    let response = app
        .launch(
            token,
            &json!({"configurationId": config, "seed": {"merchant": {"name": "Acme"}, "period": Uuid::new_v4().to_string()}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

async fn run_view(app: &TestApp, token: &str, id: &str) -> Value {
    app.get_json(&format!("/api/v1/bundles/{id}"), token).await
}

/// Polls the app's run queue with `state` until the run has ended; panics if the message does
/// not come back within `rounds` polls of about a second (far less than the queue's visibility
/// timeout).
async fn until_ended(app: &TestApp, token: &str, id: &str, rounds: usize) -> Value {
    for _ in 0..rounds {
        let run = run_view(app, token, id).await;
        if run["status"] == "completed" || run["status"] == "failed" {
            return run;
        }
        poller::poll(&app.state, Consumer::Worker, Duration::from_secs(1))
            .await
            .expect("poll");
    }
    panic!("run {id} was not delivered again: its message waits out the visibility timeout");
}

#[tokio::test]
async fn postgresql_that_does_not_answer_is_a_503_with_retry_after_not_a_hang() {
    let postgres = FreezableProxy::start("127.0.0.1:5432").await;
    let proxied = postgres.addr.to_string();
    let app = TestApp::spawn_with(move |s| {
        s.database_url = s.database_url.replacen("127.0.0.1:5432", &proxied, 1);
        s.dependency_timeout = Duration::from_secs(2);
    })
    .await;
    assert!(app
        .state
        .settings
        .database_url
        .contains(&postgres.addr.to_string()));
    let token = harness::token("merchant-a").await;
    let config = configuration(&app, &token).await;
    let before = launch(&app, &token, &config).await;

    postgres.freeze();
    // The proxy holds every byte for as long as the test: only the answer deadline can end
    // these requests (the client gives up after 30 s).
    let response = app
        .launch(&token, &json!({"configurationId": config}))
        .await;
    assert_eq!(response.headers()["retry-after"], "5");
    harness::assert_envelope(response, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE").await;
    let response = app
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/bundles/{before}"),
            &token,
        )
        .await;
    assert_eq!(response.headers()["retry-after"], "5");
    harness::assert_envelope(response, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE").await;

    // Back: the pool replaced the connections that timed out, launches and runs go on.
    postgres.thaw();
    let after = launch(&app, &token, &config).await;
    for id in [&before, &after] {
        let run = app.run_to_end(&token, id).await;
        assert_eq!(run["status"], "completed", "{run}");
    }
    let listed = app.get_json("/api/v1/bundles?limit=100", &token).await;
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        2,
        "the launch refused with 503 left no run: {listed}"
    );
}

#[tokio::test]
async fn a_transient_fault_backs_the_message_off_seconds_and_the_run_shows_why() {
    let app = TestApp::spawn_with_visibility(LONG_VISIBILITY, |_| {}).await;
    let token = harness::token("merchant-a").await;
    let config = configuration(&app, &token).await;
    let id = launch(&app, &token, &config).await;

    // Vault unreachable: the manifest cannot be signed.
    let no_vault = app
        .state_with(|s| {
            s.vault.addr = "http://127.0.0.1:9".to_owned();
            s.dependency_timeout = Duration::from_secs(1);
        })
        .await;
    let (received, failed) = poller::poll(&no_vault, Consumer::Worker, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!((received, failed), (1, 1));
    let retrying = run_view(&app, &token, &id).await;
    assert_eq!(retrying["status"], "processing", "{retrying}");
    assert_eq!(retrying["attempts"], 1);
    assert_eq!(retrying["lastError"]["code"], "DEPENDENCY_UNAVAILABLE");
    let why = retrying["lastError"]["message"].as_str().unwrap();
    assert!(why.contains("vault"), "{why}");
    assert!(
        !why.contains("127.0.0.1"),
        "no address leaks to the merchant: {why}"
    );
    let due =
        chrono::DateTime::parse_from_rfc3339(retrying["nextAttemptAt"].as_str().unwrap()).unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(retrying["lastError"]["at"].as_str().unwrap())
        .unwrap();
    let wait = (due - at).num_milliseconds();
    assert!(
        (1500..=2500).contains(&wait),
        "the first back-off is 2 s ± 20 %: {wait} ms"
    );

    // Vault is back: the message returns after its back-off, not after 360 s.
    let run = until_ended(&app, &token, &id, 20).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["attempts"], 2);
    assert!(run["nextAttemptAt"].is_null(), "{run}");
    assert_eq!(
        run["lastError"]["code"], "DEPENDENCY_UNAVAILABLE",
        "kept as history"
    );
}

#[tokio::test]
async fn a_worker_that_dies_mid_run_costs_one_lease_and_the_run_completes_once() {
    let app = TestApp::spawn_with_visibility(LONG_VISIBILITY, |_| {}).await;
    let token = harness::token("merchant-a").await;
    let config = configuration(&app, &token).await;
    let id = launch(&app, &token, &config).await;

    // A worker whose Vault hangs (frozen, with a long timeout): it holds the run until killed.
    let vault = FreezableProxy::start(
        app.state
            .settings
            .vault
            .addr
            .trim_start_matches("http://")
            .trim_end_matches('/'),
    )
    .await;
    let lease = Duration::from_secs(3);
    let hung = app
        .state_with(|s| {
            s.vault.addr = format!("http://{}", vault.addr);
            s.dependency_timeout = Duration::from_secs(60);
            s.queue_lease.lease = lease;
        })
        .await;
    vault.freeze();
    let worker =
        tokio::spawn(
            async move { poller::poll(&hung, Consumer::Worker, Duration::from_secs(2)).await },
        );
    for _ in 0..100 {
        if run_view(&app, &token, &id).await["status"] == "processing" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(run_view(&app, &token, &id).await["status"], "processing");

    // While it works, the heartbeat keeps the message leased: nobody else receives it, for
    // well over one lease.
    let sqs = harness::sqs_client(&app.state).await;
    for _ in 0..4 {
        let seen = sqs
            .receive_message()
            .queue_url(app.state.queue.queue_url())
            .wait_time_seconds(2)
            .send()
            .await
            .unwrap();
        assert!(
            seen.messages.unwrap_or_default().is_empty(),
            "a message being worked on was delivered again"
        );
    }
    assert!(!worker.is_finished(), "the worker is still held by Vault");

    // Killed: its lease runs out and the message comes back within seconds.
    worker.abort();
    vault.thaw();
    let run = until_ended(&app, &token, &id, 20).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["attempts"], 2);
    let conn = app.state.db.get().await.unwrap();
    let manifests: i64 = conn
        .query_one(
            "SELECT count(*) FROM manifests WHERE run_id = $1",
            &[&Uuid::parse_str(&id).unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(manifests, 1);
}
