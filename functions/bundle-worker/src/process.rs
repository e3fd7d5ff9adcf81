//! Processing one run, in named steps: claim it, load its inputs, render, upload, check a
//! replay, sign the manifest, record. Idempotent under redelivery and concurrent duplicates:
//! object keys are deterministic, the status only moves forward through conditional updates,
//! and a finished run is acknowledged without work.

use std::collections::BTreeMap;

use docbundle::domain::configuration::DocumentSpec;
use docbundle::domain::events::RunMessage;
use docbundle::domain::manifest::{self, Artefact, Manifest, ManifestAsset, ReplayCheck};
use docbundle::domain::run_errors;
use docbundle::domain::seed::SeedHash;
use docbundle::domain::tlog::{self, Hash};
use docbundle::error::DependencyError;
use docbundle::infra::db::runs::{self, BundleRun, Claim, ManifestRecord};
use docbundle::infra::db::{configurations, outbox};
use docbundle::render::RenderAsset;
use docbundle::AppState;
use serde_json::{json, Value};

use docbundle::render::bundle::{
    render_bundle, BundleInput, RenderedArtefact, RENDERER_UNAVAILABLE,
};

/// How a message ended, when it did not need a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    /// Another delivery finished it first.
    AlreadyFinished,
    /// Marked `failed` for a reason a retry cannot fix.
    Failed(String),
    /// No such run (or it belongs to another merchant than the message says).
    Unknown,
}

/// Why a run cannot complete, for good: recorded on the run as `{code, message, document?}`.
struct Permanent(Value);

fn permanent(code: &str, message: impl Into<String>) -> Permanent {
    Permanent(json!({"code": code, "message": message.into()}))
}

/// A step's result: done, failed for good (the run is marked `failed`), or a transient fault
/// (the message is retried).
type Step<T> = Result<Result<T, Permanent>, DependencyError>;

/// Processes the run named by `message`. `Err` means a transient fault: the message must be
/// retried (SQS redelivers it, then moves it to the DLQ).
pub async fn process_run(
    state: &AppState,
    message: &RunMessage,
) -> Result<Outcome, DependencyError> {
    let Some(run) = claim(state, message).await? else {
        return Ok(Outcome::Unknown);
    };
    let Ok(run) = run else {
        return Ok(Outcome::AlreadyFinished);
    };
    let started = std::time::Instant::now();
    let outcome = finish(state, &run).await;
    record_metrics(&run, started.elapsed(), &outcome);
    outcome
}

/// Produces and records the run, or fails it (for good, or because this was its last
/// attempt).
async fn finish(state: &AppState, run: &BundleRun) -> Result<Outcome, DependencyError> {
    let finished = match produce(state, run).await {
        Ok(Ok(record)) => complete(state, run, record).await,
        Ok(Err(Permanent(error))) => return fail(state, run, error).await,
        Err(transient) => Err(transient),
    };
    match finished {
        // The last attempt SQS will deliver: fail the run now rather than leave it
        // `processing` while its message sits in the dead-letter queue.
        Err(transient) if run.attempts >= state.settings.run_max_attempts => {
            let error = json!({
                "code": run_errors::RETRIES_EXHAUSTED,
                "message": format!("gave up after {} attempts: {transient}", run.attempts),
            });
            fail(state, run, error).await
        }
        other => other,
    }
}

/// The run, claimed for processing: `None` when unknown (or another merchant's), `Err(())`
/// when already finished.
async fn claim(
    state: &AppState,
    message: &RunMessage,
) -> Result<Option<Result<BundleRun, ()>>, DependencyError> {
    Ok(match runs::claim(&state.db, message.run_id).await? {
        Claim::Missing => None,
        Claim::Finished(_) => Some(Err(())),
        Claim::Claimed(run) if run.merchant_id != message.merchant_id => {
            tracing::error!(run_id = %run.id, "message names another merchant than the run's");
            None
        }
        Claim::Claimed(run) => Some(Ok(run)),
    })
}

/// Everything from inputs to a signed, stored manifest.
async fn produce(state: &AppState, run: &BundleRun) -> Step<(Vec<Artefact>, ManifestRecord, Hash)> {
    let inputs = match load_inputs(state, run).await? {
        Ok(inputs) => inputs,
        Err(failure) => return Ok(Err(failure)),
    };
    // The version's pinned hashes (each asset's bytes were checked against its hash on load).
    let used: Vec<ManifestAsset> = inputs
        .pinned
        .iter()
        .map(|(name, sha256)| ManifestAsset {
            name: name.clone(),
            sha256: sha256.clone(),
        })
        .collect();
    let rendered = match render(state, run, inputs).await? {
        Ok(rendered) => rendered,
        Err(failure) => return Ok(Err(failure)),
    };
    let artefacts = upload(state, run, rendered).await?;
    let replay = replay_check(state, run, &artefacts).await?;
    sign_and_store(state, run, artefacts, used, replay).await
}

/// What a run is rendered from.
struct Inputs {
    documents: Vec<DocumentSpec>,
    archive: bool,
    name: String,
    version: i32,
    seed_hash: SeedHash,
    data: Value,
    assets: Vec<RenderAsset>,
    /// The version's assets: name → SHA-256.
    pinned: BTreeMap<String, String>,
}

async fn load_inputs(state: &AppState, run: &BundleRun) -> Step<Inputs> {
    let merchant = run.merchant();
    let Some(version) = configurations::find_version(
        &state.db,
        merchant,
        run.configuration_id,
        run.configuration_version,
    )
    .await?
    else {
        return Ok(Err(permanent(
            run_errors::CONFIGURATION_MISSING,
            "the run's configuration version no longer exists",
        )));
    };
    let Some(seed) = runs::find_seed(&state.db, merchant, &run.seed_hash).await? else {
        return Ok(Err(permanent(
            run_errors::SEED_MISSING,
            "the run's seed no longer exists",
        )));
    };
    let data = match seed.value() {
        Ok(data) => data,
        Err(e) => {
            return Ok(Err(permanent(
                run_errors::SEED_UNREADABLE,
                format!("the run's stored seed is not JSON: {e}"),
            )))
        }
    };
    // Assets are immutable and pinned by hash: one that cannot be found is gone for good,
    // while a storage fault is worth a retry.
    let stored = docbundle::app::assets::load(state, merchant, &version.assets).await?;
    let assets = match docbundle::render::configuration::render_assets(&version.assets, &stored) {
        Ok(assets) => assets,
        Err(problems) => {
            let named: Vec<String> = problems
                .iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect();
            return Ok(Err(permanent(run_errors::ASSET_MISSING, named.join("; "))));
        }
    };
    Ok(Ok(Inputs {
        documents: version.documents,
        archive: version.archive,
        name: version.name,
        version: version.version,
        seed_hash: seed.hash,
        data,
        assets,
        pinned: version.assets,
    }))
}

/// Renders every document in the rendering processes (a blocking pool thread waits for them).
async fn render(state: &AppState, run: &BundleRun, inputs: Inputs) -> Step<Vec<RenderedArtefact>> {
    let renderer = state.renderer.clone();
    let rendered = tokio::task::spawn_blocking(move || {
        render_bundle(
            &BundleInput {
                documents: &inputs.documents,
                archive: inputs.archive,
                data: &inputs.data,
                seed_hash: inputs.seed_hash.as_str(),
                configuration_name: &inputs.name,
                configuration_version: inputs.version,
                assets: &inputs.assets,
            },
            &renderer,
        )
    })
    .await
    .map_err(|e| DependencyError::failed("worker", "render", e))?;
    match rendered {
        Ok(artefacts) => Ok(Ok(artefacts)),
        // The host could not start a rendering process: not the template's fault, so SQS
        // retries the message (and the run stays `processing` until then).
        Err(failure) if failure.code == RENDERER_UNAVAILABLE => Err(DependencyError::failed(
            "worker",
            format!("render run {}", run.id),
            failure.message,
        )),
        Err(failure) => Ok(Err(Permanent(failure.to_json()))),
    }
}

/// Uploads every artefact; keys are deterministic, so a retry overwrites with the same bytes.
async fn upload(
    state: &AppState,
    run: &BundleRun,
    rendered: Vec<RenderedArtefact>,
) -> Result<Vec<Artefact>, DependencyError> {
    let uploads = rendered.into_iter().map(|artefact| {
        let key = manifest::artefact_key(run.merchant_id, run.id, &artefact.name);
        async move {
            let stored = state
                .store
                .put(&key, artefact.bytes, &artefact.content_type)
                .await?;
            Ok::<_, DependencyError>(Artefact {
                name: artefact.name,
                format: artefact.format,
                content_type: artefact.content_type,
                key,
                size: stored.size,
                sha256: stored.sha256,
            })
        }
    });
    let mut artefacts = futures::future::try_join_all(uploads).await?;
    artefacts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(artefacts)
}

/// For a replay: whether every artefact came out as the original's did.
async fn replay_check(
    state: &AppState,
    run: &BundleRun,
    artefacts: &[Artefact],
) -> Result<Option<ReplayCheck>, DependencyError> {
    let Some(original) = run.replay_of else {
        return Ok(None);
    };
    let digests = |list: Vec<(String, String)>| list.into_iter().collect::<BTreeMap<_, _>>();
    let before = digests(
        runs::artefacts(&state.db, original)
            .await?
            .into_iter()
            .map(|a| (a.name, a.sha256))
            .collect(),
    );
    let now = digests(
        artefacts
            .iter()
            .map(|a| (a.name.clone(), a.sha256.clone()))
            .collect(),
    );
    let identical = before == now;
    let reason = if identical {
        None
    } else {
        let then = runs::manifest(&state.db, original)
            .await?
            .and_then(|m| m.body.get("renderer").cloned());
        let here = serde_json::to_value(docbundle::render::build()).ok();
        (then != here).then(|| "renderer changed".to_owned())
    };
    Ok(Some(ReplayCheck {
        of: original,
        identical,
        reason,
    }))
}

/// Builds the manifest, has Vault sign its exact bytes, and stores it beside the artefacts.
async fn sign_and_store(
    state: &AppState,
    run: &BundleRun,
    artefacts: Vec<Artefact>,
    assets: Vec<ManifestAsset>,
    replay: Option<ReplayCheck>,
) -> Step<(Vec<Artefact>, ManifestRecord, Hash)> {
    let manifest = Manifest {
        schema: manifest::SCHEMA.to_owned(),
        run_id: run.id,
        merchant_id: run.merchant_id,
        configuration_id: run.configuration_id,
        configuration_version: run.configuration_version,
        seed_hash: run.seed_hash.clone(),
        assets,
        replay_of: run.replay_of,
        bundle_digest: manifest::bundle_digest(&artefacts),
        artefacts,
        replay,
        renderer: Some(docbundle::render::build()),
    };
    let encoded = manifest
        .to_bytes()
        .and_then(|bytes| Ok((bytes, serde_json::to_value(&manifest)?)));
    let (bytes, body) = match encoded {
        Ok(encoded) => encoded,
        Err(e) => {
            return Ok(Err(permanent(
                run_errors::MANIFEST_ERROR,
                format!("the manifest cannot be encoded: {e}"),
            )))
        }
    };
    let signature = state.vault.sign(&bytes).await?;
    // The run's entry in its merchant's transparency log: these exact bytes.
    let leaf = tlog::leaf_hash(&bytes);
    let key = manifest::manifest_key(run.merchant_id, run.id);
    let stored = state.store.put(&key, bytes, "application/json").await?;
    let record = ManifestRecord {
        key,
        sha256: stored.sha256,
        bundle_digest: manifest.bundle_digest.clone(),
        signature: signature.signature,
        key_id: state.vault.key_id(signature.key_version),
        body,
    };
    Ok(Ok((manifest.artefacts, record, leaf)))
}

/// Records artefacts and manifest and marks the run `completed`, if it still is `processing`.
async fn complete(
    state: &AppState,
    run: &BundleRun,
    (artefacts, record, leaf): (Vec<Artefact>, ManifestRecord, Hash),
) -> Result<Outcome, DependencyError> {
    if let Some(deliveries) = runs::complete(&state.db, run, &artefacts, &record, &leaf).await? {
        outbox::publish_all(&state.db, &state.publisher, &deliveries).await;
        tracing::info!(run_id = %run.id, artefacts = artefacts.len(), "run completed");
        docbundle::metrics::emit(
            &[("Outcome", "completed")],
            &[
                (
                    "Documents",
                    artefacts.len() as f64,
                    docbundle::metrics::Unit::Count,
                ),
                (
                    "BundleBytes",
                    artefacts.iter().map(|a| a.size as f64).sum(),
                    docbundle::metrics::Unit::Bytes,
                ),
            ],
            &[("runId", json!(run.id))],
        );
        Ok(Outcome::Completed)
    } else {
        Ok(Outcome::AlreadyFinished)
    }
}

/// One embedded-metric line per processed run: duration, outcome and, when completed, the
/// documents and bytes it produced.
fn record_metrics(
    run: &BundleRun,
    elapsed: std::time::Duration,
    outcome: &Result<Outcome, DependencyError>,
) {
    use docbundle::metrics::{emit, Unit};
    let label = match outcome {
        Ok(Outcome::Completed) => "completed",
        Ok(Outcome::Failed(_)) => "failed",
        Ok(Outcome::AlreadyFinished | Outcome::Unknown) => return,
        Err(_) => "retried",
    };
    emit(
        &[("Outcome", label)],
        &[(
            "RunDuration",
            elapsed.as_secs_f64() * 1000.0,
            Unit::Milliseconds,
        )],
        &[
            ("runId", json!(run.id)),
            ("merchantId", json!(run.merchant_id)),
            ("attempt", json!(run.attempts)),
        ],
    );
}

/// Shows on the run that this attempt hit a transient fault and when the next one is due
/// (`lastError`, `nextAttemptAt`; the run stays `processing`). Best effort: the fault may be
/// the database's own. The error names the dependency, never its address or answer.
pub async fn record_retry(
    state: &AppState,
    message: &RunMessage,
    fault: &DependencyError,
    retry_in: std::time::Duration,
) {
    let what = match fault.kind {
        docbundle::error::DependencyFailure::Timeout(_) => "did not answer in time",
        docbundle::error::DependencyFailure::Failed(_) => "failed",
    };
    let now = chrono::Utc::now();
    let error = json!({
        "code": run_errors::DEPENDENCY_UNAVAILABLE,
        "message": format!("{} {what}; the run will be retried", fault.dependency),
        "at": now,
    });
    let next = now + chrono::Duration::from_std(retry_in).unwrap_or(chrono::Duration::zero());
    if let Err(e) = runs::record_retry(&state.db, message.run_id, &error, next).await {
        tracing::warn!(run_id = %message.run_id, error = %e, "could not record the retry on the run");
    }
}

async fn fail(state: &AppState, run: &BundleRun, error: Value) -> Result<Outcome, DependencyError> {
    let message = error["message"].as_str().unwrap_or("failed").to_owned();
    tracing::warn!(run_id = %run.id, error = %error, "run failed");
    if let Some(deliveries) = runs::fail(&state.db, run.id, &error).await? {
        outbox::publish_all(&state.db, &state.publisher, &deliveries).await;
        Ok(Outcome::Failed(message))
    } else {
        Ok(Outcome::AlreadyFinished)
    }
}
