//! `overdue_deliveries`: sends again the completion webhook deliveries whose message was lost
//! (or whose dispatcher died mid-attempt).

use std::time::Duration;

use docbundle_infra::db::webhooks;
use docbundle_infra::error::DependencyError;

use crate::Services;

pub const NAME: &str = "overdue_deliveries";

/// A pending delivery overdue by this much lost its message (or its dispatcher died during
/// the attempt, whose lease is the webhook timeout plus a margin): it is sent again.
pub const OVERDUE: Duration = Duration::from_secs(30);
/// A delivery sent again is not sent again before this (its message may sit in a backlog).
pub const RESEND_EVERY: Duration = Duration::from_secs(300);
const BATCH: i64 = 200;

/// Sends a fresh message for every delivery overdue by `overdue`; returns how many. A
/// message that cannot be sent now leaves its delivery overdue for the next pass.
pub async fn run(services: &Services, overdue: Duration) -> Result<usize, DependencyError> {
    let due = webhooks::sweep(&services.db, overdue, RESEND_EVERY, BATCH).await?;
    let mut sent = 0;
    for message in &due {
        let body = serde_json::to_string(message)
            .map_err(|e| DependencyError::failed("sqs", "encode delivery message", e))?;
        match services.webhook_queue.send_body(&body, None).await {
            Ok(_) => sent += 1,
            Err(e) => {
                tracing::warn!(delivery_id = %message.delivery_id, error = %e, "overdue delivery not sent; the next pass retries")
            }
        }
    }
    if !due.is_empty() {
        tracing::warn!(
            overdue = due.len(),
            sent,
            "overdue webhook deliveries sent again"
        );
    }
    Ok(sent)
}
