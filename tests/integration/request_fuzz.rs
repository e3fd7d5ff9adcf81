//! Property-based: arbitrary bodies, seeds, query strings and headers thrown at the real app
//! (real stack behind it) never get a `5xx`, and every `4xx` is a well-formed error envelope.
//! `PROPTEST_CASES` sets the cases per property (default 256 here, so that CI stays quick).

use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};

use crate::configurations::statement_config;
use crate::harness::{self, TestApp};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Strings a hostile client would send: any text, and the usual suspects.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        Just("\u{0}".to_owned()),
        Just("a\u{0}b".to_owned()),
        Just("{{ data.x }}".to_owned()),
        Just("{% for i in range(10) %}x{% endfor %}".to_owned()),
        Just("#let d = json(\"data.json\")\n#d".to_owned()),
        Just("../../etc/passwd".to_owned()),
        Just("\u{feff}\u{202e}".to_owned()),
        Just("9".repeat(400)),
        Just("-9223372036854775809".to_owned()),
    ]
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A valid configuration with one field replaced by anything.
fn mutated_configuration() -> impl Strategy<Value = Value> {
    let fields = prop_oneof![
        Just("/name"),
        Just("/description"),
        Just("/documents"),
        Just("/documents/0"),
        Just("/documents/0/name"),
        Just("/documents/0/format"),
        Just("/documents/0/template"),
        Just("/dataSchema"),
        Just("/dataSchema/properties"),
        Just("/defaults"),
        Just("/defaults/period"),
        Just("/triggers"),
        Just("/archive"),
    ];
    (fields, json_value()).prop_map(|(pointer, value)| {
        let mut body = statement_config("Fuzzed");
        if let Some(slot) = body.pointer_mut(pointer) {
            *slot = value;
        }
        body
    })
}

/// What a request may be.
#[derive(Debug, Clone)]
enum Probe {
    CreateConfiguration(Value),
    UpdateConfiguration(Value, String),
    Launch(Value),
    RawBody(&'static str, Vec<u8>),
    List(&'static str, Vec<(String, String)>),
    Webhook(Vec<u8>, Vec<(String, String)>),
    CreateBatch(Value),
    BatchSeeds(Vec<u8>),
}

fn probe() -> impl Strategy<Value = Probe> {
    let header_value = "[ -~]{0,30}";
    prop_oneof![
        prop_oneof![mutated_configuration(), json_value()].prop_map(Probe::CreateConfiguration),
        (
            mutated_configuration(),
            prop_oneof![
                Just("\"v1\"".to_owned()),
                "[ -~]{0,12}".prop_map(String::from)
            ]
        )
            .prop_map(|(b, m)| Probe::UpdateConfiguration(b, m)),
        json_value().prop_map(Probe::Launch),
        (
            prop_oneof![
                Just("/api/v1/configurations"),
                Just("/api/v1/bundles"),
                Just("/api/v1/batches")
            ],
            prop::collection::vec(any::<u8>(), 0..200)
        )
            .prop_map(|(p, b)| Probe::RawBody(p, b)),
        (
            prop_oneof![
                Just("/api/v1/configurations"),
                Just("/api/v1/bundles"),
                Just("/api/v1/signing-keys"),
                Just("/api/v1/batches")
            ],
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("limit".to_owned()),
                        Just("cursor".to_owned()),
                        Just("status".to_owned()),
                        Just("name".to_owned()),
                        Just("configurationId".to_owned()),
                        Just("merchantId".to_owned()),
                        text()
                    ],
                    text()
                ),
                0..4
            )
        )
            .prop_map(|(p, q)| Probe::List(p, q)),
        (
            prop::collection::vec(any::<u8>(), 0..200),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("webhook-id".to_owned()),
                        Just("webhook-timestamp".to_owned()),
                        Just("webhook-signature".to_owned())
                    ],
                    header_value.prop_map(String::from)
                ),
                0..4
            )
        )
            .prop_map(|(b, h)| Probe::Webhook(b, h)),
        json_value().prop_map(Probe::CreateBatch),
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            prop::collection::vec(json_value(), 0..5).prop_map(|seeds| seeds
                .iter()
                .map(|s| format!("{s}\n"))
                .collect::<String>()
                .into_bytes()),
        ]
        .prop_map(Probe::BatchSeeds),
    ]
}

struct Target {
    app: TestApp,
    token: String,
    configuration: String,
    source: String,
    batch: String,
}

async fn send(target: &Target, probe: &Probe) -> reqwest::Response {
    let app = &target.app;
    let request = match probe {
        Probe::CreateConfiguration(body) => {
            app.http.post(app.url("/api/v1/configurations")).json(body)
        }
        Probe::UpdateConfiguration(body, if_match) => app
            .http
            .put(app.url(&format!("/api/v1/configurations/{}", target.configuration)))
            .header("if-match", if_match.as_str())
            .json(body),
        Probe::Launch(seed) => app
            .http
            .post(app.url("/api/v1/bundles"))
            .json(&json!({"configurationId": target.configuration, "seed": seed})),
        Probe::RawBody(path, bytes) => app
            .http
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(bytes.clone()),
        Probe::List(path, query) => app.http.get(app.url(path)).query(query),
        // A create body as sent, or merged into a valid one (its fields then reach the checks).
        Probe::CreateBatch(body) => {
            let body = match body {
                Value::Object(fields) => {
                    let mut merged = json!({"configurationId": target.configuration});
                    merged.as_object_mut().unwrap().extend(fields.clone());
                    merged
                }
                other => other.clone(),
            };
            app.http.post(app.url("/api/v1/batches")).json(&body)
        }
        Probe::BatchSeeds(bytes) => app
            .http
            .put(app.url(&format!("/api/v1/batches/{}/seeds", target.batch)))
            .header("content-type", "application/x-ndjson")
            .body(bytes.clone()),
        Probe::Webhook(bytes, headers) => {
            let mut request = app
                .http
                .post(app.url(&format!("/api/v1/webhooks/{}", target.source)))
                .header("content-type", "application/json")
                .body(bytes.clone());
            for (name, value) in headers {
                request = request.header(name.as_str(), value.as_str());
            }
            return request.send().await.expect("the app answers");
        }
    };
    request
        .bearer_auth(&target.token)
        .send()
        .await
        .expect("the app answers")
}

#[test]
fn arbitrary_requests_never_get_a_5xx_and_every_4xx_is_an_envelope() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let target = runtime.block_on(async {
        let app = TestApp::spawn_with(|s| {
            s.render_limits.time_budget = std::time::Duration::from_secs(2);
            s.launch_rate_limit_per_minute = 0;
        })
        .await;
        let token = harness::token("merchant-a").await;
        let configuration =
            crate::configurations::created_id(&app, &token, &statement_config("Target")).await;
        let (source, _) = crate::inbound_webhooks::new_source(&app, harness::MERCHANT_A).await;
        let batch = crate::batches::new_batch(&app, &token, &configuration, json!({})).await;
        let batch = batch["id"].as_str().expect("a batch").to_owned();
        Target {
            app,
            token,
            configuration,
            source,
            batch,
        }
    });
    let ran = AtomicUsize::new(0);
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::<u16, usize>::new());
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&probe(), |probe| {
        ran.fetch_add(1, Ordering::Relaxed);
        let (status, body) = runtime.block_on(async {
            let response = send(&target, &probe).await;
            let status = response.status();
            (status, response.bytes().await.unwrap_or_default())
        });
        *seen.lock().unwrap().entry(status.as_u16()).or_default() += 1;
        prop_assert!(
            !status.is_server_error(),
            "{status} for {probe:?}: {}",
            String::from_utf8_lossy(&body)
        );
        if status.is_client_error() {
            let envelope: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            prop_assert!(
                envelope["error"]["code"].is_string()
                    && envelope["error"]["message"].is_string()
                    && envelope["error"]["requestId"].is_string(),
                "{status} without an envelope for {probe:?}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(())
    });
    let statuses = seen.into_inner().unwrap();
    println!(
        "request fuzz: {} cases run, statuses {statuses:?}",
        ran.load(Ordering::Relaxed)
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
