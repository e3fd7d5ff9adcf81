//! Erasure on request (GDPR art. 17): of one run, of a seed by its hash, or of every run whose
//! seed holds a value at a JSON pointer. A dry run lists what would go; an execution is
//! recorded (`202`) and carried out by the scheduler's `erasures` job within a minute, with a
//! signed receipt appended to the merchant's transparency log. Scope `bundle.erase`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use docbundle::app::erasures::{self, Preview};
use docbundle::domain::erasure::{self as domain, CONFIRM_ABOVE_RUNS, MAX_RUNS};
use docbundle::domain::FieldError;
use docbundle::error::ApiError;
use docbundle::http::auth::{scope, Authorized};
use docbundle::http::openapi::ErrorEnvelope;
use docbundle::http::paging::{page, PageRequest, TimeKey};
use docbundle::http::MerchantQuery;
use docbundle::http::{located, ApiJson, ApiPath, ApiQuery};
use docbundle::infra::db::erasures::{self as repo, Erasure, ItemRecord, ReceiptRecord, Selector};
use docbundle::infra::db::runs;
use docbundle::AppState;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Most erasures of one merchant pending at once (each is executed within a minute or two).
const MAX_PENDING: i64 = 20;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/erasures", get(list).post(request))
        .route("/api/v1/erasures/{id}", get(read))
}

/// What to erase: exactly one of `runId`, `seedHash` and `match`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ErasureBody {
    /// That run's artefacts, and its seed unless another run keeps it.
    #[serde(default)]
    #[schema(nullable = false)]
    run_id: Option<Uuid>,
    /// Every run launched with this seed, and the seed.
    #[serde(default)]
    #[schema(value_type = Option<docbundle::domain::seed::SeedHash>, nullable = false)]
    seed_hash: Option<String>,
    /// Every run whose seed holds `value` at `pointer` (or anything there, without `value`).
    #[serde(default, rename = "match")]
    #[schema(nullable = false)]
    matches: Option<MatchBody>,
    /// List what would be erased, erase nothing.
    #[serde(default)]
    dry_run: Option<bool>,
    /// Above 10 runs, or with the pointer `""` (every seed): the number of runs the dry run
    /// listed, to confirm.
    #[serde(default)]
    confirm: Option<Confirm>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct MatchBody {
    /// An RFC 6901 JSON pointer into the seed (`/customer/id`); at most 1 KiB, 32 segments.
    #[schema(
        max_length = 1024,
        pattern = "^(/([^~/\\u0000]|~[01])*)*$",
        example = "/customer/id"
    )]
    pointer: String,
    /// The JSON value it must hold (at most 4 KiB); it is forgotten once the erasure is done
    /// and never in the receipt.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<serde_json::Value>)]
    value: Option<Value>,
}

/// `"value": null` is a value to match, unlike a missing `value`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Confirm {
    #[schema(minimum = 0)]
    runs: u64,
}

/// The selector the body names, every problem with its field; `404` for a run or seed of no
/// run of this merchant.
async fn selector(
    state: &AppState,
    merchant: docbundle::domain::MerchantId,
    body: &ErasureBody,
) -> Result<Selector, ApiError> {
    let invalid = |field: &str, message: &str| {
        ApiError::validation(
            "The erasure is not valid",
            vec![FieldError::new(field, message)],
        )
    };
    match (&body.run_id, &body.seed_hash, &body.matches) {
        (Some(id), None, None) => {
            runs::find(&state.db, merchant, *id)
                .await?
                .ok_or_else(|| ApiError::not_found("Bundle run not found"))?;
            Ok(Selector::Run(*id))
        }
        (None, Some(hash), None) => {
            let well_formed =
                hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            if !well_formed {
                return Err(invalid("seedHash", "must be 64 lowercase hex digits"));
            }
            if !repo::seed_exists(&state.db, merchant, hash).await? {
                return Err(ApiError::not_found(
                    "No seed of this merchant has this hash",
                ));
            }
            Ok(Selector::Seed(hash.clone()))
        }
        (None, None, Some(m)) => {
            let path = domain::parse_pointer(&m.pointer)
                .map_err(|problem| invalid("match.pointer", &problem))?;
            if let Some(value) = &m.value {
                if value.to_string().len() > domain::MAX_VALUE_BYTES {
                    return Err(invalid(
                        "match.value",
                        &format!("must be at most {} bytes of JSON", domain::MAX_VALUE_BYTES),
                    ));
                }
            }
            Ok(Selector::Match {
                pointer: m.pointer.clone(),
                path,
                value: m.value.clone(),
            })
        }
        _ => Err(invalid(
            "runId",
            "exactly one of runId, seedHash and match must be given",
        )),
    }
}

/// An erasure with what it did: each run's outcome and the receipt's parts with their proof.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErasureView {
    #[serde(flatten)]
    erasure: Erasure,
    /// Each matched run's outcome (the first 1,000): `erased`, `already_expired` (retention
    /// had deleted its artefacts; counted in `runsErased`) or `kept_held`.
    items: Vec<ItemRecord>,
    /// The signed receipt, part by part, each an entry in the transparency log.
    receipt: Vec<ReceiptPartView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReceiptPartView {
    #[serde(flatten)]
    record: ReceiptRecord,
    /// A short-lived URL of the part's bytes (what the signature and the log entry cover).
    download_url: String,
    /// Once a checkpoint covers it: its log entry with the inclusion proof.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    transparency: Option<docbundle::app::transparency::Inclusion>,
}

async fn view(state: &AppState, erasure: Erasure) -> Result<ErasureView, ApiError> {
    let items = repo::items(&state.db, erasure.id, 1_000).await?;
    let mut receipt = Vec::new();
    for record in repo::receipts(&state.db, erasure.id).await? {
        let download_url = state
            .store
            .presign_get(&record.key, state.settings.presign_expiry)
            .await?;
        let transparency =
            docbundle::app::transparency::inclusion(state, erasure.merchant_id, record.id).await?;
        receipt.push(ReceiptPartView {
            record,
            download_url,
            transparency,
        });
    }
    Ok(ErasureView {
        erasure,
        items,
        receipt,
    })
}

/// Request an erasure, or list what it would erase (`dryRun`).
///
/// A dry run answers `200` with the runs matched (held ones are kept). Otherwise the erasure
/// is recorded and executed in the background (`202`); above 10 runs, or with the pointer
/// `""`, `confirm.runs` must name the number of runs matched (`422 CONFIRMATION_REQUIRED`
/// without it, `409` when it differs). One erasure takes at most 5,000 runs
/// (`422 ERASURE_TOO_LARGE`); one that matches more runs when executed than when requested is
/// cancelled. At most 20 of a merchant's erasures wait at once (`429`).
#[utoipa::path(post, path = "/api/v1/erasures", operation_id = "requestErasure", tag = "retention",
    params(MerchantQuery),
    request_body = ErasureBody,
    responses(
        (status = 200, description = "Dry run: what would be erased", body = Preview),
        (status = 202, description = "Recorded; executed within a minute", body = ErasureView,
         headers(("Location" = String, description = "The erasure's URL"))),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["bundle.erase"]), ("bearer" = [])))]
async fn request(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleErase>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
    ApiJson(body): ApiJson<ErasureBody>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    let selector = selector(&state, merchant, &body).await?;
    let preview = erasures::preview(&state, merchant, &selector).await?;
    if body.dry_run != Some(true) && repo::pending_count(&state.db, merchant).await? >= MAX_PENDING
    {
        return Err(ApiError::rate_limited(60).with_details(serde_json::json!({
            "pending": MAX_PENDING,
            "reason": "this merchant's pending erasures must run first"
        })));
    }
    if body.dry_run == Some(true) {
        return Ok(Json(preview).into_response());
    }
    if preview.runs > MAX_RUNS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "ERASURE_TOO_LARGE",
            format!(
                "This erasure matches {} runs; one erasure takes at most {MAX_RUNS}: split it \
                 (by seed hash, or a narrower pointer)",
                preview.runs
            ),
        )
        .with_details(serde_json::json!({"runs": preview.runs, "max": MAX_RUNS})));
    }
    let everything = matches!(&selector, Selector::Match { path, .. } if path.is_empty());
    if preview.runs > CONFIRM_ABOVE_RUNS || everything {
        let details = serde_json::json!({"runs": preview.runs});
        match &body.confirm {
            None => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "CONFIRMATION_REQUIRED",
                    format!(
                        "This erasure matches {} runs: send confirm.runs = {} to execute it \
                         (a dry run lists them)",
                        preview.runs, preview.runs
                    ),
                )
                .with_details(details))
            }
            Some(confirm) if confirm.runs != preview.runs as u64 => {
                return Err(ApiError::conflict(format!(
                    "This erasure now matches {} runs, not {}: look again (dry run)",
                    preview.runs, confirm.runs
                ))
                .with_details(details))
            }
            Some(_) => {}
        }
    }
    let erasure = repo::insert(
        &state.db,
        merchant,
        &selector,
        &principal.subject,
        preview.runs as i32,
    )
    .await?;
    tracing::info!(erasure_id = %erasure.id, %merchant, runs = preview.runs, "erasure requested");
    let location = format!("/api/v1/erasures/{}", erasure.id);
    let view = view(&state, erasure).await?;
    Ok(located(StatusCode::ACCEPTED, Some(&location), view))
}

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
}

/// List erasures, newest first.
#[utoipa::path(get, path = "/api/v1/erasures", operation_id = "listErasures", tag = "retention",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of erasures", body = docbundle::http::paging::Page<Erasure>),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["bundle.read"]), ("bearer" = [])))]
async fn list(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleRead>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    let request = PageRequest::<TimeKey>::parse(query.limit, query.cursor.as_deref())?;
    let rows = repo::list(&state.db, merchant, request.after.as_ref(), request.fetch()).await?;
    Ok(Json(page(rows, request.limit, Erasure::page_key)).into_response())
}

/// An erasure: what it matched, what it erased and kept, and its signed receipt.
#[utoipa::path(get, path = "/api/v1/erasures/{id}", operation_id = "getErasure", tag = "retention",
    params(("id" = Uuid, Path, description = "The erasure's id"), MerchantQuery),
    responses(
        (status = 200, description = "The erasure", body = ErasureView),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["bundle.read"]), ("bearer" = [])))]
async fn read(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleRead>,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    let erasure = repo::find(&state.db, merchant, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Erasure not found"))?;
    Ok(Json(view(&state, erasure).await?).into_response())
}
