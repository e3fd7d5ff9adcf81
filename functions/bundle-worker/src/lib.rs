//! `bundle-worker`: the SQS batch handler that turns run messages into rendered, signed bundles
//! (the use-case is `docbundle::app::runs`; this crate adapts SQS to it).
//!
//! Answers with `SqsBatchResponse` naming only the messages that hit a transient fault, so SQS
//! redelivers just those (ReportBatchItemFailures), seconds later (a back-off by receive
//! count), and after `maxReceiveCount` moves them to the dead-letter queue. While a run is
//! worked on, a heartbeat keeps its message leased, so a crash costs one lease. Permanent
//! faults (a template that fails on this seed) mark the run
//! `failed` and are acknowledged.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use docbundle::domain::outbox::RunMessage;
use docbundle::infra::sqs_batch::Delivery;
use docbundle::telemetry::TraceHeader;
use docbundle::AppState;
use tracing::Instrument;

pub use docbundle::app::runs::{process_run, Outcome};

/// Handles one SQS batch, its messages concurrently, each under a lease and backed off after
/// a transient fault ([`docbundle::infra::sqs_batch`]).
pub async fn handle_batch(state: &AppState, event: SqsEvent) -> SqsBatchResponse {
    docbundle::infra::sqs_batch::handle(
        &state.queue,
        state.settings.queue_lease,
        &event.records,
        |delivery| handle_message(state, delivery),
    )
    .await
}

/// The X-Ray trace of the launch that queued this message (its `AWSTraceHeader`), so that
/// the worker's log lines name the same trace as the launch's.
pub fn trace_of(message: &SqsMessage) -> Option<TraceHeader> {
    message
        .attributes
        .get("AWSTraceHeader")
        .and_then(|raw| TraceHeader::parse(raw))
}

async fn handle_message(
    state: &AppState,
    delivery: Delivery<'_, RunMessage>,
) -> Result<(), String> {
    let message = delivery.message;
    let run = delivery.body;
    let span = tracing::info_span!(
        "run",
        run_id = %run.run_id,
        merchant_id = %run.merchant_id,
        trace = tracing::field::Empty,
    );
    if let Some(trace) = trace_of(message) {
        span.record("trace", trace.as_str());
    }
    match process_run(state, &run).instrument(span).await {
        Ok(Outcome::Unknown) => {
            tracing::warn!(run_id = %run.run_id, "message for an unknown run acknowledged");
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) => {
            docbundle::app::runs::record_retry(state, &run, &e, delivery.retry_in).await;
            Err(e.to_string())
        }
    }
}
