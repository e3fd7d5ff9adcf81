//! The local API: every HTTP function's routes on one port, plus what AWS would otherwise do —
//! polling the run queue for the worker and the webhook queue for the dispatcher (with
//! partial-batch semantics) and running the outbox relay on a schedule. The handlers are the functions' own; nothing is reimplemented here.

pub mod bench_log;
pub mod poller;
pub mod verify;

use axum::Router;
use docbundle::http::finish_router;
use docbundle::AppState;

/// Loads `KEY=value` (or `KEY="value"`) lines of an env file (such as `stack/local.env`) into
/// the process environment; variables already set win. For tests and benchmarks, before any thread starts.
pub fn load_env_file(path: &std::path::Path) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            // A value with spaces is double-quoted, as a shell sourcing the file needs it.
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            if std::env::var_os(key).is_none() {
                // SAFETY: callers run this before spawning threads that read the environment.
                unsafe { std::env::set_var(key, value) };
            }
        }
    }
    Ok(())
}

/// Every route of every HTTP function, as one router.
pub fn app(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    let routes = Router::new()
        .merge(launch_bundle::routes())
        .merge(read_api::routes())
        .merge(configurations::routes())
        .merge(inbound_webhooks::routes())
        .merge(merchants::routes())
        .merge(webhook_endpoints::routes());
    finish_router(routes.with_state(state), max_body)
}

/// The OpenAPI 3.1 document of every HTTP function's operations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    let mut paths = launch_bundle::ApiDoc::openapi();
    paths.merge(read_api::ApiDoc::openapi());
    paths.merge(configurations::ApiDoc::openapi());
    paths.merge(inbound_webhooks::ApiDoc::openapi());
    paths.merge(merchants::ApiDoc::openapi());
    paths.merge(webhook_endpoints::ApiDoc::openapi());
    docbundle::http::openapi::document(paths)
}

/// [`openapi`] as the committed `openapi.json` holds it (and `GET /api/v1/openapi.json` serves).
pub fn openapi_json() -> String {
    let mut json = openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    json.push('\n');
    json
}

/// The `(method, path)` pairs each HTTP function declares, by function name.
pub fn declared_routes() -> Vec<(&'static str, &'static [(&'static str, &'static str)])> {
    vec![
        ("launch-bundle", launch_bundle::ROUTES),
        ("read-api", read_api::ROUTES),
        ("configurations", configurations::ROUTES),
        ("inbound-webhooks", inbound_webhooks::ROUTES),
        ("merchants", merchants::ROUTES),
        ("webhook-endpoints", webhook_endpoints::ROUTES),
    ]
}
