//! Retention's SQL: the runs whose artefacts are due to go, the artefacts still to delete, the
//! seeds no run keeps any more. A run under a legal hold (on itself, its batch or its
//! configuration) is never touched: [`HELD`] is the one test of that.

use tokio_postgres::Transaction;
use uuid::Uuid;

use super::runs::BundleRun;
use super::{connection, query_error, DbPool};
use crate::error::DependencyError;
use docbundle_domain::MerchantId;

/// Whether the run `r` is under a legal hold in force, as SQL.
pub const HELD: &str = "EXISTS (
    SELECT 1 FROM legal_holds h
     WHERE h.released_at IS NULL AND h.merchant_id = r.merchant_id
       AND (h.run_id = r.id OR h.batch_id = r.batch_id OR h.configuration_id = r.configuration_id))";

/// The advisory lock that orders expiry and erasure against holds being placed: placing a
/// hold takes it shared, a pass that deletes takes it exclusive, so a pass either sees a hold
/// or runs before it was placed (and the hold then finds the run expired).
pub const LOCK: i64 = 0x7265_7465_6e74; // "retent"

/// Takes [`LOCK`] for the transaction: exclusive to delete, shared to place a hold.
pub async fn lock(tx: &Transaction<'_>, exclusive: bool) -> Result<(), DependencyError> {
    let sql = if exclusive {
        "SELECT pg_advisory_xact_lock($1)"
    } else {
        "SELECT pg_advisory_xact_lock_shared($1)"
    };
    tx.execute(sql, &[&LOCK])
        .await
        .map_err(query_error("take the retention lock"))?;
    Ok(())
}

/// Marks `expired` (by retention) at most `limit` completed runs whose expiry has passed and
/// that no hold keeps, oldest expiry first; the runs as they now are.
pub async fn expire_due(
    tx: &Transaction<'_>,
    limit: i64,
) -> Result<Vec<BundleRun>, DependencyError> {
    let rows = tx
        .query(
            &format!(
                "UPDATE bundle_runs
                    SET status = 'expired', expired_at = now(), expired_by = 'retention',
                        updated_at = now()
                  WHERE id IN (SELECT r.id FROM bundle_runs r
                                WHERE r.status = 'completed' AND r.expires_at <= now()
                                  AND NOT {HELD}
                                ORDER BY r.expires_at
                                LIMIT $1
                                  FOR UPDATE SKIP LOCKED)
                    AND status = 'completed'
              RETURNING {}",
                super::runs::RUN_COLUMNS
            ),
            &[&limit],
        )
        .await
        .map_err(query_error("expire runs"))?;
    Ok(rows.iter().map(super::runs::run).collect())
}

/// Expired runs whose artefacts are still in storage (a purge that failed is tried again),
/// oldest first.
pub async fn unpurged(
    pool: &DbPool,
    limit: i64,
) -> Result<Vec<(MerchantId, Uuid)>, DependencyError> {
    let conn = connection(pool).await?;
    let rows = conn
        .query(
            "SELECT merchant_id, id FROM bundle_runs
              WHERE status = 'expired' AND artefacts_purged_at IS NULL
              ORDER BY expired_at LIMIT $1",
            &[&limit],
        )
        .await
        .map_err(query_error("find runs to purge"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Records that every version of the run's artefacts is gone.
pub async fn mark_purged(pool: &DbPool, run: Uuid) -> Result<(), DependencyError> {
    let conn = connection(pool).await?;
    conn.execute(
        "UPDATE bundle_runs SET artefacts_purged_at = now() WHERE id = $1",
        &[&run],
    )
    .await
    .map_err(query_error("record a purge"))?;
    Ok(())
}

/// Releases the seeds of at most `limit` ended runs whose seed retention passed and that no
/// hold keeps, then erases (forgets the content of) each of their seeds that no run keeps any
/// more; how many seeds were erased.
pub async fn release_seeds(tx: &Transaction<'_>, limit: i64) -> Result<u64, DependencyError> {
    let rows = tx
        .query(
            &format!(
                "UPDATE bundle_runs
                    SET seed_released_at = now()
                  WHERE id IN (SELECT r.id FROM bundle_runs r
                                WHERE r.seed_released_at IS NULL AND r.seed_expires_at <= now()
                                  AND NOT {HELD}
                                ORDER BY r.seed_expires_at
                                LIMIT $1
                                  FOR UPDATE SKIP LOCKED)
              RETURNING merchant_id, seed_hash"
            ),
            &[&limit],
        )
        .await
        .map_err(query_error("release seeds"))?;
    let merchants: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    let hashes: Vec<String> = rows.iter().map(|r| r.get(1)).collect();
    erase_unkept_seeds(tx, &merchants, &hashes).await
}

/// Erases each of these seeds that no run keeps (a run keeps its seed until it releases it);
/// how many were erased.
pub async fn erase_unkept_seeds(
    tx: &Transaction<'_>,
    merchants: &[Uuid],
    hashes: &[String],
) -> Result<u64, DependencyError> {
    if hashes.is_empty() {
        return Ok(0);
    }
    tx.execute(
        "UPDATE seeds s
            SET canonical = NULL, erased_at = now()
           FROM (SELECT DISTINCT * FROM unnest($1::uuid[], $2::text[]) AS t (merchant_id, hash)) t
          WHERE s.merchant_id = t.merchant_id AND s.hash = t.hash AND s.canonical IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM bundle_runs r
                             WHERE r.merchant_id = s.merchant_id AND r.seed_hash = s.hash
                               AND r.seed_released_at IS NULL)",
        &[&merchants, &hashes],
    )
    .await
    .map_err(query_error("erase seeds"))
}

/// Ended batches all of whose runs released their seeds (or some of whose runs were erased),
/// and whose seeds file and line errors are still there: `(merchant, batch, seeds file key)`.
pub async fn batches_to_purge(
    pool: &DbPool,
    limit: i64,
) -> Result<Vec<(MerchantId, Uuid, String)>, DependencyError> {
    let conn = connection(pool).await?;
    let rows = conn
        .query(
            "SELECT b.merchant_id, b.id, b.seeds_key FROM batches b
              WHERE b.status IN ('completed', 'cancelled', 'failed') AND b.seeds_purged_at IS NULL
                AND EXISTS (SELECT 1 FROM bundle_runs r WHERE r.batch_id = b.id)
                AND (NOT EXISTS (SELECT 1 FROM bundle_runs r
                                  WHERE r.batch_id = b.id AND r.seed_released_at IS NULL)
                     -- An erasure took some of its lines: the file holds them.
                     OR EXISTS (SELECT 1 FROM erasure_items i JOIN bundle_runs r ON r.id = i.run_id
                                 WHERE r.batch_id = b.id AND i.outcome = 'erased'))
              LIMIT $1",
            &[&limit],
        )
        .await
        .map_err(query_error("find batches to purge"))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Deletes a batch's line errors (they quote the lines) and records its seeds purged.
pub async fn mark_batch_purged(pool: &DbPool, batch: Uuid) -> Result<(), DependencyError> {
    let mut conn = connection(pool).await?;
    let tx = conn.transaction().await.map_err(query_error("begin"))?;
    tx.execute("DELETE FROM batch_errors WHERE batch_id = $1", &[&batch])
        .await
        .map_err(query_error("delete batch errors"))?;
    tx.execute(
        "UPDATE batches SET seeds_purged_at = now() WHERE id = $1",
        &[&batch],
    )
    .await
    .map_err(query_error("record a batch purge"))?;
    tx.commit().await.map_err(query_error("commit batch purge"))
}
