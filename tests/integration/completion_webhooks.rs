//! Completion webhooks against the real stack and a local receiver: every delivery verified
//! with the `standardwebhooks` library from PyPI (a client no one here wrote), retries with
//! the same `webhook-id`, a dispatcher killed mid-attempt, tenancy, SSRF targets, rotation,
//! redelivery, and an endpoint disabled for failing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::{IntoResponse, Response};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::watch;
use uuid::Uuid;

use crate::configurations::{create, statement_config};
use crate::harness::{self, TestApp};
use docbundle_local::poller::{self, Consumer};

/// What the receiver answers to one request.
#[derive(Clone, Debug)]
enum Reply {
    Status(u16),
    /// No answer for a minute.
    Hang,
    Redirect(String),
    /// This status with this body.
    Body(u16, &'static str),
}

#[derive(Clone, Debug)]
struct Hit {
    at: Instant,
    headers: HashMap<String, String>,
    body: String,
}

/// A webhook receiver on a loopback port, answering from a script (then 200).
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    async fn start(script: &[Reply]) -> Receiver {
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let script = Arc::new(Mutex::new(script.iter().cloned().collect::<VecDeque<_>>()));
        let (h, s) = (hits.clone(), script.clone());
        let handler = move |headers: HeaderMap, body: String| {
            let (hits, script) = (h.clone(), s.clone());
            async move {
                hits.lock().unwrap().push(Hit {
                    at: Instant::now(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                        .collect(),
                    body,
                });
                let reply = script.lock().unwrap().pop_front();
                let response: Response = match reply {
                    None => (AxumStatus::OK, "thanks").into_response(),
                    Some(Reply::Status(code)) => (
                        AxumStatus::from_u16(code).unwrap(),
                        format!("answered {code}"),
                    )
                        .into_response(),
                    Some(Reply::Hang) => {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        AxumStatus::OK.into_response()
                    }
                    Some(Reply::Body(code, body)) => {
                        (AxumStatus::from_u16(code).unwrap(), body).into_response()
                    }
                    Some(Reply::Redirect(to)) => {
                        (AxumStatus::FOUND, [("location", to)], "moved").into_response()
                    }
                };
                response
            }
        };
        let app = axum::Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/docbundle", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, hits }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    async fn wait_for(&self, count: usize, within: Duration) -> Vec<Hit> {
        let started = Instant::now();
        loop {
            let hits = self.hits();
            if hits.len() >= count {
                return hits;
            }
            assert!(
                started.elapsed() < within,
                "{} of {count} requests after {within:?}",
                hits.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Verifies `hit` with the PyPI `standardwebhooks` library; returns the payload it accepted,
/// or its error message.
fn verify_with_standardwebhooks(secret: &str, hit: &Hit) -> Result<Value, String> {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/.stack/receivers/bin/python");
    assert!(
        std::path::Path::new(python).exists(),
        "{python} is missing: `./dev services` installs it"
    );
    let headers: HashMap<&str, &str> = ["webhook-id", "webhook-timestamp", "webhook-signature"]
        .iter()
        .map(|h| (*h, hit.headers.get(*h).map(String::as_str).unwrap_or("")))
        .collect();
    let output = std::process::Command::new(python)
        .arg("-c")
        .arg(
            "import json, os\n\
             from standardwebhooks import Webhook\n\
             payload = Webhook(os.environ['SECRET']).verify(os.environ['BODY'], json.loads(os.environ['HEADERS']))\n\
             print(json.dumps(payload))",
        )
        .env("SECRET", secret)
        .env("BODY", &hit.body)
        .env("HEADERS", serde_json::to_string(&headers).unwrap())
        .output()
        .unwrap();
    if output.status.success() {
        Ok(serde_json::from_slice(&output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// The app with its worker and its webhook dispatcher consuming their queues.
async fn running(adjust: impl FnOnce(&mut docbundle::Settings)) -> (TestApp, watch::Sender<bool>) {
    let app = TestApp::spawn_with(adjust).await;
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(poller::run(app.state.clone(), 2, stopped.clone()));
    tokio::spawn(poller::run_consumer(
        app.state.clone(),
        Consumer::Dispatcher,
        2,
        stopped,
    ));
    (app, stop)
}

async fn register(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url("/api/v1/webhook-endpoints"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Registers `url` for `events`; returns `(endpoint id, secret)`.
pub(crate) async fn endpoint(
    app: &TestApp,
    token: &str,
    url: &str,
    events: &[&str],
) -> (String, String) {
    let response = register(app, token, &json!({"url": url, "events": events})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert!(body["secret"].as_str().unwrap().starts_with("whsec_"));
    (
        body["id"].as_str().unwrap().to_owned(),
        body["secret"].as_str().unwrap().to_owned(),
    )
}

/// A configuration whose PDF fails when the seed says so.
async fn failing_config(app: &TestApp, token: &str) -> String {
    let body = json!({
        "name": "Fails on demand",
        "defaults": {"fail": false},
        "documents": [{"name": "a.pdf", "format": "pdf",
            "template": "#let data = json(\"data.json\")\n#if data.fail { panic(\"asked to fail\") }\nHello\n"}],
    });
    let created: Value = create(app, token, &body).await.json().await.unwrap();
    created["id"].as_str().unwrap().to_owned()
}

async fn statement(app: &TestApp, token: &str) -> String {
    let created: Value = create(app, token, &statement_config("Statements"))
        .await
        .json()
        .await
        .unwrap();
    created["id"].as_str().unwrap().to_owned()
}

async fn launch(app: &TestApp, token: &str, body: Value) -> String {
    let response = app.launch(token, &body).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let run: Value = response.json().await.unwrap();
    run["id"].as_str().unwrap().to_owned()
}

/// The endpoint's newest delivery, once `done` holds for it (within 10 s).
async fn newest_delivery_when(
    app: &TestApp,
    token: &str,
    endpoint: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let newest = deliveries(app, token, endpoint).await[0].clone();
        if done(&newest) {
            return newest;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{newest}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn deliveries(app: &TestApp, token: &str, endpoint: &str) -> Vec<Value> {
    let page = app
        .get_json(
            &format!("/api/v1/webhook-endpoints/{endpoint}/deliveries"),
            token,
        )
        .await;
    page["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn completed_and_failed_runs_are_delivered_once_each_and_verify_with_standardwebhooks() {
    let (app, _stop) = running(|_| {}).await;
    let token = harness::token("merchant-a").await;
    let everything = Receiver::start(&[]).await;
    let failures_only = Receiver::start(&[]).await;
    let other_merchant = Receiver::start(&[]).await;
    let (all_id, secret) = endpoint(&app, &token, &everything.url, &["*"]).await;
    let (_, failed_secret) = endpoint(&app, &token, &failures_only.url, &["run.failed"]).await;
    let token_b = harness::token("merchant-b").await;
    endpoint(&app, &token_b, &other_merchant.url, &["*"]).await;

    let completed = launch(
        &app,
        &token,
        json!({"configurationId": statement(&app, &token).await}),
    )
    .await;
    let failing = failing_config(&app, &token).await;
    let failed = launch(
        &app,
        &token,
        json!({"configurationId": failing, "seed": {"fail": true}}),
    )
    .await;

    let hits = everything.wait_for(2, Duration::from_secs(60)).await;
    let mut by_type = HashMap::new();
    for hit in &hits {
        let payload = verify_with_standardwebhooks(&secret, hit).expect("verifies");
        // The library accepted exactly the body that was sent.
        assert_eq!(payload, serde_json::from_str::<Value>(&hit.body).unwrap());
        by_type.insert(payload["type"].as_str().unwrap().to_owned(), payload);
        // A wrong secret is refused by the same library.
        let other = docbundle::domain::inbound::generate_secret().unwrap();
        assert!(verify_with_standardwebhooks(&other, hit).is_err());
    }
    let done = &by_type["run.completed"]["data"];
    assert_eq!(done["runId"], completed.as_str());
    assert_eq!(done["status"], "completed");
    assert_eq!(done["configurationVersion"], 1);
    let run = app.run_to_end(&token, &completed).await;
    assert_eq!(done["bundleDigest"], run["manifest"]["bundleDigest"]);
    assert_eq!(done["manifestKey"], run["manifest"]["key"]);
    assert_eq!(done["seedHash"], run["seedHash"]);
    assert!(
        !hits[0].body.contains("X-Amz"),
        "no presigned URL in the body"
    );
    let fail = &by_type["run.failed"]["data"];
    assert_eq!(fail["runId"], failed.as_str());
    assert_eq!(fail["error"]["code"], "TEMPLATE_ERROR");
    assert!(fail["bundleDigest"].is_null());

    let only = failures_only.wait_for(1, Duration::from_secs(30)).await;
    let payload = verify_with_standardwebhooks(&failed_secret, &only[0]).unwrap();
    assert_eq!(payload["type"], "run.failed");

    // Exactly once each, and merchant B heard nothing of A's runs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(everything.hits().len(), 2);
    assert_eq!(failures_only.hits().len(), 1);
    assert!(other_merchant.hits().is_empty());

    let listed = deliveries(&app, &token, &all_id).await;
    assert_eq!(listed.len(), 2);
    for delivery in &listed {
        assert_eq!(delivery["status"], "succeeded", "{delivery}");
        assert_eq!(delivery["attempts"], 1);
        assert_eq!(delivery["lastStatusCode"], 200);
        assert_eq!(delivery["lastResponse"], "thanks");
        assert!(delivery["nextAttemptAt"].is_null());
        let id = delivery["id"].as_str().unwrap();
        assert!(hits.iter().any(|h| h.headers["webhook-id"] == id));
    }
    // B cannot read A's endpoint or its deliveries.
    let response = app
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/webhook-endpoints/{all_id}/deliveries"),
            &token_b,
        )
        .await;
    harness::assert_envelope(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

#[tokio::test]
async fn a_receiver_failing_twice_gets_the_event_on_the_third_attempt_with_the_same_id() {
    let (app, _stop) = running(|s| {
        // The first retry as in production (5 s); the next ones shortened for the test.
        s.webhook_retry_schedule = vec![Duration::from_secs(5), Duration::from_secs(1)];
    })
    .await;
    let token = harness::token("merchant-a").await;
    let receiver = Receiver::start(&[Reply::Status(500), Reply::Status(503)]).await;
    let (id, secret) = endpoint(&app, &token, &receiver.url, &["run.completed"]).await;
    launch(
        &app,
        &token,
        json!({"configurationId": statement(&app, &token).await}),
    )
    .await;

    let hits = receiver.wait_for(3, Duration::from_secs(60)).await;
    let ids: Vec<&str> = hits
        .iter()
        .map(|h| h.headers["webhook-id"].as_str())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    for hit in &hits {
        verify_with_standardwebhooks(&secret, hit).expect("every attempt is signed");
        assert_eq!(hit.body, hits[0].body, "every attempt sends the same body");
    }
    let first_retry = hits[1].at - hits[0].at;
    println!(
        "first retry after {first_retry:?}, second after {:?}",
        hits[2].at - hits[1].at
    );
    assert!(
        first_retry >= Duration::from_secs(4) && first_retry <= Duration::from_secs(10),
        "{first_retry:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.hits().len(), 3, "no attempt after the success");
    let listed = deliveries(&app, &token, &id).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "succeeded");
    assert_eq!(listed[0]["attempts"], 3);
}

#[tokio::test]
async fn a_spent_schedule_fails_the_delivery_and_says_why() {
    let (app, _stop) = running(|s| s.webhook_retry_schedule = vec![Duration::from_secs(1)]).await;
    let token = harness::token("merchant-a").await;
    let receiver = Receiver::start(&[Reply::Status(500), Reply::Status(502)]).await;
    let (id, _) = endpoint(&app, &token, &receiver.url, &["*"]).await;
    launch(
        &app,
        &token,
        json!({"configurationId": statement(&app, &token).await}),
    )
    .await;
    receiver.wait_for(2, Duration::from_secs(60)).await;
    let delivery = newest_delivery_when(&app, &token, &id, |d| d["status"] != "pending").await;
    assert_eq!(delivery["status"], "failed");
    assert_eq!(
        (&delivery["attempts"], &delivery["lastStatusCode"]),
        (&json!(2), &json!(502))
    );
    assert!(delivery["nextAttemptAt"].is_null());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.hits().len(), 2, "no attempt beyond the schedule");
    // One spent delivery does not disable the endpoint (that takes days of failures).
    let endpoint = app
        .get_json(&format!("/api/v1/webhook-endpoints/{id}"), &token)
        .await;
    assert_eq!(endpoint["enabled"], true);
    assert!(endpoint["failingSince"].is_string());
}

#[tokio::test]
async fn an_endpoint_failing_for_too_long_is_disabled_and_says_so() {
    let (app, _stop) = running(|s| {
        s.webhook_retry_schedule = vec![Duration::from_secs(1)];
        s.webhook_disable_after = Duration::ZERO;
    })
    .await;
    let token = harness::token("merchant-a").await;
    let receiver =
        Receiver::start(&[Reply::Status(500), Reply::Status(500), Reply::Status(500)]).await;
    let (id, _) = endpoint(&app, &token, &receiver.url, &["*"]).await;
    launch(
        &app,
        &token,
        json!({"configurationId": statement(&app, &token).await}),
    )
    .await;
    receiver.wait_for(1, Duration::from_secs(60)).await;
    let started = Instant::now();
    let endpoint = loop {
        let endpoint = app
            .get_json(&format!("/api/v1/webhook-endpoints/{id}"), &token)
            .await;
        if endpoint["enabled"] == false {
            break endpoint;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{endpoint}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let reason = endpoint["disabledReason"].as_str().unwrap();
    assert!(
        reason.starts_with("disabled automatically: every delivery failed since "),
        "{reason}"
    );
    let listed = deliveries(&app, &token, &id).await;
    assert_eq!(listed[0]["status"], "failed", "{}", listed[0]);
    assert_eq!(listed[0]["lastStatusCode"], 500);
    assert_eq!(listed[0]["lastResponse"], "answered 500");
    // A disabled endpoint hears nothing more.
    launch(
        &app,
        &token,
        json!({"configurationId": statement(&app, &token).await}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(receiver.hits().len(), 1);
    assert_eq!(deliveries(&app, &token, &id).await.len(), 1);
    // Enabling it again clears the reason.
    let response = app
        .http
        .patch(app.url(&format!("/api/v1/webhook-endpoints/{id}")))
        .bearer_auth(&token)
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let endpoint: Value = response.json().await.unwrap();
    assert_eq!(
        (&endpoint["enabled"], &endpoint["disabledReason"]),
        (&json!(true), &Value::Null)
    );
}

#[tokio::test]
async fn a_dispatcher_killed_mid_attempt_loses_nothing() {
    // No background dispatcher: this test plays it, and kills it.
    let app = TestApp::spawn_with(|s| s.webhook_timeout = Duration::from_secs(1)).await;
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(poller::run(app.state.clone(), 1, stopped));
    let token = harness::token("merchant-a").await;
    let receiver = Receiver::start(&[Reply::Hang]).await;
    let (id, secret) = endpoint(&app, &token, &receiver.url, &["*"]).await;
    let run = launch(
        &app,
        &token,
        json!({"configurationId": statement(&app, &token).await}),
    )
    .await;
    app.run_to_end(&token, &run).await;

    // The dispatcher takes the message and dies while the receiver holds the request.
    let state = app.state.clone();
    let dispatcher = tokio::spawn(async move {
        poller::poll(&state, Consumer::Dispatcher, Duration::from_secs(5)).await
    });
    receiver.wait_for(1, Duration::from_secs(20)).await;
    dispatcher.abort();
    let listed = deliveries(&app, &token, &id).await;
    assert_eq!(
        (&listed[0]["status"], &listed[0]["attempts"]),
        (&json!("pending"), &json!(1))
    );

    // Its lease runs out; the scheduled sweep sends the delivery again and a new dispatcher
    // delivers it, with the same webhook-id.
    let lease = webhook_dispatcher::lease(&app.state);
    tokio::time::sleep(lease + Duration::from_secs(1)).await;
    let swept = docbundle::app::jobs::overdue_deliveries::run(&app.state, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(swept, 1);
    let (_stop2, stopped2) = watch::channel(false);
    tokio::spawn(poller::run_consumer(
        app.state.clone(),
        Consumer::Dispatcher,
        1,
        stopped2,
    ));
    let hits = receiver.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(hits[0].headers["webhook-id"], hits[1].headers["webhook-id"]);
    verify_with_standardwebhooks(&secret, &hits[1]).unwrap();
    newest_delivery_when(&app, &token, &id, |d| d["status"] == "succeeded").await;
    // The first message, redelivered by SQS once visible again, is stale: nothing more.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(receiver.hits().len(), 2);
    let _ = stop.send(true);
}

#[tokio::test]
async fn ssrf_targets_are_refused_unless_local_development_allows_loopback() {
    let strict = TestApp::spawn_with(|s| s.webhook_allow_insecure = false).await;
    let token = harness::token("merchant-a").await;
    for url in [
        "https://127.0.0.1/hook",
        "https://127.0.0.2:8443/hook",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://0x7f000001/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/",
        "https://10.0.0.1/hook",
        "https://192.168.1.10/hook",
        "https://localhost/hook",
        "http://hooks.example.com/hook",
        "file:///etc/passwd",
        "gopher://hooks.example.com/",
        "https://user:pass@hooks.example.com/",
    ] {
        let response = register(&strict, &token, &json!({"url": url, "events": ["*"]})).await;
        let body = harness::assert_envelope(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(body["error"]["details"][0]["field"], "url", "{url}: {body}");
    }
    // Local development allows http and loopback, never metadata or private addresses.
    let local = TestApp::spawn().await;
    for url in [
        "http://169.254.169.254/",
        "http://10.0.0.1/",
        "http://[fe80::1]/",
    ] {
        let response = register(&local, &token, &json!({"url": url, "events": ["*"]})).await;
        harness::assert_envelope(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
    }
    let receiver = Receiver::start(&[]).await;
    let response = register(
        &local,
        &token,
        &json!({"url": receiver.url, "events": ["*"]}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);

    // At send time too: a name resolving to loopback is refused by a strict sender, before
    // any connection.
    let port = receiver
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let sender = docbundle::infra::outbound::WebhookSender::new(false, Duration::from_secs(2));
    for url in [
        format!("https://localhost:{port}/"),
        format!("https://127.0.0.1:{port}/"),
    ] {
        let error = sender.post(&url, &[], "{}".to_owned()).await.unwrap_err();
        assert!(
            error.0.contains("loopback") || error.0.contains("may not reach"),
            "{url}: {error}"
        );
    }
    assert!(receiver.hits().is_empty());

    // No redirect is followed: a 302 is a failed attempt, and its target hears nothing.
    let target = Receiver::start(&[]).await;
    let redirecting = Receiver::start(&[Reply::Redirect(target.url.clone())]).await;
    let local_sender = docbundle::infra::outbound::WebhookSender::new(true, Duration::from_secs(2));
    let answer = local_sender
        .post(&redirecting.url, &[], "{}".to_owned())
        .await
        .unwrap();
    assert_eq!(answer.status, 302);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(target.hits().is_empty());
}

#[tokio::test]
async fn rotation_signs_with_both_secrets_for_the_overlap_and_redeliver_sends_again() {
    let (app, _stop) = running(|_| {}).await;
    let token = harness::token("merchant-a").await;
    let receiver = Receiver::start(&[]).await;
    let (id, old) = endpoint(&app, &token, &receiver.url, &["run.completed"]).await;
    let response = app
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/webhook-endpoints/{id}/rotate"),
            &token,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let rotated: Value = response.json().await.unwrap();
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(rotated["previousSecretValidUntil"].is_string());

    launch(
        &app,
        &token,
        json!({"configurationId": statement(&app, &token).await}),
    )
    .await;
    let hits = receiver.wait_for(1, Duration::from_secs(60)).await;
    assert_eq!(
        hits[0].headers["webhook-signature"].matches("v1,").count(),
        2
    );
    verify_with_standardwebhooks(&old, &hits[0]).expect("the old secret still verifies");
    verify_with_standardwebhooks(&new, &hits[0]).expect("the new secret verifies");

    let delivery = deliveries(&app, &token, &id).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let redeliver = format!("/api/v1/webhook-endpoints/{id}/deliveries/{delivery}/redeliver");
    // A reader may not redeliver.
    let reader = harness::token("merchant-a-reader").await;
    let response = app.call(reqwest::Method::POST, &redeliver, &reader).await;
    harness::assert_envelope(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let response = app.call(reqwest::Method::POST, &redeliver, &token).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let hits = receiver.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(hits[1].headers["webhook-id"], delivery);
    assert_eq!(hits[1].body, hits[0].body);

    // Deleted: nothing more, and the id is gone.
    let response = app
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/webhook-endpoints/{id}"),
            &token,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app.call(reqwest::Method::POST, &redeliver, &token).await;
    harness::assert_envelope(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

#[tokio::test]
async fn hostile_endpoint_requests_are_clear_4xx_answers() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let long_url = format!("https://hooks.example.com/{}", "a".repeat(10_000));
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    for body in [
        json!({"url": long_url, "events": ["*"]}),
        json!({"url": "https://hooks.example.com/\u{0}", "events": ["*"]}),
        json!({"url": "https://hooks.example.com/", "events": []}),
        json!({"url": "https://hooks.example.com/", "events": ["run.exploded"]}),
        json!({"url": "https://hooks.example.com/", "events": vec!["*"; 11]}),
        json!({"url": "https://hooks.example.com/", "events": ["*"], "description": "a\u{0}b"}),
        json!({"url": "https://hooks.example.com/", "events": ["*"], "description": "x".repeat(501)}),
    ] {
        let response = register(&app, &token, &body).await;
        harness::assert_envelope(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
    }
    for raw in [
        r#"{"url": "https://hooks.example.com/", "events": "*"}"#.to_owned(),
        r#"{"url": "https://hooks.example.com/", "events": ["*"], "secret": "mine"}"#.to_owned(),
        r#"{"url": 12}"#.to_owned(),
        deep,
        "not json".to_owned(),
    ] {
        let response = app
            .http
            .post(app.url("/api/v1/webhook-endpoints"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["requestId"].is_string(), "{body}");
    }
    // Scopes and tenancy.
    let reader = harness::token("merchant-a-reader").await;
    let response = register(
        &app,
        &reader,
        &json!({"url": "https://hooks.example.com/", "events": ["*"]}),
    )
    .await;
    harness::assert_envelope(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let response = app
        .http
        .get(app.url("/api/v1/webhook-endpoints"))
        .send()
        .await
        .unwrap();
    harness::assert_envelope(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let response = register(
        &app,
        &token,
        &json!({"url": "https://hooks.example.com/", "events": ["*", "run.failed", "*"]}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["events"], json!(["*", "run.failed"]));
    let id = created["id"].as_str().unwrap();
    let other = harness::token("merchant-b").await;
    for request in [
        app.http
            .get(app.url(&format!("/api/v1/webhook-endpoints/{id}"))),
        app.http
            .patch(app.url(&format!("/api/v1/webhook-endpoints/{id}")))
            .json(&json!({"enabled": false})),
        app.http
            .delete(app.url(&format!("/api/v1/webhook-endpoints/{id}"))),
        app.http
            .post(app.url(&format!("/api/v1/webhook-endpoints/{id}/rotate"))),
    ] {
        let response = request.bearer_auth(&other).send().await.unwrap();
        harness::assert_envelope(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    }
    let listed = app.get_json("/api/v1/webhook-endpoints", &other).await;
    assert_eq!(listed["items"], json!([]));
    let listed = app.get_json("/api/v1/webhook-endpoints", &reader).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert!(
        listed["items"][0].get("secret").is_none(),
        "the secret is never listed"
    );
    // A bad change is refused whole; a good one applies; null clears the description.
    let patch = |body: Value| {
        app.http
            .patch(app.url(&format!("/api/v1/webhook-endpoints/{id}")))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let response = patch(json!({"url": "https://169.254.169.254/", "description": "x"}))
        .await
        .unwrap();
    harness::assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let response = patch(json!({"description": "Billing"})).await.unwrap();
    assert_eq!(
        response.json::<Value>().await.unwrap()["description"],
        "Billing"
    );
    let response = patch(json!({"description": null, "events": ["run.completed"]}))
        .await
        .unwrap();
    let changed: Value = response.json().await.unwrap();
    assert_eq!(
        (&changed["description"], &changed["events"]),
        (&Value::Null, &json!(["run.completed"]))
    );
    assert_eq!(changed["url"], "https://hooks.example.com/");
    let response = app
        .http
        .get(app.url(&format!(
            "/api/v1/webhook-endpoints/{}/deliveries",
            Uuid::new_v4()
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    harness::assert_envelope(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

#[tokio::test]
async fn a_hostile_receiver_answer_is_recorded_cleanly() {
    let (app, _stop) = running(|s| s.webhook_retry_schedule = vec![Duration::from_secs(1)]).await;
    let token = harness::token("merchant-a").await;
    // NUL and control bytes in the answer (PostgreSQL refuses NUL in text), then a huge one.
    let receiver =
        Receiver::start(&[Reply::Body(500, "bad\u{0}\u{1b}[31m"), Reply::Body(200, "")]).await;
    let (id, _) = endpoint(&app, &token, &receiver.url, &["*"]).await;
    launch(
        &app,
        &token,
        json!({"configurationId": statement(&app, &token).await}),
    )
    .await;
    receiver.wait_for(2, Duration::from_secs(60)).await;
    let delivery = newest_delivery_when(&app, &token, &id, |d| d["status"] == "succeeded").await;
    assert_eq!(delivery["attempts"], 2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        receiver.hits().len(),
        2,
        "a recorded answer is never attempted again"
    );

    let huge = Box::leak("x".repeat(5 << 20).into_boxed_str());
    let receiver = Receiver::start(&[Reply::Body(503, huge)]).await;
    let (id, _) = endpoint(&app, &token, &receiver.url, &["*"]).await;
    launch(
        &app,
        &token,
        json!({"configurationId": statement(&app, &token).await}),
    )
    .await;
    receiver.wait_for(2, Duration::from_secs(60)).await;
    let started = Instant::now();
    loop {
        let listed = deliveries(&app, &token, &id).await;
        if listed[0]["status"] == "succeeded" {
            assert_eq!(listed[0]["lastStatusCode"], 200);
            break;
        }
        if listed[0]["attempts"] == 1 && listed[0]["lastStatusCode"] == 503 {
            let kept = listed[0]["lastResponse"].as_str().unwrap();
            assert_eq!(kept.len(), 1024, "only the first KiB is kept");
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{}", listed[0]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn endpoints_are_capped_per_merchant_and_a_platform_caller_names_a_real_merchant() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    for i in 0..webhook_endpoints::MAX_ENDPOINTS {
        let response = register(
            &app,
            &token,
            &json!({"url": format!("https://hooks.example.com/{i}"), "events": ["*"]}),
        )
        .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let response = register(
        &app,
        &token,
        &json!({"url": "https://hooks.example.com/one-more", "events": ["*"]}),
    )
    .await;
    harness::assert_envelope(response, StatusCode::CONFLICT, "CONFLICT").await;
    // Another merchant's count is its own.
    let other = harness::token("merchant-b").await;
    let response = register(
        &app,
        &other,
        &json!({"url": "https://hooks.example.com/b", "events": ["*"]}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let admin = harness::token("platform-admin").await;
    let response = app
        .http
        .post(app.url(&format!(
            "/api/v1/webhook-endpoints?merchantId={}",
            Uuid::new_v4()
        )))
        .bearer_auth(&admin)
        .json(&json!({"url": "https://hooks.example.com/x", "events": ["*"]}))
        .send()
        .await
        .unwrap();
    harness::assert_envelope(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}
