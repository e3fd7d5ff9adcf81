//! Processing one run: claim it, render, upload, sign, record. Idempotent under redelivery
//! and concurrent duplicates: object keys are deterministic, the status only moves forward
//! through conditional updates, and a finished run is acknowledged without work.

use std::collections::BTreeMap;

use docbundle::db::configurations;
use docbundle::db::runs::{self, Artefact, BundleRun, Claim, ManifestRecord};
use docbundle::error::DependencyError;
use docbundle::manifest::{self, Manifest, ManifestArtefact, ReplayCheck};
use docbundle::queue::RunMessage;
use docbundle::AppState;
use serde_json::{json, Value};

use crate::bundle::{render_bundle, BundleInput, RENDERER_UNAVAILABLE};

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

/// Processes the run named by `message`. `Err` means a transient fault: the message must be
/// retried (SQS redelivers it, then moves it to the DLQ).
pub async fn process_run(
    state: &AppState,
    message: &RunMessage,
) -> Result<Outcome, DependencyError> {
    let run = match runs::claim(&state.db, message.run_id).await? {
        Claim::Missing => return Ok(Outcome::Unknown),
        Claim::Finished(_) => return Ok(Outcome::AlreadyFinished),
        Claim::Claimed(run) if run.merchant_id != message.merchant_id => {
            tracing::error!(run_id = %run.id, "message names another merchant than the run's");
            return Ok(Outcome::Unknown);
        }
        Claim::Claimed(run) => run,
    };
    let merchant = run.merchant();

    let Some(version) = configurations::find_version(
        &state.db,
        merchant,
        run.configuration_id,
        run.configuration_version,
    )
    .await?
    else {
        return fail(state, &run, json!({"code": "CONFIGURATION_MISSING", "message": "the run's configuration version no longer exists"})).await;
    };
    let Some(seed) = runs::find_seed(&state.db, merchant, &run.seed_hash).await? else {
        return fail(
            state,
            &run,
            json!({"code": "SEED_MISSING", "message": "the run's seed no longer exists"}),
        )
        .await;
    };

    let rendered = {
        let renderer = state.renderer.clone();
        let documents = version.documents.clone();
        let archive = version.archive;
        let name = version.name.clone();
        let number = version.version;
        let seed_hash = seed.hash.clone();
        let data = seed.value();
        tokio::task::spawn_blocking(move || {
            render_bundle(
                &BundleInput {
                    documents: &documents,
                    archive,
                    data: &data,
                    seed_hash: &seed_hash,
                    configuration_name: &name,
                    configuration_version: number,
                },
                &renderer,
            )
        })
        .await
        .map_err(|e| DependencyError::failed("worker", "render", e))?
    };
    let rendered = match rendered {
        Ok(artefacts) => artefacts,
        // The host could not start a rendering process: not the template's fault, so SQS
        // retries the message (and the run stays `processing` until then).
        Err(failure) if failure.code == RENDERER_UNAVAILABLE => {
            return Err(DependencyError::failed("worker", "render", failure.message))
        }
        Err(failure) => return fail(state, &run, failure.to_json()).await,
    };

    // Upload every artefact; keys are deterministic, so a retry overwrites with the same bytes.
    let uploads = rendered.into_iter().map(|artefact| {
        let key = manifest::artefact_key(run.merchant_id, run.id, &artefact.name);
        async move {
            let stored = state
                .store
                .put(&key, artefact.bytes, &artefact.content_type)
                .await?;
            Ok::<_, DependencyError>(ManifestArtefact {
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

    let replay = match run.replay_of {
        None => None,
        Some(original) => {
            let before: BTreeMap<String, String> = runs::artefacts(&state.db, original)
                .await?
                .into_iter()
                .map(|a| (a.name, a.sha256))
                .collect();
            let now: BTreeMap<String, String> = artefacts
                .iter()
                .map(|a| (a.name.clone(), a.sha256.clone()))
                .collect();
            Some(ReplayCheck {
                of: original,
                identical: before == now,
            })
        }
    };

    let manifest = Manifest {
        schema: manifest::SCHEMA.to_owned(),
        run_id: run.id,
        merchant_id: run.merchant_id,
        configuration_id: run.configuration_id,
        configuration_version: run.configuration_version,
        seed_hash: run.seed_hash.clone(),
        replay_of: run.replay_of,
        bundle_digest: manifest::bundle_digest(&artefacts),
        artefacts,
        replay,
    };
    let bytes = manifest.to_bytes();
    let signature = state.vault.sign(&bytes).await?;
    let key = manifest::manifest_key(run.merchant_id, run.id);
    let stored = state.store.put(&key, bytes, "application/json").await?;

    let records: Vec<Artefact> = manifest
        .artefacts
        .iter()
        .map(|a| Artefact {
            name: a.name.clone(),
            format: a.format.clone(),
            content_type: a.content_type.clone(),
            key: a.key.clone(),
            size: i64::try_from(a.size).unwrap_or(i64::MAX),
            sha256: a.sha256.clone(),
        })
        .collect();
    let record = ManifestRecord {
        key,
        sha256: stored.sha256,
        bundle_digest: manifest.bundle_digest.clone(),
        signature: signature.signature,
        key_id: format!(
            "{}:{}",
            state.vault.signing_key_name(),
            signature.key_version
        ),
        body: serde_json::to_value(&manifest).unwrap_or(Value::Null),
    };
    if runs::complete(&state.db, &run, &records, &record).await? {
        tracing::info!(run_id = %run.id, artefacts = records.len(), "run completed");
        Ok(Outcome::Completed)
    } else {
        Ok(Outcome::AlreadyFinished)
    }
}

async fn fail(state: &AppState, run: &BundleRun, error: Value) -> Result<Outcome, DependencyError> {
    let message = error["message"].as_str().unwrap_or_default().to_owned();
    tracing::warn!(run_id = %run.id, error = %error, "run failed");
    if runs::fail(&state.db, run.id, &error).await? {
        Ok(Outcome::Failed(message))
    } else {
        Ok(Outcome::AlreadyFinished)
    }
}
