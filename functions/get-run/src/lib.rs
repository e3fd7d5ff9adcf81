//! `get-run`: read bundle runs and the public signing keys.
//!
//! `GET /api/v1/bundles/{id}` (with, once completed, the signed manifest and every artefact
//! behind short-lived presigned URLs), `GET /api/v1/bundles` (filters, keyset paging, newest
//! first) and `GET /api/v1/signing-keys` (the manifest-signing public keys as a JWKS, so that
//! anyone can verify a manifest offline).

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use docbundle::domain::{RunStatus, TriggerType};
use docbundle::error::ApiError;
use docbundle::http::auth::{scope, Authorized, Principal};
use docbundle::http::paging::{filter, page, PageRequest, TimeKey};
use docbundle::http::{finish_router, ApiPath, ApiQuery};
use docbundle::infra::db::runs::{self, BundleRun, RunFilter};
use docbundle::AppState;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::RwLock;
use uuid::Uuid;

/// The routes this function serves, as `template.yaml` declares them.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/bundles"),
    ("GET", "/api/v1/bundles/{id}"),
    ("GET", "/api/v1/signing-keys"),
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/bundles", get(list_runs))
        .route("/api/v1/bundles/{id}", get(get_run))
        .route("/api/v1/signing-keys", get(signing_keys))
}

/// The function's whole HTTP app.
pub fn app(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    finish_router(routes().with_state(state), max_body)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MerchantQuery {
    merchant_id: Option<Uuid>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListQuery {
    merchant_id: Option<Uuid>,
    limit: Option<i64>,
    cursor: Option<String>,
    configuration_id: Option<Uuid>,
    status: Option<String>,
    triggered_by_type: Option<String>,
}

async fn list_runs(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleRead>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    let request = PageRequest::<TimeKey>::parse(query.limit, query.cursor.as_deref())?;
    let filter = RunFilter {
        configuration_id: query.configuration_id,
        status: filter(
            "status",
            query.status.as_deref(),
            RunStatus::parse,
            &RunStatus::names(),
        )?,
        triggered_by_type: filter(
            "triggeredByType",
            query.triggered_by_type.as_deref(),
            TriggerType::parse,
            &TriggerType::names(),
        )?,
    };
    let rows = runs::list(
        &state.db,
        merchant,
        &filter,
        request.after.as_ref(),
        request.fetch(),
    )
    .await?;
    Ok(Json(page(rows, request.limit, BundleRun::page_key)).into_response())
}

async fn get_run(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleRead>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    let run = runs::find(&state.db, merchant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Bundle run not found"))?;
    let mut body = serde_json::to_value(&run).map_err(ApiError::internal)?;
    if run.status == RunStatus::Completed {
        let expiry = state.settings.presign_expiry;
        let manifest = runs::manifest(&state.db, run.id)
            .await?
            .ok_or_else(|| ApiError::internal("completed run without a manifest"))?;
        let artefacts = runs::artefacts(&state.db, run.id).await?;
        let manifest_url = state.store.presign_get(&manifest.key, expiry).await?;
        let urls = futures::future::try_join_all(
            artefacts
                .iter()
                .map(|a| state.store.presign_get(&a.key, expiry)),
        )
        .await?;
        body["manifest"] = json!({
            "key": manifest.key,
            "sha256": manifest.sha256,
            "bundleDigest": manifest.bundle_digest,
            "signature": manifest.signature,
            "keyId": manifest.key_id,
            "downloadUrl": manifest_url,
            "replay": manifest.body.get("replay").cloned().unwrap_or(Value::Null),
        });
        body["artefacts"] = Value::Array(
            artefacts
                .iter()
                .zip(urls)
                .map(|(a, url)| {
                    json!({
                        "name": a.name,
                        "format": a.format,
                        "contentType": a.content_type,
                        "size": a.size,
                        "sha256": a.sha256,
                        "downloadUrl": url,
                    })
                })
                .collect(),
        );
        body["downloadUrlsExpireIn"] = json!(expiry.as_secs());
    }
    Ok(Json(body).into_response())
}

/// Public keys change only on rotation; a minute of caching spares Vault a call per request.
static KEYS: RwLock<Option<(Instant, Value)>> = RwLock::const_new(None);
const KEYS_TTL: Duration = Duration::from_secs(60);

async fn signing_keys(
    State(state): State<AppState>,
    _principal: Principal,
) -> Result<Response, ApiError> {
    if let Some((at, jwks)) = KEYS.read().await.as_ref() {
        if at.elapsed() < KEYS_TTL {
            return Ok(Json(jwks.clone()).into_response());
        }
    }
    let keys = state.vault.public_keys().await?;
    let name = state.vault.signing_key_name();
    let jwks = json!({
        "keys": keys
            .iter()
            .filter_map(|k| {
                let raw = STANDARD.decode(&k.public_key).ok()?;
                Some(json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(raw),
                    "kid": format!("{name}:{}", k.version),
                    "alg": "EdDSA",
                    "use": "sig",
                }))
            })
            .collect::<Vec<_>>()
    });
    *KEYS.write().await = Some((Instant::now(), jwks.clone()));
    Ok(Json(jwks).into_response())
}
