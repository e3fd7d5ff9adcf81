//! What a completed run leaves: its artefacts and its signed manifest ([`ManifestRecord`]),
//! recorded in the transaction that completes the run and read back by run id.

use serde::Serialize;
use serde_json::Value;
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

/// Completes the run if it is still `processing`, in one statement (one round trip, on a
/// statement prepared once per connection): the run marked `completed`, its artefacts and its
/// signed manifest recorded, and its manifest's `leaf` queued as its pending entry in the
/// merchant's transparency log (`transparency::sequence` integrates it). `false`, with nothing
/// written, when the run had ended (a concurrent duplicate finished first). On a connection
/// the statement is its own transaction; in the completing one, with what else it writes.
/// Either way the deferred checks (no `completed` without a manifest) hold at its commit.
pub async fn record_completion(
    tx: &impl deadpool_postgres::GenericClient,
    run: &BundleRun,
    artefacts: &[Artefact],
    manifest: &ManifestRecord,
    leaf: &[u8; 32],
) -> Result<bool, DependencyError> {
    let (mut names, mut formats, mut types, mut keys, mut sizes, mut digests) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for a in artefacts {
        let size = i64::try_from(a.size).map_err(|e| {
            DependencyError::failed("postgres", format!("artefact {} size", a.name), e)
        })?;
        names.push(a.name.as_str());
        formats.push(a.format.as_str());
        types.push(a.content_type.as_str());
        keys.push(a.key.as_str());
        sizes.push(size);
        digests.push(a.sha256.as_str());
    }
    let statement = tx
        .prepare_cached(
            "WITH done AS (
                 UPDATE bundle_runs
                    SET status = 'completed', completed_at = now(), updated_at = now(),
                        next_attempt_at = NULL
                  WHERE id = $1 AND status = 'processing'
              RETURNING id
             ), outputs AS (
                 INSERT INTO artefacts
                        (run_id, merchant_id, name, format, content_type, object_key, size_bytes, sha256)
                 SELECT $1, $2, a.*
                   FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[]) AS a
                  WHERE EXISTS (SELECT 1 FROM done)
             ), signed AS (
                 INSERT INTO manifests
                        (run_id, merchant_id, object_key, sha256, bundle_digest, signature, key_id, body, timestamp_key)
                 SELECT $1, $2, $9, $10, $11, $12, $13, $14, $15
                  WHERE EXISTS (SELECT 1 FROM done)
             ), logged AS (
                 INSERT INTO transparency_pending (run_id, merchant_id, leaf)
                 SELECT $1, $2, $16 WHERE EXISTS (SELECT 1 FROM done)
             )
             SELECT count(*) FROM done",
        )
        .await
        .map_err(query_error("complete run"))?;
    let completed: i64 = tx
        .query_one(
            &statement,
            &[
                &run.id,
                &run.merchant_id,
                &names,
                &formats,
                &types,
                &keys,
                &sizes,
                &digests,
                &manifest.key,
                &manifest.sha256,
                &manifest.bundle_digest,
                &manifest.signature,
                &manifest.key_id,
                &manifest.body,
                &manifest.timestamp_key,
                &leaf.as_slice(),
            ],
        )
        .await
        .map_err(query_error("complete run"))?
        .get(0);
    Ok(completed == 1)
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
