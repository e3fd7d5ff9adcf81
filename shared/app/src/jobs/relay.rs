//! `relay`: publishes the outbox events whose publication failed when they were written (a run
//! message SQS refused at launch, say), so that no event is ever lost.

use std::time::Duration;

use docbundle_infra::db::outbox::{self, RelayReport};
use docbundle_infra::error::DependencyError;

use crate::Services;

pub const NAME: &str = "relay";

/// Rows younger than this are still being sent by the launch that wrote them.
pub const MIN_AGE: Duration = Duration::from_secs(5);
const BATCH: i64 = 200;

/// Sends what is due, in batches, until nothing is left.
pub async fn run(services: &Services) -> Result<RelayReport, DependencyError> {
    let mut total = RelayReport::default();
    loop {
        let report = outbox::relay(&services.db, &services.publisher, MIN_AGE, BATCH).await?;
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
