//! The transparency logs' tables: pending entries (queued inside the completing
//! transaction), their sequencing into the log, stored subtree hashes, entries and signed
//! checkpoints, always scoped by merchant.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::{connection, query_error, DbPool};
use crate::error::DependencyError;
use docbundle_domain::merkle::{self, Hash, Node, Range};
use docbundle_domain::MerchantId;

fn to_hash(bytes: &[u8]) -> Result<Hash, DependencyError> {
    bytes
        .try_into()
        .map_err(|_| DependencyError::failed("postgres", "read log hash", "not 32 bytes"))
}

fn to_i64(n: u64) -> Result<i64, DependencyError> {
    i64::try_from(n).map_err(|e| DependencyError::failed("postgres", "log index", e))
}

/// Records `leaf` (the hash of the run's manifest bytes) as the run's pending log entry, in
/// the completing transaction: one insert, no lock on the merchant's log. The sequencer
/// ([`sequence`]) gives it its index.
pub async fn enqueue(
    tx: &deadpool_postgres::Transaction<'_>,
    merchant: MerchantId,
    run_id: Uuid,
    leaf: &Hash,
) -> Result<(), DependencyError> {
    let insert = tx
        .prepare_cached(
            "INSERT INTO transparency_pending (run_id, merchant_id, leaf) VALUES ($1, $2, $3)",
        )
        .await
        .map_err(query_error("queue log entry"))?;
    tx.execute(&insert, &[&run_id, &merchant, &leaf.as_slice()])
        .await
        .map_err(query_error("queue log entry"))?;
    Ok(())
}

/// The merchants with pending entries, each with the age in seconds of its oldest.
pub async fn pending(pool: &DbPool) -> Result<Vec<(MerchantId, f64)>, DependencyError> {
    let client = connection(pool).await?;
    let rows = client
        .query(
            "SELECT merchant_id,
                    EXTRACT(EPOCH FROM clock_timestamp() - min(queued_at))::float8
               FROM transparency_pending GROUP BY merchant_id ORDER BY 2 DESC",
            &[],
        )
        .await
        .map_err(query_error("read pending log entries"))?;
    Ok(rows
        .iter()
        .map(|r| (MerchantId::from(r.get::<_, Uuid>(0)), r.get::<_, f64>(1)))
        .collect())
}

/// Integrates up to `max` of the merchant's pending entries into its log in one
/// transaction, under the log's row lock: indexes dense, in the order the entries were
/// queued. The new leaves' completed subtrees are computed in memory from the few stored
/// ones they need (the log's right edge, read in one query) and written with the entries in
/// one statement. Returns how many entries were integrated (0: none was pending).
pub async fn sequence(
    pool: &DbPool,
    merchant: MerchantId,
    max: i64,
) -> Result<usize, DependencyError> {
    let mut conn = connection(pool).await?;
    let tx = conn.transaction().await.map_err(query_error("begin"))?;
    // `DO UPDATE` (a no-op) rather than `DO NOTHING`: it locks the row and returns it.
    let size: i64 = tx
        .query_one(
            "INSERT INTO transparency_logs (merchant_id) VALUES ($1)
             ON CONFLICT (merchant_id) DO UPDATE SET size = transparency_logs.size
             RETURNING size",
            &[&merchant],
        )
        .await
        .map_err(query_error("lock log"))?
        .get(0);
    let rows = tx
        .query(
            "SELECT run_id, leaf FROM transparency_pending WHERE merchant_id = $1
              ORDER BY queued_at, run_id LIMIT $2 FOR UPDATE",
            &[&merchant, &max],
        )
        .await
        .map_err(query_error("read pending log entries"))?;
    if rows.is_empty() {
        return Ok(0);
    }
    let first =
        u64::try_from(size).map_err(|e| DependencyError::failed("postgres", "log size", e))?;
    let (entry_runs, leaves): (Vec<Uuid>, Vec<Hash>) = rows
        .iter()
        .map(|r| Ok((r.get::<_, Uuid>(0), to_hash(r.get::<_, &[u8]>(1))?)))
        .collect::<Result<Vec<_>, DependencyError>>()?
        .into_iter()
        .unzip();
    let stored = merkle::needed_for_append(first, leaves.len() as u64);
    let edge: HashMap<Node, Hash> = stored
        .iter()
        .copied()
        .zip(fetch(&*tx, merchant, &stored).await?)
        .collect();
    let made = merkle::append_leaves(first, &leaves, &edge)
        .map_err(|e| DependencyError::failed("postgres", "sequence log", e))?;
    let (mut levels, mut idxs, mut hashes) = (Vec::new(), Vec::new(), Vec::new());
    for ((level, idx), hash) in made {
        levels.push(i16::from(level));
        idxs.push(to_i64(idx)?);
        hashes.push(hash.to_vec());
    }
    let entry_idxs: Vec<i64> = (first..first + leaves.len() as u64)
        .map(to_i64)
        .collect::<Result<_, _>>()?;
    let count = to_i64(leaves.len() as u64)?;
    tx.execute(
        "WITH nodes AS (
             INSERT INTO transparency_nodes (merchant_id, level, idx, hash)
             SELECT $1, * FROM unnest($2::smallint[], $3::bigint[], $4::bytea[])
         ), entries AS (
             INSERT INTO transparency_entries (merchant_id, idx, run_id)
             SELECT $1, * FROM unnest($5::bigint[], $6::uuid[])
         ), integrated AS (
             DELETE FROM transparency_pending WHERE run_id = ANY($6)
         )
         UPDATE transparency_logs SET size = size + $7 WHERE merchant_id = $1",
        &[
            &merchant,
            &levels,
            &idxs,
            &hashes,
            &entry_idxs,
            &entry_runs,
            &count,
        ],
    )
    .await
    .map_err(query_error("sequence log"))?;
    tx.commit()
        .await
        .map_err(query_error("commit sequenced entries"))?;
    Ok(leaves.len())
}

/// The hashes of `nodes`, in their order, in one query; a node that is not stored is an
/// error (the log is damaged).
async fn fetch(
    client: &impl GenericClient,
    merchant: MerchantId,
    nodes: &[Node],
) -> Result<Vec<Hash>, DependencyError> {
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    let levels: Vec<i16> = nodes.iter().map(|(l, _)| i16::from(*l)).collect();
    let idxs: Vec<i64> = nodes
        .iter()
        .map(|(_, i)| to_i64(*i))
        .collect::<Result<_, _>>()?;
    let rows = client
        .query(
            "SELECT n.level, n.idx, n.hash
               FROM unnest($2::smallint[], $3::bigint[]) AS w(level, idx)
               JOIN transparency_nodes n
                 ON n.merchant_id = $1 AND n.level = w.level AND n.idx = w.idx",
            &[&merchant, &levels, &idxs],
        )
        .await
        .map_err(query_error("read log nodes"))?;
    let mut found: HashMap<Node, Hash> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let level: i16 = row.get(0);
        let idx: i64 = row.get(1);
        let bytes: Vec<u8> = row.get(2);
        found.insert((level as u8, idx as u64), to_hash(&bytes)?);
    }
    nodes
        .iter()
        .map(|n| {
            found
                .get(n)
                .copied()
                .ok_or_else(|| merkle::Missing::Node(*n).into())
        })
        .collect()
}

/// The hashes of `ranges` (each `O(log n)` stored subtrees), read in one query.
pub async fn range_hashes(
    pool: &DbPool,
    merchant: MerchantId,
    ranges: &[Range],
) -> Result<Vec<Hash>, DependencyError> {
    let conn = connection(pool).await?;
    let mut wanted: Vec<Node> = ranges.iter().flat_map(|r| merkle::subtrees(*r)).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let hashes = fetch(&**conn, merchant, &wanted).await?;
    let mut source = Fetched(wanted.into_iter().zip(hashes).collect());
    merkle::range_hashes(&mut source, ranges)
}

struct Fetched(HashMap<Node, Hash>);

impl merkle::NodeSource for Fetched {
    type Error = DependencyError;

    fn nodes(&mut self, nodes: &[Node]) -> Result<Vec<Hash>, DependencyError> {
        nodes
            .iter()
            .map(|n| {
                self.0
                    .get(n)
                    .copied()
                    .ok_or_else(|| merkle::Missing::Node(*n).into())
            })
            .collect()
    }
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub tree_size: u64,
    pub root_hash: Hash,
    /// The signed note with the witnesses' cosignatures collected so far.
    pub note: String,
    pub created_at: DateTime<Utc>,
}

/// The merchant's newest checkpoint.
pub async fn latest_checkpoint(
    pool: &DbPool,
    merchant: MerchantId,
) -> Result<Option<Checkpoint>, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_opt(
            "SELECT tree_size, root_hash, note || cosignatures, created_at
               FROM transparency_checkpoints
              WHERE merchant_id = $1 ORDER BY tree_size DESC LIMIT 1",
            &[&merchant],
        )
        .await
        .map_err(query_error("read checkpoint"))?;
    row.map(|r| {
        let size: i64 = r.get(0);
        let root: Vec<u8> = r.get(1);
        Ok(Checkpoint {
            tree_size: size as u64,
            root_hash: to_hash(&root)?,
            note: r.get(2),
            created_at: r.get(3),
        })
    })
    .transpose()
}

pub async fn insert_checkpoint(
    pool: &DbPool,
    merchant: MerchantId,
    tree_size: u64,
    root: &Hash,
    note: &str,
) -> Result<(), DependencyError> {
    let conn = connection(pool).await?;
    conn.execute(
        "INSERT INTO transparency_checkpoints (merchant_id, tree_size, root_hash, note)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        &[&merchant, &to_i64(tree_size)?, &root.to_vec(), &note],
    )
    .await
    .map_err(query_error("store checkpoint"))?;
    Ok(())
}

/// Logs that grew past their newest checkpoint: `(merchant, size)`.
pub async fn uncheckpointed(pool: &DbPool) -> Result<Vec<(MerchantId, u64)>, DependencyError> {
    let conn = connection(pool).await?;
    let rows = conn
        .query(
            "SELECT l.merchant_id, l.size FROM transparency_logs l
              WHERE l.size > COALESCE((SELECT max(c.tree_size) FROM transparency_checkpoints c
                                        WHERE c.merchant_id = l.merchant_id), 0)
              ORDER BY l.merchant_id",
            &[],
        )
        .await
        .map_err(query_error("find logs to checkpoint"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let size: i64 = r.get(1);
            (r.get(0), size as u64)
        })
        .collect())
}

/// The index of a run's entry in its merchant's log.
pub async fn index_of_run(
    pool: &DbPool,
    merchant: MerchantId,
    run_id: Uuid,
) -> Result<Option<u64>, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_opt(
            "SELECT idx FROM transparency_entries WHERE merchant_id = $1 AND run_id = $2",
            &[&merchant, &run_id],
        )
        .await
        .map_err(query_error("find log entry"))?;
    Ok(row.map(|r| r.get::<_, i64>(0) as u64))
}

/// An entry as auditors mirror it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    /// The entry's id: its run's, or its erasure receipt part's (`receipt`).
    pub run_id: Uuid,
    pub receipt: bool,
    pub leaf_hash: Hash,
}

/// Entries `[start, end)` (the caller bounds the range).
pub async fn entries(
    pool: &DbPool,
    merchant: MerchantId,
    start: u64,
    end: u64,
) -> Result<Vec<Entry>, DependencyError> {
    let conn = connection(pool).await?;
    let rows = conn
        .query(
            "SELECT e.idx, e.run_id, n.hash,
                    EXISTS (SELECT 1 FROM erasure_receipts r WHERE r.id = e.run_id)
               FROM transparency_entries e
               JOIN transparency_nodes n
                 ON n.merchant_id = e.merchant_id AND n.level = 0 AND n.idx = e.idx
              WHERE e.merchant_id = $1 AND e.idx >= $2 AND e.idx < $3
              ORDER BY e.idx",
            &[&merchant, &to_i64(start)?, &to_i64(end)?],
        )
        .await
        .map_err(query_error("list log entries"))?;
    rows.iter()
        .map(|r| {
            let hash: Vec<u8> = r.get(2);
            Ok(Entry {
                index: r.get::<_, i64>(0) as u64,
                run_id: r.get(1),
                receipt: r.get(3),
                leaf_hash: to_hash(&hash)?,
            })
        })
        .collect()
}

/// The hashes of tree level `level`'s nodes `[start, end)`, in order: a hash tile's contents.
pub async fn level_hashes(
    pool: &DbPool,
    merchant: MerchantId,
    level: u8,
    start: u64,
    end: u64,
) -> Result<Vec<Hash>, DependencyError> {
    let conn = connection(pool).await?;
    let rows = conn
        .query(
            "SELECT idx, hash FROM transparency_nodes
              WHERE merchant_id = $1 AND level = $2 AND idx >= $3 AND idx < $4
              ORDER BY idx",
            &[&merchant, &i16::from(level), &to_i64(start)?, &to_i64(end)?],
        )
        .await
        .map_err(query_error("read log tile"))?;
    let mut hashes = Vec::with_capacity(rows.len());
    for (expected, row) in (start..end).zip(&rows) {
        if row.get::<_, i64>(0) as u64 != expected {
            return Err(merkle::Missing::Node((level, expected)).into());
        }
        hashes.push(to_hash(&row.get::<_, Vec<u8>>(1))?);
    }
    if hashes.len() as u64 != end - start {
        return Err(merkle::Missing::Node((level, start + hashes.len() as u64)).into());
    }
    Ok(hashes)
}

/// The stored content (its object key: a run's manifest, or an erasure receipt's part) of each
/// entry `[start, end)`, in order.
pub async fn entry_manifests(
    pool: &DbPool,
    merchant: MerchantId,
    start: u64,
    end: u64,
) -> Result<Vec<(u64, String)>, DependencyError> {
    let conn = connection(pool).await?;
    let rows = conn
        .query(
            "SELECT e.idx, COALESCE(m.object_key, r.object_key) FROM transparency_entries e
               LEFT JOIN manifests m ON m.run_id = e.run_id
               LEFT JOIN erasure_receipts r ON r.id = e.run_id
              WHERE e.merchant_id = $1 AND e.idx >= $2 AND e.idx < $3
                AND COALESCE(m.object_key, r.object_key) IS NOT NULL
              ORDER BY e.idx",
            &[&merchant, &to_i64(start)?, &to_i64(end)?],
        )
        .await
        .map_err(query_error("list log entries' manifests"))?;
    let found: Vec<(u64, String)> = rows
        .iter()
        .map(|r| (r.get::<_, i64>(0) as u64, r.get(1)))
        .collect();
    if found.len() as u64 != end - start || found.iter().zip(start..).any(|((i, _), n)| *i != n) {
        return Err(DependencyError::failed(
            "postgres",
            "list log entries' manifests",
            format!("entries {start}..{end} of merchant {merchant}'s log are not all recorded"),
        ));
    }
    Ok(found)
}

/// A log whose newest checkpoint is not published yet (or has gained cosignatures since):
/// its merchant, the size published so far, and that checkpoint with its cosigners' count.
#[derive(Debug, Clone)]
pub struct Unpublished {
    pub merchant: MerchantId,
    pub published: u64,
    /// Entries whose tiles are written ahead of the published checkpoint (a long history).
    pub tiles_through: u64,
    pub checkpoint: Checkpoint,
    pub cosigners: i32,
}

/// Every log whose newest checkpoint covers more than what is published, or carries more
/// cosignatures than the published one: those with least to publish first (a long history
/// takes what time a pass has left).
pub async fn unpublished(pool: &DbPool) -> Result<Vec<Unpublished>, DependencyError> {
    let conn = connection(pool).await?;
    let rows = conn
        .query(
            "SELECT l.merchant_id, l.published_size, c.tree_size, c.root_hash,
                    c.note || c.cosignatures, c.created_at, c.cosigners, l.tiles_through
               FROM transparency_logs l
               JOIN LATERAL (SELECT tree_size, root_hash, note, cosignatures, cosigners, created_at
                               FROM transparency_checkpoints c
                              WHERE c.merchant_id = l.merchant_id
                              ORDER BY tree_size DESC LIMIT 1) c ON true
              WHERE (c.tree_size > l.published_size
                     OR (c.tree_size = l.published_size AND c.cosigners > l.published_cosigners))
                AND (l.publish_retry_at IS NULL OR l.publish_retry_at <= now())
              ORDER BY c.tree_size - GREATEST(l.published_size, l.tiles_through), l.merchant_id",
            &[],
        )
        .await
        .map_err(query_error("find logs to publish"))?;
    rows.iter()
        .map(|r| {
            let root: Vec<u8> = r.get(3);
            Ok(Unpublished {
                merchant: r.get(0),
                published: r.get::<_, i64>(1) as u64,
                checkpoint: Checkpoint {
                    tree_size: r.get::<_, i64>(2) as u64,
                    root_hash: to_hash(&root)?,
                    note: r.get(4),
                    created_at: r.get(5),
                },
                cosigners: r.get(6),
                tiles_through: r.get::<_, i64>(7) as u64,
            })
        })
        .collect()
}

/// Records that the log's tiles and checkpoint up to `size` (with `cosigners`
/// cosignatures) are published.
pub async fn mark_published(
    pool: &DbPool,
    merchant: MerchantId,
    size: u64,
    cosigners: i32,
) -> Result<(), DependencyError> {
    let conn = connection(pool).await?;
    conn.execute(
        "UPDATE transparency_logs
            SET published_cosigners = CASE WHEN $2 >= published_size THEN $3
                                           ELSE published_cosigners END,
                published_size = GREATEST(published_size, $2),
                publish_failures = 0, publish_retry_at = NULL
          WHERE merchant_id = $1",
        &[&merchant, &to_i64(size)?, &cosigners],
    )
    .await
    .map_err(query_error("record published log"))?;
    Ok(())
}

/// Records that the log's tiles are written for its first `through` entries (ahead of its
/// published checkpoint).
pub async fn mark_tiles_through(
    pool: &DbPool,
    merchant: MerchantId,
    through: u64,
) -> Result<(), DependencyError> {
    let conn = connection(pool).await?;
    conn.execute(
        "UPDATE transparency_logs SET tiles_through = GREATEST(tiles_through, $2),
                publish_failures = 0, publish_retry_at = NULL
          WHERE merchant_id = $1",
        &[&merchant, &to_i64(through)?],
    )
    .await
    .map_err(query_error("record log tiles written"))?;
    Ok(())
}

/// Records that publishing the log failed: it is tried again after 30 s, doubling with each
/// failure in a row up to an hour.
pub async fn publish_failed(pool: &DbPool, merchant: MerchantId) -> Result<(), DependencyError> {
    let conn = connection(pool).await?;
    conn.execute(
        "UPDATE transparency_logs SET publish_failures = publish_failures + 1,
                publish_retry_at = now() + least(interval '1 hour',
                    interval '30 seconds' * power(2, least(publish_failures, 7)))
          WHERE merchant_id = $1",
        &[&merchant],
    )
    .await
    .map_err(query_error("record failed log publication"))?;
    Ok(())
}

/// A log's newest checkpoint that a witness has not cosigned, and what it knows of the log.
#[derive(Debug, Clone)]
pub struct Uncosigned {
    pub merchant: MerchantId,
    pub tree_size: u64,
    /// The checkpoint as the log signed it (without cosignatures): what the witness is sent.
    pub note: String,
    /// The size the witness last cosigned or reported (0: nothing yet).
    pub known: u64,
}

/// The logs whose newest checkpoint carries no cosignature by `witness` (its signature
/// lines start `— <witness> `), except those waiting out a back-off for this witness; those
/// the witness heard of least recently first (a pass that runs out of time reaches the
/// others next).
pub async fn uncosigned(pool: &DbPool, witness: &str) -> Result<Vec<Uncosigned>, DependencyError> {
    let conn = connection(pool).await?;
    let line = format!("\u{2014} {witness} ");
    let rows = conn
        .query(
            "SELECT l.merchant_id, c.tree_size, c.note, COALESCE(w.size, 0)
               FROM transparency_logs l
               JOIN LATERAL (SELECT tree_size, note, cosignatures
                               FROM transparency_checkpoints c
                              WHERE c.merchant_id = l.merchant_id
                              ORDER BY tree_size DESC LIMIT 1) c ON true
               LEFT JOIN transparency_witnesses w
                      ON w.merchant_id = l.merchant_id AND w.witness = $1
              WHERE strpos(c.cosignatures, $2) = 0
                AND (w.retry_at IS NULL OR w.retry_at <= now())
              ORDER BY w.updated_at NULLS FIRST, l.merchant_id",
            &[&witness, &line],
        )
        .await
        .map_err(query_error("find checkpoints to cosign"))?;
    Ok(rows
        .iter()
        .map(|r| Uncosigned {
            merchant: r.get(0),
            tree_size: r.get::<_, i64>(1) as u64,
            note: r.get(2),
            known: r.get::<_, i64>(3) as u64,
        })
        .collect())
}

/// Appends `witness`'s cosignature `line` to the checkpoint of `size` and records that the
/// witness knows the log at that size (its failures forgotten). One statement.
pub async fn record_cosignature(
    pool: &DbPool,
    merchant: MerchantId,
    witness: &str,
    size: u64,
    line: &str,
) -> Result<(), DependencyError> {
    let conn = connection(pool).await?;
    let prefix = format!("\u{2014} {witness} ");
    conn.execute(
        "WITH cosigned AS (
             UPDATE transparency_checkpoints
                SET cosignatures = cosignatures || $4, cosigners = cosigners + 1
              WHERE merchant_id = $1 AND tree_size = $3 AND strpos(cosignatures, $5) = 0)
         INSERT INTO transparency_witnesses (merchant_id, witness, size)
         VALUES ($1, $2, $3)
         ON CONFLICT (merchant_id, witness) DO UPDATE
            SET size = excluded.size, failures = 0, retry_at = NULL, last_error = NULL,
                updated_at = now()",
        &[&merchant, &witness, &to_i64(size)?, &line, &prefix],
    )
    .await
    .map_err(query_error("store cosignature"))?;
    Ok(())
}

/// Records the size a witness says it knows of the log (its `409`).
pub async fn witness_knows(
    pool: &DbPool,
    merchant: MerchantId,
    witness: &str,
    size: u64,
) -> Result<(), DependencyError> {
    let conn = connection(pool).await?;
    conn.execute(
        "INSERT INTO transparency_witnesses (merchant_id, witness, size) VALUES ($1, $2, $3)
         ON CONFLICT (merchant_id, witness) DO UPDATE SET size = excluded.size, updated_at = now()",
        &[&merchant, &witness, &to_i64(size)?],
    )
    .await
    .map_err(query_error("record witness size"))?;
    Ok(())
}

/// Records why a submission to `witness` failed; the log is offered to it again after a
/// back-off (5 s, doubling with each failure in a row, at most 10 minutes).
pub async fn witness_failed(
    pool: &DbPool,
    merchant: MerchantId,
    witness: &str,
    error: &str,
) -> Result<(), DependencyError> {
    let conn = connection(pool).await?;
    conn.execute(
        "INSERT INTO transparency_witnesses (merchant_id, witness, failures, retry_at, last_error)
         VALUES ($1, $2, 1, now() + interval '5 seconds', $3)
         ON CONFLICT (merchant_id, witness) DO UPDATE
            SET failures = transparency_witnesses.failures + 1,
                retry_at = now() + least(interval '10 minutes',
                    interval '5 seconds' * power(2, least(transparency_witnesses.failures, 7))),
                last_error = excluded.last_error, updated_at = now()",
        &[&merchant, &witness, &error],
    )
    .await
    .map_err(query_error("record witness failure"))?;
    Ok(())
}

/// What a witness knows of a log and why its last submission failed, if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessState {
    pub witness: String,
    pub size: u64,
    pub failures: i32,
    pub last_error: Option<String>,
}

/// Each witness's state for `merchant`'s log, by witness name.
pub async fn witness_states(
    pool: &DbPool,
    merchant: MerchantId,
) -> Result<Vec<WitnessState>, DependencyError> {
    let conn = connection(pool).await?;
    let rows = conn
        .query(
            "SELECT witness, size, failures, last_error FROM transparency_witnesses
              WHERE merchant_id = $1 ORDER BY witness",
            &[&merchant],
        )
        .await
        .map_err(query_error("read witness states"))?;
    Ok(rows
        .iter()
        .map(|r| WitnessState {
            witness: r.get(0),
            size: r.get::<_, i64>(1) as u64,
            failures: r.get(2),
            last_error: r.get(3),
        })
        .collect())
}

/// How many logs' newest checkpoint has fewer than `quorum` cosignatures.
pub async fn below_quorum(pool: &DbPool, quorum: i32) -> Result<i64, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_one(
            "SELECT count(*) FROM transparency_logs l
               JOIN LATERAL (SELECT cosigners FROM transparency_checkpoints c
                              WHERE c.merchant_id = l.merchant_id
                              ORDER BY tree_size DESC LIMIT 1) c ON true
              WHERE c.cosigners < $1",
            &[&quorum],
        )
        .await
        .map_err(query_error("count checkpoints below quorum"))?;
    Ok(row.get(0))
}
