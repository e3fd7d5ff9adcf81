//! What a completed run leaves: its artefacts and its signed manifest ([`ManifestRecord`]),
//! recorded in the transaction that completes the run and read back by run id.

use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Transaction;
use uuid::Uuid;

use super::BundleRun;
use crate::db::{connection, query_error, DbPool};
use crate::error::DependencyError;
use docbundle_domain::manifest::Artefact;

/// The signed manifest of a completed run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestRecord {
    pub key: String,
    pub sha256: String,
    pub bundle_digest: String,
    pub signature: String,
    pub key_id: String,
    pub body: Value,
    /// Where the TSA's time-stamp of the manifest (`manifest.tsr`) is stored, when one was made.
    pub timestamp_key: Option<String>,
}

/// Records the run's artefacts.
pub async fn insert_artefacts(
    tx: &Transaction<'_>,
    run: &BundleRun,
    artefacts: &[Artefact],
) -> Result<(), DependencyError> {
    for a in artefacts {
        let size = i64::try_from(a.size).map_err(|e| {
            DependencyError::failed("postgres", format!("artefact {} size", a.name), e)
        })?;
        tx.execute(
            "INSERT INTO artefacts (run_id, merchant_id, name, format, content_type, object_key, size_bytes, sha256)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[&run.id, &run.merchant_id, &a.name, &a.format, &a.content_type, &a.key, &size, &a.sha256],
        )
        .await
        .map_err(query_error("insert artefact"))?;
    }
    Ok(())
}

/// Records the run's signed manifest.
pub async fn insert_manifest(
    tx: &Transaction<'_>,
    run: &BundleRun,
    manifest: &ManifestRecord,
) -> Result<(), DependencyError> {
    tx.execute(
        "INSERT INTO manifests (run_id, merchant_id, object_key, sha256, bundle_digest, signature, key_id, body, timestamp_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &run.id,
            &run.merchant_id,
            &manifest.key,
            &manifest.sha256,
            &manifest.bundle_digest,
            &manifest.signature,
            &manifest.key_id,
            &manifest.body,
            &manifest.timestamp_key,
        ],
    )
    .await
    .map_err(query_error("insert manifest"))?;
    Ok(())
}

pub async fn artefacts(pool: &DbPool, run_id: Uuid) -> Result<Vec<Artefact>, DependencyError> {
    let conn = connection(pool).await?;
    let rows = conn
        .query(
            "SELECT name, format, content_type, object_key, size_bytes, sha256
               FROM artefacts WHERE run_id = $1 ORDER BY name",
            &[&run_id],
        )
        .await
        .map_err(query_error("list artefacts"))?;
    rows.iter()
        .map(|r| {
            let size: i64 = r.get("size_bytes");
            Ok(Artefact {
                name: r.get("name"),
                format: r.get("format"),
                content_type: r.get("content_type"),
                key: r.get("object_key"),
                size: u64::try_from(size)
                    .map_err(|e| DependencyError::failed("postgres", "artefact size", e))?,
                sha256: r.get("sha256"),
                // Kept in the manifest (the run's view reads it there).
                render_sha256: None,
                signature: None,
                einvoice: None,
            })
        })
        .collect()
}

pub async fn manifest(
    pool: &DbPool,
    run_id: Uuid,
) -> Result<Option<ManifestRecord>, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_opt(
            "SELECT object_key, sha256, bundle_digest, signature, key_id, body, timestamp_key
               FROM manifests WHERE run_id = $1",
            &[&run_id],
        )
        .await
        .map_err(query_error("find manifest"))?;
    Ok(row.map(|r| ManifestRecord {
        key: r.get("object_key"),
        sha256: r.get("sha256"),
        bundle_digest: r.get("bundle_digest"),
        signature: r.get("signature"),
        key_id: r.get("key_id"),
        body: r.get("body"),
        timestamp_key: r.get("timestamp_key"),
    }))
}
