//! `webhook-dispatcher`: the completion webhooks' SQS batch handler. Each message makes (at
//! most) one attempt of one delivery: claim it, sign the stored body with every valid secret
//! of the endpoint (Standard Webhooks), send it to the endpoint's vetted address, record the
//! answer, and queue the next attempt on the retry schedule. A message that comes too early
//! (a retry hours away is several 15-minute hops) passes the baton; a stale or duplicate
//! message does nothing.
//!
//! Only a fault of our own dependencies (database, queue) fails a message, for SQS to
//! redeliver; a receiver's failure is a recorded attempt, never a failed message.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::Utc;
use docbundle::domain::inbound::{self, SourceSecrets};
use docbundle::domain::webhooks::{self, DeliveryMessage};
use docbundle::error::DependencyError;
use docbundle::infra::db::webhooks::{self as repo, Attempt, Due, Outcome};
use docbundle::AppState;
use tracing::Instrument;

/// What one message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatched {
    /// The receiver answered 2xx.
    Delivered,
    /// The attempt failed; another is queued.
    Retrying,
    /// The attempt failed and was the last (or the endpoint is disabled).
    Failed,
    /// Too early: the next hop is queued.
    Deferred,
    /// Finished, unknown or superseded: nothing done.
    Stale,
}

/// Handles one SQS batch, its messages concurrently, each under a lease and backed off after
/// a fault of our dependencies ([`docbundle::infra::sqs_batch`]).
pub async fn handle_batch(state: &AppState, event: SqsEvent) -> SqsBatchResponse {
    docbundle::infra::sqs_batch::handle(
        &state.webhook_queue,
        state.settings.queue_lease,
        &event.records,
        |delivery| handle_message(state, delivery.body),
    )
    .await
}

async fn handle_message(state: &AppState, delivery: DeliveryMessage) -> Result<(), String> {
    let span = tracing::info_span!(
        "delivery",
        delivery_id = %delivery.delivery_id,
        merchant_id = %delivery.merchant_id,
    );
    dispatch(state, &delivery)
        .instrument(span)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// How long an attempt holds its delivery: past it, the attempt is presumed dead and the
/// sweep sends the delivery again.
pub fn lease(state: &AppState) -> Duration {
    state.settings.webhook_timeout * 2 + Duration::from_secs(5)
}

/// Makes the attempt `message` stands for, if it is due and still its to make.
pub async fn dispatch(
    state: &AppState,
    message: &DeliveryMessage,
) -> Result<Dispatched, DependencyError> {
    // The first attempt, one per retry, and a margin for attempts that recorded nothing.
    let max_attempts =
        i32::try_from(state.settings.webhook_retry_schedule.len()).unwrap_or(i32::MAX - 3) + 3;
    match repo::claim(&state.db, message, lease(state), max_attempts).await? {
        Due::Stale => Ok(Dispatched::Stale),
        Due::Later { token, at } => {
            let wait = (at - Utc::now()).to_std().unwrap_or_default();
            queue(state, message, token, wait).await;
            Ok(Dispatched::Deferred)
        }
        Due::Claimed(attempt) => attempt_delivery(state, message, attempt).await,
    }
}

/// Queues the message that may make the next attempt; one that cannot be queued is sent
/// again by the sweep once its delivery is overdue.
async fn queue(state: &AppState, message: &DeliveryMessage, token: uuid::Uuid, wait: Duration) {
    let next = DeliveryMessage {
        token,
        ..message.clone()
    };
    let sent = match serde_json::to_string(&next) {
        Ok(body) => state
            .webhook_queue
            .send_body_after(&body, None, wait)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(error) = sent {
        tracing::warn!(%error, "next delivery message not queued; the sweep will send it");
    }
}

async fn attempt_delivery(
    state: &AppState,
    message: &DeliveryMessage,
    attempt: Attempt,
) -> Result<Dispatched, DependencyError> {
    if !attempt.enabled {
        repo::fail_disabled(&state.db, &attempt).await?;
        return Ok(Dispatched::Failed);
    }
    let outcome = match signed_headers(state, &attempt).await? {
        None => failed(
            state,
            &attempt,
            None,
            None,
            Some("the endpoint has no signing secret".to_owned()),
        ),
        Some(headers) => send(state, &attempt, &headers).await,
    };
    let disabled = repo::record_attempt(
        &state.db,
        &attempt,
        &outcome,
        state.settings.webhook_disable_after,
    )
    .await?;
    Ok(report(state, message, &attempt, &outcome, disabled).await)
}

/// The Standard Webhooks headers of `attempt` (`webhook-id`, `webhook-timestamp`,
/// `webhook-signature`), its payload signed with every secret of its endpoint valid at this
/// moment; `None` when the endpoint has no valid secret.
async fn signed_headers(
    state: &AppState,
    attempt: &Attempt,
) -> Result<Option<[(&'static str, String); 3]>, DependencyError> {
    let secrets: SourceSecrets = state
        .vault
        .get_secret(&webhooks::vault_path(attempt.endpoint_id))
        .await?
        .unwrap_or_default();
    let now = Utc::now();
    let id = attempt.delivery_id.to_string();
    let timestamp = now.timestamp();
    let signatures: Vec<String> = secrets
        .valid_at(now)
        .into_iter()
        .filter_map(|secret| inbound::sign(secret, &id, timestamp, attempt.payload.as_bytes()))
        .collect();
    if signatures.is_empty() {
        return Ok(None);
    }
    Ok(Some([
        ("webhook-id", id),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signatures.join(" ")),
    ]))
}

/// Sends the payload to the endpoint: a 2xx answer is delivered; any other answer, or none,
/// is a failed attempt.
async fn send(state: &AppState, attempt: &Attempt, headers: &[(&str, String)]) -> Outcome {
    match state
        .webhook_sender
        .post(&attempt.url, headers, attempt.payload.clone())
        .await
    {
        Ok(answer) if (200..300).contains(&answer.status) => Outcome::Delivered {
            status_code: answer.status,
            response: answer.body,
        },
        Ok(answer) => failed(state, attempt, Some(answer.status), Some(answer.body), None),
        Err(e) => failed(state, attempt, None, None, Some(e.0)),
    }
}

/// Logs the recorded outcome and, after a failure with a retry left and the endpoint still
/// enabled, queues the message of the next attempt.
async fn report(
    state: &AppState,
    message: &DeliveryMessage,
    attempt: &Attempt,
    outcome: &Outcome,
    disabled: bool,
) -> Dispatched {
    match outcome {
        Outcome::Delivered { status_code, .. } => {
            tracing::info!(
                attempt = attempt.attempt,
                status = status_code,
                "webhook delivered"
            );
            Dispatched::Delivered
        }
        Outcome::Failed {
            status_code,
            error,
            retry_in,
            ..
        } => {
            tracing::warn!(attempt = attempt.attempt, status = ?status_code, error = ?error, retry_in = ?retry_in, disabled, "webhook attempt failed");
            match retry_in {
                Some(wait) if !disabled => {
                    queue(state, message, attempt.token, *wait).await;
                    Dispatched::Retrying
                }
                _ => Dispatched::Failed,
            }
        }
    }
}

fn failed(
    state: &AppState,
    attempt: &Attempt,
    status_code: Option<u16>,
    response: Option<String>,
    error: Option<String>,
) -> Outcome {
    let attempts = u32::try_from(attempt.attempt).unwrap_or(u32::MAX);
    Outcome::Failed {
        status_code,
        response,
        error,
        retry_in: webhooks::next_delay(
            &state.settings.webhook_retry_schedule,
            attempts,
            webhooks::jitter(),
        ),
    }
}
