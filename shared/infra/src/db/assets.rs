//! `assets`: the images and fonts of a merchant, by SHA-256, always scoped by merchant.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;

use super::{connection, query_error, DbPool};
use crate::error::DependencyError;
use docbundle_domain::asset::{is_sha256, AssetInfo, AssetKind};
use docbundle_domain::MerchantId;

fn asset(row: &Row) -> Result<AssetInfo, DependencyError> {
    let kind: String = row.get("kind");
    let kind = AssetKind::parse(&kind).ok_or_else(|| {
        DependencyError::failed("postgres", "decode asset", format!("unknown kind {kind}"))
    })?;
    let size: i32 = row.get("size_bytes");
    Ok(AssetInfo {
        name: row.get("name"),
        sha256: row.get("sha256"),
        kind,
        content_type: kind.content_type().to_owned(),
        size: u64::try_from(size).unwrap_or_default(),
        created_at: row.get("created_at"),
    })
}

const COLUMNS: &str = "name, sha256, kind, size_bytes, created_at";

/// Records an upload whose bytes are stored; `(asset, true)` when it is new, the existing
/// record and `false` when the merchant already has these bytes.
pub async fn insert(
    pool: &DbPool,
    merchant: MerchantId,
    name: &str,
    sha256: &str,
    kind: AssetKind,
    size: usize,
    created_by: &str,
) -> Result<(AssetInfo, bool), DependencyError> {
    let conn = connection(pool).await?;
    let size =
        i32::try_from(size).map_err(|e| DependencyError::failed("postgres", "insert asset", e))?;
    let inserted = conn
        .query_opt(
            &format!(
                "INSERT INTO assets (merchant_id, sha256, name, kind, size_bytes, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (merchant_id, sha256) DO NOTHING
                 RETURNING {COLUMNS}"
            ),
            &[
                &merchant,
                &sha256,
                &name,
                &kind.as_str(),
                &size,
                &created_by,
            ],
        )
        .await
        .map_err(query_error("insert asset"))?;
    if let Some(row) = inserted {
        return Ok((asset(&row)?, true));
    }
    let existing = find(pool, merchant, sha256)
        .await?
        .ok_or_else(|| DependencyError::failed("postgres", "insert asset", "the asset vanished"))?;
    Ok((existing, false))
}

pub async fn find(
    pool: &DbPool,
    merchant: MerchantId,
    sha256: &str,
) -> Result<Option<AssetInfo>, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_opt(
            &format!("SELECT {COLUMNS} FROM assets WHERE merchant_id = $1 AND sha256 = $2"),
            &[&merchant, &sha256],
        )
        .await
        .map_err(query_error("find asset"))?;
    row.as_ref().map(asset).transpose()
}

/// The merchant's assets among `hashes` (at most a configuration's worth).
pub async fn find_many(
    pool: &DbPool,
    merchant: MerchantId,
    hashes: &[String],
) -> Result<Vec<AssetInfo>, DependencyError> {
    if hashes.is_empty() {
        return Ok(Vec::new());
    }
    let conn = connection(pool).await?;
    let rows = conn
        .query(
            &format!("SELECT {COLUMNS} FROM assets WHERE merchant_id = $1 AND sha256 = ANY($2)"),
            &[&merchant, &hashes],
        )
        .await
        .map_err(query_error("find assets"))?;
    rows.iter().map(asset).collect()
}

/// Newest first, continuing after `after`; up to `fetch` rows.
pub async fn list(
    pool: &DbPool,
    merchant: MerchantId,
    after: Option<&AssetKey>,
    fetch: i64,
) -> Result<Vec<AssetInfo>, DependencyError> {
    let conn = connection(pool).await?;
    let after_t = after.map(|k| k.t);
    let after_sha = after.map(|k| k.sha256.clone());
    let rows = conn
        .query(
            &format!(
                "SELECT {COLUMNS} FROM assets
                  WHERE merchant_id = $1
                    AND ($2::timestamptz IS NULL OR (created_at, sha256) < ($2, $3))
                  ORDER BY created_at DESC, sha256 DESC
                  LIMIT $4"
            ),
            &[&merchant, &after_t, &after_sha, &fetch],
        )
        .await
        .map_err(query_error("list assets"))?;
    rows.iter().map(asset).collect()
}

/// The list's cursor key: creation time, ties broken by hash; a decoded key is checked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(try_from = "RawAssetKey")]
pub struct AssetKey {
    pub t: DateTime<Utc>,
    pub sha256: String,
}

#[derive(Deserialize)]
struct RawAssetKey {
    t: DateTime<Utc>,
    sha256: String,
}

impl TryFrom<RawAssetKey> for AssetKey {
    type Error = &'static str;

    fn try_from(raw: RawAssetKey) -> Result<Self, Self::Error> {
        use chrono::Datelike;
        if (1..=9999).contains(&raw.t.year()) && is_sha256(&raw.sha256) {
            Ok(AssetKey {
                t: raw.t,
                sha256: raw.sha256,
            })
        } else {
            Err("cursor out of range")
        }
    }
}

impl AssetKey {
    /// Where a list continues after `asset`.
    pub fn of(asset: &AssetInfo) -> AssetKey {
        AssetKey {
            t: asset.created_at,
            sha256: asset.sha256.clone(),
        }
    }
}
