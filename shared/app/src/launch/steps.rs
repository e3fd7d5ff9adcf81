//! The steps of a launch: resolve and check what is asked (configuration version, seed,
//! schema, replay), write the run in the caller's transaction, apply the rate limit.

use serde_json::{json, Value};
use uuid::Uuid;

use super::{LaunchError, LaunchRequest, Trigger};
use crate::Services;
use docbundle_domain::outbox::RunMessage;
use docbundle_domain::seed::{CanonicalSeed, SeedHash};
use docbundle_domain::trace::TraceHeader;
use docbundle_domain::FieldError;
use docbundle_domain::{ConfigurationStatus, MerchantId, TriggerType};
use docbundle_infra::db::configurations::{self, ConfigurationVersion};
use docbundle_infra::db::outbox;
use docbundle_infra::db::runs::{self, BundleRun, NewRun};
use docbundle_infra::error::DependencyError;

/// A launch that passed every check and is ready to be written.
#[derive(Debug, Clone)]
pub(super) struct PreparedRun {
    pub(super) merchant: MerchantId,
    pub(super) configuration: ConfigurationVersion,
    pub(super) seed: CanonicalSeed,
    pub(super) replay_of: Option<Uuid>,
    pub(super) trigger: Trigger,
    pub(super) run_parameters: Value,
    pub(super) trace: Option<TraceHeader>,
}

/// A run written in a transaction, with its event to publish after commit.
#[derive(Debug, Clone)]
pub(super) struct WrittenRun {
    pub(super) run: BundleRun,
    pub(super) queued: outbox::Pending,
}

fn invalid(field: &str, message: impl Into<String>) -> LaunchError {
    LaunchError::Invalid {
        message: "The launch request is not valid".to_owned(),
        details: vec![FieldError::new(field, message)],
    }
}

/// Resolves and checks everything a launch needs: configuration version, seed, schema, replay.
pub(super) async fn prepare(
    services: &Services,
    request: LaunchRequest,
) -> Result<PreparedRun, LaunchError> {
    let merchant = request.merchant;
    let configuration = configurations::find(&services.db, merchant, request.configuration_id)
        .await?
        .ok_or(LaunchError::ConfigurationNotFound)?;
    if configuration.status == ConfigurationStatus::Archived {
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
        let (configuration, seed) =
            replayed_inputs(services, merchant, original_id, request.configuration_id).await?;
        return Ok(PreparedRun {
            merchant,
            configuration,
            seed,
            replay_of: Some(original_id),
            trigger: request.trigger,
            run_parameters: Value::Object(run_parameters),
            trace: request.trace,
        });
    }

    let seed = resolve_seed(
        services,
        merchant,
        request.seed,
        request.seed_hash,
        &configuration.defaults,
    )
    .await?;
    let version = configurations::find_version(
        &services.db,
        merchant,
        configuration.id,
        configuration.version,
    )
    .await?
    .ok_or_else(|| {
        LaunchError::Inconsistent("current configuration version is missing".to_owned())
    })?;
    if !request.skip_validations {
        check_schema(&version, &seed)?;
    }
    Ok(PreparedRun {
        merchant,
        configuration: version,
        seed,
        replay_of: None,
        trigger: request.trigger,
        run_parameters: Value::Object(run_parameters),
        trace: request.trace,
    })
}

/// The configuration version and seed of a completed run of `configuration_id`, to replay.
async fn replayed_inputs(
    services: &Services,
    merchant: MerchantId,
    original_id: Uuid,
    configuration_id: Uuid,
) -> Result<(ConfigurationVersion, CanonicalSeed), LaunchError> {
    let original = runs::find(&services.db, merchant, original_id)
        .await?
        .filter(|r| r.status.has_manifest())
        .ok_or_else(|| {
            invalid(
                "forcingOptions.replayRunId",
                "is not a completed run of this merchant",
            )
        })?;
    if original.configuration_id != configuration_id {
        return Err(invalid(
            "configurationId",
            format!(
                "the replayed run belongs to configuration {}",
                original.configuration_id
            ),
        ));
    }
    let version = configurations::find_version(
        &services.db,
        merchant,
        original.configuration_id,
        original.configuration_version,
    )
    .await?
    .ok_or_else(|| {
        LaunchError::Inconsistent("replayed run's configuration version is missing".to_owned())
    })?;
    // Its seed may have gone with its retention, or by an erasure: nothing to replay from.
    let seed = runs::find_seed(&services.db, merchant, &original.seed_hash)
        .await?
        .ok_or_else(|| {
            invalid(
                "forcingOptions.replayRunId",
                "the run's seed is no longer kept (retention or erasure): it cannot be replayed",
            )
        })?;
    Ok((version, seed))
}

/// `Invalid` with a detail per violation unless the seed satisfies the version's `dataSchema`.
fn check_schema(version: &ConfigurationVersion, seed: &CanonicalSeed) -> Result<(), LaunchError> {
    let Some(schema) = &version.data_schema else {
        return Ok(());
    };
    let validator = docbundle_domain::schema::compile(schema).map_err(|e| {
        LaunchError::Inconsistent(format!("stored dataSchema does not compile: {e}"))
    })?;
    let value = seed.value().map_err(|e| {
        LaunchError::Inconsistent(format!("stored seed {} is not JSON: {e}", seed.hash))
    })?;
    let violations = docbundle_domain::schema::violations(&validator, &value, "seed");
    if violations.is_empty() {
        Ok(())
    } else {
        Err(LaunchError::Invalid {
            message: "The seed does not satisfy the configuration's dataSchema".to_owned(),
            details: violations,
        })
    }
}

async fn resolve_seed(
    services: &Services,
    merchant: MerchantId,
    inline: Option<Value>,
    hash: Option<String>,
    defaults: &Option<Value>,
) -> Result<CanonicalSeed, LaunchError> {
    let hash = match hash {
        None => None,
        Some(raw) => Some(
            SeedHash::parse(&raw)
                .ok_or_else(|| invalid("seedHash", "must be 64 lowercase hexadecimal digits"))?,
        ),
    };
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
        (None, Some(hash)) => runs::find_seed(&services.db, merchant, &hash)
            .await?
            .ok_or_else(|| {
                invalid(
                    "seedHash",
                    "no stored seed has this hash (or it was erased)",
                )
            }),
        (None, None) => canonical(&defaults.clone().unwrap_or_else(|| json!({}))),
    }
}

/// Writes the run, its seed and its outbox row inside `tx`.
pub(super) async fn write_run(
    tx: &tokio_postgres::Transaction<'_>,
    prepared: &PreparedRun,
) -> Result<WrittenRun, DependencyError> {
    let (kind, triggered_by) = match (&prepared.trigger, prepared.replay_of) {
        (_, Some(_)) => (TriggerType::Replay, trigger_id(&prepared.trigger)),
        (Trigger::User { subject }, None) => (TriggerType::User, subject.clone()),
        (Trigger::Webhook { webhook_id }, None) => (TriggerType::Webhook, webhook_id.clone()),
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
        merchant_id: prepared.merchant,
    };
    runs::store_seed(tx, prepared.merchant, &prepared.seed).await?;
    let run = runs::insert_run(tx, &new).await?;
    let queued = outbox::insert(tx, &message, prepared.trace.as_ref()).await?;
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
pub(super) async fn check_rate_limit(
    services: &Services,
    merchant: MerchantId,
) -> Result<(), LaunchError> {
    let limit = services.settings.launch_rate_limit_per_minute;
    match docbundle_infra::cache::over_limit_per_minute(&services.cache, "launch", merchant, limit)
        .await
    {
        Some(retry_after_secs) => Err(LaunchError::RateLimited { retry_after_secs }),
        None => Ok(()),
    }
}
