//! Cosigning by witnesses (C2SP `tlog-witness`): each log's newest checkpoint is submitted to
//! every configured witness that has not cosigned it, with a consistency proof from the size
//! that witness last cosigned, so one submission brings a witness that was away up to date.
//! A `409` (the witness knows another size) is answered once more from the size it gave.
//! The cosignature is checked (the witness's name, key and signature over this checkpoint)
//! before it is appended to the checkpoint, whose published copy and proofs then carry it.
//!
//! A witness that is down, slow, refuses or answers garbage costs at most its timeout, its
//! reason is recorded on the log ([`repo::witness_failed`]) and the log waits out a back-off
//! before it is offered to that witness again; the log itself never waits for a witness: a
//! checkpoint short of the quorum is counted ([`below_quorum`]) for the alarm.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;

use docbundle_domain::witness::{self, Witness};
use docbundle_domain::{merkle, MerchantId};
use docbundle_infra::db::transparency::{self as repo, Uncosigned};
use docbundle_infra::error::DependencyError;
use docbundle_infra::witness::Answer;

use crate::Services;

/// What one pass of cosigning did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CosignReport {
    pub cosigned: usize,
    pub failed: usize,
    /// Not offered in this pass (its time budget spent): offered first on the next.
    pub deferred: usize,
}

/// Submissions to one witness at once: a pass over many merchants' logs is not a queue of
/// round trips.
const AT_ONCE: usize = 8;
/// A pass starts no submission after this long, whatever the number of witnesses (the
/// scheduler's whole pass has 60 s; one submission takes at most two timeouts, a `409` and
/// the answer to it): the logs not reached are offered first on the next pass.
const PASS_BUDGET: Duration = Duration::from_secs(15);

/// Offers every log's newest checkpoint to each witness that has not cosigned it, a few at a
/// time. A witness that cannot be reached for one log is not tried for the others in this
/// pass (each records why and waits out its back-off), so a witness that is down costs a pass
/// one timeout.
pub async fn cosign(services: &Services) -> Result<CosignReport, DependencyError> {
    let mut report = CosignReport::default();
    let started = Instant::now();
    for witness in &services.settings.witnesses.list {
        let logs = repo::uncosigned(&services.db, &witness.name).await?;
        let unreachable: Mutex<Option<String>> = Mutex::new(None);
        let outcomes: Vec<(Uncosigned, Option<Result<(), Failure>>)> = futures::stream::iter(logs)
            .map(|log| {
                let unreachable = &unreachable;
                async move {
                    if started.elapsed() > PASS_BUDGET {
                        return (log, None);
                    }
                    let known = unreachable.lock().map(|u| u.clone()).unwrap_or_default();
                    let outcome = match known {
                        Some(why) => Err(Failure::Unreachable(format!("not tried: {why}"))),
                        None => submit(services, witness, &log).await,
                    };
                    if let (Err(Failure::Unreachable(why)), Ok(mut first)) =
                        (&outcome, unreachable.lock())
                    {
                        first.get_or_insert_with(|| why.clone());
                    }
                    (log, Some(outcome))
                }
            })
            .buffer_unordered(AT_ONCE)
            .collect()
            .await;
        for (log, outcome) in outcomes {
            let why = match outcome {
                None => {
                    report.deferred += 1;
                    continue;
                }
                Some(Ok(())) => {
                    report.cosigned += 1;
                    continue;
                }
                Some(Err(Failure::Unreachable(why) | Failure::Refused(why))) => why,
            };
            report.failed += 1;
            tracing::warn!(
                merchant = %log.merchant, witness = %witness.name, size = log.tree_size,
                error = %why, "checkpoint not cosigned"
            );
            repo::witness_failed(&services.db, log.merchant, &witness.name, &why).await?;
        }
    }
    Ok(report)
}

/// Why a submission failed, in words for `last_error`.
enum Failure {
    /// The witness did not answer (connection, timeout): it is not tried again this pass.
    Unreachable(String),
    /// It answered, but not with a cosignature of this checkpoint (or the log's own data
    /// could not be read).
    Refused(String),
}

/// How many logs' newest checkpoint has fewer cosignatures than the quorum (0 without
/// witnesses).
pub async fn below_quorum(services: &Services) -> Result<i64, DependencyError> {
    let quorum = services.settings.witnesses.quorum;
    if quorum == 0 {
        return Ok(0);
    }
    repo::below_quorum(&services.db, i32::try_from(quorum).unwrap_or(i32::MAX)).await
}

/// One submission (and at most one more after a `409`).
async fn submit(services: &Services, witness: &Witness, log: &Uncosigned) -> Result<(), Failure> {
    let refused = |e: DependencyError| Failure::Refused(e.to_string());
    let mut old = log.known;
    for _ in 0..2 {
        if old > log.tree_size {
            // The witness has cosigned more of this log than it holds: a history it was shown
            // that this one does not continue (or a log restored from an old backup).
            return Err(Failure::Refused(format!(
                "the witness has cosigned size {old}, beyond this log's newest checkpoint ({})",
                log.tree_size
            )));
        }
        let proof = proof(services, log.merchant, old, log.tree_size)
            .await
            .map_err(refused)?;
        let body = witness::add_checkpoint_body(old, &proof, &log.note);
        let answer = services
            .witness_client
            .add_checkpoint(witness, body)
            .await
            .map_err(|e| Failure::Unreachable(e.to_string()))?;
        match answer {
            Answer::Cosigned(lines) => {
                let text = log.note.split_once("\n\n").map_or("", |(text, _)| text);
                let line = witness::cosignature_line(&lines, witness, &format!("{text}\n"))
                    .map_err(|e| Failure::Refused(format!("the witness's answer: {e}")))?;
                return repo::record_cosignature(
                    &services.db,
                    log.merchant,
                    &witness.name,
                    log.tree_size,
                    &line,
                )
                .await
                .map_err(refused);
            }
            Answer::Conflict(known) if known != old => {
                repo::witness_knows(&services.db, log.merchant, &witness.name, known)
                    .await
                    .map_err(refused)?;
                old = known;
            }
            Answer::Conflict(known) => {
                return Err(Failure::Refused(format!(
                    "HTTP 409 with the size sent ({known})"
                )));
            }
            Answer::Refused(why) => return Err(Failure::Refused(why)),
        }
    }
    Err(Failure::Refused(format!(
        "HTTP 409 twice; the witness now says size {old}"
    )))
}

/// The consistency proof from `old` to `size` (none from 0 or to the same size).
async fn proof(
    services: &Services,
    merchant: MerchantId,
    old: u64,
    size: u64,
) -> Result<Vec<merkle::Hash>, DependencyError> {
    if old == 0 || old >= size {
        return Ok(Vec::new());
    }
    repo::range_hashes(
        &services.db,
        merchant,
        &merkle::consistency_ranges(old, size),
    )
    .await
}
