//! Lambda entry point: runs one relay pass per scheduled invocation.

use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    docbundle::telemetry::init();
    let state = docbundle::AppState::from_env().await?;
    let state = &state;
    lambda_runtime::run(service_fn(
        move |_event: LambdaEvent<serde_json::Value>| async move {
            let report = outbox_relay::relay_due(state).await?;
            Ok::<_, lambda_runtime::Error>(report)
        },
    ))
    .await
}
