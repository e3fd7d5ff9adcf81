//! A configuration's immutable versions: listing them (`GET …/{id}/versions`, newest first)
//! and reading one (`GET …/{id}/versions/{version}`). Both need `config.read`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use docbundle::error::ApiError;
use docbundle::http::auth::{scope, Authorized};
use docbundle::http::openapi::ErrorEnvelope;
use docbundle::http::paging::{page, PageRequest};
use docbundle::http::MerchantQuery;
use docbundle::http::{ApiPath, ApiQuery};
use docbundle::infra::db::configurations as repo;
use docbundle::AppState;
use serde::Deserialize;
use uuid::Uuid;

use super::{merchant, not_found};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct VersionsQuery {
    /// The merchant acted for: required with a platform token, else the token's own.
    merchant_id: Option<Uuid>,
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// A configuration's versions, newest first.
#[utoipa::path(get, path = "/api/v1/configurations/{id}/versions", operation_id = "listConfigurationVersions", tag = "configurations",
    params(("id" = Uuid, Path), VersionsQuery),
    responses(
        (status = 200, description = "One page of versions", body = docbundle::http::paging::Page<docbundle::infra::db::configurations::ConfigurationVersion>),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["config.read"]), ("bearer" = [])))]
pub(crate) async fn list_versions(
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
pub(crate) async fn read_version(
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
