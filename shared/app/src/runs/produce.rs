//! Producing a run's bundle: its inputs loaded and checked, every document rendered in the
//! rendering processes, the artefacts uploaded, a replay compared with its original, and the
//! manifest signed by Vault and stored beside them.

use std::collections::BTreeMap;

use docbundle_domain::configuration::DocumentSpec;
use docbundle_domain::manifest::{
    self, Artefact, Manifest, ManifestAsset, RendererBuild, ReplayCheck,
};
use docbundle_domain::merkle;
use docbundle_domain::run_errors::{self, RunError};
use docbundle_domain::seed::SeedHash;
use docbundle_infra::db::runs::{self, BundleRun, ManifestRecord};
use docbundle_infra::error::DependencyError;
use docbundle_infra::tsa::StampError;
use docbundle_render::bundle::{
    render_bundle, BundleInput, RenderedArtefact, RENDERER_UNAVAILABLE,
};
use docbundle_render::RenderAsset;
use serde_json::Value;
use sha2::Digest;

use super::Completion;
use crate::signing::documents::Final;
use crate::Services;

/// A step's result: done, failed for good (the run is marked `failed` with the error), or a
/// transient fault (the message is retried).
pub(super) type Step<T> = Result<Result<T, RunError>, DependencyError>;

/// Everything from inputs to a signed, stored manifest.
pub(super) async fn produce(services: &Services, run: &BundleRun) -> Step<Completion> {
    let inputs = match load_inputs(services, run).await? {
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
    let documents = inputs.documents.clone();
    between_steps(services, run).await;
    let rendered = match render(services, run, inputs).await? {
        Ok(rendered) => rendered,
        Err(failure) => return Ok(Err(failure)),
    };
    let einvoices = docbundle_render::einvoice::manifest_entries(&documents, &rendered);
    let finals = match crate::signing::documents::sign_artefacts(
        services,
        run.merchant(),
        run.id,
        &documents,
        rendered,
    )
    .await?
    {
        Ok(finals) => finals,
        Err(failure) => return Ok(Err(failure)),
    };
    between_steps(services, run).await;
    let artefacts = upload(services, run, finals, &einvoices).await?;
    let replay = replay_check(services, run, &artefacts).await?;
    between_steps(services, run).await;
    sign_and_store(services, run, artefacts, used, replay).await
}

/// A batch run lets an interactive run in flight in this process go first
/// ([`crate::lanes`]): the storage and Vault then serve it without queueing it behind batch work.
async fn between_steps(services: &Services, run: &BundleRun) {
    if run.batch_id.is_some() {
        services.lanes.yield_to_interactive().await;
    }
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

async fn load_inputs(services: &Services, run: &BundleRun) -> Step<Inputs> {
    let merchant = run.merchant();
    let Some(version) = services
        .versions
        .find(
            &services.db,
            merchant,
            run.configuration_id,
            run.configuration_version,
        )
        .await?
    else {
        return Ok(Err(RunError::new(
            run_errors::CONFIGURATION_MISSING,
            "the run's configuration version no longer exists",
        )));
    };
    let Some(seed) = runs::find_seed(&services.db, merchant, &run.seed_hash).await? else {
        return Ok(Err(RunError::new(
            run_errors::SEED_MISSING,
            "the run's seed no longer exists",
        )));
    };
    let data = match seed.value() {
        Ok(data) => data,
        Err(e) => {
            return Ok(Err(RunError::new(
                run_errors::SEED_UNREADABLE,
                format!("the run's stored seed is not JSON: {e}"),
            )))
        }
    };
    // Assets are immutable and pinned by hash: one that cannot be found is gone for good,
    // while a storage fault is worth a retry.
    let stored = crate::assets::load(services, merchant, &version.assets).await?;
    let assets = match docbundle_render::configuration::render_assets(&version.assets, &stored) {
        Ok(assets) => assets,
        Err(problems) => {
            let named: Vec<String> = problems
                .iter()
                .map(|p| format!("{}: {}", p.field, p.message))
                .collect();
            return Ok(Err(RunError::new(
                run_errors::ASSET_MISSING,
                named.join("; "),
            )));
        }
    };
    Ok(Ok(Inputs {
        documents: version.documents.clone(),
        archive: version.archive,
        name: version.name.clone(),
        version: version.version,
        seed_hash: seed.hash,
        data,
        assets,
        pinned: version.assets.clone(),
    }))
}

/// Renders every document in the rendering processes (a blocking pool thread waits for them).
async fn render(
    services: &Services,
    run: &BundleRun,
    inputs: Inputs,
) -> Step<Vec<RenderedArtefact>> {
    let renderer = services.renderer.clone();
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
        Err(failure) => Ok(Err(failure.run_error())),
    }
}

/// Uploads every artefact; keys are deterministic, so a retry overwrites (a signed PDF with
/// a new signature, the rest with the same bytes).
async fn upload(
    services: &Services,
    run: &BundleRun,
    finals: Vec<Final>,
    einvoices: &std::collections::HashMap<String, docbundle_domain::manifest::ArtefactEinvoice>,
) -> Result<Vec<Artefact>, DependencyError> {
    let uploads = finals.into_iter().map(|done| {
        let key = manifest::artefact_key(run.merchant_id, run.id, &done.artefact.name);
        let artefact = done.artefact;
        let einvoice = einvoices.get(&artefact.name).cloned();
        async move {
            let stored = services
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
                render_sha256: done.render_sha256,
                signature: done.signature,
                einvoice,
            })
        }
    });
    let mut artefacts = futures::future::try_join_all(uploads).await?;
    artefacts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(artefacts)
}

/// For a replay: whether every artefact came out as the original's did.
async fn replay_check(
    services: &Services,
    run: &BundleRun,
    artefacts: &[Artefact],
) -> Result<Option<ReplayCheck>, DependencyError> {
    let Some(original) = run.replay_of else {
        return Ok(None);
    };
    // Render digests: a signed PDF's stored bytes differ with every signature, its render not.
    let digests = |list: &[Artefact]| {
        list.iter()
            .map(|a| (a.name.clone(), a.render_digest().to_owned()))
            .collect::<BTreeMap<_, _>>()
    };
    let then = runs::manifest(&services.db, original).await?;
    // The original's stored artefacts, each by its render digest where its manifest lists one.
    let renders: BTreeMap<String, String> = then
        .as_ref()
        .and_then(|m| m.body.get("artefacts").cloned())
        .and_then(|listed| serde_json::from_value::<Vec<Artefact>>(listed).ok())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|a| Some((a.name, a.render_sha256?)))
        .collect();
    let before: BTreeMap<String, String> = runs::artefacts(&services.db, original)
        .await?
        .into_iter()
        .map(|a| {
            let digest = renders.get(&a.name).cloned().unwrap_or(a.sha256);
            (a.name, digest)
        })
        .collect();
    let identical = before == digests(artefacts);
    let reason = if identical {
        None
    } else {
        let then = then.and_then(|m| m.body.get("renderer").cloned());
        let here = serde_json::to_value(docbundle_render::build()).ok();
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
    services: &Services,
    run: &BundleRun,
    artefacts: Vec<Artefact>,
    assets: Vec<ManifestAsset>,
    replay: Option<ReplayCheck>,
) -> Step<Completion> {
    let signer = artefacts
        .iter()
        .any(|a| a.signature.is_some())
        .then(|| docbundle_pades::SIGNER.to_owned());
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
        renderer: Some(RendererBuild {
            signer,
            ..docbundle_render::build()
        }),
    };
    let encoded = manifest
        .to_bytes()
        .and_then(|bytes| Ok((bytes, serde_json::to_value(&manifest)?)));
    let (bytes, body) = match encoded {
        Ok(encoded) => encoded,
        Err(e) => {
            return Ok(Err(RunError::new(
                run_errors::MANIFEST_ERROR,
                format!("the manifest cannot be encoded: {e}"),
            )))
        }
    };
    let signature = services.vault.sign(&bytes).await?;
    let timestamp_key = match timestamp(services, run, &bytes).await? {
        Ok(key) => key,
        Err(failure) => return Ok(Err(failure)),
    };
    // The run's entry in its merchant's transparency log: these exact bytes.
    let leaf = merkle::leaf_hash(&bytes);
    let key = manifest::manifest_key(run.merchant_id, run.id);
    let stored = services.store.put(&key, bytes, "application/json").await?;
    let record = ManifestRecord {
        key,
        sha256: stored.sha256,
        bundle_digest: manifest.bundle_digest.clone(),
        signature: signature.signature,
        key_id: services.vault.key_id(signature.key_version),
        body,
        timestamp_key,
    };
    Ok(Ok(Completion {
        artefacts: manifest.artefacts,
        manifest: record,
        log_leaf: leaf,
    }))
}

/// With a time-stamping authority: its time-stamp over the manifest's SHA-256, stored as
/// `manifest.tsr` (a third party's word that the bundle existed then); its key. A batch's run
/// has none of its own: the batch's time-stamp covers its manifest, with every other run's
/// ([`crate::batches::finish`]).
async fn timestamp(services: &Services, run: &BundleRun, manifest: &[u8]) -> Step<Option<String>> {
    let Some(tsa) = services
        .timestamper
        .as_ref()
        .filter(|_| run.batch_id.is_none())
    else {
        return Ok(Ok(None));
    };
    let digest: [u8; 32] = sha2::Sha256::digest(manifest).into();
    let stamp = match tsa.stamp(&digest).await {
        Ok(stamp) => stamp,
        Err(StampError::Unavailable(e)) => return Err(e),
        Err(StampError::Refused(reason)) => {
            return Ok(Err(RunError::new(
                run_errors::MANIFEST_ERROR,
                format!("the manifest cannot be time-stamped: {reason}"),
            )))
        }
    };
    let key = manifest::manifest_timestamp_key(run.merchant_id, run.id);
    services
        .store
        .put(&key, stamp.answer, "application/timestamp-reply")
        .await?;
    Ok(Ok(Some(key)))
}
