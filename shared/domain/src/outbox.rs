//! Outbox events: what the service tells its own workers, written to the transactional outbox
//! in the same transaction as the state change they announce, then published to their
//! destination. (Not the completion events merchants' endpoints hear, `crate::webhooks`, nor
//! an inbound event's type, which configurations' triggers name.)
//!
//! Adding a kind of outbox event is one impl of [`OutboxEvent`] here (its name, its destination, its
//! payload) plus its consumer; the outbox, its relay and the publisher
//! (`infra::publisher`) know no kind by name: they move payloads to destinations.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::trace::TraceHeader;
use crate::MerchantId;

/// Where events go: a queue, by the logical name stored in each outbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    /// The run queue, consumed by `bundle-worker`.
    Runs,
    /// The webhook delivery queue, consumed by `webhook-dispatcher`.
    Webhooks,
    /// The batch queue, consumed by `bundle-worker` with its own concurrency: batches' fan-out
    /// and their runs, so that a month-end batch never queues ahead of an interactive launch.
    Batches,
}

impl Destination {
    pub const ALL: [Destination; 3] = [
        Destination::Runs,
        Destination::Webhooks,
        Destination::Batches,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Destination::Runs => "runs",
            Destination::Webhooks => "webhooks",
            Destination::Batches => "batches",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == raw)
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kind of outbox event: its name, its destination and its payload (the value itself,
/// serialised).
pub trait OutboxEvent: Serialize {
    /// The kind's name, as stored in the outbox (`run.queued`).
    const KIND: &'static str;
    const DESTINATION: Destination;

    /// The run the event is about, when it is about one.
    fn run_id(&self) -> Option<Uuid>;
}

/// The body of a run message: enough for the worker to find the run; everything else it reads
/// from the database, which stays the source of truth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunMessage {
    pub run_id: Uuid,
    pub merchant_id: MerchantId,
}

/// A run was launched and waits for the worker: its message on the run queue.
impl OutboxEvent for RunMessage {
    const KIND: &'static str = "run.queued";
    const DESTINATION: Destination = Destination::Runs;

    fn run_id(&self) -> Option<Uuid> {
        Some(self.run_id)
    }
}

/// A run of a batch waits for the worker: the same message as [`RunMessage`], on the batch
/// queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BatchRunMessage(pub RunMessage);

impl OutboxEvent for BatchRunMessage {
    const KIND: &'static str = "run.queued";
    const DESTINATION: Destination = Destination::Batches;

    fn run_id(&self) -> Option<Uuid> {
        Some(self.0.run_id)
    }
}

/// A batch's fan-out is due (started, or to go on from its cursor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FanOutMessage {
    pub batch_id: Uuid,
    pub merchant_id: MerchantId,
}

impl OutboxEvent for FanOutMessage {
    const KIND: &'static str = "batch.fanout";
    const DESTINATION: Destination = Destination::Batches;

    fn run_id(&self) -> Option<Uuid> {
        None
    }
}

/// What the batch queue carries: a fan-out to go on with, or a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WorkMessage {
    Run(RunMessage),
    FanOut(FanOutMessage),
}

/// An event serialised for the outbox and the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub kind: &'static str,
    pub destination: Destination,
    pub run_id: Option<Uuid>,
    /// The message body, as the consumer reads it.
    pub payload: String,
    /// The trace of the request that caused the event, continued by its consumer.
    pub trace: Option<TraceHeader>,
}

impl Envelope {
    pub fn of<E: OutboxEvent>(event: &E) -> Result<Self, serde_json::Error> {
        let payload = serde_json::to_string(event)?;
        Ok(Envelope {
            kind: E::KIND,
            destination: E::DESTINATION,
            run_id: event.run_id(),
            payload,
            trace: None,
        })
    }

    /// The same event, as part of `trace`.
    pub fn traced(self, trace: Option<TraceHeader>) -> Self {
        Envelope { trace, ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_messages_are_run_queued_events_for_the_run_queue() {
        let message = RunMessage {
            run_id: Uuid::nil(),
            merchant_id: crate::MerchantId::new(Uuid::nil()),
        };
        let envelope = Envelope::of(&message).unwrap();
        assert_eq!(envelope.kind, "run.queued");
        assert_eq!(envelope.destination, Destination::Runs);
        assert_eq!(envelope.run_id, Some(Uuid::nil()));
        let back: RunMessage = serde_json::from_str(&envelope.payload).unwrap();
        assert_eq!(back, message);
        let batch_run = Envelope::of(&BatchRunMessage(message.clone())).unwrap();
        assert_eq!(
            batch_run.payload, envelope.payload,
            "the same body on another queue"
        );
        assert_eq!(batch_run.destination, Destination::Batches);
        let fan_out = FanOutMessage {
            batch_id: Uuid::nil(),
            merchant_id: crate::MerchantId::new(Uuid::nil()),
        };
        let read = |payload: &str| serde_json::from_str::<WorkMessage>(payload).unwrap();
        assert_eq!(read(&envelope.payload), WorkMessage::Run(message.clone()));
        assert_eq!(
            read(&Envelope::of(&fan_out).unwrap().payload),
            WorkMessage::FanOut(fan_out)
        );
        assert!(serde_json::from_str::<WorkMessage>(r#"{"runId":"x"}"#).is_err());
        for destination in Destination::ALL {
            assert_eq!(Destination::parse(destination.as_str()), Some(destination));
        }
    }
}
