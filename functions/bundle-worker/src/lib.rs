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
use docbundle::domain::outbox::WorkMessage;
use docbundle::infra::sqs_batch::Delivery;
use docbundle::telemetry::TraceHeader;
use docbundle::AppState;
use tracing::Instrument;

pub use docbundle::app::runs::{process_run, Outcome};

/// Handles one SQS batch, its messages concurrently, each under a lease and backed off after
/// a transient fault ([`docbundle::infra::sqs_batch`]). The function hears two queues: the
/// run queue and the batch queue (fan-outs and batch runs, with its own concurrency); the
/// batch's source ARN says which one its leases are taken on.
pub async fn handle_batch(state: &AppState, event: SqsEvent) -> SqsBatchResponse {
    let batch = from_queue(&event, state.batch_queue.queue_url())
        && state.batch_queue.queue_url() != state.queue.queue_url();
    let queue = if batch {
        &state.batch_queue
    } else {
        &state.queue
    };
    docbundle::infra::sqs_batch::handle(
        queue,
        state.settings.queue_lease,
        &event.records,
        |delivery| handle_message(state, delivery, batch),
    )
    .await
}

/// Whether the batch's messages come from the queue at `queue_url` (its ARN ends with the
/// queue's name; Lambda delivers one source per batch).
pub fn from_queue(event: &SqsEvent, queue_url: &str) -> bool {
    let name = queue_url
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    event.records.first().is_some_and(|record| {
        record
            .event_source_arn
            .as_deref()
            .is_some_and(|arn| arn.rsplit(':').next() == Some(name))
    })
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
    delivery: Delivery<'_, WorkMessage>,
    batch: bool,
) -> Result<(), String> {
    let message = delivery.message;
    let run = match delivery.body {
        WorkMessage::Run(run) => run,
        WorkMessage::FanOut(fan_out) => {
            let span = tracing::info_span!("fan_out", batch_id = %fan_out.batch_id, merchant_id = %fan_out.merchant_id);
            return match Box::pin(docbundle::app::batches::fanout::fan_out(state, &fan_out))
                .instrument(span)
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => {
                    tracing::warn!(batch_id = %fan_out.batch_id, error = %e, "fan-out interrupted; it resumes from its cursor");
                    Err(e.to_string())
                }
            };
        }
    };
    let span = tracing::info_span!(
        "run",
        run_id = %run.run_id,
        merchant_id = %run.merchant_id,
        trace = tracing::field::Empty,
    );
    if let Some(trace) = trace_of(message) {
        span.record("trace", trace.as_str());
    }
    // Interactive runs first: a batch run waits for its lane ([`docbundle::app::lanes`]).
    let (_interactive, _batch) = if batch {
        (None, Some(state.lanes.batch().await))
    } else {
        (Some(state.lanes.interactive()), None)
    };
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
