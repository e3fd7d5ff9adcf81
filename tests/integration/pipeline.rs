//! The bundle pipeline end to end: launch → queue → worker → S3 + signed manifest → read,
//! and the faults it must survive without losing or doubling anything.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::configurations::{create, statement_config};
use crate::harness::{self, download, TestApp};

fn seed() -> Value {
    json!({
        "merchant": {"name": "Acme GmbH"},
        "period": "2026-10",
        "lines": [
            {"description": "Widgets", "amount": 37.5},
            {"description": "Gadgets", "amount": 12}
        ]
    })
}

/// A fresh statements configuration of merchant `token`; its id.
pub async fn configuration(app: &TestApp, token: &str) -> String {
    let created: Value = create(app, token, &statement_config("Statements"))
        .await
        .json()
        .await
        .unwrap();
    created["id"].as_str().unwrap().to_owned()
}

async fn launched(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/v1/bundles/{}", body["id"].as_str().unwrap())
    );
    body
}

/// Verifies `signature` over `message` with the key `key_id` from `/api/v1/signing-keys`, as
/// `docbundle verify` does.
pub(crate) async fn verify_with_published_key(
    app: &TestApp,
    token: &str,
    key_id: &str,
    message: &[u8],
    signature: &str,
) -> bool {
    let jwks: Value = app.get_json("/api/v1/signing-keys", token).await;
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == key_id)
        .expect("published key");
    assert_eq!(
        (&jwk["kty"], &jwk["crv"], &jwk["alg"]),
        (&json!("OKP"), &json!("Ed25519"), &json!("EdDSA"))
    );
    let jwks = serde_json::from_value(jwks).expect("a JWKS");
    docbundle_local::verify::verify_manifest(message, signature, key_id, &jwks).is_ok()
}

#[tokio::test]
async fn a_launched_bundle_completes_with_verifiable_artefacts_and_a_signed_manifest() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let config = configuration(&app, &token).await;
    let run = launched(
        app.launch(&token, &json!({"configurationId": config, "seed": seed()}))
            .await,
    )
    .await;
    assert_eq!(run["status"], "pending");
    assert_eq!(run["merchantId"], harness::MERCHANT_A);
    assert_eq!(run["configurationVersion"], 1);
    assert_eq!(run["triggeredByType"], "user");
    assert_eq!(run["triggeredById"], "service-account-merchant-a");
    assert!(run["replayOf"].is_null());
    let expected_hash = docbundle::domain::seed::CanonicalSeed::of(&seed())
        .unwrap()
        .hash;
    assert_eq!(run["seedHash"], expected_hash.as_str());

    let done = app.run_to_end(&token, run["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(done["completedAt"].is_string() && done["startedAt"].is_string());
    let artefacts = done["artefacts"].as_array().unwrap();
    let names: Vec<&str> = artefacts
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["bundle.zip", "lines.csv", "statement.html", "summary.json"]
    );

    for artefact in artefacts {
        let bytes = download(artefact["downloadUrl"].as_str().unwrap()).await;
        assert_eq!(
            docbundle::domain::digest::sha256_hex(&bytes),
            artefact["sha256"].as_str().unwrap()
        );
        assert_eq!(bytes.len() as i64, artefact["size"].as_i64().unwrap());
    }
    let csv = download(artefacts[1]["downloadUrl"].as_str().unwrap()).await;
    assert_eq!(
        String::from_utf8(csv).unwrap(),
        "description,amount\nWidgets,37.5\nGadgets,12\n"
    );

    let manifest = &done["manifest"];
    let bytes = download(manifest["downloadUrl"].as_str().unwrap()).await;
    assert_eq!(
        docbundle::domain::digest::sha256_hex(&bytes),
        manifest["sha256"].as_str().unwrap()
    );
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["schema"], "docbundle.manifest/v1");
    assert_eq!(body["runId"], done["id"]);
    assert_eq!(body["seedHash"], expected_hash.as_str());
    assert_eq!(body["artefacts"].as_array().unwrap().len(), 4);
    for (listed, served) in body["artefacts"].as_array().unwrap().iter().zip(artefacts) {
        assert_eq!(listed["sha256"], served["sha256"]);
        assert_eq!(
            listed["key"].as_str().unwrap(),
            format!(
                "merchants/{}/runs/{}/artefacts/{}",
                harness::MERCHANT_A,
                done["id"].as_str().unwrap(),
                listed["name"].as_str().unwrap()
            )
        );
    }
    let lines: String = body["artefacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} {}\n",
                a["sha256"].as_str().unwrap(),
                a["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        body["bundleDigest"].as_str().unwrap(),
        docbundle::domain::digest::sha256_hex(lines.as_bytes())
    );

    let key_id = manifest["keyId"].as_str().unwrap();
    assert!(key_id.starts_with("manifest-signing:"));
    let signature = manifest["signature"].as_str().unwrap();
    assert!(verify_with_published_key(&app, &token, key_id, &bytes, signature).await);
    let mut tampered = bytes.clone();
    tampered[10] ^= 1;
    assert!(!verify_with_published_key(&app, &token, key_id, &tampered, signature).await);

    // `docbundle verify` on a downloaded bundle: tests/integration/cli.rs.

    // Another merchant sees nothing.
    let other = harness::token("merchant-b").await;
    let response = app
        .http
        .get(app.url(&format!("/api/v1/bundles/{}", done["id"].as_str().unwrap())))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    harness::assert_envelope(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let list: Value = app.get_json("/api/v1/bundles", &other).await;
    assert_eq!(list["items"], json!([]));
    let response = app
        .launch(&other, &json!({"configurationId": config}))
        .await;
    harness::assert_envelope(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

#[tokio::test]
async fn a_replay_reproduces_identical_artefacts_even_after_the_configuration_changed() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let config = configuration(&app, &token).await;
    let first = launched(
        app.launch(&token, &json!({"configurationId": config, "seed": seed()}))
            .await,
    )
    .await;
    let first = app.run_to_end(&token, first["id"].as_str().unwrap()).await;
    assert_eq!(first["status"], "completed");

    // Version 2 changes a template; the replay still pins version 1.
    let mut changed = statement_config("Statements");
    changed["documents"][0]["template"] = json!("<h1>CHANGED {{ data.merchant.name }}</h1>");
    let response = app
        .http
        .put(app.url(&format!("/api/v1/configurations/{config}")))
        .bearer_auth(&token)
        .header("if-match", "\"v1\"")
        .json(&changed)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let replay = launched(
        app.launch(
            &token,
            &json!({"configurationId": config, "forcingOptions": {"replayRunId": first["id"]}}),
        )
        .await,
    )
    .await;
    assert_eq!(replay["triggeredByType"], "replay");
    assert_eq!(replay["replayOf"], first["id"]);
    assert_eq!(replay["configurationVersion"], 1);
    assert_eq!(replay["seedHash"], first["seedHash"]);
    let replay = app.run_to_end(&token, replay["id"].as_str().unwrap()).await;
    assert_eq!(replay["status"], "completed");
    assert_eq!(
        replay["manifest"]["replay"],
        json!({"of": first["id"], "identical": true})
    );
    let hashes = |run: &Value| {
        run["artefacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["name"].clone(), a["sha256"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(hashes(&replay), hashes(&first));
    assert_eq!(
        replay["manifest"]["bundleDigest"],
        first["manifest"]["bundleDigest"]
    );

    // A fresh launch uses version 2 and differs.
    let fresh = launched(
        app.launch(&token, &json!({"configurationId": config, "seed": seed()}))
            .await,
    )
    .await;
    assert_eq!(fresh["configurationVersion"], 2);
    let fresh = app.run_to_end(&token, fresh["id"].as_str().unwrap()).await;
    assert_ne!(
        fresh["manifest"]["bundleDigest"],
        first["manifest"]["bundleDigest"]
    );

    // Replays must name a completed run of this merchant and no seed.
    let response = app.launch(&token, &json!({"configurationId": config, "seed": seed(), "forcingOptions": {"replayRunId": first["id"]}})).await;
    harness::assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let response = app
        .launch(
            &token,
            &json!({"configurationId": config, "forcingOptions": {"replayRunId": Uuid::new_v4()}}),
        )
        .await;
    harness::assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
}

#[tokio::test]
async fn idempotency_keys_answer_repeats_and_refuse_other_bodies() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let config = configuration(&app, &token).await;
    let body = json!({"configurationId": config, "seed": seed()});
    let send = |body: Value, key: &'static str| {
        let request = app
            .http
            .post(app.url("/api/v1/bundles"))
            .bearer_auth(&token)
            .header("idempotency-key", key)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let first = send(body.clone(), "key-1").await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    // Same body with other key order: the same request.
    let reordered = json!({"seed": seed(), "configurationId": config});
    let again = send(reordered, "key-1").await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let other = send(json!({"configurationId": config}), "key-1").await;
    harness::assert_envelope(other, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;

    // Concurrent first uses of one key launch one run.
    let (a, b) = tokio::join!(send(body.clone(), "key-2"), send(body.clone(), "key-2"));
    let (a, b): (Value, Value) = (a.json().await.unwrap(), b.json().await.unwrap());
    assert_eq!(a["id"], b["id"]);
    let conn = app.state.db.get().await.unwrap();
    let count: i64 = conn
        .query_one("SELECT count(*) FROM bundle_runs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 2, "key-1 and key-2 launched one run each");
}

#[tokio::test]
async fn seeds_are_content_addressed_and_validated() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let config = configuration(&app, &token).await;
    let hash = docbundle::domain::seed::CanonicalSeed::of(&seed())
        .unwrap()
        .hash;

    // Unknown hash, then the seed is stored by a launch, then the hash alone works.
    let response = app
        .launch(
            &token,
            &json!({"configurationId": config, "seedHash": hash}),
        )
        .await;
    let body = harness::assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(body["error"]["details"][0]["field"], "seedHash");
    launched(
        app.launch(
            &token,
            &json!({"configurationId": config, "seed": seed(), "seedHash": hash}),
        )
        .await,
    )
    .await;
    let by_hash = launched(
        app.launch(
            &token,
            &json!({"configurationId": config, "seedHash": hash}),
        )
        .await,
    )
    .await;
    assert_eq!(by_hash["seedHash"], hash.as_str());
    let conn = app.state.db.get().await.unwrap();
    let seeds: i64 = conn
        .query_one("SELECT count(*) FROM seeds", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(seeds, 1, "stored once");

    let response = app
        .launch(
            &token,
            &json!({"configurationId": config, "seed": seed(), "seedHash": "0".repeat(64)}),
        )
        .await;
    harness::assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let response = app
        .launch(
            &token,
            &json!({"configurationId": config, "seedHash": "XYZ"}),
        )
        .await;
    harness::assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;

    // Neither: the configuration's defaults.
    let defaults = launched(
        app.launch(&token, &json!({"configurationId": config}))
            .await,
    )
    .await;
    let defaults_hash =
        docbundle::domain::seed::CanonicalSeed::of(&statement_config("x")["defaults"])
            .unwrap()
            .hash;
    assert_eq!(defaults["seedHash"], defaults_hash.as_str());

    // Schema violations name the fields; skipping needs bundle.force.
    let bad = json!({"merchant": {"name": 7}, "lines": "none"});
    let response = app
        .launch(&token, &json!({"configurationId": config, "seed": bad}))
        .await;
    let body = harness::assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let fields: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"seed.merchant.name")
            && fields.contains(&"seed.lines")
            && fields.contains(&"seed"),
        "{fields:?}"
    );
    let mut claims = harness::valid_claims();
    claims.insert("scope".into(), json!("bundle.read bundle.write"));
    let no_force = harness::sign_as_issuer(&claims);
    let forced = json!({"configurationId": config, "seed": bad, "forcingOptions": {"skipValidations": true}});
    harness::assert_envelope(
        app.launch(&no_force, &forced).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;
    let run = launched(app.launch(&token, &forced).await).await;
    assert_eq!(run["runParameters"], json!({"skipValidations": true}));

    // Unknown fields, an unknown configuration and an archived one.
    let response = app
        .launch(&token, &json!({"configurationId": config, "sede": {}}))
        .await;
    harness::assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let response = app
        .launch(&token, &json!({"configurationId": Uuid::new_v4()}))
        .await;
    harness::assert_envelope(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    app.http
        .delete(app.url(&format!("/api/v1/configurations/{config}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let response = app
        .launch(&token, &json!({"configurationId": config}))
        .await;
    harness::assert_envelope(response, StatusCode::CONFLICT, "CONFLICT").await;
}

#[tokio::test]
async fn runs_are_listed_newest_first_with_filters() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let config = configuration(&app, &token).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let run = launched(app.launch(&token, &json!({"configurationId": config, "seed": {"merchant": {"name": format!("M{i}")}, "period": "p"}})).await).await;
        ids.push(run["id"].as_str().unwrap().to_owned());
    }
    let page: Value = app.get_json("/api/v1/bundles?limit=3", &token).await;
    let first: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        first,
        vec![ids[4].as_str(), ids[3].as_str(), ids[2].as_str()]
    );
    let next: Value = app
        .http
        .get(app.url(&format!(
            "/api/v1/bundles?limit=3&cursor={}",
            page["nextCursor"].as_str().unwrap()
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(next["items"].as_array().unwrap().len(), 2);
    assert!(next["nextCursor"].is_null());
    let filtered: Value = app
        .get_json(
            &format!(
                "/api/v1/bundles?configurationId={config}&status=pending&triggeredByType=user"
            ),
            &token,
        )
        .await;
    assert_eq!(filtered["items"].as_array().unwrap().len(), 5);
    let none: Value = app.get_json("/api/v1/bundles?status=failed", &token).await;
    assert_eq!(none["items"], json!([]));
    let response = app
        .http
        .get(app.url("/api/v1/bundles?status=lost"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    harness::assert_envelope(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
}

/// The same app served again with SQS (and S3) unreachable: its base URL and server task.
async fn serve_without_sqs(app: &TestApp) -> (String, tokio::task::JoinHandle<()>) {
    let broken = app
        .state_with(|s| {
            s.aws_endpoint_url = Some("http://127.0.0.1:9".to_owned());
            s.dependency_timeout = Duration::from_secs(2);
        })
        .await;
    harness::serve(broken).await
}

#[tokio::test]
async fn launches_survive_an_unreachable_queue_through_the_outbox_relay() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let config = configuration(&app, &token).await;
    let (base, _server) = serve_without_sqs(&app).await;
    let response = app
        .http
        .post(format!("{base}/api/v1/bundles"))
        .bearer_auth(&token)
        .json(&json!({"configurationId": config, "seed": seed()}))
        .send()
        .await
        .unwrap();
    let run = launched(response).await;
    let id = Uuid::parse_str(run["id"].as_str().unwrap()).unwrap();

    let conn = app.state.db.get().await.unwrap();
    let row = conn
        .query_one(
            "SELECT sent_at IS NULL AS unsent, attempts, last_error FROM outbox WHERE run_id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>("unsent"));
    assert!(row.get::<_, Option<String>>("last_error").is_some());
    assert!(
        app.state
            .queue
            .receive(10, Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty(),
        "nothing reached the queue"
    );

    // SQS is back: the relay (which leaves rows younger than a few seconds to their launch)
    // sends it, and the worker completes it.
    tokio::time::sleep(docbundle::app::jobs::relay::MIN_AGE + Duration::from_millis(500)).await;
    let report = docbundle::app::jobs::relay::run(&app.state).await.unwrap();
    assert_eq!(report.sent, 1);
    let done = app.run_to_end(&token, &id.to_string()).await;
    assert_eq!(done["status"], "completed");
    let sent: bool = conn
        .query_one(
            "SELECT sent_at IS NOT NULL FROM outbox WHERE run_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(sent);
    assert_eq!(
        docbundle::app::jobs::relay::run(&app.state)
            .await
            .unwrap()
            .sent,
        0,
        "sent once"
    );
}

/// A transient fault on the last attempt the queue will deliver fails the run with the cause,
/// instead of leaving it `processing` while its message sits in the dead-letter queue.
#[tokio::test]
async fn a_transient_fault_on_the_last_attempt_fails_the_run() {
    let app = TestApp::spawn_with(|s| s.run_max_attempts = 2).await;
    let token = harness::token("merchant-a").await;
    let config = configuration(&app, &token).await;
    let run = launched(
        app.launch(&token, &json!({"configurationId": config, "seed": seed()}))
            .await,
    )
    .await;
    let id = Uuid::parse_str(run["id"].as_str().unwrap()).unwrap();
    // Storage unreachable: uploads fail.
    let broken = app
        .state_with(|s| {
            s.aws_endpoint_url = Some("http://127.0.0.1:9".to_owned());
            s.dependency_timeout = Duration::from_secs(1);
        })
        .await;
    let message = docbundle::domain::outbox::RunMessage {
        run_id: id,
        merchant_id: harness::MERCHANT_A.parse().unwrap(),
    };
    let first = bundle_worker::process_run(&broken, &message).await;
    assert!(first.is_err(), "attempt 1 of 2 is retried: {first:?}");
    let second = bundle_worker::process_run(&broken, &message).await.unwrap();
    assert!(
        matches!(&second, bundle_worker::Outcome::Failed(m) if m.contains("after 2 attempts")),
        "{second:?}"
    );
    let failed = app.get_json(&format!("/api/v1/bundles/{id}"), &token).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "RETRIES_EXHAUSTED");
    assert_eq!(failed["attempts"], 2);
}

/// A run whose worker vanished mid-run (its message dead-lettered, or the function timed out
/// on the last delivery) is failed by the scheduled sweep; a run in progress is left alone.
#[tokio::test]
async fn the_scheduled_sweep_fails_stalled_runs_and_only_those() {
    let app = TestApp::spawn_with(|s| s.run_stale_after = Duration::from_secs(60)).await;
    let token = harness::token("merchant-a").await;
    let config = configuration(&app, &token).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let run = launched(
            app.launch(&token, &json!({"configurationId": config, "seed": seed()}))
                .await,
        )
        .await;
        ids.push(Uuid::parse_str(run["id"].as_str().unwrap()).unwrap());
    }
    let conn = app.state.db.get().await.unwrap();
    conn.execute(
        "UPDATE bundle_runs SET status = 'processing', attempts = 1,
                started_at = now() - interval '2 minutes', updated_at = now() - interval '2 minutes'
          WHERE id = $1",
        &[&ids[0]],
    )
    .await
    .unwrap();
    conn.execute(
        "UPDATE bundle_runs SET status = 'processing', attempts = 1, started_at = now(),
                updated_at = now()
          WHERE id = $1",
        &[&ids[1]],
    )
    .await
    .unwrap();
    let report = docbundle::app::jobs::scheduled_pass(&app.state)
        .await
        .unwrap();
    assert_eq!(report.stalled_runs_failed, 1);
    let stalled = app
        .get_json(&format!("/api/v1/bundles/{}", ids[0]), &token)
        .await;
    assert_eq!(stalled["status"], "failed");
    assert_eq!(stalled["error"]["code"], "RUN_STALLED");
    let running = app
        .get_json(&format!("/api/v1/bundles/{}", ids[1]), &token)
        .await;
    assert_eq!(running["status"], "processing");
    assert_eq!(
        docbundle::app::jobs::scheduled_pass(&app.state)
            .await
            .unwrap()
            .stalled_runs_failed,
        0
    );
}

/// A dead letter fails its run once (`RETRIES_EXHAUSTED`); a repeat, a finished run and a
/// message that names no run change nothing.
#[tokio::test]
async fn dead_letters_fail_their_unfinished_runs_once() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let config = configuration(&app, &token).await;
    let run = launched(
        app.launch(&token, &json!({"configurationId": config, "seed": seed()}))
            .await,
    )
    .await;
    let id = Uuid::parse_str(run["id"].as_str().unwrap()).unwrap();
    let letter = serde_json::to_string(&docbundle::domain::outbox::RunMessage {
        run_id: id,
        merchant_id: harness::MERCHANT_A.parse().unwrap(),
    })
    .unwrap();
    let mut event = batch_of(&[letter.clone(), "not a run".to_owned()]);
    event.records[0]
        .attributes
        .insert("ApproximateReceiveCount".into(), "5".into());
    assert_eq!(
        dead_letters::settle(&app.state, &event.records[0])
            .await
            .unwrap(),
        dead_letters::Settled::Failed
    );
    assert_eq!(
        dead_letters::settle(&app.state, &event.records[1])
            .await
            .unwrap(),
        dead_letters::Settled::Unreadable
    );
    let failed = app.get_json(&format!("/api/v1/bundles/{id}"), &token).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "RETRIES_EXHAUSTED");
    assert!(failed["error"]["message"]
        .as_str()
        .unwrap()
        .contains("5 deliveries"));
    // Idempotent, and nothing left to retry.
    let response = dead_letters::handle_batch(&app.state, event).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        app.get_json(&format!("/api/v1/bundles/{id}"), &token).await["error"],
        failed["error"]
    );
}

/// The relay moves any event kind to its destination without knowing it, and leaves a row
/// whose destination this build does not know (recording why) instead of dropping it.
#[tokio::test]
async fn the_relay_publishes_any_kind_of_event_and_keeps_what_it_cannot_route() {
    let app = TestApp::spawn().await;
    let conn = app.state.db.get().await.unwrap();
    conn.execute(
        "INSERT INTO outbox (kind, destination, payload, created_at) VALUES
           ('test.other_kind', 'runs', '{\"hello\": \"relay\"}', now() - interval '1 minute'),
           ('test.other_kind', 'nowhere', '{}', now() - interval '1 minute')",
        &[],
    )
    .await
    .unwrap();
    let report = docbundle::app::jobs::relay::run(&app.state).await.unwrap();
    assert_eq!((report.sent, report.failed), (1, 1));
    let messages = app
        .state
        .queue
        .receive(10, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(messages.len(), 1);
    let body: Value = serde_json::from_str(messages[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(body, json!({"hello": "relay"}));
    let kept = conn
        .query_one(
            "SELECT sent_at IS NULL, last_error FROM outbox WHERE destination = 'nowhere'",
            &[],
        )
        .await
        .unwrap();
    assert!(kept.get::<_, bool>(0));
    assert!(kept
        .get::<_, Option<String>>(1)
        .unwrap()
        .contains("unknown destination"));
    // What the backlog alarm watches: the unpublished event has waited its minute.
    let age = docbundle::infra::db::outbox::oldest_pending_age(&app.state.db)
        .await
        .unwrap()
        .unwrap();
    assert!((59.0..3600.0).contains(&age), "{age}");
}

/// An SQS batch of `bodies`, as the event source mapping delivers it.
pub fn batch_of(bodies: &[String]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let mut m = SqsMessage::default();
            m.message_id = Some(format!("m-{i}"));
            m.body = Some(body.clone());
            m
        })
        .collect();
    event
}

async fn pending_run(app: &TestApp, token: &str, config: &str, seed: Value) -> (Uuid, String) {
    let run = launched(
        app.launch(token, &json!({"configurationId": config, "seed": seed}))
            .await,
    )
    .await;
    let id = Uuid::parse_str(run["id"].as_str().unwrap()).unwrap();
    // Take the launch's message off the queue: the test delivers it by hand.
    let messages = app
        .state
        .queue
        .receive(10, Duration::from_secs(1))
        .await
        .unwrap();
    for m in &messages {
        app.state
            .queue
            .delete(m.receipt_handle.as_deref().unwrap())
            .await
            .unwrap();
    }
    let body = json!({"runId": id, "merchantId": harness::MERCHANT_A}).to_string();
    (id, body)
}

async fn counts(app: &TestApp, id: Uuid) -> (String, i64, i64) {
    let conn = app.state.db.get().await.unwrap();
    let status: String = conn
        .query_one("SELECT status FROM bundle_runs WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    let manifests: i64 = conn
        .query_one("SELECT count(*) FROM manifests WHERE run_id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    let artefacts: i64 = conn
        .query_one("SELECT count(*) FROM artefacts WHERE run_id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    (status, manifests, artefacts)
}

#[tokio::test]
async fn duplicate_concurrent_deliveries_complete_once() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let config = configuration(&app, &token).await;
    let (id, body) = pending_run(&app, &token, &config, seed()).await;
    let twice = batch_of(&[body.clone(), body.clone()]);
    let (a, b) = tokio::join!(
        bundle_worker::handle_batch(&app.state, twice.clone()),
        bundle_worker::handle_batch(&app.state, twice)
    );
    assert!(a.batch_item_failures.is_empty() && b.batch_item_failures.is_empty());
    assert_eq!(counts(&app, id).await, ("completed".to_owned(), 1, 4));
    // A late redelivery is acknowledged without work.
    let late = bundle_worker::handle_batch(&app.state, batch_of(&[body])).await;
    assert!(late.batch_item_failures.is_empty());
    assert_eq!(counts(&app, id).await, ("completed".to_owned(), 1, 4));
}

#[tokio::test]
async fn vault_or_s3_failing_mid_run_leaves_it_for_redelivery_and_it_completes_after() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let config = configuration(&app, &token).await;

    // Vault unreachable: artefacts are uploaded, signing fails, the run is not completed.
    let (id, body) = pending_run(&app, &token, &config, seed()).await;
    let no_vault = app
        .state_with(|s| {
            s.vault.addr = "http://127.0.0.1:9".to_owned();
            s.dependency_timeout = Duration::from_secs(2);
        })
        .await;
    let response =
        bundle_worker::handle_batch(&no_vault, batch_of(std::slice::from_ref(&body))).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(counts(&app, id).await, ("processing".to_owned(), 0, 0));
    let response = bundle_worker::handle_batch(&app.state, batch_of(&[body])).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(counts(&app, id).await, ("completed".to_owned(), 1, 4));

    // S3 refusing uploads (a bucket that does not exist).
    let (id, body) = pending_run(
        &app,
        &token,
        &config,
        json!({"merchant": {"name": "Other"}, "period": "p"}),
    )
    .await;
    let no_s3 = app
        .state_with(|s| s.artefact_bucket = format!("missing-{}", Uuid::new_v4()))
        .await;
    let response = bundle_worker::handle_batch(&no_s3, batch_of(std::slice::from_ref(&body))).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(counts(&app, id).await, ("processing".to_owned(), 0, 0));
    let response = bundle_worker::handle_batch(&app.state, batch_of(&[body])).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(counts(&app, id).await, ("completed".to_owned(), 1, 4));
    let conn = app.state.db.get().await.unwrap();
    let attempts: i32 = conn
        .query_one("SELECT attempts FROM bundle_runs WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(attempts, 2);
}

#[tokio::test]
async fn a_template_error_on_this_seed_fails_the_run_without_retries() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let mut body = statement_config("Fragile");
    body["documents"][0]["template"] =
        json!("{% if data.explode %}{{ data.merchant.name + 1 }}{% endif %}ok");
    body["dataSchema"]["properties"]["explode"] = json!({"type": "boolean"});
    let created: Value = create(&app, &token, &body).await.json().await.unwrap();
    let config = created["id"].as_str().unwrap().to_owned();
    let mut bad_seed = seed();
    bad_seed["explode"] = json!(true);
    let run = launched(
        app.launch(
            &token,
            &json!({"configurationId": config, "seed": bad_seed}),
        )
        .await,
    )
    .await;
    let done = app.run_to_end(&token, run["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["code"], "TEMPLATE_ERROR");
    assert_eq!(done["error"]["document"], "statement.html");
    assert!(done["error"]["message"]
        .as_str()
        .unwrap()
        .contains("statement.html"));
    assert!(done.get("manifest").is_none());
    // Acknowledged: after the visibility timeout nothing comes back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(app
        .state
        .queue
        .receive(10, Duration::from_secs(1))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn concurrent_launches_all_complete_once() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let config = configuration(&app, &token).await;
    let launches = (0..40).map(|i| {
        let body = json!({"configurationId": config, "seed": {"merchant": {"name": format!("Merchant {i}")}, "period": "2026-11"}});
        let request = app.http.post(app.url("/api/v1/bundles")).bearer_auth(&token).json(&body);
        async move { request.send().await.unwrap().status() }
    });
    let statuses = futures::future::join_all(launches).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::ACCEPTED));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let poller = tokio::spawn(docbundle_local::poller::run(app.state.clone(), 4, stopped));
    let conn = app.state.db.get().await.unwrap();
    let mut completed = 0;
    for _ in 0..240 {
        completed = conn
            .query_one(
                "SELECT count(*) FROM bundle_runs WHERE status = 'completed'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        if completed == 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = stop.send(true);
    let _ = poller.await;
    assert_eq!(completed, 40);
    let manifests: i64 = conn
        .query_one("SELECT count(*) FROM manifests", &[])
        .await
        .unwrap()
        .get(0);
    let runs: i64 = conn
        .query_one("SELECT count(*) FROM bundle_runs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!((runs, manifests), (40, 40));
}

/// The X-Ray trace of the launch (API Gateway's `x-amzn-trace-id`, or the Lambda invocation's
/// own) travels with the run message as its `AWSTraceHeader`, also when the outbox relay sends
/// it later, and the worker reads it back; a malformed trace header is dropped, not sent.
#[tokio::test]
async fn the_launch_trace_reaches_the_worker_through_the_queue_and_the_relay() {
    const TRACE: &str =
        "Root=1-6745a1b2-5e8f0c1d2a3b4c5d6e7f8091;Parent=53995c3f42cd8ad8;Sampled=1";
    const RELAYED: &str = "Root=1-6745a1b3-000000000000000000000001;Sampled=1";
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let config = configuration(&app, &token).await;
    let launch_traced = |base: String, trace: &'static str| {
        let http = app.http.clone();
        let token = token.clone();
        let config = config.clone();
        async move {
            let response = http
                .post(format!("{base}/api/v1/bundles"))
                .bearer_auth(&token)
                .header("x-amzn-trace-id", trace)
                .json(&json!({"configurationId": config, "seed": seed()}))
                .send()
                .await
                .unwrap();
            launched(response).await["id"].as_str().unwrap().to_owned()
        }
    };
    let traces_on_queue = || async {
        let mut traces = std::collections::BTreeMap::new();
        for message in app
            .state
            .queue
            .receive(10, Duration::from_secs(2))
            .await
            .unwrap()
        {
            let record = docbundle_local::poller::to_lambda_record(message, "arn", "us-east-1");
            let run: docbundle::domain::outbox::RunMessage =
                serde_json::from_str(record.body.as_deref().unwrap()).unwrap();
            let trace = bundle_worker::trace_of(&record).map(|t| t.to_string());
            traces.insert(run.run_id.to_string(), trace);
        }
        traces
    };

    let traced = launch_traced(app.base.clone(), TRACE).await;
    let untraced = launch_traced(app.base.clone(), "Root=1-not-a-trace").await;
    let traces = traces_on_queue().await;
    assert_eq!(
        traces.get(&traced),
        Some(&Some(TRACE.to_owned())),
        "{traces:?}"
    );
    assert_eq!(traces.get(&untraced), Some(&None), "{traces:?}");

    // SQS unreachable at launch: the trace waits in the outbox with the event.
    let (base, _server) = serve_without_sqs(&app).await;
    let relayed = launch_traced(base, RELAYED).await;
    let conn = app.state.db.get().await.unwrap();
    let stored: Option<String> = conn
        .query_one(
            "SELECT trace_header FROM outbox WHERE run_id = $1",
            &[&Uuid::parse_str(&relayed).unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored.as_deref(), Some(RELAYED));
    tokio::time::sleep(docbundle::app::jobs::relay::MIN_AGE + Duration::from_millis(500)).await;
    assert_eq!(
        docbundle::app::jobs::relay::run(&app.state)
            .await
            .unwrap()
            .sent,
        1
    );
    let traces = traces_on_queue().await;
    assert_eq!(
        traces.get(&relayed),
        Some(&Some(RELAYED.to_owned())),
        "{traces:?}"
    );
}
