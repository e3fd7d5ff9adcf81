//! `configurations`: versioned template sets.
//!
//! Every change creates a new immutable version; updates need `If-Match` with the current
//! `ETag`. Reads need `config.read`, changes `config.write`. A caller sees only its own
//! merchant's configurations (another merchant's are `404`); `merchant.admin` callers name the
//! merchant with `?merchantId=`.
//!
//! This file holds the router, the configuration handlers themselves and the OpenAPI
//! document; `versions` reads versions, `preview` renders previews and `assets` serves the
//! images and fonts templates use.

mod assets;
mod preview;
mod versions;

use axum::extract::State;
use axum::http::header::{ETAG, IF_MATCH, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
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
        .route(
            "/api/v1/configurations/{id}/versions",
            get(versions::list_versions),
        )
        .route(
            "/api/v1/configurations/{id}/versions/{version}",
            get(versions::read_version),
        )
        .route(
            "/api/v1/configurations/preview",
            post(preview::preview_draft),
        )
        .route(
            "/api/v1/configurations/{id}/preview",
            post(preview::preview_version),
        )
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
    versions::list_versions,
    versions::read_version,
    preview::preview_draft,
    preview::preview_version,
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
    let retention = state.settings.retention.clone();
    let (spec, stored) = tokio::task::spawn_blocking(move || {
        configuration::validate(body, &stored, &renderer, &retention).map(|spec| (spec, stored))
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
