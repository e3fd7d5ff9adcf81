//! `webhooks`: `POST /api/v1/webhooks/{sourceId}` receives signed events from upstream systems
//! (Standard Webhooks). No JWT: the signature is the credential.
//!
//! A verified event `{type, data}` launches a run of every active configuration of the
//! source's merchant whose `triggers` list `type`, with `data` as the seed — through the same
//! launch path as the API. A repeated `webhook-id` is answered as the first time and launches
//! nothing; the event, the runs and the answer are recorded in one transaction.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use docbundle::app::launch::{self, InboundEvent};
use docbundle::domain::inbound::{self, SourceSecrets};
use docbundle::error::{ApiError, FieldError};
use docbundle::http::openapi::{ErrorEnvelope, InboundAccepted};
use docbundle::http::{check_storable, finish_router, ApiPath};
use docbundle::infra::db::inbound::{self as repo, WebhookSource};
use docbundle::telemetry::TraceHeader;
use docbundle::AppState;
use serde_json::Value;
use uuid::Uuid;

/// The routes this function serves, as `template.yaml` declares them.
pub const ROUTES: &[(&str, &str)] = &[("POST", "/api/v1/webhooks/{sourceId}")];

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/webhooks/{sourceId}", post(receive))
}

/// The function's whole HTTP app.
pub fn app(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    finish_router(routes().with_state(state), max_body)
}

/// Secrets read from Vault, reused briefly so that a burst of events costs one Vault read.
/// Keyed by source and secret version: a rotation bumps the version in PostgreSQL (after
/// writing Vault), so a cached entry never hides a new secret.
type SecretCache = HashMap<(Uuid, i32), (Instant, SourceSecrets)>;
static SECRETS: Mutex<Option<SecretCache>> = Mutex::new(None);

async fn secrets_of(state: &AppState, source: &WebhookSource) -> Result<SourceSecrets, ApiError> {
    let key = (source.id, source.secret_version);
    {
        let cache = SECRETS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, secrets)) = cache.as_ref().and_then(|c| c.get(&key)) {
            if at.elapsed() < state.settings.webhook_secret_cache {
                return Ok(secrets.clone());
            }
        }
    }
    // Vault unreachable → 503: the sender retries later.
    let secrets: SourceSecrets = state
        .vault
        .get_secret(&inbound::vault_path(source.id))
        .await?
        .unwrap_or_default();
    let mut cache = SECRETS.lock().unwrap_or_else(|p| p.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    cache.retain(|(id, _), _| *id != source.id);
    cache.insert(key, (Instant::now(), secrets.clone()));
    Ok(secrets)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn refused(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
}

async fn verified(
    state: &AppState,
    source: &WebhookSource,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    let secrets = secrets_of(state, source).await?;
    inbound::verify(
        &secrets.valid_at(Utc::now()),
        header(headers, "webhook-id"),
        header(headers, "webhook-timestamp"),
        header(headers, "webhook-signature"),
        body,
        Utc::now(),
    )
    .map_err(|e| refused(e.describe()))
}

/// The operations this function serves, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(receive))]
pub struct ApiDoc;

/// An event from upstream: `type` picks the configurations that listen to it, `data` is the
/// seed.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // the document's view of the body, which is read as raw bytes
struct InboundBody {
    #[serde(rename = "type")]
    type_: String,
    #[schema(value_type = Object)]
    data: serde_json::Map<String, Value>,
}

/// Receive a signed event from an upstream system.
///
/// Signed per Standard Webhooks with the source's secret (no token): HMAC-SHA256 over
/// `<webhook-id>.<webhook-timestamp>.<body>`. Each configuration that listens to the event's
/// `type` gets a run; a repeated `webhook-id` gets the first answer.
#[utoipa::path(post, path = "/api/v1/webhooks/{sourceId}", operation_id = "receiveWebhook", tag = "webhooks",
    params(("sourceId" = Uuid, Path, description = "The source, as created for the merchant"),
        ("webhook-id" = String, Header, description = "Unique per event; repeats are answered once"),
        ("webhook-timestamp" = String, Header, description = "Unix seconds; at most 5 minutes off"),
        ("webhook-signature" = String, Header,
         description = "Space-separated `v1,<base64 HMAC-SHA256>`; any one matching a current secret passes")),
    request_body = InboundBody,
    responses(
        (status = 202, description = "Accepted: the runs it launched", body = InboundAccepted),
        (status = 401, description = "A signature, timestamp or source that does not check out, named", body = ErrorEnvelope),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(()))]
async fn receive(
    State(state): State<AppState>,
    ApiPath(source_id): ApiPath<Uuid>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let trace = parts.extensions.get::<TraceHeader>().cloned();
    let limit = state.settings.max_body_bytes;
    let body = axum::body::to_bytes(Body::new(body), limit)
        .await
        .map_err(|_| ApiError::payload_too_large(limit))?;

    let source = repo::find_source(&state.db, source_id)
        .await?
        .filter(|s| s.status == "active")
        .ok_or_else(|| refused("Unknown or disabled webhook source"))?;
    verified(&state, &source, &parts.headers, &body).await?;
    let webhook_id = header(&parts.headers, "webhook-id")
        .unwrap_or_default()
        .to_owned();
    if webhook_id.len() > 255 {
        return Err(ApiError::validation(
            "Invalid webhook-id",
            vec![FieldError::new(
                "webhook-id",
                "must be at most 255 characters",
            )],
        ));
    }

    // A repeat is answered as the first delivery was, before anything else is parsed.
    if let Some(answer) = repo::event_answer(&state.db, source.id, &webhook_id).await? {
        return Ok((StatusCode::ACCEPTED, Json(answer)).into_response());
    }

    let event: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid_json(format!("Body is not valid JSON: {e}")))?;
    // A NUL anywhere (in `type`, in `data`) cannot be stored: a 4xx, so that the sender stops
    // retrying, never a 503.
    check_storable(&event)?;
    let event_type = event
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let data = event.get("data").cloned().unwrap_or(Value::Null);
    let mut problems = Vec::new();
    if event_type.is_empty() || event_type.len() > 100 {
        problems.push(FieldError::new(
            "type",
            "must be a string of 1 to 100 characters",
        ));
    }
    if !data.is_object() {
        problems.push(FieldError::new("data", "must be a JSON object"));
    }
    if !problems.is_empty() {
        return Err(ApiError::validation("The event is not valid", problems));
    }

    let answer = launch::launch_for_event(
        &state,
        InboundEvent {
            source: &source,
            webhook_id,
            event_type,
            data,
            body_sha256: docbundle::domain::digest::sha256_hex(&body),
            trace,
        },
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}
