//! Batches end to end against the real stack: an NDJSON of seeds (inline, or PUT to the
//! presigned URL) becomes one run per line on the batch queue; bad lines are reported by line;
//! the batch ends with one signed manifest whose Merkle tree proves every completed run's
//! manifest, and one `batch.completed` delivery. A fan-out killed mid-file resumes without gap
//! or duplicate; limits answer `429` with `Retry-After`; cancel stops what has not started;
//! another merchant sees nothing.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::configurations::created_id;
use crate::harness::{self, assert_envelope, TestApp};
use docbundle::domain::batch::{self, BatchManifest, BatchStatement};
use docbundle::domain::keys::Jwks;
use docbundle_local::poller::{poll, Consumer};

fn config() -> Value {
    json!({
        "name": "Statements",
        "dataSchema": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
        "documents": [
            {"name": "statement.txt", "format": "txt", "template": "Statement {{ data.n }}"},
            {"name": "lines.csv", "format": "csv", "template": "n\n{{ data.n }}\n"}
        ]
    })
}

async fn create(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url("/api/v1/batches"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn put_seeds(
    app: &TestApp,
    token: &str,
    id: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    app.http
        .put(app.url(&format!("/api/v1/batches/{id}/seeds")))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn post(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.call(Method::POST, path, token).await
}

/// A new batch of `configuration` created with `extra` fields: its answer.
pub(crate) async fn new_batch(
    app: &TestApp,
    token: &str,
    configuration: &str,
    extra: Value,
) -> Value {
    let mut body = json!({"configurationId": configuration});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    let created = create(app, token, &body).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    created.json().await.unwrap()
}

/// `POST …/{id}/start`: its status.
pub(crate) async fn start(app: &TestApp, token: &str, id: &str) -> StatusCode {
    post(app, token, &format!("/api/v1/batches/{id}/start"))
        .await
        .status()
}

/// The message that fans batch `id` of merchant A out.
fn fan_out_message(id: &str) -> docbundle::domain::outbox::FanOutMessage {
    docbundle::domain::outbox::FanOutMessage {
        batch_id: uuid::Uuid::parse_str(id).unwrap(),
        merchant_id: docbundle::domain::MerchantId::from(
            uuid::Uuid::parse_str(harness::MERCHANT_A).unwrap(),
        ),
    }
}

/// Feeds the worker from the batch queue until the batch has ended, with the scheduled jobs
/// every few seconds as the scheduler runs them (the outbox relay publishes what a killed
/// fan-out committed but did not send); returns the batch.
pub(crate) async fn run_batch(app: &TestApp, token: &str, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    let mut last_pass = std::time::Instant::now();
    while std::time::Instant::now() < deadline {
        let batch = app.get_json(&format!("/api/v1/batches/{id}"), token).await;
        if ["completed", "cancelled", "failed"].contains(&batch["status"].as_str().unwrap()) {
            return batch;
        }
        poll(
            &app.state,
            Consumer::BatchWorker,
            Duration::from_millis(200),
        )
        .await
        .expect("poll");
        if last_pass.elapsed() > Duration::from_secs(5) {
            Box::pin(docbundle::app::jobs::scheduled_pass(&app.state))
                .await
                .ok();
            last_pass = std::time::Instant::now();
        }
    }
    panic!("batch {id} did not end");
}

async fn count(app: &TestApp, sql: &str, batch: &str) -> i64 {
    let conn = app.state.db.get().await.unwrap();
    let id = uuid::Uuid::parse_str(batch).unwrap();
    conn.query_one(sql, &[&id]).await.unwrap().get(0)
}

/// Checks the batch manifest the way an auditor would: the signed statement's signature with
/// the published keys, the manifest's bytes against the statement, its tree.
async fn check_manifest(app: &TestApp, token: &str, batch: &Value) -> BatchManifest {
    let bytes = harness::download(batch["manifestUrl"].as_str().unwrap()).await;
    let keys: Jwks =
        serde_json::from_value(app.get_json("/api/v1/signing-keys", token).await).unwrap();
    let statement = batch["manifestStatement"].as_str().unwrap();
    docbundle_local::verify::verify_manifest(
        statement.as_bytes(),
        batch["manifestSignature"].as_str().unwrap(),
        batch["manifestKeyId"].as_str().unwrap(),
        &keys,
    )
    .expect("the batch statement's signature verifies with the published keys");
    let statement: BatchStatement = serde_json::from_str(statement).unwrap();
    use sha2::Digest;
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&bytes)),
        batch["manifestSha256"].as_str().unwrap()
    );
    let manifest: BatchManifest = serde_json::from_slice(&bytes).unwrap();
    statement
        .covers(&bytes, &manifest)
        .expect("the statement names these bytes and their tree");
    assert_eq!(manifest.tree.root, batch["merkleRoot"].as_str().unwrap());
    // The TSA's time-stamp (the local stack has one) over the statement's SHA-256: the
    // time-stamp of every run it lists, which have none of their own.
    let stamp = harness::download(batch["timestampUrl"].as_str().expect("timestampUrl")).await;
    let digest: [u8; 32] =
        sha2::Sha256::digest(batch["manifestStatement"].as_str().unwrap()).into();
    docbundle_pades::tsp::read_answer(&stamp, &digest)
        .expect("a granted time-stamp of the signed statement");
    for run in manifest.runs.iter().take(3) {
        let view = app
            .get_json(&format!("/api/v1/bundles/{}", run.run_id), token)
            .await;
        if view["status"] == "completed" {
            assert!(view["manifest"]["timestampUrl"].is_null(), "{view}");
        }
    }
    // One flipped byte of the manifest is not what was signed.
    let mut flipped = bytes.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 1;
    assert!(statement.covers(&flipped, &manifest).is_err());
    manifest
}

#[tokio::test]
async fn a_batch_makes_one_run_per_line_reports_bad_lines_and_ends_with_a_signed_manifest() {
    let app = TestApp::spawn().await;
    let a = harness::token("merchant-a").await;
    let b = harness::token("merchant-b").await;
    let configuration = created_id(&app, &a, &config()).await;
    // A listener for the one batch.completed (and for run events, which batch runs do not send).
    let registered = app
        .http
        .post(app.url("/api/v1/webhook-endpoints"))
        .bearer_auth(&a)
        .json(&json!({"url": "http://127.0.0.1:9/hook", "events": ["batch.completed", "run.completed", "run.failed"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);

    let created = create(&app, &a, &json!({"configurationId": configuration})).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["status"], "created");
    assert_eq!(created["upload"]["method"], "PUT");
    assert_eq!(created["upload"]["maxSeeds"], 100_000);

    // 40 lines: 34 seeds, two blank lines, and four that make no run.
    let mut file = Vec::new();
    for n in 1..=40u32 {
        let line: Vec<u8> = match n {
            5 => b"{\"n\": ".to_vec(),
            9 => b"{\"n\": \"nine\"}".to_vec(),
            12 | 13 => b"   ".to_vec(),
            20 => b"{\"n\": \xff}".to_vec(),
            33 => b"[]".to_vec(),
            _ => format!("{{\"n\": {n}}}").into_bytes(),
        };
        file.extend(line);
        file.push(b'\n');
    }
    // The presigned URL takes the file as any S3 client sends it.
    let upload = reqwest::Client::new()
        .put(created["upload"]["url"].as_str().unwrap())
        .body(file.clone())
        .send()
        .await
        .unwrap();
    assert!(upload.status().is_success(), "{}", upload.status());

    // Another merchant can neither see, start nor cancel it.
    for (method, path) in [
        (Method::GET, format!("/api/v1/batches/{id}")),
        (Method::GET, format!("/api/v1/batches/{id}/errors")),
        (Method::POST, format!("/api/v1/batches/{id}/start")),
        (Method::POST, format!("/api/v1/batches/{id}/cancel")),
    ] {
        assert_envelope(
            app.call(method, &path, &b).await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        )
        .await;
    }
    let other = create(&app, &b, &json!({"configurationId": configuration})).await;
    assert_envelope(other, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    // Start, twice with one key: one answer; without the key, a second start is a conflict.
    let start_with_key = |key: &'static str| {
        app.http
            .post(app.url(&format!("/api/v1/batches/{id}/start")))
            .bearer_auth(&a)
            .header("idempotency-key", key)
            .send()
    };
    let first = start_with_key("start-1").await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let again: Value = start_with_key("start-1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(first["status"], "running");
    assert_eq!(first["configurationVersion"], 1);
    let conflict = post(&app, &a, &format!("/api/v1/batches/{id}/start")).await;
    assert_envelope(conflict, StatusCode::CONFLICT, "CONFLICT").await;
    // The upload cannot change once started.
    let late = put_seeds(&app, &a, &id, b"{\"n\":1}\n".to_vec()).await;
    assert_envelope(late, StatusCode::CONFLICT, "CONFLICT").await;

    let ended = run_batch(&app, &a, &id).await;
    assert_eq!(ended["status"], "completed", "{ended}");
    assert_eq!(
        ended["totals"],
        json!({"lines": 40, "runs": 34, "pending": 0, "processing": 0, "completed": 34, "failed": 0, "errors": 4})
    );
    let errors = app
        .get_json(&format!("/api/v1/batches/{id}/errors"), &a)
        .await;
    let listed: Vec<(i64, &str)> = errors["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_i64().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            (5, "INVALID_JSON"),
            (9, "SCHEMA_VIOLATION"),
            (20, "INVALID_UTF8"),
            (33, "SCHEMA_VIOLATION")
        ]
    );
    assert_eq!(errors["items"][1]["details"][0]["field"], "seed.n");

    // Every run once, with the id its line derives, and one webhook delivery in all.
    let batch_id = uuid::Uuid::parse_str(&id).unwrap();
    let runs = count(
        &app,
        "SELECT count(DISTINCT batch_line) FROM bundle_runs WHERE batch_id = $1",
        &id,
    )
    .await;
    assert_eq!(runs, 34);
    let run = app
        .get_json(
            &format!("/api/v1/bundles/{}", batch::run_id(batch_id, 7)),
            &a,
        )
        .await;
    assert_eq!(run["status"], "completed");
    assert_eq!(run["triggeredByType"], "batch");
    assert_eq!(run["batchId"], id);
    assert_eq!(run["line"], 7);
    let listed = app
        .get_json(&format!("/api/v1/bundles?batchId={id}&limit=100"), &a)
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 34);
    let deliveries = count(
        &app,
        "SELECT count(*) FROM webhook_deliveries WHERE run_id = $1 AND event_type = 'batch.completed'",
        &id,
    )
    .await;
    assert_eq!(deliveries, 1);
    let run_events = count(
        &app,
        "SELECT count(*) FROM webhook_deliveries d JOIN bundle_runs r ON r.id = d.run_id WHERE r.batch_id = $1",
        &id,
    )
    .await;
    assert_eq!(run_events, 0, "batch runs send no run.* events");

    // The batch manifest: signed, its tree the runs', each run's manifest digest the one the
    // run's own signed manifest has.
    let manifest = check_manifest(&app, &a, &ended).await;
    assert_eq!(manifest.runs.len(), 34);
    assert_eq!(manifest.tree.size, 34);
    for listed in manifest
        .runs
        .iter()
        .filter(|r| [1, 7, 40].contains(&r.line))
    {
        let run = app
            .get_json(&format!("/api/v1/bundles/{}", listed.run_id), &a)
            .await;
        let bytes = harness::download(run["manifest"]["downloadUrl"].as_str().unwrap()).await;
        use sha2::Digest;
        assert_eq!(
            listed.manifest_sha256.as_deref(),
            Some(hex::encode(sha2::Sha256::digest(&bytes)).as_str())
        );
    }
    // A run's inclusion proof against the signed root.
    let mut runs = manifest.runs.clone();
    let (_, mut log) = BatchManifest::seal(&mut runs);
    let target = &runs[10];
    let index = target.leaf_index.unwrap();
    let proof: Vec<[u8; 32]> = batch::inclusion_proof(&mut log, index)
        .iter()
        .map(|h| hex::decode(h).unwrap().try_into().unwrap())
        .collect();
    let root: [u8; 32] = hex::decode(&manifest.tree.root)
        .unwrap()
        .try_into()
        .unwrap();
    let leaf = docbundle::domain::merkle::leaf_hash(target.leaf_entry().unwrap().as_bytes());
    assert!(docbundle::domain::merkle::verify_inclusion(
        index, 34, &leaf, &proof, &root
    ));
    // Ended: no cancel.
    let cancel = post(&app, &a, &format!("/api/v1/batches/{id}/cancel")).await;
    assert_envelope(cancel, StatusCode::CONFLICT, "CONFLICT").await;
    let listed = app.get_json("/api/v1/batches", &a).await;
    assert_eq!(listed["items"][0]["id"], id);
    assert!(app.get_json("/api/v1/batches", &b).await["items"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_fan_out_killed_mid_file_resumes_with_no_gap_and_no_duplicate() {
    // Chunks of 50 lines, so that the file takes many transactions.
    let app = TestApp::spawn_with(|s| s.batch_limits.chunk_lines = 50).await;
    let a = harness::token("merchant-a").await;
    let configuration = created_id(&app, &a, &config()).await;
    let created = new_batch(&app, &a, &configuration, json!({})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let file: String = (1..=1000).map(|n| format!("{{\"n\": {n}}}\n")).collect();
    assert_eq!(
        put_seeds(&app, &a, &id, file.into_bytes()).await.status(),
        StatusCode::OK
    );
    assert_eq!(start(&app, &a, &id).await, StatusCode::ACCEPTED);

    // The fan-out dies mid-file (its future dropped after a few chunks, as a killed process
    // would stop): no message is acknowledged.
    let message = fan_out_message(&id);
    let killed = tokio::time::timeout(
        Duration::from_millis(300),
        docbundle::app::batches::fanout::fan_out(&app.state, &message),
    )
    .await;
    assert!(killed.is_err(), "the fan-out was still working when killed");
    let made = count(
        &app,
        "SELECT count(*) FROM bundle_runs WHERE batch_id = $1",
        &id,
    )
    .await;
    assert!(made > 0 && made < 1000, "killed mid-file: {made} runs made");
    assert_eq!(made % 50, 0, "only whole chunks are written");

    // Two fan-outs at once (the redelivered message and the sweep's) then finish the file.
    let (x, y) = tokio::join!(
        docbundle::app::batches::fanout::fan_out(&app.state, &message),
        docbundle::app::batches::fanout::fan_out(&app.state, &message)
    );
    x.unwrap();
    y.unwrap();
    let ended = run_batch(&app, &a, &id).await;
    assert_eq!(ended["status"], "completed");
    assert_eq!(ended["totals"]["runs"], 1000);
    assert_eq!(ended["totals"]["completed"], 1000);
    let lines = count(
        &app,
        "SELECT count(DISTINCT batch_line) FROM bundle_runs WHERE batch_id = $1",
        &id,
    )
    .await;
    let max = count(
        &app,
        "SELECT max(batch_line)::int8 FROM bundle_runs WHERE batch_id = $1",
        &id,
    )
    .await;
    assert_eq!((lines, max), (1000, 1000), "no gap, no duplicate");
    // Every completed run is in the merchant's log once.
    docbundle::app::transparency::sequence_pending(&app.state)
        .await
        .unwrap();
    let logged = count(
        &app,
        "SELECT count(DISTINCT e.run_id) FROM transparency_entries e JOIN bundle_runs r ON r.id = e.run_id WHERE r.batch_id = $1",
        &id,
    )
    .await;
    assert_eq!(logged, 1000);
    let manifest = check_manifest(&app, &a, &ended).await;
    assert_eq!(manifest.tree.size, 1000);
}

#[tokio::test]
async fn batch_limits_answer_429_and_cancel_stops_what_has_not_started() {
    let app = TestApp::spawn_with(|s| {
        s.batch_limits.max_running = 1;
        s.batch_limits.max_seeds = 5;
        s.batch_limits.max_bytes = 10_000;
    })
    .await;
    let a = harness::token("merchant-a").await;
    let configuration = created_id(&app, &a, &config()).await;
    let new_batch = |fail_fast: bool| {
        let app = &app;
        let a = a.clone();
        let configuration = configuration.clone();
        async move {
            let created = new_batch(app, &a, &configuration, json!({"failFast": fail_fast})).await;
            created["id"].as_str().unwrap().to_owned()
        }
    };

    // No seeds uploaded: 422 on `seeds`.
    let first = new_batch(false).await;
    let none = post(&app, &a, &format!("/api/v1/batches/{first}/start")).await;
    let body = assert_envelope(none, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED").await;
    assert_eq!(body["error"]["details"][0]["field"], "seeds");
    // Seven seeds where a batch holds five: two never read, one error says so.
    let seven: String = (1..=7).map(|n| format!("{{\"n\": {n}}}\n")).collect();
    put_seeds(&app, &a, &first, seven.into_bytes()).await;
    assert_eq!(start(&app, &a, &first).await, StatusCode::ACCEPTED);

    // One batch may run at once: the second start is 429 with Retry-After.
    let second = new_batch(false).await;
    put_seeds(&app, &a, &second, b"{\"n\": 1}\n".to_vec()).await;
    let limited = post(&app, &a, &format!("/api/v1/batches/{second}/start")).await;
    assert!(limited.headers().get("retry-after").is_some());
    assert_envelope(limited, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED").await;

    let ended = run_batch(&app, &a, &first).await;
    assert_eq!(ended["totals"]["runs"], 5);
    assert_eq!(
        ended["totals"]["lines"], 6,
        "reading stopped at the sixth seed"
    );
    let errors = app
        .get_json(&format!("/api/v1/batches/{first}/errors"), &a)
        .await;
    assert_eq!(errors["items"][0]["line"], 6);
    assert_eq!(errors["items"][0]["code"], "TOO_MANY_SEEDS");

    // A file of garbage: the seed limit counts refused lines too, so reading stops there.
    let garbage = new_batch(false).await;
    put_seeds(&app, &a, &garbage, b"x\n".repeat(20)).await;
    assert_eq!(start(&app, &a, &garbage).await, StatusCode::ACCEPTED);
    let ended = run_batch(&app, &a, &garbage).await;
    assert_eq!(ended["totals"]["lines"], 6, "{ended}");
    assert_eq!(ended["totals"]["errors"], 6);
    let errors = app
        .get_json(&format!("/api/v1/batches/{garbage}/errors"), &a)
        .await;
    assert_eq!(errors["items"][5]["code"], "TOO_MANY_SEEDS");

    // A file over the byte limit: 413 at start.
    let large = new_batch(false).await;
    put_seeds(&app, &a, &large, vec![b'\n'; 10_001]).await;
    let too_large = post(&app, &a, &format!("/api/v1/batches/{large}/start")).await;
    assert_envelope(
        too_large,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    )
    .await;

    // Cancel before anything ran: every run fails BATCH_CANCELLED, the batch ends cancelled
    // with its signed manifest.
    assert_eq!(start(&app, &a, &second).await, StatusCode::ACCEPTED);
    // The fan-out runs, no run does.
    let fan_out = fan_out_message(&second);
    docbundle::app::batches::fanout::fan_out(&app.state, &fan_out)
        .await
        .unwrap();
    let cancelled = post(&app, &a, &format!("/api/v1/batches/{second}/cancel")).await;
    assert_eq!(cancelled.status(), StatusCode::ACCEPTED);
    let cancelled: Value = cancelled.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["totals"]["failed"], 1);
    let run = app
        .get_json(
            &format!(
                "/api/v1/bundles/{}",
                batch::run_id(uuid::Uuid::parse_str(&second).unwrap(), 1)
            ),
            &a,
        )
        .await;
    assert_eq!(run["error"]["code"], "BATCH_CANCELLED");
    check_manifest(&app, &a, &cancelled).await;

    // failFast: the first bad line stops the batch, which fails naming it.
    let fast = new_batch(true).await;
    put_seeds(
        &app,
        &a,
        &fast,
        b"{\"n\": 1}\nnot json\n{\"n\": 3}\n".to_vec(),
    )
    .await;
    assert_eq!(start(&app, &a, &fast).await, StatusCode::ACCEPTED);
    let ended = run_batch(&app, &a, &fast).await;
    assert_eq!(ended["status"], "failed", "{ended}");
    assert_eq!(ended["error"]["code"], "LINE_REFUSED");
    assert_eq!(ended["error"]["line"], 2);
    assert_eq!(
        ended["totals"]["lines"], 2,
        "nothing after the refused line was read"
    );
}

#[tokio::test]
async fn hostile_seed_files_end_in_line_errors_not_in_memory() {
    let app = TestApp::spawn().await;
    let a = harness::token("merchant-a").await;
    let configuration = created_id(&app, &a, &config()).await;
    let created = new_batch(&app, &a, &configuration, json!({})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    // A million empty lines, a 3 MiB line, one seed, invalid UTF-8, a 10,000-deep array.
    let mut file = vec![b'\n'; 1_000_000];
    file.extend(std::iter::repeat_n(b'x', 3 * 1024 * 1024));
    file.extend(b"\n{\"n\": 1}\n\xff\xfe{}\n");
    file.extend("[".repeat(10_000).into_bytes());
    file.extend("]".repeat(10_000).into_bytes());
    let upload = reqwest::Client::new()
        .put(created["upload"]["url"].as_str().unwrap())
        .body(file)
        .send()
        .await
        .unwrap();
    assert!(upload.status().is_success());
    // Inline, the request limit holds.
    let inline = put_seeds(&app, &a, &id, vec![b'\n'; 2 * 1024 * 1024]).await;
    assert_envelope(inline, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;
    assert_eq!(start(&app, &a, &id).await, StatusCode::ACCEPTED);
    let ended = run_batch(&app, &a, &id).await;
    assert_eq!(ended["status"], "completed", "{ended}");
    assert_eq!(ended["totals"]["lines"], 1_000_004);
    check_manifest(&app, &a, &ended).await;
    assert_eq!(ended["totals"]["runs"], 1);
    let errors = app
        .get_json(&format!("/api/v1/batches/{id}/errors"), &a)
        .await;
    let listed: Vec<(i64, &str)> = errors["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_i64().unwrap(), e["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            (1_000_001, "LINE_TOO_LONG"),
            (1_000_003, "INVALID_UTF8"),
            (1_000_004, "INVALID_JSON")
        ]
    );
}

#[tokio::test]
async fn a_nul_in_a_line_is_a_line_error_and_a_replaced_file_stops_the_batch() {
    let app = TestApp::spawn().await;
    let a = harness::token("merchant-a").await;
    let mut strict = config();
    strict["dataSchema"]["additionalProperties"] = json!(false);
    let configuration = created_id(&app, &a, &strict).await;
    let batch = || new_batch(&app, &a, &configuration, json!({}));

    // A property named by a NUL (quoted back in the schema's message) is an error of its line.
    let created = batch().await;
    let id = created["id"].as_str().unwrap().to_owned();
    put_seeds(
        &app,
        &a,
        &id,
        b"{\"n\": 1}\n{\"n\": 2, \"\\u0000\": 1}\n{\"n\": 3}\n".to_vec(),
    )
    .await;
    assert_eq!(start(&app, &a, &id).await, StatusCode::ACCEPTED);
    let ended = run_batch(&app, &a, &id).await;
    assert_eq!(ended["status"], "completed", "{ended}");
    assert_eq!(ended["totals"]["runs"], 2);
    let errors = app
        .get_json(&format!("/api/v1/batches/{id}/errors"), &a)
        .await;
    assert_eq!(errors["items"][0]["line"], 2);
    assert_eq!(errors["items"][0]["code"], "SCHEMA_VIOLATION");

    // The file replaced through the upload URL after the start: the batch reads none of it.
    let created = batch().await;
    let id = created["id"].as_str().unwrap().to_owned();
    let url = created["upload"]["url"].as_str().unwrap().to_owned();
    let put = |body: &'static [u8]| {
        let url = url.clone();
        async move {
            let answer = reqwest::Client::new()
                .put(url)
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(answer.status().is_success());
        }
    };
    put(b"{\"n\": 1}\n{\"n\": 2}\n").await;
    assert_eq!(start(&app, &a, &id).await, StatusCode::ACCEPTED);
    put(b"{\"n\": 666}\n").await;
    let ended = run_batch(&app, &a, &id).await;
    assert_eq!(ended["status"], "failed", "{ended}");
    assert_eq!(ended["error"]["code"], "SEEDS_CHANGED");
    assert_eq!(ended["totals"]["runs"], 0);
    check_manifest(&app, &a, &ended).await;
}

#[tokio::test]
async fn hostile_batch_requests_are_clear_4xx_answers() {
    let app = TestApp::spawn().await;
    let a = harness::token("merchant-a").await;
    let b = harness::token("merchant-b").await;
    let configuration = created_id(&app, &a, &config()).await;

    // Create: each hostile body is refused on its field.
    for (body, field) in [
        (
            json!({"configurationId": configuration, "configurationVersion": 1u64 << 40}),
            "configurationVersion",
        ),
        (
            json!({"configurationId": configuration, "configurationVersion": 1.5}),
            "configurationVersion",
        ),
        (
            json!({"configurationId": configuration, "configurationVersion": 0}),
            "configurationVersion",
        ),
        (
            json!({"configurationId": configuration, "configurationVersion": 2}),
            "configurationVersion",
        ),
        (json!({"configurationId": "\u{0}"}), "configurationId"),
        (
            json!({"configurationId": configuration, "failFast": "yes"}),
            "failFast",
        ),
        (
            json!({"configurationId": configuration, "seeds": "\u{0}"}),
            "seeds",
        ),
    ] {
        let refused = create(&app, &a, &body).await;
        let envelope = assert_envelope(
            refused,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert!(
            envelope.to_string().contains(field),
            "{body} is refused on {field}: {envelope}"
        );
    }
    // A version written as JSON Schema counts integers (`1.0`) is version 1.
    let whole = new_batch(
        &app,
        &a,
        &configuration,
        json!({"configurationVersion": 1.0}),
    )
    .await;
    assert_eq!(whole["configurationVersion"], 1);
    // Raw bodies: 10,000-deep JSON, not JSON, NUL bytes.
    for raw in [
        format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000)),
        "not json".to_owned(),
        "{\"configurationId\": \"\u{0}\"}".to_owned(),
        "\u{0}".to_owned(),
    ] {
        let response = app
            .http
            .post(app.url("/api/v1/batches"))
            .bearer_auth(&a)
            .header("content-type", "application/json")
            .body(raw.clone())
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_client_error(),
            "{} for {:.40}",
            response.status(),
            raw
        );
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["requestId"].is_string(), "{body}");
    }
    // Idempotency keys: 256 characters, or a space in one, are not keys.
    for key in ["k".repeat(256), "a key".to_owned()] {
        let response = app
            .http
            .post(app.url("/api/v1/batches"))
            .bearer_auth(&a)
            .header("idempotency-key", key.as_str())
            .json(&json!({"configurationId": configuration}))
            .send()
            .await
            .unwrap();
        let envelope = assert_envelope(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(envelope["error"]["details"][0]["field"], "Idempotency-Key");
    }

    // A batch of merchant A's, with one seed.
    let created = new_batch(&app, &a, &configuration, json!({})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        put_seeds(&app, &a, &id, b"{\"n\": 1}\n".to_vec())
            .await
            .status(),
        StatusCode::OK
    );
    // Merchant B cannot replace its seeds, nor learn that it exists.
    let stolen = put_seeds(&app, &b, &id, b"{\"n\": 666}\n".to_vec()).await;
    assert_envelope(stolen, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    // Over the request limit: 413, before a byte is stored.
    let huge = vec![b'\n'; app.state.settings.max_body_bytes + 1];
    let too_big = put_seeds(&app, &a, &id, huge).await;
    assert_envelope(too_big, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;

    // Paths and queries that are not ids, numbers or cursors.
    for path in [
        "/api/v1/batches/%00".to_owned(),
        "/api/v1/batches/not-a-uuid/errors".to_owned(),
        format!("/api/v1/batches?limit={}", "9".repeat(40)),
        "/api/v1/batches?limit=0".to_owned(),
        "/api/v1/batches?cursor=%00".to_owned(),
        // {"line": "x"}: a cursor of the right shape with a wrong value.
        format!("/api/v1/batches/{id}/errors?cursor=eyJsaW5lIjoieCJ9"),
        format!("/api/v1/batches/{id}/errors?limit=-1"),
        format!("/api/v1/batches?merchantId={}", harness::MERCHANT_B),
    ] {
        let response = app.call(Method::GET, &path, &a).await;
        let status = response.status();
        assert!(status.is_client_error(), "{status} for {path}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["code"].is_string(), "{path}: {body}");
    }
    for path in [
        "/api/v1/batches/%00/start",
        "/api/v1/batches/..%2F..%2Fetc/cancel",
    ] {
        let response = app.call(Method::POST, path, &a).await;
        assert!(response.status().is_client_error(), "{path}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["code"].is_string(), "{path}: {body}");
    }

    // The batch still has merchant A's one seed: it starts and makes one run.
    assert_eq!(start(&app, &a, &id).await, StatusCode::ACCEPTED);
    let ended = run_batch(&app, &a, &id).await;
    assert_eq!(ended["status"], "completed");
    assert_eq!(ended["totals"]["runs"], 1);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM bundle_runs r JOIN seeds s \
             ON s.merchant_id = r.merchant_id AND s.hash = r.seed_hash \
             WHERE r.batch_id = $1 AND s.canonical = '{\"n\":1}'",
            &id
        )
        .await,
        1
    );
}
