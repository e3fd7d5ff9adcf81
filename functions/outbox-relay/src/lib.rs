//! `outbox-relay`: on a schedule, publishes outbox events whose publication failed when they
//! were written (a run message SQS refused at launch, say), so that no event is ever lost, and
//! fails runs that stalled in `processing`, so that no run stays unfinished for ever.

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
    let failed =
        docbundle::infra::db::runs::fail_stale(&state.db, state.settings.run_stale_after).await?;
    for run_id in &failed {
        tracing::warn!(%run_id, "stalled run failed by the sweep");
    }
    Ok(failed.len())
}

/// What one scheduled invocation did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledReport {
    #[serde(flatten)]
    pub relay: RelayReport,
    pub stalled_runs_failed: usize,
}

/// One scheduled invocation: the relay, then the sweep of stalled runs (each runs even when
/// the other failed; the first error is returned after both).
pub async fn scheduled_pass(state: &AppState) -> Result<ScheduledReport, DependencyError> {
    let relay = relay_due(state).await;
    let sweep = sweep_stalled_runs(state).await;
    let oldest = outbox::oldest_pending_age(&state.db).await;
    let report = ScheduledReport {
        relay: relay?,
        stalled_runs_failed: sweep?,
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
