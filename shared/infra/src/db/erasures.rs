//! Erasures: the requests, the runs they match, and what executing one records (the runs
//! expired by erasure, the seeds erased, each item's outcome and the receipt's parts).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::{GenericClient, Row, Transaction};
use uuid::Uuid;

use super::retention::HELD;
use super::runs::BundleRun;
use super::{connection, query_error, DbPool};
use crate::error::DependencyError;
use docbundle_domain::paging::TimeKey;
use docbundle_domain::MerchantId;

/// Which runs an erasure is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    Run(Uuid),
    Seed(String),
    /// Every run whose (not yet erased) seed holds `value` at `path`, or anything there when
    /// `value` is `None`.
    Match {
        pointer: String,
        path: Vec<String>,
        value: Option<Value>,
    },
}

/// A run an erasure matches, as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Matched {
    pub run_id: Uuid,
    pub seed_hash: String,
    #[schema(value_type = docbundle_domain::RunStatus)]
    pub status: docbundle_domain::RunStatus,
    /// A legal hold keeps it: it will not be erased.
    pub held: bool,
    #[serde(skip)]
    pub batch_id: Option<Uuid>,
    /// Its batch (if any) has ended.
    #[serde(skip)]
    pub batch_ended: bool,
}

/// The runs `selector` matches among the merchant's, oldest first.
pub async fn matching<C: GenericClient>(
    client: &C,
    merchant: MerchantId,
    selector: &Selector,
) -> Result<Vec<Matched>, DependencyError> {
    let columns = format!(
        "r.id, r.seed_hash, r.status, {HELD} AS held, r.batch_id,
         COALESCE((SELECT b.status IN ('completed', 'cancelled', 'failed')
                     FROM batches b WHERE b.id = r.batch_id), true) AS batch_ended"
    );
    let rows = match selector {
        Selector::Run(id) => {
            client
                .query(
                    &format!(
                        "SELECT {columns} FROM bundle_runs r
                          WHERE r.merchant_id = $1 AND r.id = $2"
                    ),
                    &[&merchant, id],
                )
                .await
        }
        Selector::Seed(hash) => {
            client
                .query(
                    &format!(
                        "SELECT {columns} FROM bundle_runs r
                          WHERE r.merchant_id = $1 AND r.seed_hash = $2
                          ORDER BY r.created_at, r.id"
                    ),
                    &[&merchant, hash],
                )
                .await
        }
        Selector::Match { path, value, .. } => {
            client
                .query(
                    &format!(
                        "WITH matched AS (
                             SELECT hash FROM seeds
                              WHERE merchant_id = $1 AND canonical IS NOT NULL
                                -- A seed whose JSON escapes a NUL (an odd run of
                                -- backslashes before u0000) is no jsonb: never matched.
                                AND canonical !~ '(^|[^\\\\])(\\\\\\\\)*\\\\u0000'
                                AND (canonical::jsonb #> $2::text[]) IS NOT NULL
                                AND ($3::jsonb IS NULL OR canonical::jsonb #> $2::text[] = $3::jsonb)
                         )
                         SELECT {columns} FROM bundle_runs r JOIN matched s ON s.hash = r.seed_hash
                          WHERE r.merchant_id = $1
                          ORDER BY r.created_at, r.id"
                    ),
                    &[&merchant, path, value],
                )
                .await
        }
    }
    .map_err(query_error("match runs to erase"))?;
    Ok(rows
        .iter()
        .map(|r| Matched {
            run_id: r.get(0),
            seed_hash: r.get(1),
            status: r.get(2),
            held: r.get(3),
            batch_id: r.get(4),
            batch_ended: r.get(5),
        })
        .collect())
}

/// How many of the merchant's erasures are pending.
pub async fn pending_count(pool: &DbPool, merchant: MerchantId) -> Result<i64, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_one(
            "SELECT count(*) FROM erasures WHERE merchant_id = $1 AND status = 'pending'",
            &[&merchant],
        )
        .await
        .map_err(query_error("count pending erasures"))?;
    Ok(row.get(0))
}

/// The runs among `runs` that a hold keeps now, and their status now.
pub async fn recheck<C: GenericClient>(
    client: &C,
    runs: &[Uuid],
) -> Result<Vec<(Uuid, docbundle_domain::RunStatus, bool)>, DependencyError> {
    let rows = client
        .query(
            &format!("SELECT r.id, r.status, {HELD} FROM bundle_runs r WHERE r.id = ANY($1)"),
            &[&runs],
        )
        .await
        .map_err(query_error("recheck matched runs"))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Whether the merchant has a seed row of this hash (erased or not).
pub async fn seed_exists(
    pool: &DbPool,
    merchant: MerchantId,
    hash: &str,
) -> Result<bool, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_opt(
            "SELECT 1 FROM seeds WHERE merchant_id = $1 AND hash = $2",
            &[&merchant, &hash],
        )
        .await
        .map_err(query_error("find seed"))?;
    Ok(row.is_some())
}

/// An erasure as its API answers it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Erasure {
    pub id: Uuid,
    pub merchant_id: MerchantId,
    /// `run`, `seed` or `match`.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// `pending` until executed (within a minute, unless a matched run is still running),
    /// then `completed`; `cancelled` (`waitingFor` says why) when it matched more runs than
    /// confirmed, or more than one erasure may take.
    #[schema(example = "completed")]
    pub status: String,
    pub requested_by: String,
    /// The number of runs it matched when requested: executed only if it matches no more
    /// (or, below that, at most 10, which need no confirmation).
    pub confirmed_runs: Option<i32>,
    pub runs_erased: Option<i32>,
    pub runs_kept: Option<i32>,
    pub seeds_erased: Option<i32>,
    pub seeds_kept: Option<i32>,
    /// While pending: what it waits for.
    pub waiting_for: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// The value matched, kept only until execution (never shown).
    #[serde(skip)]
    pub match_value: Option<Value>,
}

impl Erasure {
    pub fn page_key(&self) -> TimeKey {
        TimeKey {
            t: self.created_at,
            id: self.id,
        }
    }

    /// What it selects (a match's value until it is executed).
    pub fn selector(&self) -> Option<Selector> {
        match self.kind.as_str() {
            "run" => self.run_id.map(Selector::Run),
            "seed" => self.seed_hash.clone().map(Selector::Seed),
            "match" => {
                let pointer = self.pointer.clone()?;
                let path = docbundle_domain::erasure::parse_pointer(&pointer).ok()?;
                Some(Selector::Match {
                    pointer,
                    path,
                    value: self.match_value.clone(),
                })
            }
            _ => None,
        }
    }
}

const COLUMNS: &str = "id, merchant_id, kind, run_id, seed_hash, pointer, match_value, status,
    requested_by, confirmed_runs, runs_erased, runs_kept, seeds_erased, seeds_kept, waiting_for,
    created_at, completed_at";

fn erasure(row: &Row) -> Erasure {
    Erasure {
        id: row.get("id"),
        merchant_id: row.get("merchant_id"),
        kind: row.get("kind"),
        run_id: row.get("run_id"),
        seed_hash: row.get("seed_hash"),
        pointer: row.get("pointer"),
        match_value: row.get("match_value"),
        status: row.get("status"),
        requested_by: row.get("requested_by"),
        confirmed_runs: row.get("confirmed_runs"),
        runs_erased: row.get("runs_erased"),
        runs_kept: row.get("runs_kept"),
        seeds_erased: row.get("seeds_erased"),
        seeds_kept: row.get("seeds_kept"),
        waiting_for: row.get("waiting_for"),
        created_at: row.get("created_at"),
        completed_at: row.get("completed_at"),
    }
}

/// Records a request to erase what `selector` matches.
pub async fn insert(
    pool: &DbPool,
    merchant: MerchantId,
    selector: &Selector,
    requested_by: &str,
    confirmed_runs: i32,
) -> Result<Erasure, DependencyError> {
    let (kind, run, seed, pointer, value) = match selector {
        Selector::Run(id) => ("run", Some(*id), None, None, None),
        Selector::Seed(hash) => ("seed", None, Some(hash.as_str()), None, None),
        Selector::Match { pointer, value, .. } => {
            ("match", None, None, Some(pointer.as_str()), value.clone())
        }
    };
    let conn = connection(pool).await?;
    let row = conn
        .query_one(
            &format!(
                "INSERT INTO erasures (id, merchant_id, kind, run_id, seed_hash, pointer,
                                       match_value, requested_by, confirmed_runs)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
              RETURNING {COLUMNS}"
            ),
            &[
                &Uuid::new_v4(),
                &merchant,
                &kind,
                &run,
                &seed,
                &pointer,
                &value,
                &requested_by,
                &confirmed_runs,
            ],
        )
        .await
        .map_err(query_error("record erasure"))?;
    Ok(erasure(&row))
}

pub async fn find(
    pool: &DbPool,
    merchant: MerchantId,
    id: Uuid,
) -> Result<Option<Erasure>, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_opt(
            &format!("SELECT {COLUMNS} FROM erasures WHERE merchant_id = $1 AND id = $2"),
            &[&merchant, &id],
        )
        .await
        .map_err(query_error("find erasure"))?;
    Ok(row.as_ref().map(erasure))
}

/// Newest first, continuing after `after`.
pub async fn list(
    pool: &DbPool,
    merchant: MerchantId,
    after: Option<&TimeKey>,
    fetch: i64,
) -> Result<Vec<Erasure>, DependencyError> {
    let conn = connection(pool).await?;
    let (after_t, after_id) = TimeKey::bounds(after);
    let rows = conn
        .query(
            &format!(
                "SELECT {COLUMNS} FROM erasures
                  WHERE merchant_id = $1
                    AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
                  ORDER BY created_at DESC, id DESC
                  LIMIT $4"
            ),
            &[&merchant, &after_t, &after_id, &fetch],
        )
        .await
        .map_err(query_error("list erasures"))?;
    Ok(rows.iter().map(erasure).collect())
}

/// Pending erasures, one per merchant (its least recently tried), least recently tried first:
/// one merchant's queue holds no other merchant's back.
pub async fn pending(pool: &DbPool, limit: i64) -> Result<Vec<Erasure>, DependencyError> {
    let conn = connection(pool).await?;
    let rows = conn
        .query(
            &format!(
                "SELECT {COLUMNS} FROM (
                     SELECT DISTINCT ON (merchant_id) * FROM erasures
                      WHERE status = 'pending'
                      ORDER BY merchant_id, attempted_at NULLS FIRST, created_at
                 ) oldest_per_merchant
                 ORDER BY attempted_at NULLS FIRST, created_at LIMIT $1"
            ),
            &[&limit],
        )
        .await
        .map_err(query_error("find pending erasures"))?;
    Ok(rows.iter().map(erasure).collect())
}

/// Whether the erasure is still pending, its row locked for the transaction (a second
/// scheduler that waited for the lock finds it done).
pub async fn still_pending(tx: &Transaction<'_>, id: Uuid) -> Result<bool, DependencyError> {
    let row = tx
        .query_opt(
            "SELECT 1 FROM erasures WHERE id = $1 AND status = 'pending' FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(query_error("lock erasure"))?;
    Ok(row.is_some())
}

/// Says on a pending erasure what it waits for.
pub async fn set_waiting(pool: &DbPool, id: Uuid, why: &str) -> Result<(), DependencyError> {
    let conn = connection(pool).await?;
    conn.execute(
        "UPDATE erasures SET waiting_for = $2, attempted_at = now()
          WHERE id = $1 AND status = 'pending'",
        &[&id, &why],
    )
    .await
    .map_err(query_error("record what an erasure waits for"))?;
    Ok(())
}

/// Cancels a pending erasure, saying why, and forgets the value it would have matched.
pub async fn cancel(tx: &Transaction<'_>, id: Uuid, why: &str) -> Result<(), DependencyError> {
    tx.execute(
        "UPDATE erasures
            SET status = 'cancelled', waiting_for = $2, attempted_at = now(), match_value = NULL
          WHERE id = $1 AND status = 'pending'",
        &[&id, &why],
    )
    .await
    .map_err(query_error("cancel erasure"))?;
    Ok(())
}

/// Each run's artefacts `(name, sha256)` and manifest SHA-256, for the receipt.
pub async fn proofs_of(
    tx: &Transaction<'_>,
    runs: &[Uuid],
) -> Result<Vec<(Uuid, Option<String>, Vec<(String, String)>)>, DependencyError> {
    let rows = tx
        .query(
            "SELECT r.id, m.sha256,
                    COALESCE((SELECT array_agg(a.name ORDER BY a.name) FROM artefacts a
                               WHERE a.run_id = r.id), '{}'),
                    COALESCE((SELECT array_agg(a.sha256 ORDER BY a.name) FROM artefacts a
                               WHERE a.run_id = r.id), '{}')
               FROM unnest($1::uuid[]) AS r (id)
               LEFT JOIN manifests m ON m.run_id = r.id",
            &[&runs],
        )
        .await
        .map_err(query_error("read erased runs' hashes"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let names: Vec<String> = r.get(2);
            let digests: Vec<String> = r.get(3);
            (r.get(0), r.get(1), names.into_iter().zip(digests).collect())
        })
        .collect())
}

/// Erases these runs: a completed one becomes `expired` by erasure (its artefacts are
/// deleted after the commit), a failed one forgets its error's message (which may quote the
/// seed); each releases its seed. Returns the runs that expired now.
pub async fn erase_runs(
    tx: &Transaction<'_>,
    runs: &[Uuid],
) -> Result<Vec<BundleRun>, DependencyError> {
    let rows = tx
        .query(
            &format!(
                "UPDATE bundle_runs
                    SET status = 'expired', expired_at = now(), expired_by = 'erasure',
                        updated_at = now()
                  WHERE id = ANY($1) AND status = 'completed'
              RETURNING {}",
                super::runs::RUN_COLUMNS
            ),
            &[&runs],
        )
        .await
        .map_err(query_error("expire erased runs"))?;
    tx.execute(
        "UPDATE bundle_runs
            SET error = CASE WHEN error IS NULL THEN NULL
                             ELSE jsonb_build_object('code', error->'code',
                                                     'message', 'erased on request') END,
                last_error = NULL, updated_at = now()
          WHERE id = ANY($1) AND (error IS NOT NULL OR last_error IS NOT NULL)",
        &[&runs],
    )
    .await
    .map_err(query_error("redact erased runs' errors"))?;
    // The copies of those errors kept with the completion webhooks sent.
    super::retention::redact_failure_deliveries(tx, runs, "erased on request").await?;
    tx.execute(
        "UPDATE bundle_runs SET seed_released_at = COALESCE(seed_released_at, now())
          WHERE id = ANY($1)",
        &[&runs],
    )
    .await
    .map_err(query_error("release erased runs' seeds"))?;
    Ok(rows.iter().map(super::runs::run).collect())
}

/// Of these seeds, those not erased, each with (up to 20 of) the runs that still keep it and
/// whether a hold keeps any of them.
pub async fn kept_seeds(
    tx: &Transaction<'_>,
    merchant: MerchantId,
    hashes: &[String],
) -> Result<Vec<(String, Vec<Uuid>, bool)>, DependencyError> {
    let rows = tx
        .query(
            &format!(
                "SELECT s.hash,
                        COALESCE((SELECT array_agg(r.id ORDER BY r.created_at) FROM (
                                    SELECT r.id, r.created_at FROM bundle_runs r
                                     WHERE r.merchant_id = s.merchant_id AND r.seed_hash = s.hash
                                       AND r.seed_released_at IS NULL
                                     ORDER BY r.created_at LIMIT 20) r), '{{}}'),
                        EXISTS (SELECT 1 FROM bundle_runs r
                                 WHERE r.merchant_id = s.merchant_id AND r.seed_hash = s.hash
                                   AND r.seed_released_at IS NULL AND {HELD})
                   FROM seeds s
                  WHERE s.merchant_id = $1 AND s.hash = ANY($2) AND s.canonical IS NOT NULL
                  ORDER BY s.hash"
            ),
            &[&merchant, &hashes],
        )
        .await
        .map_err(query_error("find kept seeds"))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// One part of a receipt, as stored and signed.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptRecord {
    /// Its entry's id in the transparency log.
    pub id: Uuid,
    pub part: i32,
    pub parts: i32,
    pub key: String,
    pub sha256: String,
    /// Ed25519 over the part's bytes by the manifest key (`keyId` in the JWKS).
    pub signature: String,
    pub key_id: String,
}

/// Records a receipt part (its log entry is queued by the caller, in the same transaction).
pub async fn record_receipt(
    tx: &Transaction<'_>,
    merchant: MerchantId,
    erasure: Uuid,
    receipt: &ReceiptRecord,
) -> Result<(), DependencyError> {
    tx.execute(
        "INSERT INTO erasure_receipts
                (id, erasure_id, merchant_id, part, parts, object_key, sha256, signature, key_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &receipt.id,
            &erasure,
            &merchant,
            &receipt.part,
            &receipt.parts,
            &receipt.key,
            &receipt.sha256,
            &receipt.signature,
            &receipt.key_id,
        ],
    )
    .await
    .map_err(query_error("record erasure receipt"))?;
    Ok(())
}

pub async fn receipts(pool: &DbPool, erasure: Uuid) -> Result<Vec<ReceiptRecord>, DependencyError> {
    let conn = connection(pool).await?;
    let rows = conn
        .query(
            "SELECT id, part, parts, object_key, sha256, signature, key_id FROM erasure_receipts
              WHERE erasure_id = $1 ORDER BY part",
            &[&erasure],
        )
        .await
        .map_err(query_error("read erasure receipts"))?;
    Ok(rows
        .iter()
        .map(|r| ReceiptRecord {
            id: r.get(0),
            part: r.get(1),
            parts: r.get(2),
            key: r.get(3),
            sha256: r.get(4),
            signature: r.get(5),
            key_id: r.get(6),
        })
        .collect())
}

/// One matched run's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemRecord {
    pub run_id: Uuid,
    pub seed_hash: String,
    /// `erased`, `already_expired` (retention had deleted its artefacts) or `kept_held`.
    #[schema(example = "erased")]
    pub outcome: String,
}

/// Marks the erasure completed with its items and counts, and forgets the value it matched.
pub async fn complete(
    tx: &Transaction<'_>,
    id: Uuid,
    items: &[ItemRecord],
    seeds_erased: i32,
    seeds_kept: i32,
) -> Result<(), DependencyError> {
    let runs: Vec<Uuid> = items.iter().map(|i| i.run_id).collect();
    let seeds: Vec<&str> = items.iter().map(|i| i.seed_hash.as_str()).collect();
    let outcomes: Vec<&str> = items.iter().map(|i| i.outcome.as_str()).collect();
    let erased = outcomes.iter().filter(|o| **o != "kept_held").count() as i32;
    tx.execute(
        "INSERT INTO erasure_items (erasure_id, run_id, seed_hash, outcome)
         SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::text[])",
        &[&id, &runs, &seeds, &outcomes],
    )
    .await
    .map_err(query_error("record erasure items"))?;
    tx.execute(
        "UPDATE erasures
            SET status = 'completed', completed_at = now(), match_value = NULL, waiting_for = NULL,
                runs_erased = $2, runs_kept = $3, seeds_erased = $4, seeds_kept = $5
          WHERE id = $1",
        &[
            &id,
            &erased,
            &(items.len() as i32 - erased),
            &seeds_erased,
            &seeds_kept,
        ],
    )
    .await
    .map_err(query_error("complete erasure"))?;
    Ok(())
}

/// The outcome of each run the erasure matched (up to `limit`).
pub async fn items(
    pool: &DbPool,
    erasure: Uuid,
    limit: i64,
) -> Result<Vec<ItemRecord>, DependencyError> {
    let conn = connection(pool).await?;
    let rows = conn
        .query(
            "SELECT run_id, seed_hash, outcome FROM erasure_items WHERE erasure_id = $1
              ORDER BY outcome DESC, run_id LIMIT $2",
            &[&erasure, &limit],
        )
        .await
        .map_err(query_error("read erasure items"))?;
    Ok(rows
        .iter()
        .map(|r| ItemRecord {
            run_id: r.get(0),
            seed_hash: r.get(1),
            outcome: r.get(2),
        })
        .collect())
}
