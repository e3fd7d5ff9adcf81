//! `read-api`: every read of what a run produced and what proves it: runs, the public signing
//! keys, the transparency log, and the OpenAPI document.
//!
//! `GET /api/v1/bundles/{id}` (with, once completed, the signed manifest and every artefact
//! behind short-lived presigned URLs), `GET /api/v1/bundles` (filters, keyset paging, newest
//! first) and `GET /api/v1/signing-keys` (the manifest-signing public keys as a JWKS, so that
//! anyone can verify a manifest offline).

use std::time::{Duration, Instant};

mod batches;
mod transparency;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use docbundle::domain::manifest::Artefact;
use docbundle::domain::{MerchantId, RunStatus, TriggerType};
use docbundle::error::ApiError;
use docbundle::http::answers::{ArtefactLink, Jwk, Jwks, ManifestLink, RunDetail, TrustRoots};
use docbundle::http::auth::{scope, Authorized, Principal};
use docbundle::http::openapi::ErrorEnvelope;
use docbundle::http::paging::{filter, page, PageRequest, TimeKey};
use docbundle::http::MerchantQuery;
use docbundle::http::{finish_router, ApiPath, ApiQuery};
use docbundle::infra::db::holds;
use docbundle::infra::db::runs::{self, BundleRun, RunFilter};
use docbundle::AppState;
use serde::Deserialize;
use tokio::sync::RwLock;
use uuid::Uuid;

/// The routes this function serves, as `template.yaml` declares them.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/bundles"),
    ("GET", "/api/v1/bundles/{id}"),
    ("GET", "/api/v1/bundles/{id}/artefacts/{name}"),
    ("GET", "/api/v1/signing-keys"),
    ("GET", "/api/v1/trust-roots"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/v1/transparency/checkpoint"),
    ("GET", "/api/v1/transparency/consistency"),
    ("GET", "/api/v1/transparency/entries"),
    ("GET", "/api/v1/transparency/logs/{merchantId}/{path+}"),
    ("GET", "/api/v1/batches"),
    ("GET", "/api/v1/batches/{id}"),
    ("GET", "/api/v1/batches/{id}/errors"),
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/bundles", get(list_runs))
        .route("/api/v1/bundles/{id}", get(get_run))
        .route(
            "/api/v1/bundles/{id}/artefacts/{name}",
            get(download_artefact),
        )
        .route("/api/v1/signing-keys", get(signing_keys))
        .route("/api/v1/trust-roots", get(trust_roots))
        .route("/api/v1/openapi.json", get(openapi_document))
        .merge(transparency::routes())
        .merge(batches::routes())
}

/// The function's whole HTTP app.
pub fn app(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    finish_router(routes().with_state(state), max_body)
}

/// The operations this function serves, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list_runs,
    get_run,
    download_artefact,
    signing_keys,
    trust_roots,
    openapi_document,
    transparency::checkpoint,
    transparency::consistency,
    transparency::entries,
    transparency::log_file,
    batches::list,
    batches::read,
    batches::errors
))]
pub struct ApiDoc;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// The merchant acted for: required with a platform token, else the token's own.
    merchant_id: Option<Uuid>,
    /// Items per page.
    #[param(minimum = 1, maximum = 100, default = 20)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page.
    cursor: Option<String>,
    configuration_id: Option<Uuid>,
    #[param(value_type = Option<RunStatus>)]
    status: Option<String>,
    #[param(value_type = Option<TriggerType>)]
    triggered_by_type: Option<String>,
    /// Only the runs of this batch.
    batch_id: Option<Uuid>,
}

/// List runs, newest first.
#[utoipa::path(get, path = "/api/v1/bundles", operation_id = "listRuns", tag = "bundles", params(ListQuery),
    responses(
        (status = 200, description = "One page of runs", body = docbundle::http::paging::Page<BundleRun>),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["bundle.read"]), ("bearer" = [])))]
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
        batch_id: query.batch_id,
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

/// A run.
///
/// Once completed, with its signed manifest and every artefact behind short-lived URLs.
#[utoipa::path(get, path = "/api/v1/bundles/{id}", operation_id = "getRun", tag = "bundles",
    params(("id" = Uuid, Path, description = "The run's id"), MerchantQuery),
    responses(
        (status = 200, description = "The run", body = RunDetail),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["bundle.read"]), ("bearer" = [])))]
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
    let mut detail = RunDetail::of(run);
    if detail.run.status.has_manifest() {
        complete_detail(&state, merchant, &mut detail).await?;
    }
    if detail.run.status.has_ended() {
        detail.legal_holds = holds::holding_run(&state.db, merchant, id).await?;
    }
    Ok(Json(detail).into_response())
}

/// How long a download URL of `run` may live: the setting, never past the run's expiry.
fn url_lifetime(state: &AppState, run: &BundleRun) -> Duration {
    let setting = state.settings.presign_expiry;
    // A run past its expiry but not expired (held, or the next pass not yet there) keeps its
    // artefacts until it is: the setting then.
    match run.expires_at.map(|at| (at - chrono::Utc::now()).to_std()) {
        Some(Ok(left)) => setting.min(left.max(Duration::from_secs(1))),
        _ => setting,
    }
}

/// One artefact of a run: a redirect to a short-lived download URL.
///
/// `410 Gone` once the run expired (its retention passed, or an erasure): the artefact was
/// deleted; its SHA-256, the signed manifest and the log entry remain (`GET
/// /api/v1/bundles/{id}`).
#[utoipa::path(get, path = "/api/v1/bundles/{id}/artefacts/{name}", operation_id = "downloadArtefact", tag = "bundles",
    params(
        ("id" = Uuid, Path, description = "The run's id"),
        ("name" = docbundle::domain::document::DocumentName, Path, description = "The artefact's name"),
        MerchantQuery
    ),
    responses(
        (status = 302, description = "To a short-lived download URL", headers(("Location" = String))),
        (status = 410, description = "The run expired: its artefacts were deleted", body = ErrorEnvelope),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["bundle.read"]), ("bearer" = [])))]
async fn download_artefact(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleRead>,
    ApiPath((id, name)): ApiPath<(Uuid, String)>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    let run = runs::find(&state.db, merchant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Bundle run not found"))?;
    match run.status {
        RunStatus::Completed => {}
        RunStatus::Expired => {
            let at = run
                .expired_at
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            return Err(ApiError::new(
                axum::http::StatusCode::GONE,
                "GONE",
                format!(
                    "The run's artefacts were deleted at {at} ({}); its signed manifest and \
                     transparency log entry remain",
                    run.expired_by.as_deref().unwrap_or("retention")
                ),
            )
            .with_details(serde_json::json!({
                "expiredAt": run.expired_at,
                "expiredBy": run.expired_by,
            })));
        }
        RunStatus::Failed => {
            return Err(ApiError::not_found("The run failed: it has no artefacts"))
        }
        RunStatus::Pending | RunStatus::Processing => {
            return Err(ApiError::conflict(format!(
                "The run is {}: its artefacts do not exist yet",
                run.status
            )))
        }
    }
    let artefact = runs::artefacts(&state.db, id)
        .await?
        .into_iter()
        .find(|a| a.name == name)
        .ok_or_else(|| ApiError::not_found("The run has no artefact of this name"))?;
    let url = state
        .store
        .presign_get(&artefact.key, url_lifetime(&state, &run))
        .await?;
    let location = axum::http::HeaderValue::from_str(&url).map_err(ApiError::internal)?;
    Ok((
        axum::http::StatusCode::FOUND,
        [
            (axum::http::header::LOCATION, location),
            (
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            ),
        ],
    )
        .into_response())
}

/// A completed run's manifest, artefacts (each behind a short-lived URL) and log entry.
async fn complete_detail(
    state: &AppState,
    merchant: MerchantId,
    detail: &mut RunDetail,
) -> Result<(), ApiError> {
    let id = detail.run.id;
    let expiry = url_lifetime(state, &detail.run);
    // An expired run keeps its manifest (and proof), not its artefacts.
    let live = detail.run.status == RunStatus::Completed;
    let manifest = runs::manifest(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::internal("completed run without a manifest"))?;
    let artefacts = runs::artefacts(&state.db, id).await?;
    let manifest_url = state.store.presign_get(&manifest.key, expiry).await?;
    let timestamp_url = match &manifest.timestamp_key {
        Some(key) => Some(state.store.presign_get(key, expiry).await?),
        None => None,
    };
    let urls = futures::future::try_join_all(artefacts.iter().map(|a| async move {
        match live {
            true => state.store.presign_get(&a.key, expiry).await.map(Some),
            false => Ok(None),
        }
    }))
    .await?;
    let assets = match manifest.body.get("assets") {
        Some(assets) => serde_json::from_value(assets.clone()).map_err(ApiError::internal)?,
        None => Vec::new(),
    };
    // What the manifest adds to the stored rows: a signed PDF's render digest and signature.
    let mut listed: std::collections::HashMap<String, Artefact> = manifest
        .body
        .get("artefacts")
        .and_then(|a| serde_json::from_value::<Vec<Artefact>>(a.clone()).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|a| (a.name.clone(), a))
        .collect();
    detail.manifest = Some(ManifestLink {
        replay: manifest.body.get("replay").cloned(),
        assets,
        key: manifest.key,
        sha256: manifest.sha256,
        bundle_digest: manifest.bundle_digest,
        signature: manifest.signature,
        key_id: manifest.key_id,
        download_url: manifest_url,
        timestamp_url,
    });
    detail.artefacts = Some(
        artefacts
            .into_iter()
            .zip(urls)
            .map(|(a, download_url)| {
                let signed = listed.remove(&a.name);
                ArtefactLink {
                    render_sha256: signed.as_ref().and_then(|s| s.render_sha256.clone()),
                    einvoice: signed.as_ref().and_then(|s| s.einvoice.clone()),
                    signature: signed.and_then(|s| s.signature),
                    name: a.name,
                    format: a.format,
                    content_type: a.content_type,
                    size: a.size,
                    sha256: a.sha256,
                    download_url,
                }
            })
            .collect(),
    );
    detail.download_urls_expire_in = live.then_some(expiry.as_secs());
    detail.transparency = docbundle::app::transparency::inclusion(state, merchant, id).await?;
    Ok(())
}

/// Public keys change only on rotation; a minute of caching spares Vault a call per request.
static KEYS: RwLock<Option<(Instant, Jwks)>> = RwLock::const_new(None);
const KEYS_TTL: Duration = Duration::from_secs(60);

/// The public keys (JWKS): the manifest key's versions, to verify manifests offline, and the
/// log key's, which sign the transparency checkpoints.
///
/// Any valid token may read them.
#[utoipa::path(get, path = "/api/v1/signing-keys", operation_id = "getSigningKeys", tag = "bundles",
    responses(
        (status = 200, description = "The public keys", body = Jwks),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = []), ("bearer" = [])))]
async fn signing_keys(
    State(state): State<AppState>,
    _principal: Principal,
) -> Result<Response, ApiError> {
    Ok(Json(jwks(&state).await?).into_response())
}

/// The JWKS, cached for [`KEYS_TTL`]: every version of the manifest key, then of the log key.
pub(crate) async fn jwks(state: &AppState) -> Result<Jwks, ApiError> {
    if let Some((at, jwks)) = KEYS.read().await.as_ref() {
        if at.elapsed() < KEYS_TTL {
            return Ok(jwks.clone());
        }
    }
    let raw = |k: &docbundle::infra::secrets::PublicKey| -> Option<[u8; 32]> {
        STANDARD.decode(&k.public_key).ok()?.try_into().ok()
    };
    let manifest_keys = state.vault.public_keys().await?;
    let log_keys = state
        .vault
        .public_keys_of(state.vault.log_key_name())
        .await?;
    let jwks = Jwks {
        keys: manifest_keys
            .iter()
            .filter_map(|k| Some(Jwk::ed25519(state.vault.key_id(k.version), &raw(k)?)))
            .chain(log_keys.iter().filter_map(|k| {
                Some(Jwk::ed25519_log(
                    state.vault.log_key_id(k.version),
                    &raw(k)?,
                ))
            }))
            .collect(),
    };
    *KEYS.write().await = Some((Instant::now(), jwks.clone()));
    Ok(jwks)
}

/// The roots that validate signed PDFs and time-stamps, as PEM: the document-signing CA (Vault's
/// PKI engine, and any configured for an external CA) and the TSA's.
///
/// Any valid token may read them.
#[utoipa::path(get, path = "/api/v1/trust-roots", operation_id = "getTrustRoots", tag = "bundles",
    responses(
        (status = 200, description = "The trust roots", body = TrustRoots),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = []), ("bearer" = [])))]
async fn trust_roots(
    State(state): State<AppState>,
    _principal: Principal,
) -> Result<Response, ApiError> {
    let files = &state.settings.trust_roots;
    let mut document_signing: Vec<String> = state
        .vault
        .document_signing_ca()
        .await?
        .into_iter()
        .collect();
    document_signing.extend(pem_certificates(files.document_signing.as_deref()));
    let time_stamping = pem_certificates(files.time_stamping.as_deref());
    Ok(Json(TrustRoots {
        document_signing,
        time_stamping,
    })
    .into_response())
}

/// The certificates of a PEM file, each as its own PEM; none when unset or unreadable (a
/// deployment mistake the logs name, not the caller's).
fn pem_certificates(path: Option<&std::path::Path>) -> Vec<String> {
    let Some(path) = path else {
        return Vec::new();
    };
    let read = std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|text| docbundle::infra::secrets::pem_chain(&text));
    match read {
        Ok(certificates) => certificates
            .iter()
            .map(|der| docbundle::infra::secrets::pem_encode(der, "CERTIFICATE"))
            .collect(),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "a trust-roots file cannot be read");
            Vec::new()
        }
    }
}

/// The committed document (`docbundle-local openapi` writes it; a test fails when it is stale).
const OPENAPI_JSON: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json"));

/// This API's OpenAPI 3.1 document; no token needed.
///
/// Its OAuth2 token URL is the deployment's issuer's.
#[utoipa::path(get, path = "/api/v1/openapi.json", operation_id = "getOpenApiDocument", tag = "meta",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)),
    security(()))]
async fn openapi_document(State(state): State<AppState>) -> Response {
    static SERVED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let document = SERVED.get_or_init(|| {
        docbundle::http::openapi::for_issuer(OPENAPI_JSON, &state.settings.auth.issuer)
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document.as_str(),
    )
        .into_response()
}
