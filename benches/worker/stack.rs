//! Figure 2 of the worker benchmark: the worker's whole per-run cost against the real stack
//! (`./dev services`), on a queue of its own, and what is left of it beyond rendering.

use std::time::{Duration, Instant};

use docbundle::app::launch::{self, LaunchRequest, Launched, Trigger};
use docbundle::domain::configuration;
use docbundle::domain::outbox::RunMessage;
use docbundle::domain::MerchantId;
use docbundle::{AppState, Settings};
use serde_json::json;

use super::{ms, seed, summary};

/// Runs `spec` through the worker 40 times and prints the per-run figures; the overhead is
/// what is left beyond `render_median`, the warm render's median.
pub async fn worker_figures(spec: &configuration::ConfigurationSpec, render_median: Duration) {
    let (state, sqs) = worker_state().await;
    let (merchant, configuration_id) = bench_configuration(&state, spec).await;
    let mut totals = time_runs(&state, merchant, configuration_id).await;
    let _ = sqs
        .delete_queue()
        .queue_url(state.queue.queue_url())
        .send()
        .await;
    println!(
        "worker per run, end to end (render + 11 S3 puts + Vault sign + DB): {}",
        summary(totals.clone())
    );
    totals.sort();
    let overhead = totals[totals.len() / 2].saturating_sub(render_median);
    println!(
        "worker per-run overhead beyond rendering (median): {:.2} ms",
        ms(overhead)
    );
}

/// The functions' state from `stack/local.env`, with this workspace's `docbundle-local` as
/// the rendering process and a new queue of its own (the SQS client to delete it after).
async fn worker_state() -> (AppState, aws_sdk_sqs::Client) {
    let mut settings = Settings::from_env().expect("settings");
    settings.render_program = Some(env!("CARGO_BIN_EXE_docbundle-local").into());
    let bootstrap = AppState::build(settings.clone()).await.unwrap();
    let sqs = aws_sdk_sqs::Client::new(
        &docbundle::infra::aws_sdk_config(
            &settings.aws_region,
            settings.aws_endpoint_url.as_deref(),
            settings.dependency_timeout,
        )
        .await,
    );
    let queue = sqs
        .create_queue()
        .queue_name(format!("bench-{}", uuid::Uuid::new_v4().simple()))
        .send()
        .await
        .expect("LocalStack up (./dev services)");
    settings.runs_queue_url = queue.queue_url.unwrap();
    drop(bootstrap);
    let state = AppState::build(settings).await.unwrap();
    (state, sqs)
}

/// The database migrated, the local stack's merchant A, and `spec` saved as its
/// configuration: the merchant and the configuration's id.
async fn bench_configuration(
    state: &AppState,
    spec: &configuration::ConfigurationSpec,
) -> (MerchantId, uuid::Uuid) {
    docbundle::infra::db::migrate::run(&state.settings.database_url)
        .await
        .unwrap();
    let merchant =
        MerchantId::new(uuid::Uuid::parse_str("11111111-1111-4111-8111-111111111111").unwrap());
    let _ = docbundle::infra::db::merchants::insert(&state.db, merchant.as_uuid(), "Merchant A")
        .await
        .unwrap();
    let config = docbundle::infra::db::configurations::create(&state.db, merchant, spec, "bench")
        .await
        .unwrap();
    (merchant, config.id)
}

/// 40 runs launched and processed by the worker one by one: the duration of each processing
/// but the first.
async fn time_runs(
    state: &AppState,
    merchant: MerchantId,
    configuration_id: uuid::Uuid,
) -> Vec<Duration> {
    let mut totals = Vec::new();
    for i in 0..40 {
        let mut seed = seed(200);
        seed["period"] = json!(format!("run {i}"));
        let launched = launch::launch(
            state,
            LaunchRequest {
                merchant,
                configuration_id,
                seed: Some(seed),
                seed_hash: None,
                skip_validations: false,
                replay_run_id: None,
                trigger: Trigger::User {
                    subject: "bench".into(),
                },
                trace: None,
            },
            None,
        )
        .await
        .unwrap();
        let Launched::New(run) = launched else {
            panic!("a new run")
        };
        let message = RunMessage {
            run_id: run.id,
            merchant_id: merchant,
        };
        let started = Instant::now();
        let outcome = bundle_worker::process_run(state, &message).await.unwrap();
        let elapsed = started.elapsed();
        assert!(
            matches!(outcome, bundle_worker::Outcome::Completed { .. }),
            "{outcome:?}"
        );
        if i > 0 {
            totals.push(elapsed);
        }
    }
    totals
}
