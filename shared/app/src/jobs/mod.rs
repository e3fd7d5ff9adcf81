//! The periodic jobs, each a named unit with one pass ([`relay`], [`stalled_runs`],
//! [`overdue_deliveries`], [`checkpoints`], [`batches`], [`erasures`], [`retention`]; [`sequencer`] loops between passes): its name is
//! on every log line it writes (the `job` span field) and on its metrics (the `Job`
//! dimension). The `scheduler` function runs
//! [`scheduled_pass`] once a minute; a job that needs a schedule of its own is one more
//! function calling its `run`.

pub mod batches;
pub mod checkpoints;
pub mod erasures;
pub mod overdue_deliveries;
pub mod relay;
pub mod retention;
pub mod sequencer;
pub mod stalled_runs;

use std::future::Future;

use docbundle_infra::db::outbox::{self, RelayReport};
use docbundle_infra::error::DependencyError;
use docbundle_infra::metrics::{emit, Unit};
use tracing::Instrument;

use crate::Services;

/// What one scheduled pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledReport {
    #[serde(flatten)]
    pub relay: RelayReport,
    pub stalled_runs_failed: usize,
    pub overdue_deliveries_sent: usize,
    /// Transparency checkpoints signed (one per merchant whose log grew).
    pub checkpoints_issued: usize,
    pub batches: batches::BatchesReport,
    pub erasures: crate::erasures::ErasuresReport,
    pub retention: crate::retention::RetentionReport,
}

/// Runs one pass of the job `name`, its log lines carrying the name, and measures it
/// (`JobDuration`, `JobFailed` with the `Job` dimension).
pub async fn run<T>(
    name: &'static str,
    pass: impl Future<Output = Result<T, DependencyError>>,
) -> Result<T, DependencyError> {
    let started = std::time::Instant::now();
    let result = pass
        .instrument(tracing::info_span!("job", job = name))
        .await;
    if let Err(e) = &result {
        tracing::error!(job = name, error = %e, "job pass failed");
    }
    emit(
        &[("Job", name)],
        &[
            (
                "JobDuration",
                started.elapsed().as_secs_f64() * 1000.0,
                Unit::Milliseconds,
            ),
            (
                "JobFailed",
                f64::from(u8::from(result.is_err())),
                Unit::Count,
            ),
        ],
        &[],
    );
    result
}

/// Every job once, each even when another failed (the first error is returned after all).
pub async fn scheduled_pass(services: &Services) -> Result<ScheduledReport, DependencyError> {
    let relay = run(relay::NAME, relay::run(services)).await;
    let stalled = run(stalled_runs::NAME, stalled_runs::run(services)).await;
    let deliveries = run(
        overdue_deliveries::NAME,
        overdue_deliveries::run(services, overdue_deliveries::OVERDUE),
    )
    .await;
    // Every pass signs the logs that grew: a checkpoint at least once a schedule period while
    // a log grows, one Vault signature per merchant however many runs completed.
    let checkpoints = run(checkpoints::NAME, checkpoints::run(services)).await;
    let batches = run(batches::NAME, Box::pin(batches::run(services))).await;
    let erasures = run(erasures::NAME, Box::pin(erasures::run(services))).await;
    let retention = run(retention::NAME, Box::pin(retention::run(services))).await;
    let oldest = outbox::oldest_pending_age(&services.db).await;
    let oldest_log_entry = crate::transparency::oldest_pending_age(services).await;
    let below_quorum = crate::transparency::witnesses::below_quorum(services).await;
    let report = ScheduledReport {
        relay: relay?,
        stalled_runs_failed: stalled?,
        overdue_deliveries_sent: deliveries?,
        checkpoints_issued: checkpoints?,
        batches: batches?,
        erasures: erasures?,
        retention: retention?,
    };
    // What the alarms watch: events waiting to be published, log entries waiting to be
    // integrated, checkpoints short of their cosignatures, and runs the sweep had to fail.
    emit(
        &[("Service", "scheduler")],
        &[
            (
                "OutboxOldestPendingAge",
                oldest?.unwrap_or(0.0),
                Unit::Seconds,
            ),
            (
                "TransparencyOldestPendingAge",
                oldest_log_entry?,
                Unit::Seconds,
            ),
            // Logs whose newest checkpoint lacks the witnesses' quorum of cosignatures.
            ("CheckpointsBelowQuorum", below_quorum? as f64, Unit::Count),
            (
                "StalledRunsFailed",
                report.stalled_runs_failed as f64,
                Unit::Count,
            ),
            (
                "RunsExpired",
                report.retention.runs_expired as f64,
                Unit::Count,
            ),
            (
                "ArtefactPurgesFailed",
                report.retention.purges_failed as f64,
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
