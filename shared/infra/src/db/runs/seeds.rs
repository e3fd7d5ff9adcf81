//! Seeds, stored once per merchant under their hash: the canonical input a run is launched
//! with and replayed from.

use tokio_postgres::Transaction;

use crate::db::{connection, query_error, DbPool};
use crate::error::DependencyError;
use docbundle_domain::seed::CanonicalSeed;
use docbundle_domain::seed::SeedHash;
use docbundle_domain::MerchantId;

/// Stores a seed once per merchant (a second store of the same seed is a no-op, unless its
/// content was erased: then it is stored again).
pub async fn store_seed(
    tx: &Transaction<'_>,
    merchant: MerchantId,
    seed: &CanonicalSeed,
) -> Result<(), DependencyError> {
    let size = i32::try_from(seed.canonical.len())
        .map_err(|e| DependencyError::failed("postgres", "seed size", e))?;
    tx.execute(
        "INSERT INTO seeds (merchant_id, hash, canonical, size_bytes) VALUES ($1, $2, $3, $4)
         ON CONFLICT (merchant_id, hash) DO UPDATE
            SET canonical = EXCLUDED.canonical, erased_at = NULL
          WHERE seeds.canonical IS NULL",
        &[&merchant, &seed.hash, &seed.canonical, &size],
    )
    .await
    .map_err(query_error("store seed"))?;
    Ok(())
}

/// Stores many seeds in one statement (each once per merchant).
pub async fn store_seeds(
    tx: &Transaction<'_>,
    merchant: MerchantId,
    seeds: &[CanonicalSeed],
) -> Result<(), DependencyError> {
    if seeds.is_empty() {
        return Ok(());
    }
    let hashes: Vec<&str> = seeds.iter().map(|s| s.hash.as_str()).collect();
    let canonical: Vec<&str> = seeds.iter().map(|s| s.canonical.as_str()).collect();
    let sizes = seeds
        .iter()
        .map(|s| i32::try_from(s.canonical.len()))
        .collect::<Result<Vec<i32>, _>>()
        .map_err(|e| DependencyError::failed("postgres", "seed size", e))?;
    tx.execute(
        "INSERT INTO seeds (merchant_id, hash, canonical, size_bytes)
         SELECT DISTINCT ON (s.hash) $1::uuid, s.*
           FROM unnest($2::text[], $3::text[], $4::int4[]) AS s (hash, canonical, size_bytes)
         ON CONFLICT (merchant_id, hash) DO UPDATE
            SET canonical = EXCLUDED.canonical, erased_at = NULL
          WHERE seeds.canonical IS NULL",
        &[&merchant, &hashes, &canonical, &sizes],
    )
    .await
    .map_err(query_error("store seeds"))?;
    Ok(())
}

/// The seed stored under `hash`, unless there is none or its content was erased.
pub async fn find_seed(
    pool: &DbPool,
    merchant: MerchantId,
    hash: &SeedHash,
) -> Result<Option<CanonicalSeed>, DependencyError> {
    let conn = connection(pool).await?;
    // Prepared once per connection: the worker reads the seed of every run it processes.
    let find = conn
        .prepare_cached(
            "SELECT hash, canonical FROM seeds
                  WHERE merchant_id = $1 AND hash = $2 AND canonical IS NOT NULL",
        )
        .await
        .map_err(query_error("find seed"))?;
    let row = conn
        .query_opt(&find, &[&merchant, hash])
        .await
        .map_err(query_error("find seed"))?;
    Ok(row.map(|r| CanonicalSeed {
        hash: r.get("hash"),
        canonical: r.get("canonical"),
    }))
}
