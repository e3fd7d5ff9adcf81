//! Lambda entry point: telemetry, state built once, then the SQS batch handler.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    docbundle::telemetry::init();
    let state = docbundle::AppState::from_env().await?;
    let state = &state;
    let ran = lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, lambda_runtime::Error>(webhook_dispatcher::handle_batch(state, event.payload).await)
    }))
    .await;
    docbundle::runtime::ended(ran)
}
