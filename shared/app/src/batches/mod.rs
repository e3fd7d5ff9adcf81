//! Batches: one NDJSON file of seeds, one run per line, one signed batch manifest at the end.
//!
//! - [`create`] records the batch (its configuration checked, version pinned at start) and
//!   answers where to upload the seeds: a presigned S3 `PUT`, or [`upload_seeds`] inline up to
//!   the request limit;
//! - [`start`] applies the batch limits, pins the configuration version and queues the
//!   fan-out ([`fanout`]), which streams the file into runs chunk by chunk on the batch queue;
//! - [`cancel`] fails every run that has not started;
//! - when the fan-out is done and the last run has ended, [`finish`] writes the signed batch
//!   manifest (a Merkle tree over the runs' manifests) and the one `batch.completed` event.

pub mod fanout;
pub mod finish;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::Services;
use docbundle_domain::batch::{self, BatchStatus, BatchTotals};
use docbundle_domain::outbox::FanOutMessage;
use docbundle_domain::run_errors::{self, RunError};
use docbundle_domain::seed::CanonicalSeed;
use docbundle_domain::{ConfigurationStatus, FieldError, MerchantId};
use docbundle_infra::db::batches::{self as repo, Batch, NewBatch};
use docbundle_infra::db::idempotency::{self, Idempotency};
use docbundle_infra::db::{configurations, connection, outbox, query_error};
use docbundle_infra::error::DependencyError;

pub use finish::finish_if_done;

/// Why a batch request was refused.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("batch not found")]
    NotFound,
    #[error("configuration not found")]
    ConfigurationNotFound,
    #[error("the configuration is archived: it launches no new runs")]
    ConfigurationArchived,
    #[error("{message}")]
    Invalid {
        message: String,
        details: Vec<FieldError>,
    },
    /// The batch is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    #[error("{message}; retry in {retry_after_secs} s")]
    Limited {
        message: String,
        retry_after_secs: u64,
    },
    #[error("the seeds file is {size} bytes; a batch reads at most {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("this Idempotency-Key was used with a different request")]
    KeyReused,
    #[error("the request with this Idempotency-Key is still in progress")]
    KeyInProgress,
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

fn invalid(field: &str, message: impl Into<String>) -> BatchError {
    BatchError::Invalid {
        message: "The batch request is not valid".to_owned(),
        details: vec![FieldError::new(field, message)],
    }
}

/// Where to `PUT` the seeds file.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Upload {
    /// A presigned S3 URL: `PUT` the NDJSON file there (any size up to `maxBytes`).
    pub url: String,
    pub method: &'static str,
    pub expires_at: DateTime<Utc>,
    pub max_bytes: u64,
    pub max_seeds: u32,
}

/// A batch as the API shows it: the stored batch, its totals by status, and an estimate.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchView {
    #[serde(flatten)]
    pub batch: Batch,
    pub totals: BatchTotals,
    /// Finished runs per second since the batch started.
    pub rate: Option<f64>,
    /// When the last run should end, at the rate so far.
    pub estimated_completion_at: Option<DateTime<Utc>>,
    /// A short-lived URL of the signed batch manifest, once the batch has ended.
    pub manifest_url: Option<String>,
    /// A short-lived URL of the TSA's RFC 3161 time-stamp of `manifestStatement` (over its
    /// SHA-256), once the batch has ended, when the service has a time-stamping authority.
    /// It time-stamps every run the batch lists: they have no `manifest.tsr` of their own.
    pub timestamp_url: Option<String>,
    /// On create only: where to upload the seeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload: Option<Upload>,
}

/// The batch with its totals, estimate and (once ended) manifest URL.
pub async fn view(services: &Services, batch: Batch) -> Result<BatchView, DependencyError> {
    let conn = connection(&services.db).await?;
    let totals = repo::totals(&conn, &batch).await?;
    drop(conn);
    let now = Utc::now();
    let ended = f64::from(totals.completed + totals.failed);
    let rate = batch.started_at.and_then(|started| {
        let secs = (batch.finished_at.unwrap_or(now) - started).num_milliseconds() as f64 / 1e3;
        (secs > 0.0 && ended > 0.0).then(|| ended / secs)
    });
    let estimated_completion_at = match (rate, batch.status) {
        (Some(rate), BatchStatus::Running) => {
            // Runs still to come: those made but not ended, plus the unread part of the file
            // at the density of runs per byte so far.
            let read = batch.bytes_read.max(1) as f64;
            let unread = batch
                .seeds_bytes
                .map(|size| (size as f64 - batch.bytes_read as f64).max(0.0))
                .unwrap_or(0.0);
            let still_to_make = if batch.fan_out_done {
                0.0
            } else {
                unread * f64::from(totals.runs) / read
            };
            let remaining = f64::from(totals.pending + totals.processing) + still_to_make;
            chrono::Duration::try_milliseconds((remaining / rate * 1e3) as i64).map(|d| now + d)
        }
        _ => None,
    };
    let presign = |key: &Option<String>| {
        let key = key.clone().filter(|_| batch.status.has_ended());
        async move {
            match key {
                Some(key) => services
                    .store
                    .presign_get(&key, services.settings.presign_expiry)
                    .await
                    .map(Some),
                None => Ok(None),
            }
        }
    };
    let manifest_url = Box::pin(presign(&batch.manifest_key)).await?;
    let timestamp_url = Box::pin(presign(&batch.timestamp_key)).await?;
    Ok(BatchView {
        batch,
        totals,
        rate,
        estimated_completion_at,
        manifest_url,
        timestamp_url,
        upload: None,
    })
}

/// What a create asks for.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub merchant: MerchantId,
    pub configuration_id: Uuid,
    pub configuration_version: Option<i32>,
    pub fail_fast: bool,
    pub created_by: String,
}

/// An answer, new or repeated (for a repeated `Idempotency-Key`).
pub type Answered = crate::Answered<BatchView>;

/// The fingerprint an `Idempotency-Key` is tied to: the operation and its body, so that a key
/// reused on another operation is refused like one reused with another body.
pub fn fingerprint(operation: &str, body: &Value) -> Result<String, String> {
    CanonicalSeed::of(&json!({"operation": operation, "body": body}))
        .map(|c| c.hash.as_str().to_owned())
}

async fn repeated_answer(
    services: &Services,
    merchant: MerchantId,
    idem: Option<&Idempotency>,
) -> Result<Option<Answered>, BatchError> {
    let Some(idem) = idem else { return Ok(None) };
    let conn = connection(&services.db).await?;
    match idempotency::find_live(&conn, merchant, &idem.key).await? {
        Some(stored) => Answered::replayed(stored, idem)
            .map(Some)
            .ok_or(BatchError::KeyReused),
        None => Ok(None),
    }
}

/// Records `body` as the key's answer in `tx`; `Err` when another request with the key
/// committed first (answered as it was).
async fn record_answer(
    tx: &tokio_postgres::Transaction<'_>,
    merchant: MerchantId,
    idem: Option<&Idempotency>,
    body: &Value,
) -> Result<bool, BatchError> {
    match idem {
        None => Ok(true),
        Some(idem) => Ok(idempotency::record(tx, merchant, idem, body).await?),
    }
}

/// Creates a batch for a configuration of the merchant; the answer says where to upload.
pub async fn create(
    services: &Services,
    request: CreateRequest,
    idem: Option<&Idempotency>,
) -> Result<Answered, BatchError> {
    let merchant = request.merchant;
    if let Some(answer) = repeated_answer(services, merchant, idem).await? {
        return Ok(answer);
    }
    let configuration = configurations::find(&services.db, merchant, request.configuration_id)
        .await?
        .ok_or(BatchError::ConfigurationNotFound)?;
    if configuration.status == ConfigurationStatus::Archived {
        return Err(BatchError::ConfigurationArchived);
    }
    if let Some(version) = request.configuration_version {
        if version < 1 || version > configuration.version {
            return Err(invalid(
                "configurationVersion",
                format!(
                    "is not a version of this configuration (1 to {})",
                    configuration.version
                ),
            ));
        }
    }
    let id = Uuid::new_v4();
    let new = NewBatch {
        id,
        merchant,
        configuration_id: configuration.id,
        configuration_version: request.configuration_version,
        fail_fast: request.fail_fast,
        seeds_key: batch::seeds_key(merchant, id),
        created_by: request.created_by,
    };
    let limits = services.settings.batch_limits;
    let expiry = services.settings.presign_expiry;
    let url = Box::pin(services.store.presign_put(&new.seeds_key, expiry)).await?;
    let mut conn = connection(&services.db).await?;
    if let Some(idem) = idem {
        idempotency::expire(&conn, merchant, &idem.key).await?;
    }
    let tx = conn
        .transaction()
        .await
        .map_err(query_error("begin batch create"))?;
    let stored = repo::insert(&tx, &new).await?;
    let mut view = Box::pin(view(services, stored)).await?;
    view.upload = Some(Upload {
        url,
        method: "PUT",
        expires_at: Utc::now()
            + chrono::Duration::from_std(expiry).unwrap_or(chrono::Duration::zero()),
        max_bytes: limits.max_bytes,
        max_seeds: limits.max_seeds,
    });
    let answer = Answered::New(Box::new(view));
    if !record_answer(&tx, merchant, idem, &answer.body()?).await? {
        drop(tx);
        drop(conn);
        return repeated_answer(services, merchant, idem)
            .await?
            .ok_or(BatchError::KeyInProgress);
    }
    tx.commit()
        .await
        .map_err(query_error("commit batch create"))?;
    tracing::info!(batch_id = %id, configuration_id = %new.configuration_id, "batch created");
    Ok(answer)
}

async fn found(services: &Services, merchant: MerchantId, id: Uuid) -> Result<Batch, BatchError> {
    repo::find(&services.db, merchant, id)
        .await?
        .ok_or(BatchError::NotFound)
}

/// Stores `body` as the batch's seeds file (the inline way; the request limit bounds it).
pub async fn upload_seeds(
    services: &Services,
    merchant: MerchantId,
    id: Uuid,
    body: Vec<u8>,
) -> Result<BatchView, BatchError> {
    let batch = found(services, merchant, id).await?;
    if batch.status != BatchStatus::Created {
        return Err(BatchError::Conflict(format!(
            "the batch is {}: its seeds can no longer change",
            batch.status
        )));
    }
    Box::pin(
        services
            .store
            .put(&batch.seeds_key, body, "application/x-ndjson"),
    )
    .await?;
    Ok(Box::pin(view(services, batch)).await?)
}

/// Starts a `created` batch: its limits, its seeds file, its pinned version, its fan-out.
pub async fn start(
    services: &Services,
    merchant: MerchantId,
    id: Uuid,
    idem: Option<&Idempotency>,
) -> Result<Answered, BatchError> {
    if let Some(answer) = repeated_answer(services, merchant, idem).await? {
        return Ok(answer);
    }
    let batch = found(services, merchant, id).await?;
    if batch.status != BatchStatus::Created {
        return Err(BatchError::Conflict(format!(
            "the batch is already {}",
            batch.status
        )));
    }
    let limits = services.settings.batch_limits;
    let (size, etag) = Box::pin(services.store.head(&batch.seeds_key))
        .await?
        .ok_or_else(|| {
            invalid(
                "seeds",
                "no seeds file was uploaded: PUT it to the create answer's upload URL or to /api/v1/batches/{id}/seeds",
            )
        })?;
    if size > limits.max_bytes {
        return Err(BatchError::TooLarge {
            size,
            limit: limits.max_bytes,
        });
    }
    let configuration = configurations::find(&services.db, merchant, batch.configuration_id)
        .await?
        .ok_or(BatchError::ConfigurationNotFound)?;
    if configuration.status == ConfigurationStatus::Archived {
        return Err(BatchError::ConfigurationArchived);
    }
    let version = batch.configuration_version.unwrap_or(configuration.version);

    let mut conn = connection(&services.db).await?;
    if let Some(idem) = idem {
        idempotency::expire(&conn, merchant, &idem.key).await?;
    }
    let tx = conn
        .transaction()
        .await
        .map_err(query_error("begin batch start"))?;
    repo::lock_merchant(&tx, merchant).await?;
    let (running, seeds_today, oldest_today) =
        repo::usage(&tx, merchant, i64::from(limits.max_seeds)).await?;
    if running >= limits.max_running {
        return Err(BatchError::Limited {
            message: format!(
                "{running} batches of this merchant are running; at most {} may run at once",
                limits.max_running
            ),
            retry_after_secs: 60,
        });
    }
    if seeds_today >= limits.seeds_per_day {
        let retry = oldest_today
            .map(|t| {
                (t + chrono::Duration::days(1) - Utc::now())
                    .num_seconds()
                    .max(1) as u64
            })
            .unwrap_or(60);
        return Err(BatchError::Limited {
            message: format!(
                "batches started in the last 24 hours hold {seeds_today} seeds; at most {} a day",
                limits.seeds_per_day
            ),
            retry_after_secs: retry,
        });
    }
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    let started = repo::start(&tx, merchant, id, version, size, etag.as_deref())
        .await?
        .ok_or_else(|| BatchError::Conflict("the batch was started by another request".into()))?;
    let fan_out = outbox::insert(
        &tx,
        &FanOutMessage {
            batch_id: id,
            merchant_id: merchant,
        },
        None,
    )
    .await?;
    let answer = Answered::New(Box::new(Box::pin(view(services, started)).await?));
    if !record_answer(&tx, merchant, idem, &answer.body()?).await? {
        drop(tx);
        drop(conn);
        return repeated_answer(services, merchant, idem)
            .await?
            .ok_or(BatchError::KeyInProgress);
    }
    tx.commit()
        .await
        .map_err(query_error("commit batch start"))?;
    drop(conn);
    outbox::publish(&services.db, &services.publisher, &fan_out).await;
    tracing::info!(batch_id = %id, version, bytes = size, "batch started");
    Ok(answer)
}

/// Cancels a batch that has not ended: no more lines are read, every run that has not started
/// fails `BATCH_CANCELLED`, runs under way finish; the batch ends `cancelled` with its
/// manifest once they have.
pub async fn cancel(
    services: &Services,
    merchant: MerchantId,
    id: Uuid,
) -> Result<BatchView, BatchError> {
    let batch = found(services, merchant, id).await?;
    if batch.status.has_ended() {
        return Err(BatchError::Conflict(format!(
            "the batch has ended ({})",
            batch.status
        )));
    }
    if batch.status == BatchStatus::Created {
        let configuration = configurations::find(&services.db, merchant, batch.configuration_id)
            .await?
            .ok_or(BatchError::ConfigurationNotFound)?;
        let version = batch.configuration_version.unwrap_or(configuration.version);
        if Box::pin(finish::cancel_unstarted(services, &batch, version))
            .await?
            .is_none()
        {
            // Started meanwhile: cancel it as a running batch.
            return Box::pin(cancel(services, merchant, id)).await;
        }
    } else {
        let error = RunError::new(
            run_errors::BATCH_CANCELLED,
            "the batch was cancelled before this run started",
        );
        let mut conn = connection(&services.db).await?;
        let tx = conn
            .transaction()
            .await
            .map_err(query_error("begin batch cancel"))?;
        let Some(failed) = repo::cancel(&tx, merchant, id, &error.to_value()).await? else {
            drop(tx);
            let now = found(services, merchant, id).await?;
            return Err(BatchError::Conflict(format!(
                "the batch has ended ({})",
                now.status
            )));
        };
        tx.commit()
            .await
            .map_err(query_error("commit batch cancel"))?;
        tracing::info!(batch_id = %id, runs_cancelled = failed, "batch cancelled");
        finish_if_done(services, id).await;
    }
    let batch = found(services, merchant, id).await?;
    Ok(Box::pin(view(services, batch)).await?)
}
