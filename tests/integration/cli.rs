//! The `docbundle` CLI as a user drives it, against the real local stack: log in with the
//! local issuer, scaffold a folder, render it offline, push it, launch and wait, download,
//! verify, tamper, and the failures in between (a stale push, a broken template, a failed
//! run, an unknown run), each with the exit code and message a script relies on.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::Digest;
use tokio::sync::watch;
use uuid::Uuid;

use crate::harness::{self, TestApp};

/// A user of the CLI: their own config directory and working folder.
pub(crate) struct User {
    home: PathBuf,
}

impl User {
    pub(crate) fn new() -> User {
        let home = std::env::temp_dir().join(format!("docbundle-cli-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&home).unwrap();
        User { home }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.home.join(name)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_docbundle"));
        command
            .args(args)
            .current_dir(&self.home)
            .env("DOCBUNDLE_CONFIG_DIR", self.path("config"))
            .env_remove("DOCBUNDLE_API")
            .env_remove("DOCBUNDLE_TOKEN")
            .env_remove("DOCBUNDLE_PROFILE")
            .env_remove("DOCBUNDLE_CLIENT_SECRET")
            .stdin(Stdio::null());
        command
    }

    /// Runs the CLI to its end; returns its output (blocking: call from `spawn_blocking` or
    /// through [`User::run`]).
    fn run_blocking(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run docbundle")
    }

    pub(crate) async fn run(&self, args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let command = {
            let mut c = self.command(&[]);
            c.args(&args);
            c
        };
        tokio::task::spawn_blocking(move || {
            let mut command = command;
            command.output().expect("run docbundle")
        })
        .await
        .unwrap()
    }

    /// Runs the CLI and expects success; returns its stdout.
    pub(crate) async fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        assert!(
            output.status.success(),
            "docbundle {args:?} failed ({:?}):\n{}\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    pub(crate) async fn login(&self, app: &TestApp, client: &str) {
        harness::load_stack_env();
        let issuer = std::env::var("OIDC_ISSUER_URL").unwrap();
        let out = self
            .ok(&[
                "login",
                "--issuer",
                &issuer,
                "--client-id",
                client,
                "--client-secret",
                &format!("{client}-secret"),
                "--api",
                &app.base,
            ])
            .await;
        assert!(out.contains(&format!("logged in as `{client}`")), "{out}");
    }
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The app with its worker consuming the queue, as the event source mapping would.
async fn app_with_worker() -> (TestApp, watch::Sender<bool>) {
    let app = TestApp::spawn().await;
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(docbundle_local::poller::run(app.state.clone(), 2, stopped));
    (app, stop)
}

/// A logged-in user of merchant A, `config` saved and launched with `seed`, the run
/// completed: the app (and its worker's stop), the user, the saved configuration's id and the
/// run's id.
async fn a_completed_run(
    config: &Value,
    seed: &Value,
) -> (TestApp, watch::Sender<bool>, User, String, String) {
    let (app, worker) = app_with_worker().await;
    let user = User::new();
    user.login(&app, "merchant-a").await;
    let token = harness::token("merchant-a").await;
    let created = crate::configurations::create(&app, &token, config).await;
    let saved: Value = created.json().await.unwrap();
    let launched: Value = app
        .launch(
            &token,
            &serde_json::json!({"configurationId": saved["id"], "seed": seed}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = launched["id"].as_str().unwrap().to_owned();
    let run = app.run_to_end(&token, &id).await;
    assert_eq!(run["status"], "completed", "{run}");
    let config_id = saved["id"].as_str().unwrap().to_owned();
    (app, worker, user, config_id, id)
}

fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn init_push_render_launch_download_verify_and_a_tampered_byte_fails() {
    let (app, _worker) = app_with_worker().await;
    let user = User::new();
    user.login(&app, "merchant-a").await;

    user.ok(&["init", "invoices"]).await;
    // Offline, before anything exists on the server.
    let rendered = user.ok(&["render", "invoices", "-o", "offline"]).await;
    assert!(rendered.contains("rendered 2 artefacts"), "{rendered}");
    let pushed = user.ok(&["push", "invoices"]).await;
    assert!(pushed.contains("version 1"), "{pushed}");

    let launched = user
        .ok(&[
            "launch",
            "invoices",
            "--wait",
            "--json",
            "--idempotency-key",
            "first",
        ])
        .await;
    let run: Value = serde_json::from_str(launched.trim()).unwrap();
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["configurationVersion"], 1);
    let id = run["id"].as_str().unwrap();

    user.ok(&["download", id, "-o", "bundle"]).await;
    // The run's artefacts are the offline render's, byte for byte.
    let mut downloaded = files_of(&user.path("bundle"));
    downloaded.retain(|(name, _)| !name.starts_with("manifest."));
    assert_eq!(downloaded, files_of(&user.path("offline")));
    assert_eq!(
        downloaded
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["invoice.pdf", "lines.csv"]
    );

    let verified = user.ok(&["verify", "bundle"]).await;
    assert!(
        verified.contains(&format!("verified run {id}: 2 artefacts")),
        "{verified}"
    );
    // The TSA's time-stamp of the manifest came along and covers it.
    assert!(
        verified.contains("manifest.tsr: the manifest was time-stamped at"),
        "{verified}"
    );
    // With keys saved beforehand, no API at all.
    let keys: Value = app
        .get_json("/api/v1/signing-keys", &harness::token("merchant-a").await)
        .await;
    std::fs::write(user.path("keys.json"), keys.to_string()).unwrap();
    user.ok(&[
        "--api",
        "http://127.0.0.1:9",
        "verify",
        "bundle",
        "--keys",
        "keys.json",
    ])
    .await;

    // One byte of one artefact changed: verification fails, naming it.
    let pdf = user.path("bundle/invoice.pdf");
    let original = std::fs::read(&pdf).unwrap();
    let mut tampered = original.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 1;
    std::fs::write(&pdf, &tampered).unwrap();
    let failed = user.run(&["verify", "bundle", "--keys", "keys.json"]).await;
    assert_eq!(failed.status.code(), Some(4), "{}", stderr(&failed));
    assert!(
        stderr(&failed).contains("invoice.pdf: SHA-256"),
        "{}",
        stderr(&failed)
    );
    std::fs::write(&pdf, &original).unwrap();

    // One byte of the manifest changed (a hash rewritten to match a forged file): the
    // signature no longer holds.
    let manifest = user.path("bundle/manifest.json");
    let bytes = std::fs::read(&manifest).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    let forged = text.replacen("\"size\": ", "\"size\": 1", 1);
    std::fs::write(&manifest, forged).unwrap();
    let failed = user.run(&["verify", "bundle", "--keys", "keys.json"]).await;
    assert_eq!(failed.status.code(), Some(4), "{}", stderr(&failed));
    assert!(
        stderr(&failed).contains("manifest.json: signature does not match the manifest"),
        "{}",
        stderr(&failed)
    );
    std::fs::write(&manifest, &bytes).unwrap();

    // A time-stamp that is not of this manifest: named.
    let tsr = user.path("bundle/manifest.tsr");
    let kept = std::fs::read(&tsr).unwrap();
    std::fs::write(&tsr, b"not a time-stamp").unwrap();
    let failed = user.run(&["verify", "bundle", "--keys", "keys.json"]).await;
    assert_eq!(failed.status.code(), Some(4), "{}", stderr(&failed));
    assert!(
        stderr(&failed).contains("manifest.tsr"),
        "{}",
        stderr(&failed)
    );
    std::fs::write(&tsr, &kept).unwrap();

    // A missing artefact is named too.
    std::fs::remove_file(user.path("bundle/lines.csv")).unwrap();
    let failed = user.run(&["verify", "bundle", "--keys", "keys.json"]).await;
    assert_eq!(failed.status.code(), Some(4));
    assert!(stderr(&failed).contains("lines.csv"), "{}", stderr(&failed));

    // The run is listed and shown.
    let listed = user.ok(&["runs", "list"]).await;
    assert!(listed.contains(id), "{listed}");
    let shown = user.ok(&["runs", "show", id]).await;
    assert!(shown.contains("completed"), "{shown}");
    assert!(
        shown.contains(run["manifest"]["bundleDigest"].as_str().unwrap()),
        "{shown}"
    );
}

#[tokio::test]
async fn a_push_over_a_newer_version_is_refused_until_forced() {
    let app = TestApp::spawn().await;
    let user = User::new();
    user.login(&app, "merchant-a").await;
    user.ok(&["init", "mine"]).await;
    user.ok(&["push", "mine"]).await;
    let file: Value =
        yaml_serde::from_str(&std::fs::read_to_string(user.path("mine/docbundle.yaml")).unwrap())
            .unwrap();
    let id = file["id"].as_str().unwrap().to_owned();
    assert_eq!(file["version"], 1);

    // A colleague pulls, changes a template and pushes: version 2.
    user.ok(&["pull", &id, "theirs"]).await;
    let csv = user.path("theirs/lines.csv.j2");
    let template = std::fs::read_to_string(&csv).unwrap();
    std::fs::write(&csv, template.replace("description,", "item,")).unwrap();
    let pushed = user.ok(&["push", "theirs"]).await;
    assert!(pushed.contains("version 2"), "{pushed}");

    // The first folder is still at version 1: its push is refused, not lost over theirs.
    let stale = user.run(&["push", "mine"]).await;
    assert_eq!(stale.status.code(), Some(1));
    assert!(
        stderr(&stale).contains(&format!("configuration {id} has changed since version 1")),
        "{}",
        stderr(&stale)
    );
    assert!(
        stderr(&stale).contains("PRECONDITION_FAILED"),
        "{}",
        stderr(&stale)
    );
    let forced = user.ok(&["push", "mine", "--force"]).await;
    assert!(forced.contains("version 3"), "{forced}");

    let versions = user.ok(&["configurations", "versions", &id]).await;
    assert_eq!(versions.lines().count(), 3, "{versions}");
    let listed = user.ok(&["configurations", "list", "--json"]).await;
    let first: Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert_eq!(
        (first["id"].as_str(), &first["version"]),
        (Some(id.as_str()), &Value::from(3))
    );

    // A pulled version renders as the folder it came from.
    user.ok(&["pull", &id, "v2", "--version", "2"]).await;
    user.ok(&["render", "v2", "-o", "v2-out"]).await;
    user.ok(&["render", "theirs", "-o", "theirs-out"]).await;
    assert_eq!(
        files_of(&user.path("v2-out")),
        files_of(&user.path("theirs-out"))
    );
}

#[tokio::test]
async fn a_broken_template_fails_offline_with_the_message_the_api_gives() {
    let app = TestApp::spawn().await;
    let user = User::new();
    user.login(&app, "merchant-a").await;
    user.ok(&["init", "broken"]).await;
    let typ = user.path("broken/invoice.typ");
    let template = std::fs::read_to_string(&typ).unwrap();
    std::fs::write(
        &typ,
        template.replace("= Invoice #data.number", "= Invoice #data.number("),
    )
    .unwrap();

    let offline = user.run(&["render", "broken"]).await;
    assert_eq!(offline.status.code(), Some(1));
    let pushed = user.run(&["push", "broken"]).await;
    assert_eq!(pushed.status.code(), Some(1));
    let detail = |output: &Output| {
        stderr(output)
            .lines()
            .find(|l| {
                l.trim_start()
                    .starts_with("documents[0].template (invoice.typ):")
            })
            .map(str::trim)
            .map(str::to_owned)
    };
    let offline_detail = detail(&offline).unwrap_or_else(|| panic!("{}", stderr(&offline)));
    assert!(offline_detail.contains("line 10"), "{offline_detail}");
    assert_eq!(Some(offline_detail), detail(&pushed), "{}", stderr(&pushed));
    assert!(
        stderr(&pushed).contains("VALIDATION_FAILED; request id "),
        "{}",
        stderr(&pushed)
    );
}

#[tokio::test]
async fn exit_codes_say_how_a_run_ended_and_errors_carry_the_request_id() {
    let (app, _worker) = app_with_worker().await;
    let user = User::new();
    user.login(&app, "merchant-a").await;
    let dir = user.path("fails");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("docbundle.yaml"),
        "name: Fails on demand\ndefaults: {fail: false}\ndocuments:\n  - name: a.pdf\n    template: a.typ\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("a.typ"),
        "#let data = json(\"data.json\")\n#if data.fail { panic(\"asked to fail\") }\nHello\n",
    )
    .unwrap();
    user.ok(&["push", "fails"]).await;
    std::fs::write(user.path("seed.json"), r#"{"fail": true}"#).unwrap();

    let failed = user
        .run(&["launch", "fails", "--seed", "seed.json", "--wait"])
        .await;
    assert_eq!(failed.status.code(), Some(3), "{}", stderr(&failed));
    assert!(
        stderr(&failed).contains("failed: TEMPLATE_ERROR"),
        "{}",
        stderr(&failed)
    );
    // The same seed fails offline with the same message.
    let offline = user.run(&["render", "fails", "--seed", "seed.json"]).await;
    assert_eq!(offline.status.code(), Some(1));
    assert!(
        stderr(&offline).contains("asked to fail"),
        "{}",
        stderr(&offline)
    );

    let unknown = Uuid::new_v4().to_string();
    let missing = user.run(&["runs", "show", &unknown]).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("HTTP 404 NOT_FOUND; request id "),
        "{}",
        stderr(&missing)
    );
    let download = user.run(&["download", &unknown, "-o", "x"]).await;
    assert_eq!(download.status.code(), Some(1));

    // Another merchant's client sees none of it.
    let other = User::new();
    other.login(&app, "merchant-b").await;
    let listed = other.ok(&["runs", "list"]).await;
    assert_eq!(listed, "");

    // Bad credentials are refused at login, with the issuer's reason.
    harness::load_stack_env();
    let issuer = std::env::var("OIDC_ISSUER_URL").unwrap();
    let refused = user
        .run(&[
            "login",
            "--profile",
            "wrong",
            "--issuer",
            &issuer,
            "--client-id",
            "merchant-a",
            "--client-secret",
            "not-the-secret",
            "--api",
            &app.base,
        ])
        .await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("the issuer refused client `merchant-a`"),
        "{}",
        stderr(&refused)
    );
    // Without a profile the CLI says what to do.
    let none = user.run(&["--profile", "nobody", "runs", "list"]).await;
    assert!(
        stderr(&none).contains("no profile `nobody`"),
        "{}",
        stderr(&none)
    );
}

#[tokio::test]
async fn the_token_is_cached_privately_and_renewed_when_refused() {
    let app = TestApp::spawn().await;
    let user = User::new();
    user.login(&app, "merchant-a").await;
    let token_file = user.path("config/tokens/default.json");
    #[cfg(unix)]
    for file in [&token_file, &user.path("config/config.toml")] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    let cached = std::fs::read(&token_file).unwrap();
    user.ok(&["configurations", "list"]).await;
    assert_eq!(
        std::fs::read(&token_file).unwrap(),
        cached,
        "the cached token is reused"
    );

    // A token the API refuses (revoked, or signed by a rotated key) is renewed once.
    let mut token: Value = serde_json::from_slice(&cached).unwrap();
    token["access_token"] = Value::from("not-a-token");
    std::fs::write(&token_file, token.to_string()).unwrap();
    user.ok(&["configurations", "list"]).await;
    let renewed: Value = serde_json::from_slice(&std::fs::read(&token_file).unwrap()).unwrap();
    assert_ne!(renewed["access_token"], "not-a-token");

    // DOCBUNDLE_TOKEN and DOCBUNDLE_API need no profile.
    let mut command = user.command(&["configurations", "list", "--profile", "none"]);
    command
        .env("DOCBUNDLE_API", &app.base)
        .env("DOCBUNDLE_TOKEN", "garbage");
    // The app serves on this test's runtime: wait for the CLI off it.
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("HTTP 401 UNAUTHORIZED"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn render_watch_renders_again_on_save() {
    let user = User::new();
    user.ok(&["init", "live"]).await;
    let mut child = user
        .command(&["render", "live", "-o", "live/out", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let csv = user.path("live/out/lines.csv");
    let until = |what: &str, check: &dyn Fn() -> bool| {
        let started = Instant::now();
        while !check() {
            assert!(started.elapsed() < Duration::from_secs(60), "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let first = tokio::task::spawn_blocking({
        let csv = csv.clone();
        move || {
            until("the first render", &|| {
                std::fs::read(&csv).is_ok_and(|b| !b.is_empty())
            });
            std::fs::read_to_string(&csv).unwrap()
        }
    })
    .await
    .unwrap();
    assert!(first.starts_with("description,"), "{first}");
    // The output folder is inside the watched one: writing it must not loop.
    std::thread::sleep(Duration::from_millis(500));
    let template = user.path("live/lines.csv.j2");
    let text = std::fs::read_to_string(&template).unwrap();
    std::fs::write(&template, text.replace("description,", "item,")).unwrap();
    let second = tokio::task::spawn_blocking(move || {
        until("a render after the save", &|| {
            std::fs::read_to_string(&csv).is_ok_and(|t| t.starts_with("item,"))
        });
        std::fs::read_to_string(&csv).unwrap()
    })
    .await
    .unwrap();
    assert!(second.starts_with("item,quantity"), "{second}");
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    // One render at start, one per save: writing the output triggers nothing.
    assert_eq!(
        stdout.matches("rendered 2 artefacts").count(),
        2,
        "{stdout}"
    );
}

#[test]
fn completions_and_help_cover_every_command() {
    let user = User::new();
    let bash = user.run_blocking(&["completions", "bash"]);
    assert!(bash.status.success());
    let script = String::from_utf8_lossy(&bash.stdout);
    for command in [
        "login", "push", "pull", "render", "launch", "download", "verify", "runs", "batch",
    ] {
        assert!(script.contains(command), "{command}");
    }
    let help = user.run_blocking(&["launch", "--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--idempotency-key"));
    let usage = user.run_blocking(&["launch"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[tokio::test]
async fn a_folder_with_assets_renders_offline_as_the_service_does_and_pulls_them_back() {
    let (app, _worker) = app_with_worker().await;
    let user = User::new();
    user.login(&app, "merchant-a").await;
    let dir = user.path("branded");
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    let logo = crate::assets::unique_png(&uuid::Uuid::new_v4().to_string());
    std::fs::write(dir.join("assets/logo.png"), &logo).unwrap();
    std::fs::write(dir.join("assets/brand.ttf"), crate::assets::font()).unwrap();
    std::fs::write(
        dir.join("letter.typ"),
        "#import \"docbundle.typ\" as fmt\n#set text(font: \"Docbundle Sans\")\n#image(\"logo.png\", width: 3cm)\nTotal: #fmt.money(1234.5, \"EUR\", \"de-DE\")\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("docbundle.yaml"),
        "name: Branded\nassets:\n  logo.png: assets/logo.png\n  brand.ttf: assets/brand.ttf\ndocuments:\n  - name: letter.pdf\n    template: letter.typ\n",
    )
    .unwrap();
    user.ok(&["render", "branded", "-o", "offline"]).await;
    // The push uploads the assets first, then saves the configuration naming them.
    user.ok(&["push", "branded"]).await;
    let launched = user.ok(&["launch", "branded", "--wait", "--json"]).await;
    let run: Value = serde_json::from_str(launched.trim()).unwrap();
    assert_eq!(run["status"], "completed", "{run}");
    user.ok(&["download", run["id"].as_str().unwrap(), "-o", "bundle"])
        .await;
    assert_eq!(
        std::fs::read(user.path("bundle/letter.pdf")).unwrap(),
        std::fs::read(user.path("offline/letter.pdf")).unwrap(),
        "the service renders the folder's assets as the offline render did"
    );
    let id = run["configurationId"].as_str().unwrap();
    user.ok(&["pull", id, "pulled"]).await;
    assert_eq!(
        std::fs::read(user.path("pulled/assets/logo.png")).unwrap(),
        logo
    );
    let yaml = std::fs::read_to_string(user.path("pulled/docbundle.yaml")).unwrap();
    assert!(yaml.contains("logo.png: assets/logo.png"), "{yaml}");

    // A forged asset is refused before anything is sent, naming it.
    std::fs::write(dir.join("assets/logo.png"), b"\x7fELF\x02\x01\x01\x00rest").unwrap();
    let failed = user.run(&["push", "branded"]).await;
    assert!(!failed.status.success());
    assert!(
        stderr(&failed).contains("assets.logo.png") && stderr(&failed).contains("not a PNG"),
        "{}",
        stderr(&failed)
    );
}

/// `verify` and `transparency monitor` against the log, with a witness cosigning its
/// checkpoints: `--witness-key K --quorum 1` passes while the witness vouches for the history,
/// and names the missing cosignature once the history is rewritten (which the witness refused).
#[tokio::test]
async fn verify_checks_the_transparency_log_and_the_monitor_catches_a_fork() {
    let (app, witness) = TestApp::spawn_witnessed(5_000).await;
    let (_worker, stopped) = watch::channel(false);
    tokio::spawn(docbundle_local::poller::run(app.state.clone(), 2, stopped));
    let user = User::new();
    user.login(&app, "merchant-a").await;
    user.ok(&["init", "invoices"]).await;
    user.ok(&["push", "invoices"]).await;
    let run_once = |key: &'static str| {
        let user = &user;
        async move {
            let out = user
                .ok(&[
                    "launch",
                    "invoices",
                    "--wait",
                    "--json",
                    "--idempotency-key",
                    key,
                ])
                .await;
            serde_json::from_str::<Value>(out.trim()).unwrap()
        }
    };
    let first = run_once("log-1").await;
    assert_eq!(first["status"], "completed", "{first}");
    docbundle::app::transparency::issue_checkpoints(&app.state)
        .await
        .unwrap();
    user.ok(&["download", first["id"].as_str().unwrap(), "-o", "first"])
        .await;
    assert!(user.path("first/transparency.json").is_file());
    let verified = user
        .ok(&[
            "verify",
            "first",
            "--witness-key",
            &witness.vkey,
            "--quorum",
            "1",
        ])
        .await;
    assert!(
        verified.contains("cosigned by 1 of the witnesses given (quorum 1)"),
        "{verified}"
    );
    // A bundle without its proof of inclusion cannot satisfy a witness quorum.
    std::fs::create_dir_all(user.path("stripped")).unwrap();
    for entry in std::fs::read_dir(user.path("first")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "transparency.json" {
            std::fs::copy(entry.path(), user.path("stripped").join(entry.file_name())).unwrap();
        }
    }
    let stripped = user
        .run(&["verify", "stripped", "--witness-key", &witness.vkey])
        .await;
    assert_eq!(stripped.status.code(), Some(4), "{}", stderr(&stripped));
    assert!(
        stderr(&stripped).contains("no witness's cosignature can be checked"),
        "{}",
        stderr(&stripped)
    );
    let refused = user
        .run(&["verify", "first", "--witness-key", "not-a-key"])
        .await;
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--witness-key"),
        "{}",
        stderr(&refused)
    );
    let verified = user.ok(&["verify", "first"]).await;
    assert!(
        verified.contains(&format!(
            "in the transparency log {}/{}: entry 0 of 1, checkpoint signature verified",
            app.state.settings.log_origin_prefix,
            harness::MERCHANT_A
        )),
        "{verified}"
    );
    let seen = user
        .ok(&["transparency", "monitor", "--state", "seen.txt"])
        .await;
    assert!(seen.contains("first checkpoint seen"), "{seen}");
    std::fs::copy(user.path("seen.txt"), user.path("kept.txt")).unwrap();
    // The same from the public tiles alone, with the keys kept out of band: no API call.
    let view = app
        .get_json(
            "/api/v1/transparency/checkpoint",
            &harness::token("merchant-a").await,
        )
        .await;
    let tiles = view["tilesUrl"].as_str().unwrap().to_owned();
    let log_key = view["verifierKeys"][0].as_str().unwrap().to_owned();
    let from_tiles = |state: &'static str| {
        let (tiles, log_key, witness_key) = (tiles.clone(), log_key.clone(), witness.vkey.clone());
        let user = &user;
        async move {
            let args = [
                "transparency",
                "monitor",
                "--state",
                state,
                "--tiles",
                &tiles,
                "--log-key",
                &log_key,
                "--witness-key",
                &witness_key,
            ];
            // Without a profile: nothing here needs the API.
            let mut command = user.command(&args);
            command.env("DOCBUNDLE_CONFIG_DIR", user.path("no-config"));
            tokio::task::spawn_blocking(move || command.output().unwrap())
                .await
                .unwrap()
        }
    };
    let tiled = from_tiles("tiles.txt").await;
    assert!(tiled.status.success(), "{}", stderr(&tiled));
    assert!(
        String::from_utf8_lossy(&tiled.stdout).contains("first checkpoint seen"),
        "{}",
        String::from_utf8_lossy(&tiled.stdout)
    );

    let second = run_once("log-2").await;
    docbundle::app::transparency::issue_checkpoints(&app.state)
        .await
        .unwrap();
    let seen = user
        .ok(&["transparency", "monitor", "--state", "seen.txt"])
        .await;
    assert!(seen.contains("2 entries (was 1), consistent"), "{seen}");
    let tiled = from_tiles("tiles.txt").await;
    assert!(
        String::from_utf8_lossy(&tiled.stdout).contains("2 entries (was 1), consistent"),
        "{}",
        stderr(&tiled)
    );
    user.ok(&["download", second["id"].as_str().unwrap(), "-o", "second"])
        .await;
    let verified = user.ok(&["verify", "second", "--since", "kept.txt"]).await;
    assert!(
        verified.contains("consistent with the checkpoint kept at size 1"),
        "{verified}"
    );
    // A kept checkpoint newer than the bundle's (a monitor's) is checked the other way round.
    let verified = user.ok(&["verify", "first", "--since", "seen.txt"]).await;
    assert!(verified.contains("sizes 1 and 2"), "{verified}");
    // A monitor may pin the keys it trusts.
    let keys = app
        .get_json("/api/v1/signing-keys", &harness::token("merchant-a").await)
        .await;
    std::fs::write(user.path("pinned.json"), keys.to_string()).unwrap();
    user.ok(&[
        "transparency",
        "monitor",
        "--state",
        "seen.txt",
        "--keys",
        "pinned.json",
    ])
    .await;

    // The first two entries rewritten in the database: the next checkpoint forks from the
    // one the monitor saw, which says so, fails, and keeps what it had seen.
    let conn = app.state.db.get().await.unwrap();
    conn.execute(
        "UPDATE transparency_nodes SET hash = sha256('rewritten') WHERE merchant_id = $1 AND level = 1 AND idx = 0",
        &[&uuid::Uuid::parse_str(harness::MERCHANT_A).unwrap()],
    )
    .await
    .unwrap();
    let third = run_once("log-3").await;
    docbundle::app::transparency::issue_checkpoints(&app.state)
        .await
        .unwrap();
    // The witness refused the rewritten history: the third bundle's checkpoint, signed by the
    // log and proving its entry, carries no cosignature, and `--quorum 1` says so.
    user.ok(&["download", third["id"].as_str().unwrap(), "-o", "third"])
        .await;
    user.ok(&["verify", "third"]).await;
    let failed = user
        .run(&[
            "verify",
            "third",
            "--witness-key",
            &witness.vkey,
            "--quorum",
            "1",
        ])
        .await;
    assert_eq!(failed.status.code(), Some(4), "{}", stderr(&failed));
    assert!(
        stderr(&failed).contains("is cosigned by 0 of the 1 witnesses required"),
        "{}",
        stderr(&failed)
    );
    // A monitor of the tiles refuses it too, and keeps what it had seen.
    let before = std::fs::read(user.path("tiles.txt")).unwrap();
    let tiled = from_tiles("tiles.txt").await;
    assert_eq!(tiled.status.code(), Some(4), "{}", stderr(&tiled));
    assert!(
        stderr(&tiled).contains("cosigned by 0"),
        "{}",
        stderr(&tiled)
    );
    assert_eq!(std::fs::read(user.path("tiles.txt")).unwrap(), before);
    let before = std::fs::read(user.path("seen.txt")).unwrap();
    let failed = user
        .run(&["transparency", "monitor", "--state", "seen.txt"])
        .await;
    assert_eq!(failed.status.code(), Some(4), "{}", stderr(&failed));
    assert!(stderr(&failed).contains("fork"), "{}", stderr(&failed));
    assert_eq!(std::fs::read(user.path("seen.txt")).unwrap(), before);
    // And the first bundle, checked against the checkpoint kept, no longer is.
    user.ok(&["download", first["id"].as_str().unwrap(), "-o", "again"])
        .await;
    let failed = user.run(&["verify", "again", "--since", "kept.txt"]).await;
    assert_eq!(failed.status.code(), Some(4), "{}", stderr(&failed));
}

/// A bundle with a signed PDF: `verify` checks its signature, chain and time-stamp against the
/// API's trust roots (or a saved copy), says so when it has none to check with, and refuses
/// roots that are not the signer's.
#[tokio::test]
async fn verify_checks_signed_pdfs_against_the_trust_roots() {
    let (app, _worker) = app_with_worker().await;
    let user = User::new();
    user.login(&app, "merchant-a").await;
    let token = harness::token("merchant-a").await;
    let created =
        crate::configurations::create(&app, &token, &crate::signatures::signed_invoice("B-T"))
            .await;
    let config: Value = created.json().await.unwrap();
    let launched: Value = app
        .launch(
            &token,
            &serde_json::json!({"configurationId": config["id"], "seed": {
                "number": "INV-CLI-1", "customer": {"name": "Acme GmbH", "address": "Berlin"},
                "period": "2026-11", "currency": "EUR",
                "lines": [{"description": "Support", "quantity": 1, "unitPrice": 10.0}]}}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = launched["id"].as_str().unwrap();
    let run = app.run_to_end(&token, id).await;
    assert_eq!(run["status"], "completed", "{run}");
    user.ok(&["download", id, "-o", "signed"]).await;

    let verified = user.ok(&["verify", "signed"]).await;
    assert!(
        verified.contains("invoice.pdf: signed by CN=Merchant A (chain to ")
            && verified.contains("time-stamped"),
        "{verified}"
    );
    // Offline with the keys only: listed, not checked.
    let keys: Value = app.get_json("/api/v1/signing-keys", &token).await;
    std::fs::write(user.path("keys.json"), keys.to_string()).unwrap();
    let listed = user.ok(&["verify", "signed", "--keys", "keys.json"]).await;
    assert!(
        listed.contains("not checked without --trust-roots"),
        "{listed}"
    );
    // Offline with saved roots; then with the TSA's root posing as the signing CA.
    let roots: Value = app.get_json("/api/v1/trust-roots", &token).await;
    std::fs::write(user.path("roots.json"), roots.to_string()).unwrap();
    let offline = user
        .ok(&[
            "verify",
            "signed",
            "--keys",
            "keys.json",
            "--trust-roots",
            "roots.json",
        ])
        .await;
    assert!(offline.contains("signed by CN=Merchant A"), "{offline}");
    let wrong = serde_json::json!({"documentSigning": roots["timeStamping"], "timeStamping": roots["timeStamping"]});
    std::fs::write(user.path("wrong.json"), wrong.to_string()).unwrap();
    let failed = user
        .run(&[
            "verify",
            "signed",
            "--keys",
            "keys.json",
            "--trust-roots",
            "wrong.json",
        ])
        .await;
    assert_eq!(failed.status.code(), Some(4), "{}", stderr(&failed));
    assert!(
        stderr(&failed).contains("invoice.pdf: signature: the signer's certificate does not chain"),
        "{}",
        stderr(&failed)
    );
}

#[tokio::test]
async fn verify_checks_an_e_invoices_xml_and_check_einvoice_names_the_rules() {
    let (_app, _worker, user, config_id, id) = a_completed_run(
        &crate::einvoices::sample(),
        &crate::einvoices::sample_seed(),
    )
    .await;
    let id = id.as_str();
    user.ok(&["download", id, "-o", "fx"]).await;
    let verified = user.ok(&["verify", "fx"]).await;
    assert!(
        verified.contains("invoice.pdf: a Factur-X EN 16931 invoice; its XML is the manifest's")
            && verified.contains("factur-x.xml: a Factur-X EN 16931 invoice"),
        "{verified}"
    );
    // Pulled as a folder and rendered offline with the run's seed: the same checks, and the
    // same bytes as the run stored (the XML, and the PDF with its attachment and XMP).
    user.ok(&["pull", &config_id, "fx-folder"]).await;
    std::fs::write(
        user.path("seed.json"),
        crate::einvoices::sample_seed().to_string(),
    )
    .unwrap();
    user.ok(&[
        "render",
        "fx-folder",
        "--seed",
        "seed.json",
        "-o",
        "fx-offline",
    ])
    .await;
    for name in ["factur-x.xml", "invoice.pdf"] {
        assert_eq!(
            std::fs::read(user.path(&format!("fx-offline/{name}"))).unwrap(),
            std::fs::read(user.path(&format!("fx/{name}"))).unwrap(),
            "{name}"
        );
    }
    // The same check offline on files: the downloaded XML passes, a broken total names
    // BR-CO-15 and exits 1.
    let ok = user
        .ok(&["check-einvoice", "--profile", "EN 16931", "fx/factur-x.xml"])
        .await;
    assert!(ok.contains("a valid Factur-X EN 16931 invoice"), "{ok}");
    let xml = std::fs::read_to_string(user.path("fx/factur-x.xml")).unwrap();
    let broken = xml.replace(
        "<ram:GrandTotalAmount>626.4</ram:GrandTotalAmount>",
        "<ram:GrandTotalAmount>626.41</ram:GrandTotalAmount>",
    );
    assert_ne!(broken, xml, "the sample's grand total is 626.4");
    std::fs::write(user.path("broken.xml"), broken).unwrap();
    let failed = user.run(&["check-einvoice", "--json", "broken.xml"]).await;
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    let line: Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(line["valid"], false);
    assert!(
        line["rules"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("BR-CO-15")),
        "{line}"
    );
}

#[tokio::test]
async fn an_xrechnung_verifies_renders_offline_to_the_runs_bytes_and_check_einvoice_names_br_de() {
    let (_app, _worker, user, config_id, id) = a_completed_run(
        &crate::xrechnung::sample(),
        &crate::xrechnung::sample_seed(),
    )
    .await;
    let id = id.as_str();
    user.ok(&["download", id, "-o", "xr"]).await;
    let verified = user.ok(&["verify", "xr"]).await;
    assert!(
        verified.contains("xrechnung.xml: an XRechnung 3.0 invoice; its XML is the manifest's"),
        "{verified}"
    );
    let xml = std::fs::read_to_string(user.path("xr/xrechnung.xml")).unwrap();
    user.ok(&["pull", &config_id, "xr-folder"]).await;
    std::fs::write(
        user.path("seed.json"),
        crate::xrechnung::sample_seed().to_string(),
    )
    .unwrap();
    user.ok(&[
        "render",
        "xr-folder",
        "--seed",
        "seed.json",
        "-o",
        "xr-offline",
    ])
    .await;
    assert_eq!(
        std::fs::read_to_string(user.path("xr-offline/xrechnung.xml")).unwrap(),
        xml
    );
    let ok = user
        .ok(&[
            "check-einvoice",
            "--profile",
            "XRECHNUNG",
            "xr/xrechnung.xml",
        ])
        .await;
    assert!(ok.contains("a valid XRechnung 3.0 invoice"), "{ok}");
    let broken = xml.replace("<ram:BuyerReference>991-01234-44</ram:BuyerReference>", "");
    assert_ne!(broken, xml);
    std::fs::write(user.path("no-leitweg-id.xml"), broken).unwrap();
    let failed = user
        .run(&[
            "check-einvoice",
            "--json",
            "--profile",
            "xrechnung",
            "no-leitweg-id.xml",
        ])
        .await;
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    let line: Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(line["rules"], serde_json::json!(["BR-DE-15"]), "{line}");
    // Its profile is not a Factur-X level: as EN 16931 the same file draws no BR-DE rule.
    let other = user
        .run(&[
            "check-einvoice",
            "--json",
            "--profile",
            "EN 16931",
            "xr/xrechnung.xml",
        ])
        .await;
    let line: Value = serde_json::from_slice(&other.stdout).unwrap();
    assert!(!line.to_string().contains("BR-DE-"), "{line}");
}

#[tokio::test]
async fn a_batch_is_started_waited_for_downloaded_resumably_and_verified() {
    let (app, _worker) = app_with_worker().await;
    let (_stop_batches, batches_stopped) = watch::channel(false);
    tokio::spawn(docbundle_local::poller::run_consumer(
        app.state.clone(),
        docbundle_local::poller::Consumer::BatchWorker,
        2,
        batches_stopped,
    ));
    // The scheduled jobs, as the scheduler runs them (the batch sweep, the relay).
    let (_stop_jobs, jobs_stopped) = watch::channel(false);
    tokio::spawn(docbundle_local::poller::run_relay(
        app.state.clone(),
        Duration::from_secs(2),
        jobs_stopped,
    ));
    let user = User::new();
    user.login(&app, "merchant-a").await;
    let dir = user.path("notes");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("docbundle.yaml"),
        "name: Notes\nschema: {type: object, required: [n]}\ndocuments:\n  - name: note.txt\n    template: note.txt\n",
    )
    .unwrap();
    std::fs::write(dir.join("note.txt"), "Note {{ data.n }}\n").unwrap();
    user.ok(&["push", "notes"]).await;
    let seeds: String = (1..=25)
        .map(|n| {
            if n == 4 {
                "{\"m\": 4}\n".to_owned()
            } else {
                format!("{{\"n\": {n}}}\n")
            }
        })
        .collect();
    std::fs::write(user.path("seeds.ndjson"), seeds).unwrap();

    // One run failed schema at line 4: the batch completes, the exit code says not all did.
    let started = user
        .run(&[
            "batch",
            "start",
            "notes",
            "seeds.ndjson",
            "--wait",
            "--json",
            "--idempotency-key",
            "nov",
        ])
        .await;
    assert_eq!(started.status.code(), Some(3), "{}", stderr(&started));
    let view: Value = serde_json::from_slice(&started.stdout).unwrap();
    assert_eq!(view["status"], "completed");
    assert_eq!(view["totals"]["completed"], 24);
    assert_eq!(view["totals"]["errors"], 1);
    let id = view["id"].as_str().unwrap().to_owned();
    // The same key again: the same batch, nothing new.
    let again = user
        .run(&[
            "batch",
            "start",
            "notes",
            "seeds.ndjson",
            "--json",
            "--idempotency-key",
            "nov",
        ])
        .await;
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["id"], id.as_str());
    let errors = user.ok(&["batch", "errors", &id]).await;
    assert!(errors.contains("line 4\tSCHEMA_VIOLATION"), "{errors}");
    let status = user.ok(&["batch", "status", &id]).await;
    assert!(status.contains("24 completed"), "{status}");

    // Download once every run is in a signed checkpoint (the scheduler signs every 2 s here),
    // interrupted (a bundle removed), resumed; then verify, then a tampered byte.
    let token = harness::token("merchant-a").await;
    let runs = app
        .get_json(&format!("/api/v1/bundles?batchId={id}&limit=100"), &token)
        .await;
    for run in runs["items"].as_array().unwrap() {
        let path = format!("/api/v1/bundles/{}", run["id"].as_str().unwrap());
        for _ in 0..100 {
            if !app.get_json(&path, &token).await["transparency"].is_null() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let out = user.path("month-end");
    let downloaded = user
        .ok(&["batch", "download", &id, "-o", out.to_str().unwrap()])
        .await;
    assert!(
        downloaded.contains("24 bundles (0 there already)"),
        "{downloaded}"
    );
    std::fs::remove_dir_all(out.join("000007")).unwrap();
    let resumed = user
        .ok(&["batch", "download", &id, "-o", out.to_str().unwrap()])
        .await;
    assert!(
        resumed.contains("24 bundles (23 there already)"),
        "{resumed}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("000007/note.txt")).unwrap(),
        "Note 7\n"
    );
    let verified = user.ok(&["verify", out.to_str().unwrap()]).await;
    assert!(verified.contains("verified batch"), "{verified}");
    assert!(verified.contains("24 runs (24 completed"), "{verified}");
    // One time-stamp for the batch, over its signed statement (openssl agrees, against the
    // TSA's published root); its runs have none of their own.
    assert!(
        verified
            .contains("batch-statement.tsr: the batch and every run it lists were time-stamped at"),
        "{verified}"
    );
    assert!(!out.join("000007/manifest.tsr").exists());
    let published = app.get_json("/api/v1/trust-roots", &token).await;
    let tsa_root = out.join("tsa-root.pem");
    std::fs::write(&tsa_root, published["timeStamping"][0].as_str().unwrap()).unwrap();
    let statement = std::fs::read(out.join("batch-statement.json")).unwrap();
    let openssl = |digest: &str| {
        std::process::Command::new("openssl")
            .args(["ts", "-verify", "-digest", digest, "-in"])
            .arg(out.join("batch-statement.tsr"))
            .arg("-CAfile")
            .arg(&tsa_root)
            .output()
            .unwrap()
    };
    let checked = openssl(&hex::encode(sha2::Sha256::digest(&statement)));
    assert!(
        checked.status.success()
            && String::from_utf8_lossy(&checked.stdout).contains("Verification: OK"),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        stderr(&checked)
    );
    assert!(!openssl(&"0".repeat(64)).status.success());
    // A time-stamp of other bytes (its message imprint changed): refused.
    let stamp = std::fs::read(out.join("batch-statement.tsr")).unwrap();
    let digest = sha2::Sha256::digest(&statement);
    let at = stamp
        .windows(32)
        .position(|w| w == digest.as_slice())
        .expect("the time-stamp holds the statement's digest");
    let mut other = stamp.clone();
    other[at] ^= 0x01;
    std::fs::write(out.join("batch-statement.tsr"), &other).unwrap();
    let bad = user.run(&["verify", out.to_str().unwrap()]).await;
    assert_eq!(bad.status.code(), Some(4), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("batch-statement.tsr"),
        "{}",
        stderr(&bad)
    );
    std::fs::write(out.join("batch-statement.tsr"), &stamp).unwrap();
    std::fs::write(out.join("000012/note.txt"), "Note 13\n").unwrap();
    let tampered = user.run(&["verify", out.to_str().unwrap()]).await;
    assert_eq!(tampered.status.code(), Some(4), "{}", stderr(&tampered));
    std::fs::write(out.join("000012/note.txt"), "Note 12\n").unwrap();
    let manifest = std::fs::read_to_string(out.join("batch-manifest.json")).unwrap();
    std::fs::write(
        out.join("batch-manifest.json"),
        manifest.replacen("\"line\":2,", "\"line\":3,", 1),
    )
    .unwrap();
    let forged = user.run(&["verify", out.to_str().unwrap()]).await;
    assert_eq!(forged.status.code(), Some(4), "{}", stderr(&forged));
    assert!(
        stderr(&forged).contains("batch-manifest.json"),
        "{}",
        stderr(&forged)
    );
}
