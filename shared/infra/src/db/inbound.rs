//! Webhook sources (their secrets live in Vault, not here) and received webhook events.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::{Row, Transaction};
use uuid::Uuid;

use super::{connection, query_error, DbPool};
use crate::error::DependencyError;
use docbundle_domain::paging::TimeKey;
use docbundle_domain::MerchantId;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSource {
    pub id: Uuid,
    pub merchant_id: MerchantId,
    pub name: String,
    pub status: String,
    pub secret_version: i32,
    pub previous_secret_valid_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
}

impl WebhookSource {
    pub fn page_key(&self) -> TimeKey {
        TimeKey {
            t: self.created_at,
            id: self.id,
        }
    }
}

const SOURCE_COLUMNS: &str =
    "id, merchant_id, name, status, secret_version, previous_valid_until, created_at, updated_at, disabled_at";

fn source(row: &Row) -> WebhookSource {
    WebhookSource {
        id: row.get("id"),
        merchant_id: row.get("merchant_id"),
        name: row.get("name"),
        status: row.get("status"),
        secret_version: row.get("secret_version"),
        previous_secret_valid_until: row.get("previous_valid_until"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        disabled_at: row.get("disabled_at"),
    }
}

pub async fn create_source(
    pool: &DbPool,
    id: Uuid,
    merchant: MerchantId,
    name: &str,
) -> Result<WebhookSource, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_one(
            &format!("INSERT INTO webhook_sources (id, merchant_id, name) VALUES ($1, $2, $3) RETURNING {SOURCE_COLUMNS}"),
            &[&id, &merchant, &name],
        )
        .await
        .map_err(query_error("insert webhook source"))?;
    Ok(source(&row))
}

/// Any merchant's source: the inbound route has no caller identity but the source id.
pub async fn find_source(
    pool: &DbPool,
    id: Uuid,
) -> Result<Option<WebhookSource>, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_opt(
            &format!("SELECT {SOURCE_COLUMNS} FROM webhook_sources WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(query_error("find webhook source"))?;
    Ok(row.as_ref().map(source))
}

pub async fn list_sources(
    pool: &DbPool,
    merchant: MerchantId,
    after: Option<&TimeKey>,
    fetch: i64,
) -> Result<Vec<WebhookSource>, DependencyError> {
    let conn = connection(pool).await?;
    let (after_t, after_id) = TimeKey::bounds(after);
    let rows = conn
        .query(
            &format!(
                "SELECT {SOURCE_COLUMNS} FROM webhook_sources
                  WHERE merchant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
                  ORDER BY created_at DESC, id DESC LIMIT $4"
            ),
            &[&merchant, &after_t, &after_id, &fetch],
        )
        .await
        .map_err(query_error("list webhook sources"))?;
    Ok(rows.iter().map(source).collect())
}

/// Disables the source (idempotent); `None` when the merchant has no such source.
pub async fn disable_source(
    pool: &DbPool,
    merchant: MerchantId,
    id: Uuid,
) -> Result<Option<WebhookSource>, DependencyError> {
    let conn = connection(pool).await?;
    conn.execute(
        "UPDATE webhook_sources SET status = 'disabled', disabled_at = now(), updated_at = now()
          WHERE id = $1 AND merchant_id = $2 AND status = 'active'",
        &[&id, &merchant],
    )
    .await
    .map_err(query_error("disable webhook source"))?;
    let row = conn
        .query_opt(
            &format!(
                "SELECT {SOURCE_COLUMNS} FROM webhook_sources WHERE id = $1 AND merchant_id = $2"
            ),
            &[&id, &merchant],
        )
        .await
        .map_err(query_error("find webhook source"))?;
    Ok(row.as_ref().map(source))
}

/// Records a rotation: the new secret version and until when the previous one verifies.
pub async fn record_rotation(
    pool: &DbPool,
    merchant: MerchantId,
    id: Uuid,
    previous_valid_until: DateTime<Utc>,
) -> Result<Option<WebhookSource>, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_opt(
            &format!(
                "UPDATE webhook_sources
                    SET secret_version = secret_version + 1, previous_valid_until = $3, updated_at = now()
                  WHERE id = $1 AND merchant_id = $2 AND status = 'active'
              RETURNING {SOURCE_COLUMNS}"
            ),
            &[&id, &merchant, &previous_valid_until],
        )
        .await
        .map_err(query_error("record rotation"))?;
    Ok(row.as_ref().map(source))
}

/// Records a received event inside `tx`; `None` when this source already received this
/// `webhook-id` (a concurrent duplicate waits here until the first one commits).
pub async fn insert_event(
    tx: &Transaction<'_>,
    source: &WebhookSource,
    webhook_id: &str,
    event_type: &str,
    body_sha256: &str,
) -> Result<Option<Uuid>, DependencyError> {
    let id = Uuid::new_v4();
    let row = tx
        .query_opt(
            "INSERT INTO webhook_events (id, source_id, merchant_id, webhook_id, event_type, body_sha256)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (source_id, webhook_id) DO NOTHING
             RETURNING id",
            &[&id, &source.id, &source.merchant_id, &webhook_id, &event_type, &body_sha256],
        )
        .await
        .map_err(query_error("insert webhook event"))?;
    Ok(row.map(|r| r.get(0)))
}

pub async fn finish_event(
    tx: &Transaction<'_>,
    event_id: Uuid,
    run_ids: &[Uuid],
    response: &Value,
) -> Result<(), DependencyError> {
    for run_id in run_ids {
        tx.execute(
            "INSERT INTO webhook_event_runs (event_id, run_id) VALUES ($1, $2)",
            &[&event_id, run_id],
        )
        .await
        .map_err(query_error("link event run"))?;
    }
    tx.execute(
        "UPDATE webhook_events SET status = 'processed', response = $2, processed_at = now() WHERE id = $1",
        &[&event_id, response],
    )
    .await
    .map_err(query_error("finish webhook event"))?;
    Ok(())
}

/// The answer recorded for an earlier delivery of `webhook_id`.
pub async fn event_answer(
    pool: &DbPool,
    source_id: Uuid,
    webhook_id: &str,
) -> Result<Option<Value>, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_opt(
            "SELECT response FROM webhook_events WHERE source_id = $1 AND webhook_id = $2",
            &[&source_id, &webhook_id],
        )
        .await
        .map_err(query_error("find webhook event"))?;
    Ok(row.and_then(|r| r.get::<_, Option<Value>>(0)))
}

/// Active configurations of `merchant` whose current version lists `event_type` as a trigger.
pub async fn triggered_configurations(
    pool: &DbPool,
    merchant: MerchantId,
    event_type: &str,
) -> Result<Vec<Uuid>, DependencyError> {
    let conn = connection(pool).await?;
    let rows = conn
        .query(
            "SELECT c.id FROM configurations c
               JOIN configuration_versions v ON v.configuration_id = c.id AND v.version = c.current_version
              WHERE c.merchant_id = $1 AND c.status = 'active' AND $2 = ANY (v.triggers)
              ORDER BY c.created_at, c.id",
            &[&merchant, &event_type],
        )
        .await
        .map_err(query_error("find triggered configurations"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
