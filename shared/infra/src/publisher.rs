//! Publishing events: each payload to its destination's queue.

use std::collections::HashMap;

use crate::error::DependencyError;
use crate::queue::Queue;
use docbundle_domain::outbox::Destination;
use docbundle_domain::trace::TraceHeader;

/// Sends payloads to their destination's queue.
#[derive(Clone, Debug)]
pub struct Publisher {
    queues: HashMap<Destination, Queue>,
}

impl Publisher {
    pub fn new(queues: impl IntoIterator<Item = (Destination, Queue)>) -> Self {
        Publisher {
            queues: queues.into_iter().collect(),
        }
    }

    /// Sends `payload` to `destination`, as part of `trace`; returns the queue's message id.
    pub async fn publish(
        &self,
        destination: Destination,
        payload: &str,
        trace: Option<&TraceHeader>,
    ) -> Result<String, DependencyError> {
        let queue = self.queues.get(&destination).ok_or_else(|| {
            DependencyError::failed(
                "sqs",
                "publish",
                format!("no queue for destination `{destination}`"),
            )
        })?;
        // Boxed: the SDK's future is deep, and callers nest it in loops and handlers.
        Box::pin(queue.send_body(payload, trace)).await
    }

    /// Sends up to ten payloads to `destination` in one call; the indexes not sent.
    pub async fn publish_batch(
        &self,
        destination: Destination,
        payloads: &[&str],
    ) -> Result<Vec<usize>, DependencyError> {
        let queue = self.queues.get(&destination).ok_or_else(|| {
            DependencyError::failed(
                "sqs",
                "publish",
                format!("no queue for destination `{destination}`"),
            )
        })?;
        Box::pin(queue.send_batch(payloads)).await
    }
}
