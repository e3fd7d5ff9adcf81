//! `configurations` and their immutable `configuration_versions`, always scoped by merchant.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{connection, query_error, DbPool};
use crate::error::DependencyError;
use docbundle_domain::configuration::{ConfigurationSpec, DocumentSpec};
use docbundle_domain::paging::TimeKey;
use docbundle_domain::retention::{Period, Retention};
use docbundle_domain::{ConfigurationStatus, MerchantId};

/// One immutable version of a configuration.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationVersion {
    pub configuration_id: Uuid,
    pub version: i32,
    pub name: String,
    pub description: Option<String>,
    pub documents: Vec<DocumentSpec>,
    pub data_schema: Option<Value>,
    pub defaults: Option<Value>,
    pub triggers: Vec<String>,
    pub archive: bool,
    /// The assets its templates use, by name: the SHA-256 of each, pinned with the version.
    pub assets: BTreeMap<String, String>,
    /// How long its runs' artefacts and seeds are kept.
    pub retention: Retention,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// A configuration with its current version's content.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Configuration {
    pub id: Uuid,
    pub merchant_id: MerchantId,
    pub status: ConfigurationStatus,
    pub version: i32,
    pub name: String,
    pub description: Option<String>,
    pub documents: Vec<DocumentSpec>,
    pub data_schema: Option<Value>,
    pub defaults: Option<Value>,
    pub triggers: Vec<String>,
    pub archive: bool,
    /// The assets its templates use, by name: the SHA-256 of each.
    pub assets: BTreeMap<String, String>,
    /// How long its runs' artefacts and seeds are kept (the current version's).
    pub retention: Retention,
    pub created_by: String,
    pub updated_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
}

impl Configuration {
    pub fn etag(&self) -> String {
        format!("\"v{}\"", self.version)
    }

    pub fn page_key(&self) -> TimeKey {
        TimeKey {
            t: self.created_at,
            id: self.id,
        }
    }
}

const SELECT_CONFIGURATION: &str = "
    SELECT c.id, c.merchant_id, c.status, c.current_version, c.created_by, c.created_at,
           c.updated_at, c.archived_at,
           v.name, v.description, v.documents, v.data_schema, v.defaults, v.triggers, v.archive,
           v.assets, v.artefacts_retention, v.seeds_retention, v.created_by AS updated_by
      FROM configurations c
      JOIN configuration_versions v
        ON v.configuration_id = c.id AND v.version = c.current_version";

const SELECT_VERSION: &str = "
    SELECT configuration_id, version, name, description, documents, data_schema, defaults,
           triggers, archive, assets, artefacts_retention, seeds_retention, created_by, created_at
      FROM configuration_versions";

/// A version's retention: a NULL part is kept for ever.
fn retention(row: &Row) -> Retention {
    Retention {
        artefacts: Period::from_stored(row.get("artefacts_retention")),
        seeds: Period::from_stored(row.get("seeds_retention")),
    }
}

/// A version's assets map.
fn assets(row: &Row) -> Result<BTreeMap<String, String>, DependencyError> {
    serde_json::from_value(row.get("assets"))
        .map_err(|e| DependencyError::failed("postgres", "decode stored assets", e))
}

/// A version's documents; stored ones that no longer decode are an error, never an empty list.
fn documents(row: &Row) -> Result<Vec<DocumentSpec>, DependencyError> {
    serde_json::from_value(row.get("documents"))
        .map_err(|e| DependencyError::failed("postgres", "decode stored documents", e))
}

fn configuration(row: &Row) -> Result<Configuration, DependencyError> {
    Ok(Configuration {
        id: row.get("id"),
        merchant_id: row.get("merchant_id"),
        status: row.get("status"),
        version: row.get("current_version"),
        name: row.get("name"),
        description: row.get("description"),
        documents: documents(row)?,
        data_schema: row.get("data_schema"),
        defaults: row.get("defaults"),
        triggers: row.get("triggers"),
        archive: row.get("archive"),
        assets: assets(row)?,
        retention: retention(row),
        created_by: row.get("created_by"),
        updated_by: row.get("updated_by"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
        archived_at: row.get("archived_at"),
    })
}

fn version(row: &Row) -> Result<ConfigurationVersion, DependencyError> {
    Ok(ConfigurationVersion {
        configuration_id: row.get("configuration_id"),
        version: row.get("version"),
        name: row.get("name"),
        description: row.get("description"),
        documents: documents(row)?,
        data_schema: row.get("data_schema"),
        defaults: row.get("defaults"),
        triggers: row.get("triggers"),
        archive: row.get("archive"),
        assets: assets(row)?,
        retention: retention(row),
        created_by: row.get("created_by"),
        created_at: row.get("created_at"),
    })
}

async fn insert_version(
    tx: &tokio_postgres::Transaction<'_>,
    merchant: MerchantId,
    id: Uuid,
    version: i32,
    spec: &ConfigurationSpec,
    created_by: &str,
) -> Result<(), DependencyError> {
    let documents = serde_json::to_value(&spec.documents)
        .map_err(|e| DependencyError::failed("postgres", "encode documents", e))?;
    let defaults = spec.defaults.clone().map(Value::Object);
    let assets = serde_json::to_value(&spec.assets)
        .map_err(|e| DependencyError::failed("postgres", "encode assets", e))?;
    tx.execute(
        "INSERT INTO configuration_versions
             (configuration_id, version, merchant_id, name, description, documents, data_schema,
              defaults, triggers, archive, created_by, assets, artefacts_retention,
              seeds_retention)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        &[
            &id,
            &version,
            &merchant,
            &spec.name,
            &spec.description,
            &documents,
            &spec.data_schema,
            &defaults,
            &spec.triggers,
            &spec.archive,
            &created_by,
            &assets,
            &spec.retention.artefacts.as_interval(),
            &spec.retention.seeds.as_interval(),
        ],
    )
    .await
    .map_err(query_error("insert configuration version"))?;
    Ok(())
}

pub async fn create(
    pool: &DbPool,
    merchant: MerchantId,
    spec: &ConfigurationSpec,
    created_by: &str,
) -> Result<Configuration, DependencyError> {
    let id = Uuid::new_v4();
    let mut conn = connection(pool).await?;
    let tx = conn.transaction().await.map_err(query_error("begin"))?;
    tx.execute(
        "INSERT INTO configurations (id, merchant_id, name, description, current_version, created_by)
         VALUES ($1, $2, $3, $4, 1, $5)",
        &[&id, &merchant, &spec.name, &spec.description, &created_by],
    )
    .await
    .map_err(query_error("insert configuration"))?;
    insert_version(&tx, merchant, id, 1, spec, created_by).await?;
    let row = tx
        .query_one(&format!("{SELECT_CONFIGURATION} WHERE c.id = $1"), &[&id])
        .await
        .map_err(query_error("read configuration"))?;
    tx.commit().await.map_err(query_error("commit"))?;
    configuration(&row)
}

pub async fn find(
    pool: &DbPool,
    merchant: MerchantId,
    id: Uuid,
) -> Result<Option<Configuration>, DependencyError> {
    let conn = connection(pool).await?;
    find_on(&conn, merchant, id).await
}

/// [`find`] on a connection (or transaction) the caller already holds: a request path never
/// holds one connection while asking the pool for another.
async fn find_on(
    client: &impl deadpool_postgres::GenericClient,
    merchant: MerchantId,
    id: Uuid,
) -> Result<Option<Configuration>, DependencyError> {
    let row = client
        .query_opt(
            &format!("{SELECT_CONFIGURATION} WHERE c.id = $1 AND c.merchant_id = $2"),
            &[&id, &merchant],
        )
        .await
        .map_err(query_error("find configuration"))?;
    row.as_ref().map(configuration).transpose()
}

/// List filters.
#[derive(Debug, Default, Clone)]
pub struct ConfigurationFilter {
    pub name_prefix: Option<String>,
    pub status: Option<ConfigurationStatus>,
}

/// Newest first; continues after `after` when given. Returns up to `fetch` rows.
pub async fn list(
    pool: &DbPool,
    merchant: MerchantId,
    filter: &ConfigurationFilter,
    after: Option<&TimeKey>,
    fetch: i64,
) -> Result<Vec<Configuration>, DependencyError> {
    let conn = connection(pool).await?;
    let prefix = filter.name_prefix.as_deref().map(like_prefix);
    let (after_t, after_id) = TimeKey::bounds(after);
    let rows = conn
        .query(
            &format!(
                "{SELECT_CONFIGURATION}
                 WHERE c.merchant_id = $1
                   AND ($2::text IS NULL OR c.name LIKE $2 ESCAPE '\\')
                   AND ($3::text IS NULL OR c.status = $3)
                   AND ($4::timestamptz IS NULL OR (c.created_at, c.id) < ($4, $5))
                 ORDER BY c.created_at DESC, c.id DESC
                 LIMIT $6"
            ),
            &[
                &merchant,
                &prefix,
                &filter.status,
                &after_t,
                &after_id,
                &fetch,
            ],
        )
        .await
        .map_err(query_error("list configurations"))?;
    rows.iter().map(configuration).collect()
}

/// `LIKE` pattern matching names that start with `prefix`, with wildcards escaped.
fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// What an update attempt found.
#[derive(Debug)]
pub enum UpdateOutcome {
    Updated(Configuration),
    NotFound,
    Archived,
    /// The configuration is at another version than the caller's `If-Match`.
    Stale {
        current: Configuration,
    },
}

/// Creates version `expected + 1`, if the configuration is still at `expected`. The
/// conditional update serialises concurrent writers: exactly one of them wins.
pub async fn update(
    pool: &DbPool,
    merchant: MerchantId,
    id: Uuid,
    expected: i32,
    spec: &ConfigurationSpec,
    updated_by: &str,
) -> Result<UpdateOutcome, DependencyError> {
    let mut conn = connection(pool).await?;
    let tx = conn.transaction().await.map_err(query_error("begin"))?;
    let bumped = tx
        .query_opt(
            "UPDATE configurations
                SET current_version = current_version + 1, name = $4, description = $5,
                    updated_at = now()
              WHERE id = $1 AND merchant_id = $2 AND current_version = $3 AND status = 'active'
          RETURNING current_version",
            &[&id, &merchant, &expected, &spec.name, &spec.description],
        )
        .await
        .map_err(query_error("update configuration"))?;
    let Some(row) = bumped else {
        // Read why on this same connection (the transaction has changed nothing).
        return Ok(match find_on(&tx, merchant, id).await? {
            None => UpdateOutcome::NotFound,
            Some(c) if c.status == ConfigurationStatus::Archived => UpdateOutcome::Archived,
            Some(current) => UpdateOutcome::Stale { current },
        });
    };
    let version: i32 = row.get(0);
    insert_version(&tx, merchant, id, version, spec, updated_by).await?;
    let row = tx
        .query_one(&format!("{SELECT_CONFIGURATION} WHERE c.id = $1"), &[&id])
        .await
        .map_err(query_error("read configuration"))?;
    tx.commit().await.map_err(query_error("commit"))?;
    Ok(UpdateOutcome::Updated(configuration(&row)?))
}

/// Archives the configuration (idempotent); `None` when the merchant has no such configuration.
pub async fn archive(
    pool: &DbPool,
    merchant: MerchantId,
    id: Uuid,
) -> Result<Option<Configuration>, DependencyError> {
    let conn = connection(pool).await?;
    conn.execute(
        "UPDATE configurations SET status = 'archived', archived_at = now(), updated_at = now()
          WHERE id = $1 AND merchant_id = $2 AND status = 'active'",
        &[&id, &merchant],
    )
    .await
    .map_err(query_error("archive configuration"))?;
    find_on(&conn, merchant, id).await
}

/// Versions of a configuration, newest first, continuing below `before` when given.
pub async fn versions(
    pool: &DbPool,
    merchant: MerchantId,
    id: Uuid,
    before: Option<i32>,
    fetch: i64,
) -> Result<Vec<ConfigurationVersion>, DependencyError> {
    let conn = connection(pool).await?;
    let rows = conn
        .query(
            &format!(
                "{SELECT_VERSION}
                 WHERE configuration_id = $1 AND merchant_id = $2
                   AND ($3::int IS NULL OR version < $3)
                 ORDER BY version DESC
                 LIMIT $4"
            ),
            &[&id, &merchant, &before, &fetch],
        )
        .await
        .map_err(query_error("list configuration versions"))?;
    rows.iter().map(version).collect()
}

pub async fn find_version(
    pool: &DbPool,
    merchant: MerchantId,
    id: Uuid,
    number: i32,
) -> Result<Option<ConfigurationVersion>, DependencyError> {
    let conn = connection(pool).await?;
    // Prepared once per connection: the worker reads the version of every run it processes.
    let find = conn
        .prepare_cached(&format!(
            "{SELECT_VERSION} WHERE configuration_id = $1 AND merchant_id = $2 AND version = $3"
        ))
        .await
        .map_err(query_error("find configuration version"))?;
    let row = conn
        .query_opt(&find, &[&id, &merchant, &number])
        .await
        .map_err(query_error("find configuration version"))?;
    row.as_ref().map(version).transpose()
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_prefixes_escape_wildcards() {
        assert_eq!(super::like_prefix("50%_off\\"), "50\\%\\_off\\\\%");
    }
}
