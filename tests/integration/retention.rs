//! Retention and legal holds against the real stack: a configuration that keeps its runs'
//! artefacts and seeds a minute, a versioned bucket as the deployment's, the retention job's
//! passes, and what a user checks afterwards — the objects gone (every version), the run
//! `expired`, downloads `410`, the manifest and its proof still there and a copy downloaded
//! before still verifying; a held run kept until its hold is released.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Digest;
use uuid::Uuid;

use crate::cli::{stderr, User};
use crate::harness::{self, assert_envelope, TestApp, MERCHANT_A};

/// A fresh bucket with versioning on, as the template's artefact bucket is.
async fn versioned_bucket() -> String {
    let settings = harness::stack_settings();
    let s3 = s3_client(&settings).await;
    let bucket = format!("docbundle-artefacts-{}", Uuid::new_v4().simple());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    bucket
}

async fn s3_client(settings: &docbundle::config::Settings) -> aws_sdk_s3::Client {
    let config = harness::aws_config(settings).await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    )
}

/// Every version and delete marker under `prefix`, as `(key, is a delete marker)`.
async fn versions(app: &TestApp, prefix: &str) -> Vec<(String, bool)> {
    let s3 = s3_client(&app.state.settings).await;
    let listed = s3
        .list_object_versions()
        .bucket(&app.state.settings.artefact_bucket)
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    let mut found: Vec<(String, bool)> = listed
        .versions()
        .iter()
        .map(|v| (v.key().unwrap().to_owned(), false))
        .collect();
    found.extend(
        listed
            .delete_markers()
            .iter()
            .map(|m| (m.key().unwrap().to_owned(), true)),
    );
    found
}

fn config(name: &str, retention: Value) -> Value {
    json!({
        "name": name,
        "defaults": {"customer": {"id": "C-0"}},
        "documents": [{"name": "statement.txt", "format": "txt",
                       "template": "Statement for {{ data.customer.id }}"}],
        "retention": retention,
    })
}

async fn launched(app: &TestApp, token: &str, configuration: &str, customer: &str) -> String {
    let response = app
        .launch(
            token,
            &json!({"configurationId": configuration, "seed": {"customer": {"id": customer}}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

async fn post(app: &TestApp, path: &str, token: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The answer of `GET` on an artefact, its redirect not followed.
async fn artefact(app: &TestApp, token: &str, run: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url(&format!("/api/v1/bundles/{run}/artefacts/statement.txt")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn time(value: &Value) -> chrono::DateTime<chrono::Utc> {
    value.as_str().unwrap().parse().unwrap()
}

/// Runs a long scenario on a thread of its own with room for its (debug-build) futures.
fn on_a_large_stack<F: std::future::Future<Output = ()> + 'static>(
    scenario: impl FnOnce() -> F + Send + 'static,
) {
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(Box::pin(scenario()))
        })
        .unwrap()
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}

#[test]
fn a_run_expires_its_artefacts_go_and_its_proof_and_held_runs_remain() {
    on_a_large_stack(expiry_scenario);
}

/// One retention pass, as the scheduler runs it.
async fn retention_pass(app: &TestApp) -> docbundle::app::retention::RetentionReport {
    Box::pin(docbundle::app::jobs::retention::run(&app.state))
        .await
        .unwrap()
}

async fn expiry_scenario() {
    let bucket = versioned_bucket().await;
    let app = TestApp::spawn_with(|s| s.artefact_bucket = bucket).await;
    let token = harness::token("merchant-a").await;
    let kept_a_minute = json!({"artefacts": "PT1M", "seeds": "PT1M"});
    let cfg =
        crate::configurations::created_id(&app, &token, &config("A minute", kept_a_minute.clone()))
            .await;
    let held_cfg =
        crate::configurations::created_id(&app, &token, &config("Held", kept_a_minute)).await;
    let saved = app
        .get_json(&format!("/api/v1/configurations/{cfg}"), &token)
        .await;
    assert_eq!(
        saved["retention"],
        json!({"artefacts": "PT1M", "seeds": "PT1M"})
    );
    let (hears_expiry, _) = crate::completion_webhooks::endpoint(
        &app,
        &token,
        "http://127.0.0.1:9/expired",
        &["run.expired"],
    )
    .await;
    let (hears_completion, _) = crate::completion_webhooks::endpoint(
        &app,
        &token,
        "http://127.0.0.1:9/completed",
        &["run.completed"],
    )
    .await;

    let expiring = launched(&app, &token, &cfg, "C-1").await;
    let held = launched(&app, &token, &cfg, "C-2").await;
    let held_by_configuration = launched(&app, &token, &held_cfg, "C-3").await;
    let mut first = Value::Null;
    for run in [&expiring, &held, &held_by_configuration] {
        let ended = app.run_to_end(&token, run).await;
        assert_eq!(ended["status"], "completed", "{ended}");
        if run == &expiring {
            first = ended;
        }
    }
    // The expiry is computed at completion from the version's retention, and shown.
    let completed_at = time(&first["completedAt"]);
    assert_eq!(
        time(&first["expiresAt"]) - completed_at,
        chrono::Duration::seconds(60)
    );
    assert_eq!(
        time(&first["seedExpiresAt"]) - completed_at,
        chrono::Duration::seconds(60)
    );

    // Holds on one run and on a whole configuration.
    let placed = post(
        &app,
        "/api/v1/holds",
        &token,
        &json!({"runId": held, "reason": "case 42"}),
    )
    .await;
    assert_eq!(placed.status(), StatusCode::CREATED);
    let location = placed.headers()["location"].to_str().unwrap().to_owned();
    let run_hold: Value = placed.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/v1/holds/{}", run_hold["id"].as_str().unwrap())
    );
    assert_eq!(run_hold["placedBy"], "service-account-merchant-a");
    assert_eq!(run_hold["byPlatform"], false);
    let placed = post(
        &app,
        "/api/v1/holds",
        &token,
        &json!({"configurationId": held_cfg, "reason": "audit 2026"}),
    )
    .await;
    assert_eq!(placed.status(), StatusCode::CREATED);
    let held_detail = app
        .get_json(&format!("/api/v1/bundles/{held}"), &token)
        .await;
    assert_eq!(held_detail["legalHolds"], json!([run_hold["id"]]));

    // A copy downloaded before expiry, with its proof of inclusion.
    docbundle::app::transparency::issue_checkpoints(&app.state)
        .await
        .unwrap();
    let user = User::new();
    user.login(&app, "merchant-a").await;
    user.ok(&["download", &expiring, "-o", "kept"]).await;
    assert!(user.path("kept/statement.txt").is_file());
    assert!(user.path("kept/transparency.json").is_file());
    assert_eq!(
        artefact(&app, &token, &expiring).await.status(),
        StatusCode::FOUND
    );
    let prefix = format!("merchants/{MERCHANT_A}/runs/{expiring}/");
    assert_eq!(
        versions(&app, &format!("{prefix}artefacts/")).await.len(),
        1
    );

    // Not before its time.
    let early = retention_pass(&app).await;
    assert_eq!(early.runs_expired, 0, "{early:?}");
    let wait = (time(&first["expiresAt"]) - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_secs(1)).await;
    let pass = retention_pass(&app).await;
    assert_eq!(pass.runs_expired, 1, "{pass:?}");
    assert_eq!(pass.artefacts_purged, 1, "{pass:?}");
    assert_eq!(pass.purges_failed, 0, "{pass:?}");
    assert_eq!(pass.seeds_erased, 1, "{pass:?}");

    // Every version of every artefact is gone; the manifest stays.
    assert_eq!(versions(&app, &format!("{prefix}artefacts/")).await, vec![]);
    let kept = versions(&app, &prefix).await;
    assert!(
        kept.contains(&(format!("{prefix}manifest.json"), false)),
        "{kept:?}"
    );
    let run = app
        .get_json(&format!("/api/v1/bundles/{expiring}"), &token)
        .await;
    assert_eq!(run["status"], "expired", "{run}");
    assert_eq!(run["expiredBy"], "retention");
    assert!(time(&run["expiredAt"]) >= time(&run["expiresAt"]));
    assert_eq!(run["artefacts"][0]["downloadUrl"], Value::Null, "{run}");
    assert_eq!(
        run["artefacts"][0]["sha256"],
        first["artefacts"][0]["sha256"]
    );
    assert_eq!(run["manifest"]["sha256"], first["manifest"]["sha256"]);
    let manifest = harness::download(run["manifest"]["downloadUrl"].as_str().unwrap()).await;
    assert_eq!(
        manifest,
        std::fs::read(user.path("kept/manifest.json")).unwrap()
    );
    assert!(run["transparency"]["inclusionProof"].is_array(), "{run}");

    // Downloads answer 410 with the envelope, the CLI its own exit code.
    let gone = assert_envelope(
        artefact(&app, &token, &expiring).await,
        StatusCode::GONE,
        "GONE",
    )
    .await;
    assert_eq!(gone["error"]["details"]["expiredBy"], "retention");
    let refused = user.run(&["download", &expiring, "-o", "again"]).await;
    assert_eq!(refused.status.code(), Some(6), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("expired"), "{}", stderr(&refused));

    // The copy kept still verifies, against the log too.
    let verified = user.ok(&["verify", "kept"]).await;
    assert!(
        verified.contains("checkpoint signature verified"),
        "{verified}"
    );

    // Its seed is gone: neither a launch by hash nor a replay can use it.
    let by_hash = app
        .launch(
            &token,
            &json!({"configurationId": cfg, "seedHash": first["seedHash"]}),
        )
        .await;
    let refused = assert_envelope(
        by_hash,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(refused["error"]["details"][0]["field"], "seedHash");
    let replay = app
        .launch(
            &token,
            &json!({"configurationId": cfg, "forcingOptions": {"replayRunId": expiring}}),
        )
        .await;
    let refused = assert_envelope(
        replay,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(
        refused["error"]["details"][0]["field"],
        "forcingOptions.replayRunId"
    );

    // An erasure of its seed afterwards finds the run expired already, and says so.
    let by_seed = post(
        &app,
        "/api/v1/erasures",
        &token,
        &json!({"seedHash": first["seedHash"]}),
    )
    .await;
    assert_eq!(by_seed.status(), StatusCode::ACCEPTED);
    let by_seed: Value = by_seed.json().await.unwrap();
    let report = Box::pin(docbundle::app::jobs::erasures::run(&app.state))
        .await
        .unwrap();
    assert_eq!(report.completed, 1, "{report:?}");
    let done = app
        .get_json(
            &format!("/api/v1/erasures/{}", by_seed["id"].as_str().unwrap()),
            &token,
        )
        .await;
    assert_eq!(
        done["items"],
        json!([{"runId": expiring, "seedHash": first["seedHash"], "outcome": "already_expired"}]),
        "{done}"
    );
    assert_eq!(
        (&done["runsErased"], &done["seedsErased"]),
        (&json!(1), &json!(0)),
        "{done}"
    );

    // `run.expired` went to the endpoint that listens for it, and only there.
    let conn = app.state.db.get().await.unwrap();
    let events: Vec<(String, String)> = conn
        .query(
            "SELECT endpoint_id::text, event_type FROM webhook_deliveries WHERE run_id = $1
              ORDER BY event_type",
            &[&Uuid::parse_str(&expiring).unwrap()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        events,
        vec![
            (hears_completion.clone(), "run.completed".to_owned()),
            (hears_expiry.clone(), "run.expired".to_owned()),
        ]
    );
    let payload: String = conn
        .query_one(
            "SELECT payload FROM webhook_deliveries WHERE run_id = $1 AND event_type = 'run.expired'",
            &[&Uuid::parse_str(&expiring).unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    let payload: Value = serde_json::from_str(&payload).unwrap();
    assert_eq!(payload["data"]["status"], "expired");
    assert_eq!(payload["data"]["expiredBy"], "retention");

    // The held runs are untouched, artefacts and seeds.
    for run in [&held, &held_by_configuration] {
        let detail = app
            .get_json(&format!("/api/v1/bundles/{run}"), &token)
            .await;
        assert_eq!(detail["status"], "completed", "{detail}");
        assert_eq!(
            artefact(&app, &token, run).await.status(),
            StatusCode::FOUND
        );
        let seed = app
            .launch(
                &token,
                &json!({"configurationId": cfg, "seedHash": detail["seedHash"]}),
            )
            .await;
        assert_eq!(seed.status(), StatusCode::ACCEPTED, "{run}'s seed is kept");
    }
    // An expired run cannot be held any more.
    let late = post(
        &app,
        "/api/v1/holds",
        &token,
        &json!({"runId": expiring, "reason": "too late"}),
    )
    .await;
    assert_envelope(late, StatusCode::CONFLICT, "CONFLICT").await;

    // Released, the run expires on the next pass; the release is on the record.
    let hold_path = format!("/api/v1/holds/{}", run_hold["id"].as_str().unwrap());
    let released = app.call(reqwest::Method::DELETE, &hold_path, &token).await;
    assert_eq!(released.status(), StatusCode::OK);
    let released: Value = released.json().await.unwrap();
    assert_eq!(released["releasedBy"], "service-account-merchant-a");
    assert!(released["releasedAt"].is_string());
    let again = app.call(reqwest::Method::DELETE, &hold_path, &token).await;
    assert_envelope(again, StatusCode::CONFLICT, "CONFLICT").await;
    let audit = app.get_json("/api/v1/holds?active=false", &token).await;
    assert_eq!(audit["items"][0]["id"], run_hold["id"], "{audit}");
    assert_eq!(audit["items"][0]["reason"], "case 42");
    let in_force = app.get_json("/api/v1/holds?active=true", &token).await;
    assert_eq!(in_force["items"].as_array().unwrap().len(), 1, "{in_force}");

    // Past its expiry but not expired yet (held until now), its download URLs live as long
    // as the setting says, not a second.
    let detail = app
        .get_json(&format!("/api/v1/bundles/{held}"), &token)
        .await;
    assert_eq!(
        detail["downloadUrlsExpireIn"],
        app.state.settings.presign_expiry.as_secs(),
        "{detail}"
    );
    let pass = retention_pass(&app).await;
    assert_eq!(pass.runs_expired, 1, "{pass:?}");
    let detail = app
        .get_json(&format!("/api/v1/bundles/{held}"), &token)
        .await;
    assert_eq!(detail["status"], "expired", "{detail}");
    let detail = app
        .get_json(&format!("/api/v1/bundles/{held_by_configuration}"), &token)
        .await;
    assert_eq!(
        detail["status"], "completed",
        "held by its configuration: {detail}"
    );
}

#[tokio::test]
async fn retention_and_holds_refuse_what_they_cannot_honour() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    for (given, problem) in [
        (json!("P-1D"), "must be \"forever\" or an ISO 8601 duration"),
        (json!("P1000000Y"), "must be at most P100Y"),
        (json!("PT30S"), "must be at least PT1M"),
        (
            json!("P1.5D"),
            "must be \"forever\" or an ISO 8601 duration",
        ),
        (
            json!("1 day"),
            "must be \"forever\" or an ISO 8601 duration",
        ),
        (json!("P9999999999D"), "longer than 9 digits"),
        (json!("P1D\u{0}"), "NUL"),
    ] {
        let response = crate::configurations::create(
            &app,
            &token,
            &config("Bad", json!({"artefacts": given})),
        )
        .await;
        let body = assert_envelope(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        let detail = &body["error"]["details"][0];
        assert_eq!(detail["field"], "retention.artefacts", "{given}: {body}");
        assert!(
            detail["message"].as_str().unwrap().contains(problem),
            "{given}: {body}"
        );
    }
    for hostile in [
        json!({"artefacts": 30}),
        json!({"kept": "P1D"}),
        json!("P1D"),
    ] {
        let response =
            crate::configurations::create(&app, &token, &config("Bad", hostile.clone())).await;
        assert!(response.status().is_client_error(), "{hostile}");
    }
    // What a configuration says nothing about is kept for ever (the platform's default).
    let created = crate::configurations::create(
        &app,
        &token,
        &config("Default seeds", json!({"artefacts": "P10Y"})),
    )
    .await;
    let created: Value = created.json().await.unwrap();
    assert_eq!(
        created["retention"],
        json!({"artefacts": "P10Y", "seeds": "forever"})
    );
    let cfg = created["id"].as_str().unwrap().to_owned();
    let run = launched(&app, &token, &cfg, "C-9").await;

    // Holds: one target, a reason, the caller's own merchant.
    let other = harness::token("merchant-b").await;
    let foreign = post(
        &app,
        "/api/v1/holds",
        &other,
        &json!({"runId": run, "reason": "mine?"}),
    )
    .await;
    assert_envelope(foreign, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    for body in [
        json!({"reason": "nothing"}),
        json!({"runId": run, "configurationId": cfg, "reason": "two"}),
        json!({"runId": run, "reason": "   "}),
        json!({"runId": run, "reason": "x".repeat(501)}),
        json!({"runId": run, "reason": "nul\u{0}"}),
    ] {
        let response = post(&app, "/api/v1/holds", &token, &body).await;
        assert_envelope(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
    }
    let reader = harness::token("merchant-a-reader").await;
    let response = post(
        &app,
        "/api/v1/holds",
        &reader,
        &json!({"runId": run, "reason": "r"}),
    )
    .await;
    assert_envelope(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;

    // The platform's hold is the platform's to release.
    let admin = harness::token("platform-admin").await;
    let placed = post(
        &app,
        &format!("/api/v1/holds?merchantId={MERCHANT_A}"),
        &admin,
        &json!({"configurationId": cfg, "reason": "regulator's request"}),
    )
    .await;
    assert_eq!(placed.status(), StatusCode::CREATED);
    let hold: Value = placed.json().await.unwrap();
    assert_eq!(hold["byPlatform"], true);
    let path = format!("/api/v1/holds/{}", hold["id"].as_str().unwrap());
    let refused = app.call(reqwest::Method::DELETE, &path, &token).await;
    assert_envelope(refused, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let hidden = app.call(reqwest::Method::GET, &path, &other).await;
    assert_envelope(hidden, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let released = app
        .call(
            reqwest::Method::DELETE,
            &format!("{path}?merchantId={MERCHANT_A}"),
            &admin,
        )
        .await;
    assert_eq!(released.status(), StatusCode::OK);
    // The audit trail cannot be rewritten, even in the database.
    let conn = app.state.db.get().await.unwrap();
    let id = Uuid::parse_str(hold["id"].as_str().unwrap()).unwrap();
    assert!(conn
        .execute("DELETE FROM legal_holds WHERE id = $1", &[&id])
        .await
        .is_err());
    assert!(conn
        .execute(
            "UPDATE legal_holds SET reason = 'nothing' WHERE id = $1",
            &[&id]
        )
        .await
        .is_err());
}

#[test]
fn an_erasure_by_json_pointer_erases_exactly_its_runs_and_logs_a_signed_receipt() {
    on_a_large_stack(erasure_scenario);
}

/// 500 runs of a batch, 37 of whose seeds say `/customer/id` = `C-42`: 35 seeds of their own
/// and one seed shared by two runs, one of which is held.
async fn erasure_scenario() {
    use docbundle::domain::seed::CanonicalSeed;
    let bucket = versioned_bucket().await;
    let app = TestApp::spawn_with(|s| s.artefact_bucket = bucket).await;
    let token = harness::token("merchant-a").await;
    let kept_long = json!({"artefacts": "P10Y", "seeds": "P10Y"});
    let cfg =
        crate::configurations::created_id(&app, &token, &config("Statements", kept_long)).await;
    let shared = json!({"customer": {"id": "C-42"}, "n": "shared"});
    let mut lines = Vec::new();
    for i in 0..500 {
        let seed = match i {
            0..35 => json!({"customer": {"id": "C-42"}, "n": i}),
            35 | 36 => shared.clone(),
            _ => json!({"customer": {"id": format!("C-{}", 1000 + i)}, "n": i}),
        };
        lines.push(seed.to_string());
    }
    let batch = crate::batches::new_batch(&app, &token, &cfg, json!({})).await;
    let batch_id = batch["id"].as_str().unwrap().to_owned();
    let put = crate::batches::put_seeds(
        &app,
        &token,
        &batch_id,
        (lines.join("\n") + "\n").into_bytes(),
    )
    .await;
    assert!(put.status().is_success(), "{}", put.status());
    assert_eq!(
        crate::batches::start(&app, &token, &batch_id).await,
        StatusCode::ACCEPTED
    );
    let ended = crate::batches::run_batch(&app, &token, &batch_id).await;
    assert_eq!(ended["status"], "completed", "{ended}");
    assert_eq!(ended["totals"]["completed"], 500, "{ended}");

    let conn = app.state.db.get().await.unwrap();
    let batch_uuid = Uuid::parse_str(&batch_id).unwrap();
    let shared_hash = CanonicalSeed::of(&shared).unwrap().hash;
    let shared_runs: Vec<Uuid> = conn
        .query(
            "SELECT id FROM bundle_runs WHERE batch_id = $1 AND seed_hash = $2 ORDER BY batch_line",
            &[&batch_uuid, &shared_hash.as_str()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(shared_runs.len(), 2);
    let held_run = shared_runs[1];
    let placed = post(
        &app,
        "/api/v1/holds",
        &token,
        &json!({"runId": held_run, "reason": "dispute"}),
    )
    .await;
    assert_eq!(placed.status(), StatusCode::CREATED);
    // Hashes a user holds before the erasure, of a matching run and of another.
    let erased_run = shared_runs[0];
    let erased_before = app
        .get_json(&format!("/api/v1/bundles/{erased_run}"), &token)
        .await;
    let untouched: Uuid = conn
        .query_one(
            "SELECT id FROM bundle_runs WHERE batch_id = $1 AND batch_line = 400",
            &[&batch_uuid],
        )
        .await
        .unwrap()
        .get(0);
    let untouched_before = app
        .get_json(&format!("/api/v1/bundles/{untouched}"), &token)
        .await;

    // What the erasure must delete is there before it.
    let erased_prefix = format!("merchants/{MERCHANT_A}/runs/{erased_run}/");
    assert_eq!(
        versions(&app, &format!("{erased_prefix}artefacts/"))
            .await
            .len(),
        1
    );
    let seeds_key = docbundle::domain::batch::seeds_key(
        docbundle::domain::MerchantId::from(Uuid::parse_str(MERCHANT_A).unwrap()),
        batch_uuid,
    );
    assert_eq!(versions(&app, &seeds_key).await.len(), 1);

    // The dry run lists the 37, one of them held; nothing goes.
    let by_pointer = json!({"pointer": "/customer/id", "value": "C-42"});
    let dry = post(
        &app,
        "/api/v1/erasures",
        &token,
        &json!({"match": by_pointer, "dryRun": true}),
    )
    .await;
    assert_eq!(dry.status(), StatusCode::OK);
    let dry: Value = dry.json().await.unwrap();
    assert_eq!(
        (&dry["runs"], &dry["held"], &dry["seeds"]),
        (&json!(37), &json!(1), &json!(36)),
        "{dry}"
    );
    assert_eq!(dry["items"].as_array().unwrap().len(), 37);
    assert_eq!(
        dry["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["held"] == true)
            .count(),
        1
    );
    // Another merchant sees none of it, and cannot name the run.
    let other = harness::token("merchant-b").await;
    let theirs = post(
        &app,
        "/api/v1/erasures",
        &other,
        &json!({"match": by_pointer, "dryRun": true}),
    )
    .await;
    let theirs: Value = theirs.json().await.unwrap();
    assert_eq!(theirs["runs"], 0, "{theirs}");
    let foreign = post(
        &app,
        "/api/v1/erasures",
        &other,
        &json!({"runId": erased_run}),
    )
    .await;
    assert_envelope(foreign, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    // 37 runs need their count confirmed.
    let unconfirmed = post(
        &app,
        "/api/v1/erasures",
        &token,
        &json!({"match": by_pointer}),
    )
    .await;
    let refused = assert_envelope(
        unconfirmed,
        StatusCode::UNPROCESSABLE_ENTITY,
        "CONFIRMATION_REQUIRED",
    )
    .await;
    assert_eq!(refused["error"]["details"]["runs"], 37);
    let wrong = post(
        &app,
        "/api/v1/erasures",
        &token,
        &json!({"match": by_pointer, "confirm": {"runs": 36}}),
    )
    .await;
    assert_envelope(wrong, StatusCode::CONFLICT, "CONFLICT").await;
    let requested = post(
        &app,
        "/api/v1/erasures",
        &token,
        &json!({"match": by_pointer, "confirm": {"runs": 37}}),
    )
    .await;
    assert_eq!(requested.status(), StatusCode::ACCEPTED);
    let location = requested.headers()["location"].to_str().unwrap().to_owned();
    let requested: Value = requested.json().await.unwrap();
    assert_eq!(requested["status"], "pending");
    assert_eq!(
        location,
        format!("/api/v1/erasures/{}", requested["id"].as_str().unwrap())
    );

    // Two scheduler passes at once (the schedule overlaps a slow pass): one executes it, the
    // other finds it done and writes nothing.
    let (one, two) = tokio::join!(
        Box::pin(docbundle::app::jobs::erasures::run(&app.state)),
        Box::pin(docbundle::app::jobs::erasures::run(&app.state))
    );
    let (one, two) = (one.unwrap(), two.unwrap());
    assert_eq!(one.completed + two.completed, 1, "{one:?} {two:?}");
    assert_eq!(one.runs_erased + two.runs_erased, 36, "{one:?} {two:?}");
    let done = app.get_json(&location, &token).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        (
            &done["runsErased"],
            &done["runsKept"],
            &done["seedsErased"],
            &done["seedsKept"]
        ),
        (&json!(36), &json!(1), &json!(35), &json!(1)),
        "{done}"
    );
    assert_eq!(done["items"].as_array().unwrap().len(), 37);
    let erasure_id = Uuid::parse_str(done["id"].as_str().unwrap()).unwrap();
    let forgotten: Option<Value> = conn
        .query_one(
            "SELECT match_value FROM erasures WHERE id = $1",
            &[&erasure_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(forgotten, None, "the value matched is personal data too");

    // Exactly those runs and seeds went; the held run, its seed and the 463 others stayed.
    let statuses: Vec<(String, Option<String>, i64)> = conn
        .query(
            "SELECT status, expired_by, count(*) FROM bundle_runs WHERE batch_id = $1
              GROUP BY 1, 2 ORDER BY 1",
            &[&batch_uuid],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("completed".to_owned(), None, 464),
            ("expired".to_owned(), Some("erasure".to_owned()), 36),
        ]
    );
    let seeds: Vec<(bool, i64)> = conn
        .query(
            "SELECT canonical IS NULL, count(*) FROM seeds WHERE merchant_id = $1
               AND hash IN (SELECT seed_hash FROM bundle_runs WHERE batch_id = $2)
             GROUP BY 1 ORDER BY 1",
            &[&Uuid::parse_str(MERCHANT_A).unwrap(), &batch_uuid],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(seeds, vec![(false, 464), (true, 35)]);
    let shared_kept: bool = conn
        .query_one(
            "SELECT canonical IS NOT NULL FROM seeds WHERE hash = $1",
            &[&shared_hash.as_str()],
        )
        .await
        .unwrap()
        .get(0);
    assert!(shared_kept);
    assert_eq!(
        versions(&app, &format!("{erased_prefix}artefacts/")).await,
        vec![]
    );
    assert!(!versions(&app, &format!("{erased_prefix}manifest.json"))
        .await
        .is_empty());
    let untouched_prefix = format!("merchants/{MERCHANT_A}/runs/{untouched}/artefacts/");
    assert_eq!(versions(&app, &untouched_prefix).await.len(), 1);
    let untouched_after = app
        .get_json(&format!("/api/v1/bundles/{untouched}"), &token)
        .await;
    assert_eq!(untouched_after["status"], "completed");
    assert_eq!(
        untouched_after["artefacts"][0]["sha256"],
        untouched_before["artefacts"][0]["sha256"]
    );
    assert!(untouched_after["artefacts"][0]["downloadUrl"].is_string());
    // The batch's seeds file held the lines: every version of it is gone.
    assert_eq!(versions(&app, &seeds_key).await, vec![]);
    let gone = assert_envelope(
        artefact(&app, &token, &erased_run.to_string()).await,
        StatusCode::GONE,
        "GONE",
    )
    .await;
    assert_eq!(gone["error"]["details"]["expiredBy"], "erasure");

    // The receipt: signed by the manifest key, naming each erased artefact's SHA-256 and the
    // seed kept for the held run, and never the value matched.
    docbundle::app::transparency::issue_checkpoints(&app.state)
        .await
        .unwrap();
    let done = app.get_json(&location, &token).await;
    let mut erased_items = Vec::new();
    let mut kept_seed = None;
    let parts = done["receipt"].as_array().unwrap();
    assert!(!parts.is_empty());
    let mut receipt_entries = std::collections::HashMap::new();
    for part in parts {
        let bytes = harness::download(part["downloadUrl"].as_str().unwrap()).await;
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&bytes)),
            part["sha256"].as_str().unwrap()
        );
        assert!(
            crate::pipeline::verify_with_published_key(
                &app,
                &token,
                part["keyId"].as_str().unwrap(),
                &bytes,
                part["signature"].as_str().unwrap(),
            )
            .await,
            "the receipt's signature verifies with the published key"
        );
        assert!(!String::from_utf8_lossy(&bytes).contains("C-42"));
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["schema"], "docbundle.erasure-receipt/v1");
        assert_eq!(
            body["request"],
            json!({"kind": "match", "pointer": "/customer/id", "valueGiven": true})
        );
        assert_eq!(body["requestedBy"], "service-account-merchant-a");
        for item in body["items"].as_array().unwrap() {
            match item["type"].as_str().unwrap() {
                "runErased" => erased_items.push(item.clone()),
                "seedKept" => kept_seed = Some(item.clone()),
                _ => {}
            }
        }
        assert!(part["transparency"]["inclusionProof"].is_array(), "{part}");
        receipt_entries.insert(part["transparency"]["logIndex"].as_u64().unwrap(), bytes);
    }
    assert_eq!(erased_items.len(), 36);
    let listed = erased_items
        .iter()
        .find(|i| i["runId"] == json!(erased_run))
        .expect("the erased run in the receipt");
    assert_eq!(
        listed["artefacts"][0]["sha256"],
        erased_before["artefacts"][0]["sha256"]
    );
    assert_eq!(
        listed["manifestSha256"],
        erased_before["manifest"]["sha256"]
    );
    let kept_seed = kept_seed.expect("the shared seed kept");
    assert_eq!(kept_seed["seedHash"], json!(shared_hash.as_str()));
    assert_eq!(kept_seed["runIds"], json!([held_run]));
    assert!(kept_seed["reason"].as_str().unwrap().contains("legal hold"));

    // The whole log, receipt parts included, checked from its public tiles by a reader no one
    // here wrote.
    let view = app
        .get_json("/api/v1/transparency/checkpoint", &token)
        .await;
    let size = view["treeSize"].as_u64().unwrap();
    assert_eq!(size, 500 + parts.len() as u64, "{view}");
    let dir = std::env::temp_dir().join(format!("docbundle-tlog-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let entries = app
        .get_json(
            &format!("/api/v1/transparency/entries?start=0&end={size}"),
            &token,
        )
        .await;
    for entry in entries["entries"].as_array().unwrap() {
        let index = entry["index"].as_u64().unwrap();
        let bytes = match entry["receiptId"].as_str() {
            Some(_) => receipt_entries[&index].clone(),
            None => {
                let run = app
                    .get_json(
                        &format!("/api/v1/bundles/{}", entry["runId"].as_str().unwrap()),
                        &token,
                    )
                    .await;
                harness::download(run["manifest"]["downloadUrl"].as_str().unwrap()).await
            }
        };
        std::fs::write(dir.join(format!("{index}.json")), bytes).unwrap();
    }
    let audited = harness::tlog_audit(
        view["tilesUrl"].as_str().unwrap(),
        view["verifierKeys"][0].as_str().unwrap(),
        view["origin"].as_str().unwrap(),
        &dir,
        &[],
    );
    assert_eq!(audited["inclusions"], size, "{audited}");
    std::fs::remove_dir_all(&dir).ok();

    // Hostile requests: everything without confirmation, a malformed pointer, no scope.
    let everything = post(
        &app,
        "/api/v1/erasures",
        &token,
        &json!({"match": {"pointer": ""}}),
    )
    .await;
    assert_envelope(
        everything,
        StatusCode::UNPROCESSABLE_ENTITY,
        "CONFIRMATION_REQUIRED",
    )
    .await;
    for bad in [
        json!({"match": {"pointer": "customer"}}),
        json!({"match": {"pointer": "/a~2"}}),
    ] {
        let response = post(&app, "/api/v1/erasures", &token, &bad).await;
        let body = assert_envelope(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(body["error"]["details"][0]["field"], "match.pointer");
    }
    let big = json!({"match": {"pointer": "/customer/id", "value": "x".repeat(5000)}});
    assert_envelope(
        post(&app, "/api/v1/erasures", &token, &big).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let two = json!({"runId": erased_run, "seedHash": shared_hash.as_str()});
    assert_envelope(
        post(&app, "/api/v1/erasures", &token, &two).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let unknown_seed = json!({"seedHash": "0".repeat(64)});
    assert_envelope(
        post(&app, "/api/v1/erasures", &token, &unknown_seed).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    let reader = harness::token("merchant-a-reader").await;
    let response = post(
        &app,
        "/api/v1/erasures",
        &reader,
        &json!({"runId": untouched}),
    )
    .await;
    assert_envelope(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
}

#[test]
fn an_erasure_forgets_what_a_failed_runs_error_quoted_and_one_that_grew_is_cancelled() {
    on_a_large_stack(failed_and_grown_scenario);
}

async fn failed_and_grown_scenario() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    // A document that fails quoting the seed, as a template error may.
    let fails = crate::configurations::created_id(
        &app,
        &token,
        &json!({
            "name": "Fails quoting",
            "defaults": {"customer": {"id": "C-0"}},
            "documents": [{"name": "a.pdf", "format": "pdf",
                "template": "#let data = json(\"data.json\")\n#if data.customer.id != \"C-0\" { panic(data.customer.id) }\nHello\n"}],
        }),
    )
    .await;
    let (hook, _) = crate::completion_webhooks::endpoint(
        &app,
        &token,
        "http://127.0.0.1:9/failed",
        &["run.failed", "run.expired"],
    )
    .await;
    let failed = launched(&app, &token, &fails, "C-77-secret").await;
    let ended = app.run_to_end(&token, &failed).await;
    assert_eq!(ended["status"], "failed");
    assert!(
        ended["error"]["message"]
            .as_str()
            .unwrap()
            .contains("C-77-secret"),
        "{ended}"
    );
    let requested = post(&app, "/api/v1/erasures", &token, &json!({"runId": failed})).await;
    assert_eq!(requested.status(), StatusCode::ACCEPTED);
    let report = Box::pin(docbundle::app::jobs::erasures::run(&app.state))
        .await
        .unwrap();
    assert_eq!(report.completed, 1, "{report:?}");
    let after = app
        .get_json(&format!("/api/v1/bundles/{failed}"), &token)
        .await;
    assert_eq!(after["status"], "failed");
    assert_eq!(after["error"]["code"], ended["error"]["code"]);
    assert_eq!(after["error"]["message"], "erased on request");
    let conn = app.state.db.get().await.unwrap();
    let kept: Vec<String> = conn
        .query(
            "SELECT payload FROM webhook_deliveries WHERE endpoint_id = $1::text::uuid
               AND event_type = 'run.failed'",
            &[&hook],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kept.len(), 1);
    assert!(!kept[0].contains("C-77-secret"), "{}", kept[0]);
    let seed: Option<String> = conn
        .query_one(
            "SELECT canonical FROM seeds WHERE hash = $1",
            &[&ended["seedHash"].as_str().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(seed, None);

    // A seed whose JSON escapes a NUL (a batch line may carry one) is never matched, and
    // matching does not fail on it.
    conn.execute(
        "INSERT INTO seeds (merchant_id, hash, canonical, size_bytes) VALUES ($1, $2, $3, 20)",
        &[
            &Uuid::parse_str(MERCHANT_A).unwrap(),
            &"e".repeat(64),
            &r#"{"customer":{"id":"\u0000"}}"#,
        ],
    )
    .await
    .unwrap();
    // A seed that holds the six characters `\u0000` (no NUL) is matched as any other.
    let literal = launched(&app, &token, &fails, "x\\u0000").await;
    let dry = post(
        &app,
        "/api/v1/erasures",
        &token,
        &json!({"match": {"pointer": "/customer/id"}, "dryRun": true}),
    )
    .await;
    assert_eq!(dry.status(), StatusCode::OK);
    let dry: Value = dry.json().await.unwrap();
    assert_eq!(dry["runs"], 1, "{dry}");
    assert_eq!(dry["items"][0]["runId"], json!(literal));

    // Requested while it matched one run, executed when it matches twelve: cancelled, and
    // the value it would have matched forgotten.
    let cfg = crate::configurations::created_id(&app, &token, &config("Small", json!({}))).await;
    let first = launched(&app, &token, &cfg, "C-5").await;
    app.run_to_end(&token, &first).await;
    let by_pointer = json!({"match": {"pointer": "/customer/id", "value": "C-5"}});
    let requested = post(&app, "/api/v1/erasures", &token, &by_pointer).await;
    assert_eq!(requested.status(), StatusCode::ACCEPTED);
    let requested: Value = requested.json().await.unwrap();
    assert_eq!(requested["confirmedRuns"], 1);
    for _ in 0..11 {
        launched(&app, &token, &cfg, "C-5").await;
    }
    let report = Box::pin(docbundle::app::jobs::erasures::run(&app.state))
        .await
        .unwrap();
    assert_eq!(report.cancelled, 1, "{report:?}");
    let id = Uuid::parse_str(requested["id"].as_str().unwrap()).unwrap();
    let cancelled = app
        .get_json(&format!("/api/v1/erasures/{id}"), &token)
        .await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert!(
        cancelled["waitingFor"]
            .as_str()
            .unwrap()
            .contains("matches 12 runs"),
        "{cancelled}"
    );
    let forgotten: Option<Value> = conn
        .query_one("SELECT match_value FROM erasures WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(forgotten, None);
    let detail = app
        .get_json(&format!("/api/v1/bundles/{first}"), &token)
        .await;
    assert_eq!(detail["status"], "completed");

    // The completed run alone: erased, its `run.expired` sent; its seed kept, since the eleven
    // runs launched since keep it. Then a run still pending: the erasure waits for it.
    let pending_run: Uuid = conn
        .query_one(
            "SELECT id FROM bundle_runs WHERE configuration_id = $1::text::uuid
               AND status = 'pending' LIMIT 1",
            &[&cfg],
        )
        .await
        .unwrap()
        .get(0);
    let alone = post(&app, "/api/v1/erasures", &token, &json!({"runId": first})).await;
    assert_eq!(alone.status(), StatusCode::ACCEPTED);
    let alone: Value = alone.json().await.unwrap();
    let later = post(
        &app,
        "/api/v1/erasures",
        &token,
        &json!({"runId": pending_run}),
    )
    .await;
    assert_eq!(later.status(), StatusCode::ACCEPTED);
    let later: Value = later.json().await.unwrap();
    // One erasure of a merchant per pass: this one first (requested first).
    let report = Box::pin(docbundle::app::jobs::erasures::run(&app.state))
        .await
        .unwrap();
    assert_eq!((report.completed, report.waiting), (1, 0), "{report:?}");
    let done = app
        .get_json(
            &format!("/api/v1/erasures/{}", alone["id"].as_str().unwrap()),
            &token,
        )
        .await;
    assert_eq!(
        (
            &done["runsErased"],
            &done["seedsErased"],
            &done["seedsKept"]
        ),
        (&json!(1), &json!(0), &json!(1)),
        "{done}"
    );
    let detail = app
        .get_json(&format!("/api/v1/bundles/{first}"), &token)
        .await;
    assert_eq!(
        (&detail["status"], &detail["expiredBy"]),
        (&json!("expired"), &json!("erasure"))
    );
    let expired_events: i64 = conn
        .query_one(
            "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1::text::uuid
               AND event_type = 'run.expired' AND run_id = $2::text::uuid",
            &[&hook, &first],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(expired_events, 1);
    let report = Box::pin(docbundle::app::jobs::erasures::run(&app.state))
        .await
        .unwrap();
    assert_eq!((report.completed, report.waiting), (0, 1), "{report:?}");
    let waiting = app
        .get_json(
            &format!("/api/v1/erasures/{}", later["id"].as_str().unwrap()),
            &token,
        )
        .await;
    assert_eq!(waiting["status"], "pending");
    assert_eq!(
        waiting["waitingFor"],
        format!("run {pending_run} is still pending"),
        "{waiting}"
    );
}

/// `response` is a 4xx in the error envelope (whatever the code).
async fn clear_4xx(what: &str, response: reqwest::Response) {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_client_error(), "{what}: {status} {body}");
    assert!(body["error"]["code"].is_string(), "{what}: {status} {body}");
    assert!(
        body["error"]["requestId"].is_string(),
        "{what}: {status} {body}"
    );
}

/// Every route this work added, given what a hostile client sends: NUL, overflowing numbers,
/// huge and deeply nested bodies, another merchant's ids. Each answer is a clear 4xx.
#[tokio::test]
async fn the_retention_routes_answer_hostile_input_with_a_clear_4xx() {
    let app = TestApp::spawn().await;
    let a = harness::token("merchant-a").await;
    let b = harness::token("merchant-b").await;
    let cfg = crate::configurations::created_id(&app, &a, &config("Hostile", json!({}))).await;
    let run = launched(&app, &a, &cfg, "C-1").await;
    let hold: Value = post(
        &app,
        "/api/v1/holds",
        &a,
        &json!({"runId": run, "reason": "r"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let hold = hold["id"].as_str().unwrap().to_owned();
    let erasure: Value = post(&app, "/api/v1/erasures", &a, &json!({"runId": run}))
        .await
        .json()
        .await
        .unwrap();
    let erasure = erasure["id"].as_str().unwrap().to_owned();
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let huge = "x".repeat(2 << 20);
    let raw_bodies: Vec<(&str, String)> = vec![
        (
            "/api/v1/holds",
            format!("{{\"runId\": \"{run}\", \"reason\": {deep}}}"),
        ),
        (
            "/api/v1/holds",
            format!("{{\"runId\": \"{run}\", \"reason\": \"{huge}\"}}"),
        ),
        (
            "/api/v1/holds",
            "{\"runId\": 1e400, \"reason\": \"r\"}".to_owned(),
        ),
        (
            "/api/v1/holds",
            "{\"runId\": \"\u{0}\", \"reason\": \"r\"}".to_owned(),
        ),
        ("/api/v1/holds", "not json".to_owned()),
        (
            "/api/v1/erasures",
            format!("{{\"match\": {{\"pointer\": \"/a\", \"value\": {deep}}}}}"),
        ),
        (
            "/api/v1/erasures",
            format!("{{\"match\": {{\"pointer\": \"/{huge}\"}}}}"),
        ),
        (
            "/api/v1/erasures",
            format!("{{\"runId\": \"{run}\", \"confirm\": {{\"runs\": 1e30}}}}"),
        ),
        (
            "/api/v1/erasures",
            format!("{{\"runId\": \"{run}\", \"confirm\": {{\"runs\": -1}}}}"),
        ),
        ("/api/v1/erasures", "{\"seedHash\": \"\u{0}\"}".to_owned()),
        (
            "/api/v1/erasures",
            "{\"match\": {\"pointer\": \"/a\u{0}\"}}".to_owned(),
        ),
        (
            "/api/v1/erasures",
            format!("{{\"seedHash\": \"{}\"}}", "f".repeat(65)),
        ),
    ];
    for (path, raw) in raw_bodies {
        let response = app
            .http
            .post(app.url(path))
            .bearer_auth(&a)
            .header("content-type", "application/json")
            .body(raw.clone())
            .send()
            .await
            .unwrap();
        clear_4xx(
            &format!("POST {path} {}", &raw[..raw.len().min(80)]),
            response,
        )
        .await;
    }
    let other_merchant = harness::MERCHANT_B;
    let calls: Vec<(reqwest::Method, String, &str)> = vec![
        // Another merchant's ids, or this merchant's under another's name.
        (reqwest::Method::GET, format!("/api/v1/holds/{hold}"), &b),
        (reqwest::Method::DELETE, format!("/api/v1/holds/{hold}"), &b),
        (
            reqwest::Method::GET,
            format!("/api/v1/erasures/{erasure}"),
            &b,
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/bundles/{run}/artefacts/statement.txt"),
            &b,
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/holds?merchantId={other_merchant}"),
            &a,
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/erasures?merchantId={other_merchant}"),
            &a,
        ),
        // Malformed ids and names.
        (
            reqwest::Method::GET,
            "/api/v1/holds/not-a-uuid".to_owned(),
            &a,
        ),
        (reqwest::Method::DELETE, "/api/v1/holds/%00".to_owned(), &a),
        (
            reqwest::Method::GET,
            "/api/v1/erasures/1e400".to_owned(),
            &a,
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/bundles/{run}/artefacts/%00"),
            &a,
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/bundles/{run}/artefacts/{}", "a".repeat(5000)),
            &a,
        ),
        (
            reqwest::Method::GET,
            "/api/v1/bundles/%00/artefacts/a.txt".to_owned(),
            &a,
        ),
        // Queries that overflow, are negative, hold a NUL or are not what they say.
        (
            reqwest::Method::GET,
            "/api/v1/holds?limit=99999999999999999999999".to_owned(),
            &a,
        ),
        (
            reqwest::Method::GET,
            "/api/v1/holds?limit=-1".to_owned(),
            &a,
        ),
        (
            reqwest::Method::GET,
            "/api/v1/holds?active=maybe".to_owned(),
            &a,
        ),
        (
            reqwest::Method::GET,
            "/api/v1/holds?cursor=%00".to_owned(),
            &a,
        ),
        (
            reqwest::Method::GET,
            "/api/v1/erasures?limit=0".to_owned(),
            &a,
        ),
        (
            reqwest::Method::GET,
            format!("/api/v1/erasures?cursor={}", "A".repeat(4000)),
            &a,
        ),
        (
            reqwest::Method::GET,
            "/api/v1/erasures?nope=1".to_owned(),
            &a,
        ),
    ];
    for (method, path, token) in calls {
        let response = app.call(method.clone(), &path, token).await;
        clear_4xx(
            &format!("{method} {}", &path[..path.len().min(80)]),
            response,
        )
        .await;
    }
    // Nothing of A's changed hands: the hold is still in force, the erasure still A's.
    let still = app.get_json(&format!("/api/v1/holds/{hold}"), &a).await;
    assert_eq!(still["releasedAt"], Value::Null, "{still}");
    let mine = app
        .get_json(&format!("/api/v1/erasures/{erasure}"), &a)
        .await;
    assert_eq!(mine["status"], "pending", "{mine}");
}
