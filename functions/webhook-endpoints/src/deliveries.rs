//! An endpoint's deliveries: listing them, newest first (`GET …/{id}/deliveries`, needs
//! `bundle.read`), and sending one again (`POST …/deliveries/{deliveryId}/redeliver`, needs
//! `config.write`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use docbundle::error::ApiError;
use docbundle::http::auth::{scope, Authorized};
use docbundle::http::openapi::ErrorEnvelope;
use docbundle::http::paging::{page, PageRequest, TimeKey};
use docbundle::http::MerchantQuery;
use docbundle::http::{ApiPath, ApiQuery};
use docbundle::infra::db::outbox;
use docbundle::infra::db::webhooks::{self as repo, Delivery};
use docbundle::AppState;
use uuid::Uuid;

use super::{existing, ListQuery};

/// The endpoint's deliveries, newest first: status, attempts, the last answer, the next
/// attempt.
#[utoipa::path(get, path = "/api/v1/webhook-endpoints/{id}/deliveries", operation_id = "listWebhookDeliveries", tag = "webhook-endpoints",
    params(("id" = Uuid, Path), ListQuery),
    responses(
        (status = 200, description = "One page of deliveries", body = docbundle::http::paging::Page<Delivery>),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["bundle.read"]), ("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleRead>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    let request = PageRequest::<TimeKey>::parse(query.limit, query.cursor.as_deref())?;
    existing(&state, merchant, id).await?;
    let rows = repo::list_deliveries(
        &state.db,
        merchant,
        id,
        request.after.as_ref(),
        request.fetch(),
    )
    .await?;
    Ok(Json(page(rows, request.limit, Delivery::page_key)).into_response())
}

/// Send a delivery again now, with the same `webhook-id` (its retry schedule starts over).
#[utoipa::path(post, path = "/api/v1/webhook-endpoints/{id}/deliveries/{deliveryId}/redeliver", operation_id = "redeliverWebhook", tag = "webhook-endpoints",
    params(("id" = Uuid, Path), ("deliveryId" = Uuid, Path), MerchantQuery),
    responses(
        (status = 202, description = "Queued", body = Delivery),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["config.write"]), ("bearer" = [])))]
pub(crate) async fn redeliver(
    State(state): State<AppState>,
    principal: Authorized<scope::ConfigWrite>,
    ApiPath((id, delivery_id)): ApiPath<(Uuid, Uuid)>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    let endpoint = existing(&state, merchant, id).await?;
    if !endpoint.enabled {
        return Err(ApiError::conflict(
            "The webhook endpoint is disabled: enable it first",
        ));
    }
    let (delivery, pending) = repo::redeliver(&state.db, merchant, id, delivery_id, None)
        .await?
        .ok_or_else(|| ApiError::not_found("Webhook delivery not found"))?;
    outbox::publish(&state.db, &state.publisher, &pending).await;
    Ok((StatusCode::ACCEPTED, Json(delivery)).into_response())
}
