//! Retention and legal holds against the real stack: a configuration that keeps its runs'
//! artefacts and seeds a minute, a versioned bucket as the deployment's, the retention job's
//! passes, and what a user checks afterwards — the objects gone (every version), the run
//! `expired`, downloads `410`, the manifest and its proof still there and a copy downloaded
//! before still verifying; a held run kept until its hold is released.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
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

#[tokio::test]
async fn a_run_expires_its_artefacts_go_and_its_proof_and_held_runs_remain() {
    // The whole scenario is one large future: kept on the heap, not the test thread's stack.
    Box::pin(expiry_scenario()).await;
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
