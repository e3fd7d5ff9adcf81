//! Processing one run, in named steps: claim it, produce its bundle ([`super::produce`]), and
//! complete or fail it. Idempotent under redelivery and concurrent duplicates: object keys
//! are deterministic, the status only moves forward through conditional updates, and a
//! finished run is acknowledged without work.

use serde_json::json;

use docbundle_domain::manifest::Artefact;
use docbundle_domain::outbox::RunMessage;
use docbundle_domain::run_errors::{self, RunError};
use docbundle_infra::db::runs::{self, BundleRun, Claim};
use docbundle_infra::error::DependencyError;

use super::produce::produce;
use super::{Completion, Moved};
use crate::Services;

/// How a message ended, when it did not need a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Completed with `documents` artefacts of `bytes` in all.
    Completed { documents: usize, bytes: u64 },
    /// Another delivery finished it first.
    AlreadyFinished,
    /// Marked `failed` for a reason a retry cannot fix.
    Failed(String),
    /// No such run (or it belongs to another merchant than the message says).
    Unknown,
}

/// Processes the run named by `message`. `Err` means a transient fault: the message must be
/// retried (SQS redelivers it, then moves it to the DLQ).
pub async fn process_run(
    services: &Services,
    message: &RunMessage,
) -> Result<Outcome, DependencyError> {
    let Some(run) = claim(services, message).await? else {
        return Ok(Outcome::Unknown);
    };
    let Ok(run) = run else {
        return Ok(Outcome::AlreadyFinished);
    };
    let started = std::time::Instant::now();
    let outcome = finish(services, &run).await;
    record_metrics(&run, started.elapsed(), &outcome);
    outcome
}

/// Produces and records the run, or fails it (for good, or because this was its last
/// attempt).
async fn finish(services: &Services, run: &BundleRun) -> Result<Outcome, DependencyError> {
    let finished = match produce(services, run).await {
        Ok(Ok(record)) => complete(services, run, record).await,
        Ok(Err(error)) => return fail(services, run, error).await,
        Err(transient) => Err(transient),
    };
    match finished {
        // The last attempt SQS will deliver: fail the run now rather than leave it
        // `processing` while its message sits in the dead-letter queue.
        Err(transient) if run.attempts >= services.settings.run_max_attempts => {
            let error = RunError::new(
                run_errors::RETRIES_EXHAUSTED,
                format!("gave up after {} attempts: {transient}", run.attempts),
            );
            fail(services, run, error).await
        }
        other => other,
    }
}

/// The run, claimed for processing: `None` when unknown (or another merchant's), `Err(())`
/// when already finished.
async fn claim(
    services: &Services,
    message: &RunMessage,
) -> Result<Option<Result<BundleRun, ()>>, DependencyError> {
    Ok(match runs::claim(&services.db, message.run_id).await? {
        Claim::Missing => None,
        Claim::Finished(_) => Some(Err(())),
        Claim::Claimed(run) if run.merchant_id != message.merchant_id => {
            tracing::error!(run_id = %run.id, "message names another merchant than the run's");
            None
        }
        Claim::Claimed(run) => Some(Ok(run)),
    })
}

/// Records artefacts and manifest and marks the run `completed`, if it still is `processing`.
async fn complete(
    services: &Services,
    run: &BundleRun,
    completion: Completion,
) -> Result<Outcome, DependencyError> {
    match super::complete(services, run, &completion).await {
        Ok(Moved::Now) => Ok(completed(&completion.artefacts)),
        Ok(Moved::AlreadyEnded) => Ok(Outcome::AlreadyFinished),
        Err(super::CompleteError::Dependency(e)) => Err(e),
    }
}

/// A run that just completed, with what it produced.
fn completed(artefacts: &[Artefact]) -> Outcome {
    Outcome::Completed {
        documents: artefacts.len(),
        bytes: artefacts.iter().map(|a| a.size).sum(),
    }
}

/// One embedded-metric line per processed run (it is the run's log line too): duration,
/// outcome and, when completed, the documents and bytes it produced.
fn record_metrics(
    run: &BundleRun,
    elapsed: std::time::Duration,
    outcome: &Result<Outcome, DependencyError>,
) {
    use docbundle_infra::metrics::{emit, Unit};
    let duration = (
        "RunDuration",
        elapsed.as_secs_f64() * 1000.0,
        Unit::Milliseconds,
    );
    let (label, metrics) = match outcome {
        Ok(Outcome::Completed { documents, bytes }) => (
            "completed",
            vec![
                duration,
                ("Documents", *documents as f64, Unit::Count),
                ("BundleBytes", *bytes as f64, Unit::Bytes),
            ],
        ),
        Ok(Outcome::Failed(_)) => ("failed", vec![duration]),
        Ok(Outcome::AlreadyFinished | Outcome::Unknown) => return,
        Err(_) => ("retried", vec![duration]),
    };
    emit(
        &[("Outcome", label)],
        &metrics,
        &[
            ("runId", json!(run.id)),
            ("merchantId", json!(run.merchant_id)),
            ("attempt", json!(run.attempts)),
        ],
    );
}

/// Fails the run for good with `error`.
async fn fail(
    services: &Services,
    run: &BundleRun,
    error: RunError,
) -> Result<Outcome, DependencyError> {
    tracing::warn!(run_id = %run.id, code = %error.code, error = %error.message, "run failed");
    match super::fail(services, run.id, &error).await {
        Ok(Moved::Now) => Ok(Outcome::Failed(error.message)),
        Ok(Moved::AlreadyEnded) => Ok(Outcome::AlreadyFinished),
        Err(super::FailError::Dependency(e)) => Err(e),
    }
}

/// Shows the retry on the run (see [`super::retry`]); best effort: the fault may be the
/// database's own.
pub async fn record_retry(
    services: &Services,
    message: &RunMessage,
    fault: &DependencyError,
    retry_in: std::time::Duration,
) {
    if let Err(e) = super::retry(services, message.run_id, fault, retry_in).await {
        tracing::warn!(run_id = %message.run_id, error = %e, "could not record the retry on the run");
    }
}
