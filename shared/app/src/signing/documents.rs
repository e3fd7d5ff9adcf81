//! Signing a run's PDFs as its merchant, a step of producing the run: each PDF document whose
//! configuration asks for a signature gets a PAdES baseline signature made with the
//! merchant's key in Vault (only a digest goes there) and, for `B-T`, a time-stamp from the
//! TSA. The first signature of a merchant creates its key and has Vault's PKI engine certify
//! it (the subject is the merchant's name). A missing or unreachable Vault or TSA is a
//! transient fault (the run retries); a refusal is a failed run.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use docbundle_domain::configuration::DocumentSpec;
use docbundle_domain::digest::sha256_hex;
use docbundle_domain::manifest::ArtefactSignature;
use docbundle_domain::run_errors::{self, RunError};
use docbundle_domain::signature::{SignatureLevel, SignatureSpec};
use docbundle_domain::MerchantId;
use docbundle_infra::db::merchants;
use docbundle_infra::error::DependencyError;
use docbundle_infra::metrics::{emit, Unit};
use docbundle_infra::secrets::DocumentKey;
use docbundle_infra::tsa::StampError;
use docbundle_pades::{dss, tsp, Details};
use docbundle_render::bundle::{self, RenderedArtefact, ARCHIVE_NAME};

use crate::Services;

/// Done, failed for good, or a transient fault (as the run's other steps).
type Step<T> = Result<Result<T, RunError>, DependencyError>;

/// A rendered file as it is stored: signed when its document asked for it.
pub(crate) struct Final {
    pub artefact: RenderedArtefact,
    pub render_sha256: Option<String>,
    pub signature: Option<ArtefactSignature>,
}

/// Signs every PDF whose document asks for it; rebuilds `bundle.zip` around the signed files.
pub(crate) async fn sign_artefacts(
    services: &Services,
    merchant: MerchantId,
    run: uuid::Uuid,
    documents: &[DocumentSpec],
    rendered: Vec<RenderedArtefact>,
) -> Step<Vec<Final>> {
    let wanted: HashMap<&str, &SignatureSpec> = documents
        .iter()
        .filter_map(|d| Some((d.name.as_str(), d.signature.as_ref()?)))
        .collect();
    if wanted.is_empty() {
        return Ok(Ok(rendered.into_iter().map(unsigned).collect()));
    }
    let key = match key_for(services, merchant).await? {
        Ok(key) => key,
        Err(failure) => return Ok(Err(failure)),
    };
    let mut finals = Vec::with_capacity(rendered.len());
    for artefact in rendered {
        let Some(spec) = wanted.get(artefact.name.as_str()) else {
            finals.push(unsigned(artefact));
            continue;
        };
        match sign_one(services, (merchant, run), &key, spec, artefact).await? {
            Ok(signed) => finals.push(signed),
            Err(failure) => return Ok(Err(failure)),
        }
    }
    Ok(rearchive(finals))
}

fn unsigned(artefact: RenderedArtefact) -> Final {
    Final {
        artefact,
        render_sha256: None,
        signature: None,
    }
}

/// `bundle.zip` holds the files as stored, so it is built again around the signed PDFs; its
/// render digest stays the unsigned archive's.
fn rearchive(mut finals: Vec<Final>) -> Result<Vec<Final>, RunError> {
    let Some(at) = finals.iter().position(|f| f.artefact.name == ARCHIVE_NAME) else {
        return Ok(finals);
    };
    let members: Vec<RenderedArtefact> = finals
        .iter()
        .filter(|f| f.artefact.name != ARCHIVE_NAME)
        .map(|f| f.artefact.clone())
        .collect();
    let bytes = bundle::archive(&members).map_err(|e| {
        RunError::new(
            run_errors::MANIFEST_ERROR,
            format!("the archive cannot be built: {e}"),
        )
    })?;
    let archive = &mut finals[at];
    archive.render_sha256 = Some(sha256_hex(&archive.artefact.bytes));
    archive.artefact.bytes = bytes;
    Ok(finals)
}

/// The merchant's key with its chain: created and certified on first use.
async fn key_for(services: &Services, merchant: MerchantId) -> Step<DocumentKey> {
    if let Some(key) = services.signing_keys.get(merchant) {
        return Ok(Ok(key));
    }
    let vault = &services.vault;
    let key = match super::existing_or_new(services, merchant).await? {
        key if !key.chain.is_empty() => key,
        _ => {
            let Some(found) = merchants::find(&services.db, merchant.as_uuid()).await? else {
                return Ok(Err(RunError::new(
                    run_errors::SIGNATURE_FAILED,
                    "the run's merchant no longer exists",
                )));
            };
            let csr = vault.document_key_csr(merchant).await?;
            let Some(chain) = vault.issue_document_certificate(&csr, &found.name).await? else {
                return Ok(Err(RunError::new(
                    run_errors::SIGNING_CERTIFICATE_MISSING,
                    "the merchant's signing key has no certificate: import its chain \
                     (the signing CA is external)",
                )));
            };
            vault.set_document_certificate(merchant, &chain).await?;
            match vault.document_key(merchant).await? {
                Some(key) if !key.chain.is_empty() => key,
                _ => {
                    return Err(DependencyError::failed(
                        "vault",
                        "read document key",
                        "the certificate just stored is not there",
                    ))
                }
            }
        }
    };
    services.signing_keys.put(merchant, key.clone());
    Ok(Ok(key))
}

/// One PDF signed: placeholder, Vault's signature of the attributes' digest, the TSA's token.
async fn sign_one(
    services: &Services,
    (merchant, run): (MerchantId, uuid::Uuid),
    key: &DocumentKey,
    spec: &SignatureSpec,
    artefact: RenderedArtefact,
) -> Step<Final> {
    let started = Instant::now();
    let mut waited = Duration::ZERO;
    let name = artefact.name.clone();
    let signed = sign_timed(services, merchant, key, spec, artefact, &mut waited).await;
    if let Ok(Ok(_)) = &signed {
        let total = started.elapsed();
        emit(
            &[("Level", spec.level.as_str())],
            &[
                (
                    "SigningDuration",
                    total.as_secs_f64() * 1e3,
                    Unit::Milliseconds,
                ),
                (
                    "SigningOwnDuration",
                    total.saturating_sub(waited).as_secs_f64() * 1e3,
                    Unit::Milliseconds,
                ),
            ],
            &[
                ("merchantId", serde_json::json!(merchant)),
                ("runId", serde_json::json!(run)),
                ("document", serde_json::json!(name)),
            ],
        );
    }
    signed
}

/// [`sign_one`], adding the time spent waiting for Vault, the TSA and CRLs to `waited`.
async fn sign_timed(
    services: &Services,
    merchant: MerchantId,
    key: &DocumentKey,
    spec: &SignatureSpec,
    mut artefact: RenderedArtefact,
    waited: &mut Duration,
) -> Step<Final> {
    let failed = |message: String| {
        Ok(Err(RunError {
            document: Some(artefact.name.clone()),
            ..RunError::new(
                run_errors::SIGNATURE_FAILED,
                format!("document `{}`: {message}", artefact.name),
            )
        }))
    };
    let details = Details {
        reason: spec.reason.clone(),
        location: spec.location.clone(),
        contact_info: spec.contact_info.clone(),
        signing_time: Some(Utc::now()),
    };
    let prepared = match docbundle_pades::prepare(
        &artefact.bytes,
        &key.chain,
        &details,
        docbundle_pades::DEFAULT_RESERVE,
    ) {
        Ok(prepared) => prepared,
        Err(e) => return failed(e.to_string()),
    };
    let wait = Instant::now();
    let signature = services
        .vault
        .sign_document_digest(merchant, &prepared.digest())
        .await?;
    *waited += wait.elapsed();
    if signature.version != key.version {
        // Rotated since the chain was read: read it again on the retry.
        services.signing_keys.forget(merchant);
        return Err(DependencyError::failed(
            "vault",
            "sign document digest",
            "the signing key was rotated while signing",
        ));
    }
    let stamp = if spec.level.timestamped() {
        let Some(tsa) = &services.timestamper else {
            return failed(format!(
                "a {} signature needs a time-stamping authority, and none is configured",
                spec.level.as_str()
            ));
        };
        let wait = Instant::now();
        let stamped = tsa.stamp(&tsp::signature_imprint(&signature.der)).await;
        *waited += wait.elapsed();
        match stamped {
            Ok(stamp) => Some(stamp),
            Err(StampError::Unavailable(e)) => return Err(e),
            Err(StampError::Refused(reason)) => return failed(reason),
        }
    } else {
        None
    };
    let record = ArtefactSignature {
        level: spec.level,
        signer: prepared.signer(),
        certificate_sha256: prepared.certificate_sha256(),
        timestamp: stamp.as_ref().and_then(|s| {
            DateTime::<Utc>::from_timestamp(s.time.as_secs() as i64, s.time.subsec_nanos())
        }),
    };
    let render_sha256 = sha256_hex(&artefact.bytes);
    let signed = match prepared.finish(&signature.der, stamp.as_ref().map(|s| s.token.as_slice())) {
        Ok(signed) => signed,
        Err(e) => return failed(e.to_string()),
    };
    artefact.bytes = match (spec.level, &stamp) {
        (SignatureLevel::BLt, Some(stamp)) => {
            let wait = Instant::now();
            let (certificates, crls) = validation_data(services, key, &stamp.token).await?;
            *waited += wait.elapsed();
            match dss::append_dss(&signed, &certificates, &crls) {
                Ok(with_dss) => with_dss,
                Err(e) => return failed(e.to_string()),
            }
        }
        _ => signed,
    };
    Ok(Ok(Final {
        artefact,
        render_sha256: Some(render_sha256),
        signature: Some(record),
    }))
}

/// For `B-LT`: every certificate of the signer's chain and of the TSA's, and the CRL of each
/// certificate that names one.
async fn validation_data(
    services: &Services,
    key: &DocumentKey,
    token: &[u8],
) -> Result<(Vec<Vec<u8>>, Vec<Vec<u8>>), DependencyError> {
    let mut certificates = key.chain.clone();
    certificates.extend(dss::token_certificates(token));
    let mut urls: Vec<String> = certificates.iter().flat_map(|c| dss::crl_urls(c)).collect();
    urls.sort();
    urls.dedup();
    let mut crls = Vec::with_capacity(urls.len());
    for url in urls {
        crls.push(services.revocation.crl(&url).await?);
    }
    Ok((certificates, crls))
}
