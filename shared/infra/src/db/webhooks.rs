//! Completion webhooks: endpoints (their secrets live in Vault) and deliveries.
//!
//! A delivery is written in the transaction that finishes its run, with an outbox row for its
//! first message, so no event is lost if the process dies after the commit. Each attempt is
//! claimed with a conditional update on the delivery's `dispatch_token` and a lease on
//! `next_attempt_at`: at most one message drives a delivery, a duplicate or stale message is
//! dropped, and an attempt whose dispatcher died is picked up again by [`sweep`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::{Row, Transaction};
use uuid::Uuid;

use super::outbox::{self, Pending};
use super::{connection, query_error, DbPool};
use crate::error::DependencyError;
use docbundle_domain::paging::TimeKey;
use docbundle_domain::trace::TraceHeader;
use docbundle_domain::webhooks::{DeliveryMessage, RunEvent, ALL_EVENTS};
use docbundle_domain::MerchantId;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpoint {
    pub id: Uuid,
    pub merchant_id: MerchantId,
    pub url: String,
    /// `run.completed`, `run.failed`, or `*` for every event.
    pub events: Vec<String>,
    pub description: Option<String>,
    pub enabled: bool,
    /// Why the service disabled it (every delivery failed for too long).
    pub disabled_reason: Option<String>,
    /// The first failure of the current streak; `null` after a success.
    pub failing_since: Option<DateTime<Utc>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl WebhookEndpoint {
    pub fn page_key(&self) -> TimeKey {
        TimeKey {
            t: self.created_at,
            id: self.id,
        }
    }
}

const ENDPOINT_COLUMNS: &str = "id, merchant_id, url, events, description, enabled, disabled_reason, failing_since, created_by, created_at, updated_at";

fn endpoint(row: &Row) -> WebhookEndpoint {
    WebhookEndpoint {
        id: row.get("id"),
        merchant_id: row.get("merchant_id"),
        url: row.get("url"),
        events: row.get("events"),
        description: row.get("description"),
        enabled: row.get("enabled"),
        disabled_reason: row.get("disabled_reason"),
        failing_since: row.get("failing_since"),
        created_by: row.get("created_by"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

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

pub struct NewEndpoint<'a> {
    pub id: Uuid,
    pub merchant: MerchantId,
    pub url: &'a str,
    pub events: &'a [String],
    pub description: Option<&'a str>,
    pub enabled: bool,
    pub created_by: &'a str,
}

pub async fn insert_endpoint(
    pool: &DbPool,
    new: &NewEndpoint<'_>,
) -> Result<WebhookEndpoint, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_one(
            &format!(
                "INSERT INTO webhook_endpoints (id, merchant_id, url, events, description, enabled, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {ENDPOINT_COLUMNS}"
            ),
            &[&new.id, &new.merchant, &new.url, &new.events, &new.description, &new.enabled, &new.created_by],
        )
        .await
        .map_err(query_error("insert webhook endpoint"))?;
    Ok(endpoint(&row))
}

/// How many endpoints the merchant has.
pub async fn count_endpoints(pool: &DbPool, merchant: MerchantId) -> Result<i64, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_one(
            "SELECT count(*) FROM webhook_endpoints WHERE merchant_id = $1",
            &[&merchant],
        )
        .await
        .map_err(query_error("count webhook endpoints"))?;
    Ok(row.get(0))
}

pub async fn find_endpoint(
    pool: &DbPool,
    merchant: MerchantId,
    id: Uuid,
) -> Result<Option<WebhookEndpoint>, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_opt(
            &format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND merchant_id = $2"
            ),
            &[&id, &merchant],
        )
        .await
        .map_err(query_error("find webhook endpoint"))?;
    Ok(row.as_ref().map(endpoint))
}

pub async fn list_endpoints(
    pool: &DbPool,
    merchant: MerchantId,
    after: Option<&TimeKey>,
    fetch: i64,
) -> Result<Vec<WebhookEndpoint>, DependencyError> {
    let conn = connection(pool).await?;
    let (after_t, after_id) = TimeKey::bounds(after);
    let rows = conn
        .query(
            &format!(
                "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
                  WHERE merchant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
                  ORDER BY created_at DESC, id DESC LIMIT $4"
            ),
            &[&merchant, &after_t, &after_id, &fetch],
        )
        .await
        .map_err(query_error("list webhook endpoints"))?;
    Ok(rows.iter().map(endpoint).collect())
}

/// A change to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    /// `Some(None)` clears it.
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
}

/// Applies `patch`; enabling an endpoint clears why it was disabled and its failure streak.
pub async fn update_endpoint(
    pool: &DbPool,
    merchant: MerchantId,
    id: Uuid,
    patch: &EndpointPatch,
) -> Result<Option<WebhookEndpoint>, DependencyError> {
    let conn = connection(pool).await?;
    let row = conn
        .query_opt(
            &format!(
                "UPDATE webhook_endpoints SET
                    url = COALESCE($3, url),
                    events = COALESCE($4, events),
                    description = CASE WHEN $5 THEN $6 ELSE description END,
                    enabled = COALESCE($7, enabled),
                    disabled_reason = CASE WHEN $7 THEN NULL ELSE disabled_reason END,
                    failing_since = CASE WHEN $7 THEN NULL ELSE failing_since END,
                    updated_at = now()
                  WHERE id = $1 AND merchant_id = $2
              RETURNING {ENDPOINT_COLUMNS}"
            ),
            &[
                &id,
                &merchant,
                &patch.url,
                &patch.events,
                &patch.description.is_some(),
                &patch.description.clone().flatten(),
                &patch.enabled,
            ],
        )
        .await
        .map_err(query_error("update webhook endpoint"))?;
    Ok(row.as_ref().map(endpoint))
}

/// Deletes the endpoint and its deliveries; `false` when the merchant has no such endpoint.
pub async fn delete_endpoint(
    pool: &DbPool,
    merchant: MerchantId,
    id: Uuid,
) -> Result<bool, DependencyError> {
    let conn = connection(pool).await?;
    let n = conn
        .execute(
            "DELETE FROM webhook_endpoints WHERE id = $1 AND merchant_id = $2",
            &[&id, &merchant],
        )
        .await
        .map_err(query_error("delete webhook endpoint"))?;
    Ok(n == 1)
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
    let rows = tx
        .query(
            "INSERT INTO webhook_deliveries
                    (id, endpoint_id, merchant_id, run_id, event_type, payload, next_attempt_at, dispatch_token)
             SELECT gen_random_uuid(), e.id, e.merchant_id, $2, $3, $4, now(), gen_random_uuid()
               FROM webhook_endpoints e
              WHERE e.merchant_id = $1 AND e.enabled AND ($3 = ANY (e.events) OR $5 = ANY (e.events))
             ON CONFLICT (endpoint_id, run_id, event_type) DO NOTHING
          RETURNING id, dispatch_token",
            &[&merchant, &event.run_id, &event.kind.as_str(), &body, &ALL_EVENTS],
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

/// What a message found when it came to make an attempt.
#[derive(Debug)]
pub enum Due {
    /// The attempt is this dispatcher's to make.
    Claimed(Attempt),
    /// Not due yet: the message was too early (a long delay is several hops); it was
    /// replaced by the one with `token`, due at `at`.
    Later { token: Uuid, at: DateTime<Utc> },
    /// Finished, unknown, or driven by another message: nothing to do.
    Stale,
}

/// A claimed attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub delivery_id: Uuid,
    pub endpoint_id: Uuid,
    pub url: String,
    pub enabled: bool,
    pub payload: String,
    /// This attempt's number (1 for the first).
    pub attempt: i32,
    /// The token of the message that may make the next attempt.
    pub token: Uuid,
}

/// Claims the attempt `message` stands for, holding it for `lease`. A delivery that already
/// had `max_attempts` (its attempts never recorded, say) is failed instead, so that nothing is
/// attempted for ever.
pub async fn claim(
    pool: &DbPool,
    message: &DeliveryMessage,
    lease: Duration,
    max_attempts: i32,
) -> Result<Due, DependencyError> {
    let conn = connection(pool).await?;
    let exhausted = conn
        .execute(
            "UPDATE webhook_deliveries
                SET status = 'failed', next_attempt_at = NULL, updated_at = now(),
                    last_error = COALESCE(last_error, 'no outcome recorded') || ' (gave up after ' || attempts || ' attempts)'
              WHERE id = $1 AND merchant_id = $2 AND dispatch_token = $3 AND status = 'pending'
                AND attempts >= $4",
            &[&message.delivery_id, &message.merchant_id, &message.token, &max_attempts],
        )
        .await
        .map_err(query_error("fail an exhausted delivery"))?;
    if exhausted > 0 {
        return Ok(Due::Stale);
    }
    let row = conn
        .query_opt(
            "UPDATE webhook_deliveries d
                SET attempts = d.attempts + 1, last_attempt_at = now(),
                    next_attempt_at = now() + make_interval(secs => $4),
                    dispatch_token = gen_random_uuid(), updated_at = now()
               FROM webhook_endpoints e
              WHERE d.id = $1 AND d.merchant_id = $2 AND d.dispatch_token = $3
                AND d.status = 'pending' AND d.next_attempt_at <= now() + interval '1 second'
                AND e.id = d.endpoint_id AND e.merchant_id = d.merchant_id
          RETURNING d.id, d.endpoint_id, e.url, e.enabled, d.payload, d.attempts, d.dispatch_token",
            &[
                &message.delivery_id,
                &message.merchant_id,
                &message.token,
                &lease.as_secs_f64(),
            ],
        )
        .await
        .map_err(query_error("claim webhook attempt"))?;
    if let Some(row) = row {
        return Ok(Due::Claimed(Attempt {
            delivery_id: row.get("id"),
            endpoint_id: row.get("endpoint_id"),
            url: row.get("url"),
            enabled: row.get("enabled"),
            payload: row.get("payload"),
            attempt: row.get("attempts"),
            token: row.get("dispatch_token"),
        }));
    }
    // Not claimed: too early (keep the chain going with a new token), or stale.
    let row = conn
        .query_opt(
            "UPDATE webhook_deliveries SET dispatch_token = gen_random_uuid(), updated_at = now()
              WHERE id = $1 AND merchant_id = $2 AND dispatch_token = $3 AND status = 'pending'
                AND next_attempt_at > now() + interval '1 second'
          RETURNING dispatch_token, next_attempt_at",
            &[&message.delivery_id, &message.merchant_id, &message.token],
        )
        .await
        .map_err(query_error("defer webhook attempt"))?;
    Ok(match row {
        Some(row) => Due::Later {
            token: row.get(0),
            at: row.get(1),
        },
        None => Due::Stale,
    })
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Delivered {
        status_code: u16,
        response: String,
    },
    /// A non-2xx answer (`status_code`) or none (`error`); retried after `retry_in`, or
    /// failed for good when `None`.
    Failed {
        status_code: Option<u16>,
        response: Option<String>,
        error: Option<String>,
        retry_in: Option<Duration>,
    },
}

/// Records the end of `attempt`; on a failure, updates the endpoint's failure streak and
/// disables it when the streak is older than `disable_after` (`true` then).
pub async fn record_attempt(
    pool: &DbPool,
    attempt: &Attempt,
    outcome: &Outcome,
    disable_after: Duration,
) -> Result<bool, DependencyError> {
    let mut conn = connection(pool).await?;
    let tx = conn.transaction().await.map_err(query_error("begin"))?;
    let disabled = match outcome {
        Outcome::Delivered {
            status_code,
            response,
        } => {
            tx.execute(
                "UPDATE webhook_deliveries
                    SET status = 'succeeded', next_attempt_at = NULL, last_status_code = $3,
                        last_response = $4, last_error = NULL, updated_at = now()
                  WHERE id = $1 AND dispatch_token = $2",
                &[
                    &attempt.delivery_id,
                    &attempt.token,
                    &i32::from(*status_code),
                    response,
                ],
            )
            .await
            .map_err(query_error("record webhook success"))?;
            tx.execute(
                "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1",
                &[&attempt.endpoint_id],
            )
            .await
            .map_err(query_error("record endpoint success"))?;
            false
        }
        Outcome::Failed {
            status_code,
            response,
            error,
            retry_in,
        } => {
            tx.execute(
                "UPDATE webhook_deliveries
                    SET status = CASE WHEN $3::float8 IS NULL THEN 'failed' ELSE 'pending' END,
                        next_attempt_at = CASE WHEN $3::float8 IS NULL THEN NULL
                                               ELSE now() + make_interval(secs => $3) END,
                        last_status_code = $4, last_response = $5, last_error = $6,
                        updated_at = now()
                  WHERE id = $1 AND dispatch_token = $2",
                &[
                    &attempt.delivery_id,
                    &attempt.token,
                    &retry_in.map(|d| d.as_secs_f64()),
                    &status_code.map(i32::from),
                    response,
                    error,
                ],
            )
            .await
            .map_err(query_error("record webhook failure"))?;
            let row = tx
                .query_one(
                    "UPDATE webhook_endpoints
                        SET failing_since = COALESCE(failing_since, now()),
                            enabled = enabled AND COALESCE(failing_since, now()) > now() - make_interval(secs => $2),
                            disabled_reason = CASE
                                WHEN enabled AND COALESCE(failing_since, now()) <= now() - make_interval(secs => $2)
                                THEN 'disabled automatically: every delivery failed since ' || to_char(COALESCE(failing_since, now()) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                                ELSE disabled_reason END,
                            updated_at = now()
                       FROM (SELECT enabled AS was_enabled FROM webhook_endpoints WHERE id = $1) before
                      WHERE id = $1
                  RETURNING before.was_enabled AND NOT enabled",
                    &[&attempt.endpoint_id, &disable_after.as_secs_f64()],
                )
                .await
                .map_err(query_error("record endpoint failure"))?;
            let disabled: bool = row
                .try_get(0)
                .map_err(query_error("read endpoint failure"))?;
            if disabled {
                // Nothing more goes to a disabled endpoint.
                tx.execute(
                    "UPDATE webhook_deliveries
                        SET status = 'failed', next_attempt_at = NULL,
                            last_error = COALESCE(last_error, 'the endpoint was disabled'),
                            updated_at = now()
                      WHERE endpoint_id = $1 AND status = 'pending'",
                    &[&attempt.endpoint_id],
                )
                .await
                .map_err(query_error("fail deliveries of a disabled endpoint"))?;
            }
            disabled
        }
    };
    tx.commit().await.map_err(query_error("commit attempt"))?;
    Ok(disabled)
}

/// Fails a claimed delivery whose endpoint is disabled.
pub async fn fail_disabled(pool: &DbPool, attempt: &Attempt) -> Result<(), DependencyError> {
    let conn = connection(pool).await?;
    conn.execute(
        "UPDATE webhook_deliveries
            SET status = 'failed', next_attempt_at = NULL, attempts = attempts - 1,
                last_error = 'the endpoint is disabled', updated_at = now()
          WHERE id = $1 AND dispatch_token = $2",
        &[&attempt.delivery_id, &attempt.token],
    )
    .await
    .map_err(query_error("fail delivery of a disabled endpoint"))?;
    Ok(())
}

/// Pending deliveries whose next attempt is overdue by more than `overdue` (their message
/// was lost, or their dispatcher died mid-attempt), not re-sent in the last `resend_every`:
/// their messages (with their current token) are returned to be sent again. The token is
/// kept, so that a message delayed in a backlog still counts when it arrives; whichever
/// arrives first claims the attempt and the other is stale.
pub async fn sweep(
    pool: &DbPool,
    overdue: Duration,
    resend_every: Duration,
    batch: i64,
) -> Result<Vec<DeliveryMessage>, DependencyError> {
    let conn = connection(pool).await?;
    let rows = conn
        .query(
            "UPDATE webhook_deliveries d
                SET swept_at = now(), updated_at = now()
               FROM (SELECT id FROM webhook_deliveries
                      WHERE status = 'pending'
                        AND next_attempt_at < now() - make_interval(secs => $1)
                        AND (swept_at IS NULL OR swept_at < now() - make_interval(secs => $2))
                      ORDER BY next_attempt_at
                      LIMIT $3
                      FOR UPDATE SKIP LOCKED) due
              WHERE d.id = due.id
          RETURNING d.id, d.merchant_id, d.dispatch_token",
            &[&overdue.as_secs_f64(), &resend_every.as_secs_f64(), &batch],
        )
        .await
        .map_err(query_error("sweep webhook deliveries"))?;
    Ok(rows
        .iter()
        .map(|row| DeliveryMessage {
            delivery_id: row.get(0),
            merchant_id: row.get(1),
            token: row.get(2),
        })
        .collect())
}
