//! A run's life after its launch, in one place: the worker's processing ([`process`]) and the
//! transitions that end or delay a run — [`complete`], [`fail`], [`fail_stalled`] and
//! [`retry`]. Each transition is one transaction that moves the run forward only if it has
//! not ended, records the completion-webhook deliveries its event owes in that same
//! transaction, and publishes them after the commit (a publication that fails is relayed
//! later from the outbox). Repositories hold only the SQL.

// Processing renders PDFs: only the functions built with them carry it.
#[cfg(feature = "pdf")]
mod process;
#[cfg(feature = "pdf")]
mod produce;

#[cfg(feature = "pdf")]
pub use process::{process_run, record_retry, Outcome};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use docbundle_domain::manifest::Artefact;
use docbundle_domain::merkle::Hash;
use docbundle_domain::run_errors::{self, RunError};
use docbundle_domain::webhooks::{CompletionEvent, RunEvent};
use docbundle_infra::db::outbox::{self, Pending};
use docbundle_infra::db::runs::{self as repo, BundleRun, ManifestRecord};
use docbundle_infra::db::{connection, query_error, webhooks};
use docbundle_infra::error::{DependencyError, DependencyFailure};

use crate::Services;

/// Whether a transition moved the run, or found it had ended already (a concurrent duplicate,
/// a redelivery, the sweep): then nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    Now,
    AlreadyEnded,
}

/// What a completed run records: its artefacts, its signed manifest and that manifest's leaf
/// in the merchant's transparency log.
#[derive(Debug, Clone)]
pub struct Completion {
    pub artefacts: Vec<Artefact>,
    pub manifest: ManifestRecord,
    pub log_leaf: Hash,
}

/// Why a run could not be recorded as completed (the run stays `processing`; the message is
/// retried).
#[derive(Debug, thiserror::Error)]
pub enum CompleteError {
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

/// Why a run could not be recorded as failed.
#[derive(Debug, thiserror::Error)]
pub enum FailError {
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

/// What a pass of [`fail_stalled`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StalledFailed {
    /// Stalled runs failed.
    pub runs: usize,
}

/// Why the stalled runs could not be failed on this pass.
#[derive(Debug, thiserror::Error)]
pub enum StalledError {
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

/// Why a retry could not be shown on the run.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

/// The completion webhooks' event for `run`, which just ended as `kind` says.
fn event<'a>(
    kind: CompletionEvent,
    run: &'a BundleRun,
    manifest: Option<&'a ManifestRecord>,
) -> RunEvent<'a> {
    RunEvent {
        kind,
        run_id: run.id,
        configuration_id: run.configuration_id,
        configuration_version: run.configuration_version,
        seed_hash: run.seed_hash.as_str(),
        bundle_digest: manifest.map(|m| m.bundle_digest.as_str()),
        manifest_key: manifest.map(|m| m.key.as_str()),
        error: run.error.as_ref(),
        expired: run.expired_at.zip(run.expired_by.as_deref()),
    }
}

/// Records artefacts and manifest, queues the manifest's entry in the merchant's transparency
/// log and marks the run `completed` — one transaction, only if the run is still `processing` —
/// with its `run.completed` deliveries.
pub async fn complete(
    services: &Services,
    run: &BundleRun,
    completion: &Completion,
) -> Result<Moved, CompleteError> {
    let mut conn = connection(&services.db).await?;
    // Nothing completes without its entry in the merchant's transparency log: pending here,
    // integrated by the sequencer's next pass (`transparency::sequence_pending`).
    if run.batch_id.is_some() {
        // A batch's run owes no completion webhook (its batch sends one when it ends): its
        // one statement is its whole transaction.
        let recorded = repo::record_completion(
            &conn,
            run,
            &completion.artefacts,
            &completion.manifest,
            &completion.log_leaf,
        )
        .await?;
        drop(conn);
        if !recorded {
            return Ok(Moved::AlreadyEnded);
        }
        ended_in_batch(services, run).await;
        return Ok(Moved::Now);
    }
    let tx = conn.transaction().await.map_err(query_error("begin"))?;
    let recorded = repo::record_completion(
        &tx,
        run,
        &completion.artefacts,
        &completion.manifest,
        &completion.log_leaf,
    )
    .await?;
    if !recorded {
        return Ok(Moved::AlreadyEnded);
    }
    let event = event(
        CompletionEvent::RunCompleted,
        run,
        Some(&completion.manifest),
    );
    let deliveries = run_deliveries(&tx, run, &event).await?;
    tx.commit()
        .await
        .map_err(query_error("commit completion"))?;
    drop(conn);
    publish(services, &deliveries).await;
    ended_in_batch(services, run).await;
    Ok(Moved::Now)
}

/// Marks the run `failed` with `error` unless it has ended, with its `run.failed` deliveries.
pub async fn fail(services: &Services, run_id: Uuid, error: &RunError) -> Result<Moved, FailError> {
    let mut conn = connection(&services.db).await?;
    let tx = conn.transaction().await.map_err(query_error("begin"))?;
    let Some(failed) = repo::mark_failed(&tx, run_id, &error.to_value()).await? else {
        return Ok(Moved::AlreadyEnded);
    };
    let event = event(CompletionEvent::RunFailed, &failed, None);
    let deliveries = run_deliveries(&tx, &failed, &event).await?;
    tx.commit().await.map_err(query_error("commit failure"))?;
    drop(conn);
    publish(services, &deliveries).await;
    ended_in_batch(services, &failed).await;
    Ok(Moved::Now)
}

/// Fails (`RUN_STALLED`) every `processing` run that made no progress for the
/// `RUN_STALE_AFTER_SECONDS` setting: its last attempt ended without an outcome (a worker
/// killed mid-run whose message was lost). One transaction with their `run.failed`
/// deliveries.
pub async fn fail_stalled(services: &Services) -> Result<StalledFailed, StalledError> {
    let stale_after = services.settings.run_stale_after;
    let error = RunError::new(
        run_errors::RUN_STALLED,
        format!(
            "the run made no progress for {} s: its last attempt ended without an outcome",
            stale_after.as_secs()
        ),
    );
    let mut conn = connection(&services.db).await?;
    let tx = conn.transaction().await.map_err(query_error("begin"))?;
    let failed = repo::mark_stalled_failed(&tx, stale_after, &error.to_value()).await?;
    let mut deliveries = Vec::new();
    for run in &failed {
        let event = event(CompletionEvent::RunFailed, run, None);
        deliveries.extend(run_deliveries(&tx, run, &event).await?);
    }
    tx.commit()
        .await
        .map_err(query_error("commit stale runs"))?;
    for run in &failed {
        tracing::warn!(run_id = %run.id, "stalled run failed by the sweep");
    }
    publish(services, &deliveries).await;
    Ok(StalledFailed { runs: failed.len() })
}

/// Marks `expired` at most `limit` completed runs whose retention passed and that no legal
/// hold keeps, under the retention lock, with their `run.expired` deliveries (none for a
/// batch's runs); how many. Their artefacts are deleted afterwards
/// ([`crate::retention::purge_expired`]); their manifests and log entries stay.
pub async fn expire_due(services: &Services, limit: i64) -> Result<usize, DependencyError> {
    let mut conn = connection(&services.db).await?;
    let tx = conn.transaction().await.map_err(query_error("begin"))?;
    docbundle_infra::db::retention::lock(&tx, true).await?;
    let expired = docbundle_infra::db::retention::expire_due(&tx, limit).await?;
    let deliveries = expired_deliveries(&tx, &expired).await?;
    tx.commit()
        .await
        .map_err(query_error("commit expired runs"))?;
    drop(conn);
    for run in &expired {
        tracing::info!(run_id = %run.id, merchant_id = %run.merchant_id, "run expired by retention");
    }
    publish(services, &deliveries).await;
    Ok(expired.len())
}

/// The `run.expired` deliveries these runs, just expired (by retention or an erasure), owe:
/// none for a batch's runs. The event names the manifest, which stays.
pub(crate) async fn expired_deliveries(
    tx: &tokio_postgres::Transaction<'_>,
    expired: &[BundleRun],
) -> Result<Vec<Pending>, DependencyError> {
    let mut deliveries = Vec::new();
    for run in expired {
        let manifest_key = docbundle_domain::manifest::manifest_key(run.merchant_id, run.id);
        let mut event = event(CompletionEvent::RunExpired, run, None);
        event.manifest_key = Some(&manifest_key);
        deliveries.extend(run_deliveries(tx, run, &event).await?);
    }
    Ok(deliveries)
}

/// Shows on the run that this attempt hit a transient fault and when the next one is due
/// (`lastError`, `nextAttemptAt`; the run stays `processing`). The error names the
/// dependency, never its address or answer. Nothing happens to a run that has ended.
pub async fn retry(
    services: &Services,
    run_id: Uuid,
    fault: &DependencyError,
    retry_in: std::time::Duration,
) -> Result<DateTime<Utc>, RetryError> {
    let what = match fault.kind {
        DependencyFailure::Timeout(_) => "did not answer in time",
        DependencyFailure::Failed(_) => "failed",
    };
    let now = Utc::now();
    let error = RunError {
        at: Some(now),
        ..RunError::new(
            run_errors::DEPENDENCY_UNAVAILABLE,
            format!("{} {what}; the run will be retried", fault.dependency),
        )
    };
    let next = now + chrono::Duration::from_std(retry_in).unwrap_or(chrono::Duration::zero());
    repo::record_retry(&services.db, run_id, &error.to_value(), next).await?;
    Ok(next)
}

/// The completion webhooks a run's end owes: none for a run of a batch (its batch sends one
/// `batch.completed` when its last run ends), one per listening endpoint otherwise.
async fn run_deliveries(
    tx: &tokio_postgres::Transaction<'_>,
    run: &BundleRun,
    event: &RunEvent<'_>,
) -> Result<Vec<Pending>, DependencyError> {
    if run.batch_id.is_some() {
        return Ok(Vec::new());
    }
    webhooks::record_run_event(tx, run.merchant(), event, None).await
}

/// After a batch's run ended: the batch ends too if that was its last run.
async fn ended_in_batch(services: &Services, run: &BundleRun) {
    if let Some(batch_id) = run.batch_id {
        Box::pin(crate::batches::finish_if_done(services, batch_id)).await;
    }
}

pub(crate) async fn publish(services: &Services, deliveries: &[Pending]) {
    outbox::publish_all(&services.db, &services.publisher, deliveries).await;
}
