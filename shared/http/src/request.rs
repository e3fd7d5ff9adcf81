//! Every request's frame: its id (in the logs and the `x-request-id` answer header), its
//! X-Ray trace, the body limit, and the envelope for unknown routes and methods.

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use tracing::Instrument;

use crate::error::ApiError;
use docbundle_domain::trace::TraceHeader;

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

/// A `501` in the envelope, for routes whose feature has not landed yet.
pub async fn not_implemented() -> Response {
    ApiError::not_implemented("This operation").into_response()
}
