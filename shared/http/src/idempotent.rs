//! The edge of idempotent operations (a launch, a batch's create and start): the
//! `Idempotency-Key` header as a key tied to the request's fingerprint, and the answer with
//! its `Location`.

use axum::http::header::LOCATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use docbundle_app::Answered;
use docbundle_domain::FieldError;
use docbundle_infra::db::idempotency::{Idempotency, IdempotencyKey};
use serde::Serialize;

use crate::ApiError;

/// The request's `Idempotency-Key` with `fingerprint` (the SHA-256 of what makes the request
/// the same request); `None` without the header. A key that is not 1 to 255 printable ASCII
/// characters is `422` on `Idempotency-Key`, a body with no canonical form `400`.
pub fn idempotency_key(
    headers: &HeaderMap,
    fingerprint: impl FnOnce() -> Result<String, String>,
) -> Result<Option<Idempotency>, ApiError> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = raw
        .to_str()
        .ok()
        .and_then(IdempotencyKey::parse)
        .ok_or_else(|| {
            ApiError::validation(
                "Invalid Idempotency-Key",
                vec![FieldError::new(
                    "Idempotency-Key",
                    "must be 1 to 255 printable ASCII characters",
                )],
            )
        })?;
    let request_sha256 = fingerprint().map_err(ApiError::invalid_json)?;
    Ok(Some(Idempotency {
        key,
        request_sha256,
    }))
}

/// `status` with the answer (the first one again, for a repeated key) and, when it has an
/// `id`, its `Location` under `collection` (`/api/v1/bundles`).
pub fn answer_with_location<T: Serialize>(
    status: StatusCode,
    collection: &str,
    answered: Answered<T>,
) -> Result<Response, ApiError> {
    let body = answered.body()?;
    let location = body["id"].as_str().map(|id| format!("{collection}/{id}"));
    Ok(located(status, location.as_deref(), body))
}

/// `status` with `body` as JSON and, when given, `Location: location`.
pub fn located<T: Serialize>(status: StatusCode, location: Option<&str>, body: T) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Some(Ok(value)) = location.map(str::parse) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}
