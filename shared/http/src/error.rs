//! The one error type of the API and its envelope.
//!
//! Every failure a caller sees is `{"error":{"code","message","details"?,"timestamp","requestId"}}`
//! with the request id also in `x-request-id`. Client errors explain themselves; server errors
//! say only `INTERNAL_ERROR` / "Something went wrong" (or `UNAVAILABLE` with `Retry-After` when
//! a dependency did not answer) and log their cause with the request id.

use std::fmt;

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::current_request_id;
pub use docbundle_infra::error::{with_causes, with_timeout, DependencyError, DependencyFailure};

/// An error answered to an API caller (boxed: it travels in every handler's `Result`).
#[derive(Debug)]
pub struct ApiError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Option<Value>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The cause of a server error; logged, never sent.
    cause: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError(Box::new(Inner {
            status,
            code,
            message: message.into(),
            details: None,
            headers: Vec::new(),
            cause: None,
        }))
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.0.details = Some(details);
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.0.headers.push((name, value));
        self
    }

    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_JSON", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    /// `422` with per-field details: `[{"field": "...", "message": "..."}]`.
    pub fn validation(message: impl Into<String>, details: Vec<FieldError>) -> Self {
        let details = serde_json::to_value(details).unwrap_or(Value::Null);
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
            message,
        )
        .with_details(details)
    }

    /// `401` with the `WWW-Authenticate` challenge RFC 6750 asks for.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        let message = message.into();
        let challenge = format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            message.replace('"', "'")
        );
        let value = HeaderValue::from_str(&challenge)
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer error=\"invalid_token\""));
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
            .with_header(header::WWW_AUTHENTICATE, value)
    }

    /// `401` for a request with no credentials at all (no `error` attribute, per RFC 6750 §3.1).
    pub fn missing_credentials() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "Missing bearer token in the Authorization header",
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"docbundle\""),
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "CONFLICT", message)
    }

    pub fn precondition_failed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "PRECONDITION_FAILED",
            message,
        )
    }

    pub fn precondition_required(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PRECONDITION_REQUIRED,
            "PRECONDITION_REQUIRED",
            message,
        )
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("Request body exceeds the limit of {limit} bytes"),
        )
    }

    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!("Too many requests; retry after {retry_after_secs} s"),
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from(retry_after_secs))
    }

    pub fn not_implemented(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "NOT_IMPLEMENTED",
            format!("{what} is not available yet"),
        )
    }

    /// A server error: the caller learns nothing, the log learns the cause.
    pub fn internal(cause: impl fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "Something went wrong",
        );
        e.0.cause = Some(cause.to_string());
        e
    }

    /// A dependency could not be reached: `503` with `Retry-After`, so that the caller
    /// retries (after a few seconds: dependencies time out within a few).
    pub fn unavailable(cause: impl fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            format!(
                "A service this request needs did not answer; retry after {UNAVAILABLE_RETRY_AFTER_SECS} s"
            ),
        );
        e.0.cause = Some(cause.to_string());
        e.with_header(
            header::RETRY_AFTER,
            HeaderValue::from(UNAVAILABLE_RETRY_AFTER_SECS),
        )
    }

    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    pub fn code(&self) -> &'static str {
        self.0.code
    }

    pub fn message(&self) -> &str {
        &self.0.message
    }

    pub fn details(&self) -> Option<&Value> {
        self.0.details.as_ref()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.0.status.as_u16(),
            self.0.code,
            self.0.message
        )
    }
}

impl std::error::Error for ApiError {}

pub use docbundle_domain::FieldError;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let this = *self.0;
        let request_id = current_request_id();
        if this.status.is_server_error() && this.status != StatusCode::NOT_IMPLEMENTED {
            tracing::error!(
                status = this.status.as_u16(),
                cause = this.cause.as_deref().unwrap_or("unknown"),
                "request failed"
            );
        }
        let mut error = json!({
            "code": this.code,
            "message": this.message,
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "requestId": request_id,
        });
        if let Some(details) = this.details {
            error["details"] = details;
        }
        let mut response = (this.status, axum::Json(json!({ "error": error }))).into_response();
        for (name, value) in this.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// Seconds a `503` asks the caller to wait: about the time a dependency gets to answer.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

impl From<DependencyError> for ApiError {
    fn from(e: DependencyError) -> Self {
        ApiError::unavailable(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn server_errors_hide_their_cause() {
        let response = ApiError::internal("password=hunter2 in connection string").into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = body_json(response).await;
        assert_eq!(body["error"]["code"], "INTERNAL_ERROR");
        assert_eq!(body["error"]["message"], "Something went wrong");
        assert!(!body.to_string().contains("hunter2"));
    }

    #[tokio::test]
    async fn unavailable_says_retry_and_hides_its_cause() {
        let response =
            ApiError::unavailable("postgres: no answer from db.internal:5432").into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        let body = body_json(response).await;
        assert_eq!(body["error"]["code"], "UNAVAILABLE");
        assert!(body["error"]["message"].as_str().unwrap().contains("retry"));
        assert!(!body.to_string().contains("db.internal"));
    }

    #[tokio::test]
    async fn validation_errors_carry_field_details() {
        let response = ApiError::validation(
            "Invalid body",
            vec![FieldError::new("documents[0].name", "must not be empty")],
        )
        .into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = body_json(response).await;
        assert_eq!(body["error"]["code"], "VALIDATION_FAILED");
        assert_eq!(body["error"]["details"][0]["field"], "documents[0].name");
        assert!(body["error"]["timestamp"].as_str().is_some());
    }

    #[tokio::test]
    async fn unauthorized_sets_the_bearer_challenge() {
        let response = ApiError::unauthorized("Token expired").into_response();
        let challenge = response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.starts_with("Bearer error=\"invalid_token\""));
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn rate_limited_sets_retry_after() {
        let response = ApiError::rate_limited(7).into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }
}
