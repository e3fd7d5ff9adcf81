//! `webhook-endpoints`: a merchant's completion webhook endpoints (`config.write` to manage,
//! `bundle.read` to read) and their deliveries. The signing secret is generated here, kept in
//! Vault only and shown once: at creation and on rotation.
//!
//! This file holds the router, the endpoint handlers and the OpenAPI document; `checks` holds
//! the field checks of a create or an update, and `deliveries` the delivery routes.

mod checks;
mod deliveries;

use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use docbundle::domain::inbound::SourceSecrets;
use docbundle::domain::webhooks::{self, EndpointEvent};
use docbundle::domain::MerchantId;
use docbundle::error::ApiError;
use docbundle::http::auth::{scope, Authorized};
use docbundle::http::openapi::ErrorEnvelope;
use docbundle::http::paging::{page, PageRequest, TimeKey};
use docbundle::http::MerchantQuery;
use docbundle::http::{finish_router, ApiJson, ApiPath, ApiQuery};
use docbundle::infra::db::webhooks::{self as repo, EndpointPatch, WebhookEndpoint};
use docbundle::AppState;
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use checks::{checked_description, checked_events, checked_url, invalid};

/// Most endpoints per merchant: every run's end writes one delivery per endpoint.
pub const MAX_ENDPOINTS: i64 = 20;

/// The routes this function serves, as `template.yaml` declares them.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/webhook-endpoints"),
    ("GET", "/api/v1/webhook-endpoints"),
    ("GET", "/api/v1/webhook-endpoints/{id}"),
    ("PATCH", "/api/v1/webhook-endpoints/{id}"),
    ("DELETE", "/api/v1/webhook-endpoints/{id}"),
    ("POST", "/api/v1/webhook-endpoints/{id}/rotate"),
    ("GET", "/api/v1/webhook-endpoints/{id}/deliveries"),
    (
        "POST",
        "/api/v1/webhook-endpoints/{id}/deliveries/{deliveryId}/redeliver",
    ),
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/webhook-endpoints", get(list).post(create))
        .route(
            "/api/v1/webhook-endpoints/{id}",
            get(read).patch(update).delete(remove),
        )
        .route("/api/v1/webhook-endpoints/{id}/rotate", post(rotate))
        .route(
            "/api/v1/webhook-endpoints/{id}/deliveries",
            get(deliveries::list),
        )
        .route(
            "/api/v1/webhook-endpoints/{id}/deliveries/{deliveryId}/redeliver",
            post(deliveries::redeliver),
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
    update,
    remove,
    rotate,
    deliveries::list,
    deliveries::redeliver
))]
pub struct ApiDoc;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// The merchant acted for: required with a platform token, else the token's own.
    merchant_id: Option<Uuid>,
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// The body of `POST /api/v1/webhook-endpoints`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateEndpoint {
    /// Where deliveries go: `https` (`http` and loopback only on a local stack).
    #[schema(max_length = 2048, format = "uri")]
    url: String,
    /// The events it hears: `run.completed`, `run.failed`, or `*` for all.
    #[schema(min_items = 1, max_items = 10)]
    events: Vec<EndpointEvent>,
    /// At most 500 characters, none of them a control character.
    #[serde(default)]
    #[schema(max_length = 500, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    description: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
}

/// `Some(None)` for an explicit `null`, `None` when absent.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The body of `PATCH /api/v1/webhook-endpoints/{id}`: what it holds changes, the rest stays.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateEndpoint {
    #[serde(default)]
    #[schema(max_length = 2048, format = "uri")]
    url: Option<String>,
    #[serde(default)]
    #[schema(min_items = 1, max_items = 10)]
    events: Option<Vec<EndpointEvent>>,
    /// `null` removes it; at most 500 characters, none of them a control character.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 500, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    description: Option<Option<String>>,
    /// `true` also clears an automatic disabling.
    #[serde(default)]
    enabled: Option<bool>,
}

/// An endpoint with its signing secret: only in the answers that create one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct EndpointWithSecret {
    #[serde(flatten)]
    endpoint: WebhookEndpoint,
    /// `whsec_…`: verifies `webhook-signature` (Standard Webhooks). Shown only here.
    secret: String,
    /// After a rotation: until when the previous secret still signs alongside.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_secret_valid_until: Option<DateTime<Utc>>,
}

fn not_found() -> ApiError {
    ApiError::not_found("Webhook endpoint not found")
}

/// Register an endpoint for completion webhooks.
///
/// The answer holds its signing secret, shown only here.
#[utoipa::path(post, path = "/api/v1/webhook-endpoints", operation_id = "createWebhookEndpoint", tag = "webhook-endpoints",
    params(MerchantQuery), request_body = CreateEndpoint,
    responses(
        (status = 201, description = "Created, with its secret", body = EndpointWithSecret,
         headers(("Location" = String, description = "The endpoint's URL"))),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["config.write"]), ("bearer" = [])))]
async fn create(
    State(state): State<AppState>,
    principal: Authorized<scope::ConfigWrite>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
    ApiJson(body): ApiJson<CreateEndpoint>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    let mut errors = Vec::new();
    let url = checked_url(&state, &body.url, &mut errors).await;
    let events = checked_events(&body.events, &mut errors);
    let description = checked_description(body.description.as_deref(), &mut errors);
    let Some(url) = url.filter(|_| errors.is_empty()) else {
        return Err(invalid(errors));
    };
    // A platform caller may name any merchant: it must exist.
    docbundle::infra::db::merchants::find(&state.db, merchant.as_uuid())
        .await?
        .ok_or_else(|| ApiError::not_found("Merchant not found"))?;
    if repo::count_endpoints(&state.db, merchant).await? >= MAX_ENDPOINTS {
        return Err(ApiError::conflict(format!(
            "The merchant has {MAX_ENDPOINTS} webhook endpoints, the most allowed: delete one first"
        )));
    }
    let id = Uuid::new_v4();
    // Vault first: an endpoint never exists without its secret.
    let secret = docbundle::app::secrets::issue(&state.vault, &webhooks::vault_path(id)).await?;
    let endpoint = repo::insert_endpoint(
        &state.db,
        &repo::NewEndpoint {
            id,
            merchant,
            url: &url,
            events: &events,
            description: description.as_deref(),
            enabled: body.enabled.unwrap_or(true),
            created_by: &principal.subject,
        },
    )
    .await?;
    let location = format!("/api/v1/webhook-endpoints/{id}");
    let body = EndpointWithSecret {
        endpoint,
        secret,
        previous_secret_valid_until: None,
    };
    Ok((StatusCode::CREATED, [(LOCATION, location)], Json(body)).into_response())
}

/// The merchant's webhook endpoints, newest first (without secrets).
#[utoipa::path(get, path = "/api/v1/webhook-endpoints", operation_id = "listWebhookEndpoints", tag = "webhook-endpoints",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of endpoints", body = docbundle::http::paging::Page<WebhookEndpoint>),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["bundle.read"]), ("bearer" = [])))]
async fn list(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleRead>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    let request = PageRequest::<TimeKey>::parse(query.limit, query.cursor.as_deref())?;
    let rows =
        repo::list_endpoints(&state.db, merchant, request.after.as_ref(), request.fetch()).await?;
    Ok(Json(page(rows, request.limit, WebhookEndpoint::page_key)).into_response())
}

async fn existing(
    state: &AppState,
    merchant: MerchantId,
    id: Uuid,
) -> Result<WebhookEndpoint, ApiError> {
    repo::find_endpoint(&state.db, merchant, id)
        .await?
        .ok_or_else(not_found)
}

/// A webhook endpoint.
#[utoipa::path(get, path = "/api/v1/webhook-endpoints/{id}", operation_id = "getWebhookEndpoint", tag = "webhook-endpoints",
    params(("id" = Uuid, Path), MerchantQuery),
    responses(
        (status = 200, description = "The endpoint", body = WebhookEndpoint),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["bundle.read"]), ("bearer" = [])))]
async fn read(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleRead>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    Ok(Json(existing(&state, merchant, id).await?).into_response())
}

/// Change an endpoint: its URL, events, description, or whether it is enabled.
#[utoipa::path(patch, path = "/api/v1/webhook-endpoints/{id}", operation_id = "updateWebhookEndpoint", tag = "webhook-endpoints",
    params(("id" = Uuid, Path), MerchantQuery), request_body = UpdateEndpoint,
    responses(
        (status = 200, description = "The endpoint as changed", body = WebhookEndpoint),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["config.write"]), ("bearer" = [])))]
async fn update(
    State(state): State<AppState>,
    principal: Authorized<scope::ConfigWrite>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
    ApiJson(body): ApiJson<UpdateEndpoint>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    let mut errors = Vec::new();
    let mut patch = EndpointPatch {
        enabled: body.enabled,
        ..EndpointPatch::default()
    };
    if let Some(raw) = &body.url {
        patch.url = checked_url(&state, raw, &mut errors).await;
    }
    if let Some(events) = &body.events {
        patch.events = Some(checked_events(events, &mut errors));
    }
    if let Some(description) = &body.description {
        patch.description = Some(checked_description(description.as_deref(), &mut errors));
    }
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    let endpoint = repo::update_endpoint(&state.db, merchant, id, &patch)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(endpoint).into_response())
}

/// Delete an endpoint, with its deliveries; nothing is sent to it any more.
#[utoipa::path(delete, path = "/api/v1/webhook-endpoints/{id}", operation_id = "deleteWebhookEndpoint", tag = "webhook-endpoints",
    params(("id" = Uuid, Path), MerchantQuery),
    responses(
        (status = 204, description = "Deleted"),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["config.write"]), ("bearer" = [])))]
async fn remove(
    State(state): State<AppState>,
    principal: Authorized<scope::ConfigWrite>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
) -> Result<StatusCode, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    existing(&state, merchant, id).await?;
    if !repo::delete_endpoint(&state.db, merchant, id).await? {
        return Err(not_found());
    }
    // No secret of a deleted endpoint signs anything again.
    state
        .vault
        .put_secret(&webhooks::vault_path(id), &SourceSecrets::default())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Issue a new signing secret.
///
/// The previous one keeps signing alongside (a second `v1,` signature) for the overlap
/// (`WEBHOOK_ROTATION_OVERLAP_SECONDS`), so receivers can switch without missing a delivery.
#[utoipa::path(post, path = "/api/v1/webhook-endpoints/{id}/rotate", operation_id = "rotateWebhookEndpointSecret", tag = "webhook-endpoints",
    params(("id" = Uuid, Path), MerchantQuery),
    responses(
        (status = 200, description = "Rotated, with the new secret", body = EndpointWithSecret),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["config.write"]), ("bearer" = [])))]
async fn rotate(
    State(state): State<AppState>,
    principal: Authorized<scope::ConfigWrite>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    let endpoint = existing(&state, merchant, id).await?;
    let (secret, previous_valid_until) = docbundle::app::secrets::rotate(
        &state.vault,
        &webhooks::vault_path(id),
        state.settings.webhook_rotation_overlap,
    )
    .await?;
    Ok(Json(EndpointWithSecret {
        endpoint,
        secret,
        previous_secret_valid_until: Some(previous_valid_until),
    })
    .into_response())
}
