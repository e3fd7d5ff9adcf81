//! `merchants`: platform administration (`merchant.admin`) of merchants and their webhook
//! sources.

use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use docbundle::auth::Principal;
use docbundle::db::merchants::{self as repo, Merchant};
use docbundle::domain::Scope;
use docbundle::error::{ApiError, FieldError};
use docbundle::http::{finish_router, ApiJson, ApiPath, ApiQuery};
use docbundle::paging::{page, PageRequest, TimeKey};
use docbundle::AppState;
use serde::Deserialize;
use uuid::Uuid;

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
        .route("/api/v1/merchants", get(list).post(create))
        .route("/api/v1/merchants/{merchantId}", get(read))
        .route(
            "/api/v1/merchants/{merchantId}/webhook-sources",
            get(webhook_sources).post(webhook_sources),
        )
        .route(
            "/api/v1/merchants/{merchantId}/webhook-sources/{sourceId}",
            delete(webhook_sources),
        )
        .route(
            "/api/v1/merchants/{merchantId}/webhook-sources/{sourceId}/rotate",
            post(webhook_sources),
        )
}

/// The function's whole HTTP app.
pub fn app(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    finish_router(routes().with_state(state), max_body)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateMerchant {
    /// Callers that already have an id for the tenant (e.g. from their IdP) may pass it.
    id: Option<Uuid>,
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateMerchant>,
) -> Result<Response, ApiError> {
    principal.require(Scope::MerchantAdmin)?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::validation(
            "The merchant is not valid",
            vec![FieldError::new("name", "must be 1 to 200 characters")],
        ));
    }
    let id = body.id.unwrap_or_else(Uuid::new_v4);
    let created = repo::insert(&state.db, id, name)
        .await?
        .ok_or_else(|| ApiError::conflict(format!("A merchant with id {id} already exists")))?;
    let location = format!("/api/v1/merchants/{}", created.id);
    Ok((StatusCode::CREATED, [(LOCATION, location)], Json(created)).into_response())
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    principal.require(Scope::MerchantAdmin)?;
    let request = PageRequest::<TimeKey>::parse(query.limit, query.cursor.as_deref())?;
    let rows = repo::list(&state.db, request.after.as_ref(), request.fetch()).await?;
    Ok(Json(page(rows, request.limit, Merchant::page_key)).into_response())
}

async fn read(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    principal.require(Scope::MerchantAdmin)?;
    let merchant = repo::find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Merchant not found"))?;
    Ok(Json(merchant).into_response())
}

async fn webhook_sources(principal: Principal) -> Result<(), ApiError> {
    principal.require(Scope::MerchantAdmin)?;
    Err(ApiError::not_implemented("Webhook sources"))
}
