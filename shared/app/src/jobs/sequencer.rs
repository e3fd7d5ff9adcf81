//! `sequencer`: integrates the transparency-log entries completions queued
//! ([`crate::transparency::sequence_pending`]) about once a second between the scheduled
//! passes, as Sunlight and Tessera sequence: the scheduled pass integrates and signs once a
//! minute; in the rest of its minute the scheduler keeps integrating while runs complete, so
//! a completed run's entry waits about a second for its index rather than up to a minute (an
//! idle minute ends the loop after a few empty passes). Checkpoints stay once a pass (one
//! Vault signature per merchant whose log grew).

use std::time::{Duration, Instant};

use docbundle_infra::error::DependencyError;

use crate::Services;

pub const NAME: &str = "sequencer";

/// What the loop did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SequencerReport {
    pub passes: usize,
    pub entries_integrated: usize,
    pub failed_passes: usize,
}

/// Passes in a row that found nothing to integrate after which the loop ends (an idle
/// service does not keep the scheduler running; the next scheduled pass starts it again).
pub const IDLE_PASSES: usize = 5;

/// Integrates the pending entries every `every` until `until` (a pass that would start later
/// than `until - every` is not started), or until [`IDLE_PASSES`] passes in a row found
/// nothing; a failed pass is logged and the loop goes on.
pub async fn run_until(
    services: &Services,
    until: Instant,
    every: Duration,
) -> Result<SequencerReport, DependencyError> {
    let mut report = SequencerReport::default();
    let mut idle = 0;
    while Instant::now() + every <= until && idle < IDLE_PASSES {
        tokio::time::sleep(every).await;
        report.passes += 1;
        // Events a request could not publish (a queue that did not answer) go out within
        // seconds of its return, not at the next scheduled pass.
        if let Err(e) = super::relay::run(services).await {
            tracing::warn!(error = %e, "relay pass failed");
        }
        match crate::transparency::sequence_pending(services).await {
            Ok(0) => idle += 1,
            Ok(n) => {
                idle = 0;
                report.entries_integrated += n;
            }
            Err(e) => {
                report.failed_passes += 1;
                tracing::warn!(error = %e, "sequencing pass failed");
            }
        }
    }
    Ok(report)
}
