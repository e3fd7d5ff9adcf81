//! Legal holds: keep a run, a batch's runs or a configuration's runs from expiring or being
//! erased until the hold is released. Placed and released by the merchant (`bundle.write`)
//! or by the platform (`merchant.admin` with `?merchantId=`: only the platform releases its
//! own holds); never deleted, so the list is the audit trail.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use docbundle::domain::FieldError;
use docbundle::error::ApiError;
use docbundle::http::auth::{scope, Authorized, Principal};
use docbundle::http::openapi::ErrorEnvelope;
use docbundle::http::paging::{page, PageRequest, TimeKey};
use docbundle::http::MerchantQuery;
use docbundle::http::{located, ApiJson, ApiPath, ApiQuery};
use docbundle::infra::db::holds::{self, HoldTarget, LegalHold, PlaceRefused};
use docbundle::AppState;
use serde::Deserialize;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/holds", get(list).post(place))
        .route("/api/v1/holds/{id}", get(read).delete(release))
}

/// A hold to place: on exactly one of a run, a batch or a configuration.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct HoldBody {
    #[serde(default)]
    #[schema(nullable = false)]
    run_id: Option<Uuid>,
    /// Every run of the batch.
    #[serde(default)]
    #[schema(nullable = false)]
    batch_id: Option<Uuid>,
    /// Every run of every version of the configuration, present and future.
    #[serde(default)]
    #[schema(nullable = false)]
    configuration_id: Option<Uuid>,
    /// Why (a case number, a request): 1 to 500 characters, kept with the hold.
    #[schema(
        min_length = 1,
        max_length = 500,
        pattern = "^[^\\u0000]*\\S[^\\u0000]*$"
    )]
    reason: String,
}

/// The caller acts as the platform: a `merchant.admin` token of no merchant of its own.
fn by_platform(principal: &Principal) -> bool {
    principal.merchant_id.is_none() && principal.is_admin()
}

/// Place a legal hold.
///
/// While it is in force, what it holds neither expires nor is erased. A run whose artefacts
/// are gone already cannot be held (`409`).
#[utoipa::path(post, path = "/api/v1/holds", operation_id = "placeHold", tag = "retention",
    params(MerchantQuery),
    request_body = HoldBody,
    responses(
        (status = 201, description = "Placed", body = LegalHold,
         headers(("Location" = String, description = "The hold's URL"))),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
        (status = 503, description = "An erasure of this merchant is running: retry after the time given", body = ErrorEnvelope,
         headers(("Retry-After" = u64))),
    ),
    security(("oauth2" = ["bundle.write"]), ("bearer" = [])))]
async fn place(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleWrite>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
    ApiJson(body): ApiJson<HoldBody>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    let mut errors = Vec::new();
    let target = match (body.run_id, body.batch_id, body.configuration_id) {
        (Some(id), None, None) => Some(HoldTarget::Run(id)),
        (None, Some(id), None) => Some(HoldTarget::Batch(id)),
        (None, None, Some(id)) => Some(HoldTarget::Configuration(id)),
        _ => {
            errors.push(FieldError::new(
                "runId",
                "exactly one of runId, batchId and configurationId must be given",
            ));
            None
        }
    };
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 || reason.contains('\0') {
        errors.push(FieldError::new(
            "reason",
            "must be 1 to 500 characters, without NUL",
        ));
    }
    let Some(target) = target.filter(|_| errors.is_empty()) else {
        return Err(ApiError::validation("The hold is not valid", errors));
    };
    let placed = holds::place(
        &state.db,
        merchant,
        target,
        reason,
        &principal.subject,
        by_platform(&principal),
    )
    .await?;
    let hold = match placed {
        Ok(hold) => hold,
        Err(PlaceRefused::NotFound) => {
            return Err(ApiError::not_found(
                "No such run, batch or configuration of this merchant",
            ))
        }
        Err(PlaceRefused::Expired) => {
            return Err(ApiError::conflict(
                "The run expired: its artefacts are gone, there is nothing left to hold",
            ))
        }
    };
    tracing::info!(hold_id = %hold.id, %merchant, by = %hold.placed_by, "legal hold placed");
    let location = format!("/api/v1/holds/{}", hold.id);
    Ok(located(StatusCode::CREATED, Some(&location), hold))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// The merchant acted for: required with a platform token, else the token's own.
    merchant_id: Option<Uuid>,
    /// Only holds in force (`true`) or only released ones (`false`).
    active: Option<bool>,
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// List legal holds, newest first (released ones too: the audit trail).
#[utoipa::path(get, path = "/api/v1/holds", operation_id = "listHolds", tag = "retention",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of holds", body = docbundle::http::paging::Page<LegalHold>),
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
    let rows = holds::list(
        &state.db,
        merchant,
        query.active,
        request.after.as_ref(),
        request.fetch(),
    )
    .await?;
    Ok(Json(page(rows, request.limit, LegalHold::page_key)).into_response())
}

/// A legal hold.
#[utoipa::path(get, path = "/api/v1/holds/{id}", operation_id = "getHold", tag = "retention",
    params(("id" = Uuid, Path, description = "The hold's id"), MerchantQuery),
    responses(
        (status = 200, description = "The hold", body = LegalHold),
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
    let hold = holds::find(&state.db, merchant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Legal hold not found"))?;
    Ok(Json(hold).into_response())
}

/// Release a legal hold.
///
/// What it held expires on the next retention pass if its time has come. A hold the platform
/// placed is released by the platform only (`403`); a released hold stays released (`409`).
#[utoipa::path(delete, path = "/api/v1/holds/{id}", operation_id = "releaseHold", tag = "retention",
    params(("id" = Uuid, Path, description = "The hold's id"), MerchantQuery),
    responses(
        (status = 200, description = "Released", body = LegalHold),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["bundle.write"]), ("bearer" = [])))]
async fn release(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleWrite>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    let hold = holds::find(&state.db, merchant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Legal hold not found"))?;
    if hold.by_platform && !by_platform(&principal) {
        return Err(ApiError::forbidden(
            "The platform placed this hold: only the platform releases it",
        ));
    }
    let released = holds::release(&state.db, merchant, id, &principal.subject)
        .await?
        .ok_or_else(|| ApiError::conflict("The hold was released already"))?;
    tracing::info!(hold_id = %id, %merchant, by = %principal.subject, "legal hold released");
    Ok(Json(released).into_response())
}
