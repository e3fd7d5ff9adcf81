//! Extractors whose every rejection is answered in the error envelope: JSON bodies, paths,
//! queries, the acting merchant, the trace header.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, FieldError};
use docbundle_domain::trace::TraceHeader;

/// A JSON body whose every rejection is answered in the error envelope.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let value = match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(value)) => value,
            Err(rejection) => return Err(json_rejection(rejection)),
        };
        check_storable(&value)?;
        from_json_value(value).map(ApiJson)
    }
}

/// `422` naming the first string (or object key) that PostgreSQL cannot store: a NUL
/// character, refused by both `text` and `jsonb`. Checked once here, so that no handler can
/// let one reach the database.
pub fn check_storable(value: &serde_json::Value) -> Result<(), ApiError> {
    match nul_path(value, &mut Vec::new()) {
        None => Ok(()),
        Some(path) => Err(ApiError::validation(
            "Body contains text that cannot be stored",
            vec![FieldError::new(
                path,
                "must not contain NUL (\\u0000) characters",
            )],
        )),
    }
}

/// The path (`documents[2].template`, `defaults.a`) of the first NUL, or `None`.
pub(crate) fn nul_path(value: &serde_json::Value, path: &mut Vec<String>) -> Option<String> {
    use serde_json::Value;
    let here = |path: &[String]| {
        if path.is_empty() {
            "body".to_owned()
        } else {
            path.concat().trim_start_matches('.').to_owned()
        }
    };
    match value {
        Value::String(s) if s.contains('\0') => Some(here(path)),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            path.push(format!("[{i}]"));
            let found = nul_path(item, path);
            path.pop();
            found
        }),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            path.push(format!(".{}", key.replace('\0', "\\u0000")));
            let found = if key.contains('\0') {
                Some(here(path))
            } else {
                nul_path(item, path)
            };
            path.pop();
            found
        }),
        _ => None,
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "Expected a body with Content-Type: application/json",
        ),
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::invalid_json(format!("Body is not valid JSON: {}", e.body_text()))
        }
        JsonRejection::JsonDataError(e) => {
            let (field, message) = data_error_field(&e.body_text());
            ApiError::validation(
                "Body does not match the expected shape",
                vec![FieldError::new(field, message)],
            )
        }
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "Request body is too large",
            )
        }
        other => ApiError::bad_request(other.body_text()),
    }
}

/// Splits axum's "Failed to deserialize …: documents[2].format: unknown variant …" into the
/// field path and serde's message. The root is reported as `body`.
pub(crate) fn data_error_field(text: &str) -> (String, String) {
    let rest = text
        .split_once("target type: ")
        .map_or(text, |(_, rest)| rest);
    match rest.split_once(": ") {
        Some((path, message)) if !path.is_empty() && !path.contains(' ') && path != "." => {
            (path.to_owned(), message.to_owned())
        }
        Some((".", message)) => ("body".to_owned(), message.to_owned()),
        _ => ("body".to_owned(), rest.to_owned()),
    }
}

/// Deserialises an already parsed JSON body into `T`; a mismatch is `422` naming the field.
pub fn from_json_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        ApiError::validation(
            "Body does not match the expected shape",
            vec![FieldError::new(field, e.into_inner().to_string())],
        )
    })
}

/// An optional JSON integer that fits `i32`, written as JSON Schema counts integers: `3`,
/// `3.0` and `3e0` are the same number (a schema-valid `134217728.0` must not be refused).
pub fn integral_i32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    use serde::de::Error;
    use serde::Deserialize;
    let Some(number) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let integral = match (number.as_i64(), number.as_f64()) {
        (Some(i), _) => i32::try_from(i).ok(),
        (None, Some(f)) if f.fract() == 0.0 && f >= i32::MIN as f64 && f <= i32::MAX as f64 => {
            Some(f as i32)
        }
        _ => None,
    };
    integral.map(Some).ok_or_else(|| {
        D::Error::custom(format!(
            "{number} is not an integer from -2147483648 to 2147483647"
        ))
    })
}

/// The query of a route a platform caller may use for any merchant: `?merchantId=…` names it
/// (required with a platform token; a merchant token acts for its own merchant).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MerchantQuery {
    /// The merchant acted for: required with a platform token, else the token's own.
    pub merchant_id: Option<uuid::Uuid>,
}

/// The request's X-Ray trace header, when it has a valid one (see [`TraceHeader`]).
pub struct RequestTrace(pub Option<TraceHeader>);

impl<S: Send + Sync> FromRequestParts<S> for RequestTrace {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestTrace(parts.extensions.get::<TraceHeader>().cloned()))
    }
}

/// Path parameters; a value that does not parse (e.g. a malformed id) names no resource: `404`.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // A NUL names no resource (and could not be looked up).
        if parts.uri.path().contains("%00") {
            return Err(ApiError::not_found("Resource not found"));
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => {
                Err(ApiError::not_found("Resource not found"))
            }
            Err(other) => Err(ApiError::internal(other.body_text())),
        }
    }
}

/// Query parameters; a malformed one is `422` naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // `%00` is the only way a NUL reaches a query (a raw one is not valid in a URI); as a
        // filter it would reach PostgreSQL, which refuses it.
        if let Some(pair) = parts
            .uri
            .query()
            .and_then(|q| q.split('&').find(|pair| pair.contains("%00")))
        {
            let name = pair.split('=').next().unwrap_or(pair).replace("%00", "");
            return Err(ApiError::validation(
                "Invalid query parameters",
                vec![FieldError::new(
                    name,
                    "must not contain NUL (%00) characters",
                )],
            ));
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::validation(
                "Invalid query parameters",
                vec![FieldError::new("query", e.body_text())],
            )),
            Err(other) => Err(ApiError::bad_request(other.body_text())),
        }
    }
}

/// A raw body of at most `limit` bytes: `413` in the envelope when its `Content-Length` says
/// more (before any of it is read) or when more arrives.
pub async fn body_within(
    headers: &axum::http::HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> Result<axum::body::Bytes, ApiError> {
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::payload_too_large(limit));
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::payload_too_large(limit))
}
