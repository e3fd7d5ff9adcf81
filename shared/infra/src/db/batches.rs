//! Batches, their line errors, and the fan-out's cursor (see `migrations/V13__batches.sql`).
//!
//! Status moves forward only, by conditional updates. A batch's totals are counted from its
//! runs (an index on `(batch_id, status)`), never kept as counters that every completion would
//! have to lock.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::{Row, Transaction};
use uuid::Uuid;

use super::{connection, query_error, DbPool};
use crate::error::DependencyError;
use docbundle_domain::batch::{BatchStatus, BatchTotals, ManifestRun};
use docbundle_domain::paging::TimeKey;
use docbundle_domain::seed::SeedHash;
use docbundle_domain::{MerchantId, RunStatus};

/// A batch as stored.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Batch {
    pub id: Uuid,
    pub merchant_id: MerchantId,
    pub configuration_id: Uuid,
    pub configuration_version: Option<i32>,
    pub status: BatchStatus,
    pub fail_fast: bool,
    #[serde(skip)]
    pub seeds_key: String,
    pub seeds_bytes: Option<i64>,
    #[serde(skip)]
    pub seeds_etag: Option<String>,
    /// Lines of the seeds file read so far.
    pub lines_read: i32,
    /// Bytes of the seeds file read so far.
    pub bytes_read: i64,
    pub fan_out_done: bool,
    #[serde(skip)]
    pub fan_out_at: Option<DateTime<Utc>>,
    pub runs_total: i32,
    pub errors_total: i32,
    pub error: Option<Value>,
    pub merkle_root: Option<String>,
    #[serde(skip)]
    pub manifest_key: Option<String>,
    pub manifest_sha256: Option<String>,
    /// The statement `manifestSignature` covers (its exact bytes): the manifest's SHA-256,
    /// tree and totals.
    pub manifest_statement: Option<String>,
    pub manifest_signature: Option<String>,
    pub manifest_key_id: Option<String>,
    /// The TSA's time-stamp of the statement, when one was configured.
    #[serde(skip)]
    pub timestamp_key: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Batch {
    pub fn page_key(&self) -> TimeKey {
        TimeKey {
            t: self.created_at,
            id: self.id,
        }
    }
}

const COLUMNS: &str = "id, merchant_id, configuration_id, configuration_version, status, fail_fast,
    seeds_key, seeds_bytes, seeds_etag, fanout_offset, fanout_line, fanout_done, fanout_at,
    runs_total, errors_total, error, merkle_root, manifest_key, manifest_sha256,
    manifest_statement, manifest_signature, manifest_key_id, timestamp_key, created_by, created_at,
    started_at, cancelled_at, finished_at";

fn batch(row: &Row) -> Batch {
    Batch {
        id: row.get("id"),
        merchant_id: row.get("merchant_id"),
        configuration_id: row.get("configuration_id"),
        configuration_version: row.get("configuration_version"),
        status: row.get("status"),
        fail_fast: row.get("fail_fast"),
        seeds_key: row.get("seeds_key"),
        seeds_bytes: row.get("seeds_bytes"),
        seeds_etag: row.get("seeds_etag"),
        bytes_read: row.get("fanout_offset"),
        lines_read: row.get("fanout_line"),
        fan_out_done: row.get("fanout_done"),
        fan_out_at: row.get("fanout_at"),
        runs_total: row.get("runs_total"),
        errors_total: row.get("errors_total"),
        error: row.get("error"),
        merkle_root: row.get("merkle_root"),
        manifest_key: row.get("manifest_key"),
        manifest_sha256: row.get("manifest_sha256"),
        manifest_statement: row.get("manifest_statement"),
        manifest_signature: row.get("manifest_signature"),
        manifest_key_id: row.get("manifest_key_id"),
        timestamp_key: row.get("timestamp_key"),
        created_by: row.get("created_by"),
        created_at: row.get("created_at"),
        started_at: row.get("started_at"),
        cancelled_at: row.get("cancelled_at"),
        finished_at: row.get("finished_at"),
    }
}

/// A batch about to be created.
#[derive(Debug, Clone)]
pub struct NewBatch {
    pub id: Uuid,
    pub merchant: MerchantId,
    pub configuration_id: Uuid,
    pub configuration_version: Option<i32>,
    pub fail_fast: bool,
    pub seeds_key: String,
    pub created_by: String,
}

pub async fn insert(tx: &Transaction<'_>, new: &NewBatch) -> Result<Batch, DependencyError> {
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO batches (id, merchant_id, configuration_id, configuration_version,
                     fail_fast, seeds_key, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
            ),
            &[
                &new.id,
                &new.merchant,
                &new.configuration_id,
                &new.configuration_version,
                &new.fail_fast,
                &new.seeds_key,
                &new.created_by,
            ],
        )
        .await
        .map_err(query_error("insert batch"))?;
    Ok(batch(&row))
}

pub async fn find(
    pool: &DbPool,
    merchant: MerchantId,
    id: Uuid,
) -> Result<Option<Batch>, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_opt(
            &format!("SELECT {COLUMNS} FROM batches WHERE id = $1 AND merchant_id = $2"),
            &[&id, &merchant],
        )
        .await
        .map_err(query_error("find batch"))?;
    Ok(row.as_ref().map(batch))
}

/// Newest first, continuing after `after`; up to `fetch` rows.
pub async fn list(
    pool: &DbPool,
    merchant: MerchantId,
    after: Option<&TimeKey>,
    fetch: i64,
) -> Result<Vec<Batch>, DependencyError> {
    let conn = connection(pool).await?;
    let (after_t, after_id) = TimeKey::bounds(after);
    let rows = conn
        .query(
            &format!(
                "SELECT {COLUMNS} FROM batches
                  WHERE merchant_id = $1
                    AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
                  ORDER BY created_at DESC, id DESC LIMIT $4"
            ),
            &[&merchant, &after_t, &after_id, &fetch],
        )
        .await
        .map_err(query_error("list batches"))?;
    Ok(rows.iter().map(batch).collect())
}

/// What the batch limits count for `merchant`: batches running now, and seeds of batches
/// started in the last 24 hours (runs made plus lines that made none; a batch still reading
/// its file counts `max_seeds`, all it may make).
pub async fn usage(
    client: &impl deadpool_postgres::GenericClient,
    merchant: MerchantId,
    max_seeds: i64,
) -> Result<(i64, i64, Option<DateTime<Utc>>), DependencyError> {
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE status = 'running'),
                    COALESCE(sum(CASE WHEN fanout_done THEN (runs_total + errors_total)::int8
                                      ELSE GREATEST((runs_total + errors_total)::int8, $2::int8) END)
                             FILTER (WHERE started_at > now() - interval '1 day'), 0)::bigint,
                    min(started_at) FILTER (WHERE started_at > now() - interval '1 day')
               FROM batches WHERE merchant_id = $1 AND status <> 'created'",
            &[&merchant, &max_seeds],
        )
        .await
        .map_err(query_error("batch usage"))?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// Locks the merchant's batches for a start (so that two starts cannot both pass the limits).
pub async fn lock_merchant(
    tx: &Transaction<'_>,
    merchant: MerchantId,
) -> Result<(), DependencyError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('batches:' || $1::text, 0))",
        &[&merchant.to_string()],
    )
    .await
    .map_err(query_error("lock merchant batches"))?;
    Ok(())
}

/// Moves a `created` batch to `running` with its pinned version and seeds size; `None` when
/// it is not `created` any more.
pub async fn start(
    tx: &Transaction<'_>,
    merchant: MerchantId,
    id: Uuid,
    version: i32,
    seeds_bytes: i64,
    seeds_etag: Option<&str>,
) -> Result<Option<Batch>, DependencyError> {
    let row = tx
        .query_opt(
            &format!(
                "UPDATE batches SET status = 'running', configuration_version = $3,
                        seeds_bytes = $4, seeds_etag = $5, started_at = now(), fanout_at = now(),
                        updated_at = now()
                  WHERE id = $1 AND merchant_id = $2 AND status = 'created'
              RETURNING {COLUMNS}"
            ),
            &[&id, &merchant, &version, &seeds_bytes, &seeds_etag],
        )
        .await
        .map_err(query_error("start batch"))?;
    Ok(row.as_ref().map(batch))
}

/// The batch, locked for one chunk of its fan-out.
pub async fn lock(tx: &Transaction<'_>, id: Uuid) -> Result<Option<Batch>, DependencyError> {
    let row = tx
        .query_opt(
            &format!("SELECT {COLUMNS} FROM batches WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await
        .map_err(query_error("lock batch"))?;
    Ok(row.as_ref().map(batch))
}

/// Moves the fan-out's cursor past one chunk (in the chunk's transaction).
pub async fn advance(
    tx: &Transaction<'_>,
    id: Uuid,
    offset: i64,
    line: i32,
    runs: i32,
    errors: i32,
    done: bool,
) -> Result<(), DependencyError> {
    tx.execute(
        "UPDATE batches SET fanout_offset = $2, fanout_line = $3, runs_total = runs_total + $4,
                errors_total = errors_total + $5, fanout_done = $6, fanout_at = now(),
                updated_at = now()
          WHERE id = $1",
        &[&id, &offset, &line, &runs, &errors, &done],
    )
    .await
    .map_err(query_error("advance batch cursor"))?;
    Ok(())
}

/// Ends the fan-out early with `error` on the batch (a file too large, `failFast`); the
/// batch finishes as `failed` once its runs have ended.
pub async fn stop_fan_out(
    tx: &Transaction<'_>,
    id: Uuid,
    error: &Value,
) -> Result<(), DependencyError> {
    tx.execute(
        "UPDATE batches SET fanout_done = true, error = $2, fanout_at = now(), updated_at = now()
          WHERE id = $1 AND status = 'running'",
        &[&id, error],
    )
    .await
    .map_err(query_error("stop fan-out"))?;
    Ok(())
}

/// One line that became no run.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineError {
    pub line: i32,
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

/// Records line errors (a line recorded before, by a fan-out that died, is kept as it was);
/// how many were new.
pub async fn insert_errors(
    tx: &Transaction<'_>,
    id: Uuid,
    errors: &[LineError],
) -> Result<u64, DependencyError> {
    if errors.is_empty() {
        return Ok(0);
    }
    let lines: Vec<i32> = errors.iter().map(|e| e.line).collect();
    let codes: Vec<&str> = errors.iter().map(|e| e.code.as_str()).collect();
    // PostgreSQL's text and jsonb hold no NUL: a line's own text quoted in a message (a
    // property name, say) may carry one.
    let messages: Vec<String> = errors.iter().map(|e| without_nul(&e.message)).collect();
    let details: Vec<Option<Value>> = errors
        .iter()
        .map(|e| e.details.as_ref().map(value_without_nul))
        .collect();
    tx.execute(
        "INSERT INTO batch_errors (batch_id, line, code, message, details)
         SELECT $1, * FROM unnest($2::int4[], $3::text[], $4::text[], $5::jsonb[])
         ON CONFLICT (batch_id, line) DO NOTHING",
        &[&id, &lines, &codes, &messages, &details],
    )
    .await
    .map_err(query_error("insert batch line errors"))
}

fn without_nul(text: &str) -> String {
    text.replace('\0', "\u{fffd}")
}

fn value_without_nul(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(without_nul(s)),
        Value::Array(items) => Value::Array(items.iter().map(value_without_nul).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (without_nul(k), value_without_nul(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Line errors after line `after`, in line order; up to `fetch`.
pub async fn errors(
    pool: &DbPool,
    id: Uuid,
    after: i32,
    fetch: i64,
) -> Result<Vec<LineError>, DependencyError> {
    let conn = connection(pool).await?;
    let rows = conn
        .query(
            "SELECT line, code, message, details FROM batch_errors
              WHERE batch_id = $1 AND line > $2 ORDER BY line LIMIT $3",
            &[&id, &after, &fetch],
        )
        .await
        .map_err(query_error("list batch line errors"))?;
    Ok(rows
        .iter()
        .map(|r| LineError {
            line: r.get(0),
            code: r.get(1),
            message: r.get(2),
            details: r.get(3),
        })
        .collect())
}

/// Runs by status (and the read lines that made none).
pub async fn totals(
    client: &impl deadpool_postgres::GenericClient,
    batch: &Batch,
) -> Result<BatchTotals, DependencyError> {
    let rows = client
        .query(
            "SELECT status, count(*)::int8 FROM bundle_runs WHERE batch_id = $1 GROUP BY status",
            &[&batch.id],
        )
        .await
        .map_err(query_error("count batch runs"))?;
    let as_u32 = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
    let mut totals = BatchTotals {
        lines: as_u32(i64::from(batch.lines_read)),
        errors: as_u32(i64::from(batch.errors_total)),
        ..BatchTotals::default()
    };
    for row in rows {
        let count = as_u32(row.get(1));
        match row.get::<_, RunStatus>(0) {
            RunStatus::Pending => totals.pending = count,
            RunStatus::Processing => totals.processing = count,
            // An expired run completed: only its artefacts have gone since.
            RunStatus::Completed | RunStatus::Expired => totals.completed += count,
            RunStatus::Failed => totals.failed = count,
        }
    }
    totals.runs = totals.pending + totals.processing + totals.completed + totals.failed;
    Ok(totals)
}

/// Records the cancel and fails every run of the batch that has not started; how many.
pub async fn cancel(
    tx: &Transaction<'_>,
    merchant: MerchantId,
    id: Uuid,
    error: &Value,
) -> Result<Option<u64>, DependencyError> {
    let cancelled = tx
        .execute(
            "UPDATE batches SET cancelled_at = COALESCE(cancelled_at, now()), fanout_done = true,
                    updated_at = now()
              WHERE id = $1 AND merchant_id = $2 AND status IN ('created', 'running')",
            &[&id, &merchant],
        )
        .await
        .map_err(query_error("cancel batch"))?;
    if cancelled == 0 {
        return Ok(None);
    }
    fail_pending_runs(tx, id, error).await.map(Some)
}

/// Fails every `pending` run of the batch with `error`; how many.
pub async fn fail_pending_runs(
    tx: &Transaction<'_>,
    id: Uuid,
    error: &Value,
) -> Result<u64, DependencyError> {
    tx.execute(
        "UPDATE bundle_runs
            SET status = 'failed', error = $2, completed_at = now(), updated_at = now(),
                started_at = COALESCE(started_at, now()), next_attempt_at = NULL
          WHERE batch_id = $1 AND status = 'pending'",
        &[&id, error],
    )
    .await
    .map_err(query_error("fail a batch's pending runs"))
}

/// Gives the finisher's lease back (its finish found the batch changed: it may try again).
pub async fn release_finish(pool: &DbPool, id: Uuid) -> Result<(), DependencyError> {
    let conn = connection(pool).await?;
    conn.execute(
        "UPDATE batches SET finishing_until = NULL WHERE id = $1",
        &[&id],
    )
    .await
    .map_err(query_error("release batch finish"))?;
    Ok(())
}

/// Claims the right to finish the batch for `lease`: only a `running` batch whose fan-out is
/// done, with no run left to end, and that no other finisher holds.
pub async fn claim_finish(
    pool: &DbPool,
    id: Uuid,
    lease: std::time::Duration,
) -> Result<Option<Batch>, DependencyError> {
    let conn = connection(pool).await?;
    // Prepared once per connection: tried after every run of a batch ends.
    let claim = conn
        .prepare_cached(&format!(
            "UPDATE batches SET finishing_until = now() + make_interval(secs => $2)
              WHERE id = $1 AND status = 'running' AND fanout_done
                AND (finishing_until IS NULL OR finishing_until < now())
                AND NOT EXISTS (SELECT 1 FROM bundle_runs
                                 WHERE batch_id = $1 AND status IN ('pending', 'processing'))
          RETURNING {COLUMNS}"
        ))
        .await
        .map_err(query_error("claim batch finish"))?;
    let row = conn
        .query_opt(&claim, &[&id, &lease.as_secs_f64()])
        .await
        .map_err(query_error("claim batch finish"))?;
    Ok(row.as_ref().map(batch))
}

/// Every run of the batch in line order, as its manifest lists them.
pub async fn manifest_runs(pool: &DbPool, id: Uuid) -> Result<Vec<ManifestRun>, DependencyError> {
    let conn = connection(pool).await?;
    let rows = conn
        .query(
            "SELECT r.batch_line, r.id, r.status, r.seed_hash, m.sha256, r.error->>'code'
               FROM bundle_runs r LEFT JOIN manifests m ON m.run_id = r.id
              WHERE r.batch_id = $1 ORDER BY r.batch_line",
            &[&id],
        )
        .await
        .map_err(query_error("list batch runs"))?;
    Ok(rows
        .iter()
        .map(|r| ManifestRun {
            line: u32::try_from(r.get::<_, i32>(0)).unwrap_or_default(),
            run_id: r.get(1),
            status: r.get(2),
            seed_hash: r.get::<_, SeedHash>(3).as_str().to_owned(),
            manifest_sha256: r.get(4),
            error: r.get(5),
            leaf_index: None,
        })
        .collect())
}

/// What a finished batch records.
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: BatchStatus,
    pub merkle_root: String,
    pub manifest_key: String,
    pub manifest_sha256: String,
    pub statement: String,
    pub signature: String,
    pub key_id: String,
    /// The TSA's time-stamp of `statement`, when one was configured.
    pub timestamp_key: Option<String>,
}

/// Ends the batch as `finished` says, if it is still `running` and was not cancelled since
/// the finisher claimed it (`cancelled` as it was then); the batch as it now is.
pub async fn finish(
    tx: &Transaction<'_>,
    id: Uuid,
    finished: &Finished,
    at: DateTime<Utc>,
    cancelled: Option<DateTime<Utc>>,
) -> Result<Option<Batch>, DependencyError> {
    let row = tx
        .query_opt(
            &format!(
                "UPDATE batches SET status = $2, merkle_root = $3, manifest_key = $4,
                        manifest_sha256 = $5, manifest_signature = $6, manifest_key_id = $7,
                        finished_at = $8, manifest_statement = $9, timestamp_key = $11,
                        finishing_until = NULL, updated_at = now()
                  WHERE id = $1 AND status = 'running' AND cancelled_at IS NOT DISTINCT FROM $10
              RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &finished.status,
                &finished.merkle_root,
                &finished.manifest_key,
                &finished.manifest_sha256,
                &finished.signature,
                &finished.key_id,
                &at,
                &finished.statement,
                &cancelled,
                &finished.timestamp_key,
            ],
        )
        .await
        .map_err(query_error("finish batch"))?;
    Ok(row.as_ref().map(batch))
}

/// Ends a `created` batch (never started) as `cancelled`, with its (empty) signed manifest.
pub async fn finish_unstarted(
    tx: &Transaction<'_>,
    id: Uuid,
    version: i32,
    finished: &Finished,
    at: DateTime<Utc>,
) -> Result<Option<Batch>, DependencyError> {
    let row = tx
        .query_opt(
            &format!(
                "UPDATE batches SET status = 'cancelled', configuration_version = $2,
                        started_at = $3, cancelled_at = $3, finished_at = $3, fanout_done = true,
                        merkle_root = $4, manifest_key = $5, manifest_sha256 = $6,
                        manifest_signature = $7, manifest_key_id = $8, manifest_statement = $9,
                        timestamp_key = $10, updated_at = now()
                  WHERE id = $1 AND status = 'created'
              RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &version,
                &at,
                &finished.merkle_root,
                &finished.manifest_key,
                &finished.manifest_sha256,
                &finished.signature,
                &finished.key_id,
                &finished.statement,
                &finished.timestamp_key,
            ],
        )
        .await
        .map_err(query_error("cancel unstarted batch"))?;
    Ok(row.as_ref().map(batch))
}

/// `running` batches the sweep looks after: fan-outs silent for `silent_for` (to start
/// again), and batches whose runs have all ended (to finish).
pub async fn needing_attention(
    pool: &DbPool,
    silent_for: std::time::Duration,
) -> Result<(Vec<(Uuid, MerchantId)>, Vec<Uuid>), DependencyError> {
    let conn = connection(pool).await?;
    let stalled = conn
        .query(
            "SELECT id, merchant_id FROM batches
              WHERE status = 'running' AND NOT fanout_done
                AND fanout_at < now() - make_interval(secs => $1)",
            &[&silent_for.as_secs_f64()],
        )
        .await
        .map_err(query_error("stalled fan-outs"))?;
    let finishable = conn
        .query(
            "SELECT b.id FROM batches b
              WHERE b.status = 'running' AND b.fanout_done
                AND (b.finishing_until IS NULL OR b.finishing_until < now())
                AND NOT EXISTS (SELECT 1 FROM bundle_runs r
                                 WHERE r.batch_id = b.id AND r.status IN ('pending', 'processing'))",
            &[],
        )
        .await
        .map_err(query_error("finishable batches"))?;
    Ok((
        stalled.iter().map(|r| (r.get(0), r.get(1))).collect(),
        finishable.iter().map(|r| r.get(0)).collect(),
    ))
}
