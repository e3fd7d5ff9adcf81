//! Worker figures:
//! 1. rendering a 10-document bundle (plus `bundle.zip`): first render in this process, then
//!    the median / p99 of warm renders;
//! 2. the worker's whole per-run cost against the real stack (claim, read configuration and
//!    seed, render, upload 11 objects, sign with Vault, upload the manifest, record), and what
//!    is left of it without rendering: the per-run overhead.
//!
//!   ./dev services && cargo bench --bench worker

use std::time::{Duration, Instant};

use bundle_worker::bundle::{render_bundle, BundleInput};
use docbundle::configuration::{self, ConfigurationBody};
use docbundle::domain::MerchantId;
use docbundle::launch::{self, LaunchRequest, Trigger};
use docbundle::queue::RunMessage;
use docbundle::render::RenderLimits;
use docbundle::{AppState, Settings};
use serde_json::{json, Value};

fn load_env() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/stack/local.env");
    docbundle_local::load_env_file(std::path::Path::new(path)).expect("stack/local.env");
}

fn ten_documents() -> Value {
    let mut documents = Vec::new();
    for i in 0..3 {
        documents.push(json!({"name": format!("statement-{i}.html"), "format": "html", "template":
            "<html><body><h1>{{ data.merchant.name }}</h1><table>{% for l in data.lines %}<tr><td>{{ loop.index }}</td><td>{{ l.description }}</td><td>{{ l.quantity }}</td><td>{{ '%.2f'|format(l.unitPrice) }}</td><td>{{ '%.2f'|format(l.quantity * l.unitPrice) }}</td></tr>{% endfor %}</table></body></html>"}));
    }
    for i in 0..3 {
        documents.push(json!({"name": format!("lines-{i}.csv"), "format": "csv", "template":
            "n,description,quantity,unitPrice\n{% for l in data.lines %}\n{{ loop.index }},{{ l.description }},{{ l.quantity }},{{ l.unitPrice }}\n{% endfor %}\n"}));
    }
    documents.push(json!({"name": "summary.json", "format": "json", "template":
        "{\"merchant\": {{ data.merchant.name }}, \"lines\": {{ data.lines|length }}, \"total\": {{ data.lines|map(attribute='unitPrice')|sum }}}"}));
    documents.push(json!({"name": "report.md", "format": "md", "template":
        "# {{ data.merchant.name }}\n\n| # | item | qty |\n|---|---|---|\n{% for l in data.lines %}\n| {{ loop.index }} | {{ l.description }} | {{ l.quantity }} |\n{% endfor %}\n"}));
    documents.push(json!({"name": "letter.txt", "format": "txt", "template":
        "Dear {{ data.merchant.name }},\n\nyour statement for {{ data.period }} lists {{ data.lines|length }} items.\n"}));
    documents.push(json!({"name": "index.html", "format": "html", "template":
        "<ul>{% for l in data.lines %}<li>{{ l.description|upper }}</li>{% endfor %}</ul>"}));
    json!({"name": "Benchmark pack", "documents": documents, "defaults": seed(200), "archive": true})
}

fn seed(lines: usize) -> Value {
    json!({
        "merchant": {"name": "Acme GmbH"},
        "period": "2026-11",
        "lines": (0..lines).map(|i| json!({"description": format!("Item {i}"), "quantity": i % 7 + 1, "unitPrice": 3.5 + i as f64})).collect::<Vec<_>>()
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let p = |q: f64| ms(samples[((samples.len() as f64 - 1.0) * q) as usize]);
    format!(
        "median {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  ({} runs)",
        p(0.5),
        p(0.9),
        p(0.99),
        samples.len()
    )
}

#[tokio::main]
async fn main() {
    load_env();
    let body: ConfigurationBody = serde_json::from_value(ten_documents()).unwrap();
    let spec =
        configuration::validate(body, &RenderLimits::default()).expect("valid configuration");
    let data = seed(200);
    let input = BundleInput {
        documents: &spec.documents,
        archive: spec.archive,
        data: &data,
        seed_hash: "bench",
        configuration_name: &spec.name,
        configuration_version: 1,
    };
    let limits = RenderLimits::default();
    let started = Instant::now();
    let first = render_bundle(&input, &limits).unwrap();
    let first_render = started.elapsed();
    let bytes: usize = first.iter().map(|a| a.bytes.len()).sum();
    let mut samples = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let _ = render_bundle(&input, &limits).unwrap();
        samples.push(started.elapsed());
    }
    println!("render 10 documents + bundle.zip (200-line seed, {} artefacts, {bytes} bytes): first {:.2} ms; warm {}", first.len(), ms(first_render), summary(samples.clone()));
    let render_median = {
        let mut s = samples;
        s.sort();
        s[s.len() / 2]
    };

    // The whole worker path against the real stack, with a queue of its own.
    let mut settings = Settings::from_env().expect("settings");
    let bootstrap = AppState::build(settings.clone()).await.unwrap();
    let sqs = {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(settings.aws_region.clone()));
        if let Some(e) = &settings.aws_endpoint_url {
            loader = loader.endpoint_url(e);
        }
        aws_sdk_sqs::Client::new(&loader.load().await)
    };
    let queue = sqs
        .create_queue()
        .queue_name(format!("bench-{}", uuid::Uuid::new_v4().simple()))
        .send()
        .await
        .expect("LocalStack up (./dev services)");
    settings.runs_queue_url = queue.queue_url.unwrap();
    drop(bootstrap);
    let state = AppState::build(settings).await.unwrap();
    docbundle::db::migrate::run(&state.settings.database_url)
        .await
        .unwrap();
    let merchant =
        MerchantId(uuid::Uuid::parse_str("11111111-1111-4111-8111-111111111111").unwrap());
    let _ = docbundle::db::merchants::insert(&state.db, merchant.0, "Merchant A")
        .await
        .unwrap();
    let config = docbundle::db::configurations::create(&state.db, merchant, &spec, "bench")
        .await
        .unwrap();

    let mut totals = Vec::new();
    for i in 0..40 {
        let mut seed = seed(200);
        seed["period"] = json!(format!("run {i}"));
        let prepared = launch::prepare(
            &state,
            LaunchRequest {
                merchant,
                configuration_id: config.id,
                seed: Some(seed),
                seed_hash: None,
                skip_validations: false,
                replay_run_id: None,
                trigger: Trigger::User {
                    subject: "bench".into(),
                },
            },
        )
        .await
        .unwrap();
        let launched = launch::commit(&state, prepared, None).await.unwrap();
        let run = launched.run.unwrap();
        let message = RunMessage {
            run_id: run.id,
            merchant_id: merchant.0,
        };
        let started = Instant::now();
        let outcome = bundle_worker::process_run(&state, &message).await.unwrap();
        let elapsed = started.elapsed();
        assert_eq!(outcome, bundle_worker::Outcome::Completed);
        if i > 0 {
            totals.push(elapsed);
        }
    }
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
