//! Launching a bundle run: the one code path every trigger (an API call, a webhook, a replay)
//! goes through.
//!
//! The run, its seed and an outbox row are written in one transaction (with the idempotency
//! record, when the caller sent a key); the SQS message is sent after commit. A failed send
//! leaves the run `pending` with its outbox row unsent, for `outbox-relay`: no launched run is
//! ever lost.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::db::configurations::{self, ConfigurationVersion};
use crate::db::runs::{self, BundleRun, NewRun};
use crate::db::{connection, outbox, query_error};
use crate::domain::MerchantId;
use crate::error::{ApiError, FieldError};
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

/// A launch that passed every check and is ready to be written.
#[derive(Debug, Clone)]
pub struct PreparedRun {
    pub merchant: MerchantId,
    pub configuration: ConfigurationVersion,
    pub seed: CanonicalSeed,
    pub replay_of: Option<Uuid>,
    pub trigger: Trigger,
    pub run_parameters: Value,
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::validation(
        "The launch request is not valid",
        vec![FieldError::new(field, message)],
    )
}

/// Resolves and checks everything a launch needs: configuration version, seed, schema, replay.
pub async fn prepare(state: &AppState, request: LaunchRequest) -> Result<PreparedRun, ApiError> {
    let merchant = request.merchant;
    let configuration = configurations::find(&state.db, merchant, request.configuration_id)
        .await?
        .ok_or_else(|| ApiError::not_found("Configuration not found"))?;
    if configuration.status == "archived" {
        return Err(ApiError::conflict(
            "The configuration is archived: it launches no new runs",
        ));
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
        .ok_or_else(|| ApiError::internal("replayed run's configuration version is missing"))?;
        let seed = runs::find_seed(&state.db, merchant, &original.seed_hash)
            .await?
            .ok_or_else(|| ApiError::internal("replayed run's seed is missing"))?;
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
            .ok_or_else(|| ApiError::internal("current configuration version is missing"))?;
    if !request.skip_validations {
        if let Some(schema) = &version.data_schema {
            let validator = crate::schema::compile(schema).map_err(|e| {
                ApiError::internal(format!("stored dataSchema does not compile: {e}"))
            })?;
            let violations = crate::schema::violations(&validator, &seed.value(), "seed");
            if !violations.is_empty() {
                return Err(ApiError::validation(
                    "The seed does not satisfy the configuration's dataSchema",
                    violations,
                ));
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
) -> Result<CanonicalSeed, ApiError> {
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

/// An `Idempotency-Key` and the fingerprint of the request that carried it.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub request_sha256: String,
}

/// How long an idempotency key is honoured.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600 + 60);

/// The answer to a launch.
#[derive(Debug, Clone)]
pub struct Launched {
    pub status: u16,
    pub body: Value,
    /// The run this call created; `None` when an earlier request with the same key answered.
    pub run: Option<BundleRun>,
}

/// A run written inside a caller's transaction, to be dispatched once it commits.
#[derive(Debug, Clone)]
pub struct WrittenRun {
    pub run: BundleRun,
    /// The run's `run.queued` event, to publish once the transaction has committed.
    pub queued: outbox::Pending,
}

/// Writes the run, its seed and its outbox row inside `tx`.
pub async fn write_run(
    tx: &tokio_postgres::Transaction<'_>,
    prepared: &PreparedRun,
) -> Result<WrittenRun, ApiError> {
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

/// Writes the run, its seed, its outbox row and (with a key) the idempotency record in one
/// transaction, then sends the run message.
pub async fn commit(
    state: &AppState,
    prepared: PreparedRun,
    idempotency: Option<&Idempotency>,
) -> Result<Launched, ApiError> {
    let mut conn = connection(&state.db).await?;
    if let Some(idem) = idempotency {
        conn.execute(
            "DELETE FROM idempotency_keys WHERE merchant_id = $1 AND key = $2 AND expires_at < now()",
            &[&prepared.merchant.0, &idem.key],
        )
        .await
        .map_err(query_error("expire idempotency key"))?;
    }
    let tx = conn
        .transaction()
        .await
        .map_err(query_error("begin launch"))?;
    let written = write_run(&tx, &prepared).await?;
    let body = serde_json::to_value(&written.run).map_err(ApiError::internal)?;
    if let Some(idem) = idempotency {
        let ttl_secs = IDEMPOTENCY_TTL.as_secs_f64();
        let inserted = tx
            .execute(
                "INSERT INTO idempotency_keys
                     (merchant_id, key, request_sha256, response_status, response_body, expires_at)
                 VALUES ($1, $2, $3, 202, $4, now() + make_interval(secs => $5))
                 ON CONFLICT (merchant_id, key) DO NOTHING",
                &[
                    &prepared.merchant.0,
                    &idem.key,
                    &idem.request_sha256,
                    &body,
                    &ttl_secs,
                ],
            )
            .await
            .map_err(query_error("record idempotency key"))?;
        if inserted == 0 {
            // Another request with this key committed first: answer as it was answered.
            drop(tx);
            return replay_idempotent(&conn, prepared.merchant, idem).await;
        }
    }
    tx.commit().await.map_err(query_error("commit launch"))?;
    drop(conn);

    outbox::publish(&state.db, &state.publisher, &written.queued).await;
    Ok(Launched {
        status: 202,
        body,
        run: Some(written.run),
    })
}

fn trigger_id(trigger: &Trigger) -> String {
    match trigger {
        Trigger::User { subject } => subject.clone(),
        Trigger::Webhook { webhook_id } => webhook_id.clone(),
    }
}

/// The stored answer for `idem`, when the same key has been used already.
pub async fn find_idempotent(
    state: &AppState,
    merchant: MerchantId,
    idem: &Idempotency,
) -> Result<Option<Launched>, ApiError> {
    let conn = connection(&state.db).await?;
    let exists = conn
        .query_opt(
            "SELECT 1 FROM idempotency_keys WHERE merchant_id = $1 AND key = $2 AND expires_at >= now()",
            &[&merchant.0, &idem.key],
        )
        .await
        .map_err(query_error("find idempotency key"))?;
    match exists {
        None => Ok(None),
        Some(_) => replay_idempotent(&conn, merchant, idem).await.map(Some),
    }
}

async fn replay_idempotent(
    conn: &tokio_postgres::Client,
    merchant: MerchantId,
    idem: &Idempotency,
) -> Result<Launched, ApiError> {
    let row = conn
        .query_opt(
            "SELECT request_sha256, response_status, response_body FROM idempotency_keys
              WHERE merchant_id = $1 AND key = $2",
            &[&merchant.0, &idem.key],
        )
        .await
        .map_err(query_error("read idempotency key"))?
        .ok_or_else(|| {
            ApiError::conflict("The request with this Idempotency-Key is still in progress; retry")
        })?;
    let stored_hash: String = row.get("request_sha256");
    if stored_hash != idem.request_sha256 {
        return Err(ApiError::validation(
            "This Idempotency-Key was used with a different request body",
            vec![FieldError::new(
                "Idempotency-Key",
                "was used with a different request body",
            )],
        ));
    }
    let status: i32 = row.get("response_status");
    Ok(Launched {
        status: u16::try_from(status).unwrap_or(202),
        body: row.get("response_body"),
        run: None,
    })
}

/// Per-merchant launch rate limit (fixed one-minute windows in Redis). Redis being down lets
/// the launch through: the limit protects capacity, the cache must not take it away.
pub async fn check_rate_limit(state: &AppState, merchant: MerchantId) -> Result<(), ApiError> {
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
            Err(ApiError::rate_limited(retry_after.max(1)))
        }
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "rate limit unavailable (Redis); letting the launch through");
            Ok(())
        }
    }
}
