//! Legal holds: placed on a run, a batch or a configuration of a merchant, released once,
//! never deleted (the table's trigger refuses anything else): the audit trail of who held
//! what, why, and who let it go.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{connection, query_error, DbPool};
use crate::error::DependencyError;
use docbundle_domain::paging::TimeKey;
use docbundle_domain::MerchantId;

/// What a hold keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldTarget {
    Run(Uuid),
    Batch(Uuid),
    Configuration(Uuid),
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegalHold {
    pub id: Uuid,
    pub merchant_id: MerchantId,
    /// Exactly one of `runId`, `batchId` and `configurationId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub configuration_id: Option<Uuid>,
    pub reason: String,
    /// The caller that placed it (the token's subject).
    pub placed_by: String,
    /// Placed by the platform (a `merchant.admin` token): only the platform releases it.
    pub by_platform: bool,
    pub placed_at: DateTime<Utc>,
    pub released_by: Option<String>,
    pub released_at: Option<DateTime<Utc>>,
}

impl LegalHold {
    pub fn page_key(&self) -> TimeKey {
        TimeKey {
            t: self.placed_at,
            id: self.id,
        }
    }
}

const COLUMNS: &str = "id, merchant_id, run_id, batch_id, configuration_id, reason, placed_by,
    by_platform, placed_at, released_by, released_at";

fn hold(row: &Row) -> LegalHold {
    LegalHold {
        id: row.get("id"),
        merchant_id: row.get("merchant_id"),
        run_id: row.get("run_id"),
        batch_id: row.get("batch_id"),
        configuration_id: row.get("configuration_id"),
        reason: row.get("reason"),
        placed_by: row.get("placed_by"),
        by_platform: row.get("by_platform"),
        placed_at: row.get("placed_at"),
        released_by: row.get("released_by"),
        released_at: row.get("released_at"),
    }
}

/// Why a hold was not placed.
#[derive(Debug, PartialEq, Eq)]
pub enum PlaceRefused {
    /// No such run, batch or configuration of this merchant.
    NotFound,
    /// The run's artefacts are gone already: there is nothing left to hold.
    Expired,
}

/// Places a hold, under the retention lock taken shared (see
/// [`super::retention::LOCK`]): once this commits, no pass expires or erases what it holds.
pub async fn place(
    pool: &DbPool,
    merchant: MerchantId,
    target: HoldTarget,
    reason: &str,
    placed_by: &str,
    by_platform: bool,
) -> Result<Result<LegalHold, PlaceRefused>, DependencyError> {
    let mut conn = connection(pool).await?;
    let tx = conn.transaction().await.map_err(query_error("begin"))?;
    // A pass across merchants holds its lock for milliseconds, an erasure of this merchant's
    // for a second or two: wait within the request's deadline, then answer 503 (retry).
    tx.execute("SET LOCAL lock_timeout = '1500ms'", &[])
        .await
        .map_err(query_error("bound the wait for the retention lock"))?;
    super::retention::lock(&tx, false).await?;
    super::retention::lock_merchant(&tx, merchant, false).await?;
    let (run, batch, configuration) = match target {
        HoldTarget::Run(id) => (Some(id), None, None),
        HoldTarget::Batch(id) => (None, Some(id), None),
        HoldTarget::Configuration(id) => (None, None, Some(id)),
    };
    let found = match target {
        HoldTarget::Run(id) => tx
            .query_opt(
                "SELECT status FROM bundle_runs WHERE merchant_id = $1 AND id = $2 FOR SHARE",
                &[&merchant, &id],
            )
            .await
            .map(|row| row.map(|r| r.get::<_, String>(0))),
        HoldTarget::Batch(id) => tx
            .query_opt(
                "SELECT status FROM batches WHERE merchant_id = $1 AND id = $2",
                &[&merchant, &id],
            )
            .await
            .map(|row| row.map(|r| r.get::<_, String>(0))),
        HoldTarget::Configuration(id) => tx
            .query_opt(
                "SELECT status FROM configurations WHERE merchant_id = $1 AND id = $2",
                &[&merchant, &id],
            )
            .await
            .map(|row| row.map(|r| r.get::<_, String>(0))),
    }
    .map_err(query_error("find the held item"))?;
    match (found.as_deref(), target) {
        (None, _) => return Ok(Err(PlaceRefused::NotFound)),
        (Some("expired"), HoldTarget::Run(_)) => return Ok(Err(PlaceRefused::Expired)),
        _ => {}
    }
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO legal_holds
                        (id, merchant_id, run_id, batch_id, configuration_id, reason, placed_by,
                         by_platform)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
              RETURNING {COLUMNS}"
            ),
            &[
                &Uuid::new_v4(),
                &merchant,
                &run,
                &batch,
                &configuration,
                &reason,
                &placed_by,
                &by_platform,
            ],
        )
        .await
        .map_err(query_error("place a hold"))?;
    tx.commit().await.map_err(query_error("commit hold"))?;
    Ok(Ok(hold(&row)))
}

pub async fn find(
    pool: &DbPool,
    merchant: MerchantId,
    id: Uuid,
) -> Result<Option<LegalHold>, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_opt(
            &format!("SELECT {COLUMNS} FROM legal_holds WHERE merchant_id = $1 AND id = $2"),
            &[&merchant, &id],
        )
        .await
        .map_err(query_error("find hold"))?;
    Ok(row.as_ref().map(hold))
}

/// Releases the hold unless it was released already; the hold as it now is, or `None` when
/// it had been released.
pub async fn release(
    pool: &DbPool,
    merchant: MerchantId,
    id: Uuid,
    released_by: &str,
) -> Result<Option<LegalHold>, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_opt(
            &format!(
                "UPDATE legal_holds SET released_by = $3, released_at = now()
                  WHERE merchant_id = $1 AND id = $2 AND released_at IS NULL
              RETURNING {COLUMNS}"
            ),
            &[&merchant, &id, &released_by],
        )
        .await
        .map_err(query_error("release hold"))?;
    Ok(row.as_ref().map(hold))
}

/// Newest first, continuing after `after`; only those in force (`active`) or only those
/// released (`!active`) when asked.
pub async fn list(
    pool: &DbPool,
    merchant: MerchantId,
    active: Option<bool>,
    after: Option<&TimeKey>,
    fetch: i64,
) -> Result<Vec<LegalHold>, DependencyError> {
    let conn = connection(pool).await?;
    let (after_t, after_id) = TimeKey::bounds(after);
    let rows = conn
        .query(
            &format!(
                "SELECT {COLUMNS} FROM legal_holds
                  WHERE merchant_id = $1
                    AND ($2::bool IS NULL OR (released_at IS NULL) = $2)
                    AND ($3::timestamptz IS NULL OR (placed_at, id) < ($3, $4))
                  ORDER BY placed_at DESC, id DESC
                  LIMIT $5"
            ),
            &[&merchant, &active, &after_t, &after_id, &fetch],
        )
        .await
        .map_err(query_error("list holds"))?;
    Ok(rows.iter().map(hold).collect())
}

/// The holds in force that keep this run (on it, its batch or its configuration).
pub async fn holding_run(
    pool: &DbPool,
    merchant: MerchantId,
    run: Uuid,
) -> Result<Vec<Uuid>, DependencyError> {
    let conn = connection(pool).await?;
    let rows = conn
        .query(
            "SELECT h.id FROM bundle_runs r
               JOIN legal_holds h
                 ON h.released_at IS NULL AND h.merchant_id = r.merchant_id
                AND (h.run_id = r.id OR h.batch_id = r.batch_id
                     OR h.configuration_id = r.configuration_id)
              WHERE r.merchant_id = $1 AND r.id = $2
              ORDER BY h.placed_at",
            &[&merchant, &run],
        )
        .await
        .map_err(query_error("find a run's holds"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
