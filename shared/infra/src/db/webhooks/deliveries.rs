//! Webhook deliveries as rows: the [`Delivery`] the API lists, recording one per endpoint
//! when a run finishes ([`record_run_event`]), listing them, and putting one back in line
//! ([`redeliver`]). Each write comes with the outbox row of the delivery's message.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{Row, Transaction};
use uuid::Uuid;

use crate::db::outbox::{self, Pending};
use crate::db::{connection, query_error, DbPool};
use crate::error::DependencyError;
use docbundle_domain::paging::TimeKey;
use docbundle_domain::trace::TraceHeader;
use docbundle_domain::webhooks::{DeliveryMessage, RunEvent, ALL_EVENTS};
use docbundle_domain::MerchantId;

/// One delivery of one event to one endpoint, as `GET …/deliveries` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// Also the `webhook-id` header of every attempt, so receivers can deduplicate.
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub run_id: Uuid,
    pub event_type: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i32>,
    /// The first KiB of the receiver's last answer.
    pub last_response: Option<String>,
    /// Why the last attempt got no answer (timeout, refused address, …).
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Delivery {
    pub fn page_key(&self) -> TimeKey {
        TimeKey {
            t: self.created_at,
            id: self.id,
        }
    }
}

const DELIVERY_COLUMNS: &str = "id, endpoint_id, run_id, event_type, status, attempts, next_attempt_at, last_attempt_at, last_status_code, last_response, last_error, created_at, updated_at";

fn delivery(row: &Row) -> Delivery {
    Delivery {
        id: row.get("id"),
        endpoint_id: row.get("endpoint_id"),
        run_id: row.get("run_id"),
        event_type: row.get("event_type"),
        status: row.get("status"),
        attempts: row.get("attempts"),
        next_attempt_at: row.get("next_attempt_at"),
        last_attempt_at: row.get("last_attempt_at"),
        last_status_code: row.get("last_status_code"),
        last_response: row.get("last_response"),
        last_error: row.get("last_error"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

/// Records one delivery of `event` per enabled endpoint of `merchant` that hears it, with the
/// outbox row of its first message, inside the transaction that finishes the run. Returns the
/// rows to publish once it commits.
pub async fn record_run_event(
    tx: &Transaction<'_>,
    merchant: MerchantId,
    event: &RunEvent<'_>,
    trace: Option<&TraceHeader>,
) -> Result<Vec<Pending>, DependencyError> {
    let body = event.body(Utc::now());
    record_event(
        tx,
        merchant,
        event.run_id,
        event.kind.as_str(),
        &body,
        trace,
    )
    .await
}

/// Records one delivery of an event (`event_type`, its exact `body`) about `subject` (a run,
/// a batch) per enabled endpoint of `merchant` that hears it, with the outbox row of its first
/// message, in the caller's transaction. The rows to publish once it commits.
pub async fn record_event(
    tx: &Transaction<'_>,
    merchant: MerchantId,
    subject: Uuid,
    event_type: &str,
    body: &str,
    trace: Option<&TraceHeader>,
) -> Result<Vec<Pending>, DependencyError> {
    let rows = tx
        .query(
            "INSERT INTO webhook_deliveries
                    (id, endpoint_id, merchant_id, run_id, event_type, payload, next_attempt_at, dispatch_token)
             SELECT gen_random_uuid(), e.id, e.merchant_id, $2, $3, $4, now(), gen_random_uuid()
               FROM webhook_endpoints e
              WHERE e.merchant_id = $1 AND e.enabled AND ($3 = ANY (e.events) OR $5 = ANY (e.events))
             ON CONFLICT (endpoint_id, run_id, event_type) DO NOTHING
          RETURNING id, dispatch_token",
            &[&merchant, &subject, &event_type, &body, &ALL_EVENTS],
        )
        .await
        .map_err(query_error("record webhook deliveries"))?;
    let mut pending = Vec::with_capacity(rows.len());
    for row in rows {
        let message = DeliveryMessage {
            delivery_id: row.get(0),
            merchant_id: merchant,
            token: row.get(1),
        };
        pending.push(outbox::insert(tx, &message, trace).await?);
    }
    Ok(pending)
}

pub async fn list_deliveries(
    pool: &DbPool,
    merchant: MerchantId,
    endpoint_id: Uuid,
    after: Option<&TimeKey>,
    fetch: i64,
) -> Result<Vec<Delivery>, DependencyError> {
    let conn = connection(pool).await?;
    let (after_t, after_id) = TimeKey::bounds(after);
    let rows = conn
        .query(
            &format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
                  WHERE merchant_id = $1 AND endpoint_id = $2
                    AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
                  ORDER BY created_at DESC, id DESC LIMIT $5"
            ),
            &[&merchant, &endpoint_id, &after_t, &after_id, &fetch],
        )
        .await
        .map_err(query_error("list webhook deliveries"))?;
    Ok(rows.iter().map(delivery).collect())
}

/// Puts a delivery back in line for an attempt now (its schedule starts over), with the
/// outbox row of its message; `None` when the merchant's endpoint has no such delivery.
pub async fn redeliver(
    pool: &DbPool,
    merchant: MerchantId,
    endpoint_id: Uuid,
    id: Uuid,
    trace: Option<&TraceHeader>,
) -> Result<Option<(Delivery, Pending)>, DependencyError> {
    let mut conn = connection(pool).await?;
    let tx = conn.transaction().await.map_err(query_error("begin"))?;
    let row = tx
        .query_opt(
            &format!(
                "UPDATE webhook_deliveries
                    SET status = 'pending', attempts = 0, next_attempt_at = now(),
                        dispatch_token = gen_random_uuid(), updated_at = now()
                  WHERE id = $1 AND endpoint_id = $2 AND merchant_id = $3
              RETURNING {DELIVERY_COLUMNS}, dispatch_token"
            ),
            &[&id, &endpoint_id, &merchant],
        )
        .await
        .map_err(query_error("redeliver webhook delivery"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let message = DeliveryMessage {
        delivery_id: id,
        merchant_id: merchant,
        token: row.get("dispatch_token"),
    };
    let pending = outbox::insert(&tx, &message, trace).await?;
    tx.commit()
        .await
        .map_err(query_error("commit redelivery"))?;
    Ok(Some((delivery(&row), pending)))
}
