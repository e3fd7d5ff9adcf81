//! `docbundle-local`: serves every HTTP function on one port and runs the worker, the webhook
//! dispatcher and the outbox relay against the real local stack, as Lambda, API Gateway, the SQS event source mapping and
//! the schedule do in AWS.
//!
//! `docbundle-local migrate` applies the migrations and exits; `docbundle-local` (or `serve`)
//! migrates, then serves on `LOCAL_API_ADDR` (default `127.0.0.1:3000`).
//! `docbundle-local openapi [PATH]` writes the OpenAPI document (`openapi.json`).
//! `docbundle-local bench-log [N]` prints what a transparency-log append costs a completion.

use std::time::Duration;

use anyhow::Context;
use docbundle::{AppState, Settings};
use tokio::sync::watch;

fn main() -> anyhow::Result<()> {
    // Templates are rendered by this binary started again as a rendering process.
    docbundle::render::sandbox::serve_if_child();
    run()
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    docbundle::telemetry::init();
    let command = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "serve".to_owned());
    if command == "openapi" {
        let path = std::env::args()
            .nth(2)
            .unwrap_or_else(|| "openapi.json".to_owned());
        std::fs::write(&path, docbundle_local::openapi_json())
            .with_context(|| format!("cannot write {path}"))?;
        println!("wrote {path}");
        return Ok(());
    }
    let vars = std::env::vars().collect();
    match command.as_str() {
        // Needs only DATABASE_URL (from the environment or the secret SECRETS_ARN names), so
        // that a release's migrations can run from anywhere that reaches the database.
        "migrate" => {
            let vars = docbundle::infra::secret_settings::resolve(vars).await?;
            let url = vars
                .get("DATABASE_URL")
                .context("missing environment variable DATABASE_URL")?;
            let applied = docbundle::infra::db::migrate::run(url).await?;
            println!("migrations applied: {applied:?}");
            Ok(())
        }
        "bench-log" => {
            let settings = Settings::from_vars_and_secret(vars)
                .await
                .context("invalid settings")?;
            let n = std::env::args()
                .nth(2)
                .map(|n| n.parse())
                .transpose()
                .context("bench-log N: N is a number of entries")?
                .unwrap_or(1000);
            docbundle_local::bench_log::run(&settings, n).await
        }
        "serve" => {
            let settings = Settings::from_vars_and_secret(vars)
                .await
                .context("invalid settings")?;
            serve(settings).await
        }
        other => anyhow::bail!(
            "unknown command `{other}` (expected `serve`, `migrate`, `openapi` or `bench-log [N]`; `docbundle verify` checks a bundle)"
        ),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    docbundle::infra::db::migrate::run(&settings.database_url).await?;
    let addr = std::env::var("LOCAL_API_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let concurrency: usize = std::env::var("LOCAL_WORKER_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let relay_every = Duration::from_secs(
        std::env::var("LOCAL_RELAY_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3),
    );
    let state = AppState::build(settings).await?;
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let (stop, stopped) = watch::channel(false);
    let poller = tokio::spawn(docbundle_local::poller::run(
        state.clone(),
        concurrency,
        stopped.clone(),
    ));
    let dispatcher = tokio::spawn(docbundle_local::poller::run_consumer(
        state.clone(),
        docbundle_local::poller::Consumer::Dispatcher,
        concurrency,
        stopped.clone(),
    ));
    // The batch queue's own consumer, as its own event source mapping with its own maximum
    // concurrency (when batches share the run queue, the worker's poller hears them).
    let batch_concurrency: usize = std::env::var("LOCAL_BATCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let batch_worker = (state.batch_queue.queue_url() != state.queue.queue_url()).then(|| {
        tokio::spawn(docbundle_local::poller::run_consumer(
            state.clone(),
            docbundle_local::poller::Consumer::BatchWorker,
            batch_concurrency,
            stopped.clone(),
        ))
    });
    let relay = tokio::spawn(docbundle_local::poller::run_relay(
        state.clone(),
        relay_every,
        stopped.clone(),
    ));
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    tracing::info!(%addr, concurrency, "local API listening");
    let mut server_stopped = stopped.clone();
    let served = axum::serve(listener, docbundle_local::app(state))
        .with_graceful_shutdown(async move {
            let _ = server_stopped.changed().await;
        })
        .await;
    let _ = (poller.await, dispatcher.await, relay.await);
    if let Some(batch_worker) = batch_worker {
        let _ = batch_worker.await;
    }
    served.context("local API server failed")
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
