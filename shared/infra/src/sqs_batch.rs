//! An SQS batch as the Lambda event source mapping (or the local poller) delivers it, handled
//! so that neither a crash nor a blip costs a queue's whole visibility timeout:
//!
//! - **a lease**: on arrival each message's visibility is cut to the lease (`QUEUE_LEASE_SECONDS`)
//!   and a heartbeat extends it every third of that while its handler works. A process that
//!   dies (a crash, a Lambda timeout) stops the heartbeat, and the message is delivered again
//!   within one lease instead of after the queue's visibility timeout, which AWS asks to be six
//!   times the function's timeout;
//! - **a back-off**: a message whose handling hit a transient fault becomes visible again after
//!   2, 4, 8 … s (by its receive count, ±20 % jitter, capped at `QUEUE_RETRY_MAX_SECONDS`), so a
//!   short outage delays work by seconds; the queue's `maxReceiveCount` still ends in the
//!   dead-letter queue;
//! - **partial failure**: the answer names only the failed messages (ReportBatchItemFailures).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::queue::Queue;

/// How messages are leased and retried.
#[derive(Debug, Clone, Copy)]
pub struct LeasePolicy {
    /// How long a message stays invisible without a heartbeat.
    pub lease: Duration,
    /// The longest back-off.
    pub retry_max: Duration,
}

/// One message, its body read as `T`, and what a failure would cost it.
pub struct Delivery<'a, T> {
    pub message: &'a SqsMessage,
    pub body: T,
    /// When it is delivered again if its handling fails now.
    pub retry_in: Duration,
}

/// A message's body read as `T`; the error says why it is not one.
pub fn read<T: DeserializeOwned>(message: &SqsMessage) -> Result<T, String> {
    let body = message.body.as_deref().unwrap_or_default();
    serde_json::from_str(body).map_err(|e| format!("the message body is unreadable: {e}"))
}

/// Handles every message of `records` concurrently under a lease on `queue`, each body read
/// as `T` (one that is not a `T` fails, so that it ends in the dead-letter queue for
/// inspection rather than vanishing); returns the batch answer naming the messages whose
/// handling failed (each backed off).
pub async fn handle<'a, T, F, Fut>(
    queue: &Queue,
    policy: LeasePolicy,
    records: &'a [SqsMessage],
    handle_one: F,
) -> SqsBatchResponse
where
    T: DeserializeOwned,
    F: Fn(Delivery<'a, T>) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let lease = Lease::start(queue, records, policy.lease).await;
    let results = futures::future::join_all(records.iter().map(|message| {
        let retry_in = backoff(receive_count(message), policy.retry_max, jitter());
        let lease = &lease;
        let handled = read::<T>(message).map(|body| {
            // Boxed: a handler's future is large (a whole run), and polling it in place would
            // take that much of the polling thread's stack.
            Box::pin(handle_one(Delivery {
                message,
                body,
                retry_in,
            }))
        });
        async move {
            let result = match handled {
                Ok(handled) => handled.await,
                Err(unreadable) => Err(unreadable),
            };
            lease
                .release(message, result.as_ref().err().map(|_| retry_in))
                .await;
            result
        }
    }))
    .await;
    drop(lease);
    response(records, results)
}

/// Handles every message of `records` in turn, without a lease: for a queue whose messages
/// settle in a moment (the dead-letter queue). Returns the batch answer naming the failed.
pub async fn handle_each<'a, F, Fut>(records: &'a [SqsMessage], handle_one: F) -> SqsBatchResponse
where
    F: Fn(&'a SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut results = Vec::with_capacity(records.len());
    for message in records {
        results.push(handle_one(message).await);
    }
    response(records, results)
}

/// The answer to an SQS batch (ReportBatchItemFailures): the messages whose handling failed,
/// for SQS to redeliver (and, after `maxReceiveCount`, to move to the dead-letter queue).
pub fn response(records: &[SqsMessage], results: Vec<Result<(), String>>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for (message, result) in records.iter().zip(results) {
        if let Err(reason) = result {
            let id = message.message_id.clone().unwrap_or_default();
            tracing::warn!(message_id = %id, %reason, "message failed; SQS will redeliver it");
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// `ApproximateReceiveCount` (1 on the first delivery).
pub fn receive_count(message: &SqsMessage) -> u32 {
    message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|count| count.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// 2, 4, 8 … s by receive count, capped at `max`, scaled by `0.8 + 0.4 × jitter` (`jitter` in
/// 0..=1) so that messages failed together do not come back together.
pub fn backoff(receive_count: u32, max: Duration, jitter: f64) -> Duration {
    let exponent = receive_count.clamp(1, 20);
    let delay = Duration::from_secs(1u64 << exponent).min(max);
    delay.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    match getrandom::fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
        Err(_) => 0.5,
    }
}

/// The batch's messages still being worked on, kept invisible by a heartbeat.
struct Lease {
    queue: Queue,
    /// Receipt handles still held. The heartbeat holds the lock while it extends them, so a
    /// release's back-off is never overwritten by an extension in flight.
    held: Arc<Mutex<Vec<String>>>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Lease {
    async fn start(queue: &Queue, records: &[SqsMessage], lease: Duration) -> Lease {
        let held: Vec<String> = records
            .iter()
            .filter_map(|m| m.receipt_handle.clone())
            .collect();
        extend(queue, &held, lease).await;
        let held = Arc::new(Mutex::new(held));
        let heartbeat = tokio::spawn(beat(queue.clone(), held.clone(), lease));
        Lease {
            queue: queue.clone(),
            held,
            heartbeat,
        }
    }

    /// Stops holding `message`; after a failure, it becomes visible again `retry_in` from now.
    async fn release(&self, message: &SqsMessage, retry_in: Option<Duration>) {
        let Some(handle) = &message.receipt_handle else {
            return;
        };
        let mut held = self.held.lock().await;
        held.retain(|h| h != handle);
        if let Some(retry_in) = retry_in {
            let entry = [(handle.clone(), retry_in)];
            if let Err(e) = self.queue.change_visibility_batch(&entry).await {
                tracing::warn!(error = %e, "could not back the message off; it returns after its lease");
            }
        }
    }
}

/// The heartbeat stops with the lease, however the batch ended: a handler dropped mid-way (a
/// shutdown, a cancelled poll) must not keep its messages invisible.
impl Drop for Lease {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// Every third of the lease, extends what is still held.
async fn beat(queue: Queue, held: Arc<Mutex<Vec<String>>>, lease: Duration) {
    let every = (lease / 3).max(Duration::from_millis(200));
    loop {
        tokio::time::sleep(every).await;
        let held = held.lock().await;
        if !held.is_empty() {
            extend(&queue, &held, lease).await;
        }
    }
}

async fn extend(queue: &Queue, handles: &[String], lease: Duration) {
    if handles.is_empty() {
        return;
    }
    let entries: Vec<(String, Duration)> = handles.iter().map(|h| (h.clone(), lease)).collect();
    match queue.change_visibility_batch(&entries).await {
        Ok(refused) if !refused.is_empty() => {
            tracing::warn!(
                count = refused.len(),
                "SQS refused to extend some messages' lease"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not extend the messages' lease"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_from_two_seconds_with_jitter_and_a_cap() {
        let max = Duration::from_secs(300);
        let exact = |count| backoff(count, max, 0.5).as_secs_f64();
        assert_eq!(
            (1..=9).map(exact).collect::<Vec<_>>(),
            vec![2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0]
        );
        assert_eq!(exact(0), 2.0, "a missing count is the first delivery");
        assert_eq!(exact(u32::MAX), 300.0);
        assert_eq!(backoff(1, max, 0.0).as_secs_f64(), 1.6);
        assert_eq!(backoff(1, max, 1.0).as_secs_f64(), 2.4);
        assert_eq!(backoff(3, max, 7.0).as_secs_f64(), 9.6, "jitter is clamped");
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..=1.0).contains(&j));
        }
    }

    #[test]
    fn the_receive_count_comes_from_the_message() {
        let mut message = SqsMessage::default();
        assert_eq!(receive_count(&message), 1);
        message
            .attributes
            .insert("ApproximateReceiveCount".into(), "4".into());
        assert_eq!(receive_count(&message), 4);
        message
            .attributes
            .insert("ApproximateReceiveCount".into(), "-3".into());
        assert_eq!(receive_count(&message), 1);
    }

    #[test]
    fn only_failed_messages_are_reported() {
        let message = |id: &str| {
            let mut m = SqsMessage::default();
            m.message_id = Some(id.into());
            m
        };
        let records = [message("a"), message("b"), message("c")];
        let answer = response(&records, vec![Ok(()), Err("s3 down".into()), Ok(())]);
        let failed: Vec<&str> = answer
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, ["b"]);
    }
}
