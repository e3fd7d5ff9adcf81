//! `/api/v1/batches…` reads: a merchant's batches, one batch with its totals, estimate and
//! (once ended) signed manifest, and the lines that became no run. Scope `bundle.read`; a
//! caller sees only its own merchant's batches.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use docbundle::app::batches::{self, BatchView};

use docbundle::error::ApiError;
use docbundle::http::auth::{scope, Authorized};
use docbundle::http::openapi::ErrorEnvelope;
use docbundle::http::paging::{page, PageRequest, TimeKey};
use docbundle::http::MerchantQuery;
use docbundle::http::{ApiPath, ApiQuery};
use docbundle::infra::db::batches::{self as repo, Batch, LineError};
use docbundle::AppState;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/batches", get(list))
        .route("/api/v1/batches/{id}", get(read))
        .route("/api/v1/batches/{id}/errors", get(errors))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// The merchant acted for: required with a platform token, else the token's own.
    merchant_id: Option<Uuid>,
    /// Items per page.
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// List batches, newest first (without totals: read one for those).
#[utoipa::path(get, path = "/api/v1/batches", operation_id = "listBatches", tag = "batches", params(PageQuery),
    responses(
        (status = 200, description = "One page of batches", body = docbundle::http::paging::Page<Batch>),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["bundle.read"]), ("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleRead>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    let request = PageRequest::<TimeKey>::parse(query.limit, query.cursor.as_deref())?;
    let rows = repo::list(&state.db, merchant, request.after.as_ref(), request.fetch()).await?;
    Ok(Json(page(rows, request.limit, Batch::page_key)).into_response())
}

/// A batch: its totals by status, rate and estimate, and once ended its signed manifest.
#[utoipa::path(get, path = "/api/v1/batches/{id}", operation_id = "getBatch", tag = "batches",
    params(("id" = Uuid, Path, description = "The batch's id"), MerchantQuery),
    responses(
        (status = 200, description = "The batch", body = BatchView),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["bundle.read"]), ("bearer" = [])))]
pub(crate) async fn read(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleRead>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    let batch = repo::find(&state.db, merchant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Batch not found"))?;
    Ok(Json(batches::view(&state, batch).await?).into_response())
}

/// The cursor of a page of line errors: the last line seen.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LineKey {
    line: i32,
}

/// The lines of a batch that became no run, in line order.
#[utoipa::path(get, path = "/api/v1/batches/{id}/errors", operation_id = "listBatchErrors", tag = "batches",
    params(("id" = Uuid, Path, description = "The batch's id"), PageQuery),
    responses(
        (status = 200, description = "One page of line errors", body = docbundle::http::paging::Page<LineError>),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["bundle.read"]), ("bearer" = [])))]
pub(crate) async fn errors(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleRead>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    let request = PageRequest::<LineKey>::parse(query.limit, query.cursor.as_deref())?;
    repo::find(&state.db, merchant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Batch not found"))?;
    let after = request.after.as_ref().map(|k| k.line).unwrap_or(0);
    let rows = repo::errors(&state.db, id, after, request.fetch()).await?;
    Ok(Json(page(rows, request.limit, |e| LineKey { line: e.line })).into_response())
}
