//! Bundle runs with their seeds, artefacts and manifests (one table family: a run is not
//! complete without the others).
//!
//! Status moves only forward, through conditional updates: `pending → processing →
//! completed | failed`. The database enforces it too (a trigger, and a deferred constraint
//! that refuses `completed` without a manifest).
//!
//! This module holds the run rows and their transitions; `seeds` holds the seeds runs are
//! launched with, and `outputs` the artefacts and signed manifest a completed run leaves.
//! Their items are re-exported here.

mod outputs;
mod seeds;

pub use outputs::{artefacts, manifest, record_completion, ManifestRecord};
pub use seeds::{find_seed, store_seed, store_seeds};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::{Row, Transaction};
use uuid::Uuid;

use super::{connection, query_error, DbPool};
use crate::error::DependencyError;
use docbundle_domain::paging::TimeKey;
use docbundle_domain::seed::SeedHash;
use docbundle_domain::{MerchantId, RunStatus, TriggerType};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleRun {
    pub id: Uuid,
    pub merchant_id: MerchantId,
    pub configuration_id: Uuid,
    pub configuration_version: i32,
    pub seed_hash: SeedHash,
    pub status: RunStatus,
    pub triggered_by_type: TriggerType,
    pub triggered_by_id: String,
    pub run_parameters: Value,
    pub replay_of: Option<Uuid>,
    /// The batch this run is a line of.
    pub batch_id: Option<Uuid>,
    /// Its line in the batch's seeds file (1-based).
    pub line: Option<i32>,
    pub attempts: i32,
    pub error: Option<Value>,
    /// The transient fault of the last attempt that hit one (`{code, message, at}`): while a
    /// run is retried, why.
    pub last_error: Option<Value>,
    /// While a run waits for a retry: when it is due.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// When its artefacts go (computed at completion from its version's retention; none
    /// while it runs, or when they are kept for ever). A held run outlives it.
    pub expires_at: Option<DateTime<Utc>>,
    /// When its seed is no longer kept for it (computed when it ends).
    pub seed_expires_at: Option<DateTime<Utc>>,
    /// `expired`: when its artefacts were deleted.
    pub expired_at: Option<DateTime<Utc>>,
    /// `expired`: `retention` or `erasure`.
    pub expired_by: Option<String>,
}

impl BundleRun {
    pub fn page_key(&self) -> TimeKey {
        TimeKey {
            t: self.created_at,
            id: self.id,
        }
    }

    pub fn merchant(&self) -> MerchantId {
        self.merchant_id
    }
}

pub(crate) const RUN_COLUMNS: &str =
    "id, merchant_id, configuration_id, configuration_version, seed_hash, status,
    triggered_by_type, triggered_by_id, run_parameters, replay_of, batch_id, batch_line, attempts,
    error, last_error,
    next_attempt_at, created_at, started_at, completed_at, expires_at, seed_expires_at,
    expired_at, expired_by";

pub(crate) fn run(row: &Row) -> BundleRun {
    BundleRun {
        id: row.get("id"),
        merchant_id: row.get("merchant_id"),
        configuration_id: row.get("configuration_id"),
        configuration_version: row.get("configuration_version"),
        seed_hash: row.get("seed_hash"),
        status: row.get("status"),
        triggered_by_type: row.get("triggered_by_type"),
        triggered_by_id: row.get("triggered_by_id"),
        run_parameters: row.get("run_parameters"),
        replay_of: row.get("replay_of"),
        batch_id: row.get("batch_id"),
        line: row.get("batch_line"),
        attempts: row.get("attempts"),
        error: row.get("error"),
        last_error: row.get("last_error"),
        next_attempt_at: row.get("next_attempt_at"),
        created_at: row.get("created_at"),
        started_at: row.get("started_at"),
        completed_at: row.get("completed_at"),
        expires_at: row.get("expires_at"),
        seed_expires_at: row.get("seed_expires_at"),
        expired_at: row.get("expired_at"),
        expired_by: row.get("expired_by"),
    }
}

/// A run about to be launched.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: Uuid,
    pub merchant: MerchantId,
    pub configuration_id: Uuid,
    pub configuration_version: i32,
    pub seed_hash: SeedHash,
    pub triggered_by_type: TriggerType,
    pub triggered_by_id: String,
    pub run_parameters: Value,
    pub replay_of: Option<Uuid>,
}

pub async fn insert_run(tx: &Transaction<'_>, new: &NewRun) -> Result<BundleRun, DependencyError> {
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO bundle_runs (id, merchant_id, configuration_id, configuration_version,
                     seed_hash, triggered_by_type, triggered_by_id, run_parameters, replay_of)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 RETURNING {RUN_COLUMNS}"
            ),
            &[
                &new.id,
                &new.merchant,
                &new.configuration_id,
                &new.configuration_version,
                &new.seed_hash,
                &new.triggered_by_type,
                &new.triggered_by_id,
                &new.run_parameters,
                &new.replay_of,
            ],
        )
        .await
        .map_err(query_error("insert run"))?;
    Ok(run(&row))
}

/// The runs of one chunk of a batch's fan-out.
#[derive(Debug, Clone)]
pub struct BatchRuns<'a> {
    pub merchant: MerchantId,
    pub batch_id: Uuid,
    pub configuration_id: Uuid,
    pub configuration_version: i32,
    pub triggered_by_id: &'a str,
    /// `(run id, line, seed hash)` of each.
    pub runs: Vec<(Uuid, i32, SeedHash)>,
}

/// Inserts a chunk's runs in one statement; a run that exists (a fan-out that died after this
/// chunk committed cannot get here, but a line is never inserted twice anyway) is skipped.
/// The ids inserted.
pub async fn insert_batch_runs(
    tx: &Transaction<'_>,
    chunk: &BatchRuns<'_>,
) -> Result<Vec<Uuid>, DependencyError> {
    let ids: Vec<Uuid> = chunk.runs.iter().map(|r| r.0).collect();
    let lines: Vec<i32> = chunk.runs.iter().map(|r| r.1).collect();
    let hashes: Vec<&str> = chunk.runs.iter().map(|r| r.2.as_str()).collect();
    let rows = tx
        .query(
            "INSERT INTO bundle_runs (id, merchant_id, configuration_id, configuration_version,
                 seed_hash, triggered_by_type, triggered_by_id, batch_id, batch_line)
             SELECT r.id, $1, $2, $3, r.hash, 'batch', $4, $5, r.line
               FROM unnest($6::uuid[], $7::int4[], $8::text[]) AS r(id, line, hash)
             ON CONFLICT DO NOTHING
             RETURNING id",
            &[
                &chunk.merchant,
                &chunk.configuration_id,
                &chunk.configuration_version,
                &chunk.triggered_by_id,
                &chunk.batch_id,
                &ids,
                &lines,
                &hashes,
            ],
        )
        .await
        .map_err(query_error("insert batch runs"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub async fn find(
    pool: &DbPool,
    merchant: MerchantId,
    id: Uuid,
) -> Result<Option<BundleRun>, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_opt(
            &format!("SELECT {RUN_COLUMNS} FROM bundle_runs WHERE id = $1 AND merchant_id = $2"),
            &[&id, &merchant],
        )
        .await
        .map_err(query_error("find run"))?;
    Ok(row.as_ref().map(run))
}

#[derive(Debug, Default, Clone)]
pub struct RunFilter {
    pub configuration_id: Option<Uuid>,
    pub status: Option<RunStatus>,
    pub triggered_by_type: Option<TriggerType>,
    pub batch_id: Option<Uuid>,
}

/// Newest first, continuing after `after`; up to `fetch` rows.
pub async fn list(
    pool: &DbPool,
    merchant: MerchantId,
    filter: &RunFilter,
    after: Option<&TimeKey>,
    fetch: i64,
) -> Result<Vec<BundleRun>, DependencyError> {
    let conn = connection(pool).await?;
    let (after_t, after_id) = TimeKey::bounds(after);
    let rows = conn
        .query(
            &format!(
                "SELECT {RUN_COLUMNS} FROM bundle_runs
                  WHERE merchant_id = $1
                    AND ($2::uuid IS NULL OR configuration_id = $2)
                    AND ($3::text IS NULL OR status = $3)
                    AND ($4::text IS NULL OR triggered_by_type = $4)
                    AND ($5::timestamptz IS NULL OR (created_at, id) < ($5, $6))
                    AND ($8::uuid IS NULL OR batch_id = $8)
                  ORDER BY created_at DESC, id DESC
                  LIMIT $7"
            ),
            &[
                &merchant,
                &filter.configuration_id,
                &filter.status,
                &filter.triggered_by_type,
                &after_t,
                &after_id,
                &fetch,
                &filter.batch_id,
            ],
        )
        .await
        .map_err(query_error("list runs"))?;
    Ok(rows.iter().map(run).collect())
}

/// What the worker found when it tried to take a run.
#[derive(Debug)]
pub enum Claim {
    /// The run is now `processing` (again, after a crash or redelivery) and is this worker's
    /// to finish.
    Claimed(BundleRun),
    /// Already `completed` or `failed`: nothing to do.
    Finished(BundleRun),
    Missing,
}

/// On a statement prepared once per connection: the worker claims every run it processes.
pub async fn claim(pool: &DbPool, id: Uuid) -> Result<Claim, DependencyError> {
    let conn = connection(pool).await?;
    let claim = conn
        .prepare_cached(&format!(
            "UPDATE bundle_runs
                SET status = 'processing', started_at = COALESCE(started_at, now()),
                    attempts = attempts + 1, updated_at = now(), next_attempt_at = NULL
              WHERE id = $1 AND status IN ('pending', 'processing')
          RETURNING {RUN_COLUMNS}"
        ))
        .await
        .map_err(query_error("claim run"))?;
    let row = conn
        .query_opt(&claim, &[&id])
        .await
        .map_err(query_error("claim run"))?;
    if let Some(row) = row {
        return Ok(Claim::Claimed(run(&row)));
    }
    let row = conn
        .query_opt(
            &format!("SELECT {RUN_COLUMNS} FROM bundle_runs WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(query_error("find run"))?;
    Ok(match row {
        Some(row) => Claim::Finished(run(&row)),
        None => Claim::Missing,
    })
}

/// Records a transient fault of the run's current attempt and when the next is due; the run
/// stays `processing`. Nothing happens to a run that has ended.
pub async fn record_retry(
    pool: &DbPool,
    id: Uuid,
    error: &Value,
    next_attempt_at: DateTime<Utc>,
) -> Result<(), DependencyError> {
    let conn = connection(pool).await?;
    conn.execute(
        "UPDATE bundle_runs SET last_error = $2, next_attempt_at = $3, updated_at = now()
          WHERE id = $1 AND status = 'processing'",
        &[&id, error, &next_attempt_at],
    )
    .await
    .map_err(query_error("record retry"))?;
    Ok(())
}

/// Marks the run `failed` with `error` unless it has ended; the run as it now is, or `None`
/// when it had ended.
pub async fn mark_failed(
    tx: &Transaction<'_>,
    id: Uuid,
    error: &Value,
) -> Result<Option<BundleRun>, DependencyError> {
    let row = tx
        .query_opt(
            &format!(
                "UPDATE bundle_runs
                    SET status = 'failed', error = $2, completed_at = now(), updated_at = now(), next_attempt_at = NULL,
                        started_at = COALESCE(started_at, now())
                  WHERE id = $1 AND status IN ('pending', 'processing')
              RETURNING {RUN_COLUMNS}"
            ),
            &[&id, error],
        )
        .await
        .map_err(query_error("fail run"))?;
    Ok(row.as_ref().map(run))
}

/// Marks `failed` with `error` every `processing` run without progress for `stale_after`;
/// the runs as they now are.
pub async fn mark_stalled_failed(
    tx: &Transaction<'_>,
    stale_after: std::time::Duration,
    error: &Value,
) -> Result<Vec<BundleRun>, DependencyError> {
    let rows = tx
        .query(
            &format!(
                "UPDATE bundle_runs
                    SET status = 'failed', error = $2, completed_at = now(), updated_at = now(), next_attempt_at = NULL
                  WHERE status = 'processing' AND updated_at < now() - make_interval(secs => $1)
              RETURNING {RUN_COLUMNS}"
            ),
            &[&stale_after.as_secs_f64(), error],
        )
        .await
        .map_err(query_error("fail stale runs"))?;
    Ok(rows.iter().map(run).collect())
}
