//! `launch-bundle`: `POST /api/v1/bundles` starts a bundle run and answers `202` at once; the
//! worker renders it. Batches are launched here too, legal holds placed and released, and erasures requested.
//!
//! Honours `Idempotency-Key` (same key + same body → the same answer; same key + another body
//! → `422`), a per-merchant rate limit, and `forcingOptions` (`skipValidations` needs
//! `bundle.force`; `replayRunId` re-runs a completed run's exact configuration version and seed).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use docbundle::app::launch::{self, LaunchRequest, Trigger};
use docbundle::domain::seed::CanonicalSeed;
use docbundle::domain::Scope;
use docbundle::error::ApiError;
use docbundle::http::auth::{scope, Authorized};
use docbundle::http::openapi::ErrorEnvelope;
use docbundle::http::MerchantQuery;
use docbundle::http::{
    answer_with_location, finish_router, from_json_value, idempotency_key, ApiJson, ApiQuery,
    RequestTrace,
};
use docbundle::AppState;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

mod batches;
mod erasures;
mod holds;

/// The routes this function serves, as `template.yaml` declares them.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/bundles"),
    ("POST", "/api/v1/batches"),
    ("PUT", "/api/v1/batches/{id}/seeds"),
    ("POST", "/api/v1/batches/{id}/start"),
    ("POST", "/api/v1/batches/{id}/cancel"),
    ("POST", "/api/v1/holds"),
    ("GET", "/api/v1/holds"),
    ("GET", "/api/v1/holds/{id}"),
    ("DELETE", "/api/v1/holds/{id}"),
    ("POST", "/api/v1/erasures"),
    ("GET", "/api/v1/erasures"),
    ("GET", "/api/v1/erasures/{id}"),
];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/bundles", post(launch_run))
        .merge(batches::routes())
        .merge(holds::routes())
        .merge(erasures::routes())
}

/// The function's whole HTTP app.
pub fn app(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    finish_router(routes().with_state(state), max_body)
}

/// The operations this function serves, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    launch_run,
    batches::create,
    batches::upload_seeds,
    batches::start,
    batches::cancel,
    holds::place,
    holds::list,
    holds::read,
    holds::release,
    erasures::request,
    erasures::list,
    erasures::read
), modifiers(&OneTarget))]
pub struct ApiDoc;

/// A hold and an erasure each name exactly one target: the schema says so.
struct OneTarget;

impl utoipa::Modify for OneTarget {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use docbundle::http::openapi::exactly_one_of;
        exactly_one_of(
            openapi,
            "HoldBody",
            &["runId", "batchId", "configurationId"],
        );
        exactly_one_of(openapi, "ErasureBody", &["runId", "seedHash", "match"]);
    }
}

/// A run to launch: a configuration and its seed (inline, or by the hash of one already
/// stored), or a replay of a completed run.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LaunchBody {
    configuration_id: Uuid,
    /// The seed data, validated against the configuration's `dataSchema`.
    #[serde(default)]
    seed: Option<Value>,
    /// The `seedHash` of a seed an earlier run stored, instead of `seed`.
    #[serde(default)]
    #[schema(value_type = Option<docbundle::domain::seed::SeedHash>)]
    seed_hash: Option<String>,
    #[serde(default)]
    forcing_options: Option<ForcingOptions>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ForcingOptions {
    /// Skip seed validation (scope `bundle.force`).
    #[serde(default)]
    skip_validations: Option<bool>,
    /// Re-run this completed run's exact configuration version and seed.
    #[serde(default)]
    replay_run_id: Option<Uuid>,
}

/// Launch a bundle run.
///
/// Answered `202` at once; the worker renders it.
#[utoipa::path(post, path = "/api/v1/bundles", operation_id = "launchBundle", tag = "bundles",
    params(MerchantQuery,
        ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, pattern = "^[!-~]+$",
         description = "Same key and body: the first answer again; same key, another body: 422")),
    request_body = LaunchBody,
    responses(
        (status = 202, description = "Launched (or the first answer, for a repeated key)",
         body = docbundle::infra::db::runs::BundleRun,
         headers(("Location" = String, description = "The run's URL"))),
        (status = 429, description = "Over the merchant's launch rate", body = ErrorEnvelope,
         headers(("Retry-After" = u64, description = "Seconds until a launch is accepted"))),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["bundle.write"]), ("bearer" = [])))]
async fn launch_run(
    State(state): State<AppState>,
    principal: Authorized<scope::BundleWrite>,
    ApiQuery(query): ApiQuery<MerchantQuery>,
    headers: HeaderMap,
    RequestTrace(trace): RequestTrace,
    ApiJson(raw): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let merchant = principal.acting_merchant(query.merchant_id)?;
    // The canonical form: the same JSON with other spacing or key order is the same request.
    let idempotency = idempotency_key(&headers, || {
        CanonicalSeed::of(&raw).map(|canonical| canonical.hash.into())
    })?;
    let body: LaunchBody = from_json_value(raw)?;
    let forcing = body.forcing_options.unwrap_or_default();
    let skip_validations = forcing.skip_validations.unwrap_or(false);
    if skip_validations {
        principal.require(Scope::BundleForce)?;
    }
    let launched = launch::launch(
        &state,
        LaunchRequest {
            merchant,
            configuration_id: body.configuration_id,
            seed: body.seed,
            seed_hash: body.seed_hash,
            skip_validations,
            replay_run_id: forcing.replay_run_id,
            trigger: Trigger::User {
                subject: principal.subject.clone(),
            },
            trace,
        },
        idempotency.as_ref(),
    )
    .await?;
    answer_with_location(StatusCode::ACCEPTED, "/api/v1/bundles", launched)
}
