//! `configurations`: versioned template sets.
//!
//! Every change creates a new immutable version; updates need `If-Match` with the current
//! `ETag`. Reads need `config.read`, changes `config.write`. A caller sees only its own
//! merchant's configurations (another merchant's are `404`); `merchant.admin` callers name the
//! merchant with `?merchantId=`.

mod assets;

use axum::extract::State;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE, ETAG, IF_MATCH, LOCATION,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use docbundle::app::preview::{self, Previewed};
use docbundle::domain::configuration::{ConfigurationBody, ConfigurationSpec};
use docbundle::domain::{ConfigurationStatus, MerchantId};
use docbundle::error::ApiError;
use docbundle::http::auth::{scope, Authorized, Principal};
use docbundle::http::openapi::ErrorEnvelope;
use docbundle::http::paging::{filter, page, PageRequest, TimeKey};
use docbundle::http::MerchantQuery;
use docbundle::http::{finish_router, ApiJson, ApiPath, ApiQuery};
use docbundle::infra::db::configurations::{
    self as repo, Configuration, ConfigurationFilter, UpdateOutcome,
};
use docbundle::render::configuration::{self, Rejection};
use docbundle::render::RenderAsset;
use docbundle::AppState;
use serde::Deserialize;
use uuid::Uuid;

/// The routes this function serves, as `template.yaml` declares them.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/configurations"),
    ("GET", "/api/v1/configurations"),
    ("GET", "/api/v1/configurations/{id}"),
    ("PUT", "/api/v1/configurations/{id}"),
    ("DELETE", "/api/v1/configurations/{id}"),
    ("GET", "/api/v1/configurations/{id}/versions"),
    ("GET", "/api/v1/configurations/{id}/versions/{version}"),
    ("POST", "/api/v1/configurations/preview"),
    ("POST", "/api/v1/configurations/{id}/preview"),
    ("POST", "/api/v1/assets"),
    ("GET", "/api/v1/assets"),
    ("GET", "/api/v1/assets/{sha256}"),
    ("GET", "/api/v1/assets/{sha256}/content"),
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/configurations", get(list).post(create))
        .route(
            "/api/v1/configurations/{id}",
            get(read).put(update).delete(archive),
        )
        .route("/api/v1/configurations/{id}/versions", get(list_versions))
        .route(
            "/api/v1/configurations/{id}/versions/{version}",
            get(read_version),
        )
        .route("/api/v1/configurations/preview", post(preview_draft))
        .route("/api/v1/configurations/{id}/preview", post(preview_version))
        .merge(assets::routes())
}

/// The function's whole HTTP app.
pub fn app(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    finish_router(routes().with_state(state), max_body)
}

/// The operations this function serves, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    create,
    list,
    read,
    update,
    archive,
    list_versions,
    read_version,
    preview_draft,
    preview_version,
    assets::upload,
    assets::list,
    assets::read,
    assets::content
))]
pub struct ApiDoc;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// The merchant acted for: required with a platform token, else the token's own.
    merchant_id: Option<Uuid>,
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
    /// Exact name.
    name: Option<String>,
    #[param(value_type = Option<docbundle::domain::ConfigurationStatus>)]
    status: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct VersionsQuery {
    /// The merchant acted for: required with a platform token, else the token's own.
    merchant_id: Option<Uuid>,
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

fn not_found() -> ApiError {
    ApiError::not_found("Configuration not found")
}

fn with_etag(
    status: StatusCode,
    config: &Configuration,
    extra: Option<(axum::http::HeaderName, String)>,
) -> Response {
    let mut response = (status, Json(config)).into_response();
    if let Ok(v) = HeaderValue::from_str(&config.etag()) {
        response.headers_mut().insert(ETAG, v);
    }
    if let Some((name, value)) = extra {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
    response
}

/// Validation compiles and trial-renders templates: CPU work, kept off the async workers.
/// Returns the configuration and the assets its templates get.
async fn validate(
    state: &AppState,
    merchant: MerchantId,
    body: ConfigurationBody,
) -> Result<(ConfigurationSpec, Vec<RenderAsset>), ApiError> {
    let map = body.assets.clone().unwrap_or_default();
    let stored = docbundle::app::assets::load(state, merchant, &map).await?;
    let renderer = state.renderer.clone();
    let (spec, stored) = tokio::task::spawn_blocking(move || {
        configuration::validate(body, &stored, &renderer).map(|spec| (spec, stored))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|rejection| match rejection {
        Rejection::Invalid(errors) => {
            ApiError::validation("The configuration is not valid", errors)
        }
        Rejection::RendererUnavailable(cause) => ApiError::unavailable(cause),
    })?;
    let assets = configuration::render_assets(&spec.assets, &stored)
        .map_err(|errors| ApiError::validation("The configuration is not valid", errors))?;
    Ok((spec, assets))
}

fn merchant(principal: &Principal, requested: Option<Uuid>) -> Result<MerchantId, ApiError> {
    principal.acting_merchant(requested)
}

/// Create a configuration (version 1).
///
/// Every template is compiled and trial-rendered with `defaults` first.
#[utoipa::path(post, path = "/api/v1/configurations", operation_id = "createConfiguration", tag = "configurations",
    params(MerchantQuery), request_body = ConfigurationBody,
    responses(
        (status = 201, description = "Created", body = Configuration,
         headers(("ETag" = String, description = "`\"v<version>\"`, for If-Match"),
                 ("Location" = String, description = "The configuration's URL"))),
        (status = 422, description = "Not valid: every failure named, with line and column", body = ErrorEnvelope),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["config.write"]), ("bearer" = [])))]
async fn create(
    State(state): State<AppState>,
    principal: Authorized<scope::ConfigWrite>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
    ApiJson(body): ApiJson<ConfigurationBody>,
) -> Result<Response, ApiError> {
    let merchant = merchant(&principal, query.merchant_id)?;
    // A platform caller may name any merchant: it must exist.
    docbundle::infra::db::merchants::find(&state.db, merchant.as_uuid())
        .await?
        .ok_or_else(|| ApiError::not_found("Merchant not found"))?;
    let (spec, _) = validate(&state, merchant, body).await?;
    let created = repo::create(&state.db, merchant, &spec, &principal.subject).await?;
    let location = format!("/api/v1/configurations/{}", created.id);
    Ok(with_etag(
        StatusCode::CREATED,
        &created,
        Some((LOCATION, location)),
    ))
}

/// List configurations, newest first.
#[utoipa::path(get, path = "/api/v1/configurations", operation_id = "listConfigurations", tag = "configurations", params(ListQuery),
    responses(
        (status = 200, description = "One page of configurations", body = docbundle::http::paging::Page<Configuration>),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["config.read"]), ("bearer" = [])))]
async fn list(
    State(state): State<AppState>,
    principal: Authorized<scope::ConfigRead>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let merchant = merchant(&principal, query.merchant_id)?;
    let request = PageRequest::<TimeKey>::parse(query.limit, query.cursor.as_deref())?;
    let filter = ConfigurationFilter {
        name_prefix: query.name.filter(|n| !n.is_empty()),
        status: filter(
            "status",
            query.status.as_deref(),
            ConfigurationStatus::parse,
            &ConfigurationStatus::names(),
        )?,
    };
    let rows = repo::list(
        &state.db,
        merchant,
        &filter,
        request.after.as_ref(),
        request.fetch(),
    )
    .await?;
    Ok(Json(page(rows, request.limit, Configuration::page_key)).into_response())
}

/// A configuration with its current version.
#[utoipa::path(get, path = "/api/v1/configurations/{id}", operation_id = "getConfiguration", tag = "configurations",
    params(("id" = Uuid, Path), MerchantQuery),
    responses(
        (status = 200, description = "The configuration", body = Configuration,
         headers(("ETag" = String, description = "`\"v<version>\"`, for If-Match"))),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["config.read"]), ("bearer" = [])))]
async fn read(
    State(state): State<AppState>,
    principal: Authorized<scope::ConfigRead>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
) -> Result<Response, ApiError> {
    let merchant = merchant(&principal, query.merchant_id)?;
    let config = repo::find(&state.db, merchant, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(with_etag(StatusCode::OK, &config, None))
}

/// `"v3"` (or `W/"v3"`) → 3.
fn parse_if_match(headers: &HeaderMap) -> Result<Option<i32>, ApiError> {
    let Some(value) = headers.get(IF_MATCH) else {
        return Err(ApiError::precondition_required(
            "Updates need If-Match with the configuration's current ETag",
        ));
    };
    let raw = value.to_str().unwrap_or_default().trim();
    let raw = raw.strip_prefix("W/").unwrap_or(raw);
    Ok(raw
        .strip_prefix("\"v")
        .and_then(|r| r.strip_suffix('"'))
        .and_then(|n| n.parse().ok()))
}

/// Replace a configuration's content.
///
/// The result is a new immutable version.
#[utoipa::path(put, path = "/api/v1/configurations/{id}", operation_id = "updateConfiguration", tag = "configurations",
    params(("id" = Uuid, Path), MerchantQuery,
        ("If-Match" = String, Header, pattern = "^(W/)?\"v[0-9]+\"$",
         description = "The ETag read (`\"v3\"`): 428 without it, 412 when stale")),
    request_body = ConfigurationBody,
    responses(
        (status = 200, description = "The new version", body = Configuration,
         headers(("ETag" = String, description = "`\"v<version>\"`"))),
        (status = 412, description = "Changed since read: the current ETag is in the answer's header", body = ErrorEnvelope,
         headers(("ETag" = String))),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["config.write"]), ("bearer" = [])))]
async fn update(
    State(state): State<AppState>,
    principal: Authorized<scope::ConfigWrite>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ConfigurationBody>,
) -> Result<Response, ApiError> {
    let merchant = merchant(&principal, query.merchant_id)?;
    let expected = parse_if_match(&headers)?;
    let (spec, _) = validate(&state, merchant, body).await?;
    let Some(expected) = expected else {
        // An ETag this API never issued matches no version.
        return match repo::find(&state.db, merchant, id).await? {
            None => Err(not_found()),
            Some(current) => Err(stale(&current)),
        };
    };
    match repo::update(&state.db, merchant, id, expected, &spec, &principal.subject).await? {
        UpdateOutcome::Updated(config) => Ok(with_etag(StatusCode::OK, &config, None)),
        UpdateOutcome::NotFound => Err(not_found()),
        UpdateOutcome::Archived => Err(ApiError::conflict(
            "The configuration is archived and can no longer change",
        )),
        UpdateOutcome::Stale { current } => Err(stale(&current)),
    }
}

fn stale(current: &Configuration) -> ApiError {
    let error = ApiError::precondition_failed(format!(
        "The configuration changed: its current ETag is {}",
        current.etag()
    ));
    match HeaderValue::from_str(&current.etag()) {
        Ok(v) => error.with_header(ETAG, v),
        Err(_) => error,
    }
}

/// Archive a configuration.
///
/// Its versions stay readable; it launches nothing more.
#[utoipa::path(delete, path = "/api/v1/configurations/{id}", operation_id = "archiveConfiguration", tag = "configurations",
    params(("id" = Uuid, Path), MerchantQuery),
    responses(
        (status = 204, description = "Archived"),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["config.write"]), ("bearer" = [])))]
async fn archive(
    State(state): State<AppState>,
    principal: Authorized<scope::ConfigWrite>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
) -> Result<StatusCode, ApiError> {
    let merchant = merchant(&principal, query.merchant_id)?;
    repo::archive(&state.db, merchant, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A configuration's versions, newest first.
#[utoipa::path(get, path = "/api/v1/configurations/{id}/versions", operation_id = "listConfigurationVersions", tag = "configurations",
    params(("id" = Uuid, Path), VersionsQuery),
    responses(
        (status = 200, description = "One page of versions", body = docbundle::http::paging::Page<docbundle::infra::db::configurations::ConfigurationVersion>),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["config.read"]), ("bearer" = [])))]
async fn list_versions(
    State(state): State<AppState>,
    principal: Authorized<scope::ConfigRead>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<VersionsQuery>,
) -> Result<Response, ApiError> {
    let merchant = merchant(&principal, query.merchant_id)?;
    let request = PageRequest::<i32>::parse(query.limit, query.cursor.as_deref())?;
    repo::find(&state.db, merchant, id)
        .await?
        .ok_or_else(not_found)?;
    let rows = repo::versions(&state.db, merchant, id, request.after, request.fetch()).await?;
    Ok(Json(page(rows, request.limit, |v| v.version)).into_response())
}

/// One immutable version.
#[utoipa::path(get, path = "/api/v1/configurations/{id}/versions/{version}", operation_id = "getConfigurationVersion", tag = "configurations",
    params(("id" = Uuid, Path), ("version" = i32, Path, minimum = 1), MerchantQuery),
    responses(
        (status = 200, description = "The version", body = docbundle::infra::db::configurations::ConfigurationVersion),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["config.read"]), ("bearer" = [])))]
async fn read_version(
    State(state): State<AppState>,
    principal: Authorized<scope::ConfigRead>,
    ApiPath((id, version)): ApiPath<(Uuid, i32)>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
) -> Result<Response, ApiError> {
    let merchant = merchant(&principal, query.merchant_id)?;
    let found = repo::find_version(&state.db, merchant, id, version)
        .await?
        .ok_or_else(|| ApiError::not_found("Configuration version not found"))?;
    Ok(Json(found).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PreviewQuery {
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
struct DraftPreview {
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
struct VersionPreview {
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

/// Renders off the async workers, as validation does.
async fn render_preview(
    state: &AppState,
    previewed: PreviewSource,
    seed: Option<serde_json::Value>,
    document: Option<String>,
) -> Result<Response, ApiError> {
    let renderer = state.renderer.clone();
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
    Ok((
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
        .into_response())
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
         content(("application/pdf"), ("text/html"), ("text/markdown"), ("text/plain"), ("text/csv"), ("application/json"), ("application/zip"))),
        (status = 422, description = "Not valid, or the render failed: every failure named, with line and column", body = ErrorEnvelope),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["config.read"]), ("bearer" = [])))]
async fn preview_draft(
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
         content(("application/pdf"), ("text/html"), ("text/markdown"), ("text/plain"), ("text/csv"), ("application/json"), ("application/zip"))),
        (status = 422, description = "The seed is not valid, or the render failed", body = ErrorEnvelope),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["config.read"]), ("bearer" = [])))]
async fn preview_version(
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
