//! The transparency log's use-cases: sequencing the entries completions queued (one
//! transaction per merchant per pass, as Sunlight and Tessera batch them), signing
//! checkpoints (one Vault signature per merchant whose log grew, per pass of the schedule),
//! and the proofs the API serves.

pub mod tiles;
pub mod witnesses;

use base64::Engine;
use uuid::Uuid;

use crate::Services;
use docbundle_domain::checkpoint;
use docbundle_domain::merkle;
use docbundle_domain::MerchantId;
use docbundle_infra::db::transparency as repo;
use docbundle_infra::error::DependencyError;

/// Most entries one sequencing transaction integrates (a merchant with more pending takes
/// several, in the same pass).
const SEQUENCE_BATCH: i64 = 10_000;

/// Integrates every merchant's pending entries into its log: one transaction per merchant
/// (per 10,000 entries), whatever the number of runs that completed. Returns how many
/// entries were integrated. One merchant's trouble does not hold back the others'.
pub async fn sequence_pending(services: &Services) -> Result<usize, DependencyError> {
    let mut integrated = 0;
    let mut first_error = None;
    for (merchant, _age) in repo::pending(&services.db).await? {
        loop {
            match repo::sequence(&services.db, merchant, SEQUENCE_BATCH).await {
                Ok(n) => {
                    integrated += n;
                    if (n as i64) < SEQUENCE_BATCH {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(merchant = %merchant, error = %e, "log entries not sequenced");
                    first_error.get_or_insert(e);
                    break;
                }
            }
        }
    }
    match first_error {
        Some(e) if integrated == 0 => Err(e),
        _ => Ok(integrated),
    }
}

/// The age in seconds of the oldest entry still pending in any log (0 when none is): what
/// the alarm on sequencing watches.
pub async fn oldest_pending_age(services: &Services) -> Result<f64, DependencyError> {
    Ok(repo::pending(&services.db)
        .await?
        .first()
        .map_or(0.0, |(_, age)| *age))
}

/// Integrates the pending entries ([`sequence_pending`]), then signs a checkpoint for every
/// log that grew since its last one; returns how many checkpoints.
pub async fn issue_checkpoints(services: &Services) -> Result<usize, DependencyError> {
    if let Err(e) = sequence_pending(services).await {
        // The logs that did not grow are signed as they are; the entries wait for a pass.
        tracing::error!(error = %e, "sequencing failed");
    }
    let due = repo::uncheckpointed(&services.db).await?;
    if due.is_empty() {
        // Witnesses that were away catch up; cosignatures they add are published.
        cosign(services).await;
        publish_tiles(services).await;
        return Ok(0);
    }
    let keys = services
        .vault
        .public_keys_of(services.vault.log_key_name())
        .await?;
    let mut issued = 0;
    let mut first_error = None;
    for (merchant, size) in due {
        // One log's trouble must not hold back the others' checkpoints.
        match issue_one(services, &keys, merchant, size).await {
            Ok(()) => issued += 1,
            Err(e) => {
                tracing::error!(merchant = %merchant, error = %e, "checkpoint not signed");
                first_error.get_or_insert(e);
            }
        }
    }
    cosign(services).await;
    publish_tiles(services).await;
    match first_error {
        Some(e) if issued == 0 => Err(e),
        _ => Ok(issued),
    }
}

/// Submits the newest checkpoints to the witnesses ([`witnesses::cosign`]); a failure is
/// logged and tried again on the next pass (the checkpoints stand without cosignatures).
async fn cosign(services: &Services) {
    if let Err(e) = witnesses::cosign(services).await {
        tracing::error!(error = %e, "checkpoints not offered to witnesses");
    }
}

/// Publishes the signed checkpoints' tiles ([`tiles::publish`]); a failure is logged and
/// tried again on the next pass (the checkpoints stand either way).
async fn publish_tiles(services: &Services) {
    if let Err(e) = Box::pin(tiles::publish(services)).await {
        tracing::error!(error = %e, "log tiles not published");
    }
}

async fn issue_one(
    services: &Services,
    keys: &[docbundle_infra::secrets::PublicKey],
    merchant: MerchantId,
    size: u64,
) -> Result<(), DependencyError> {
    let root = repo::range_hashes(&services.db, merchant, &[(0, size)])
        .await?
        .remove(0);
    let origin = checkpoint::origin(&services.settings.log_origin_prefix, merchant);
    let body = checkpoint::body(&origin, size, &root);
    let signature = services
        .vault
        .sign_with(services.vault.log_key_name(), body.as_bytes())
        .await?;
    let public = keys
        .iter()
        .find(|k| k.version == signature.key_version)
        .and_then(|k| {
            base64::engine::general_purpose::STANDARD
                .decode(&k.public_key)
                .ok()
        })
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .ok_or_else(|| {
            DependencyError::failed("vault", "checkpoint", "no public key for the signing key")
        })?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&signature.signature)
        .map_err(|e| DependencyError::failed("vault", "checkpoint", e))?;
    // The key is named after the log, as tlog-checkpoint recommends: its verifier key is
    // `<origin>+<hash>+<key>` ([`verifier_keys`]).
    let note = checkpoint::signed_note(&body, &origin, &public, &raw);
    repo::insert_checkpoint(&services.db, merchant, size, &root, &note).await?;
    Ok(())
}

/// A run's place in its merchant's log, proven against the newest checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Inclusion {
    pub log_index: u64,
    pub tree_size: u64,
    /// Hex SHA-256 hashes, deepest first (RFC 9162 inclusion proof).
    pub inclusion_proof: Vec<String>,
    /// The checkpoint (a C2SP signed note) the proof leads to.
    pub checkpoint: String,
}

/// `None` until the run's entry is covered by a checkpoint.
pub async fn inclusion(
    services: &Services,
    merchant: MerchantId,
    run_id: Uuid,
) -> Result<Option<Inclusion>, DependencyError> {
    let Some(index) = repo::index_of_run(&services.db, merchant, run_id).await? else {
        return Ok(None);
    };
    let Some(latest) = repo::latest_checkpoint(&services.db, merchant).await? else {
        return Ok(None);
    };
    if index >= latest.tree_size {
        return Ok(None);
    }
    let proof = repo::range_hashes(
        &services.db,
        merchant,
        &merkle::inclusion_ranges(index, latest.tree_size),
    )
    .await?;
    Ok(Some(Inclusion {
        log_index: index,
        tree_size: latest.tree_size,
        inclusion_proof: proof.iter().map(hex::encode).collect(),
        checkpoint: latest.note,
    }))
}

/// The consistency proof between two sizes (`0 < from ≤ to`, both within the log).
pub async fn consistency(
    services: &Services,
    merchant: MerchantId,
    from: u64,
    to: u64,
) -> Result<Vec<String>, DependencyError> {
    let proof = repo::range_hashes(
        &services.db,
        merchant,
        &merkle::consistency_ranges(from, to),
    )
    .await?;
    Ok(proof.iter().map(hex::encode).collect())
}
