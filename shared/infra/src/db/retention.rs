//! Retention's SQL: the runs whose artefacts are due to go, the artefacts still to delete, the
//! seeds no run keeps any more. A run under a legal hold (on itself, its batch or its
//! configuration) is never touched: [`HELD`] is the one test of that.

use tokio_postgres::Transaction;
use uuid::Uuid;

use super::runs::BundleRun;
use super::{connection, query_error, DbPool};
use crate::error::DependencyError;
use docbundle_domain::MerchantId;

/// Whether the run `r` is under a legal hold in force, as SQL: one probe of each partial index
/// of holds in force (on runs, batches, configurations).
pub const HELD: &str = "(EXISTS (SELECT 1 FROM legal_holds h
                 WHERE h.run_id = r.id AND h.released_at IS NULL)
     OR (r.batch_id IS NOT NULL AND EXISTS (SELECT 1 FROM legal_holds h
                 WHERE h.batch_id = r.batch_id AND h.released_at IS NULL))
     OR EXISTS (SELECT 1 FROM legal_holds h
                 WHERE h.configuration_id = r.configuration_id AND h.released_at IS NULL))";

/// The advisory locks that order deletions against holds being placed. A pass across merchants
/// (expiry, seeds released) takes [`LOCK`] exclusive; an erasure takes its merchant's key
/// exclusive; placing a hold takes both shared. So a deletion either sees a hold, or ran before
/// it was placed (and the hold then finds the run expired), and one merchant's long erasure
/// holds up no other merchant's holds.
pub const LOCK: i64 = 0x7265_7465_6e74; // "retent"
/// The class of the per-merchant keys (`pg_advisory_xact_lock(class, hashtext(merchant))`).
const MERCHANT_LOCK_CLASS: i32 = 0x7265_7465; // "rete"

/// Takes [`LOCK`] for the transaction: exclusive for a pass across merchants, shared to place
/// a hold.
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

/// Takes the merchant's key for the transaction: exclusive for an erasure, shared to place a
/// hold.
pub async fn lock_merchant(
    tx: &Transaction<'_>,
    merchant: MerchantId,
    exclusive: bool,
) -> Result<(), DependencyError> {
    let sql = if exclusive {
        "SELECT pg_advisory_xact_lock($1, hashtext($2::text))"
    } else {
        "SELECT pg_advisory_xact_lock_shared($1, hashtext($2::text))"
    };
    tx.execute(
        sql,
        &[&MERCHANT_LOCK_CLASS, &merchant.as_uuid().to_string()],
    )
    .await
    .map_err(query_error("take the merchant's retention lock"))?;
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

/// Runs whose artefacts are still in storage but must go: expired ones, and failed ones (which
/// may have stored some before failing) once their seed is released; a purge that failed is
/// tried again. Oldest first.
pub async fn unpurged(
    pool: &DbPool,
    limit: i64,
) -> Result<Vec<(MerchantId, Uuid)>, DependencyError> {
    let conn = connection(pool).await?;
    let rows = conn
        .query(
            "(SELECT merchant_id, id, expired_at AS since FROM bundle_runs
               WHERE status = 'expired' AND artefacts_purged_at IS NULL
               ORDER BY expired_at LIMIT $1)
             UNION ALL
             (SELECT merchant_id, id, seed_released_at FROM bundle_runs
               WHERE status = 'failed' AND seed_released_at IS NOT NULL
                 AND artefacts_purged_at IS NULL
               ORDER BY seed_released_at LIMIT $1)
             ORDER BY since LIMIT $1",
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
/// hold keeps (a failed run's error message, which may quote the seed, goes with it; its
/// batch is due a look at its seeds file), then erases each of their seeds that no run keeps
/// any more; how many seeds were erased.
pub async fn release_seeds(tx: &Transaction<'_>, limit: i64) -> Result<u64, DependencyError> {
    let rows = tx
        .query(
            &format!(
                "UPDATE bundle_runs
                    SET seed_released_at = now(), last_error = NULL,
                        error = CASE WHEN error IS NULL THEN NULL
                                     ELSE jsonb_build_object('code', error->'code', 'message',
                                              'the run''s seed is no longer kept') END
                  WHERE id IN (SELECT r.id FROM bundle_runs r
                                WHERE r.seed_released_at IS NULL AND r.seed_expires_at <= now()
                                  AND NOT {HELD}
                                ORDER BY r.seed_expires_at
                                LIMIT $1
                                  FOR UPDATE SKIP LOCKED)
              RETURNING merchant_id, seed_hash, batch_id, id"
            ),
            &[&limit],
        )
        .await
        .map_err(query_error("release seeds"))?;
    let merchants: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    let hashes: Vec<String> = rows.iter().map(|r| r.get(1)).collect();
    let batches: Vec<Uuid> = rows.iter().filter_map(|r| r.get(2)).collect();
    let runs: Vec<Uuid> = rows.iter().map(|r| r.get(3)).collect();
    redact_failure_deliveries(tx, &runs, "the run's seed is no longer kept").await?;
    batches_due(tx, &batches).await?;
    let (_, erased) = erase_unkept_seeds(tx, &merchants, &hashes).await?;
    Ok(erased)
}

/// Marks these batches due a look at their seeds file (some of their runs let seeds go), and
/// moves their generation on (a look that started before this one does not clear the flag).
pub async fn batches_due(tx: &Transaction<'_>, batches: &[Uuid]) -> Result<(), DependencyError> {
    if batches.is_empty() {
        return Ok(());
    }
    tx.execute(
        "UPDATE batches SET seeds_purge_due = true,
                            seeds_purge_generation = seeds_purge_generation + 1
          WHERE id = ANY($1) AND seeds_purged_at IS NULL",
        &[&batches],
    )
    .await
    .map_err(query_error("mark batches due"))?;
    Ok(())
}

/// Erases each of these seeds that no run keeps (a run keeps its seed until it releases it).
/// Returns the seeds that were not erased yet (`(merchant, hash)`), and how many of them it
/// erased. The seeds are locked first, then the runs checked in a statement of their own: a
/// launch that was storing one of them (and so held its row) has committed its run by then,
/// and keeps the seed.
/// Forgets the message of these runs' errors in the `run.failed` deliveries kept (they may
/// quote the seed), saying `why` instead.
pub async fn redact_failure_deliveries(
    tx: &Transaction<'_>,
    runs: &[Uuid],
    why: &str,
) -> Result<(), DependencyError> {
    if runs.is_empty() {
        return Ok(());
    }
    tx.execute(
        "UPDATE webhook_deliveries
            SET payload = jsonb_set(payload::jsonb, '{data,error,message}', to_jsonb($2::text))::text
          WHERE run_id = ANY($1) AND event_type = 'run.failed'
            AND payload::jsonb #> '{data,error,message}' IS NOT NULL",
        &[&runs, &why],
    )
    .await
    .map_err(query_error("redact failed runs' deliveries"))?;
    Ok(())
}

pub async fn erase_unkept_seeds(
    tx: &Transaction<'_>,
    merchants: &[Uuid],
    hashes: &[String],
) -> Result<(Vec<(Uuid, String)>, u64), DependencyError> {
    if hashes.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let live: Vec<(Uuid, String)> = tx
        .query(
            "SELECT s.merchant_id, s.hash FROM seeds s
               JOIN (SELECT DISTINCT * FROM unnest($1::uuid[], $2::text[]) AS t (merchant_id, hash)) t
                 ON s.merchant_id = t.merchant_id AND s.hash = t.hash
              WHERE s.canonical IS NOT NULL
              ORDER BY s.merchant_id, s.hash
                FOR UPDATE OF s",
            &[&merchants, &hashes],
        )
        .await
        .map_err(query_error("lock seeds"))?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if live.is_empty() {
        return Ok((live, 0));
    }
    let (live_merchants, live_hashes): (Vec<Uuid>, Vec<String>) = live.iter().cloned().unzip();
    let erased = tx
        .execute(
            "UPDATE seeds s
                SET canonical = NULL, erased_at = now()
               FROM unnest($1::uuid[], $2::text[]) AS t (merchant_id, hash)
              WHERE s.merchant_id = t.merchant_id AND s.hash = t.hash AND s.canonical IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM bundle_runs r
                                 WHERE r.merchant_id = s.merchant_id AND r.seed_hash = s.hash
                                   AND r.seed_released_at IS NULL)",
            &[&live_merchants, &live_hashes],
        )
        .await
        .map_err(query_error("erase seeds"))?;
    Ok((live, erased))
}

/// Ended batches whose seeds file and line errors must go: those due a look (some runs let
/// their seeds go) all of whose runs released their seeds or some of whose runs were erased,
/// and those that made no run at all once their version's seed retention passed:
/// `(merchant, batch, seeds file key)`. A batch due a look that must keep its file is no
/// longer due (its next run to let go makes it due again).
pub async fn batches_to_purge(
    pool: &DbPool,
    limit: i64,
) -> Result<Vec<(MerchantId, Uuid, String)>, DependencyError> {
    let conn = connection(pool).await?;
    let rows = conn
        .query(
            "WITH due AS (
                 SELECT b.id, b.merchant_id, b.seeds_key, b.seeds_purge_generation AS generation,
                        (NOT EXISTS (SELECT 1 FROM bundle_runs r
                                      WHERE r.batch_id = b.id AND r.seed_released_at IS NULL)
                         OR EXISTS (SELECT 1 FROM erasure_items i
                                      JOIN bundle_runs r ON r.id = i.run_id
                                     WHERE r.batch_id = b.id AND i.outcome <> 'kept_held')) AS go
                   FROM batches b
                  WHERE b.seeds_purge_due AND b.status IN ('completed', 'cancelled', 'failed')
                  LIMIT $1
             ), kept AS (
                 UPDATE batches b SET seeds_purge_due = false
                   FROM due
                  WHERE b.id = due.id AND NOT due.go
                    AND b.seeds_purge_generation = due.generation
             )
             SELECT merchant_id, id, seeds_key FROM due WHERE go
             UNION ALL
             (SELECT b.merchant_id, b.id, b.seeds_key FROM batches b
                JOIN configuration_versions v
                  ON v.configuration_id = b.configuration_id AND v.version = b.configuration_version
               WHERE b.status IN ('completed', 'cancelled', 'failed') AND b.seeds_purged_at IS NULL
                 AND b.finished_at + v.seeds_retention::interval <= now()
                 AND NOT EXISTS (SELECT 1 FROM bundle_runs r WHERE r.batch_id = b.id)
               LIMIT $1)",
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
        "UPDATE batches SET seeds_purged_at = now(), seeds_purge_due = false WHERE id = $1",
        &[&batch],
    )
    .await
    .map_err(query_error("record a batch purge"))?;
    tx.commit().await.map_err(query_error("commit batch purge"))
}
