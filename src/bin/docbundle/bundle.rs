//! A bundle on disk: `download` writes a completed run's artefacts under their document names
//! (as `render` does), `manifest.json` (its exact signed bytes) and `manifest.sig` (the key id
//! and the signature), checking every hash and size as the bytes land; `verify` checks such a
//! folder offline against the published signing keys.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use docbundle::app::transparency::Inclusion;
use docbundle::domain::keys::Jwks;
use docbundle::domain::manifest::{self, Manifest};
use docbundle::domain::RunStatus;
use docbundle::http::answers::{CheckpointView, ConsistencyView, RunDetail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::api::Client;
use crate::{exit, folder, RUN_FAILED, VERIFICATION_FAILED};

pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";
/// The run's transparency-log inclusion proof and checkpoint, when it had one.
pub const TRANSPARENCY: &str = "transparency.json";
const ARCHIVE: &str = "bundle.zip";
/// Largest manifest or key set read.
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// `manifest.sig`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Signature {
    algorithm: String,
    key_id: String,
    /// Base64 Ed25519 signature over `manifest.json`'s bytes.
    signature: String,
}

/// A name a bundle may hold a file under: a document name, or the archive's.
fn safe_name(name: &str) -> bool {
    name == ARCHIVE || docbundle::domain::configuration::check_document_name(name).is_ok()
}

fn mismatch(message: impl Into<String>) -> anyhow::Error {
    exit(VERIFICATION_FAILED, message)
}

pub async fn download(client: &Client, run: Uuid, out: &Path, force: bool) -> anyhow::Result<()> {
    let detail: RunDetail = client.get(&format!("/bundles/{run}")).await?;
    match detail.run.status {
        RunStatus::Completed => {}
        RunStatus::Failed => {
            let code = detail.run.error.as_ref().and_then(|e| e["code"].as_str());
            return Err(exit(
                RUN_FAILED,
                format!(
                    "run {run} failed ({}): it has no bundle",
                    code.unwrap_or("?")
                ),
            ));
        }
        status @ (RunStatus::Pending | RunStatus::Processing) => {
            bail!("run {run} is {status}: nothing to download yet (`docbundle runs show {run}`)")
        }
    }
    let manifest_link = detail
        .manifest
        .as_ref()
        .context("the completed run has no manifest")?;
    let artefacts = detail
        .artefacts
        .as_deref()
        .context("the completed run lists no artefacts")?;
    if !force && out.join(MANIFEST).exists() {
        bail!(
            "{} holds a bundle already: pick another folder, or --force",
            out.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let total: u64 = artefacts.iter().map(|a| a.size).sum();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {msg}")
            .expect("a valid template"),
    );
    for artefact in artefacts {
        let name = artefact.name.as_str();
        if !safe_name(name) {
            bail!("the run names an artefact `{name}` that cannot be a file name");
        }
        bar.set_message(name.to_owned());
        fetch(
            client.http(),
            &artefact.download_url,
            &Expected {
                name,
                size: Some(artefact.size),
                cap: artefact.size,
                sha256: &artefact.sha256,
            },
            &out.join(name),
            &bar,
        )
        .await?;
    }
    fetch(
        client.http(),
        &manifest_link.download_url,
        &Expected {
            name: MANIFEST,
            size: None,
            cap: MAX_MANIFEST_BYTES,
            sha256: &manifest_link.sha256,
        },
        &out.join(MANIFEST),
        &bar,
    )
    .await?;
    bar.finish_and_clear();
    let signature = Signature {
        algorithm: "Ed25519".to_owned(),
        key_id: manifest_link.key_id.clone(),
        signature: manifest_link.signature.clone(),
    };
    let mut sig = serde_json::to_vec_pretty(&signature)?;
    sig.push(b'\n');
    std::fs::write(out.join(SIGNATURE), sig)?;
    match &detail.transparency {
        Some(transparency) => {
            let mut bytes = serde_json::to_vec_pretty(transparency)?;
            bytes.push(b'\n');
            std::fs::write(out.join(TRANSPARENCY), bytes)?;
        }
        None => {
            let _ = std::fs::remove_file(out.join(TRANSPARENCY));
            eprintln!(
                "note: run {run} is not in a signed checkpoint of the transparency log yet \
                 (one is signed every minute); download again later to get its proof"
            );
        }
    }
    println!(
        "downloaded run {run}: {} artefacts and the signed manifest into {} \
         (`docbundle verify {}` checks them offline)",
        artefacts.len(),
        out.display(),
        out.display()
    );
    Ok(())
}

struct Expected<'a> {
    name: &'a str,
    size: Option<u64>,
    /// Most bytes accepted.
    cap: u64,
    sha256: &'a str,
}

/// Streams `url` into `dest` through a temporary file, hashing as it goes; a hash or size
/// other than expected leaves nothing behind.
async fn fetch(
    http: &reqwest::Client,
    url: &str,
    expected: &Expected<'_>,
    dest: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let name = expected.name;
    // A presigned URL: it carries its own authorisation, so no bearer token goes with it.
    let mut response = http
        .get(url)
        .send()
        .await
        .with_context(|| format!("cannot download {name}"))?;
    if !response.status().is_success() {
        bail!("downloading {name}: HTTP {}", response.status());
    }
    let part = dest.with_file_name(format!(".{name}.part"));
    let result = async {
        let mut file = std::fs::File::create(&part)
            .with_context(|| format!("cannot write {}", part.display()))?;
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        while let Some(chunk) = response
            .chunk()
            .await
            .with_context(|| format!("downloading {name}"))?
        {
            received += chunk.len() as u64;
            if received > expected.cap {
                return Err(mismatch(format!(
                    "{name}: the download is larger than the {} bytes expected",
                    expected.cap
                )));
            }
            hasher.update(&chunk);
            file.write_all(&chunk)?;
            if expected.size.is_some() {
                bar.inc(chunk.len() as u64);
            }
        }
        file.sync_all()?;
        if let Some(size) = expected.size.filter(|s| *s != received) {
            return Err(mismatch(format!(
                "{name}: downloaded {received} bytes, the run says {size}"
            )));
        }
        let got = hex::encode(hasher.finalize());
        if got != expected.sha256 {
            return Err(mismatch(format!(
                "{name}: the downloaded bytes have SHA-256 {got}, the run says {}",
                expected.sha256
            )));
        }
        std::fs::rename(&part, dest).with_context(|| format!("cannot write {}", dest.display()))
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

pub fn read_keys(path: &Path) -> anyhow::Result<Jwks> {
    let bytes = folder::read_capped(path, MAX_MANIFEST_BYTES, "the limit")?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not a JWKS", path.display()))
}

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

/// Verifies the bundle in `dir` against `keys` (a JWKS); the first problem is the error.
pub async fn verify(dir: &Path, keys: &Jwks, log: LogCheck<'_>) -> anyhow::Result<()> {
    let read = |name: &str, cap: u64| -> anyhow::Result<Vec<u8>> {
        let path: PathBuf = dir.join(name);
        if !path.is_file() {
            return Err(mismatch(format!("{}: missing", path.display())));
        }
        folder::read_capped(&path, cap, "the limit")
    };
    let bytes = read(MANIFEST, MAX_MANIFEST_BYTES)?;
    let signature: Signature = serde_json::from_slice(&read(SIGNATURE, 64 * 1024)?)
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
    println!(
        "verified run {}: {} artefacts, bundle digest {}, signed by {}",
        manifest.run_id,
        manifest.artefacts.len(),
        manifest.bundle_digest,
        signature.key_id
    );
    let path = dir.join(TRANSPARENCY);
    if !path.is_file() {
        if log.since.is_some() {
            return Err(mismatch(format!(
                "{TRANSPARENCY}: missing, so --since has nothing to check against"
            )));
        }
        println!("not checked against the transparency log: the bundle has no {TRANSPARENCY}");
        return Ok(());
    }
    let transparency: Inclusion = serde_json::from_slice(&read(TRANSPARENCY, MAX_MANIFEST_BYTES)?)
        .map_err(|e| mismatch(format!("{TRANSPARENCY}: unreadable ({e})")))?;
    let checkpoint = docbundle_local::verify::verify_inclusion(
        &bytes,
        manifest.merchant_id,
        &transparency,
        keys,
    )
    .map_err(|e| mismatch(format!("{TRANSPARENCY}: {e}")))?;
    println!(
        "in the transparency log {}: entry {} of {}, checkpoint signature verified",
        checkpoint.origin, transparency.log_index, checkpoint.size
    );
    if let Some((kept, client)) = log.since {
        let kept = docbundle_local::verify::verify_checkpoint(&kept, keys)
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
            (&kept, &checkpoint)
        } else {
            (&checkpoint, &kept)
        };
        let proof = consistency_proof(client, older.size, newer.size, manifest.merchant_id).await?;
        docbundle_local::verify::verify_consistency(older, newer, &proof)
            .map_err(|e| mismatch(format!("--since: {e}")))?;
        println!(
            "consistent with the checkpoint kept at size {}: one history, sizes {} and {}",
            kept.size, older.size, newer.size
        );
    }
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

/// `transparency monitor`: the newest checkpoint, verified, consistent with the last one seen
/// (kept in `state`); a shrink or a fork is an error and the state is left as it was.
pub async fn monitor(client: &Client, state: &Path, keys: Option<Jwks>) -> anyhow::Result<()> {
    // Keys pinned by the auditor, or (less strict) the ones the service serves now.
    let keys = match keys {
        Some(keys) => keys,
        None => client.get("/signing-keys").await?,
    };
    let latest: CheckpointView = client.get("/transparency/checkpoint").await?;
    let note = latest.checkpoint;
    let new = docbundle_local::verify::verify_checkpoint(&note, &keys)
        .map_err(|e| mismatch(e.to_string()))?;
    if !new.origin.starts_with("docbundle/") {
        return Err(mismatch(format!(
            "the checkpoint is of log `{}`, not a docbundle merchant's",
            new.origin
        )));
    }
    if state.is_file() {
        let older = String::from_utf8(folder::read_capped(state, 64 * 1024, "the limit")?)
            .with_context(|| format!("{} is not a checkpoint", state.display()))?;
        let old = docbundle_local::verify::verify_checkpoint(&older, &keys)
            .map_err(|e| mismatch(format!("{}: {e}", state.display())))?;
        let proof = if old.size == new.size || new.size < old.size {
            Vec::new()
        } else {
            client
                .get::<ConsistencyView>(&format!(
                    "/transparency/consistency?from={}&to={}",
                    old.size, new.size
                ))
                .await?
                .proof
        };
        docbundle_local::verify::verify_consistency(&old, &new, &proof)
            .map_err(|e| mismatch(format!("{}: {e}", new.origin)))?;
        println!(
            "log {}: {} entries (was {}), consistent with the last checkpoint seen",
            new.origin, new.size, old.size
        );
    } else {
        println!(
            "log {}: {} entries; first checkpoint seen, kept in {}",
            new.origin,
            new.size,
            state.display()
        );
    }
    let part = state.with_extension("part");
    std::fs::write(&part, &note)?;
    std::fs::rename(&part, state)?;
    Ok(())
}
