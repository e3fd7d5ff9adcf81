//! Batch launches: create a batch, give it its seeds (inline here, or to the presigned URL the
//! create answer returns), start it, cancel it. Reads are in `read-api`.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use docbundle::app::batches::{self, BatchView, CreateRequest};
use docbundle::error::ApiError;
use docbundle::http::auth::{scope, Authorized};
use docbundle::http::openapi::ErrorEnvelope;
use docbundle::http::MerchantQuery;
use docbundle::http::{
    answer_with_location, body_within, from_json_value, idempotency_key, ApiJson, ApiPath, ApiQuery,
};
use docbundle::AppState;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/batches", post(create))
        .route("/api/v1/batches/{id}/seeds", put(upload_seeds))
        .route("/api/v1/batches/{id}/start", post(start))
        .route("/api/v1/batches/{id}/cancel", post(cancel))
}

/// A batch to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CreateBody {
    configuration_id: Uuid,
    /// The version every run uses; the configuration's current version at start when absent.
    #[serde(default, deserialize_with = "docbundle::http::integral_i32")]
    #[schema(minimum = 1, maximum = 2147483647)]
    configuration_version: Option<i32>,
    /// Stop at the first line that becomes no run (runs not started are failed
    /// `BATCH_STOPPED`, the batch ends `failed`); by default such lines are reported and the
    /// rest go on.
    #[serde(default)]
    fail_fast: Option<bool>,
}

/// Create a batch.
///
/// Answers where to upload its seeds (`upload`: a presigned `PUT` for files of any size up to
/// the limit); or `PUT /api/v1/batches/{id}/seeds` inline up to the request limit. Then start
/// it.
#[utoipa::path(post, path = "/api/v1/batches", operation_id = "createBatch", tag = "batches",
    params(MerchantQuery,
        ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
         description = "Same key and body: the first answer again; same key, another request: 422")),
    request_body = CreateBody,
    responses(
        (status = 201, description = "Created, with where to upload the seeds", body = BatchView,
         headers(("Location" = String, description = "The batch's URL"))),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["bundle.write"]), ("bearer" = [])))]
pub(crate) async fn create(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleWrite>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
    headers: HeaderMap,
    ApiJson(raw): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    let idem = idempotency_key(&headers, || batches::fingerprint("createBatch", &raw))?;
    let body: CreateBody = from_json_value(raw)?;
    let answered = batches::create(
        &state,
        CreateRequest {
            merchant,
            configuration_id: body.configuration_id,
            configuration_version: body.configuration_version,
            fail_fast: body.fail_fast.unwrap_or(false),
            created_by: principal.subject.clone(),
        },
        idem.as_ref(),
    )
    .await?;
    answer_with_location(StatusCode::CREATED, "/api/v1/batches", answered)
}

/// Upload a batch's seeds inline.
///
/// The body is the NDJSON file: one seed (a JSON value) per line, blank lines skipped. Up to
/// the request limit; larger files go to the create answer's presigned URL. Replaces any
/// earlier upload until the batch starts.
#[utoipa::path(put, path = "/api/v1/batches/{id}/seeds", operation_id = "uploadBatchSeeds", tag = "batches",
    params(("id" = Uuid, Path, description = "The batch's id"), MerchantQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "The NDJSON file's bytes: one seed per line (any Content-Type; `application/x-ndjson` is usual)"),
    responses(
        (status = 200, description = "Stored", body = BatchView),
        (status = 409, description = "The batch has started", body = ErrorEnvelope),
        (status = 413, description = "Larger than the request limit: use the presigned URL", body = ErrorEnvelope),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["bundle.write"]), ("bearer" = [])))]
pub(crate) async fn upload_seeds(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleWrite>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    let bytes = body_within(&headers, body, state.settings.max_body_bytes).await?;
    let view = batches::upload_seeds(&state, merchant, id, bytes.to_vec()).await?;
    Ok(Json(view).into_response())
}

/// Start a batch.
///
/// Pins the configuration version and fans the seeds out into runs on the batch queue.
/// `429` with `Retry-After` past the merchant's batch limits (batches running at once, seeds
/// a day); `413` for a seeds file over the batch limit.
#[utoipa::path(post, path = "/api/v1/batches/{id}/start", operation_id = "startBatch", tag = "batches",
    params(("id" = Uuid, Path, description = "The batch's id"), MerchantQuery,
        ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
         description = "Same key: the first answer again")),
    responses(
        (status = 202, description = "Started", body = BatchView),
        (status = 409, description = "Already started or ended", body = ErrorEnvelope),
        (status = 413, description = "The seeds file is over the batch limit", body = ErrorEnvelope),
        (status = 429, description = "Over the merchant's batch limits", body = ErrorEnvelope,
         headers(("Retry-After" = u64, description = "Seconds until a start may be accepted"))),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["bundle.write"]), ("bearer" = [])))]
pub(crate) async fn start(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleWrite>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    let idem = idempotency_key(&headers, || {
        batches::fingerprint("startBatch", &serde_json::json!({ "id": id }))
    })?;
    let answered = batches::start(&state, merchant, id, idem.as_ref()).await?;
    answer_with_location(StatusCode::ACCEPTED, "/api/v1/batches", answered)
}

/// Cancel a batch.
///
/// No more lines are read; every run that has not started fails `BATCH_CANCELLED`; runs under
/// way finish. The batch ends `cancelled`, with its signed manifest, once they have.
#[utoipa::path(post, path = "/api/v1/batches/{id}/cancel", operation_id = "cancelBatch", tag = "batches",
    params(("id" = Uuid, Path, description = "The batch's id"), MerchantQuery),
    responses(
        (status = 202, description = "Cancelled (ends once its runs under way have)", body = BatchView),
        (status = 409, description = "The batch has ended", body = ErrorEnvelope),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["bundle.write"]), ("bearer" = [])))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleWrite>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    let view: BatchView = batches::cancel(&state, merchant, id).await?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}
