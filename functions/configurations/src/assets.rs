//! `/api/v1/assets`: the images and fonts templates use. An upload is the raw bytes
//! (`POST /api/v1/assets?name=logo.png`); its type is read from the bytes; the same bytes
//! uploaded again are the same asset. Uploads need `config.write`, reads `config.read`.

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use docbundle::domain::asset::{self, AssetInfo};
use docbundle::error::ApiError;
use docbundle::http::auth::{scope, Authorized};
use docbundle::http::openapi::ErrorEnvelope;
use docbundle::http::paging::{page, PageRequest};
use docbundle::http::MerchantQuery;
use docbundle::http::{body_within, ApiPath, ApiQuery};
use docbundle::infra::db::assets::{self as repo, AssetKey};
use docbundle::AppState;
use serde::Deserialize;
use uuid::Uuid;

use super::merchant;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/assets", get(list).post(upload))
        .route("/api/v1/assets/{sha256}", get(read))
        .route("/api/v1/assets/{sha256}/content", get(content))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct UploadQuery {
    /// The merchant acted for: required with a platform token, else the token's own.
    merchant_id: Option<Uuid>,
    /// The file name, whose extension (any case) must match the content: `.png`,
    /// `.jpg`/`.jpeg`, `.svg`, `.webp`, `.ttf` or `.otf`.
    #[param(
        min_length = 1,
        max_length = 100,
        pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]*\\.([Pp][Nn][Gg]|[Jj][Pp][Gg]|[Jj][Pp][Ee][Gg]|[Ss][Vv][Gg]|[Ww][Ee][Bb][Pp]|[Tt][Tt][Ff]|[Oo][Tt][Ff])$"
    )]
    name: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// The merchant acted for: required with a platform token, else the token's own.
    merchant_id: Option<Uuid>,
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
}

/// The merchant's asset of that hash; anything else (not a hash, another merchant's) is 404.
async fn find(
    state: &AppState,
    merchant: docbundle::domain::MerchantId,
    sha256: &str,
) -> Result<AssetInfo, ApiError> {
    let not_found = || ApiError::not_found("Asset not found");
    if !asset::is_sha256(sha256) {
        return Err(not_found());
    }
    repo::find(&state.db, merchant, sha256)
        .await?
        .ok_or_else(not_found)
}

/// Upload an image or a font.
///
/// The body is the file's bytes (any `Content-Type`: the type is read from the bytes): a PNG,
/// JPEG, SVG or WebP image or a TrueType/OpenType font, at most `ASSET_MAX_BYTES`. `201` when
/// new; `200` with the existing asset when the merchant uploaded these bytes before.
#[utoipa::path(post, path = "/api/v1/assets", operation_id = "uploadAsset", tag = "assets",
    params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    responses(
        (status = 201, description = "Stored", body = AssetInfo,
         headers(("Location" = String, description = "The asset's URL"))),
        (status = 200, description = "These bytes were stored already", body = AssetInfo),
        (status = 413, description = "Larger than ASSET_MAX_BYTES", body = ErrorEnvelope),
        (status = 422, description = "Not an accepted type, damaged, or named with another type's extension", body = ErrorEnvelope),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["config.write"]), ("bearer" = [])))]
pub(crate) async fn upload(
    State(state): State<AppState>,
    principal: Authorized<scope::ConfigWrite>,
    ApiQuery(query): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let merchant = merchant(&principal, query.merchant_id)?;
    let bytes = body_within(&headers, body, state.settings.asset_max_bytes).await?;
    let (info, created) = docbundle::app::assets::upload(
        &state,
        merchant,
        &query.name,
        bytes.to_vec(),
        &principal.subject,
    )
    .await?;
    if created {
        let location = format!("/api/v1/assets/{}", info.sha256);
        Ok((StatusCode::CREATED, [(LOCATION, location)], Json(info)).into_response())
    } else {
        Ok((StatusCode::OK, Json(info)).into_response())
    }
}

/// List the merchant's assets, newest first.
#[utoipa::path(get, path = "/api/v1/assets", operation_id = "listAssets", tag = "assets", params(ListQuery),
    responses(
        (status = 200, description = "One page of assets", body = docbundle::http::paging::Page<AssetInfo>),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["config.read"]), ("bearer" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    principal: Authorized<scope::ConfigRead>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let merchant = merchant(&principal, query.merchant_id)?;
    let request = PageRequest::<AssetKey>::parse(query.limit, query.cursor.as_deref())?;
    let rows = repo::list(&state.db, merchant, request.after.as_ref(), request.fetch()).await?;
    Ok(Json(page(rows, request.limit, AssetKey::of)).into_response())
}

/// One asset's record.
#[utoipa::path(get, path = "/api/v1/assets/{sha256}", operation_id = "getAsset", tag = "assets",
    params(("sha256" = String, Path, pattern = "^[0-9a-f]{64}$"), MerchantQuery),
    responses(
        (status = 200, description = "The asset", body = AssetInfo),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["config.read"]), ("bearer" = [])))]
pub(crate) async fn read(
    State(state): State<AppState>,
    principal: Authorized<scope::ConfigRead>,
    ApiPath(sha256): ApiPath<String>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
) -> Result<Response, ApiError> {
    let merchant = merchant(&principal, query.merchant_id)?;
    Ok(Json(find(&state, merchant, &sha256).await?).into_response())
}

/// One asset's bytes, as an attachment with its content type.
#[utoipa::path(get, path = "/api/v1/assets/{sha256}/content", operation_id = "getAssetContent", tag = "assets",
    params(("sha256" = String, Path, pattern = "^[0-9a-f]{64}$"), MerchantQuery),
    responses(
        (status = 200, description = "The bytes",
         content(("image/png"), ("image/jpeg"), ("image/svg+xml"), ("image/webp"), ("font/ttf"), ("font/otf"))),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["config.read"]), ("bearer" = [])))]
pub(crate) async fn content(
    State(state): State<AppState>,
    principal: Authorized<scope::ConfigRead>,
    ApiPath(sha256): ApiPath<String>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
) -> Result<Response, ApiError> {
    let merchant = merchant(&principal, query.merchant_id)?;
    let info = find(&state, merchant, &sha256).await?;
    let key = asset::asset_key(merchant, &sha256);
    let bytes = state.store.get(&key).await?.ok_or_else(|| {
        ApiError::from(docbundle::error::DependencyError::failed(
            "s3",
            "read asset",
            format!("{key} is missing"),
        ))
    })?;
    Ok((
        [
            (CONTENT_TYPE, info.kind.content_type().to_owned()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", info.name),
            ),
            // An SVG opened from here must not run as a page of this origin.
            (
                CONTENT_SECURITY_POLICY,
                "sandbox; default-src 'none'".to_owned(),
            ),
        ],
        bytes,
    )
        .into_response())
}
