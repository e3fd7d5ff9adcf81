//! Webhook attempts, as the dispatcher makes them: claiming the attempt a message stands for
//! ([`claim`]), recording how it ended and the endpoint's failure streak ([`record_attempt`]),
//! failing a delivery to a disabled endpoint, and re-sending the messages of overdue
//! deliveries ([`sweep`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::db::{connection, query_error, DbPool};
use crate::error::DependencyError;
use docbundle_domain::webhooks::DeliveryMessage;

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
            record_success(&tx, attempt, *status_code, response).await?;
            false
        }
        Outcome::Failed {
            status_code,
            response,
            error,
            retry_in,
        } => {
            let failure = Failure {
                status_code: *status_code,
                response: response.as_deref(),
                error: error.as_deref(),
                retry_in: *retry_in,
            };
            record_failure(&tx, attempt, &failure).await?;
            let disabled = extend_failure_streak(&tx, attempt.endpoint_id, disable_after).await?;
            if disabled {
                fail_pending_of_disabled(&tx, attempt.endpoint_id).await?;
            }
            disabled
        }
    };
    tx.commit().await.map_err(query_error("commit attempt"))?;
    Ok(disabled)
}

/// The fields of [`Outcome::Failed`], borrowed.
struct Failure<'a> {
    status_code: Option<u16>,
    response: Option<&'a str>,
    error: Option<&'a str>,
    retry_in: Option<Duration>,
}

/// Marks the delivery `succeeded` and ends the endpoint's failure streak.
async fn record_success(
    tx: &Transaction<'_>,
    attempt: &Attempt,
    status_code: u16,
    response: &str,
) -> Result<(), DependencyError> {
    tx.execute(
        "UPDATE webhook_deliveries
            SET status = 'succeeded', next_attempt_at = NULL, last_status_code = $3,
                last_response = $4, last_error = NULL, updated_at = now()
          WHERE id = $1 AND dispatch_token = $2",
        &[
            &attempt.delivery_id,
            &attempt.token,
            &i32::from(status_code),
            &response,
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
    Ok(())
}

/// Records a failed attempt on its delivery: back to `pending` with its next attempt due after
/// `retry_in`, or `failed` for good when there is none.
async fn record_failure(
    tx: &Transaction<'_>,
    attempt: &Attempt,
    failure: &Failure<'_>,
) -> Result<(), DependencyError> {
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
            &failure.retry_in.map(|d| d.as_secs_f64()),
            &failure.status_code.map(i32::from),
            &failure.response,
            &failure.error,
        ],
    )
    .await
    .map_err(query_error("record webhook failure"))?;
    Ok(())
}

/// Starts or extends the endpoint's failure streak and disables the endpoint when the streak
/// is older than `disable_after`; `true` when this call disabled it.
async fn extend_failure_streak(
    tx: &Transaction<'_>,
    endpoint_id: Uuid,
    disable_after: Duration,
) -> Result<bool, DependencyError> {
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
            &[&endpoint_id, &disable_after.as_secs_f64()],
        )
        .await
        .map_err(query_error("record endpoint failure"))?;
    row.try_get(0).map_err(query_error("read endpoint failure"))
}

/// Fails every pending delivery of a disabled endpoint: nothing more goes to it.
async fn fail_pending_of_disabled(
    tx: &Transaction<'_>,
    endpoint_id: Uuid,
) -> Result<(), DependencyError> {
    tx.execute(
        "UPDATE webhook_deliveries
            SET status = 'failed', next_attempt_at = NULL,
                last_error = COALESCE(last_error, 'the endpoint was disabled'),
                updated_at = now()
          WHERE endpoint_id = $1 AND status = 'pending'",
        &[&endpoint_id],
    )
    .await
    .map_err(query_error("fail deliveries of a disabled endpoint"))?;
    Ok(())
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
