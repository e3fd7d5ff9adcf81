//! `scheduler`: once a minute, one pass of every periodic job (`docbundle::app::jobs`): the
//! outbox relay, the stalled-run sweep, the overdue-delivery sweep and checkpoint signing.

use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    docbundle::telemetry::init();
    let services = docbundle::app::Services::from_env().await?;
    let services = &services;
    let ran = lambda_runtime::run(service_fn(
        move |_event: LambdaEvent<serde_json::Value>| async move {
            let report = docbundle::app::jobs::scheduled_pass(services).await?;
            Ok::<_, lambda_runtime::Error>(report)
        },
    ))
    .await;
    docbundle::runtime::ended(ran)
}
