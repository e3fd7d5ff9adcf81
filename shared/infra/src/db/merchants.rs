//! The `merchants` table: the tenants.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{connection, query_error, DbPool};
use crate::error::DependencyError;
use docbundle_domain::paging::TimeKey;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Merchant {
    pub id: Uuid,
    pub name: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&Row> for Merchant {
    fn from(row: &Row) -> Self {
        Merchant {
            id: row.get("id"),
            name: row.get("name"),
            status: row.get("status"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
        }
    }
}

/// Inserts a merchant; returns `None` when one with that id already exists.
pub async fn insert(
    pool: &DbPool,
    id: Uuid,
    name: &str,
) -> Result<Option<Merchant>, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_opt(
            "INSERT INTO merchants (id, name) VALUES ($1, $2)
             ON CONFLICT (id) DO NOTHING
             RETURNING id, name, status, created_at, updated_at",
            &[&id, &name],
        )
        .await
        .map_err(query_error("insert merchant"))?;
    Ok(row.as_ref().map(Merchant::from))
}

pub async fn find(pool: &DbPool, id: Uuid) -> Result<Option<Merchant>, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_opt(
            "SELECT id, name, status, created_at, updated_at FROM merchants WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(query_error("find merchant"))?;
    Ok(row.as_ref().map(Merchant::from))
}

/// Newest first, continuing after `after`; up to `fetch` rows.
pub async fn list(
    pool: &DbPool,
    after: Option<&TimeKey>,
    fetch: i64,
) -> Result<Vec<Merchant>, DependencyError> {
    let conn = connection(pool).await?;
    let (after_t, after_id) = TimeKey::bounds(after);
    let rows = conn
        .query(
            "SELECT id, name, status, created_at, updated_at FROM merchants
              WHERE ($1::timestamptz IS NULL OR (created_at, id) < ($1, $2))
              ORDER BY created_at DESC, id DESC
              LIMIT $3",
            &[&after_t, &after_id, &fetch],
        )
        .await
        .map_err(query_error("list merchants"))?;
    Ok(rows.iter().map(Merchant::from).collect())
}

impl Merchant {
    pub fn page_key(&self) -> TimeKey {
        TimeKey {
            t: self.created_at,
            id: self.id,
        }
    }
}
