//! `/api/v1/transparency/…`: the merchant's transparency log, for its own auditors. Every
//! completed run's manifest is an entry; checkpoints are signed notes; proofs are RFC 9162's.
//! Scope `bundle.read`; a caller sees only its own merchant's log.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use docbundle::domain::checkpoint;
use docbundle::error::{ApiError, FieldError};
use docbundle::http::answers::{
    CheckpointView, ConsistencyView, EntriesView, EntryView, WitnessView,
};
use docbundle::http::auth::{scope, Authorized};
use docbundle::http::openapi::ErrorEnvelope;
use docbundle::http::MerchantQuery;
use docbundle::http::{ApiPath, ApiQuery};
use docbundle::infra::db::transparency as repo;
use docbundle::AppState;
use serde::Deserialize;
use uuid::Uuid;

/// Most entries one page of `entries` answers.
pub const MAX_ENTRIES: u64 = 1000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/transparency/checkpoint", get(checkpoint))
        .route("/api/v1/transparency/consistency", get(consistency))
        .route("/api/v1/transparency/entries", get(entries))
        .route(
            "/api/v1/transparency/logs/{merchant_id}/{*path}",
            get(log_file),
        )
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConsistencyQuery {
    /// The merchant acted for: required with a platform token, else the token's own.
    merchant_id: Option<Uuid>,
    /// The older tree size (at least 1).
    #[param(minimum = 1)]
    from: u64,
    /// The newer tree size, at most the newest checkpoint's.
    #[param(minimum = 1)]
    to: u64,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EntriesQuery {
    /// The merchant acted for: required with a platform token, else the token's own.
    merchant_id: Option<Uuid>,
    /// First index (0-based).
    #[param(minimum = 0)]
    start: u64,
    /// One past the last index; at most `start + 1000` and the newest checkpoint's size.
    #[param(minimum = 1)]
    end: u64,
}

fn invalid(field: &str, message: String) -> ApiError {
    ApiError::validation(
        "Invalid query parameters",
        vec![FieldError::new(field, message)],
    )
}

async fn latest(
    state: &AppState,
    merchant: docbundle::domain::MerchantId,
) -> Result<repo::Checkpoint, ApiError> {
    repo::latest_checkpoint(&state.db, merchant)
        .await?
        .ok_or_else(|| ApiError::not_found("The log has no checkpoint yet"))
}

/// The newest checkpoint of the merchant's transparency log.
#[utoipa::path(get, path = "/api/v1/transparency/checkpoint", operation_id = "getCheckpoint", tag = "transparency",
    params(MerchantQuery),
    responses(
        (status = 200, description = "The checkpoint", body = CheckpointView),
        (status = "4XX", description = "The error envelope (404 before the first checkpoint)", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["bundle.read"]), ("bearer" = [])))]
pub(crate) async fn checkpoint(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleRead>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    let latest = latest(&state, merchant).await?;
    let origin = checkpoint::origin(&state.settings.log_origin_prefix, merchant);
    let verifier_keys = crate::jwks(&state)
        .await?
        .keys
        .iter()
        .filter(|k| k.role == docbundle::domain::keys::KeyRole::Checkpoints)
        .filter_map(|k| Some(checkpoint::verifier_key(&origin, &k.ed25519_public().ok()?)))
        .collect();
    let known = repo::witness_states(&state.db, merchant).await?;
    let witnesses: Vec<WitnessView> = state
        .settings
        .witnesses
        .list
        .iter()
        .map(|w| {
            let known = known.iter().find(|k| k.witness == w.name);
            WitnessView {
                name: w.name.clone(),
                verifier_key: w.verifier_key(),
                cosigned: latest.note.contains(&format!("\n\u{2014} {} ", w.name)),
                cosigned_size: known.map_or(0, |k| k.size),
                last_error: known.and_then(|k| k.last_error.clone()),
            }
        })
        .collect();
    let quorum = state.settings.witnesses.quorum;
    Ok(Json(CheckpointView {
        origin,
        tree_size: latest.tree_size,
        root_hash: hex::encode(latest.root_hash),
        checkpoint: latest.note,
        verifier_keys,
        meets_quorum: witnesses.iter().filter(|w| w.cosigned).count() >= quorum,
        witnesses,
        quorum,
        created_at: latest.created_at,
        tiles_url: tiles_url(&state, merchant),
    })
    .into_response())
}

/// Where the merchant's log is published as tlog-tiles: the public base when the log bucket is
/// public (`LOG_PUBLIC_URL`), else this API's `logs/{merchantId}/` (read with a token).
fn tiles_url(state: &AppState, merchant: docbundle::domain::MerchantId) -> String {
    let prefix = docbundle::app::transparency::tiles::prefix(merchant);
    match &state.settings.log_public_url {
        Some(base) => format!("{base}/{prefix}"),
        None => format!("/api/v1/transparency/logs/{merchant}/"),
    }
}

/// A file of the merchant's log as C2SP tlog-tiles: `checkpoint`, a hash tile
/// (`tile/<L>/<N>[.p/<W>]`) or an entry bundle (`tile/entries/<N>[.p/<W>]`, each run's
/// manifest bytes). What a tile reader fetches under `tilesUrl`.
#[utoipa::path(get, path = "/api/v1/transparency/logs/{merchantId}/{path}", operation_id = "getLogFile", tag = "transparency",
    params(
        ("merchantId" = Uuid, Path, description = "The merchant whose log it is (a merchant's token: its own)"),
        ("path" = String, Path, description = "`checkpoint`, `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`"),
    ),
    responses(
        (status = 200, description = "The file's bytes (`text/plain` for the checkpoint, else `application/octet-stream`)", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "Not a file of the log, not published yet, or another merchant's log", body = ErrorEnvelope),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["bundle.read"]), ("bearer" = [])))]
pub(crate) async fn log_file(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleRead>,
    ApiPath((merchant_id, path)): ApiPath<(Uuid, String)>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(Some(merchant_id))?;
    let missing = || ApiError::not_found("No such file in the log");
    let tile = docbundle::domain::tiles::parse_path(&path).ok_or_else(missing)?;
    let key = format!(
        "{}{path}",
        docbundle::app::transparency::tiles::prefix(merchant)
    );
    let bytes = state.log_store.get(&key).await?.ok_or_else(missing)?;
    let (content_type, cache) = match tile {
        None => ("text/plain; charset=utf-8", "no-cache"),
        // A tile's path names its contents: it never changes.
        Some(_) => (
            "application/octet-stream",
            "private, max-age=31536000, immutable",
        ),
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
        ],
        bytes,
    )
        .into_response())
}

/// The consistency proof between two sizes of the log.
#[utoipa::path(get, path = "/api/v1/transparency/consistency", operation_id = "getConsistencyProof", tag = "transparency",
    params(ConsistencyQuery),
    responses(
        (status = 200, description = "The proof that the older tree is a prefix of the newer", body = ConsistencyView),
        (status = 422, description = "Sizes out of order or past the newest checkpoint", body = ErrorEnvelope),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["bundle.read"]), ("bearer" = [])))]
pub(crate) async fn consistency(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleRead>,
    ApiQuery(query): ApiQuery<ConsistencyQuery>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    if query.from == 0 || query.from > query.to {
        return Err(invalid(
            "from",
            "must be at least 1 and at most `to`".to_owned(),
        ));
    }
    let latest = latest(&state, merchant).await?;
    if query.to > latest.tree_size {
        return Err(invalid(
            "to",
            format!(
                "must be at most the newest checkpoint's size, {}",
                latest.tree_size
            ),
        ));
    }
    let proof =
        docbundle::app::transparency::consistency(&state, merchant, query.from, query.to).await?;
    Ok(Json(ConsistencyView {
        from: query.from,
        to: query.to,
        proof,
    })
    .into_response())
}

/// Entries of the log (run id and leaf hash), for auditors who mirror it.
#[utoipa::path(get, path = "/api/v1/transparency/entries", operation_id = "listLogEntries", tag = "transparency",
    params(EntriesQuery),
    responses(
        (status = 200, description = "Entries `[start, end)`", body = EntriesView),
        (status = 422, description = "A range out of order, over 1000 entries or past the newest checkpoint", body = ErrorEnvelope),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["bundle.read"]), ("bearer" = [])))]
pub(crate) async fn entries(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleRead>,
    ApiQuery(query): ApiQuery<EntriesQuery>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    if query.end <= query.start || query.end - query.start > MAX_ENTRIES {
        return Err(invalid(
            "end",
            format!("must be after `start`, by at most {MAX_ENTRIES}"),
        ));
    }
    let latest = latest(&state, merchant).await?;
    if query.end > latest.tree_size {
        return Err(invalid(
            "end",
            format!(
                "must be at most the newest checkpoint's size, {}",
                latest.tree_size
            ),
        ));
    }
    let rows = repo::entries(&state.db, merchant, query.start, query.end).await?;
    Ok(Json(EntriesView {
        entries: rows
            .into_iter()
            .map(|e| EntryView {
                index: e.index,
                run_id: (!e.receipt).then_some(e.run_id),
                receipt_id: e.receipt.then_some(e.run_id),
                leaf_hash: hex::encode(e.leaf_hash),
            })
            .collect(),
    })
    .into_response())
}
