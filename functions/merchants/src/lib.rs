//! `merchants`: platform administration of merchants and their webhook sources.

use axum::routing::{delete, get, post};
use axum::Router;
use docbundle::auth::Principal;
use docbundle::domain::Scope;
use docbundle::error::ApiError;
use docbundle::http::finish_router;
use docbundle::AppState;

/// The routes this function serves, as `template.yaml` declares them.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/merchants"),
    ("GET", "/api/v1/merchants"),
    ("GET", "/api/v1/merchants/{merchantId}"),
    ("POST", "/api/v1/merchants/{merchantId}/webhook-sources"),
    ("GET", "/api/v1/merchants/{merchantId}/webhook-sources"),
    (
        "DELETE",
        "/api/v1/merchants/{merchantId}/webhook-sources/{sourceId}",
    ),
    (
        "POST",
        "/api/v1/merchants/{merchantId}/webhook-sources/{sourceId}/rotate",
    ),
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/merchants", get(admin_only).post(admin_only))
        .route("/api/v1/merchants/{merchantId}", get(admin_only))
        .route(
            "/api/v1/merchants/{merchantId}/webhook-sources",
            get(admin_only).post(admin_only),
        )
        .route(
            "/api/v1/merchants/{merchantId}/webhook-sources/{sourceId}",
            delete(admin_only),
        )
        .route(
            "/api/v1/merchants/{merchantId}/webhook-sources/{sourceId}/rotate",
            post(admin_only),
        )
}

/// The function's whole HTTP app.
pub fn app(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    finish_router(routes().with_state(state), max_body)
}

async fn admin_only(principal: Principal) -> Result<(), ApiError> {
    principal.require(Scope::MerchantAdmin)?;
    Err(ApiError::not_implemented("Merchant administration"))
}
