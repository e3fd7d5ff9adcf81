//! Load run against the real local API (`./dev up`): many launches from concurrent clients,
//! then waits until every run is `completed` and checks each has exactly one signed manifest.
//! Prints launches/s and the p50/p99 time from launch (`createdAt`) to `completedAt`.
//!
//!   cargo bench --bench launch_load            # 300 launches, 50 clients
//!   LOAD_RUNS=1000 LOAD_CLIENTS=100 cargo bench --bench launch_load
//!
//! Exits non-zero if any run is lost, failed, or lacks its manifest.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

#[tokio::main]
async fn main() {
    let api = std::env::var("LOAD_API_URL").unwrap_or_else(|_| "http://127.0.0.1:3000".to_owned());
    let issuer = std::env::var("OIDC_ISSUER_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8080/realms/docbundle".to_owned());
    let runs = env_or("LOAD_RUNS", 300);
    let clients = env_or("LOAD_CLIENTS", 50);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let token = token(&http, &issuer).await;
    let config = create_configuration(&http, &api, &token).await;

    let started = Instant::now();
    let ids = launch_all(&http, &api, &token, &config, runs, clients).await;
    let launch_secs = started.elapsed().as_secs_f64();

    let mut latencies = wait_for_all(&http, &api, &token, &ids).await;
    let total_secs = started.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), runs, "every launch made its own run");
    println!(
        "launch load: {runs} launches from {clients} clients in {launch_secs:.2} s = {:.0} launches/s; all {} completed with one signed manifest each after {total_secs:.2} s",
        runs as f64 / launch_secs,
        latencies.len()
    );
    println!(
        "launch → completed: p50 {:.0} ms  p90 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );
}

/// An access token of the local stack's `merchant-a` client.
async fn token(http: &reqwest::Client, issuer: &str) -> String {
    let token: Value = http
        .post(format!("{issuer}/protocol/openid-connect/token"))
        .basic_auth("merchant-a", Some("merchant-a-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("issuer reachable (./dev up)")
        .json()
        .await
        .unwrap();
    token["access_token"].as_str().unwrap().to_owned()
}

/// A new configuration of three text documents and the archive: its id.
async fn create_configuration(http: &reqwest::Client, api: &str, token: &str) -> String {
    let config: Value = http
        .post(format!("{api}/api/v1/configurations"))
        .bearer_auth(token)
        .json(&json!({
            "name": format!("load {}", chrono::Utc::now().to_rfc3339()),
            "documents": [
                {"name": "statement.html", "format": "html", "template": "<h1>{{ data.name }}</h1>{% for l in data.lines %}<p>{{ l }}</p>{% endfor %}"},
                {"name": "lines.csv", "format": "csv", "template": "n\n{% for l in data.lines %}\n{{ l }}\n{% endfor %}\n"},
                {"name": "summary.json", "format": "json", "template": "{\"name\": {{ data.name }}}"}
            ],
            "defaults": {"name": "x", "lines": []},
            "archive": true
        }))
        .send()
        .await
        .expect("local API reachable (./dev up)")
        .json()
        .await
        .unwrap();
    config["id"]
        .as_str()
        .expect("configuration created")
        .to_owned()
}

/// `runs` launches of `config`, at most `clients` at a time: the runs' ids.
async fn launch_all(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    config: &str,
    runs: usize,
    clients: usize,
) -> Vec<String> {
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(clients));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..runs {
        let (http, api, token, config, semaphore) = (
            http.clone(),
            api.to_owned(),
            token.to_owned(),
            config.to_owned(),
            semaphore.clone(),
        );
        tasks.spawn(async move {
            let _permit = semaphore.acquire().await.unwrap();
            let response = http
                .post(format!("{api}/api/v1/bundles"))
                .bearer_auth(&token)
                .json(&json!({"configurationId": config, "seed": {"name": format!("Merchant {i}"), "lines": [i, i + 1, i + 2]}}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 202, "launch {i}");
            let body: Value = response.json().await.unwrap();
            body["id"].as_str().unwrap().to_owned()
        });
    }
    let mut ids = Vec::with_capacity(runs);
    while let Some(id) = tasks.join_next().await {
        ids.push(id.unwrap());
    }
    ids
}

/// Waits for every run to finish, then reads each one: the milliseconds from launch to
/// completion of each (a failed run, or one without its signed manifest, panics).
async fn wait_for_all(http: &reqwest::Client, api: &str, token: &str, ids: &[String]) -> Vec<f64> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut latencies = Vec::with_capacity(ids.len());
    let mut pending = ids.to_vec();
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} runs still unfinished",
            pending.len()
        );
        let mut still = Vec::new();
        for id in pending {
            let run: Value = http
                .get(format!("{api}/api/v1/bundles/{id}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            match run["status"].as_str() {
                Some("completed") => latencies.push(completed_after(&id, &run)),
                Some("failed") => panic!("run {id} failed: {}", run["error"]),
                _ => still.push(id),
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    latencies
}

/// A completed run's milliseconds from `createdAt` to `completedAt`, once it is checked to
/// have its signed manifest and four artefacts.
fn completed_after(id: &str, run: &Value) -> f64 {
    assert!(
        run["manifest"]["signature"].is_string(),
        "run {id} has no signed manifest"
    );
    assert_eq!(
        run["artefacts"].as_array().map(Vec::len),
        Some(4),
        "run {id}"
    );
    let created = chrono::DateTime::parse_from_rfc3339(run["createdAt"].as_str().unwrap()).unwrap();
    let completed =
        chrono::DateTime::parse_from_rfc3339(run["completedAt"].as_str().unwrap()).unwrap();
    (completed - created).num_microseconds().unwrap() as f64 / 1000.0
}
