//! Launching bundle runs: the one use-case every trigger goes through — an API call (with its
//! idempotency key and rate limit), a replay, or a verified inbound event that launches every
//! configuration it triggers.
//!
//! The use-case owns the whole sequence: idempotency, rate limit, resolution and checks, one
//! transaction that writes the seed, the run, its `run.queued` event (and the idempotency answer
//! or the inbound event's record), then publication after commit. A failed publication leaves
//! the event in the outbox for `outbox-relay`: no launched run is ever lost. It speaks the
//! domain ([`LaunchError`]); the HTTP edge maps that to answers.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::db::configurations::{self, ConfigurationVersion};
use crate::db::idempotency::{self, Idempotency};
use crate::db::runs::{self, BundleRun, NewRun};
use crate::db::webhooks::{self as inbound, WebhookSource};
use crate::db::{connection, outbox, query_error};
use crate::domain::MerchantId;
use crate::error::{ApiError, DependencyError, FieldError};
use crate::queue::RunMessage;
use crate::seed::{is_seed_hash, CanonicalSeed};
use crate::AppState;

/// Who or what launched the run.
#[derive(Debug, Clone)]
pub enum Trigger {
    User { subject: String },
    Webhook { webhook_id: String },
}

/// What a launch asks for, whoever asks.
#[derive(Debug, Clone)]
pub struct LaunchRequest {
    pub merchant: MerchantId,
    pub configuration_id: Uuid,
    pub seed: Option<Value>,
    pub seed_hash: Option<String>,
    pub skip_validations: bool,
    pub replay_run_id: Option<Uuid>,
    pub trigger: Trigger,
}

/// Why a launch was not made.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("configuration not found")]
    ConfigurationNotFound,
    #[error("the configuration is archived: it launches no new runs")]
    ConfigurationArchived,
    /// The request itself is wrong (seed, seed hash, replay, schema): per-field details.
    #[error("{message}")]
    Invalid {
        message: String,
        details: Vec<FieldError>,
    },
    #[error("too many launches; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// The idempotency key was first used with another request.
    #[error("this Idempotency-Key was used with a different request body")]
    KeyReused,
    /// Another request with the same idempotency key has not finished yet.
    #[error("the request with this Idempotency-Key is still in progress")]
    KeyInProgress,
    #[error(transparent)]
    Dependency(#[from] DependencyError),
    /// Stored data contradicts itself (a run whose configuration version is gone, say).
    #[error("{0}")]
    Inconsistent(String),
}

impl LaunchError {
    /// Whether the launch was refused for what it asked (as opposed to a fault of ours): an
    /// inbound event skips such a configuration and launches the others.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            LaunchError::ConfigurationNotFound
                | LaunchError::ConfigurationArchived
                | LaunchError::Invalid { .. }
        )
    }

    fn details(&self) -> Value {
        match self {
            LaunchError::Invalid { details, .. } => json!(details),
            _ => Value::Null,
        }
    }
}

impl From<LaunchError> for ApiError {
    fn from(e: LaunchError) -> Self {
        match e {
            LaunchError::ConfigurationNotFound => ApiError::not_found("Configuration not found"),
            LaunchError::ConfigurationArchived => {
                ApiError::conflict("The configuration is archived: it launches no new runs")
            }
            LaunchError::Invalid { message, details } => ApiError::validation(message, details),
            LaunchError::RateLimited { retry_after_secs } => {
                ApiError::rate_limited(retry_after_secs)
            }
            LaunchError::KeyReused => ApiError::validation(
                "This Idempotency-Key was used with a different request body",
                vec![FieldError::new(
                    "Idempotency-Key",
                    "was used with a different request body",
                )],
            ),
            LaunchError::KeyInProgress => ApiError::conflict(
                "The request with this Idempotency-Key is still in progress; retry",
            ),
            LaunchError::Dependency(e) => e.into(),
            LaunchError::Inconsistent(cause) => ApiError::internal(cause),
        }
    }
}

/// A launch that passed every check and is ready to be written.
#[derive(Debug, Clone)]
struct PreparedRun {
    merchant: MerchantId,
    configuration: ConfigurationVersion,
    seed: CanonicalSeed,
    replay_of: Option<Uuid>,
    trigger: Trigger,
    run_parameters: Value,
}

/// How a launch ended.
#[derive(Debug, Clone)]
pub enum Launched {
    /// A new run, written and queued.
    New(BundleRun),
    /// The idempotency key was seen before with the same request: the first answer, again.
    Repeated(Value),
}

impl Launched {
    /// The answer's body: the run as it was when launched.
    pub fn body(&self) -> Result<Value, DependencyError> {
        match self {
            Launched::New(run) => serde_json::to_value(run)
                .map_err(|e| DependencyError::failed("launch", "encode run", e)),
            Launched::Repeated(body) => Ok(body.clone()),
        }
    }
}

/// A run written in a transaction, with its event to publish after commit.
#[derive(Debug, Clone)]
struct WrittenRun {
    run: BundleRun,
    queued: outbox::Pending,
}

fn invalid(field: &str, message: impl Into<String>) -> LaunchError {
    LaunchError::Invalid {
        message: "The launch request is not valid".to_owned(),
        details: vec![FieldError::new(field, message)],
    }
}

/// Launches one run: answers a repeated idempotency key as the first time, applies the
/// merchant's rate limit, checks everything, writes the run and its event in one transaction
/// and publishes the event.
pub async fn launch(
    state: &AppState,
    request: LaunchRequest,
    idempotency: Option<&Idempotency>,
) -> Result<Launched, LaunchError> {
    let merchant = request.merchant;
    if let Some(idem) = idempotency {
        let conn = connection(&state.db).await?;
        if let Some(stored) = idempotency::find_live(&conn, merchant, &idem.key).await? {
            return repeated(stored, idem);
        }
    }
    check_rate_limit(state, merchant).await?;
    let prepared = prepare(state, request).await?;

    let mut conn = connection(&state.db).await?;
    if let Some(idem) = idempotency {
        idempotency::expire(&conn, merchant, &idem.key).await?;
    }
    let tx = conn
        .transaction()
        .await
        .map_err(query_error("begin launch"))?;
    let written = write_run(&tx, &prepared).await?;
    if let Some(idem) = idempotency {
        let body = Launched::New(written.run.clone()).body()?;
        if !idempotency::record(&tx, merchant, idem, &body).await? {
            // Another request with this key committed first: answer as it was answered.
            drop(tx);
            return match idempotency::find_live(&conn, merchant, &idem.key).await? {
                Some(stored) => repeated(stored, idem),
                None => Err(LaunchError::KeyInProgress),
            };
        }
    }
    tx.commit().await.map_err(query_error("commit launch"))?;
    drop(conn);
    outbox::publish(&state.db, &state.publisher, &written.queued).await;
    tracing::info!(run_id = %written.run.id, configuration_id = %written.run.configuration_id, "run launched");
    Ok(Launched::New(written.run))
}

fn repeated(
    stored: idempotency::StoredAnswer,
    idem: &Idempotency,
) -> Result<Launched, LaunchError> {
    if stored.request_sha256 == idem.request_sha256 {
        Ok(Launched::Repeated(stored.body))
    } else {
        Err(LaunchError::KeyReused)
    }
}

/// A verified inbound event, as its source sent it.
#[derive(Debug, Clone)]
pub struct InboundEvent<'a> {
    pub source: &'a WebhookSource,
    pub webhook_id: String,
    pub event_type: String,
    pub data: Value,
    pub body_sha256: String,
}

/// Launches a run of every active configuration of the source's merchant whose `triggers` list
/// the event's type, with `data` as the seed; a configuration that refuses the data is listed
/// under `skipped`. The event, its runs and the answer are written in one transaction; a repeat
/// of the same `webhook-id` gets the first answer and launches nothing.
pub async fn launch_for_event(
    state: &AppState,
    event: InboundEvent<'_>,
) -> Result<Value, LaunchError> {
    let source = event.source;
    if let Some(answer) = inbound::event_answer(&state.db, source.id, &event.webhook_id).await? {
        return Ok(answer);
    }
    let merchant = MerchantId(source.merchant_id);
    let configurations =
        inbound::triggered_configurations(&state.db, merchant, &event.event_type).await?;

    // Resolve every launch before the transaction: reads and schema checks only.
    let mut prepared = Vec::new();
    let mut skipped = Vec::new();
    for configuration_id in configurations {
        let request = LaunchRequest {
            merchant,
            configuration_id,
            seed: Some(event.data.clone()),
            seed_hash: None,
            skip_validations: false,
            replay_run_id: None,
            trigger: Trigger::Webhook {
                webhook_id: event.webhook_id.clone(),
            },
        };
        match prepare(state, request).await {
            Ok(run) => prepared.push(run),
            Err(e) if e.is_refusal() => skipped.push(json!({
                "configurationId": configuration_id,
                "reason": e.to_string(),
                "details": e.details(),
            })),
            Err(e) => return Err(e),
        }
    }

    let mut conn = connection(&state.db).await?;
    let tx = conn
        .transaction()
        .await
        .map_err(query_error("begin inbound event"))?;
    let Some(event_id) = inbound::insert_event(
        &tx,
        source,
        &event.webhook_id,
        &event.event_type,
        &event.body_sha256,
    )
    .await?
    else {
        // A concurrent delivery of the same event committed first.
        drop(tx);
        drop(conn);
        return inbound::event_answer(&state.db, source.id, &event.webhook_id)
            .await?
            .ok_or(LaunchError::KeyInProgress);
    };
    let mut written = Vec::new();
    for run in &prepared {
        written.push(write_run(&tx, run).await?);
    }
    let run_ids: Vec<Uuid> = written.iter().map(|w| w.run.id).collect();
    let answer = json!({"eventId": event_id, "runs": run_ids, "skipped": skipped});
    inbound::finish_event(&tx, event_id, &run_ids, &answer).await?;
    tx.commit()
        .await
        .map_err(query_error("commit inbound event"))?;
    drop(conn);

    for w in &written {
        outbox::publish(&state.db, &state.publisher, &w.queued).await;
    }
    tracing::info!(%event_id, source_id = %source.id, event_type = event.event_type, runs = run_ids.len(), skipped = skipped.len(), "inbound event accepted");
    Ok(answer)
}

/// Resolves and checks everything a launch needs: configuration version, seed, schema, replay.
async fn prepare(state: &AppState, request: LaunchRequest) -> Result<PreparedRun, LaunchError> {
    let merchant = request.merchant;
    let configuration = configurations::find(&state.db, merchant, request.configuration_id)
        .await?
        .ok_or(LaunchError::ConfigurationNotFound)?;
    if configuration.status == "archived" {
        return Err(LaunchError::ConfigurationArchived);
    }

    let mut run_parameters = serde_json::Map::new();
    if request.skip_validations {
        run_parameters.insert("skipValidations".into(), json!(true));
    }

    if let Some(original_id) = request.replay_run_id {
        run_parameters.insert("replayRunId".into(), json!(original_id));
        if request.seed.is_some() || request.seed_hash.is_some() {
            return Err(invalid(
                "forcingOptions.replayRunId",
                "a replay uses the original run's seed: do not pass seed or seedHash",
            ));
        }
        let original = runs::find(&state.db, merchant, original_id)
            .await?
            .filter(|r| r.status == "completed")
            .ok_or_else(|| {
                invalid(
                    "forcingOptions.replayRunId",
                    "is not a completed run of this merchant",
                )
            })?;
        if original.configuration_id != request.configuration_id {
            return Err(invalid(
                "configurationId",
                format!(
                    "the replayed run belongs to configuration {}",
                    original.configuration_id
                ),
            ));
        }
        let version = configurations::find_version(
            &state.db,
            merchant,
            original.configuration_id,
            original.configuration_version,
        )
        .await?
        .ok_or_else(|| {
            LaunchError::Inconsistent("replayed run's configuration version is missing".to_owned())
        })?;
        let seed = runs::find_seed(&state.db, merchant, &original.seed_hash)
            .await?
            .ok_or_else(|| {
                LaunchError::Inconsistent("replayed run's seed is missing".to_owned())
            })?;
        return Ok(PreparedRun {
            merchant,
            configuration: version,
            seed,
            replay_of: Some(original.id),
            trigger: request.trigger,
            run_parameters: Value::Object(run_parameters),
        });
    }

    let seed = resolve_seed(
        state,
        merchant,
        request.seed,
        request.seed_hash,
        &configuration.defaults,
    )
    .await?;
    let version =
        configurations::find_version(&state.db, merchant, configuration.id, configuration.version)
            .await?
            .ok_or_else(|| {
                LaunchError::Inconsistent("current configuration version is missing".to_owned())
            })?;
    if !request.skip_validations {
        if let Some(schema) = &version.data_schema {
            let validator = crate::schema::compile(schema).map_err(|e| {
                LaunchError::Inconsistent(format!("stored dataSchema does not compile: {e}"))
            })?;
            let violations = crate::schema::violations(&validator, &seed.value(), "seed");
            if !violations.is_empty() {
                return Err(LaunchError::Invalid {
                    message: "The seed does not satisfy the configuration's dataSchema".to_owned(),
                    details: violations,
                });
            }
        }
    }
    Ok(PreparedRun {
        merchant,
        configuration: version,
        seed,
        replay_of: None,
        trigger: request.trigger,
        run_parameters: Value::Object(run_parameters),
    })
}

async fn resolve_seed(
    state: &AppState,
    merchant: MerchantId,
    inline: Option<Value>,
    hash: Option<String>,
    defaults: &Option<Value>,
) -> Result<CanonicalSeed, LaunchError> {
    if let Some(hash) = &hash {
        if !is_seed_hash(hash) {
            return Err(invalid(
                "seedHash",
                "must be 64 lowercase hexadecimal digits",
            ));
        }
    }
    let canonical = |value: &Value| {
        CanonicalSeed::of(value)
            .map_err(|e| invalid("seed", format!("cannot be canonicalised: {e}")))
    };
    match (inline, hash) {
        (Some(seed), Some(hash)) => {
            let seed = canonical(&seed)?;
            if seed.hash != hash {
                return Err(invalid(
                    "seedHash",
                    format!("does not match the seed, whose hash is {}", seed.hash),
                ));
            }
            Ok(seed)
        }
        (Some(seed), None) => canonical(&seed),
        (None, Some(hash)) => runs::find_seed(&state.db, merchant, &hash)
            .await?
            .ok_or_else(|| invalid("seedHash", "no stored seed has this hash")),
        (None, None) => canonical(&defaults.clone().unwrap_or_else(|| json!({}))),
    }
}

/// An `Idempotency-Key` and the fingerprint of the request that carried it./// Writes the run, its seed and its outbox row inside `tx`.
async fn write_run(
    tx: &tokio_postgres::Transaction<'_>,
    prepared: &PreparedRun,
) -> Result<WrittenRun, DependencyError> {
    let (kind, triggered_by) = match (&prepared.trigger, prepared.replay_of) {
        (_, Some(_)) => ("replay", trigger_id(&prepared.trigger)),
        (Trigger::User { subject }, None) => ("user", subject.clone()),
        (Trigger::Webhook { webhook_id }, None) => ("webhook", webhook_id.clone()),
    };
    let new = NewRun {
        id: Uuid::new_v4(),
        merchant: prepared.merchant,
        configuration_id: prepared.configuration.configuration_id,
        configuration_version: prepared.configuration.version,
        seed_hash: prepared.seed.hash.clone(),
        triggered_by_type: kind,
        triggered_by_id: triggered_by,
        run_parameters: prepared.run_parameters.clone(),
        replay_of: prepared.replay_of,
    };
    let message = RunMessage {
        run_id: new.id,
        merchant_id: prepared.merchant.0,
    };
    runs::store_seed(tx, prepared.merchant, &prepared.seed).await?;
    let run = runs::insert_run(tx, &new).await?;
    let queued = outbox::insert(tx, &message).await?;
    Ok(WrittenRun { run, queued })
}

fn trigger_id(trigger: &Trigger) -> String {
    match trigger {
        Trigger::User { subject } => subject.clone(),
        Trigger::Webhook { webhook_id } => webhook_id.clone(),
    }
}

/// Per-merchant launch rate limit (fixed one-minute windows in Redis). Redis being down lets
/// the launch through: the limit protects capacity, the cache must not take it away.
async fn check_rate_limit(state: &AppState, merchant: MerchantId) -> Result<(), LaunchError> {
    let limit = state.settings.launch_rate_limit_per_minute;
    if limit == 0 {
        return Ok(());
    }
    let window = chrono::Utc::now().timestamp() / 60;
    let key = format!("docbundle:ratelimit:launch:{merchant}:{window}");
    match state
        .cache
        .incr_in_window(&key, Duration::from_secs(61))
        .await
    {
        Ok((count, _)) if count > limit => {
            let retry_after = 60 - (chrono::Utc::now().timestamp() % 60) as u64;
            Err(LaunchError::RateLimited {
                retry_after_secs: retry_after.max(1),
            })
        }
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "rate limit unavailable (Redis); letting the launch through");
            Ok(())
        }
    }
}
