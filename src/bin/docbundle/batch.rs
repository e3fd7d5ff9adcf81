//! Batches: `batch start` (create, upload the NDJSON to the presigned URL, start; `--wait`
//! with a progress bar of done/failed/rate/ETA), `batch status`, `batch errors`, and `batch
//! download` (the signed batch manifest and every completed run's bundle, resumable: a run whose
//! folder already holds its manifest with the listed SHA-256 is skipped). `verify` on a
//! downloaded batch checks the batch manifest's signature and Merkle tree, then every bundle.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use docbundle::domain::batch::{BatchManifest, BatchStatement, MANIFEST_SCHEMA, STATEMENT_SCHEMA};
use docbundle::domain::RunStatus;

use crate::api::Client;
use crate::bundle::{mismatch, Signature, MANIFEST};
use crate::{exit, folder, ListArgs, RUN_FAILED, TIMED_OUT};

/// A downloaded batch's manifest, the statement the service signed (naming the manifest by
/// its SHA-256, with its tree and totals) and that signature.
pub const BATCH_MANIFEST: &str = "batch-manifest.json";
pub const BATCH_STATEMENT: &str = "batch-statement.json";
pub const BATCH_SIGNATURE: &str = "batch-statement.sig";
/// The TSA's time-stamp of the statement, when the service has a time-stamping authority: the
/// time-stamp of every run the batch lists.
pub const BATCH_TIMESTAMP: &str = "batch-statement.tsr";
/// Largest batch manifest read (100,000 runs list in about 25 MB).
const MAX_BATCH_MANIFEST_BYTES: u64 = 256 << 20;

#[derive(Subcommand)]
pub enum BatchCommand {
    /// Creates a batch of a configuration (a pushed folder or an id), uploads the NDJSON seeds
    /// (one JSON seed per line) and starts it.
    Start(StartArgs),
    /// Shows a batch: status, totals, rate and estimate.
    Status {
        batch: Uuid,
        #[arg(long)]
        json: bool,
    },
    /// Lists the lines that became no run (line, code, message).
    Errors {
        batch: Uuid,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Downloads an ended batch: its signed manifest and every completed run's bundle (one
    /// folder per line), resumable.
    Download {
        batch: Uuid,
        #[arg(short, long)]
        out: PathBuf,
    },
}

#[derive(Args)]
pub struct StartArgs {
    /// A configuration folder that was pushed, or a configuration id.
    target: String,
    /// The NDJSON file: one seed per line.
    seeds: PathBuf,
    /// The configuration version every run uses (the current one at start without it).
    #[arg(long)]
    version: Option<i32>,
    /// Stop at the first line that becomes no run.
    #[arg(long)]
    fail_fast: bool,
    /// Makes retrying safe: the same key creates (and starts) one batch.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Wait until the batch ends, with a progress bar; the exit code is 3 unless every line
    /// made a run that completed.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds (exit code 5).
    #[arg(long, default_value_t = 24 * 3600, requires = "wait")]
    timeout: u64,
    /// Print the batch as the API returns it.
    #[arg(long)]
    json: bool,
}

pub async fn batch(client: &Client, command: BatchCommand) -> anyhow::Result<()> {
    match command {
        BatchCommand::Start(args) => start(client, args).await,
        BatchCommand::Status { batch, json } => {
            let view = client.get_json(&format!("/batches/{batch}")).await?;
            if json {
                println!("{view}");
            } else {
                print_status(&view);
            }
            Ok(())
        }
        BatchCommand::Errors { batch, list } => {
            let items = client
                .list(&format!("/batches/{batch}/errors"), &[], list.limit)
                .await?;
            for item in &items {
                if list.json {
                    println!("{item}");
                } else {
                    println!(
                        "line {}\t{}\t{}",
                        item["line"],
                        item["code"].as_str().unwrap_or("?"),
                        item["message"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(())
        }
        BatchCommand::Download { batch, out } => download(client, batch, &out).await,
    }
}

async fn start(client: &Client, args: StartArgs) -> anyhow::Result<()> {
    let configuration = crate::runs::configuration_of(&args.target)?;
    let size = std::fs::metadata(&args.seeds)
        .with_context(|| format!("cannot read {}", args.seeds.display()))?
        .len();
    let mut body = json!({"configurationId": configuration, "failFast": args.fail_fast});
    if let Some(version) = args.version {
        body["configurationVersion"] = json!(version);
    }
    let key = |suffix: &str| {
        args.idempotency_key
            .as_ref()
            .map(|k| format!("{k}{suffix}"))
    };
    let create_key = key("");
    let created: Value = client
        .send(Method::POST, "/batches", |r| {
            let r = r.json(&body);
            match &create_key {
                Some(key) => r.header("idempotency-key", key),
                None => r,
            }
        })
        .await?
        .json()
        .await
        .context("the create answer is not a batch")?;
    let id = created["id"]
        .as_str()
        .context("the batch has no id")?
        .to_owned();
    if created["status"] == "created" {
        let max = created["upload"]["maxBytes"].as_u64().unwrap_or(u64::MAX);
        if size > max {
            bail!(
                "{} is {size} bytes; a batch reads at most {max}",
                args.seeds.display()
            );
        }
        // A repeated key answers the first create again, upload URL included (until it
        // expires): the file is uploaded again, which is harmless before the start.
        let url = created["upload"]["url"]
            .as_str()
            .context("the create answer has no upload URL")?;
        let file = tokio::fs::File::open(&args.seeds)
            .await
            .with_context(|| format!("cannot read {}", args.seeds.display()))?;
        let uploaded = client
            .http()
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(reqwest::Body::from(file))
            .send()
            .await
            .context("cannot upload the seeds")?;
        if !uploaded.status().is_success() {
            bail!("uploading the seeds: HTTP {}", uploaded.status());
        }
        let start_key = key("-start");
        let started = client
            .send(
                Method::POST,
                &format!("/batches/{id}/start"),
                |r| match &start_key {
                    Some(key) => r.header("idempotency-key", key),
                    None => r,
                },
            )
            .await;
        if let Err(e) = started {
            // Started already by an earlier try with the same key: go on; anything else ends.
            let current = client.get_json(&format!("/batches/{id}")).await?;
            if current["status"] == "created" {
                return Err(e);
            }
        }
    }
    eprintln!("batch {id}: {size} bytes of seeds uploaded, started");
    if !args.wait {
        let view = client.get_json(&format!("/batches/{id}")).await?;
        if args.json {
            println!("{view}");
        } else {
            println!("{id}");
        }
        return Ok(());
    }
    let view = wait(client, &id, Duration::from_secs(args.timeout)).await?;
    if args.json {
        println!("{view}");
    } else {
        print_status(&view);
    }
    match view["status"].as_str() {
        // Every line made a run and every run completed: nothing to look at.
        Some("completed") if view["totals"]["failed"] == 0 && view["totals"]["errors"] == 0 => {
            Ok(())
        }
        Some(status) => Err(exit(
            RUN_FAILED,
            format!(
                "batch {id} ended {status}: {} runs failed, {} lines made no run (`docbundle batch errors {id}`)",
                view["totals"]["failed"], view["totals"]["errors"]
            ),
        )),
        None => bail!("the batch has no status"),
    }
}

/// Polls the batch every second with a progress bar until it ends; the batch as it ended.
async fn wait(client: &Client, id: &str, timeout: Duration) -> anyhow::Result<Value> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} runs ended {msg}")
            .expect("a valid template"),
    );
    let started = Instant::now();
    loop {
        let view = client.get_json(&format!("/batches/{id}")).await?;
        let totals = &view["totals"];
        let ended =
            totals["completed"].as_u64().unwrap_or(0) + totals["failed"].as_u64().unwrap_or(0);
        bar.set_length(totals["runs"].as_u64().unwrap_or(0).max(ended));
        bar.set_position(ended);
        let rate = view["rate"]
            .as_f64()
            .map(|r| format!("{r:.1}/s"))
            .unwrap_or_else(|| "–".into());
        let eta = view["estimatedCompletionAt"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| {
                let secs = (t.with_timezone(&chrono::Utc) - chrono::Utc::now())
                    .num_seconds()
                    .max(0);
                format!("ETA {}m{:02}s", secs / 60, secs % 60)
            })
            .unwrap_or_default();
        bar.set_message(format!(
            "· {} failed · {} line errors · {rate} {eta}",
            totals["failed"], totals["errors"]
        ));
        if ["completed", "cancelled", "failed"].contains(&view["status"].as_str().unwrap_or("")) {
            bar.finish_and_clear();
            return Ok(view);
        }
        if started.elapsed() > timeout {
            bar.abandon();
            return Err(exit(TIMED_OUT, format!("gave up waiting for batch {id}")));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn print_status(view: &Value) {
    let totals = &view["totals"];
    println!(
        "batch {} {}: {} lines read, {} runs ({} pending, {} processing, {} completed, {} failed), {} line errors",
        view["id"].as_str().unwrap_or("?"),
        view["status"].as_str().unwrap_or("?"),
        totals["lines"],
        totals["runs"],
        totals["pending"],
        totals["processing"],
        totals["completed"],
        totals["failed"],
        totals["errors"],
    );
    if let Some(rate) = view["rate"].as_f64() {
        println!("rate {rate:.1} runs/s");
    }
    if let Some(eta) = view["estimatedCompletionAt"].as_str() {
        println!("estimated completion {eta}");
    }
    if let Some(root) = view["merkleRoot"].as_str() {
        println!(
            "batch manifest {} (Merkle root {root})",
            view["manifestSha256"].as_str().unwrap_or("?")
        );
    }
    if !view["error"].is_null() {
        println!("error {}", view["error"]);
    }
}

fn sha256_file(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    Some(hex::encode(Sha256::digest(bytes)))
}

/// The folder of a batch's run: its line, zero-padded so folders sort in line order.
pub fn run_folder(out: &Path, line: u32) -> PathBuf {
    out.join(format!("{line:06}"))
}

async fn download(client: &Client, batch: Uuid, out: &Path) -> anyhow::Result<()> {
    let view = client.get_json(&format!("/batches/{batch}")).await?;
    let Some(url) = view["manifestUrl"].as_str() else {
        bail!(
            "batch {batch} is {}: it has no manifest until it ends (`docbundle batch status {batch}`)",
            view["status"].as_str().unwrap_or("?")
        );
    };
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let bytes = client
        .http()
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .context("cannot download the batch manifest")?
        .bytes()
        .await
        .context("cannot download the batch manifest")?;
    let sha = hex::encode(Sha256::digest(&bytes));
    if Some(sha.as_str()) != view["manifestSha256"].as_str() {
        return Err(mismatch(format!(
            "{BATCH_MANIFEST}: downloaded bytes have SHA-256 {sha}, the batch says {}",
            view["manifestSha256"]
        )));
    }
    std::fs::write(out.join(BATCH_MANIFEST), &bytes)?;
    let statement = view["manifestStatement"]
        .as_str()
        .context("the batch has no signed statement")?;
    std::fs::write(out.join(BATCH_STATEMENT), statement)?;
    let signature = Signature {
        algorithm: "Ed25519".to_owned(),
        key_id: view["manifestKeyId"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        signature: view["manifestSignature"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    };
    let mut sig = serde_json::to_vec_pretty(&signature)?;
    sig.push(b'\n');
    std::fs::write(out.join(BATCH_SIGNATURE), sig)?;
    if let Some(url) = view["timestampUrl"].as_str() {
        crate::download::save_timestamp(client, url, out, BATCH_TIMESTAMP).await?;
    }
    let manifest: BatchManifest =
        serde_json::from_slice(&bytes).context("the batch manifest is not one")?;
    let completed: Vec<_> = manifest
        .runs
        .iter()
        .filter(|r| r.status == RunStatus::Completed)
        .collect();
    let bar = ProgressBar::new(completed.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} bundles {msg}")
            .expect("a valid template"),
    );
    let mut skipped = 0;
    for run in &completed {
        let dir = run_folder(out, run.line);
        // Resumable: a bundle whose manifest is the listed one was downloaded whole (the
        // manifest is written last), unless its log proof is still to come.
        if sha256_file(&dir.join(MANIFEST)).as_deref() == run.manifest_sha256.as_deref()
            && dir.join(crate::bundle::TRANSPARENCY).is_file()
        {
            skipped += 1;
            bar.inc(1);
            continue;
        }
        crate::download::download_into(client, run.run_id, &dir, true)
            .await
            .with_context(|| format!("line {} (run {})", run.line, run.run_id))?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "downloaded batch {batch}: {} bundles ({skipped} there already) and the signed batch manifest into {} \
         (`docbundle verify {}` checks them offline)",
        completed.len(),
        out.display(),
        out.display()
    );
    Ok(())
}

/// Whether `dir` holds a downloaded batch.
pub fn is_batch(dir: &Path) -> bool {
    dir.join(BATCH_MANIFEST).is_file() || dir.join(BATCH_STATEMENT).is_file()
}

/// Verifies a downloaded batch: the batch manifest's signature, its tree, and for every
/// completed run its folder's manifest (the listed SHA-256) and whole bundle.
pub async fn verify(dir: &Path, trusted: &crate::check::Trusted<'_>) -> anyhow::Result<()> {
    let statement_bytes = folder::read_capped(&dir.join(BATCH_STATEMENT), 64 * 1024, "the limit")?;
    let signature: Signature = serde_json::from_slice(&folder::read_capped(
        &dir.join(BATCH_SIGNATURE),
        64 * 1024,
        "the limit",
    )?)
    .map_err(|e| mismatch(format!("{BATCH_SIGNATURE}: unreadable ({e})")))?;
    docbundle_local::verify::verify_manifest(
        &statement_bytes,
        &signature.signature,
        &signature.key_id,
        &trusted.keys,
    )
    .map_err(|e| mismatch(format!("{BATCH_STATEMENT}: {e}")))?;
    let statement: BatchStatement = serde_json::from_slice(&statement_bytes).map_err(|e| {
        mismatch(format!(
            "{BATCH_STATEMENT}: signed, but not a batch statement ({e})"
        ))
    })?;
    if statement.schema != STATEMENT_SCHEMA {
        return Err(mismatch(format!(
            "{BATCH_STATEMENT}: schema `{}`",
            statement.schema
        )));
    }
    let bytes = folder::read_capped(
        &dir.join(BATCH_MANIFEST),
        MAX_BATCH_MANIFEST_BYTES,
        "the limit",
    )?;
    let manifest: BatchManifest = serde_json::from_slice(&bytes)
        .map_err(|e| mismatch(format!("{BATCH_MANIFEST}: not a batch manifest ({e})")))?;
    if manifest.schema != MANIFEST_SCHEMA {
        return Err(mismatch(format!(
            "{BATCH_MANIFEST}: schema `{}`",
            manifest.schema
        )));
    }
    statement
        .covers(&bytes, &manifest)
        .map_err(|e| mismatch(format!("{BATCH_MANIFEST}: {e}")))?;
    let stamped = crate::check::time_stamped(dir, BATCH_TIMESTAMP, &statement_bytes)?;
    let mut checked = 0;
    for run in manifest
        .runs
        .iter()
        .filter(|r| r.status == RunStatus::Completed)
    {
        let folder = run_folder(dir, run.line);
        let sha = sha256_file(&folder.join(MANIFEST));
        if sha.as_deref() != run.manifest_sha256.as_deref() {
            return Err(mismatch(format!(
                "line {}: {} is not the manifest the batch lists ({})",
                run.line,
                folder.join(MANIFEST).display(),
                run.manifest_sha256.as_deref().unwrap_or("?")
            )));
        }
        Box::pin(crate::check::verify(
            &folder,
            trusted,
            crate::check::LogCheck { since: None },
        ))
        .await
        .with_context(|| format!("line {} (run {})", run.line, run.run_id))?;
        checked += 1;
    }
    println!(
        "verified batch {}: {} runs ({} completed, every bundle checked), Merkle root {} of {} leaves, signed by {}",
        manifest.batch_id,
        manifest.runs.len(),
        checked,
        manifest.tree.root,
        manifest.tree.size,
        signature.key_id
    );
    if let Some(at) = stamped {
        println!("{BATCH_TIMESTAMP}: the batch and every run it lists were time-stamped at {at}");
    }
    Ok(())
}
