//! Previews: rendering a draft configuration (`POST …/preview`) or a saved version
//! (`POST …/{id}/preview`) with a seed, as a run would render it, storing nothing. Both need
//! `config.read` and are rate-limited per merchant.

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use docbundle::app::preview::{self, Previewed};
use docbundle::domain::configuration::ConfigurationBody;
use docbundle::domain::MerchantId;
use docbundle::error::ApiError;
use docbundle::http::auth::{scope, Authorized};
use docbundle::http::openapi::ErrorEnvelope;
use docbundle::http::{ApiJson, ApiPath, ApiQuery};
use docbundle::infra::db::configurations as repo;
use docbundle::render::configuration;
use docbundle::render::RenderAsset;
use docbundle::AppState;
use serde::Deserialize;
use uuid::Uuid;

use super::{merchant, not_found, validate};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PreviewQuery {
    /// The merchant acted for: required with a platform token, else the token's own.
    merchant_id: Option<Uuid>,
    /// The one document to render (its bytes, its content type); every document as a ZIP
    /// without it.
    #[param(value_type = Option<docbundle::http::openapi::DocumentName>)]
    document: Option<String>,
}

/// The body of `POST /api/v1/configurations/preview`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DraftPreview {
    /// A configuration body as `POST /api/v1/configurations` takes it; nothing is saved.
    configuration: ConfigurationBody,
    /// The seed; the draft's `defaults` without it.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    seed: Option<serde_json::Value>,
}

/// The body of `POST /api/v1/configurations/{id}/preview`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct VersionPreview {
    /// The version; the current one without it. Any JSON integer (`3` or `3.0`).
    #[serde(default, deserialize_with = "docbundle::http::integral_i32")]
    #[schema(minimum = 1, maximum = 2147483647)]
    version: Option<i32>,
    /// The seed; the version's `defaults` without it.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    seed: Option<serde_json::Value>,
}

async fn preview_allowed(state: &AppState, merchant: MerchantId) -> Result<(), ApiError> {
    let limit = state.settings.preview_rate_limit_per_minute;
    match docbundle::infra::cache::over_limit_per_minute(&state.cache, "preview", merchant, limit)
        .await
    {
        Some(retry_after) => Err(ApiError::rate_limited(retry_after)),
        None => Ok(()),
    }
}

/// The header of a preview that a run would sign: the documents left unsigned here.
const UNSIGNED: axum::http::HeaderName = axum::http::HeaderName::from_static("docbundle-unsigned");

/// Renders off the async workers, as validation does.
async fn render_preview(
    state: &AppState,
    previewed: PreviewSource,
    seed: Option<serde_json::Value>,
    document: Option<String>,
) -> Result<Response, ApiError> {
    let renderer = state.renderer.clone();
    // Previews are never signed: name the documents a run would sign.
    let unsigned: Vec<String> = previewed
        .0
        .iter()
        .filter(|d| d.signature.is_some())
        .filter(|d| document.as_deref().is_none_or(|name| name == d.name))
        .map(|d| d.name.clone())
        .collect();
    let preview = tokio::task::spawn_blocking(move || {
        let (documents, name, version, data_schema, defaults, assets) = previewed;
        let defaults = defaults.and_then(|d| match d {
            serde_json::Value::Object(map) => Some(map),
            _ => None,
        });
        preview::render(
            &Previewed {
                documents: &documents,
                name: &name,
                version,
                data_schema: data_schema.as_ref(),
                defaults: defaults.as_ref(),
                assets: &assets,
            },
            seed,
            document.as_deref(),
            &renderer,
        )
    })
    .await
    .map_err(ApiError::internal)??;
    let mut response = (
        [
            (CONTENT_TYPE, preview.content_type),
            (
                CONTENT_DISPOSITION,
                format!("inline; filename=\"{}\"", preview.file_name),
            ),
            (CACHE_CONTROL, "no-store".to_owned()),
        ],
        preview.bytes,
    )
        .into_response();
    if let Ok(names) = axum::http::HeaderValue::from_str(&unsigned.join(", ")) {
        if !unsigned.is_empty() {
            response.headers_mut().insert(UNSIGNED, names);
        }
    }
    Ok(response)
}

/// What a preview renders: documents, name, version, schema, defaults, assets.
type PreviewSource = (
    Vec<docbundle::domain::configuration::DocumentSpec>,
    String,
    i32,
    Option<serde_json::Value>,
    Option<serde_json::Value>,
    Vec<RenderAsset>,
);

/// Preview a draft: render an unsaved configuration with a seed.
///
/// Checked as a save is (the same `422` details), rendered as a run would render it, nothing
/// stored. Rate-limited per merchant (`PREVIEW_RATE_LIMIT_PER_MINUTE`).
#[utoipa::path(post, path = "/api/v1/configurations/preview", operation_id = "previewConfigurationDraft", tag = "configurations",
    params(PreviewQuery), request_body = DraftPreview,
    responses(
        (status = 200, description = "The document (with `document`), or every document as a ZIP",
         headers(("Docbundle-Unsigned" = String, description = "The documents a run signs, which a preview never does (comma-separated); absent when none")),
         content(("application/pdf"), ("text/html"), ("text/markdown"), ("text/plain"), ("text/csv"), ("application/json"), ("application/zip"))),
        (status = 422, description = "Not valid, or the render failed: every failure named, with line and column", body = ErrorEnvelope),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["config.read"]), ("bearer" = [])))]
pub(crate) async fn preview_draft(
    State(state): State<AppState>,
    principal: Authorized<scope::ConfigRead>,
    ApiQuery(query): ApiQuery<PreviewQuery>,
    ApiJson(body): ApiJson<DraftPreview>,
) -> Result<Response, ApiError> {
    let merchant = merchant(&principal, query.merchant_id)?;
    preview_allowed(&state, merchant).await?;
    let (spec, assets) = validate(&state, merchant, body.configuration).await?;
    let source = (
        spec.documents,
        spec.name,
        1,
        spec.data_schema,
        spec.defaults.map(serde_json::Value::Object),
        assets,
    );
    render_preview(&state, source, body.seed, query.document).await
}

/// Preview a saved version (the current one by default) with a seed.
#[utoipa::path(post, path = "/api/v1/configurations/{id}/preview", operation_id = "previewConfiguration", tag = "configurations",
    params(("id" = Uuid, Path), PreviewQuery), request_body = VersionPreview,
    responses(
        (status = 200, description = "The document (with `document`), or every document as a ZIP",
         headers(("Docbundle-Unsigned" = String, description = "The documents a run signs, which a preview never does (comma-separated); absent when none")),
         content(("application/pdf"), ("text/html"), ("text/markdown"), ("text/plain"), ("text/csv"), ("application/json"), ("application/zip"))),
        (status = 422, description = "The seed is not valid, or the render failed", body = ErrorEnvelope),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["config.read"]), ("bearer" = [])))]
pub(crate) async fn preview_version(
    State(state): State<AppState>,
    principal: Authorized<scope::ConfigRead>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<PreviewQuery>,
    ApiJson(body): ApiJson<VersionPreview>,
) -> Result<Response, ApiError> {
    let merchant = merchant(&principal, query.merchant_id)?;
    preview_allowed(&state, merchant).await?;
    let version = match body.version {
        Some(number) => repo::find_version(&state.db, merchant, id, number)
            .await?
            .ok_or_else(|| ApiError::not_found("Configuration version not found"))?,
        None => {
            let current = repo::find(&state.db, merchant, id)
                .await?
                .ok_or_else(not_found)?;
            repo::find_version(&state.db, merchant, id, current.version)
                .await?
                .ok_or_else(not_found)?
        }
    };
    let stored = docbundle::app::assets::load(&state, merchant, &version.assets).await?;
    let assets = configuration::render_assets(&version.assets, &stored).map_err(|errors| {
        let first = errors.first().map(|e| e.message.as_str()).unwrap_or("");
        ApiError::unavailable(format!("the version's assets cannot be read: {first}"))
    })?;
    let source = (
        version.documents,
        version.name,
        version.version,
        version.data_schema,
        version.defaults,
        assets,
    );
    render_preview(&state, source, body.seed, query.document).await
}
