//! Lambda entry point: one relay pass and one sweep of stalled runs per scheduled invocation.

use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    docbundle::telemetry::init();
    let state = docbundle::AppState::from_env().await?;
    let state = &state;
    let ran = lambda_runtime::run(service_fn(
        move |_event: LambdaEvent<serde_json::Value>| async move {
            let report = outbox_relay::scheduled_pass(state).await?;
            Ok::<_, lambda_runtime::Error>(report)
        },
    ))
    .await;
    docbundle::runtime::ended(ran)
}
