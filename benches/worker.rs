//! Worker figures, each for rendering in supervised rendering processes (what the functions
//! do) and in this process (the engines alone), so the cost of the isolation shows:
//! 0. a 5-page PDF invoice (Typst): first render in a fresh rendering process / in this fresh
//!    process (fonts and library loading included), then warm renders; a 10-document bundle
//!    containing it; peak memory;
//! 1. rendering a 10-document text bundle (plus `bundle.zip`): first render, then the median /
//!    p99 of warm renders;
//! 2. the worker's whole per-run cost against the real stack (claim, read configuration and
//!    seed, render, upload 11 objects, sign with Vault, upload the manifest, record), and what
//!    is left of it without rendering: the per-run overhead.
//!
//!   ./dev services && cargo bench --bench worker

// Not `mod stack;`: a file beside this one would be taken for a benchmark of its own.
#[path = "worker/stack.rs"]
mod stack;
#[path = "worker/typst_alone.rs"]
mod typst_alone;

use std::time::{Duration, Instant};

use docbundle::domain::configuration::{self, ConfigurationBody};
use docbundle::domain::retention::RetentionLimits;
use docbundle::render::bundle::{render_bundle, BundleInput};
use docbundle::render::configuration::validate;
use docbundle::render::sandbox::SandboxSettings;
use docbundle::render::{Isolation, RenderLimits, Renderer};
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

fn invoice_documents() -> Vec<Value> {
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/events/samples/invoice-configuration.json"
        ))
        .unwrap(),
    )
    .unwrap();
    config["documents"].as_array().unwrap().clone()
}

fn invoice_seed(lines: usize) -> Value {
    invoice_seed_numbered(lines, 0)
}

/// Seed `n` of a run of invoices: every line's description, quantity and price differ from
/// seed `n - 1`'s (new data each time, as a month-end's customers are).
fn invoice_seed_numbered(lines: usize, n: usize) -> Value {
    json!({
        "customer": {"name": "Acme GmbH", "address": "Hauptstrasse 1, Berlin"},
        "merchant": {"name": "Acme GmbH"},
        "period": "2026-10",
        "currency": "EUR",
        "number": format!("INV-2026-{n:05}"),
        "lines": (0..lines).map(|i| json!({"description": format!("Service item {i} for customer {n}"), "quantity": (i + n) % 4 + 1, "unitPrice": 9.5 + i as f64 + n as f64 / 100.0})).collect::<Vec<_>>()
    })
}

fn peak_memory_mb() -> f64 {
    peak_memory_mb_of("self")
}

fn peak_memory_mb_of(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmHWM:")
                    .map(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
            })
        })
        .flatten()
        .map_or(0.0, |kb| kb / 1024.0)
}

fn pdf_pages(pdf: &[u8]) -> String {
    let path = std::env::temp_dir().join("docbundle-bench.pdf");
    std::fs::write(&path, pdf).unwrap();
    std::process::Command::new("pdfinfo")
        .arg(&path)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Pages:").map(|p| p.trim().to_owned()))
        })
        .unwrap_or_else(|| "?".to_owned())
}

/// A renderer as the functions build it: this workspace's `docbundle-local` as the rendering
/// process.
fn isolated() -> Renderer {
    Renderer::new(
        RenderLimits::default(),
        Isolation::Process(SandboxSettings {
            program: env!("CARGO_BIN_EXE_docbundle-local").into(),
            processes: 2,
        }),
    )
}

/// The sample's assets (`events/samples/assets/`): the `assets` map, and their bytes.
fn sample_assets() -> &'static (
    Value,
    configuration::StoredAssets,
    Vec<docbundle::render::RenderAsset>,
) {
    static ASSETS: std::sync::OnceLock<(
        Value,
        configuration::StoredAssets,
        Vec<docbundle::render::RenderAsset>,
    )> = std::sync::OnceLock::new();
    ASSETS.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/events/samples/assets");
        let mut map = serde_json::Map::new();
        let mut stored = configuration::StoredAssets::new();
        let mut assets = Vec::new();
        for name in ["docbundle-sans.ttf", "logo.png"] {
            let bytes = bytes::Bytes::from(std::fs::read(format!("{dir}/{name}")).unwrap());
            let kind = docbundle::domain::asset::inspect(&bytes).unwrap();
            let sha = docbundle::domain::digest::sha256_hex(&bytes);
            map.insert(name.to_owned(), json!(sha));
            stored.insert(sha, (kind, bytes.clone()));
            assets.push(docbundle::render::RenderAsset {
                name: name.to_owned(),
                kind,
                bytes,
            });
        }
        (Value::Object(map), stored, assets)
    })
}

/// The sample invoice's PDF document alone, validated (a trial render) by `renderer`.
fn invoice_spec(renderer: &Renderer) -> configuration::ConfigurationSpec {
    let (map, stored, _) = sample_assets();
    let body: ConfigurationBody = serde_json::from_value(json!({"name": "Invoices", "documents": [invoice_documents()[0].clone()], "defaults": invoice_seed(1), "assets": map})).unwrap();
    validate(body, stored, renderer, &RetentionLimits::default()).expect("valid PDF configuration")
}

fn invoice_input<'a>(
    spec: &'a configuration::ConfigurationSpec,
    seed: &'a Value,
) -> BundleInput<'a> {
    BundleInput {
        documents: &spec.documents,
        archive: false,
        data: seed,
        seed_hash: "bench",
        configuration_name: "Invoices",
        configuration_version: 1,
        assets: &sample_assets().2,
    }
}

/// The first PDF through `renderer` (a fresh rendering process, or this fresh process): fonts,
/// library, a trial render and a real one.
fn first_pdf(renderer: &Renderer, label: &str) {
    let started = Instant::now();
    let spec = invoice_spec(renderer);
    let seed = invoice_seed(200);
    let _ = render_bundle(&invoice_input(&spec, &seed), renderer).unwrap();
    println!(
        "[{label}] first PDF (fonts + library loading + a trial and a real render): {:.1} ms",
        ms(started.elapsed())
    );
}

fn pdf_figures(renderer: &Renderer, label: &str) {
    invoice_figures(renderer, label);
    pack_figures(renderer, label);
    memory_figures(renderer, label);
}

/// The 5-page invoice alone: the first render with data, then 20 warm ones with new data;
/// then Typst alone compiling the same 21 seeds (see `typst_alone`).
fn invoice_figures(renderer: &Renderer, label: &str) {
    let spec = invoice_spec(renderer);
    let seeds: Vec<Value> = (1..=21).map(|n| invoice_seed_numbered(200, n)).collect();
    // `validate` above already compiled once with defaults: that was the first render.
    let started = Instant::now();
    let first = render_bundle(&invoice_input(&spec, &seeds[0]), renderer).unwrap();
    let first_with_data = started.elapsed();
    let mut samples = Vec::new();
    for seed in &seeds[1..] {
        let input = invoice_input(&spec, seed);
        let started = Instant::now();
        let _ = render_bundle(&input, renderer).unwrap();
        samples.push(started.elapsed());
    }
    println!(
        "[{label}] 5-page PDF invoice ({} pages, {} bytes): first render with data {:.1} ms; warm with new data {}",
        pdf_pages(&first[0].bytes),
        first[0].bytes.len(),
        ms(first_with_data),
        summary(samples.clone())
    );
    let (_, _, assets) = sample_assets();
    let bytes = |name: &str| &assets.iter().find(|a| a.name == name).unwrap().bytes[..];
    let template = invoice_documents()[0]["template"]
        .as_str()
        .unwrap()
        .to_owned();
    let typst = typst_alone::compile_each(
        &template,
        bytes("docbundle-sans.ttf"),
        bytes("logo.png"),
        &seeds,
    );
    println!(
        "[{label}] the same invoice, Typst alone (compile + PDF, same seeds, this process): warm {}; docbundle / Typst medians: {:.2}",
        summary(typst.clone()),
        median(&samples) / median(&typst)
    );
}

fn median(samples: &[Duration]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    ms(sorted[sorted.len() / 2])
}

/// Ten documents: the PDF, its CSV, and eight text documents, plus `bundle.zip`; 20 warm
/// renders.
fn pack_figures(renderer: &Renderer, label: &str) {
    let mut documents = invoice_documents();
    documents.extend(
        ten_documents()["documents"]
            .as_array()
            .unwrap()
            .iter()
            .take(8)
            .cloned(),
    );
    let body: ConfigurationBody = serde_json::from_value(json!({"name": "Pack", "documents": documents, "archive": true, "defaults": invoice_seed(3), "assets": sample_assets().0})).unwrap();
    let spec = validate(
        body,
        &sample_assets().1,
        renderer,
        &RetentionLimits::default(),
    )
    .expect("valid bundle");
    let mut samples = Vec::new();
    for i in 0..20 {
        let mut seed = invoice_seed(200);
        seed["number"] = json!(format!("PACK-{i}"));
        let input = BundleInput {
            documents: &spec.documents,
            archive: true,
            data: &seed,
            seed_hash: "bench",
            configuration_name: "Pack",
            configuration_version: 1,
            assets: &sample_assets().2,
        };
        let started = Instant::now();
        let artefacts = render_bundle(&input, renderer).unwrap();
        samples.push(started.elapsed());
        assert_eq!(artefacts.len(), 11);
    }
    println!(
        "[{label}] 10-document bundle with the 5-page PDF + bundle.zip: warm {}",
        summary(samples)
    );
}

/// Peak memory so far: of this process, and of the idle rendering processes when isolated.
fn memory_figures(renderer: &Renderer, label: &str) {
    match renderer.sandbox() {
        Some(sandbox) => {
            let peaks: Vec<String> = sandbox
                .idle_pids()
                .iter()
                .map(|pid| format!("{:.1} MB", peak_memory_mb_of(&pid.to_string())))
                .collect();
            println!(
                "[{label}] peak memory (VmHWM): this process {:.1} MB; rendering processes {}",
                peak_memory_mb(),
                peaks.join(", ")
            );
        }
        None => println!(
            "[{label}] peak memory of this process so far (VmHWM): {:.1} MB",
            peak_memory_mb()
        ),
    }
}

/// A text bundle of ten documents: first render, then 200 warm ones; the warm median.
fn text_figures(renderer: &Renderer, label: &str) -> Duration {
    let body: ConfigurationBody = serde_json::from_value(ten_documents()).unwrap();
    let spec = validate(
        body,
        &Default::default(),
        renderer,
        &RetentionLimits::default(),
    )
    .expect("valid configuration");
    let data = seed(200);
    let input = BundleInput {
        documents: &spec.documents,
        archive: spec.archive,
        data: &data,
        seed_hash: "bench",
        configuration_name: &spec.name,
        configuration_version: 1,
        assets: &[],
    };
    let started = Instant::now();
    let first = render_bundle(&input, renderer).unwrap();
    let first_render = started.elapsed();
    let bytes: usize = first.iter().map(|a| a.bytes.len()).sum();
    let mut samples = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let _ = render_bundle(&input, renderer).unwrap();
        samples.push(started.elapsed());
    }
    println!("[{label}] render 10 documents + bundle.zip (200-line seed, {} artefacts, {bytes} bytes): first {:.2} ms; warm {}", first.len(), ms(first_render), summary(samples.clone()));
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main]
async fn main() {
    load_env();
    // Isolated first, while this process has loaded no fonts: the in-process figures then
    // still show a fresh process's first render.
    let isolated = isolated();
    first_pdf(&isolated, "isolated");
    pdf_figures(&isolated, "isolated");
    let in_process = Renderer::in_process(RenderLimits::default());
    first_pdf(&in_process, "in-process");
    pdf_figures(&in_process, "in-process");
    let render_median = text_figures(&isolated, "isolated");
    text_figures(&in_process, "in-process");
    let body: ConfigurationBody = serde_json::from_value(ten_documents()).unwrap();
    let spec = validate(
        body,
        &Default::default(),
        &isolated,
        &RetentionLimits::default(),
    )
    .expect("valid configuration");

    // The whole worker path against the real stack, with a queue of its own.
    stack::worker_figures(&spec, render_median).await;
}
