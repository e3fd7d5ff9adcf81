//! The transactional outbox: events written in the transaction that changes the state they
//! announce and published after it commits; rows whose publication failed are picked up by
//! the scheduler's `relay` job. Rows carry a kind (for people and logs), a destination and the payload: the
//! relay moves payloads to destinations and knows no kind by name.

use std::time::Duration;

use super::{connection, query_error, DbPool};
use crate::error::DependencyError;
use crate::publisher::Publisher;
use docbundle_domain::outbox::{Destination, Envelope, OutboxEvent};
use docbundle_domain::trace::TraceHeader;

/// An event written to the outbox, to publish once its transaction has committed.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: i64,
    pub envelope: Envelope,
}

/// Writes `event`, caused by a request of `trace`, to the outbox inside the caller's
/// transaction.
pub async fn insert<E: OutboxEvent>(
    tx: &tokio_postgres::Transaction<'_>,
    event: &E,
    trace: Option<&TraceHeader>,
) -> Result<Pending, DependencyError> {
    let envelope = Envelope::of(event)
        .map_err(|e| DependencyError::failed("outbox", format!("encode {}", E::KIND), e))?
        .traced(trace.cloned());
    let payload: serde_json::Value = serde_json::from_str(&envelope.payload)
        .map_err(|e| DependencyError::failed("postgres", "encode outbox payload", e))?;
    let row = tx
        .query_one(
            "INSERT INTO outbox (kind, destination, run_id, payload, trace_header)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                &envelope.kind,
                &envelope.destination.as_str(),
                &envelope.run_id,
                &payload,
                &envelope.trace.as_ref().map(TraceHeader::as_str),
            ],
        )
        .await
        .map_err(query_error("insert outbox row"))?;
    Ok(Pending {
        id: row.get(0),
        envelope,
    })
}

/// Writes many events of one kind (no trace) in one statement inside the caller's
/// transaction: a batch's chunk of runs.
pub async fn insert_many<E: OutboxEvent>(
    tx: &tokio_postgres::Transaction<'_>,
    events: &[E],
) -> Result<Vec<Pending>, DependencyError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let envelopes = events
        .iter()
        .map(Envelope::of)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| DependencyError::failed("outbox", format!("encode {}", E::KIND), e))?;
    let payloads = envelopes
        .iter()
        .map(|e| serde_json::from_str::<serde_json::Value>(&e.payload))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| DependencyError::failed("postgres", "encode outbox payload", e))?;
    let run_ids: Vec<Option<uuid::Uuid>> = envelopes.iter().map(|e| e.run_id).collect();
    let rows = tx
        .query(
            "INSERT INTO outbox (kind, destination, run_id, payload)
             SELECT $1, $2, e.run_id, e.payload
               FROM unnest($3::uuid[], $4::jsonb[]) WITH ORDINALITY AS e(run_id, payload, n)
             ORDER BY n
             RETURNING id, payload",
            &[&E::KIND, &E::DESTINATION.as_str(), &run_ids, &payloads],
        )
        .await
        .map_err(query_error("insert outbox rows"))?;
    // RETURNING's order is not promised: each row is matched to its event by its payload.
    let mut ids: std::collections::HashMap<String, Vec<i64>> = std::collections::HashMap::new();
    for row in &rows {
        let payload: serde_json::Value = row.get(1);
        ids.entry(payload.to_string()).or_default().push(row.get(0));
    }
    envelopes
        .into_iter()
        .zip(payloads)
        .map(|(envelope, payload)| {
            let id = ids
                .get_mut(&payload.to_string())
                .and_then(Vec::pop)
                .ok_or_else(|| {
                    DependencyError::failed("postgres", "insert outbox rows", "a row is missing")
                })?;
            Ok(Pending { id, envelope })
        })
        .collect()
}

/// Publishes many committed events, ten per call and a few calls at a time, and marks the
/// sent ones in one statement; the rest stay for the relay. How many were sent.
pub async fn publish_many(pool: &DbPool, publisher: &Publisher, pending: &[Pending]) -> usize {
    let groups: Vec<&[Pending]> = pending.chunks(10).collect();
    let mut sent: Vec<Vec<i64>> = Vec::with_capacity(groups.len());
    for window in groups.chunks(8) {
        let calls = window.iter().map(|group| send_group(publisher, group));
        sent.extend(futures::future::join_all(calls).await);
    }
    let ids: Vec<i64> = sent.into_iter().flatten().collect();
    if ids.is_empty() {
        return 0;
    }
    let marked = async {
        let conn = connection(pool).await?;
        conn.execute(
            "UPDATE outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL
              WHERE id = ANY($1) AND sent_at IS NULL",
            &[&ids],
        )
        .await
        .map_err(query_error("mark outbox rows sent"))
    };
    if let Err(e) = marked.await {
        tracing::warn!(error = %e, "could not mark outbox rows sent; the relay will publish them again");
    }
    ids.len()
}

/// Sends one group of up to ten events; the ids sent.
async fn send_group(publisher: &Publisher, group: &[Pending]) -> Vec<i64> {
    let Some(destination) = group.first().map(|p| p.envelope.destination) else {
        return Vec::new();
    };
    if group.iter().any(|p| p.envelope.destination != destination) {
        // Mixed destinations are published one by one.
        let mut sent = Vec::new();
        for p in group {
            let e = &p.envelope;
            if publisher
                .publish(e.destination, &e.payload, e.trace.as_ref())
                .await
                .is_ok()
            {
                sent.push(p.id);
            }
        }
        return sent;
    }
    let payloads: Vec<&str> = group.iter().map(|p| p.envelope.payload.as_str()).collect();
    match publisher.publish_batch(destination, &payloads).await {
        Ok(refused) => group
            .iter()
            .enumerate()
            .filter(|(i, _)| !refused.contains(i))
            .map(|(_, p)| p.id)
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, count = group.len(), "events not published; the outbox relay will");
            Vec::new()
        }
    }
}

/// How long a request waits for its event to be published before answering anyway: the row
/// stays in the outbox and the relay publishes it (a queue that stops answering must not hold
/// an API call for the queue client's whole timeout).
pub const PUBLISH_WAIT: Duration = Duration::from_secs(2);

/// Publishes an event whose transaction has committed and marks it sent; on failure (or after
/// [`PUBLISH_WAIT`]) the row stays for the relay (consumers are idempotent, so a second
/// publication is harmless).
pub async fn publish(pool: &DbPool, publisher: &Publisher, pending: &Pending) {
    let envelope = &pending.envelope;
    let sent = tokio::time::timeout(
        PUBLISH_WAIT,
        publisher.publish(
            envelope.destination,
            &envelope.payload,
            envelope.trace.as_ref(),
        ),
    )
    .await;
    // The row says why it is still unsent, whichever way the publication failed.
    let why = match sent {
        Ok(Ok(_)) => {
            if let Err(e) = mark_sent(pool, pending.id).await {
                tracing::warn!(outbox_id = pending.id, kind = envelope.kind, error = %e, "could not mark outbox row sent; the relay will publish it again");
            }
            return;
        }
        Ok(Err(e)) => {
            tracing::warn!(outbox_id = pending.id, kind = envelope.kind, error = %e, "event not published; the outbox relay will");
            e.to_string()
        }
        Err(_) => {
            tracing::warn!(
                outbox_id = pending.id,
                kind = envelope.kind,
                wait_ms = PUBLISH_WAIT.as_millis() as u64,
                "the queue did not answer in time; the outbox relay will publish the event"
            );
            format!(
                "the queue did not answer within {} ms",
                PUBLISH_WAIT.as_millis()
            )
        }
    };
    if let Err(e) = record_failure(pool, pending.id, &why).await {
        tracing::warn!(outbox_id = pending.id, error = %e, "could not record the failure; the relay publishes the row anyway");
    }
}

/// [`publish`] for each of `pending`, in order.
pub async fn publish_all(pool: &DbPool, publisher: &Publisher, pending: &[Pending]) {
    for one in pending {
        publish(pool, publisher, one).await;
    }
}

async fn mark_sent(pool: &DbPool, id: i64) -> Result<(), DependencyError> {
    let conn = connection(pool).await?;
    conn.execute(
        "UPDATE outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL
         WHERE id = $1 AND sent_at IS NULL",
        &[&id],
    )
    .await
    .map_err(query_error("mark outbox row sent"))?;
    Ok(())
}

async fn record_failure(pool: &DbPool, id: i64, error: &str) -> Result<(), DependencyError> {
    let conn = connection(pool).await?;
    conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
        &[&id, &error],
    )
    .await
    .map_err(query_error("record outbox failure"))?;
    Ok(())
}

/// Seconds the oldest unpublished event has waited (`None` when every event is published).
pub async fn oldest_pending_age(pool: &DbPool) -> Result<Option<f64>, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_one(
            "SELECT EXTRACT(EPOCH FROM now() - min(created_at))::float8 FROM outbox
              WHERE sent_at IS NULL",
            &[],
        )
        .await
        .map_err(query_error("oldest pending outbox event"))?;
    Ok(row.get(0))
}

/// What one relay pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayReport {
    pub sent: usize,
    pub failed: usize,
}

/// Publishes every unsent row older than `min_age` (younger rows are still being published by
/// the request that wrote them), up to `batch` rows. Rows are locked with `SKIP LOCKED`, so
/// concurrent relays never publish the same row twice in one pass; a row is marked sent in the
/// same transaction that locked it.
pub async fn relay(
    pool: &DbPool,
    publisher: &Publisher,
    min_age: Duration,
    batch: i64,
) -> Result<RelayReport, DependencyError> {
    let mut conn = connection(pool).await?;
    let tx = conn
        .transaction()
        .await
        .map_err(query_error("begin relay"))?;
    let min_age_secs = min_age.as_secs_f64();
    let rows = tx
        .query(
            "SELECT id, kind, destination, payload, trace_header FROM outbox
             WHERE sent_at IS NULL AND created_at < now() - make_interval(secs => $1)
             ORDER BY created_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED",
            &[&min_age_secs, &batch],
        )
        .await
        .map_err(query_error("select unsent outbox rows"))?;
    let mut report = RelayReport::default();
    for row in rows {
        let id: i64 = row.get("id");
        let kind: String = row.get("kind");
        let destination: String = row.get("destination");
        let payload: serde_json::Value = row.get("payload");
        let trace = row
            .get::<_, Option<&str>>("trace_header")
            .and_then(TraceHeader::parse);
        let sent = match Destination::parse(&destination) {
            Some(destination) => publisher
                .publish(destination, &payload.to_string(), trace.as_ref())
                .await
                .map_err(|e| e.to_string()),
            None => Err(format!("unknown destination `{destination}`")),
        };
        match sent {
            Ok(_) => {
                tx.execute(
                    "UPDATE outbox SET sent_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(query_error("mark outbox row sent"))?;
                report.sent += 1;
            }
            Err(error) => {
                tracing::warn!(
                    outbox_id = id,
                    kind,
                    error,
                    "relay could not publish an event; the rest waits for the next pass"
                );
                tx.execute(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
                    &[&id, &error],
                )
                .await
                .map_err(query_error("record outbox failure"))?;
                report.failed += 1;
                // A queue that does not answer would hold this transaction (its connection and
                // row locks) for a timeout per row: stop at the first failure.
                break;
            }
        }
    }
    tx.commit().await.map_err(query_error("commit relay"))?;
    Ok(report)
}
