//! `scheduler`: once a minute, one pass of every periodic job (`docbundle::app::jobs`): the
//! outbox relay, the stalled-run sweep, the overdue-delivery sweep, sequencing and checkpoint
//! signing; then, until 10 s before the invocation's deadline, the transparency log's
//! sequencer every `SEQUENCER_INTERVAL_MS` (default 1000; 0: only in the pass).

use std::time::{Duration, Instant};

use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    docbundle::telemetry::init();
    let services = docbundle::app::Services::from_env().await?;
    let services = &services;
    let every = std::env::var("SEQUENCER_INTERVAL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1000);
    let ran = lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let report = docbundle::app::jobs::scheduled_pass(services).await?;
            let mut sequenced = None;
            if every > 0 {
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let left = Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
                let until = Instant::now() + left.saturating_sub(Duration::from_secs(10));
                sequenced = Some(
                    docbundle::app::jobs::run(
                        docbundle::app::jobs::sequencer::NAME,
                        docbundle::app::jobs::sequencer::run_until(
                            services,
                            until,
                            Duration::from_millis(every),
                        ),
                    )
                    .await?,
                );
            }
            Ok::<_, lambda_runtime::Error>(serde_json::json!({
                "pass": report,
                "sequencer": sequenced,
            }))
        },
    ))
    .await;
    docbundle::runtime::ended(ran)
}
