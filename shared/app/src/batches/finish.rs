//! A batch's end: once its fan-out is done and its last run has ended, one finisher (holding a
//! lease on the batch) lists every run with its manifest digest, seals them in a Merkle tree,
//! has Vault sign the batch manifest, stores it, and ends the batch with its one
//! `batch.completed` event — in one transaction, published after the commit.
//!
//! It is tried by whoever may have ended the batch (a run's end, the fan-out's last chunk, a
//! cancel) and by the scheduler's sweep, which catches any attempt that died.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use crate::Services;
use docbundle_domain::batch::{self, BatchManifest, BatchStatement, BatchStatus, BatchTotals};
use docbundle_domain::webhooks::BATCH_COMPLETED;
use docbundle_infra::db::batches::{self as repo, Batch, Finished};
use docbundle_infra::db::{connection, outbox, query_error, webhooks};
use docbundle_infra::error::DependencyError;
use docbundle_infra::tsa::StampError;

/// How long a finisher holds the batch before another may try.
const LEASE: Duration = Duration::from_secs(120);

/// Finishes the batch if it is done; faults are logged (the sweep tries again).
pub async fn finish_if_done(services: &Services, batch_id: Uuid) {
    // Boxed: signing and storing make a deep future, and callers are deep already.
    if let Err(e) = Box::pin(finish(services, batch_id)).await {
        tracing::warn!(%batch_id, error = %e, "batch not finished yet; the sweep will try again");
    }
}

/// Finishes the batch if its fan-out is done, its runs have all ended and no other finisher
/// holds it; the ended batch, or `None` when there was nothing to do.
pub async fn finish(services: &Services, batch_id: Uuid) -> Result<Option<Batch>, DependencyError> {
    let Some(batch) = repo::claim_finish(&services.db, batch_id, LEASE).await? else {
        return Ok(None);
    };
    let conn = connection(&services.db).await?;
    let totals = repo::totals(&conn, &batch).await?;
    drop(conn);
    let status = if batch.cancelled_at.is_some() {
        BatchStatus::Cancelled
    } else if batch.error.is_some() {
        BatchStatus::Failed
    } else {
        BatchStatus::Completed
    };
    let runs = repo::manifest_runs(&services.db, batch.id).await?;
    let version = batch.configuration_version.unwrap_or_default();
    let started_at = batch.started_at.unwrap_or(batch.created_at);
    let (finished, at) = Box::pin(seal_and_store(
        services,
        &batch,
        version,
        started_at,
        status,
        totals.clone(),
        runs,
    ))
    .await?;

    let mut conn = connection(&services.db).await?;
    let tx = conn
        .transaction()
        .await
        .map_err(query_error("begin batch finish"))?;
    let Some(ended) = repo::finish(&tx, batch.id, &finished, at, batch.cancelled_at).await? else {
        // Cancelled since the claim (its manifest would say `completed`): the lease goes
        // back, and the next try (the cancel's own, or the sweep's) writes the right one.
        drop(tx);
        drop(conn);
        repo::release_finish(&services.db, batch.id).await?;
        return Ok(None);
    };
    let deliveries = record_completed(&tx, &ended, &totals).await?;
    tx.commit()
        .await
        .map_err(query_error("commit batch finish"))?;
    drop(conn);
    outbox::publish_all(&services.db, &services.publisher, &deliveries).await;
    tracing::info!(batch_id = %batch.id, %status, runs = totals.runs, completed = totals.completed, failed = totals.failed, errors = totals.errors, "batch ended");
    Ok(Some(ended))
}

/// A `created` batch cancelled before its start ends at once, with an empty signed manifest.
pub async fn cancel_unstarted(
    services: &Services,
    batch: &Batch,
    version: i32,
) -> Result<Option<Batch>, DependencyError> {
    let now = Utc::now();
    let totals = BatchTotals::default();
    let (finished, at) = Box::pin(seal_and_store(
        services,
        batch,
        version,
        now,
        BatchStatus::Cancelled,
        totals.clone(),
        Vec::new(),
    ))
    .await?;
    let mut conn = connection(&services.db).await?;
    let tx = conn
        .transaction()
        .await
        .map_err(query_error("begin batch cancel"))?;
    let Some(ended) = repo::finish_unstarted(&tx, batch.id, version, &finished, at).await? else {
        return Ok(None);
    };
    let deliveries = record_completed(&tx, &ended, &totals).await?;
    tx.commit()
        .await
        .map_err(query_error("commit batch cancel"))?;
    drop(conn);
    outbox::publish_all(&services.db, &services.publisher, &deliveries).await;
    Ok(Some(ended))
}

/// Builds, signs and stores the batch manifest; what the batch records, and its end time.
async fn seal_and_store(
    services: &Services,
    batch: &Batch,
    version: i32,
    started_at: chrono::DateTime<Utc>,
    status: BatchStatus,
    totals: BatchTotals,
    mut runs: Vec<batch::ManifestRun>,
) -> Result<(Finished, chrono::DateTime<Utc>), DependencyError> {
    let (tree, _) = BatchManifest::seal(&mut runs);
    // Microseconds, as PostgreSQL keeps them: the manifest and the row say the same instant.
    let at = chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros())
        .unwrap_or_else(Utc::now);
    let manifest = BatchManifest {
        schema: batch::MANIFEST_SCHEMA.to_owned(),
        batch_id: batch.id,
        merchant_id: batch.merchant_id,
        configuration_id: batch.configuration_id,
        configuration_version: version,
        status,
        started_at,
        finished_at: at,
        totals,
        error: batch.error.clone(),
        tree: tree.clone(),
        runs,
    };
    let bytes = manifest
        .to_bytes()
        .map_err(|e| DependencyError::failed("batches", "encode batch manifest", e))?;
    let sha256 = docbundle_domain::digest::sha256_hex(&bytes);
    // What is signed is the small statement naming the manifest by its SHA-256: a
    // 100,000-run manifest is larger than the signer takes in one request.
    let statement = BatchStatement::of(&manifest, &sha256)
        .to_bytes()
        .map_err(|e| DependencyError::failed("batches", "encode batch statement", e))?;
    let signature = services.vault.sign(&statement).await?;
    let timestamp_key = timestamp(services, batch, &statement, &sha256).await?;
    let key = batch::manifest_key(batch.merchant_id, batch.id, &sha256);
    services.store.put(&key, bytes, "application/json").await?;
    Ok((
        Finished {
            status,
            merkle_root: tree.root,
            manifest_key: key,
            manifest_sha256: sha256,
            statement: String::from_utf8(statement)
                .map_err(|e| DependencyError::failed("batches", "encode batch statement", e))?,
            signature: signature.signature,
            key_id: services.vault.key_id(signature.key_version),
            timestamp_key,
        },
        at,
    ))
}

/// With a time-stamping authority: its time-stamp over the signed statement's SHA-256, stored
/// beside the manifest; its key. It is the time-stamp of every run the batch lists too: a
/// batch's runs are not stamped one by one (a month-end of 100,000 runs asks the TSA once,
/// and a TSA that charges or throttles per stamp is asked once). A TSA that does not answer
/// leaves the batch to the next attempt; one that refuses leaves it without a time-stamp
/// (logged), rather than unfinished for ever.
async fn timestamp(
    services: &Services,
    batch: &Batch,
    statement: &[u8],
    manifest_sha256: &str,
) -> Result<Option<String>, DependencyError> {
    use sha2::Digest;
    let Some(tsa) = &services.timestamper else {
        return Ok(None);
    };
    let digest: [u8; 32] = sha2::Sha256::digest(statement).into();
    match tsa.stamp(&digest).await {
        Ok(stamp) => {
            let key = batch::timestamp_key(batch.merchant_id, batch.id, manifest_sha256);
            services
                .store
                .put(&key, stamp.answer, "application/timestamp-reply")
                .await?;
            Ok(Some(key))
        }
        Err(StampError::Unavailable(e)) => Err(e),
        Err(StampError::Refused(reason)) => {
            tracing::error!(batch_id = %batch.id, %reason, "the TSA refused the batch's time-stamp");
            Ok(None)
        }
    }
}

async fn record_completed(
    tx: &tokio_postgres::Transaction<'_>,
    batch: &Batch,
    totals: &BatchTotals,
) -> Result<Vec<outbox::Pending>, DependencyError> {
    let body = json!({
        "type": BATCH_COMPLETED,
        "timestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": {
            "batchId": batch.id,
            "status": batch.status,
            "configurationId": batch.configuration_id,
            "configurationVersion": batch.configuration_version,
            "totals": totals,
            "merkleRoot": batch.merkle_root,
            "manifestKey": batch.manifest_key,
            "manifestSha256": batch.manifest_sha256,
            "manifestStatement": batch.manifest_statement,
            "manifestSignature": batch.manifest_signature,
            "manifestKeyId": batch.manifest_key_id,
            "error": batch.error,
        },
    })
    .to_string();
    webhooks::record_event(
        tx,
        batch.merchant_id,
        batch.id,
        BATCH_COMPLETED,
        &body,
        None,
    )
    .await
}
