//! `get-run`: read bundle runs and the public signing keys.
//!
//! `GET /api/v1/bundles/{id}`, `GET /api/v1/bundles`, `GET /api/v1/signing-keys`.

use axum::routing::get;
use axum::Router;
use docbundle::auth::Principal;
use docbundle::domain::Scope;
use docbundle::error::ApiError;
use docbundle::http::{finish_router, ApiPath};
use docbundle::AppState;
use uuid::Uuid;

/// The routes this function serves, as `template.yaml` declares them.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/bundles"),
    ("GET", "/api/v1/bundles/{id}"),
    ("GET", "/api/v1/signing-keys"),
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/bundles", get(list_runs))
        .route("/api/v1/bundles/{id}", get(get_run))
        .route("/api/v1/signing-keys", get(signing_keys))
}

/// The function's whole HTTP app.
pub fn app(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    finish_router(routes().with_state(state), max_body)
}

async fn list_runs(principal: Principal) -> Result<(), ApiError> {
    principal.require(Scope::BundleRead)?;
    Err(ApiError::not_implemented("Listing bundle runs"))
}

async fn get_run(principal: Principal, ApiPath(_id): ApiPath<Uuid>) -> Result<(), ApiError> {
    principal.require(Scope::BundleRead)?;
    Err(ApiError::not_implemented("Reading a bundle run"))
}

async fn signing_keys(_principal: Principal) -> Result<(), ApiError> {
    Err(ApiError::not_implemented("Listing signing keys"))
}
