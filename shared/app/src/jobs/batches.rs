//! `batches`: looks after running batches — a fan-out that went silent (its message lost, its
//! worker killed past the lease) is queued again from its cursor, and a batch whose runs have
//! all ended but that no run's end managed to finish is finished. Nothing stays `running` for
//! ever.

use std::time::Duration;

use docbundle_infra::db::batches;
use docbundle_infra::error::DependencyError;

use crate::Services;

pub const NAME: &str = "batches";

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchesReport {
    pub fan_outs_requeued: usize,
    pub batches_finished: usize,
}

/// A fan-out silent for this long (twice its slice, and never less than two minutes) is
/// started again.
pub fn silent_after(services: &Services) -> Duration {
    (services.settings.batch_limits.fan_out_slice * 2).max(Duration::from_secs(120))
}

pub async fn run(services: &Services) -> Result<BatchesReport, DependencyError> {
    let (stalled, finishable) =
        batches::needing_attention(&services.db, silent_after(services)).await?;
    let mut report = BatchesReport::default();
    for (batch_id, merchant) in stalled {
        tracing::warn!(%batch_id, "fan-out silent; queued again from its cursor");
        Box::pin(crate::batches::fanout::requeue(
            services, batch_id, merchant,
        ))
        .await?;
        report.fan_outs_requeued += 1;
    }
    for batch_id in finishable {
        if crate::batches::finish::finish(services, batch_id)
            .await?
            .is_some()
        {
            report.batches_finished += 1;
        }
    }
    Ok(report)
}
