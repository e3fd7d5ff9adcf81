//! Launching bundle runs: the one use-case every trigger goes through — an API call (with its
//! idempotency key and rate limit), a replay, or a verified inbound event that launches every
//! configuration it triggers.
//!
//! The use-case owns the whole sequence: idempotency, rate limit, resolution and checks, one
//! transaction that writes the seed, the run, its `run.queued` event (and the idempotency answer
//! or the inbound event's record), then publication after commit. A failed publication leaves
//! the event in the outbox for the `relay` job (`crate::jobs::relay`): no launched run is ever lost. It speaks the
//! domain ([`LaunchError`]); the HTTP edge maps that to answers.

use serde_json::{json, Value};
use uuid::Uuid;

mod steps;

use self::steps::{check_rate_limit, prepare, write_run};
use crate::Services;
use docbundle_domain::trace::TraceHeader;
use docbundle_domain::FieldError;
use docbundle_domain::MerchantId;
use docbundle_infra::db::idempotency::{self, Idempotency};
use docbundle_infra::db::inbound::{self, WebhookSource};
use docbundle_infra::db::runs::BundleRun;
use docbundle_infra::db::{connection, outbox, query_error};
use docbundle_infra::error::DependencyError;

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
    /// The X-Ray trace of the request, continued by the worker.
    pub trace: Option<TraceHeader>,
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

    pub(crate) fn details(&self) -> Value {
        match self {
            LaunchError::Invalid { details, .. } => json!(details),
            _ => Value::Null,
        }
    }
}

/// How a launch ended: a new run, written and queued, or the first answer again.
pub type Launched = crate::Answered<BundleRun>;

/// Launches one run: answers a repeated idempotency key as the first time, applies the
/// merchant's rate limit, checks everything, writes the run and its event in one transaction
/// and publishes the event.
pub async fn launch(
    services: &Services,
    request: LaunchRequest,
    idempotency: Option<&Idempotency>,
) -> Result<Launched, LaunchError> {
    let merchant = request.merchant;
    if let Some(idem) = idempotency {
        let conn = connection(&services.db).await?;
        if let Some(stored) = idempotency::find_live(&conn, merchant, &idem.key).await? {
            return repeated(stored, idem);
        }
    }
    check_rate_limit(services, merchant).await?;
    let prepared = prepare(services, request).await?;

    let mut conn = connection(&services.db).await?;
    if let Some(idem) = idempotency {
        idempotency::expire(&conn, merchant, &idem.key).await?;
    }
    let tx = conn
        .transaction()
        .await
        .map_err(query_error("begin launch"))?;
    let written = write_run(&tx, &prepared).await?;
    if let Some(idem) = idempotency {
        let body = Launched::New(Box::new(written.run.clone())).body()?;
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
    outbox::publish(&services.db, &services.publisher, &written.queued).await;
    tracing::info!(run_id = %written.run.id, configuration_id = %written.run.configuration_id, "run launched");
    Ok(Launched::New(Box::new(written.run)))
}

fn repeated(
    stored: idempotency::StoredAnswer,
    idem: &Idempotency,
) -> Result<Launched, LaunchError> {
    Launched::replayed(stored, idem).ok_or(LaunchError::KeyReused)
}

/// A verified inbound event, as its source sent it.
#[derive(Debug, Clone)]
pub struct InboundEvent<'a> {
    pub source: &'a WebhookSource,
    pub webhook_id: String,
    pub event_type: String,
    pub data: Value,
    pub body_sha256: String,
    /// The X-Ray trace of the delivery, continued by the worker for every run it launches.
    pub trace: Option<TraceHeader>,
}

/// Launches a run of every active configuration of the source's merchant whose `triggers` list
/// the event's type, with `data` as the seed; a configuration that refuses the data is listed
/// under `skipped`. The event, its runs and the answer are written in one transaction; a repeat
/// of the same `webhook-id` gets the first answer and launches nothing.
pub async fn launch_for_event(
    services: &Services,
    event: InboundEvent<'_>,
) -> Result<Value, LaunchError> {
    let source = event.source;
    if let Some(answer) = inbound::event_answer(&services.db, source.id, &event.webhook_id).await? {
        return Ok(answer);
    }
    let merchant = source.merchant_id;
    let configurations =
        inbound::triggered_configurations(&services.db, merchant, &event.event_type).await?;

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
            trace: event.trace.clone(),
        };
        match prepare(services, request).await {
            Ok(run) => prepared.push(run),
            Err(e) if e.is_refusal() => skipped.push(json!({
                "configurationId": configuration_id,
                "reason": e.to_string(),
                "details": e.details(),
            })),
            Err(e) => return Err(e),
        }
    }

    let mut conn = connection(&services.db).await?;
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
        return inbound::event_answer(&services.db, source.id, &event.webhook_id)
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
        outbox::publish(&services.db, &services.publisher, &w.queued).await;
    }
    tracing::info!(%event_id, source_id = %source.id, event_type = event.event_type, runs = run_ids.len(), skipped = skipped.len(), "inbound event accepted");
    Ok(answer)
}
