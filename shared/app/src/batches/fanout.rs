//! The fan-out: a batch's seeds file streamed into runs.
//!
//! One fan-out message works for at most `BATCH_FANOUT_SLICE_SECONDS`, then queues the next
//! and ends. It reads the file from the batch's cursor on (an S3 ranged `GET`, a chunk at a
//! time: memory is bounded by the line limit, whatever the file), and writes each chunk of
//! lines in one transaction: the seeds, the runs (ids derived from batch and line), the lines
//! that became no run, the runs' messages in the outbox and the cursor's advance. The
//! transaction first locks the batch and checks the cursor is where this fan-out left it, so
//! two fan-outs of one batch (a redelivery, the sweep) never write the same chunk, and one that
//! dies resumes at the last committed chunk: no gap, no duplicate. The messages go to the
//! batch queue ten per call once the chunk commits; any left unsent are relayed.

use std::time::Instant;

use serde_json::json;
use uuid::Uuid;

use crate::Services;
use docbundle_domain::batch::BatchStatus;
use docbundle_domain::batch::{self, batch_errors, line_errors, Line, LineSplitter};
use docbundle_domain::outbox::{BatchRunMessage, FanOutMessage, RunMessage};
use docbundle_domain::run_errors::{self, RunError};
use docbundle_domain::seed::CanonicalSeed;
use docbundle_infra::db::batches::{self as repo, Batch, LineError};
use docbundle_infra::db::configurations;
use docbundle_infra::db::runs::{self, BatchRuns};
use docbundle_infra::db::{connection, outbox, query_error};
use docbundle_infra::error::DependencyError;
use docbundle_infra::storage::Read;

/// How a fan-out message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanOut {
    /// Every line is read (or the batch stopped): nothing more to do.
    Done,
    /// The slice ran out: the next message is queued.
    Continued,
    /// The batch is not running, or another fan-out moved its cursor: nothing done here.
    Idle,
}

/// Most bytes of lines kept before a chunk is written, whatever the line count.
const CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// The lines of one chunk, turned into what is written.
struct Chunk {
    seeds: Vec<CanonicalSeed>,
    runs: Vec<(Uuid, i32, docbundle_domain::seed::SeedHash)>,
    errors: Vec<LineError>,
    /// The cursor after the chunk.
    end: u64,
    line: u32,
    /// The batch stops here (too many seeds, `failFast`), with its error when it fails.
    stop: Option<Option<serde_json::Value>>,
}

/// Goes on with the batch's fan-out for one slice.
pub async fn fan_out(
    services: &Services,
    message: &FanOutMessage,
) -> Result<FanOut, DependencyError> {
    let started = Instant::now();
    let Some(batch) = repo::find(&services.db, message.merchant_id, message.batch_id).await? else {
        tracing::warn!(batch_id = %message.batch_id, "fan-out for an unknown batch dropped");
        return Ok(FanOut::Idle);
    };
    if batch.status != BatchStatus::Running || batch.fan_out_done {
        return Ok(FanOut::Idle);
    }
    let limits = services.settings.batch_limits;
    let Some(version_number) = batch.configuration_version else {
        return Ok(FanOut::Idle);
    };
    let version = configurations::find_version(
        &services.db,
        batch.merchant_id,
        batch.configuration_id,
        version_number,
    )
    .await?;
    let validator = match version.as_ref().map(|v| v.data_schema.as_ref()) {
        Some(Some(schema)) => match docbundle_domain::schema::compile(schema) {
            Ok(v) => Some(v),
            Err(e) => {
                return stop(
                    services,
                    &batch,
                    "CONFIGURATION_INVALID",
                    &format!("the pinned version's dataSchema does not compile: {e}"),
                )
                .await;
            }
        },
        Some(None) => None,
        None => {
            return stop(
                services,
                &batch,
                run_errors::CONFIGURATION_MISSING,
                "the pinned configuration version is gone",
            )
            .await;
        }
    };
    if batch.seeds_bytes.unwrap_or(0) as u64 > limits.max_bytes {
        return stop(
            services,
            &batch,
            batch_errors::SEEDS_TOO_LARGE,
            &format!("the seeds file is larger than {} bytes", limits.max_bytes),
        )
        .await;
    }
    let offset = batch.bytes_read.max(0) as u64;
    let read = Box::pin(services.store.read_from(
        &batch.seeds_key,
        offset,
        batch.seeds_etag.as_deref(),
    ))
    .await?;
    let mut stream = match read {
        Read::Stream(stream) => stream,
        Read::Missing => {
            return stop(
                services,
                &batch,
                batch_errors::SEEDS_MISSING,
                "the seeds file is gone",
            )
            .await;
        }
        Read::Changed => {
            return stop(
                services,
                &batch,
                batch_errors::SEEDS_CHANGED,
                "the seeds file was replaced after the batch started; lines after the cursor were not read",
            )
            .await;
        }
    };
    // Read only as far as the file was when the batch started (its ETag pins the object; the
    // size bounds the read besides).
    let size = batch.seeds_bytes.unwrap_or(0).max(0) as u64;
    let mut splitter = LineSplitter::new(
        limits.max_line_bytes,
        offset,
        batch.lines_read.max(0) as u32,
    );
    let mut cursor = (offset, batch.lines_read);
    let mut seeds_seen = i64::from(batch.runs_total) + i64::from(batch.errors_total);
    let mut lines: Vec<Line> = Vec::new();
    let mut buffered = 0usize;
    let mut position = offset;
    let mut eof = position >= size;
    let timeout = services.settings.dependency_timeout;
    loop {
        // Read until a chunk is full or the file ends (one read adds at most one S3 piece).
        while !eof && lines.len() < limits.chunk_lines && buffered < CHUNK_BYTES {
            let next = tokio::time::timeout(timeout, stream.next())
                .await
                .map_err(|_| DependencyError::timeout("s3", "read seeds", timeout))?;
            match next {
                Some(Ok(bytes)) => {
                    let take = (size.saturating_sub(position) as usize).min(bytes.len());
                    let mut fed = Vec::new();
                    splitter.feed(&bytes[..take], &mut fed);
                    buffered += fed.iter().map(line_len).sum::<usize>();
                    keep(&mut lines, fed);
                    position += take as u64;
                    eof = position >= size;
                }
                Some(Err(e)) => {
                    return Err(DependencyError::failed("s3", "read seeds", e.to_string()));
                }
                None => eof = true,
            }
            if eof {
                let mut fed = Vec::new();
                splitter.finish(&mut fed);
                keep(&mut lines, fed);
            }
        }
        let take = lines.len().min(limits.chunk_lines);
        let rest = lines.split_off(take);
        let chunk_lines = std::mem::replace(&mut lines, rest);
        buffered = lines.iter().map(line_len).sum();
        let chunk = build_chunk(
            &batch,
            validator.as_ref(),
            chunk_lines,
            &mut seeds_seen,
            i64::from(limits.max_seeds),
            cursor,
        );
        let done = chunk.stop.is_some() || (eof && lines.is_empty());
        match Box::pin(write_chunk(services, &batch, cursor, &chunk, done)).await? {
            Some(pending) => {
                Box::pin(outbox::publish_many(
                    &services.db,
                    &services.publisher,
                    &pending,
                ))
                .await;
            }
            None => return Ok(FanOut::Idle),
        }
        cursor = (chunk.end, i32::try_from(chunk.line).unwrap_or(i32::MAX));
        if done {
            tracing::info!(batch_id = %batch.id, lines = chunk.line, "fan-out done");
            super::finish_if_done(services, batch.id).await;
            return Ok(FanOut::Done);
        }
        if started.elapsed() >= limits.fan_out_slice {
            // Hand on: the next message resumes from the cursor just committed.
            let next = FanOutMessage {
                batch_id: batch.id,
                merchant_id: batch.merchant_id,
            };
            let body = serde_json::to_string(&next)
                .map_err(|e| DependencyError::failed("batches", "encode fan-out", e))?;
            Box::pin(services.batch_queue.send_body(&body, None)).await?;
            return Ok(FanOut::Continued);
        }
    }
}

/// Appends `fed` to `lines`, a run of blank lines kept as its last one only (it carries the
/// cursor past them): a file of a million empty lines costs one entry, not a million.
fn keep(lines: &mut Vec<Line>, fed: Vec<Line>) {
    let blank = |line: &Line| matches!(line, Line::Whole { bytes, .. } if bytes.iter().all(u8::is_ascii_whitespace));
    for line in fed {
        if blank(&line) && lines.last().is_some_and(blank) {
            lines.pop();
        }
        lines.push(line);
    }
}

fn line_len(line: &Line) -> usize {
    match line {
        Line::Whole { bytes, .. } => bytes.len(),
        Line::TooLong { .. } => 0,
    }
}

fn build_chunk(
    batch: &Batch,
    validator: Option<&docbundle_domain::schema::Validator>,
    lines: Vec<Line>,
    seeds_seen: &mut i64,
    max_seeds: i64,
    cursor: (u64, i32),
) -> Chunk {
    let mut chunk = Chunk {
        seeds: Vec::new(),
        runs: Vec::new(),
        errors: Vec::new(),
        end: cursor.0,
        line: u32::try_from(cursor.1).unwrap_or(0),
        stop: None,
    };
    for line in lines {
        let number = line.number();
        chunk.end = line.end();
        chunk.line = number;
        let parsed = match &line {
            Line::TooLong { .. } => Err(LineError {
                line: number as i32,
                code: line_errors::LINE_TOO_LONG.to_owned(),
                message: "the line is longer than a seed may be".to_owned(),
                details: None,
            }),
            Line::Whole { bytes, .. } => match batch::parse_line(bytes) {
                Ok(None) => continue,
                Ok(Some(value)) => Ok(value),
                Err(refusal) => Err(LineError {
                    line: number as i32,
                    code: refusal.code.to_owned(),
                    message: refusal.message,
                    details: None,
                }),
            },
        };
        // Every non-blank line counts, a refused one too: a file of garbage stops here as well.
        if *seeds_seen >= max_seeds {
            chunk.errors.push(LineError {
                line: number as i32,
                code: line_errors::TOO_MANY_SEEDS.to_owned(),
                message: format!("a batch holds at most {max_seeds} seeds: this line and every later one were not read"),
                details: None,
            });
            chunk.stop = Some(None);
            break;
        }
        let refusal = match parsed {
            Err(error) => Some(error),
            Ok(value) => check_seed(validator, &value, number)
                .and_then(|()| {
                    CanonicalSeed::of(&value).map_err(|e| LineError {
                        line: number as i32,
                        code: line_errors::INVALID_JSON.to_owned(),
                        message: format!("the seed cannot be canonicalised: {e}"),
                        details: None,
                    })
                })
                .map_or_else(Some, |seed| {
                    chunk.runs.push((
                        batch::run_id(batch.id, number),
                        number as i32,
                        seed.hash.clone(),
                    ));
                    chunk.seeds.push(seed);
                    None
                }),
        };
        *seeds_seen += 1;
        if let Some(error) = refusal {
            if batch.fail_fast {
                chunk.stop = Some(Some(json!({
                    "code": batch_errors::LINE_REFUSED,
                    "message": format!("line {number} became no run ({}), and the batch fails fast", error.code),
                    "line": number,
                })));
                chunk.errors.push(error);
                break;
            }
            chunk.errors.push(error);
        }
    }
    chunk
}

fn check_seed(
    validator: Option<&docbundle_domain::schema::Validator>,
    value: &serde_json::Value,
    number: u32,
) -> Result<(), LineError> {
    let Some(validator) = validator else {
        return Ok(());
    };
    let violations = docbundle_domain::schema::violations(validator, value, "seed");
    if violations.is_empty() {
        return Ok(());
    }
    Err(LineError {
        line: number as i32,
        code: line_errors::SCHEMA_VIOLATION.to_owned(),
        message: "the seed does not satisfy the configuration's dataSchema".to_owned(),
        details: Some(json!(violations)),
    })
}

/// Writes one chunk if the cursor is still at `cursor`; the outbox rows to publish, or `None`
/// when the batch moved on without this fan-out (cancelled, another fan-out).
async fn write_chunk(
    services: &Services,
    batch: &Batch,
    cursor: (u64, i32),
    chunk: &Chunk,
    done: bool,
) -> Result<Option<Vec<outbox::Pending>>, DependencyError> {
    let mut conn = connection(&services.db).await?;
    let tx = conn
        .transaction()
        .await
        .map_err(query_error("begin fan-out chunk"))?;
    let Some(now) = repo::lock(&tx, batch.id).await? else {
        return Ok(None);
    };
    if now.status != BatchStatus::Running
        || now.fan_out_done
        || now.bytes_read != cursor.0 as i64
        || now.lines_read != cursor.1
    {
        return Ok(None);
    }
    runs::store_seeds(&tx, batch.merchant_id, &chunk.seeds).await?;
    let inserted = runs::insert_batch_runs(
        &tx,
        &BatchRuns {
            merchant: batch.merchant_id,
            batch_id: batch.id,
            configuration_id: batch.configuration_id,
            configuration_version: batch.configuration_version.unwrap_or_default(),
            triggered_by_id: &batch.created_by,
            runs: chunk.runs.clone(),
        },
    )
    .await?;
    let messages: Vec<BatchRunMessage> = inserted
        .iter()
        .map(|id| {
            BatchRunMessage(RunMessage {
                run_id: *id,
                merchant_id: batch.merchant_id,
            })
        })
        .collect();
    let pending = outbox::insert_many(&tx, &messages).await?;
    let errors = repo::insert_errors(&tx, batch.id, &chunk.errors).await?;
    repo::advance(
        &tx,
        batch.id,
        i64::try_from(chunk.end).unwrap_or(i64::MAX),
        i32::try_from(chunk.line).unwrap_or(i32::MAX),
        i32::try_from(inserted.len()).unwrap_or(i32::MAX),
        i32::try_from(errors).unwrap_or(i32::MAX),
        done,
    )
    .await?;
    if let Some(Some(error)) = &chunk.stop {
        repo::stop_fan_out(&tx, batch.id, error).await?;
        let stopped = RunError::new(
            run_errors::BATCH_STOPPED,
            "the batch stopped at a refused line (failFast) before this run started",
        );
        repo::fail_pending_runs(&tx, batch.id, &stopped.to_value()).await?;
    }
    tx.commit()
        .await
        .map_err(query_error("commit fan-out chunk"))?;
    Ok(Some(pending))
}

/// Ends the fan-out with the batch failed as a whole (`code`: nothing more will be read).
async fn stop(
    services: &Services,
    batch: &Batch,
    code: &str,
    message: &str,
) -> Result<FanOut, DependencyError> {
    tracing::warn!(batch_id = %batch.id, code, message, "batch fan-out stopped");
    let mut conn = connection(&services.db).await?;
    let tx = conn
        .transaction()
        .await
        .map_err(query_error("begin fan-out stop"))?;
    repo::stop_fan_out(&tx, batch.id, &json!({"code": code, "message": message})).await?;
    tx.commit()
        .await
        .map_err(query_error("commit fan-out stop"))?;
    drop(conn);
    super::finish_if_done(services, batch.id).await;
    Ok(FanOut::Done)
}

/// Stops a batch whose fan-out messages exhausted their deliveries (dead-lettered): it ends
/// `failed` (`FANOUT_FAILED`) once its runs have ended.
pub async fn give_up(services: &Services, message: &FanOutMessage) -> Result<(), DependencyError> {
    let Some(batch) = repo::find(&services.db, message.merchant_id, message.batch_id).await? else {
        return Ok(());
    };
    if batch.status == BatchStatus::Running && !batch.fan_out_done {
        stop(
            services,
            &batch,
            batch_errors::FANOUT_FAILED,
            "the fan-out failed on every delivery; lines after the cursor were not read",
        )
        .await?;
    }
    Ok(())
}

/// Queues the fan-out of `batch` again (the sweep, for a fan-out that went silent).
pub async fn requeue(
    services: &Services,
    batch_id: Uuid,
    merchant: docbundle_domain::MerchantId,
) -> Result<(), DependencyError> {
    let body = serde_json::to_string(&FanOutMessage {
        batch_id,
        merchant_id: merchant,
    })
    .map_err(|e| DependencyError::failed("batches", "encode fan-out", e))?;
    services.batch_queue.send_body(&body, None).await?;
    Ok(())
}
