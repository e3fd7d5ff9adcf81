//! `dead-letters`: consumes the run queue's dead-letter queue. A message lands there when the
//! worker could not even record a run's failure on its last delivery (the database was down,
//! say); this function fails each such run with `RETRIES_EXHAUSTED`, idempotently (a run that
//! already finished is left as it is), so that no run stays `pending` or `processing` for ever.
//! A message that names no run is logged and acknowledged: it cannot be acted on.
//!
//! Redrive: a run failed here can be launched again (same configuration and seed, a new run).

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use docbundle::app::runs::{self, FailError, Moved};
use docbundle::domain::outbox::{RunMessage, WorkMessage};
use docbundle::domain::run_errors::{self, RunError};
use docbundle::AppState;

/// What happened to one dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The run was still unfinished: now `failed`.
    Failed,
    /// The run had finished meanwhile (or does not exist): nothing to do.
    AlreadyFinished,
    /// Not a run message.
    Unreadable,
}

/// Handles one batch; a message whose run could not be updated (database down) is reported
/// back, so that SQS keeps it in the dead-letter queue for the next attempt.
pub async fn handle_batch(state: &AppState, event: SqsEvent) -> SqsBatchResponse {
    docbundle::infra::sqs_batch::handle_each(&event.records, |message| async move {
        settle(state, message)
            .await
            .map(|_| ())
            .map_err(|e| format!("dead letter not settled; kept for retry: {e}"))
    })
    .await
}

/// Fails the run a dead letter names, if it is still unfinished.
pub async fn settle(
    state: &AppState,
    message: &SqsMessage,
) -> Result<Settled, docbundle::DependencyError> {
    let run: RunMessage = match docbundle::infra::sqs_batch::read(message) {
        Ok(WorkMessage::Run(run)) => run,
        Ok(WorkMessage::FanOut(fan_out)) => {
            // A batch whose fan-out kept failing: it stops reading and ends `failed` once its
            // runs have ended (the sweep would otherwise start the fan-out again for ever).
            docbundle::app::batches::fanout::give_up(state, &fan_out).await?;
            tracing::error!(batch_id = %fan_out.batch_id, "dead-lettered fan-out: the batch stops");
            return Ok(Settled::Failed);
        }
        Err(e) => {
            let body = message.body.as_deref().unwrap_or_default();
            tracing::error!(body, error = %e, "dead letter is not a run message; acknowledged");
            return Ok(Settled::Unreadable);
        }
    };
    let receives = message
        .attributes
        .get("ApproximateReceiveCount")
        .cloned()
        .unwrap_or_else(|| "?".to_owned());
    let error = RunError::new(
        run_errors::RETRIES_EXHAUSTED,
        format!(
            "the run's message exhausted its {receives} deliveries without an outcome and was dead-lettered"
        ),
    );
    match runs::fail(state, run.run_id, &error).await {
        Ok(Moved::Now) => {
            tracing::warn!(run_id = %run.run_id, "dead-lettered run failed");
            Ok(Settled::Failed)
        }
        Ok(Moved::AlreadyEnded) => Ok(Settled::AlreadyFinished),
        Err(FailError::Dependency(e)) => Err(e),
    }
}
