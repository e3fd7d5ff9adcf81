//! `outbox-relay`: on a schedule, publishes outbox events whose publication failed when they
//! were written (a run message SQS refused at launch, say), so that no event is ever lost, and
//! fails runs that stalled in `processing`, so that no run stays unfinished for ever, and
//! sends again the completion webhook deliveries whose message was lost (or whose dispatcher
//! died mid-attempt).

use std::time::Duration;

use docbundle::error::DependencyError;
use docbundle::infra::db::outbox::{self, RelayReport};
use docbundle::AppState;

/// Rows younger than this are still being sent by the launch that wrote them.
pub const MIN_AGE: Duration = Duration::from_secs(5);
const BATCH: i64 = 200;

/// One relay pass: sends what is due, in batches, until nothing is left.
pub async fn relay_due(state: &AppState) -> Result<RelayReport, DependencyError> {
    let mut total = RelayReport::default();
    loop {
        let report = outbox::relay(&state.db, &state.publisher, MIN_AGE, BATCH).await?;
        total.sent += report.sent;
        total.failed += report.failed;
        // Stop when a batch was not full, or when SQS keeps failing (next schedule retries).
        if report.sent + report.failed < BATCH as usize || report.failed > 0 {
            break;
        }
    }
    if total.sent + total.failed > 0 {
        tracing::info!(sent = total.sent, failed = total.failed, "outbox relayed");
    }
    Ok(total)
}

/// Fails runs that made no progress for `RUN_STALE_AFTER_SECONDS`; returns how many.
pub async fn sweep_stalled_runs(state: &AppState) -> Result<usize, DependencyError> {
    match docbundle::app::runs::expire_stalled(state).await {
        Ok(expired) => Ok(expired.runs),
        Err(docbundle::app::runs::ExpireError::Dependency(e)) => Err(e),
    }
}

/// A pending delivery overdue by this much lost its message (or its dispatcher died during
/// the attempt, whose lease is the webhook timeout plus a margin): it is sent again.
pub const DELIVERY_OVERDUE: Duration = Duration::from_secs(30);
/// A delivery the sweep sent again is not sent again before this (its message may sit in a
/// backlog).
pub const DELIVERY_RESEND_EVERY: Duration = Duration::from_secs(300);

/// Sends a fresh message for every delivery overdue by `overdue`; returns how many. A
/// message that cannot be sent now leaves its delivery overdue for the next pass.
pub async fn sweep_deliveries(
    state: &AppState,
    overdue: Duration,
) -> Result<usize, DependencyError> {
    let due =
        docbundle::infra::db::webhooks::sweep(&state.db, overdue, DELIVERY_RESEND_EVERY, BATCH)
            .await?;
    let mut sent = 0;
    for message in &due {
        let body = serde_json::to_string(message)
            .map_err(|e| DependencyError::failed("sqs", "encode delivery message", e))?;
        match state.webhook_queue.send_body(&body, None).await {
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

/// What one scheduled invocation did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledReport {
    #[serde(flatten)]
    pub relay: RelayReport,
    pub stalled_runs_failed: usize,
    pub overdue_deliveries_sent: usize,
    /// Transparency checkpoints signed (one per merchant whose log grew).
    pub checkpoints_issued: usize,
}

/// One scheduled invocation: the relay, then the sweep of stalled runs (each runs even when
/// the other failed; the first error is returned after both).
pub async fn scheduled_pass(state: &AppState) -> Result<ScheduledReport, DependencyError> {
    let relay = relay_due(state).await;
    let sweep = sweep_stalled_runs(state).await;
    let deliveries = sweep_deliveries(state, DELIVERY_OVERDUE).await;
    // Every pass signs the logs that grew: a checkpoint at least once a schedule period while
    // a log grows, one Vault signature per merchant however many runs completed.
    let checkpoints = docbundle::app::transparency::issue_checkpoints(state).await;
    let oldest = outbox::oldest_pending_age(&state.db).await;
    let report = ScheduledReport {
        relay: relay?,
        stalled_runs_failed: sweep?,
        overdue_deliveries_sent: deliveries?,
        checkpoints_issued: checkpoints?,
    };
    // What the alarms watch: events waiting to be published, and runs the sweep had to fail.
    use docbundle::metrics::{emit, Unit};
    emit(
        &[("Service", "outbox-relay")],
        &[
            (
                "OutboxOldestPendingAge",
                oldest?.unwrap_or(0.0),
                Unit::Seconds,
            ),
            (
                "StalledRunsFailed",
                report.stalled_runs_failed as f64,
                Unit::Count,
            ),
            (
                "OutboxPublishFailures",
                report.relay.failed as f64,
                Unit::Count,
            ),
        ],
        &[],
    );
    Ok(report)
}
