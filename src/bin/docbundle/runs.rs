//! Runs: `launch` (optionally waiting for the end, with a spinner and an exit code that says
//! how it ended), `runs list` and `runs show`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use docbundle::domain::RunStatus;
use docbundle::http::answers::RunDetail;

use crate::api::Client;
use crate::{exit, folder, ListArgs, RUN_FAILED, TIMED_OUT};

#[derive(Args)]
pub struct LaunchArgs {
    /// A configuration folder that was pushed (its `docbundle.yaml` names the id), or a
    /// configuration id.
    target: String,
    /// The seed (a JSON file); the configuration's defaults without it (or `--seed-hash`).
    #[arg(long)]
    seed: Option<std::path::PathBuf>,
    /// A seed an earlier run stored, by its hash.
    #[arg(long)]
    seed_hash: Option<String>,
    /// Makes retrying the launch safe: the same key and body launch one run.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Skip the seed's schema check (scope `bundle.force`).
    #[arg(long)]
    skip_validations: bool,
    /// Re-run this completed run's exact version and seed.
    #[arg(long, conflicts_with_all = ["seed", "seed_hash"])]
    replay: Option<Uuid>,
    /// Wait until the run completes or fails.
    #[arg(long)]
    wait: bool,
    /// Give up waiting after this many seconds (exit code 5).
    #[arg(long, default_value_t = 900, requires = "wait")]
    timeout: u64,
    /// Print the run as the API returns it.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum RunsCommand {
    /// Lists runs, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        configuration: Option<Uuid>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Shows a run: its status, error or manifest and artefacts.
    Show {
        run: Uuid,
        #[arg(long)]
        json: bool,
    },
}

/// The configuration a launch target names.
pub fn configuration_of(target: &str) -> anyhow::Result<Uuid> {
    let dir = Path::new(target);
    if dir.join(folder::FILE).is_file() {
        let bytes = folder::read_capped(&dir.join(folder::FILE), 4 << 20, "the limit")?;
        let file: folder::FolderFile = yaml_serde::from_slice(&bytes)
            .with_context(|| format!("{} is invalid", dir.join(folder::FILE).display()))?;
        return file.id.with_context(|| {
            format!("{target} has not been pushed yet: `docbundle push {target}` first")
        });
    }
    target
        .parse()
        .map_err(|_| anyhow::anyhow!("`{target}` is neither a configuration folder nor an id"))
}

pub async fn launch(client: &Client, args: LaunchArgs) -> anyhow::Result<()> {
    let configuration = configuration_of(&args.target)?;
    let mut body = json!({ "configurationId": configuration });
    if let Some(path) = &args.seed {
        let bytes = folder::read_capped(path, 16 << 20, "the seed size limit")?;
        body["seed"] = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not JSON", path.display()))?;
    }
    if let Some(hash) = &args.seed_hash {
        body["seedHash"] = json!(hash);
    }
    if args.skip_validations || args.replay.is_some() {
        let mut forcing = json!({});
        if args.skip_validations {
            forcing["skipValidations"] = json!(true);
        }
        if let Some(run) = args.replay {
            forcing["replayRunId"] = json!(run);
        }
        body["forcingOptions"] = forcing;
    }
    let response = client
        .send(Method::POST, "/bundles", |r| {
            let r = r.json(&body);
            match &args.idempotency_key {
                Some(key) => r.header("idempotency-key", key),
                None => r,
            }
        })
        .await?;
    let run: RunDetail = response
        .json()
        .await
        .context("the launch answer is not a run")?;
    let id = run.run.id;
    if !args.wait {
        if args.json {
            println!("{}", serde_json::to_string(&run)?);
        } else {
            println!("launched run {id} ({})", run.run.status);
        }
        return Ok(());
    }
    let run = wait(client, id, Duration::from_secs(args.timeout)).await?;
    if args.json {
        println!("{}", serde_json::to_string(&run)?);
    } else {
        print_run(&run);
    }
    ended(&run)
}

/// The code and message of a run's `error` (or `lastError`).
fn error_text(error: Option<&Value>) -> (String, String) {
    let field = |name: &str| error.and_then(|e| e[name].as_str()).map(str::to_owned);
    (
        field("code").unwrap_or_else(|| "?".to_owned()),
        field("message").unwrap_or_else(|| "no message".to_owned()),
    )
}

/// The exit a finished run gives.
fn ended(run: &RunDetail) -> anyhow::Result<()> {
    if run.run.status == RunStatus::Failed {
        let (code, message) = error_text(run.run.error.as_ref());
        return Err(exit(
            RUN_FAILED,
            format!("run {} failed: {code}: {message}", run.run.id),
        ));
    }
    Ok(())
}

/// Polls the run until it has ended, with a spinner on a terminal.
async fn wait(client: &Client, id: Uuid, timeout: Duration) -> anyhow::Result<RunDetail> {
    let started = Instant::now();
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} run {prefix} {msg} ({elapsed})")
            .expect("a valid template"),
    );
    spinner.set_prefix(id.to_string());
    spinner.enable_steady_tick(Duration::from_millis(100));
    let mut interval = Duration::from_millis(200);
    loop {
        let run: RunDetail = client.get(&format!("/bundles/{id}")).await?;
        spinner.set_message(progress(&run));
        let status = run.run.status;
        if status.has_ended() {
            spinner.finish_and_clear();
            return Ok(run);
        }
        if started.elapsed() >= timeout {
            spinner.finish_and_clear();
            return Err(exit(
                TIMED_OUT,
                format!(
                    "run {id} is still {status} after {} s; `docbundle runs show {id}` later",
                    timeout.as_secs()
                ),
            ));
        }
        tokio::time::sleep(interval).await;
        interval = (interval * 3 / 2).min(Duration::from_secs(2));
    }
}

/// What a waiting run is doing: its status, and while it is retried, the attempt and why.
fn progress(run: &RunDetail) -> String {
    let run = &run.run;
    let status = run.status;
    let attempts = run.attempts;
    match (attempts > 1, run.next_attempt_at) {
        (_, Some(next)) => {
            let why = run
                .last_error
                .as_ref()
                .and_then(|e| e["message"].as_str())
                .unwrap_or("a transient fault");
            format!(
                "{status} (attempt {attempts}: {why}; next attempt at {})",
                next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )
        }
        (true, None) => format!("{status} (attempt {attempts})"),
        (false, None) => status.to_string(),
    }
}

fn print_run(detail: &RunDetail) {
    let run = &detail.run;
    println!("run            {}", run.id);
    println!("status         {}", run.status);
    println!(
        "configuration  {} v{}",
        run.configuration_id, run.configuration_version
    );
    println!("seedHash       {}", run.seed_hash.as_str());
    println!("created        {}", run.created_at.to_rfc3339());
    if let Some(ended) = run.completed_at {
        println!("ended          {}", ended.to_rfc3339());
    }
    if let Some(of) = run.replay_of {
        println!("replay of      {of}");
    }
    if let Some(next) = run.next_attempt_at {
        let (_, message) = error_text(run.last_error.as_ref());
        println!(
            "retrying       attempt {} failed: {message}; next attempt at {}",
            run.attempts,
            next.to_rfc3339()
        );
    }
    if run.error.is_some() {
        let (code, message) = error_text(run.error.as_ref());
        println!("error          {code}: {message}");
    }
    if let Some(manifest) = &detail.manifest {
        println!("bundle digest  {}", manifest.bundle_digest);
        println!("signed by      {}", manifest.key_id);
        if let Some(identical) = manifest
            .replay
            .as_ref()
            .and_then(|r| r["identical"].as_bool())
        {
            println!("replay         identical: {identical}");
        }
    }
    for artefact in detail.artefacts.iter().flatten() {
        println!(
            "  {}\t{}\t{}",
            artefact.sha256, artefact.size, artefact.name
        );
    }
}

pub async fn runs(client: &Client, command: RunsCommand) -> anyhow::Result<()> {
    match command {
        RunsCommand::List {
            status,
            configuration,
            list,
        } => {
            let mut filters = Vec::new();
            if let Some(status) = status {
                filters.push(("status", status));
            }
            if let Some(configuration) = configuration {
                filters.push(("configurationId", configuration.to_string()));
            }
            for run in client.list("/bundles", &filters, list.limit).await? {
                if list.json {
                    println!("{run}");
                } else {
                    println!(
                        "{}\t{}\t{}\tv{}\t{}",
                        run["id"].as_str().unwrap_or(""),
                        run["status"].as_str().unwrap_or(""),
                        run["createdAt"].as_str().unwrap_or(""),
                        run["configurationVersion"],
                        run["configurationId"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(())
        }
        RunsCommand::Show { run, json } => {
            let run: RunDetail = client.get(&format!("/bundles/{run}")).await?;
            if json {
                println!("{}", serde_json::to_string(&run)?);
            } else {
                print_run(&run);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_a_pushed_folder_or_an_id() {
        let id = Uuid::new_v4();
        assert_eq!(configuration_of(&id.to_string()).unwrap(), id);
        assert!(configuration_of("no-such-folder").is_err());
        let dir = std::env::temp_dir().join(format!("docbundle-launch-{}", Uuid::new_v4()));
        crate::scaffold::init(&dir, false).unwrap();
        let target = dir.display().to_string();
        let error = configuration_of(&target).unwrap_err().to_string();
        assert!(error.contains("has not been pushed yet"), "{error}");
        folder::record(&dir, id, 4).unwrap();
        assert_eq!(configuration_of(&target).unwrap(), id);
    }

    /// A run as the API answers it, with `fields` over a pending one.
    fn run(fields: Value) -> RunDetail {
        let mut run = json!({
            "id": Uuid::nil(), "merchantId": Uuid::nil(), "configurationId": Uuid::nil(),
            "configurationVersion": 1, "seedHash": "ab".repeat(32), "status": "pending",
            "triggeredByType": "user", "triggeredById": "me", "runParameters": {},
            "replayOf": null, "attempts": 0, "error": null, "lastError": null,
            "nextAttemptAt": null, "createdAt": "2026-12-03T10:00:00Z", "startedAt": null,
            "completedAt": null,
        });
        for (name, value) in fields.as_object().unwrap() {
            run[name] = value.clone();
        }
        serde_json::from_value(run).unwrap()
    }

    #[test]
    fn a_failed_run_ends_with_its_own_exit_code() {
        let failed = run(json!({"status": "failed",
            "error": {"code": "TEMPLATE_ERROR", "message": "document `a.pdf`: boom"}}));
        let error = ended(&failed).unwrap_err();
        let exit = error.downcast_ref::<crate::Exit>().unwrap();
        assert_eq!(exit.code, RUN_FAILED);
        assert_eq!(
            exit.message,
            format!(
                "run {} failed: TEMPLATE_ERROR: document `a.pdf`: boom",
                Uuid::nil()
            )
        );
        assert!(ended(&run(json!({"status": "completed"}))).is_ok());
        assert_eq!(progress(&run(json!({}))), "pending");
        assert_eq!(
            progress(&run(json!({"status": "processing", "attempts": 2, "nextAttemptAt": "2026-12-03T10:00:04Z",
                "lastError": {"code": "DEPENDENCY_UNAVAILABLE", "message": "vault did not answer in time; the run will be retried"}}))),
            "processing (attempt 2: vault did not answer in time; the run will be retried; next attempt at 2026-12-03T10:00:04Z)"
        );
    }

    #[test]
    fn a_status_this_client_does_not_know_is_an_error_not_an_endless_wait() {
        let mut unknown = serde_json::to_value(run(json!({}))).unwrap();
        unknown["status"] = json!("archived");
        assert!(serde_json::from_value::<RunDetail>(unknown).is_err());
    }
}
