//! `merchants`: platform administration (`merchant.admin`) of merchants and their webhook
//! sources.

mod signing;

use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};

use docbundle::domain::inbound;
use docbundle::domain::MerchantId;
use docbundle::error::{ApiError, FieldError};
use docbundle::http::auth::{scope, Authorized};
use docbundle::http::openapi::{ErrorEnvelope, WebhookSourceWithSecret};
use docbundle::http::paging::{page, PageRequest, TimeKey};
use docbundle::http::{finish_router, ApiJson, ApiPath, ApiQuery};
use docbundle::infra::db::inbound::{self as webhook_repo, WebhookSource};
use docbundle::infra::db::merchants::{self as repo, Merchant};
use docbundle::AppState;
use serde::Deserialize;
use serde_json::Value;
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
    ("GET", "/api/v1/merchants/{merchantId}/signing-certificate"),
    ("PUT", "/api/v1/merchants/{merchantId}/signing-certificate"),
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/merchants", get(list).post(create))
        .route("/api/v1/merchants/{merchantId}", get(read))
        .route(
            "/api/v1/merchants/{merchantId}/webhook-sources",
            get(list_sources).post(create_source),
        )
        .route(
            "/api/v1/merchants/{merchantId}/webhook-sources/{sourceId}",
            delete(disable_source),
        )
        .route(
            "/api/v1/merchants/{merchantId}/webhook-sources/{sourceId}/rotate",
            post(rotate_secret),
        )
        .route(
            "/api/v1/merchants/{merchantId}/signing-certificate",
            get(signing::read).put(signing::import),
        )
}

/// The function's whole HTTP app.
pub fn app(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    finish_router(routes().with_state(state), max_body)
}

/// The operations this function serves, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create,
    list,
    read,
    create_source,
    list_sources,
    disable_source,
    rotate_secret,
    signing::read,
    signing::import
))]
pub struct ApiDoc;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateMerchant {
    /// Callers that already have an id for the tenant (e.g. from their IdP) may pass it.
    id: Option<Uuid>,
    /// 1 to 200 characters, not blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000]*\\S[^\\u0000]*$"
    )]
    name: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// Create a merchant (a tenant).
#[utoipa::path(post, path = "/api/v1/merchants", operation_id = "createMerchant", tag = "merchants", request_body = CreateMerchant,
    responses(
        (status = 201, description = "Created", body = Merchant,
         headers(("Location" = String, description = "The merchant's URL"))),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["merchant.admin"]), ("bearer" = [])))]
async fn create(
    State(state): State<AppState>,
    _admin: Authorized<scope::MerchantAdmin>,
    ApiJson(body): ApiJson<CreateMerchant>,
) -> Result<Response, ApiError> {
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

/// List merchants, newest first.
#[utoipa::path(get, path = "/api/v1/merchants", operation_id = "listMerchants", tag = "merchants", params(ListQuery),
    responses(
        (status = 200, description = "One page of merchants", body = docbundle::http::paging::Page<Merchant>),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["merchant.admin"]), ("bearer" = [])))]
async fn list(
    State(state): State<AppState>,
    _admin: Authorized<scope::MerchantAdmin>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let request = PageRequest::<TimeKey>::parse(query.limit, query.cursor.as_deref())?;
    let rows = repo::list(&state.db, request.after.as_ref(), request.fetch()).await?;
    Ok(Json(page(rows, request.limit, Merchant::page_key)).into_response())
}

/// A merchant.
#[utoipa::path(get, path = "/api/v1/merchants/{merchantId}", operation_id = "getMerchant", tag = "merchants",
    params(("merchantId" = Uuid, Path)),
    responses(
        (status = 200, description = "The merchant", body = Merchant),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["merchant.admin"]), ("bearer" = [])))]
async fn read(
    State(state): State<AppState>,
    _admin: Authorized<scope::MerchantAdmin>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let merchant = repo::find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Merchant not found"))?;
    Ok(Json(merchant).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateSource {
    /// 1 to 200 characters, not blank.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000]*\\S[^\\u0000]*$"
    )]
    name: String,
}

fn source_not_found() -> ApiError {
    ApiError::not_found("Webhook source not found")
}

/// The source as JSON, with its secret when (and only when) it was just made.
fn with_secret(source: &WebhookSource, secret: &str) -> Result<Value, ApiError> {
    let mut body = serde_json::to_value(source).map_err(ApiError::internal)?;
    body["secret"] = Value::String(secret.to_owned());
    Ok(body)
}

async fn existing_merchant(state: &AppState, id: Uuid) -> Result<MerchantId, ApiError> {
    repo::find(&state.db, id)
        .await?
        .map(|m| MerchantId::new(m.id))
        .ok_or_else(|| ApiError::not_found("Merchant not found"))
}

/// Register an upstream system that may send the merchant signed webhooks.
///
/// The answer holds its signing secret, shown only here.
#[utoipa::path(post, path = "/api/v1/merchants/{merchantId}/webhook-sources", operation_id = "createWebhookSource", tag = "merchants",
    params(("merchantId" = Uuid, Path)), request_body = CreateSource,
    responses(
        (status = 201, description = "Created, with its secret", body = WebhookSourceWithSecret,
         headers(("Location" = String, description = "The source's URL"))),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["merchant.admin"]), ("bearer" = [])))]
async fn create_source(
    State(state): State<AppState>,
    _admin: Authorized<scope::MerchantAdmin>,
    ApiPath(merchant_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<CreateSource>,
) -> Result<Response, ApiError> {
    let merchant = existing_merchant(&state, merchant_id).await?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::validation(
            "The webhook source is not valid",
            vec![FieldError::new("name", "must be 1 to 200 characters")],
        ));
    }
    let id = Uuid::new_v4();
    let secret = docbundle::app::secrets::issue(&state.vault, &inbound::vault_path(id)).await?;
    let source = webhook_repo::create_source(&state.db, id, merchant, name).await?;
    let location = format!("/api/v1/merchants/{merchant}/webhook-sources/{id}");
    Ok((
        StatusCode::CREATED,
        [(LOCATION, location)],
        Json(with_secret(&source, &secret)?),
    )
        .into_response())
}

/// The merchant's webhook sources (without secrets).
#[utoipa::path(get, path = "/api/v1/merchants/{merchantId}/webhook-sources", operation_id = "listWebhookSources", tag = "merchants",
    params(("merchantId" = Uuid, Path), ListQuery),
    responses(
        (status = 200, description = "One page of sources", body = docbundle::http::paging::Page<WebhookSource>),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["merchant.admin"]), ("bearer" = [])))]
async fn list_sources(
    State(state): State<AppState>,
    _admin: Authorized<scope::MerchantAdmin>,
    ApiPath(merchant_id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let merchant = existing_merchant(&state, merchant_id).await?;
    let request = PageRequest::<TimeKey>::parse(query.limit, query.cursor.as_deref())?;
    let rows =
        webhook_repo::list_sources(&state.db, merchant, request.after.as_ref(), request.fetch())
            .await?;
    Ok(Json(page(rows, request.limit, WebhookSource::page_key)).into_response())
}

/// Disable a webhook source.
///
/// Its events are refused from now on.
#[utoipa::path(delete, path = "/api/v1/merchants/{merchantId}/webhook-sources/{sourceId}", operation_id = "disableWebhookSource", tag = "merchants",
    params(("merchantId" = Uuid, Path), ("sourceId" = Uuid, Path)),
    responses(
        (status = 204, description = "Disabled"),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["merchant.admin"]), ("bearer" = [])))]
async fn disable_source(
    State(state): State<AppState>,
    _admin: Authorized<scope::MerchantAdmin>,
    ApiPath((merchant_id, source_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    webhook_repo::disable_source(&state.db, MerchantId::new(merchant_id), source_id)
        .await?
        .ok_or_else(source_not_found)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Issue a new signing secret.
///
/// The previous one keeps verifying for the overlap (`WEBHOOK_ROTATION_OVERLAP_SECONDS`).
#[utoipa::path(post, path = "/api/v1/merchants/{merchantId}/webhook-sources/{sourceId}/rotate", operation_id = "rotateWebhookSecret", tag = "merchants",
    params(("merchantId" = Uuid, Path), ("sourceId" = Uuid, Path)),
    responses(
        (status = 200, description = "Rotated, with the new secret", body = WebhookSourceWithSecret),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["merchant.admin"]), ("bearer" = [])))]
async fn rotate_secret(
    State(state): State<AppState>,
    _admin: Authorized<scope::MerchantAdmin>,
    ApiPath((merchant_id, source_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<Response, ApiError> {
    let merchant = MerchantId::new(merchant_id);
    let source = webhook_repo::find_source(&state.db, source_id)
        .await?
        .filter(|s| s.merchant_id == merchant)
        .ok_or_else(source_not_found)?;
    if source.status != "active" {
        return Err(ApiError::conflict("The webhook source is disabled"));
    }
    let (secret, previous_valid_until) = docbundle::app::secrets::rotate(
        &state.vault,
        &inbound::vault_path(source_id),
        state.settings.webhook_rotation_overlap,
    )
    .await?;
    let source =
        webhook_repo::record_rotation(&state.db, merchant, source_id, previous_valid_until)
            .await?
            .ok_or_else(source_not_found)?;
    Ok(Json(with_secret(&source, &secret)?).into_response())
}
