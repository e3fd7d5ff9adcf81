//! Erasure on request, executed: the `erasures` job takes each pending erasure (one per
//! merchant at a time), finds the runs it matches, and under its merchant's retention lock (so
//! no hold is placed meanwhile) in one transaction
//! - finds the runs it matches now; waits (stays pending, says why) while one of them, not
//!   held, is still running or its batch has not ended;
//! - expires each unheld matched run by erasure (a failed one forgets its error's message) and
//!   releases its seed; erases every matched seed no run keeps any more;
//! - builds the receipt (what was erased, with each artefact's SHA-256; what was kept, and why),
//!   signs each part with the manifest key, stores it, and queues it in the merchant's
//!   transparency log;
//! - records each item, completes the erasure and forgets the value it matched; records the
//!   `run.expired` deliveries.
//!
//! After the commit the artefacts are deleted (every version) and the batches' seeds files
//! with their line errors, as retention does; a deletion that fails is retried by the next
//! retention pass.

use std::collections::BTreeSet;
use std::time::Instant;

use docbundle_domain::erasure::{
    ErasedArtefact, Item, Receipt, Request, CONFIRM_ABOVE_RUNS, MAX_RUNS,
};
use docbundle_domain::merkle;
use docbundle_domain::{MerchantId, RunStatus};
use docbundle_infra::db::erasures::{self as repo, Erasure, ItemRecord, ReceiptRecord, Selector};
use docbundle_infra::db::{connection, query_error, retention, transparency as log};
use docbundle_infra::error::DependencyError;
use uuid::Uuid;

use crate::Services;

/// Erasures one pass executes at most.
const PER_PASS: i64 = 10;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErasuresReport {
    pub completed: usize,
    /// Still waiting (a run in flight, or a dependency that failed).
    pub waiting: usize,
    /// Matched more runs than confirmed, or more than one erasure may take.
    pub cancelled: usize,
    pub runs_erased: usize,
}

/// Executes the pending erasures, oldest first.
pub async fn pass(services: &Services) -> Result<ErasuresReport, DependencyError> {
    let started = Instant::now();
    let mut report = ErasuresReport::default();
    // Least recently tried first: one that waits does not hold the others back.
    for erasure in repo::pending(&services.db, PER_PASS).await? {
        match execute(services, &erasure).await {
            Ok(Executed::Completed { runs_erased }) => {
                report.completed += 1;
                report.runs_erased += runs_erased;
            }
            Ok(Executed::AlreadyDone) => {}
            Ok(Executed::Cancelled(why)) => {
                tracing::warn!(erasure_id = %erasure.id, reason = %why, "erasure cancelled");
                report.cancelled += 1;
            }
            Ok(Executed::Waiting(why)) => {
                tracing::info!(erasure_id = %erasure.id, waiting_for = %why, "erasure waits");
                repo::set_waiting(&services.db, erasure.id, &why).await?;
                report.waiting += 1;
            }
            Err(e) => {
                tracing::error!(erasure_id = %erasure.id, error = %e, "erasure failed; tried again next pass");
                let why = format!("{} failed; tried again within a minute", e.dependency);
                repo::set_waiting(&services.db, erasure.id, &why).await?;
                report.waiting += 1;
            }
        }
    }
    // What the erasures expired goes now, not at the next retention pass.
    let mut purged = crate::retention::RetentionReport::default();
    let limit = services.settings.retention_pass_runs;
    crate::retention::purge_expired(services, limit, started, &mut purged).await?;
    crate::retention::purge_batches(services, limit, started, &mut purged).await?;
    Ok(report)
}

enum Executed {
    Completed {
        runs_erased: usize,
    },
    Waiting(String),
    /// Another pass executed it meanwhile.
    AlreadyDone,
    Cancelled(String),
}

async fn execute(services: &Services, erasure: &Erasure) -> Result<Executed, DependencyError> {
    let merchant = erasure.merchant_id;
    let Some(selector) = erasure.selector() else {
        return Ok(Executed::Waiting("its request cannot be read".to_owned()));
    };
    // The runs it matches, read before any lock is taken (a match reads every live seed of
    // the merchant); under the merchant's lock each is looked at again (held now? ended?).
    let mut matched = {
        let conn = connection(&services.db).await?;
        repo::matching(&**conn, merchant, &selector).await?
    };
    let mut conn = connection(&services.db).await?;
    let tx = conn.transaction().await.map_err(query_error("begin"))?;
    retention::lock_merchant(&tx, merchant, true).await?;
    if !repo::still_pending(&tx, erasure.id).await? {
        return Ok(Executed::AlreadyDone);
    }
    let ids: Vec<Uuid> = matched.iter().map(|m| m.run_id).collect();
    let now: std::collections::HashMap<Uuid, (RunStatus, bool)> = repo::recheck(&*tx, &ids)
        .await?
        .into_iter()
        .map(|(id, status, held)| (id, (status, held)))
        .collect();
    for m in &mut matched {
        if let Some((status, held)) = now.get(&m.run_id) {
            m.status = *status;
            m.held = *held;
        }
    }
    let allowed = erasure
        .confirmed_runs
        .map_or(CONFIRM_ABOVE_RUNS, |n| n as usize)
        .clamp(CONFIRM_ABOVE_RUNS, MAX_RUNS);
    if matched.len() > allowed {
        let why = format!(
            "it now matches {} runs, more than the {allowed} it may erase: request it again",
            matched.len()
        );
        repo::cancel(&tx, erasure.id, &why).await?;
        tx.commit().await.map_err(query_error("commit erasure"))?;
        return Ok(Executed::Cancelled(why));
    }
    if let Some(busy) = matched.iter().find(|m| !m.held && !m.status.has_ended()) {
        return Ok(Executed::Waiting(format!(
            "run {} is still {}",
            busy.run_id, busy.status
        )));
    }
    if let Some(busy) = matched.iter().find(|m| !m.held && !m.batch_ended) {
        return Ok(Executed::Waiting(format!(
            "the batch of run {} has not ended",
            busy.run_id
        )));
    }
    let (kept, erased): (Vec<_>, Vec<_>) = matched.iter().partition(|m| m.held);
    let erased_ids: Vec<Uuid> = erased.iter().map(|m| m.run_id).collect();
    let proofs = repo::proofs_of(&tx, &erased_ids).await?;
    let expired = repo::erase_runs(&tx, &erased_ids).await?;
    let batches: Vec<Uuid> = erased.iter().filter_map(|m| m.batch_id).collect();
    retention::batches_due(&tx, &batches).await?;
    let seeds: Vec<String> = matched
        .iter()
        .map(|m| m.seed_hash.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let merchants = vec![merchant.as_uuid(); seeds.len()];
    // Seeds erased before (by retention, or another erasure) are neither erased nor kept here.
    let (live, _) = retention::erase_unkept_seeds(&tx, &merchants, &seeds).await?;
    let still_kept = repo::kept_seeds(&tx, merchant, &seeds).await?;
    let still_kept_hashes: std::collections::HashSet<&str> =
        still_kept.iter().map(|(h, _, _)| h.as_str()).collect();
    let erased_now: Vec<String> = live
        .into_iter()
        .map(|(_, hash)| hash)
        .filter(|h| !still_kept_hashes.contains(h.as_str()))
        .collect();

    let mut items: Vec<Item> = proofs
        .into_iter()
        .map(|(run_id, manifest_sha256, artefacts)| {
            let run = erased.iter().find(|m| m.run_id == run_id);
            Item::RunErased {
                run_id,
                seed_hash: run.map(|m| m.seed_hash.clone()).unwrap_or_default(),
                manifest_sha256,
                artefacts: artefacts
                    .into_iter()
                    .map(|(name, sha256)| ErasedArtefact { name, sha256 })
                    .collect(),
                already_expired: run.is_some_and(|m| m.status == RunStatus::Expired),
            }
        })
        .collect();
    items.extend(kept.iter().map(|m| Item::RunKept {
        run_id: m.run_id,
        reason: "a legal hold keeps it".to_owned(),
    }));
    items.extend(erased_now.iter().map(|h| Item::SeedErased {
        seed_hash: h.clone(),
    }));
    items.extend(still_kept.iter().map(|(hash, runs, held)| Item::SeedKept {
        seed_hash: hash.clone(),
        reason: if *held {
            "a run a legal hold keeps uses it".to_owned()
        } else {
            "runs outside this erasure still keep it".to_owned()
        },
        run_ids: runs.clone(),
    }));

    let receipt = Receipt {
        erasure_id: erasure.id,
        merchant_id: merchant,
        request: match &selector {
            Selector::Run(id) => Request::Run { run_id: *id },
            Selector::Seed(hash) => Request::Seed {
                seed_hash: hash.clone(),
            },
            Selector::Match { pointer, value, .. } => Request::Match {
                pointer: pointer.clone(),
                value_given: value.is_some(),
            },
        },
        requested_by: erasure.requested_by.clone(),
        requested_at: erasure.created_at,
        erased_at: chrono::Utc::now(),
        items,
    };
    let parts = receipt
        .parts()
        .map_err(|e| DependencyError::failed("erasure", "encode receipt", e))?;
    for part in &parts {
        let bytes = part
            .to_bytes()
            .map_err(|e| DependencyError::failed("erasure", "encode receipt", e))?;
        let signature = services.vault.sign(&bytes).await?;
        let leaf = merkle::leaf_hash(&bytes);
        let id = Uuid::new_v4();
        // Named by its entry's id: a part once stored is never written over.
        let key = docbundle_domain::erasure::receipt_key(merchant, erasure.id, id);
        let stored = services.store.put(&key, bytes, "application/json").await?;
        let record = ReceiptRecord {
            id,
            part: part.part as i32,
            parts: part.parts as i32,
            key,
            sha256: stored.sha256,
            signature: signature.signature,
            key_id: services.vault.key_id(signature.key_version),
        };
        repo::record_receipt(&tx, merchant, erasure.id, &record).await?;
        log::enqueue(&tx, merchant, record.id, &leaf).await?;
    }

    let outcomes: Vec<ItemRecord> = matched
        .iter()
        .map(|m| ItemRecord {
            run_id: m.run_id,
            seed_hash: m.seed_hash.clone(),
            outcome: match (m.held, m.status) {
                (true, _) => "kept_held",
                (false, RunStatus::Expired) => "already_expired",
                (false, _) => "erased",
            }
            .to_owned(),
        })
        .collect();
    let seeds_kept = still_kept.len() as i32;
    repo::complete(
        &tx,
        erasure.id,
        &outcomes,
        erased_now.len() as i32,
        seeds_kept,
    )
    .await?;
    let deliveries = crate::runs::expired_deliveries(&tx, &expired).await?;
    tx.commit().await.map_err(query_error("commit erasure"))?;
    drop(conn);
    crate::runs::publish(services, &deliveries).await;
    tracing::info!(
        erasure_id = %erasure.id,
        %merchant,
        runs_erased = erased_ids.len(),
        runs_kept = kept.len(),
        receipt_parts = parts.len(),
        "erasure executed"
    );
    Ok(Executed::Completed {
        runs_erased: erased_ids.len(),
    })
}

/// What an erasure would do if executed now: the runs it matches (held ones kept), and the
/// distinct seeds they use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    /// Runs matched, erased or kept.
    pub runs: usize,
    /// Of those, kept by a legal hold.
    pub held: usize,
    /// Distinct seeds the matched runs use.
    pub seeds: usize,
    /// The matched runs (the first 1,000), oldest first.
    pub items: Vec<repo::Matched>,
}

/// The runs `selector` matches now, for a dry run or the confirmation of an execution.
pub async fn preview(
    services: &Services,
    merchant: MerchantId,
    selector: &Selector,
) -> Result<Preview, DependencyError> {
    let conn = connection(&services.db).await?;
    let matched = repo::matching(&**conn, merchant, selector).await?;
    let seeds: BTreeSet<&str> = matched.iter().map(|m| m.seed_hash.as_str()).collect();
    Ok(Preview {
        runs: matched.len(),
        held: matched.iter().filter(|m| m.held).count(),
        seeds: seeds.len(),
        items: matched.iter().take(1_000).cloned().collect(),
    })
}
