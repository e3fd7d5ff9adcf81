//! `launch-bundle`: `POST /api/v1/bundles` starts a bundle run and answers `202`.

use axum::routing::post;
use axum::Router;
use docbundle::auth::Principal;
use docbundle::domain::Scope;
use docbundle::error::ApiError;
use docbundle::http::finish_router;
use docbundle::AppState;

/// The routes this function serves, as `template.yaml` declares them.
pub const ROUTES: &[(&str, &str)] = &[("POST", "/api/v1/bundles")];

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/bundles", post(launch))
}

/// The function's whole HTTP app.
pub fn app(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    finish_router(routes().with_state(state), max_body)
}

async fn launch(principal: Principal) -> Result<(), ApiError> {
    principal.require(Scope::BundleWrite)?;
    Err(ApiError::not_implemented("Launching a bundle run"))
}
