//! `configurations`: versioned template sets.

use axum::routing::get;
use axum::Router;
use docbundle::auth::Principal;
use docbundle::domain::Scope;
use docbundle::error::ApiError;
use docbundle::http::finish_router;
use docbundle::AppState;

/// The routes this function serves, as `template.yaml` declares them.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/configurations"),
    ("GET", "/api/v1/configurations"),
    ("GET", "/api/v1/configurations/{id}"),
    ("PUT", "/api/v1/configurations/{id}"),
    ("DELETE", "/api/v1/configurations/{id}"),
    ("GET", "/api/v1/configurations/{id}/versions"),
    ("GET", "/api/v1/configurations/{id}/versions/{version}"),
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/configurations", get(read).post(write))
        .route(
            "/api/v1/configurations/{id}",
            get(read).put(write).delete(write),
        )
        .route("/api/v1/configurations/{id}/versions", get(read))
        .route("/api/v1/configurations/{id}/versions/{version}", get(read))
}

/// The function's whole HTTP app.
pub fn app(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    finish_router(routes().with_state(state), max_body)
}

async fn read(principal: Principal) -> Result<(), ApiError> {
    principal.require(Scope::ConfigRead)?;
    Err(ApiError::not_implemented("Reading configurations"))
}

async fn write(principal: Principal) -> Result<(), ApiError> {
    principal.require(Scope::ConfigWrite)?;
    Err(ApiError::not_implemented("Changing configurations"))
}
