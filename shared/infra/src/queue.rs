//! A queue (SQS): the run message a launch sends, and the calls that send and receive.

use std::time::Duration;

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_sqs::types::{
    Message, MessageSystemAttributeNameForSends, MessageSystemAttributeValue,
};
use aws_sdk_sqs::Client;

use docbundle_domain::outbox::RunMessage;
use tokio::sync::OnceCell;

use crate::error::{with_timeout, DependencyError};
use crate::storage::aws_error;
use crate::AwsConfig;
use docbundle_domain::trace::TraceHeader;

/// A queue, reached through a client built on first use (as [`crate::storage::ArtefactStore`]'s:
/// a cold start that sends nothing loads no root certificates).
#[derive(Clone, Debug)]
pub struct Queue {
    aws: AwsConfig,
    client: Arc<OnceCell<Client>>,
    queue_url: String,
    timeout: Duration,
}

impl Queue {
    pub fn new(aws: AwsConfig, queue_url: impl Into<String>, timeout: Duration) -> Self {
        Queue {
            aws,
            client: Arc::default(),
            queue_url: queue_url.into(),
            timeout,
        }
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async { Client::new(self.aws.get().await) })
            .await
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Sends one run message; returns the SQS message id.
    pub async fn send(&self, message: &RunMessage) -> Result<String, DependencyError> {
        let body = serde_json::to_string(message)
            .map_err(|e| DependencyError::failed("sqs", "encode run message", e))?;
        self.send_body(&body, None).await
    }

    /// Sends one message body as it is, with the X-Ray trace it belongs to as the message's
    /// `AWSTraceHeader` (which Lambda's SQS event source continues); returns the message id.
    pub async fn send_body(
        &self,
        body: &str,
        trace: Option<&TraceHeader>,
    ) -> Result<String, DependencyError> {
        self.send_body_after(body, trace, Duration::ZERO).await
    }

    /// Same, delivered after `delay` (SQS holds a message at most 15 minutes; longer delays
    /// are cut to that).
    pub async fn send_body_after(
        &self,
        body: &str,
        trace: Option<&TraceHeader>,
        delay: Duration,
    ) -> Result<String, DependencyError> {
        let trace_attribute = trace.and_then(|trace| {
            MessageSystemAttributeValue::builder()
                .data_type("String")
                .string_value(trace.as_str())
                .build()
                .ok()
        });
        let request = self
            .client()
            .await
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(delay.as_secs().min(900) as i32)
            .set_message_system_attributes(trace_attribute.map(|value| {
                HashMap::from([(MessageSystemAttributeNameForSends::AwsTraceHeader, value)])
            }))
            .send();
        let output = with_timeout("sqs", "send message", self.timeout, async {
            request.await.map_err(aws_error)
        })
        .await?;
        Ok(output.message_id.unwrap_or_default())
    }

    /// Sends up to ten bodies in one call (SendMessageBatch); returns the indexes SQS refused.
    pub async fn send_batch(&self, bodies: &[&str]) -> Result<Vec<usize>, DependencyError> {
        if bodies.is_empty() {
            return Ok(Vec::new());
        }
        let entries: Vec<_> = bodies
            .iter()
            .enumerate()
            .filter_map(|(i, body)| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(*body)
                    .build()
                    .ok()
            })
            .collect();
        let request = self
            .client()
            .await
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send();
        let output = with_timeout("sqs", "send batch", self.timeout, async {
            request.await.map_err(aws_error)
        })
        .await?;
        Ok(refused(&output.failed, Some))
    }

    /// Long-polls for up to `max` messages (1..=10), waiting at most `wait`.
    pub async fn receive(&self, max: i32, wait: Duration) -> Result<Vec<Message>, DependencyError> {
        let wait = Duration::from_secs(wait.as_secs().min(20));
        // The long poll itself may take `wait`: the client's operation timeout must not cut it
        // short, or SQS hands messages to a connection that is already gone.
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .operation_timeout(self.timeout + wait)
            .operation_attempt_timeout(self.timeout + wait)
            .build();
        let request = self
            .client()
            .await
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(wait.as_secs() as i32)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .customize()
            .config_override(aws_sdk_sqs::config::Builder::default().timeout_config(timeouts))
            .send();
        let output = with_timeout(
            "sqs",
            "receive",
            self.timeout + wait + Duration::from_secs(1),
            async { request.await.map_err(aws_error) },
        )
        .await?;
        Ok(output.messages.unwrap_or_default())
    }

    /// Deletes up to ten messages in one call; returns the receipt handles that failed.
    pub async fn delete_batch(
        &self,
        receipt_handles: &[String],
    ) -> Result<Vec<String>, DependencyError> {
        if receipt_handles.is_empty() {
            return Ok(Vec::new());
        }
        let entries: Vec<_> = receipt_handles
            .iter()
            .enumerate()
            .filter_map(|(i, handle)| {
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .build()
                    .ok()
            })
            .collect();
        let request = self
            .client()
            .await
            .delete_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send();
        let output = with_timeout("sqs", "delete batch", self.timeout, async {
            request.await.map_err(aws_error)
        })
        .await?;
        Ok(refused(&output.failed, |i| receipt_handles.get(i).cloned()))
    }

    /// Sets when each message (by receipt handle) becomes visible again, up to ten per call:
    /// a lease on messages being worked on, or a retry's back-off. Returns the receipt handles
    /// SQS refused (a message already deleted, a handle gone stale).
    pub async fn change_visibility_batch(
        &self,
        entries: &[(String, Duration)],
    ) -> Result<Vec<String>, DependencyError> {
        let mut unchanged = Vec::new();
        for chunk in entries.chunks(10) {
            let request_entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, (handle, visible_in))| {
                    aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        // SQS takes 0 to 43 200 s (12 h).
                        .visibility_timeout(visible_in.as_secs().min(43_200) as i32)
                        .build()
                        .ok()
                })
                .collect();
            let request = self
                .client()
                .await
                .change_message_visibility_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(request_entries))
                .send();
            let output = with_timeout("sqs", "change visibility", self.timeout, async {
                request.await.map_err(aws_error)
            })
            .await?;
            unchanged.extend(refused(&output.failed, |i| {
                chunk.get(i).map(|(handle, _)| handle.clone())
            }));
        }
        Ok(unchanged)
    }

    pub async fn delete(&self, receipt_handle: &str) -> Result<(), DependencyError> {
        let request = self
            .client()
            .await
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .send();
        with_timeout("sqs", "delete", self.timeout, async {
            request.await.map_err(aws_error)
        })
        .await?;
        Ok(())
    }
}

/// The receipt handles of a batch call's failed entries (each entry's id is its index in the
/// batch; `handle` gives the handle at an index).
fn refused<T>(
    failed: &[aws_sdk_sqs::types::BatchResultErrorEntry],
    handle: impl Fn(usize) -> Option<T>,
) -> Vec<T> {
    failed
        .iter()
        .filter_map(|f| f.id.parse::<usize>().ok())
        .filter_map(handle)
        .collect()
}
