//! `docbundle verify`: a downloaded bundle checked offline, step by step: `manifest.sig` over
//! `manifest.json`, every artefact's SHA-256 and size, the bundle digest, then (when the bundle
//! has `transparency.json`) its inclusion in the signed log, and with `--since` that the log
//! only grew since a checkpoint kept earlier. The first problem ends the command with
//! [`crate::VERIFICATION_FAILED`].

use std::io::Read;
use std::path::{Path, PathBuf};

use docbundle::app::transparency::Inclusion;
use docbundle::domain::checkpoint::Parsed;
use docbundle::domain::keys::Jwks;
use docbundle::domain::manifest::{self, Manifest};
use docbundle::http::answers::{ConsistencyView, TrustRoots};
use sha2::{Digest, Sha256};

use crate::api::Client;
use crate::bundle::{
    mismatch, safe_name, Signature, MANIFEST, MAX_MANIFEST_BYTES, SIGNATURE, TIMESTAMP,
    TRANSPARENCY,
};
use crate::folder;

/// SHA-256 and size of a file, read in chunks.
fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok((hex::encode(hasher.finalize()), size));
        }
        size += n as u64;
        hasher.update(&buffer[..n]);
    }
}

/// What `verify` checks beyond the bundle itself.
pub struct LogCheck<'a> {
    /// An older checkpoint the user kept, and the client to fetch the consistency proof.
    pub since: Option<(String, &'a Client)>,
}

/// What a bundle is verified against: the manifest-signing keys (a JWKS), for signed PDFs the
/// trust roots (none: their signatures are listed, not checked), and the witnesses whose
/// cosignatures the log's checkpoint must carry.
pub struct Trusted<'a> {
    pub keys: Jwks,
    pub roots: Option<&'a TrustRoots>,
    pub witnesses: Witnesses,
}

/// `--witness-key` (each a witness's verifier key) and `--quorum`: how many of them must
/// have cosigned the checkpoint a bundle is proven against.
#[derive(Debug, Clone, Default)]
pub struct Witnesses {
    pub keys: Vec<(String, [u8; 4], [u8; 32])>,
    pub quorum: usize,
}

impl Witnesses {
    /// From the command line: every key parsed; the quorum defaults to all of them.
    pub fn from_args(keys: &[String], quorum: Option<usize>) -> anyhow::Result<Self> {
        let keys = keys
            .iter()
            .map(|k| {
                docbundle::domain::witness::parse_cosigner_key(k)
                    .map_err(|e| anyhow::anyhow!("--witness-key {k}: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let quorum = quorum.unwrap_or(keys.len());
        if quorum > keys.len() {
            anyhow::bail!(
                "--quorum {quorum} needs at least {quorum} --witness-key (given: {})",
                keys.len()
            );
        }
        Ok(Witnesses { keys, quorum })
    }

    /// Checks that at least `quorum` of the witnesses cosigned `checkpoint` (the one `what`
    /// holds, for the message).
    pub fn check(&self, checkpoint: &Parsed, what: &str) -> anyhow::Result<()> {
        if self.keys.is_empty() {
            return Ok(());
        }
        let cosigners = docbundle::domain::witness::cosigners(checkpoint, &self.keys)
            .map_err(|e| mismatch(format!("{what}: a witness's cosignature: {e}")))?;
        if cosigners.len() < self.quorum {
            return Err(mismatch(format!(
                "{what}: the checkpoint of size {} is cosigned by {} of the {} witnesses \
                 required{}: a history no witness vouched for",
                checkpoint.size,
                cosigners.len(),
                self.quorum,
                if cosigners.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", cosigners.join(", "))
                }
            )));
        }
        println!(
            "cosigned by {} of the witnesses given (quorum {}): {}",
            cosigners.len(),
            self.quorum,
            cosigners.join(", ")
        );
        Ok(())
    }
}

/// Verifies the bundle in `dir` against `trusted`; the first problem is the error.
pub async fn verify(dir: &Path, trusted: &Trusted<'_>, log: LogCheck<'_>) -> anyhow::Result<()> {
    let keys = &trusted.keys;
    let (bytes, signature, manifest) = signed_manifest(dir, keys)?;
    check_artefacts(dir, &manifest)?;
    check_signed_pdfs(dir, &manifest, trusted.roots)?;
    check_einvoices(dir, &manifest)?;
    println!(
        "verified run {}: {} artefacts, bundle digest {}, signed by {}",
        manifest.run_id,
        manifest.artefacts.len(),
        manifest.bundle_digest,
        signature.key_id
    );
    check_timestamp(dir, &bytes)?;
    let path = dir.join(TRANSPARENCY);
    if !path.is_file() {
        if log.since.is_some() {
            return Err(mismatch(format!(
                "{TRANSPARENCY}: missing, so --since has nothing to check against"
            )));
        }
        if !trusted.witnesses.keys.is_empty() {
            return Err(mismatch(format!(
                "{TRANSPARENCY}: missing, so no witness's cosignature can be checked"
            )));
        }
        println!("not checked against the transparency log: the bundle has no {TRANSPARENCY}");
        return Ok(());
    }
    let checkpoint = check_inclusion(dir, &bytes, &manifest, keys)?;
    trusted.witnesses.check(&checkpoint, TRANSPARENCY)?;
    if let Some((kept, client)) = log.since {
        check_since(&kept, client, &checkpoint, manifest.merchant_id, keys).await?;
    }
    Ok(())
}

/// Every e-invoice the manifest lists: a PDF's embedded `factur-x.xml` (or the XML document
/// itself) is the XML whose SHA-256 the manifest names, and it passes its profile's rules as
/// the service checks them.
fn check_einvoices(dir: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    for artefact in &manifest.artefacts {
        let Some(einvoice) = &artefact.einvoice else {
            continue;
        };
        let name = &artefact.name;
        let bytes = read(dir, name, artefact.size)?;
        let xml = if artefact.format == "pdf" {
            docbundle_pades::metadata::embedded_file(&bytes, docbundle::render::einvoice::FILE_NAME)
                .map_err(|e| mismatch(format!("{name}: {e}")))?
                .ok_or_else(|| mismatch(format!("{name}: no embedded factur-x.xml")))?
        } else {
            bytes
        };
        let sha256 = docbundle::domain::digest::sha256_hex(&xml);
        if sha256 != einvoice.xml_sha256 {
            return Err(mismatch(format!(
                "{name}: its XML has SHA-256 {sha256}, the manifest names {}",
                einvoice.xml_sha256
            )));
        }
        docbundle::render::einvoice::check_xml(einvoice.profile, &xml)
            .map_err(|e| mismatch(format!("{name}: {}", e.message)))?;
        let label = einvoice.profile.label();
        let article = if label.starts_with('X') { "an" } else { "a" };
        println!(
            "{name}: {article} {label} invoice; its XML is the manifest's ({}) and passes the profile's rules",
            &sha256[..16]
        );
    }
    Ok(())
}

/// Every PDF the manifest says is signed: its signature, chain and time-stamp hold against
/// `roots` (checked already: its bytes are the manifest's).
fn check_signed_pdfs(
    dir: &Path,
    manifest: &Manifest,
    roots: Option<&TrustRoots>,
) -> anyhow::Result<()> {
    let der = |pems: &[String]| -> Vec<Vec<u8>> {
        pems.iter()
            .flat_map(|pem| docbundle::infra::secrets::pem_chain(pem).unwrap_or_default())
            .collect()
    };
    for artefact in manifest.artefacts.iter().filter(|a| a.signature.is_some()) {
        let name = &artefact.name;
        let Some(roots) = roots else {
            println!("{name}: signed; its signature is not checked without --trust-roots");
            continue;
        };
        let pdf = read(dir, name, artefact.size)?;
        let verified = docbundle_pades::verify::verify(
            &pdf,
            &der(&roots.document_signing),
            &der(&roots.time_stamping),
        )
        .map_err(|e| mismatch(format!("{name}: signature: {e}")))?;
        let stamped = match &verified.timestamp {
            Some((at, tsa)) => {
                let at = chrono::DateTime::<chrono::Utc>::from_timestamp(at.as_secs() as i64, 0)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default();
                format!(", time-stamped {at} by {tsa}")
            }
            None => String::new(),
        };
        println!(
            "{name}: signed by {} (chain to {}){stamped}{}",
            verified.signer,
            verified.root,
            if verified.long_term {
                ", with validation data"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// `manifest.tsr`, when the bundle has one: a granted time-stamp of exactly these manifest
/// bytes; prints the TSA's time. (The TSA's own signature is checked with its chain, e.g.
/// `openssl ts -verify`, as docs/signatures.md shows.) A batch's run has none of its own: the
/// batch's time-stamp covers it ([`crate::batch::verify`]).
fn check_timestamp(dir: &Path, manifest: &[u8]) -> anyhow::Result<()> {
    if let Some(at) = time_stamped(dir, TIMESTAMP, manifest)? {
        println!("{TIMESTAMP}: the manifest was time-stamped at {at}");
    }
    Ok(())
}

/// When `dir` holds the TSA's answer `name`: the time it grants to exactly `covered`'s
/// SHA-256 (a mismatch when it is not granted, or for other bytes).
pub fn time_stamped(dir: &Path, name: &str, covered: &[u8]) -> anyhow::Result<Option<String>> {
    if !dir.join(name).is_file() {
        return Ok(None);
    }
    let answer = read(dir, name, 256 * 1024)?;
    let digest: [u8; 32] = Sha256::digest(covered).into();
    let stamp = docbundle_pades::tsp::read_answer(&answer, &digest)
        .map_err(|e| mismatch(format!("{name}: {e}")))?;
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp(
        stamp.time.as_secs() as i64,
        stamp.time.subsec_nanos(),
    )
    .map(|t| t.to_rfc3339())
    .unwrap_or_else(|| "?".to_owned());
    Ok(Some(at))
}

/// The bundle's file `name`, at most `cap` bytes; a missing one is a mismatch.
fn read(dir: &Path, name: &str, cap: u64) -> anyhow::Result<Vec<u8>> {
    let path: PathBuf = dir.join(name);
    if !path.is_file() {
        return Err(mismatch(format!("{}: missing", path.display())));
    }
    folder::read_capped(&path, cap, "the limit")
}

/// `manifest.json`'s bytes, `manifest.sig` and the manifest they hold, once the signature
/// holds and the schema is the one this build reads.
fn signed_manifest(dir: &Path, keys: &Jwks) -> anyhow::Result<(Vec<u8>, Signature, Manifest)> {
    let bytes = read(dir, MANIFEST, MAX_MANIFEST_BYTES)?;
    let signature: Signature = serde_json::from_slice(&read(dir, SIGNATURE, 64 * 1024)?)
        .map_err(|e| mismatch(format!("{SIGNATURE}: unreadable ({e})")))?;
    docbundle_local::verify::verify_manifest(&bytes, &signature.signature, &signature.key_id, keys)
        .map_err(|e| mismatch(format!("{MANIFEST}: {e}")))?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| mismatch(format!("{MANIFEST}: signed, but not a manifest ({e})")))?;
    if manifest.schema != manifest::SCHEMA {
        return Err(mismatch(format!(
            "{MANIFEST}: schema `{}`, expected `{}`",
            manifest.schema,
            manifest::SCHEMA
        )));
    }
    Ok((bytes, signature, manifest))
}

/// Every artefact the manifest lists, by SHA-256 and size, then the bundle digest.
fn check_artefacts(dir: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    for artefact in &manifest.artefacts {
        let name = &artefact.name;
        if !safe_name(name) {
            return Err(mismatch(format!(
                "{MANIFEST} names `{name}`, which cannot be a file of the bundle"
            )));
        }
        let path = dir.join(name);
        let (sha256, size) =
            hash_file(&path).map_err(|e| mismatch(format!("{}: {e}", path.display())))?;
        if sha256 != artefact.sha256 {
            return Err(mismatch(format!(
                "{name}: SHA-256 {sha256}, the manifest says {}",
                artefact.sha256
            )));
        }
        if size != artefact.size {
            return Err(mismatch(format!(
                "{name}: {size} bytes, the manifest says {}",
                artefact.size
            )));
        }
    }
    let digest = manifest::bundle_digest(&manifest.artefacts);
    if digest != manifest.bundle_digest {
        return Err(mismatch(format!(
            "{MANIFEST}: bundle digest {}, its artefacts give {digest}",
            manifest.bundle_digest
        )));
    }
    Ok(())
}

/// `transparency.json`: the manifest (its exact `bytes`) is an entry of a signed checkpoint
/// of its merchant's log. Returns the checkpoint.
fn check_inclusion(
    dir: &Path,
    bytes: &[u8],
    manifest: &Manifest,
    keys: &Jwks,
) -> anyhow::Result<Parsed> {
    let transparency: Inclusion =
        serde_json::from_slice(&read(dir, TRANSPARENCY, MAX_MANIFEST_BYTES)?)
            .map_err(|e| mismatch(format!("{TRANSPARENCY}: unreadable ({e})")))?;
    let checkpoint =
        docbundle_local::verify::verify_inclusion(bytes, manifest.merchant_id, &transparency, keys)
            .map_err(|e| mismatch(format!("{TRANSPARENCY}: {e}")))?;
    println!(
        "in the transparency log {}: entry {} of {}, checkpoint signature verified",
        checkpoint.origin, transparency.log_index, checkpoint.size
    );
    Ok(checkpoint)
}

/// `--since`: the checkpoint the user kept and the bundle's are of one log, and the older is
/// a prefix of the newer (the consistency proof comes from the API).
async fn check_since(
    kept: &str,
    client: &Client,
    checkpoint: &Parsed,
    merchant: docbundle::domain::MerchantId,
    keys: &Jwks,
) -> anyhow::Result<()> {
    let kept = docbundle_local::verify::verify_checkpoint(kept, keys)
        .map_err(|e| mismatch(format!("--since: {e}")))?;
    if kept.origin != checkpoint.origin {
        return Err(mismatch(format!(
            "--since: the kept checkpoint is of log `{}`, the bundle's of `{}`",
            kept.origin, checkpoint.origin
        )));
    }
    // Whichever is older must be a prefix of the other (the kept one is often a
    // monitor's, newer than the bundle's).
    let (older, newer) = if kept.size <= checkpoint.size {
        (&kept, checkpoint)
    } else {
        (checkpoint, &kept)
    };
    let proof = consistency_proof(client, older.size, newer.size, merchant).await?;
    docbundle_local::verify::verify_consistency(older, newer, &proof)
        .map_err(|e| mismatch(format!("--since: {e}")))?;
    println!(
        "consistent with the checkpoint kept at size {}: one history, sizes {} and {}",
        kept.size, older.size, newer.size
    );
    Ok(())
}

/// The API's consistency proof from `from` to `to` (none needed when they are equal).
async fn consistency_proof(
    client: &Client,
    from: u64,
    to: u64,
    merchant: docbundle::domain::MerchantId,
) -> anyhow::Result<Vec<String>> {
    if from >= to {
        return Ok(Vec::new());
    }
    let answer: ConsistencyView = client
        .get(&format!(
            "/transparency/consistency?from={from}&to={to}&merchantId={merchant}"
        ))
        .await?;
    Ok(answer.proof)
}
