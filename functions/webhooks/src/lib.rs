//! `webhooks`: `POST /api/v1/webhooks/{sourceId}` receives signed events (Standard Webhooks);
//! no JWT, the signature is the credential.

use axum::routing::post;
use axum::Router;
use docbundle::error::ApiError;
use docbundle::http::finish_router;
use docbundle::AppState;

/// The routes this function serves, as `template.yaml` declares them.
pub const ROUTES: &[(&str, &str)] = &[("POST", "/api/v1/webhooks/{sourceId}")];

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/webhooks/{sourceId}", post(receive))
}

/// The function's whole HTTP app.
pub fn app(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    finish_router(routes().with_state(state), max_body)
}

async fn receive() -> Result<(), ApiError> {
    Err(ApiError::not_implemented("Receiving webhooks"))
}
