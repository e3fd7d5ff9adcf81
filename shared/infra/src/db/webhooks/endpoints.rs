//! Webhook endpoint rows: the [`WebhookEndpoint`] a merchant registers, and inserting,
//! counting, finding, listing, updating and deleting them. Their signing secrets live in
//! Vault, not here.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::{connection, query_error, DbPool};
use crate::error::DependencyError;
use docbundle_domain::paging::TimeKey;
use docbundle_domain::MerchantId;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpoint {
    pub id: Uuid,
    pub merchant_id: MerchantId,
    pub url: String,
    /// `run.completed`, `run.failed`, or `*` for every event.
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Why the service disabled it (every delivery failed for too long).
    pub disabled_reason: Option<String>,
    /// The first failure of the current streak; `null` after a success.
    pub failing_since: Option<DateTime<Utc>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl WebhookEndpoint {
    pub fn page_key(&self) -> TimeKey {
        TimeKey {
            t: self.created_at,
            id: self.id,
        }
    }
}

const ENDPOINT_COLUMNS: &str = "id, merchant_id, url, events, description, enabled, disabled_reason, failing_since, created_by, created_at, updated_at";

fn endpoint(row: &Row) -> WebhookEndpoint {
    WebhookEndpoint {
        id: row.get("id"),
        merchant_id: row.get("merchant_id"),
        url: row.get("url"),
        events: row.get("events"),
        description: row.get("description"),
        enabled: row.get("enabled"),
        disabled_reason: row.get("disabled_reason"),
        failing_since: row.get("failing_since"),
        created_by: row.get("created_by"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

pub struct NewEndpoint<'a> {
    pub id: Uuid,
    pub merchant: MerchantId,
    pub url: &'a str,
    pub events: &'a [String],
    pub description: Option<&'a str>,
    pub enabled: bool,
    pub created_by: &'a str,
}

pub async fn insert_endpoint(
    pool: &DbPool,
    new: &NewEndpoint<'_>,
) -> Result<WebhookEndpoint, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_one(
            &format!(
                "INSERT INTO webhook_endpoints (id, merchant_id, url, events, description, enabled, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {ENDPOINT_COLUMNS}"
            ),
            &[&new.id, &new.merchant, &new.url, &new.events, &new.description, &new.enabled, &new.created_by],
        )
        .await
        .map_err(query_error("insert webhook endpoint"))?;
    Ok(endpoint(&row))
}

/// How many endpoints the merchant has.
pub async fn count_endpoints(pool: &DbPool, merchant: MerchantId) -> Result<i64, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_one(
            "SELECT count(*) FROM webhook_endpoints WHERE merchant_id = $1",
            &[&merchant],
        )
        .await
        .map_err(query_error("count webhook endpoints"))?;
    Ok(row.get(0))
}

pub async fn find_endpoint(
    pool: &DbPool,
    merchant: MerchantId,
    id: Uuid,
) -> Result<Option<WebhookEndpoint>, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_opt(
            &format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND merchant_id = $2"
            ),
            &[&id, &merchant],
        )
        .await
        .map_err(query_error("find webhook endpoint"))?;
    Ok(row.as_ref().map(endpoint))
}

pub async fn list_endpoints(
    pool: &DbPool,
    merchant: MerchantId,
    after: Option<&TimeKey>,
    fetch: i64,
) -> Result<Vec<WebhookEndpoint>, DependencyError> {
    let conn = connection(pool).await?;
    let (after_t, after_id) = TimeKey::bounds(after);
    let rows = conn
        .query(
            &format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
                  WHERE merchant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
                  ORDER BY created_at DESC, id DESC LIMIT $4"
            ),
            &[&merchant, &after_t, &after_id, &fetch],
        )
        .await
        .map_err(query_error("list webhook endpoints"))?;
    Ok(rows.iter().map(endpoint).collect())
}

/// A change to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    /// `Some(None)` clears it.
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
}

/// Applies `patch`; enabling an endpoint clears why it was disabled and its failure streak.
pub async fn update_endpoint(
    pool: &DbPool,
    merchant: MerchantId,
    id: Uuid,
    patch: &EndpointPatch,
) -> Result<Option<WebhookEndpoint>, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_opt(
            &format!(
                "UPDATE webhook_endpoints SET
                    url = COALESCE($3, url),
                    events = COALESCE($4, events),
                    description = CASE WHEN $5 THEN $6 ELSE description END,
                    enabled = COALESCE($7, enabled),
                    disabled_reason = CASE WHEN $7 THEN NULL ELSE disabled_reason END,
                    failing_since = CASE WHEN $7 THEN NULL ELSE failing_since END,
                    updated_at = now()
                  WHERE id = $1 AND merchant_id = $2
              RETURNING {ENDPOINT_COLUMNS}"
            ),
            &[
                &id,
                &merchant,
                &patch.url,
                &patch.events,
                &patch.description.is_some(),
                &patch.description.clone().flatten(),
                &patch.enabled,
            ],
        )
        .await
        .map_err(query_error("update webhook endpoint"))?;
    Ok(row.as_ref().map(endpoint))
}

/// Deletes the endpoint and its deliveries; `false` when the merchant has no such endpoint.
pub async fn delete_endpoint(
    pool: &DbPool,
    merchant: MerchantId,
    id: Uuid,
) -> Result<bool, DependencyError> {
    let conn = connection(pool).await?;
    let n = conn
        .execute(
            "DELETE FROM webhook_endpoints WHERE id = $1 AND merchant_id = $2",
            &[&id, &merchant],
        )
        .await
        .map_err(query_error("delete webhook endpoint"))?;
    Ok(n == 1)
}
