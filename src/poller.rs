//! Feeds the worker (and the webhook dispatcher) from SQS the way the Lambda event source
//! mapping does: receive a batch, hand it to `bundle_worker::handle_batch` (or
//! `webhook_dispatcher::handle_batch`), delete only the messages it did not report as
//! failed. Failed messages become visible again after the visibility timeout and, after
//! `maxReceiveCount` receives, move to the dead-letter queue.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use docbundle::AppState;
use tokio::sync::watch;

/// Converts a received SDK message into the record Lambda would deliver.
pub fn to_lambda_record(
    message: aws_sdk_sqs::types::Message,
    queue_arn: &str,
    region: &str,
) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = message.message_id;
    record.receipt_handle = message.receipt_handle;
    record.body = message.body;
    record.md5_of_body = message.md5_of_body;
    record.attributes = message
        .attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.as_str().to_owned(), v))
        .collect();
    record.event_source = Some("aws:sqs".to_owned());
    record.event_source_arn = Some(queue_arn.to_owned());
    record.aws_region = Some(region.to_owned());
    record
}

/// `http://host/queue/us-east-1/000000000000/name` (or `.../000000000000/name`) → an ARN.
pub fn queue_arn(queue_url: &str, region: &str) -> String {
    let mut parts = queue_url.trim_end_matches('/').rsplit('/');
    let name = parts.next().unwrap_or("queue");
    let account = parts.next().unwrap_or("000000000000");
    format!("arn:aws:sqs:{region}:{account}:{name}")
}

/// Which function a queue feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    /// `bundle-worker`, on the run queue.
    Worker,
    /// `webhook-dispatcher`, on the webhook delivery queue.
    Dispatcher,
    /// `bundle-worker`, on the batch queue (its own event source, its own concurrency).
    BatchWorker,
}

/// Receives one batch of the run queue, runs the worker on it and deletes the successes.
/// Returns `(received, failed)`.
pub async fn poll_once(state: &AppState, wait: Duration) -> anyhow::Result<(usize, usize)> {
    poll(state, Consumer::Worker, wait).await
}

/// Receives one batch of `consumer`'s queue, hands it to it and deletes the successes.
pub async fn poll(
    state: &AppState,
    consumer: Consumer,
    wait: Duration,
) -> anyhow::Result<(usize, usize)> {
    let queue = match consumer {
        Consumer::Worker => &state.queue,
        Consumer::Dispatcher => &state.webhook_queue,
        Consumer::BatchWorker => &state.batch_queue,
    };
    let region = state.settings.aws_region.clone();
    let arn = queue_arn(queue.queue_url(), &region);
    let messages = queue.receive(10, wait).await?;
    if messages.is_empty() {
        return Ok((0, 0));
    }
    let mut event = SqsEvent::default();
    event.records = messages
        .into_iter()
        .map(|m| to_lambda_record(m, &arn, &region))
        .collect();
    let receipts: Vec<(String, String)> = event
        .records
        .iter()
        .filter_map(|r| Some((r.message_id.clone()?, r.receipt_handle.clone()?)))
        .collect();
    let received = event.records.len();
    let response = match consumer {
        Consumer::Worker | Consumer::BatchWorker => bundle_worker::handle_batch(state, event).await,
        Consumer::Dispatcher => webhook_dispatcher::handle_batch(state, event).await,
    };
    let failed: std::collections::HashSet<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    let handled: Vec<String> = receipts
        .iter()
        .filter(|(id, _)| !failed.contains(id.as_str()))
        .map(|(_, receipt)| receipt.clone())
        .collect();
    match queue.delete_batch(&handled).await {
        Ok(undeleted) if !undeleted.is_empty() => {
            tracing::warn!(count = undeleted.len(), "some handled messages could not be deleted; they will be redelivered and acknowledged");
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "could not delete handled messages; they will be redelivered and acknowledged")
        }
    }
    Ok((received, failed.len()))
}

/// Polls until `shutdown` flips, with `concurrency` batches in flight at most.
///
/// A poll in progress is never abandoned: SQS may hand messages to a long poll whose client
/// has gone, and they would stay invisible for the whole visibility timeout. Shutdown waits
/// for the current polls (at most their wait time) and their batches instead.
pub async fn run(state: AppState, concurrency: usize, shutdown: watch::Receiver<bool>) {
    run_consumer(state, Consumer::Worker, concurrency, shutdown).await
}

/// [`run`] for any consumer.
pub async fn run_consumer(
    state: AppState,
    consumer: Consumer,
    concurrency: usize,
    shutdown: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let state = state.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            while !*shutdown.borrow() {
                if let Err(e) = poll(&state, consumer, POLL_WAIT).await {
                    tracing::warn!(error = %e, "queue poll failed; retrying shortly");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Long-poll wait of the local poller: short, so that shutdown is quick.
pub const POLL_WAIT: Duration = Duration::from_secs(3);

/// Runs the scheduled pass (outbox relay, stalled-run and overdue-delivery sweeps) every `every` until `shutdown`
/// flips, as the scheduled Lambda would.
pub async fn run_relay(state: AppState, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = ticker.tick() => {
                if let Err(e) = docbundle::app::jobs::scheduled_pass(&state).await {
                    tracing::warn!(error = %e, "scheduled pass failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_urls_map_to_arns() {
        assert_eq!(
            queue_arn(
                "http://127.0.0.1:4566/queue/us-east-1/000000000000/docbundle-runs",
                "us-east-1"
            ),
            "arn:aws:sqs:us-east-1:000000000000:docbundle-runs"
        );
        assert_eq!(
            queue_arn(
                "https://sqs.eu-west-1.amazonaws.com/123456789012/runs",
                "eu-west-1"
            ),
            "arn:aws:sqs:eu-west-1:123456789012:runs"
        );
    }
}
