//! The transparency log end to end: 200 runs across two merchants, every run's inclusion
//! proof verified against its signed checkpoint, consistency between checkpoints, an altered
//! entry detected, tenancy.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::configurations::created_id;
use crate::harness::{self, assert_envelope, TestApp, MERCHANT_A};
use docbundle::app::transparency::Inclusion;
use docbundle::domain::keys::Jwks;
use docbundle::http::answers::ConsistencyView;
use docbundle_local::verify::{verify_checkpoint, verify_consistency, verify_inclusion};

fn note_config() -> Value {
    json!({"name": "Notes", "documents": [{"name": "note.txt", "format": "txt", "template": "Note {{ data.n }}"}]})
}

/// Launches `count` runs of `configuration` with distinct seeds; returns their ids.
async fn launch_many(
    app: &TestApp,
    token: &str,
    configuration: &str,
    count: usize,
    tag: &str,
) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..count {
        let response = app
            .launch(
                token,
                &json!({"configurationId": configuration, "seed": {"n": format!("{tag}-{n}")}}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let run: Value = response.json().await.unwrap();
        ids.push(run["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// How many runs of the app's database have completed.
async fn completed_runs(app: &TestApp) -> i64 {
    let conn = app.state.db.get().await.unwrap();
    conn.query_one(
        "SELECT count(*) FROM bundle_runs WHERE status = 'completed'",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// Feeds the worker until every run of the app's database is finished.
async fn drain(app: &TestApp) {
    for _ in 0..600 {
        let conn = app.state.db.get().await.unwrap();
        let open: i64 = conn
            .query_one(
                "SELECT count(*) FROM bundle_runs WHERE status NOT IN ('completed', 'failed')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if open == 0 {
            return;
        }
        docbundle_local::poller::poll_once(&app.state, Duration::from_millis(200))
            .await
            .unwrap();
    }
    panic!("runs did not finish");
}

async fn checkpoint(app: &TestApp, token: &str) -> Value {
    let issued = docbundle::app::transparency::issue_checkpoints(&app.state)
        .await
        .unwrap();
    assert!(issued <= 2);
    app.get_json("/api/v1/transparency/checkpoint", token).await
}

/// A run's entry in its log, as the API answers it.
fn inclusion(run: &Value) -> Inclusion {
    serde_json::from_value(run["transparency"].clone()).expect("the run's transparency")
}

/// The hashes of a consistency answer.
fn proof_of(answer: &Value) -> Vec<String> {
    serde_json::from_value::<ConsistencyView>(answer.clone())
        .expect("a consistency answer")
        .proof
}

/// Verifies every run's inclusion proof with its own manifest bytes; returns the log indexes.
async fn verify_runs(app: &TestApp, token: &str, ids: &[String], keys: &Jwks) -> Vec<u64> {
    let merchant = docbundle::domain::MerchantId::from(uuid::Uuid::parse_str(MERCHANT_A).unwrap());
    let mut indexes = Vec::new();
    for id in ids {
        let run = app.get_json(&format!("/api/v1/bundles/{id}"), token).await;
        assert_eq!(run["status"], "completed", "{run}");
        let transparency: &Inclusion = &inclusion(&run);
        let manifest = harness::download(run["manifest"]["downloadUrl"].as_str().unwrap()).await;
        let run_merchant = docbundle::domain::MerchantId::from(
            uuid::Uuid::parse_str(run["merchantId"].as_str().unwrap()).unwrap(),
        );
        let checkpoint = verify_inclusion(&manifest, run_merchant, transparency, keys)
            .unwrap_or_else(|e| panic!("run {id}: {e}"));
        assert_eq!(
            checkpoint.origin,
            format!(
                "{}/{}",
                app.state.settings.log_origin_prefix,
                run["merchantId"].as_str().unwrap()
            )
        );
        // Another merchant's log does not hold it.
        if run_merchant != merchant {
            assert!(verify_inclusion(&manifest, merchant, transparency, keys).is_err());
        }
        indexes.push(transparency.log_index);
    }
    indexes
}

#[tokio::test]
async fn two_hundred_runs_across_two_merchants_are_proven_in_their_own_logs() {
    let app = TestApp::spawn().await;
    let a = harness::token("merchant-a").await;
    let b = harness::token("merchant-b").await;
    let keys: Jwks =
        serde_json::from_value(app.get_json("/api/v1/signing-keys", &a).await).unwrap();
    let config_a = created_id(&app, &a, &note_config()).await;
    let config_b = created_id(&app, &b, &note_config()).await;
    let none = app
        .call(Method::GET, "/api/v1/transparency/checkpoint", &a)
        .await;
    assert_envelope(none, StatusCode::NOT_FOUND, "NOT_FOUND").await;

    // A's log in three steps (a checkpoint after each), B's alongside.
    let mut runs_a = Vec::new();
    let mut checkpoints = Vec::new();
    for (step, count) in [(0, 50), (1, 50), (2, 20)] {
        runs_a.extend(launch_many(&app, &a, &config_a, count, &format!("a{step}")).await);
        if step == 0 {
            launch_many(&app, &b, &config_b, 80, "b").await;
        }
        drain(&app).await;
        checkpoints.push(checkpoint(&app, &a).await);
    }
    let sizes: Vec<u64> = checkpoints
        .iter()
        .map(|c| c["treeSize"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, [50, 100, 120]);
    let mut indexes = verify_runs(&app, &a, &runs_a, &keys).await;
    indexes.sort_unstable();
    assert_eq!(
        indexes,
        (0..120).collect::<Vec<u64>>(),
        "every run once, densely"
    );

    // Every pair of checkpoints is consistent, by the API's proofs.
    let parsed: Vec<_> = checkpoints
        .iter()
        .map(|c| verify_checkpoint(c["checkpoint"].as_str().unwrap(), &keys).unwrap())
        .collect();
    for old in &parsed {
        for new in parsed.iter().filter(|n| n.size >= old.size) {
            let proof = app
                .get_json(
                    &format!(
                        "/api/v1/transparency/consistency?from={}&to={}",
                        old.size, new.size
                    ),
                    &a,
                )
                .await;
            verify_consistency(old, new, &proof_of(&proof))
                .unwrap_or_else(|e| panic!("{} → {}: {e}", old.size, new.size));
        }
    }
    // A note with a good signature and a bad one by the same key is refused, whatever the
    // order; an unknown key's signature is ignored.
    let note = checkpoints[0]["checkpoint"].as_str().unwrap();
    let line = note.lines().last().unwrap();
    // One character inside the signature changed: still base64, no longer the signature.
    let at = line.len() - 10;
    let flipped = if &line[at..at + 1] == "A" { "B" } else { "A" };
    let bad = format!("{}{flipped}{}", &line[..at], &line[at + 1..]);
    let body = &note[..note.len() - line.len() - 1];
    for forged in [
        format!("{body}{line}\n{bad}\n"),
        format!("{body}{bad}\n{line}\n"),
    ] {
        assert!(verify_checkpoint(&forged, &keys).is_err(), "{forged}");
    }
    // Signed under the log's name (its origin) by the log key, not the manifest key.
    let parsed_note = docbundle::domain::checkpoint::parse(note).unwrap();
    assert_eq!(parsed_note.signatures[0].0, parsed_note.origin);
    let unknown = line.replacen(&parsed_note.origin, "someone-else", 1);
    assert!(verify_checkpoint(&format!("{body}{unknown}\n{line}\n"), &keys).is_ok());
    // A proof from another size does not pass for these.
    let wrong = app
        .get_json("/api/v1/transparency/consistency?from=49&to=120", &a)
        .await;
    assert!(verify_consistency(&parsed[0], &parsed[2], &proof_of(&wrong)).is_err());

    // B: its own log, its own entries; nothing of A's.
    let checkpoint_b = app.get_json("/api/v1/transparency/checkpoint", &b).await;
    assert_eq!(checkpoint_b["treeSize"], 80);
    assert_eq!(
        checkpoint_b["origin"],
        format!(
            "{}/{}",
            app.state.settings.log_origin_prefix,
            harness::MERCHANT_B
        )
    );
    let entries_b = app
        .get_json("/api/v1/transparency/entries?start=0&end=80", &b)
        .await;
    let entries_a = app
        .get_json("/api/v1/transparency/entries?start=0&end=120", &a)
        .await;
    let ids_a: std::collections::HashSet<&str> = entries_a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["runId"].as_str().unwrap())
        .collect();
    assert_eq!(ids_a.len(), 120);
    assert!(entries_b["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| !ids_a.contains(e["runId"].as_str().unwrap())));
    let response = app
        .call(Method::GET, &format!("/api/v1/bundles/{}", runs_a[0]), &b)
        .await;
    assert_envelope(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    for path in [
        "/api/v1/transparency/consistency?from=1&to=81",
        "/api/v1/transparency/consistency?from=0&to=5",
        "/api/v1/transparency/consistency?from=9&to=5",
        "/api/v1/transparency/consistency?from=1&to=18446744073709551615",
        "/api/v1/transparency/consistency?from=-1&to=5",
        "/api/v1/transparency/entries?start=0&end=81",
        "/api/v1/transparency/entries?start=5&end=5",
        "/api/v1/transparency/entries?start=0&end=5000",
    ] {
        let response = app.call(Method::GET, path, &b).await;
        assert_envelope(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
    }
    // The leaf hash an auditor mirrors is SHA-256(0x00 ‖ the manifest's bytes).
    let first = &entries_a["entries"][0];
    let run = app
        .get_json(
            &format!("/api/v1/bundles/{}", first["runId"].as_str().unwrap()),
            &a,
        )
        .await;
    let manifest = harness::download(run["manifest"]["downloadUrl"].as_str().unwrap()).await;
    assert_eq!(
        first["leafHash"],
        hex::encode(docbundle::domain::merkle::leaf_hash(&manifest))
    );

    // An entry altered in the database is caught: the neighbour whose proof uses it no
    // longer verifies against the signed checkpoint, and the entry no longer matches its
    // manifest for an auditor who mirrors the log.
    let a_id = uuid::Uuid::parse_str(MERCHANT_A).unwrap();
    let merchant = docbundle::domain::MerchantId::from(a_id);
    let conn = app.state.db.get().await.unwrap();
    conn.execute(
        "UPDATE transparency_nodes SET hash = sha256('forged') WHERE merchant_id = $1 AND level = 0 AND idx = 7",
        &[&a_id],
    )
    .await
    .unwrap();
    let neighbour = entries_a["entries"][6]["runId"].as_str().unwrap();
    let run = app
        .get_json(&format!("/api/v1/bundles/{neighbour}"), &a)
        .await;
    let manifest = harness::download(run["manifest"]["downloadUrl"].as_str().unwrap()).await;
    let err = verify_inclusion(&manifest, merchant, &inclusion(&run), &keys)
        .unwrap_err()
        .to_string();
    assert!(err.contains("is not entry 6"), "{err}");
    let mirrored = app
        .get_json("/api/v1/transparency/entries?start=7&end=8", &a)
        .await;
    let victim = app
        .get_json(
            &format!(
                "/api/v1/bundles/{}",
                mirrored["entries"][0]["runId"].as_str().unwrap()
            ),
            &a,
        )
        .await;
    let manifest = harness::download(victim["manifest"]["downloadUrl"].as_str().unwrap()).await;
    assert_ne!(
        mirrored["entries"][0]["leafHash"],
        hex::encode(docbundle::domain::merkle::leaf_hash(&manifest))
    );

    // History rewritten higher up (the subtree of the first 64 entries): the next checkpoint
    // is not consistent with the one before; a monitor says fork.
    conn.execute(
        "UPDATE transparency_nodes SET hash = sha256('rewritten') WHERE merchant_id = $1 AND level = 6 AND idx = 0",
        &[&a_id],
    )
    .await
    .unwrap();
    launch_many(&app, &a, &config_a, 1, "after").await;
    drain(&app).await;
    let later = checkpoint(&app, &a).await;
    let later = verify_checkpoint(later["checkpoint"].as_str().unwrap(), &keys).unwrap();
    assert_eq!(later.size, 121);
    let proof = app
        .get_json("/api/v1/transparency/consistency?from=120&to=121", &a)
        .await;
    let err = verify_consistency(&parsed[2], &later, &proof_of(&proof))
        .unwrap_err()
        .to_string();
    assert!(err.contains("fork"), "{err}");
}

/// The manifest says which renderer build made it; a replay that differs because the engine
/// changed says so instead of looking like tampering.
#[tokio::test]
async fn a_replay_that_differs_says_whether_the_renderer_changed() {
    let app = TestApp::spawn().await;
    let token = harness::token("merchant-a").await;
    let config = created_id(&app, &token, &note_config()).await;
    let launch = app
        .launch(
            &token,
            &json!({"configurationId": config, "seed": {"n": 1}}),
        )
        .await;
    let original: Value = launch.json().await.unwrap();
    let original = app
        .run_to_end(&token, original["id"].as_str().unwrap())
        .await;
    let manifest = harness::download(original["manifest"]["downloadUrl"].as_str().unwrap()).await;
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    let renderer = &manifest["renderer"];
    assert_eq!(renderer["typst"], docbundle::render::TYPST_VERSION);
    assert_eq!(renderer["minijinja"], docbundle::render::MINIJINJA_VERSION);
    assert_eq!(renderer["arch"], std::env::consts::ARCH);
    assert_eq!(renderer["fonts"].as_str().unwrap().len(), 64);

    // The original's artefact recorded as other bytes (as an older engine would have made):
    // not identical, and the renderer is the same, so no excuse.
    let id = uuid::Uuid::parse_str(original["id"].as_str().unwrap()).unwrap();
    let conn = app.state.db.get().await.unwrap();
    conn.execute(
        "UPDATE artefacts SET sha256 = repeat('0', 64) WHERE run_id = $1",
        &[&id],
    )
    .await
    .unwrap();
    let body =
        json!({"configurationId": config, "forcingOptions": {"replayRunId": original["id"]}});
    let run: Value = app.launch(&token, &body).await.json().await.unwrap();
    let same_engine = app.run_to_end(&token, run["id"].as_str().unwrap()).await;
    assert_eq!(same_engine["manifest"]["replay"]["identical"], false);
    assert!(
        same_engine["manifest"]["replay"].get("reason").is_none(),
        "{}",
        same_engine["manifest"]
    );
    // The original made by another Typst: the difference is explained.
    conn.execute(
        "UPDATE manifests SET body = jsonb_set(body, '{renderer,typst}', '\"0.14.2\"') WHERE run_id = $1",
        &[&id],
    )
    .await
    .unwrap();
    let run: Value = app.launch(&token, &body).await.json().await.unwrap();
    let other_engine = app.run_to_end(&token, run["id"].as_str().unwrap()).await;
    assert_eq!(other_engine["manifest"]["replay"]["identical"], false);
    assert_eq!(
        other_engine["manifest"]["replay"]["reason"],
        "renderer changed"
    );
}

/// The log sequences in batches: completions only queue their entries (no lock on the log);
/// one pass integrates them all in one transaction per merchant, dense and in the order they
/// were queued, and the next checkpoint covers them. Until then a completed run is pending:
/// no `transparency` yet, and the alarm's figure (the oldest pending entry's age) says so.
#[tokio::test]
async fn completions_queue_their_entries_and_one_pass_integrates_them_all() {
    let app = TestApp::spawn().await;
    let a = harness::token("merchant-a").await;
    let keys: Jwks =
        serde_json::from_value(app.get_json("/api/v1/signing-keys", &a).await).unwrap();
    let config = created_id(&app, &a, &note_config()).await;
    let ids = launch_many(&app, &a, &config, 40, "queued").await;
    drain(&app).await;
    let conn = app.state.db.get().await.unwrap();
    assert_eq!(count_in(&conn, "transparency_pending").await, 40);
    assert_eq!(count_in(&conn, "transparency_entries").await, 0);
    drop(conn);
    for id in &ids {
        let run = app.get_json(&format!("/api/v1/bundles/{id}"), &a).await;
        assert_eq!(run["status"], "completed", "{run}");
        assert!(run["transparency"].is_null(), "{run}");
    }
    let age = docbundle::app::transparency::oldest_pending_age(&app.state)
        .await
        .unwrap();
    assert!(age > 0.0, "{age}");

    // A completed run with neither an entry nor a pending one is refused at commit.
    let mut conn = app.state.db.get().await.unwrap();
    let first = uuid::Uuid::parse_str(&ids[0]).unwrap();
    let tx = conn.transaction().await.unwrap();
    tx.execute(
        "DELETE FROM transparency_pending WHERE run_id = $1",
        &[&first],
    )
    .await
    .unwrap();
    tx.execute(
        "UPDATE bundle_runs SET status = 'completed' WHERE id = $1",
        &[&first],
    )
    .await
    .unwrap();
    let refused = tx.commit().await.expect_err("completed without its entry");
    assert!(
        format!("{refused:?}").contains("without its transparency log entry"),
        "{refused:?}"
    );
    drop(conn);
    let conn = app.state.db.get().await.unwrap();
    assert_eq!(count_in(&conn, "transparency_pending").await, 40);
    let queued: Vec<uuid::Uuid> = conn
        .query(
            "SELECT run_id FROM transparency_pending ORDER BY queued_at, run_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();

    // One pass: every entry integrated, in one transaction, then one checkpoint.
    let view = checkpoint(&app, &a).await;
    assert_eq!(count_in(&conn, "transparency_pending").await, 0);
    assert_eq!(count_in(&conn, "transparency_entries").await, 40);
    let age = docbundle::app::transparency::oldest_pending_age(&app.state)
        .await
        .unwrap();
    assert_eq!(age, 0.0);
    assert_eq!(view["treeSize"], 40, "{view}");
    let mut indexes = verify_runs(&app, &a, &ids, &keys).await;
    indexes.sort_unstable();
    assert_eq!(indexes, (0..40).collect::<Vec<u64>>());
    // In the order they were queued.
    let order: Vec<uuid::Uuid> = conn
        .query("SELECT run_id FROM transparency_entries ORDER BY idx", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(order, queued);

    // More completions after it: appended after the 40, the next checkpoint consistent.
    let more = launch_many(&app, &a, &config, 5, "later").await;
    drain(&app).await;
    let view = checkpoint(&app, &a).await;
    assert_eq!(view["treeSize"], 45, "{view}");
    let mut indexes = verify_runs(&app, &a, &more, &keys).await;
    indexes.sort_unstable();
    assert_eq!(indexes, (40..45).collect::<Vec<u64>>());
}

async fn count_in(conn: &deadpool_postgres::Object, table: &str) -> i64 {
    conn.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// Between scheduled passes the sequencer loop integrates queued entries every interval,
/// without signing: the entries get their indexes within about a second, the checkpoint
/// comes with the next pass.
#[tokio::test]
async fn the_sequencer_loop_integrates_queued_entries_between_passes() {
    let app = TestApp::spawn().await;
    let a = harness::token("merchant-a").await;
    let config = created_id(&app, &a, &note_config()).await;
    launch_many(&app, &a, &config, 12, "loop").await;
    drain(&app).await;
    let conn = app.state.db.get().await.unwrap();
    assert_eq!(count_in(&conn, "transparency_pending").await, 12);
    let started = std::time::Instant::now();
    let report = docbundle::app::jobs::sequencer::run_until(
        &app.state,
        started + Duration::from_millis(2_600),
        Duration::from_millis(500),
    )
    .await
    .unwrap();
    assert_eq!(report.entries_integrated, 12, "{report:?}");
    assert!(report.passes >= 1, "{report:?}");
    assert_eq!(report.failed_passes, 0);
    assert_eq!(count_in(&conn, "transparency_pending").await, 0);
    assert_eq!(count_in(&conn, "transparency_entries").await, 12);
    // No signature in the loop: the checkpoint is the pass's.
    assert_eq!(count_in(&conn, "transparency_checkpoints").await, 0);
    let view = checkpoint(&app, &a).await;
    assert_eq!(view["treeSize"], 12, "{view}");
    // Nothing pending: the loop ends after its idle passes, long before its window.
    let report = docbundle::app::jobs::sequencer::run_until(
        &app.state,
        std::time::Instant::now() + Duration::from_secs(600),
        Duration::from_millis(10),
    )
    .await
    .unwrap();
    assert_eq!(
        report.passes,
        docbundle::app::jobs::sequencer::IDLE_PASSES,
        "{report:?}"
    );
}

/// Each log as C2SP tlog-tiles, checked by a reader no one here wrote (PyPI aics-tlog, through
/// `tests/tools/tlog_audit.py`): 300 runs across two merchants, the first log past a full tile
/// and published in two steps (its partial tiles widened), every checkpoint cosigned by an
/// independent witness (PyPI aics-witness). From the public tiles alone, with the log's and
/// the witness's verifier keys: the checkpoint's signature and cosignature (quorum 1), the
/// root recomputed from the tiles, every run's inclusion with its own downloaded manifest,
/// and the entry the tiles hold being those bytes. Through the API, a merchant reads its own
/// log's files and not another's.
#[tokio::test]
async fn an_independent_reader_checks_each_log_from_its_tiles() {
    let (app, witness) = TestApp::spawn_witnessed(5_000).await;
    let a = harness::token("merchant-a").await;
    let b = harness::token("merchant-b").await;
    let config_a = created_id(&app, &a, &note_config()).await;
    let config_b = created_id(&app, &b, &note_config()).await;
    launch_many(&app, &a, &config_a, 200, "t0").await;
    launch_many(&app, &b, &config_b, 40, "t0").await;
    drain(&app).await;
    let first = checkpoint(&app, &a).await;
    assert_eq!(first["treeSize"], 200);
    launch_many(&app, &a, &config_a, 60, "t1").await;
    drain(&app).await;
    checkpoint(&app, &a).await;

    let public = app.state.settings.log_public_url.clone().unwrap();
    for (token, merchant, size) in [(&a, MERCHANT_A, 260u64), (&b, harness::MERCHANT_B, 40)] {
        let view = app.get_json("/api/v1/transparency/checkpoint", token).await;
        assert_eq!(view["treeSize"], size, "{view}");
        let tiles = view["tilesUrl"].as_str().unwrap();
        assert_eq!(tiles, format!("{public}/log/{merchant}/"));
        // Anyone reads the published checkpoint, with no credentials.
        let published = reqwest::get(format!("{tiles}checkpoint")).await.unwrap();
        assert_eq!(published.status(), StatusCode::OK);
        assert_eq!(published.text().await.unwrap(), view["checkpoint"]);
        // The witness cosigned every checkpoint of both logs, after checking each against the
        // one before (A's twice: 200, then 260 with a consistency proof from 200).
        let origin = view["origin"].as_str().unwrap();
        assert_eq!(witness.cosigned_size(origin), Some(size), "{origin}");
        assert_eq!(view["quorum"], 1);
        assert_eq!(view["meetsQuorum"], true, "{view}");
        assert_eq!(view["witnesses"][0]["cosigned"], true, "{view}");
        assert_eq!(view["witnesses"][0]["verifierKey"], witness.vkey);
        // The verifier keys, out of band: the log's (named after it) and the witness's.
        let vkey = view["verifierKeys"][0].as_str().unwrap();
        assert!(vkey.starts_with(&format!("{origin}+")), "{vkey}");

        // Every run's manifest, by its index in the log.
        let dir = std::env::temp_dir().join(format!("docbundle-tlog-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let entries = app
            .get_json(
                &format!("/api/v1/transparency/entries?start=0&end={size}"),
                token,
            )
            .await;
        for entry in entries["entries"].as_array().unwrap() {
            let run = app
                .get_json(
                    &format!("/api/v1/bundles/{}", entry["runId"].as_str().unwrap()),
                    token,
                )
                .await;
            let manifest =
                harness::download(run["manifest"]["downloadUrl"].as_str().unwrap()).await;
            std::fs::write(dir.join(format!("{}.json", entry["index"])), manifest).unwrap();
        }
        let report = harness::tlog_audit(tiles, vkey, origin, &dir, &[&witness.vkey]);
        assert_eq!(report["size"], size, "{report}");
        assert_eq!(report["cosignatures"], 1, "{report}");
        assert_eq!(report["inclusions"], size, "{report}");
        std::fs::remove_dir_all(&dir).ok();
    }

    // One log key signs every merchant's log, under each log's name: a log's verifier key,
    // pinned, verifies its own checkpoints and no other log's.
    let view_a = app.get_json("/api/v1/transparency/checkpoint", &a).await;
    let view_b = app.get_json("/api/v1/transparency/checkpoint", &b).await;
    let pinned = |view: &Value| {
        let (name, _, public) = docbundle::domain::checkpoint::parse_verifier_key(
            view["verifierKeys"][0].as_str().unwrap(),
        )
        .unwrap();
        Jwks {
            keys: vec![docbundle::domain::keys::Jwk::ed25519(name, &public)],
        }
    };
    let note = |view: &Value| view["checkpoint"].as_str().unwrap().to_owned();
    assert!(verify_checkpoint(&note(&view_a), &pinned(&view_a)).is_ok());
    assert!(verify_checkpoint(&note(&view_b), &pinned(&view_b)).is_ok());
    assert!(verify_checkpoint(&note(&view_b), &pinned(&view_a)).is_err());
    // The manifest key signs no checkpoint, whatever name a line gives it.
    let keys: Jwks =
        serde_json::from_value(app.get_json("/api/v1/signing-keys", &a).await).unwrap();
    let manifest_only = Jwks {
        keys: keys
            .keys
            .iter()
            .filter(|k| k.role == docbundle::domain::keys::KeyRole::Manifests)
            .cloned()
            .collect(),
    };
    assert!(verify_checkpoint(&note(&view_a), &keys).is_ok());
    assert!(verify_checkpoint(&note(&view_a), &manifest_only).is_err());

    // Through the API, with a token: the merchant's own log; not another's.
    let full = app
        .http
        .get(app.url(&format!(
            "/api/v1/transparency/logs/{MERCHANT_A}/tile/0/000"
        )))
        .bearer_auth(&a)
        .send()
        .await
        .unwrap();
    assert_eq!(full.status(), StatusCode::OK);
    assert_eq!(full.headers()["content-type"], "application/octet-stream");
    assert_eq!(full.bytes().await.unwrap().len(), 256 * 32);
    let theirs = app
        .call(
            Method::GET,
            &format!("/api/v1/transparency/logs/{MERCHANT_A}/checkpoint"),
            &b,
        )
        .await;
    assert_envelope(theirs, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    for hostile in [
        "tile/0/x000/000",
        "tile/0/000.p/0",
        "tile/9/000",
        "tile/0/..%2F..%2Fcheckpoint",
        "tile/entries/000.p/999",
        "checkpoint.bak",
        // Not published: B's log has 40 entries.
        "tile/0/001",
        "tile/0/000%00",
    ] {
        let response = app
            .call(
                Method::GET,
                &format!(
                    "/api/v1/transparency/logs/{}/{hostile}",
                    harness::MERCHANT_B
                ),
                &b,
            )
            .await;
        assert_envelope(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    }
    let malformed = app
        .call(
            Method::GET,
            "/api/v1/transparency/logs/not-a-merchant/checkpoint",
            &b,
        )
        .await;
    assert_envelope(malformed, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

/// A log whose entry cannot be read back (its manifest gone from storage) is not published —
/// no checkpoint appears without its tiles — and it is not tried again on every pass: it waits
/// out a back-off, recorded on the log.
#[tokio::test]
async fn a_log_that_cannot_be_published_waits_before_it_is_tried_again() {
    let app = TestApp::spawn().await;
    let a = harness::token("merchant-a").await;
    let config = created_id(&app, &a, &note_config()).await;
    let ids = launch_many(&app, &a, &config, 3, "gone").await;
    drain(&app).await;
    let run = app
        .get_json(&format!("/api/v1/bundles/{}", ids[1]), &a)
        .await;
    let key = run["manifest"]["key"].as_str().unwrap();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&harness::aws_config(&app.state.settings).await)
            .force_path_style(true)
            .build(),
    );
    s3.delete_object()
        .bucket(&app.state.settings.artefact_bucket)
        .key(key)
        .send()
        .await
        .unwrap();

    let view = checkpoint(&app, &a).await;
    assert_eq!(view["treeSize"], 3);
    let published = reqwest::get(format!("{}checkpoint", view["tilesUrl"].as_str().unwrap()))
        .await
        .unwrap();
    assert_eq!(published.status(), StatusCode::NOT_FOUND);
    let conn = app.state.db.get().await.unwrap();
    async fn state(conn: &deadpool_postgres::Object) -> (i64, i32, bool) {
        let row = conn
            .query_one(
                "SELECT published_size, publish_failures, publish_retry_at > now()
                   FROM transparency_logs WHERE merchant_id = $1",
                &[&uuid::Uuid::parse_str(MERCHANT_A).unwrap()],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    }
    assert_eq!(state(&conn).await, (0, 1, true));
    // The next pass leaves it alone.
    docbundle::app::transparency::issue_checkpoints(&app.state)
        .await
        .unwrap();
    assert_eq!(state(&conn).await, (0, 1, true));
}

/// The state of a log at one witness, as recorded: `(size it cosigned or gave, failures in a
/// row, last error)`.
async fn witness_row(app: &TestApp, witness: &str) -> (i64, i32, Option<String>) {
    let conn = app.state.db.get().await.unwrap();
    let row = conn
        .query_one(
            "SELECT size, failures, last_error FROM transparency_witnesses
              WHERE merchant_id = $1 AND witness = $2",
            &[&uuid::Uuid::parse_str(MERCHANT_A).unwrap(), &witness],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// A witness that is down while 50 runs complete: the runs complete and their checkpoints are
/// signed and published without its cosignature, the log is flagged (below quorum, the reason
/// on the checkpoint view), and a pass during its back-off does not call it. When it returns it
/// catches up in one submission, from the size it last cosigned to the newest, and the
/// published checkpoint then carries its cosignature.
#[tokio::test]
async fn a_witness_that_was_down_catches_up_and_the_log_is_flagged_meanwhile() {
    let (app, mut witness) = TestApp::spawn_witnessed(2_000).await;
    let name = app.state.settings.witnesses.list[0].name.clone();
    let a = harness::token("merchant-a").await;
    let config = created_id(&app, &a, &note_config()).await;
    launch_many(&app, &a, &config, 5, "before").await;
    drain(&app).await;
    let view = checkpoint(&app, &a).await;
    let origin = view["origin"].as_str().unwrap().to_owned();
    assert_eq!(view["meetsQuorum"], true, "{view}");
    assert_eq!(witness.cosigned_size(&origin), Some(5));

    witness.stop();
    for step in 0..2 {
        launch_many(&app, &a, &config, 25, &format!("away{step}")).await;
        drain(&app).await;
        let view = checkpoint(&app, &a).await;
        assert_eq!(view["treeSize"], 5 + 25 * (step + 1), "{view}");
        assert_eq!(view["meetsQuorum"], false, "{view}");
        let seen = &view["witnesses"][0];
        assert_eq!(seen["cosigned"], false, "{view}");
        assert_eq!(seen["cosignedSize"], 5, "{view}");
        assert!(seen["lastError"].as_str().is_some(), "{view}");
        // Signed and published all the same.
        let published = reqwest::get(format!("{}checkpoint", view["tilesUrl"].as_str().unwrap()))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(published, view["checkpoint"].as_str().unwrap());
        if step == 0 {
            // The second checkpoint is signed while the first failure's back-off runs: the
            // witness is not called again (one failure recorded, not two).
            assert_eq!(witness_row(&app, &name).await.1, 1);
        }
    }
    assert_eq!(completed_runs(&app).await, 55);
    let conn = app.state.db.get().await.unwrap();
    assert_eq!(
        docbundle::app::transparency::witnesses::below_quorum(&app.state)
            .await
            .unwrap(),
        1
    );

    witness.serve().await;
    // Its back-off over (the test does not wait it out).
    conn.execute("UPDATE transparency_witnesses SET retry_at = now()", &[])
        .await
        .unwrap();
    docbundle::app::transparency::issue_checkpoints(&app.state)
        .await
        .unwrap();
    let view = app.get_json("/api/v1/transparency/checkpoint", &a).await;
    assert_eq!(view["treeSize"], 55);
    assert_eq!(view["meetsQuorum"], true, "{view}");
    assert_eq!(view["witnesses"][0]["lastError"], Value::Null, "{view}");
    assert_eq!(witness.cosigned_size(&origin), Some(55));
    assert!(
        witness
            .log()
            .contains(&format!("cosigned {origin}: size 5 -> 55")),
        "{}",
        witness.log()
    );
    assert_eq!(witness_row(&app, &name).await, (55, 0, None));
    assert_eq!(
        docbundle::app::transparency::witnesses::below_quorum(&app.state)
            .await
            .unwrap(),
        0
    );
    let published = reqwest::get(format!("{}checkpoint", view["tilesUrl"].as_str().unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(published, view["checkpoint"].as_str().unwrap());
    assert!(published.contains(&format!("\n— {name} ")), "{published}");
}

/// A rewritten history (the subtree of the first 8 entries replaced in the database) is refused
/// by the witness: the next checkpoint is not consistent with the one it cosigned, so it gets
/// no cosignature, the witness keeps the request as evidence, and the reason is on the log.
#[tokio::test]
async fn a_witness_refuses_to_cosign_a_rewritten_history() {
    let (app, witness) = TestApp::spawn_witnessed(5_000).await;
    let name = app.state.settings.witnesses.list[0].name.clone();
    let a = harness::token("merchant-a").await;
    let b = harness::token("merchant-b").await;
    let config_a = created_id(&app, &a, &note_config()).await;
    let config_b = created_id(&app, &b, &note_config()).await;
    launch_many(&app, &a, &config_a, 10, "first").await;
    launch_many(&app, &b, &config_b, 4, "first").await;
    drain(&app).await;
    let view = checkpoint(&app, &a).await;
    assert_eq!(view["meetsQuorum"], true, "{view}");
    let view_b = app.get_json("/api/v1/transparency/checkpoint", &b).await;
    assert_eq!(view_b["meetsQuorum"], true, "{view_b}");

    let conn = app.state.db.get().await.unwrap();
    conn.execute(
        "UPDATE transparency_nodes SET hash = sha256('rewritten') WHERE merchant_id = $1 AND level = 3 AND idx = 0",
        &[&uuid::Uuid::parse_str(MERCHANT_A).unwrap()],
    )
    .await
    .unwrap();
    launch_many(&app, &a, &config_a, 2, "after").await;
    launch_many(&app, &b, &config_b, 2, "after").await;
    drain(&app).await;
    let view = checkpoint(&app, &a).await;
    assert_eq!(view["treeSize"], 12);
    assert_eq!(view["meetsQuorum"], false, "{view}");
    let (size, failures, error) = witness_row(&app, &name).await;
    assert_eq!((size, failures), (10, 1));
    assert!(error.as_deref().unwrap_or("").contains("422"), "{error:?}");
    assert_eq!(
        witness.cosigned_size(view["origin"].as_str().unwrap()),
        Some(10)
    );
    let evidence = witness.status()["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["evidence"].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(evidence, 1);
    // B's log, untouched, is cosigned as usual.
    let view_b = app.get_json("/api/v1/transparency/checkpoint", &b).await;
    assert_eq!(view_b["treeSize"], 6);
    assert_eq!(view_b["meetsQuorum"], true, "{view_b}");
}

/// What a hostile witness does with an `add-checkpoint` request.
#[derive(Clone, Copy)]
enum Hostile {
    /// `200` with text that is not signature lines.
    Garbage,
    /// `200` with 8 MiB.
    Huge,
    /// `200`, then one byte every 200 ms for ever.
    SlowLoris,
    /// Accepts the connection and never answers.
    Silent,
    /// A well-formed cosignature under the witness's name and key hash, by another key.
    WrongKey,
    /// `409` without a size.
    BadConflict,
}

/// A hostile witness on a loopback port; its `(verifier key, URL)`.
async fn hostile_witness(mode: Hostile, name: &str) -> (String, tokio::task::JoinHandle<()>) {
    use ed25519_dalek::{Signer, SigningKey};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mine = SigningKey::from_bytes(&rand_bytes());
    let vkey = vkey_of(name, &mine);
    let (_, hash, _) = docbundle::domain::witness::parse_cosigner_key(&vkey).unwrap();
    let name = name.to_owned();
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let name = name.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then the body by its Content-Length.
                let body = loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let length: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break String::from_utf8_lossy(&request[end + 4..end + 4 + length])
                            .to_string();
                    }
                };
                let ok = |body: &[u8]| {
                    let mut r =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                            .into_bytes();
                    r.extend_from_slice(body);
                    r
                };
                match mode {
                    Hostile::Garbage => {
                        let _ = socket.write_all(&ok(b"<html>hello</html>\n")).await;
                    }
                    Hostile::Huge => {
                        let _ = socket.write_all(&ok(&vec![b'a'; 8 << 20])).await;
                    }
                    Hostile::SlowLoris => {
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                            .await;
                        loop {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            if socket.write_all(b"x").await.is_err() {
                                return;
                            }
                        }
                    }
                    Hostile::Silent => {
                        tokio::time::sleep(Duration::from_secs(600)).await;
                    }
                    Hostile::WrongKey => {
                        // The checkpoint's text: after the blank line ending the header.
                        let note = body.split_once("\n\n").map_or("", |(_, n)| n);
                        let text = note.split_once("\n\n").map_or("", |(t, _)| t);
                        let other = SigningKey::from_bytes(&rand_bytes());
                        let time = 1_800_000_000u64;
                        let message = docbundle::domain::witness::cosigned_message(
                            &format!("{text}\n"),
                            time,
                        );
                        let mut blob = hash.to_vec();
                        blob.extend_from_slice(&time.to_be_bytes());
                        blob.extend_from_slice(&other.sign(&message).to_bytes());
                        use base64::Engine;
                        let line = format!(
                            "— {name} {}\n",
                            base64::engine::general_purpose::STANDARD.encode(blob)
                        );
                        let _ = socket.write_all(&ok(line.as_bytes())).await;
                    }
                    Hostile::BadConflict => {
                        let _ = socket
                            .write_all(b"HTTP/1.1 409 Conflict\r\nContent-Length: 3\r\n\r\nabc")
                            .await;
                    }
                }
            });
        }
    });
    (format!("{vkey} {url}"), task)
}

fn vkey_of(name: &str, key: &ed25519_dalek::SigningKey) -> String {
    docbundle::domain::witness::cosigner_key(name, &key.verifying_key().to_bytes())
}

fn rand_bytes() -> [u8; 32] {
    *uuid::Uuid::new_v4()
        .as_bytes()
        .repeat(2)
        .first_chunk::<32>()
        .unwrap()
}

/// Witnesses that answer garbage, 8 MiB, a slow trickle, nothing at all, a cosignature by
/// another key or a `409` without a size: each submission ends within its timeout (1 s), the
/// reason is recorded on the log, no cosignature is kept, and the log goes on (its checkpoint
/// signed and published, flagged below quorum).
#[tokio::test]
async fn hostile_witnesses_cost_a_pass_their_timeout_and_nothing_else() {
    let modes = [
        (
            Hostile::Garbage,
            "hostile.test/garbage",
            "not signature lines",
        ),
        (Hostile::Huge, "hostile.test/huge", "over 65536 bytes"),
        (Hostile::SlowLoris, "hostile.test/slow", "timed out"),
        (Hostile::Silent, "hostile.test/silent", "timed out"),
        (Hostile::WrongKey, "hostile.test/wrong-key", "does not hold"),
        (
            Hostile::BadConflict,
            "hostile.test/conflict",
            "409 without a tree size",
        ),
    ];
    let mut entries = Vec::new();
    let mut servers = Vec::new();
    for (mode, name, _) in modes {
        let (entry, task) = hostile_witness(mode, name).await;
        entries.push(entry);
        servers.push(task);
    }
    let list = docbundle::domain::witness::parse_list(&entries.join(";")).unwrap();
    let app = TestApp::spawn_with(|s| {
        s.witnesses = docbundle::config::WitnessSettings {
            list,
            quorum: 1,
            timeout: Duration::from_secs(1),
        };
    })
    .await;
    let a = harness::token("merchant-a").await;
    let config = created_id(&app, &a, &note_config()).await;
    launch_many(&app, &a, &config, 3, "hostile").await;
    drain(&app).await;
    // Bounded far above what it needs (six witnesses, 1 s each): a pass that hung would not
    // end at all.
    let issued = tokio::time::timeout(
        Duration::from_secs(60),
        docbundle::app::transparency::issue_checkpoints(&app.state),
    )
    .await
    .expect("the pass ends")
    .unwrap();
    assert_eq!(issued, 1);
    let view = app.get_json("/api/v1/transparency/checkpoint", &a).await;
    assert_eq!(view["treeSize"], 3);
    assert_eq!(view["meetsQuorum"], false, "{view}");
    let note = view["checkpoint"].as_str().unwrap();
    assert_eq!(
        docbundle::domain::checkpoint::parse(note)
            .unwrap()
            .signatures
            .len(),
        1,
        "no cosignature kept: {note}"
    );
    for (i, (_, name, why)) in modes.iter().enumerate() {
        let seen = &view["witnesses"][i];
        assert_eq!(seen["name"], *name);
        assert_eq!(seen["cosigned"], false, "{seen}");
        let error = seen["lastError"].as_str().unwrap_or_default();
        assert!(error.contains(why), "{name}: {error}");
    }
    let published = reqwest::get(format!("{}checkpoint", view["tilesUrl"].as_str().unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(published, note);
    for task in servers {
        task.abort();
    }
}

/// A long history (here 560 entries published 256 at a time) goes out a chunk of full tiles
/// per pass: the tiles appear ahead of the checkpoint, which is published only once every tile
/// it covers is there; then an independent reader checks the whole log from them.
#[tokio::test]
async fn a_long_history_is_published_a_chunk_per_pass() {
    let app = TestApp::spawn_with(|s| s.log_publish_chunk = 256).await;
    let a = harness::token("merchant-a").await;
    let config = created_id(&app, &a, &note_config()).await;
    // As a batch: 560 launches would take most of the merchant's interactive launches of a
    // minute, which other tests share.
    let batch = crate::batches::new_batch(&app, &a, &config, json!({})).await;
    let id = batch["id"].as_str().unwrap();
    let seeds: String = (0..560)
        .map(|n| format!("{{\"n\": \"long-{n}\"}}\n"))
        .collect();
    let put = crate::batches::put_seeds(&app, &a, id, seeds.into_bytes()).await;
    assert!(put.status().is_success(), "{}", put.status());
    assert_eq!(
        crate::batches::start(&app, &a, id).await,
        StatusCode::ACCEPTED
    );
    for _ in 0..1200 {
        if completed_runs(&app).await == 560 {
            break;
        }
        docbundle_local::poller::poll(
            &app.state,
            docbundle_local::poller::Consumer::BatchWorker,
            Duration::from_millis(200),
        )
        .await
        .expect("poll");
    }
    let public = |path: &str| {
        let url = format!(
            "{}/log/{MERCHANT_A}/{path}",
            app.state.settings.log_public_url.as_deref().unwrap()
        );
        async move { reqwest::get(url).await.unwrap().status() }
    };
    let conn = app.state.db.get().await.unwrap();
    let through = || async {
        conn.query_one(
            "SELECT tiles_through, published_size FROM transparency_logs WHERE merchant_id = $1",
            &[&uuid::Uuid::parse_str(MERCHANT_A).unwrap()],
        )
        .await
        .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
        .unwrap()
    };
    let view = checkpoint(&app, &a).await;
    assert_eq!(view["treeSize"], 560);
    assert_eq!(through().await, (256, 0));
    assert_eq!(public("tile/0/000").await, StatusCode::OK);
    assert_eq!(public("tile/entries/000").await, StatusCode::OK);
    assert_eq!(public("tile/0/001").await, StatusCode::NOT_FOUND);
    assert_eq!(public("checkpoint").await, StatusCode::NOT_FOUND);
    checkpoint(&app, &a).await;
    assert_eq!(through().await, (512, 0));
    assert_eq!(public("tile/entries/001").await, StatusCode::OK);
    assert_eq!(public("checkpoint").await, StatusCode::NOT_FOUND);
    checkpoint(&app, &a).await;
    assert_eq!(through().await.1, 560);
    assert_eq!(public("checkpoint").await, StatusCode::OK);
    assert_eq!(public("tile/0/002.p/48").await, StatusCode::OK);
    assert_eq!(public("tile/1/000.p/2").await, StatusCode::OK);

    // The whole log from its tiles, and the entries at each chunk's edges by their manifests.
    let dir = std::env::temp_dir().join(format!("docbundle-tlog-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    for index in [0u64, 255, 256, 511, 512, 559] {
        let entry = app
            .get_json(
                &format!(
                    "/api/v1/transparency/entries?start={index}&end={}",
                    index + 1
                ),
                &a,
            )
            .await;
        let run = app
            .get_json(
                &format!(
                    "/api/v1/bundles/{}",
                    entry["entries"][0]["runId"].as_str().unwrap()
                ),
                &a,
            )
            .await;
        let manifest = harness::download(run["manifest"]["downloadUrl"].as_str().unwrap()).await;
        std::fs::write(dir.join(format!("{index}.json")), manifest).unwrap();
    }
    let report = harness::tlog_audit(
        view["tilesUrl"].as_str().unwrap(),
        view["verifierKeys"][0].as_str().unwrap(),
        view["origin"].as_str().unwrap(),
        &dir,
        &[],
    );
    assert_eq!(
        (report["size"].as_u64(), report["inclusions"].as_u64()),
        (Some(560), Some(6))
    );
    std::fs::remove_dir_all(&dir).ok();
}
