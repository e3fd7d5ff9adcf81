//! The transactional outbox: run messages written in the launch transaction and sent to SQS
//! after it commits; rows whose send failed are picked up by `outbox-relay`.

use std::time::Duration;

use uuid::Uuid;

use super::{connection, query_error, DbPool};
use crate::error::DependencyError;
use crate::queue::{RunMessage, RunQueue};

/// Inserts the outbox row for `message` inside the caller's transaction; returns its id.
pub async fn insert(
    tx: &tokio_postgres::Transaction<'_>,
    message: &RunMessage,
) -> Result<i64, DependencyError> {
    let payload = serde_json::to_value(message)
        .map_err(|e| DependencyError::failed("postgres", "encode outbox payload", e))?;
    let row = tx
        .query_one(
            "INSERT INTO outbox (run_id, payload) VALUES ($1, $2) RETURNING id",
            &[&message.run_id, &payload],
        )
        .await
        .map_err(query_error("insert outbox row"))?;
    Ok(row.get(0))
}

pub async fn mark_sent(pool: &DbPool, id: i64) -> Result<(), DependencyError> {
    let conn = connection(pool).await?;
    conn.execute(
        "UPDATE outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL
         WHERE id = $1 AND sent_at IS NULL",
        &[&id],
    )
    .await
    .map_err(query_error("mark outbox row sent"))?;
    Ok(())
}

pub async fn record_failure(pool: &DbPool, id: i64, error: &str) -> Result<(), DependencyError> {
    let conn = connection(pool).await?;
    conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
        &[&id, &error],
    )
    .await
    .map_err(query_error("record outbox failure"))?;
    Ok(())
}

/// What one relay pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayReport {
    pub sent: usize,
    pub failed: usize,
}

/// Sends every unsent row older than `min_age` (younger rows are still being sent by their
/// launch), up to `batch` rows. Rows are locked with `SKIP LOCKED`, so concurrent relays never
/// send the same row twice in one pass; a row is marked sent in the same transaction that
/// locked it.
pub async fn relay(
    pool: &DbPool,
    queue: &RunQueue,
    min_age: Duration,
    batch: i64,
) -> Result<RelayReport, DependencyError> {
    let mut conn = connection(pool).await?;
    let tx = conn
        .transaction()
        .await
        .map_err(query_error("begin relay"))?;
    let min_age_secs = min_age.as_secs_f64();
    let rows = tx
        .query(
            "SELECT id, run_id, payload FROM outbox
             WHERE sent_at IS NULL AND created_at < now() - make_interval(secs => $1)
             ORDER BY created_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED",
            &[&min_age_secs, &batch],
        )
        .await
        .map_err(query_error("select unsent outbox rows"))?;
    let mut report = RelayReport::default();
    for row in rows {
        let id: i64 = row.get("id");
        let run_id: Uuid = row.get("run_id");
        let payload: serde_json::Value = row.get("payload");
        let message: RunMessage = match serde_json::from_value(payload) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(outbox_id = id, %run_id, error = %e, "undecodable outbox row");
                report.failed += 1;
                continue;
            }
        };
        match queue.send(&message).await {
            Ok(_) => {
                tx.execute(
                    "UPDATE outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(query_error("mark outbox row sent"))?;
                report.sent += 1;
            }
            Err(e) => {
                tracing::warn!(outbox_id = id, %run_id, error = %e, "relay could not send run message");
                tx.execute(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
                    &[&id, &e.to_string()],
                )
                .await
                .map_err(query_error("record outbox failure"))?;
                report.failed += 1;
            }
        }
    }
    tx.commit().await.map_err(query_error("commit relay"))?;
    Ok(report)
}
