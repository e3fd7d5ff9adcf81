//! `docbundle download`: a completed run's artefacts, `manifest.json`, `manifest.sig` and
//! (when the run is in a signed checkpoint) `transparency.json` written into a folder, each
//! download streamed through a temporary file and checked against the run's SHA-256 and size.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use docbundle::domain::RunStatus;
use docbundle::http::answers::{ArtefactLink, ManifestLink, RunDetail};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::api::Client;
use crate::bundle::{
    mismatch, safe_name, Signature, MANIFEST, MAX_MANIFEST_BYTES, SIGNATURE, TIMESTAMP,
    TRANSPARENCY,
};
use crate::{exit, RUN_EXPIRED, RUN_FAILED};

/// Downloads run `run`'s bundle into `out`.
pub async fn download(client: &Client, run: Uuid, out: &Path, force: bool) -> anyhow::Result<()> {
    if !force && out.join(MANIFEST).exists() {
        bail!(
            "{} holds a bundle already: pick another folder, or --force",
            out.display()
        );
    }
    let count = download_into(client, run, out, false).await?;
    println!(
        "downloaded run {run}: {count} artefacts and the signed manifest into {} \
         (`docbundle verify {}` checks them offline)",
        out.display(),
        out.display()
    );
    Ok(())
}

/// Downloads run `run`'s bundle into `out` (created, files replaced), every hash checked;
/// `quiet` shows no progress and no note. How many artefacts.
pub async fn download_into(
    client: &Client,
    run: Uuid,
    out: &Path,
    quiet: bool,
) -> anyhow::Result<usize> {
    let detail: RunDetail = client.get(&format!("/bundles/{run}")).await?;
    ensure_completed(&detail, run)?;
    let manifest_link = detail
        .manifest
        .as_ref()
        .context("the completed run has no manifest")?;
    let artefacts = detail
        .artefacts
        .as_deref()
        .context("the completed run lists no artefacts")?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    // The manifest last: a folder whose manifest is there was downloaded whole.
    let _ = std::fs::remove_file(out.join(MANIFEST));
    write_signature(out, manifest_link)?;
    write_timestamp(client, out, manifest_link).await?;
    write_transparency(out, run, &detail, quiet)?;
    fetch_all(client, artefacts, manifest_link, out, quiet).await?;
    Ok(artefacts.len())
}

/// Nothing to download unless the run completed: a failed run ends with [`RUN_FAILED`].
fn ensure_completed(detail: &RunDetail, run: Uuid) -> anyhow::Result<()> {
    match detail.run.status {
        RunStatus::Completed => Ok(()),
        RunStatus::Failed => {
            let code = detail.run.error.as_ref().and_then(|e| e["code"].as_str());
            Err(exit(
                RUN_FAILED,
                format!(
                    "run {run} failed ({}): it has no bundle",
                    code.unwrap_or("?")
                ),
            ))
        }
        RunStatus::Expired => Err(exit(
            RUN_EXPIRED,
            format!(
                "run {run} expired at {} ({}): its artefacts were deleted; its signed manifest \
                 and log entry remain (`docbundle runs show {run}`), and a copy downloaded \
                 before still verifies",
                detail
                    .run
                    .expired_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
                detail.run.expired_by.as_deref().unwrap_or("retention")
            ),
        )),
        status @ (RunStatus::Pending | RunStatus::Processing) => {
            bail!("run {run} is {status}: nothing to download yet (`docbundle runs show {run}`)")
        }
    }
}

/// Every artefact, then the manifest, into `out`, behind one progress bar.
async fn fetch_all(
    client: &Client,
    artefacts: &[ArtefactLink],
    manifest_link: &ManifestLink,
    out: &Path,
    quiet: bool,
) -> anyhow::Result<()> {
    let total: u64 = artefacts.iter().map(|a| a.size).sum();
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
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
        let Some(url) = artefact.download_url.as_deref() else {
            bail!("the run gives no download URL for `{name}`");
        };
        fetch(
            client.http(),
            url,
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
    Ok(())
}

/// `manifest.tsr` when the run's manifest was time-stamped (`verify` checks that it covers
/// the manifest).
async fn write_timestamp(
    client: &Client,
    out: &Path,
    manifest_link: &ManifestLink,
) -> anyhow::Result<()> {
    let Some(url) = &manifest_link.timestamp_url else {
        return Ok(());
    };
    save_timestamp(client, url, out, TIMESTAMP).await
}

/// Downloads the TSA's answer at `url` into `dir/name` (at most 256 KiB).
pub async fn save_timestamp(
    client: &Client,
    url: &str,
    dir: &Path,
    name: &str,
) -> anyhow::Result<()> {
    let answer = client
        .http()
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("cannot download {name}"))?
        .bytes()
        .await
        .with_context(|| format!("cannot download {name}"))?;
    if answer.len() > 256 * 1024 {
        bail!("{name}: larger than 256 KiB");
    }
    std::fs::write(dir.join(name), &answer)?;
    Ok(())
}

/// `manifest.sig`: the manifest's key id and signature as the run answers them.
fn write_signature(out: &Path, manifest_link: &ManifestLink) -> anyhow::Result<()> {
    let signature = Signature {
        algorithm: "Ed25519".to_owned(),
        key_id: manifest_link.key_id.clone(),
        signature: manifest_link.signature.clone(),
    };
    let mut sig = serde_json::to_vec_pretty(&signature)?;
    sig.push(b'\n');
    std::fs::write(out.join(SIGNATURE), sig)?;
    Ok(())
}

/// `transparency.json` when the run is in a signed checkpoint; otherwise none (an older one
/// is removed) and a note to download again later.
fn write_transparency(
    out: &Path,
    run: Uuid,
    detail: &RunDetail,
    quiet: bool,
) -> anyhow::Result<()> {
    match &detail.transparency {
        Some(transparency) => {
            let mut bytes = serde_json::to_vec_pretty(transparency)?;
            bytes.push(b'\n');
            std::fs::write(out.join(TRANSPARENCY), bytes)?;
        }
        None => {
            let _ = std::fs::remove_file(out.join(TRANSPARENCY));
            if quiet {
                return Ok(());
            }
            eprintln!(
                "note: run {run} is not in a signed checkpoint of the transparency log yet \
                 (one is signed every minute); download again later to get its proof"
            );
        }
    }
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
