//! The HTTP edge shared by every API function: request ids, body limits, the JSON/path/query
//! extractors whose rejections become the error envelope, and the fallbacks for unknown routes.

pub mod auth;
pub mod openapi;
pub mod paging;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::error::{ApiError, FieldError};
use crate::telemetry::TraceHeader;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served on this task, or `"-"` outside one.
pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(|id| id.clone())
        .unwrap_or_else(|_| "-".to_owned())
}

/// The request id: API Gateway's when behind it, a sane caller-supplied `x-request-id`
/// otherwise, or a fresh UUID.
fn request_id_of(request: &Request) -> String {
    if let Some(RequestContext::ApiGatewayV2(ctx)) = request.request_context_ref() {
        if let Some(id) = ctx.request_id.as_deref().filter(|id| !id.is_empty()) {
            return id.to_owned();
        }
    }
    request
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// The X-Ray trace of this invocation: the Lambda runtime's (from the invocation's context) or,
/// without one (the local API), the `x-amzn-trace-id` header API Gateway adds.
fn trace_of(request: &Request) -> Option<TraceHeader> {
    if let Some(trace) = request
        .lambda_context_ref()
        .and_then(|context| context.xray_trace_id.as_deref())
        .and_then(TraceHeader::parse)
    {
        return Some(trace);
    }
    request
        .headers()
        .get("x-amzn-trace-id")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceHeader::parse)
}

async fn request_context(mut request: Request, next: Next) -> Response {
    let request_id = request_id_of(&request);
    let trace = trace_of(&request);
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        path = %request.uri().path(),
        trace = tracing::field::Empty,
    );
    if let Some(trace) = trace {
        span.record("trace", trace.as_str());
        request.extensions_mut().insert(trace);
    }
    let header_value = HeaderValue::from_str(&request_id).ok();
    let mut response = REQUEST_ID
        .scope(request_id, next.run(request).instrument(span.clone()))
        .await;
    span.in_scope(|| {
        tracing::info!(status = response.status().as_u16(), "request served");
    });
    let headers = response.headers_mut();
    if let Some(value) = header_value {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    // Answers are per caller and never meant to be cached or sniffed into another type.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn not_found() -> ApiError {
    ApiError::not_found("No such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "Method not allowed on this route",
    )
}

/// Adds what every API router needs: the envelope for unknown routes and methods, the body
/// limit, and the request-id layer (outermost, so that every response carries the id).
pub fn finish_router(router: Router, max_body_bytes: usize) -> Router {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(request_context))
}

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
fn nul_path(value: &serde_json::Value, path: &mut Vec<String>) -> Option<String> {
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
fn data_error_field(text: &str) -> (String, String) {
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

/// How the use-cases' refusals answer: the domain's reasons mapped to statuses and codes.
impl From<crate::app::launch::LaunchError> for ApiError {
    fn from(e: crate::app::launch::LaunchError) -> Self {
        use crate::app::launch::LaunchError;
        match e {
            LaunchError::ConfigurationNotFound => ApiError::not_found("Configuration not found"),
            LaunchError::ConfigurationArchived => {
                ApiError::conflict("The configuration is archived: it launches no new runs")
            }
            LaunchError::Invalid { message, details } => ApiError::validation(message, details),
            LaunchError::RateLimited { retry_after_secs } => {
                ApiError::rate_limited(retry_after_secs)
            }
            LaunchError::KeyReused => ApiError::validation(
                "This Idempotency-Key was used with a different request body",
                vec![FieldError::new(
                    "Idempotency-Key",
                    "was used with a different request body",
                )],
            ),
            LaunchError::KeyInProgress => ApiError::conflict(
                "The request with this Idempotency-Key is still in progress; retry",
            ),
            LaunchError::Dependency(e) => e.into(),
            LaunchError::Inconsistent(cause) => ApiError::internal(cause),
        }
    }
}

/// A `501` in the envelope, for routes whose feature has not landed yet.
pub async fn not_implemented() -> Response {
    ApiError::not_implemented("This operation").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_json_schema_integers() {
        #[derive(serde::Deserialize)]
        struct Body {
            #[serde(default, deserialize_with = "integral_i32")]
            version: Option<i32>,
        }
        let version = |raw: &str| {
            serde_json::from_str::<Body>(raw)
                .map(|b| b.version)
                .map_err(|e| e.to_string())
        };
        assert_eq!(version(r#"{"version": 134217728.0}"#), Ok(Some(134217728)));
        assert_eq!(version(r#"{"version": 3e0}"#), Ok(Some(3)));
        assert_eq!(version(r#"{"version": 7}"#), Ok(Some(7)));
        assert_eq!(version(r#"{"version": null}"#), Ok(None));
        assert_eq!(version("{}"), Ok(None));
        for hostile in [
            "2.5",
            "2147483648",
            "1e300",
            "-1e20",
            "\"3\"",
            "99999999999999999999",
        ] {
            let err = version(&format!(r#"{{"version": {hostile}}}"#)).unwrap_err();
            assert!(
                err.contains("integer") || err.contains("invalid type"),
                "{hostile}: {err}"
            );
        }
    }
    use axum::body::Body;
    use axum::routing::post;
    use tower::ServiceExt;

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body1 {
        name: String,
    }

    fn app() -> Router {
        let router = Router::new().route(
            "/things",
            post(|ApiJson(b): ApiJson<Body1>| async move { b.name }),
        );
        finish_router(router, 64)
    }

    async fn send(
        req: axum::http::Request<Body>,
    ) -> (StatusCode, Option<String>, serde_json::Value) {
        let response = app().oneshot(req).await.unwrap();
        let status = response.status();
        let id = response
            .headers()
            .get(&REQUEST_ID_HEADER)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, id, json)
    }

    fn post_json(body: &str) -> axum::http::Request<Body> {
        axum::http::Request::post("/things")
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    }

    #[tokio::test]
    async fn malformed_json_is_400_in_the_envelope_with_the_request_id() {
        let (status, id, body) = send(post_json("{nope")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "INVALID_JSON");
        assert_eq!(body["error"]["requestId"].as_str(), id.as_deref());
        assert!(id.is_some());
    }

    #[tokio::test]
    async fn unknown_fields_are_422_naming_the_problem() {
        let (status, _, body) = send(post_json(r#"{"name":"a","extra":1}"#)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("extra"));
    }

    #[test]
    fn data_errors_name_the_field() {
        assert_eq!(
            data_error_field("Failed to deserialize the JSON body into the target type: documents[2].format: unknown variant `docx` at line 1 column 9"),
            ("documents[2].format".to_owned(), "unknown variant `docx` at line 1 column 9".to_owned())
        );
        assert_eq!(
            data_error_field("Failed to deserialize the JSON body into the target type: missing field `name` at line 1 column 2").0,
            "body"
        );
    }

    #[tokio::test]
    async fn nul_characters_are_422_naming_the_field() {
        let (status, _, body) = send(post_json(r#"{"name":"a\u0000b"}"#)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["error"]["details"][0]["field"], "name");
        let nested = serde_json::json!({"documents": [{"t": "ok"}, {"t": "x\u{0}"}], "defaults": {"k\u{0}": 1}});
        assert_eq!(
            nul_path(&nested, &mut Vec::new()).as_deref(),
            Some("defaults.k\\u0000")
        );
        let only_list = serde_json::json!({"documents": [{"t": "ok"}, {"t": "x\u{0}"}]});
        assert_eq!(
            nul_path(&only_list, &mut Vec::new()).as_deref(),
            Some("documents[1].t")
        );
        assert_eq!(
            nul_path(&serde_json::json!("\u{0}"), &mut Vec::new()).as_deref(),
            Some("body")
        );
        // An escaped backslash followed by `u0000` is not a NUL.
        let (status, _, _) = send(post_json(r#"{"name":"a\\u0000b"}"#)).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn every_answer_is_uncacheable_and_unsniffable() {
        let response = app()
            .oneshot(
                axum::http::Request::get("/nowhere")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(
            response.headers()[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff"
        );
    }

    #[tokio::test]
    async fn oversized_bodies_are_413() {
        let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(100));
        let (status, _, body) = send(post_json(&big)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE");
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_use_the_envelope() {
        let (status, _, body) = send(
            axum::http::Request::get("/nowhere")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "NOT_FOUND");
        let (status, _, body) = send(
            axum::http::Request::get("/things")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"]["code"], "METHOD_NOT_ALLOWED");
    }

    #[tokio::test]
    async fn a_sane_caller_request_id_is_kept_and_a_hostile_one_replaced() {
        let req = axum::http::Request::get("/nowhere")
            .header("x-request-id", "abc-123")
            .body(Body::empty())
            .unwrap();
        let (_, id, body) = send(req).await;
        assert_eq!(id.as_deref(), Some("abc-123"));
        assert_eq!(body["error"]["requestId"], "abc-123");

        let req = axum::http::Request::get("/nowhere")
            .header("x-request-id", "a b<script>")
            .body(Body::empty())
            .unwrap();
        let (_, id, _) = send(req).await;
        assert_ne!(id.as_deref(), Some("a b<script>"));
    }
}
