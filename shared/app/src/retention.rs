//! Retention: what a configuration version keeps, and for how long, carried out.
//!
//! A run's expiry is computed when it ends (from its version's retention, in the database).
//! Each pass of the `retention` job, in bounded batches:
//! 1. marks `expired` the completed runs whose expiry passed and that no legal hold keeps, with
//!    their `run.expired` deliveries, in one transaction under the retention lock (a hold
//!    placed meanwhile waits, then finds the run expired; see [`docbundle_infra::db::retention`]);
//! 2. deletes every version of every artefact of the expired runs (`artefacts/` only: the
//!    signed manifest, its time-stamp and the log entry stay, and so does the proof);
//! 3. releases the seeds of the runs whose seed retention passed, unheld, and erases each seed
//!    no run keeps any more (its row stays, its content goes);
//! 4. deletes the seeds file and line errors of each ended batch whose runs all released
//!    their seeds.
//!
//! A deletion that fails is retried on the next pass: nothing is marked done before it is.

use std::time::{Duration, Instant};

use futures::StreamExt;

use docbundle_domain::manifest::artefacts_prefix;
use docbundle_infra::db::{connection, query_error, retention as repo};
use docbundle_infra::error::DependencyError;

use crate::Services;

/// How long one pass may spend deleting: the scheduler runs every job within its minute.
const PASS_BUDGET: Duration = Duration::from_secs(20);
/// Deletions in flight at once.
const PURGES_AT_ONCE: usize = 8;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionReport {
    /// Runs marked `expired`.
    pub runs_expired: usize,
    /// Runs whose artefacts were deleted (every version).
    pub artefacts_purged: usize,
    /// Object versions deleted.
    pub objects_deleted: usize,
    /// Purges that failed (tried again next pass).
    pub purges_failed: usize,
    /// Seeds erased.
    pub seeds_erased: u64,
    /// Batches whose seeds file and line errors were deleted.
    pub batches_purged: usize,
}

/// One pass of retention.
pub async fn pass(services: &Services) -> Result<RetentionReport, DependencyError> {
    let started = Instant::now();
    let limit = services.settings.retention_pass_runs;
    let mut report = RetentionReport {
        runs_expired: crate::runs::expire_due(services, limit).await?,
        ..RetentionReport::default()
    };
    purge_expired(services, limit, started, &mut report).await?;
    report.seeds_erased = {
        let mut conn = connection(&services.db).await?;
        let tx = conn.transaction().await.map_err(query_error("begin"))?;
        repo::lock(&tx, true).await?;
        let erased = repo::release_seeds(&tx, limit).await?;
        tx.commit().await.map_err(query_error("commit seeds"))?;
        erased
    };
    purge_batches(services, limit, started, &mut report).await?;
    Ok(report)
}

/// Deletes the seeds file and line errors of ended batches whose runs let their seeds go (or
/// lost some to an erasure), within the budget.
pub async fn purge_batches(
    services: &Services,
    limit: i64,
    started: Instant,
    report: &mut RetentionReport,
) -> Result<(), DependencyError> {
    for (merchant, batch, seeds_key) in repo::batches_to_purge(&services.db, limit).await? {
        if started.elapsed() > PASS_BUDGET {
            break;
        }
        let purged = match services.store.delete_all_versions(&seeds_key).await {
            Ok(_) => repo::mark_batch_purged(&services.db, batch).await,
            Err(e) => Err(e),
        };
        match purged {
            Ok(()) => {
                tracing::info!(%merchant, batch_id = %batch, "batch seeds file and line errors deleted");
                report.batches_purged += 1;
            }
            Err(e) => {
                tracing::warn!(batch_id = %batch, error = %e, "batch seeds not deleted; retried next pass");
                report.purges_failed += 1;
            }
        }
    }
    Ok(())
}

/// Deletes the artefacts of expired runs not purged yet, a few at a time, within the budget.
pub async fn purge_expired(
    services: &Services,
    limit: i64,
    started: Instant,
    report: &mut RetentionReport,
) -> Result<(), DependencyError> {
    let due = repo::unpurged(&services.db, limit).await?;
    let mut purges = futures::stream::iter(due)
        .take_while(|_| futures::future::ready(started.elapsed() < PASS_BUDGET))
        .map(|(merchant, run)| async move {
            let deleted = services
                .store
                .delete_all_versions(&artefacts_prefix(merchant, run))
                .await?;
            repo::mark_purged(&services.db, run).await?;
            Ok::<_, DependencyError>(deleted)
        })
        .buffer_unordered(PURGES_AT_ONCE);
    while let Some(purge) = purges.next().await {
        match purge {
            Ok(deleted) => {
                report.artefacts_purged += 1;
                report.objects_deleted += deleted;
            }
            Err(e) => {
                tracing::warn!(error = %e, "artefacts not deleted; retried next pass");
                report.purges_failed += 1;
            }
        }
    }
    Ok(())
}
