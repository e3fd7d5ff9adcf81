//! Spawns the real local API for one test: fresh database (migrated), own SQS queue + DLQ,
//! shared bucket, Redis, Vault and issuer from `stack/local.env`.

use std::collections::HashMap;
use std::sync::Once;
use std::time::Duration;

use docbundle::{AppState, Settings};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

pub const MERCHANT_A: &str = "11111111-1111-4111-8111-111111111111";
pub const MERCHANT_B: &str = "22222222-2222-4222-8222-222222222222";

static ENV: Once = Once::new();

/// Loads `stack/local.env` into the process environment (values already set win).
pub fn load_stack_env() {
    ENV.call_once(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/stack/local.env");
        docbundle_local::load_env_file(std::path::Path::new(path)).expect("stack/local.env");
        docbundle::telemetry::init();
    });
}

/// The local stack's settings; documents render in `docbundle-local` processes (this test
/// binary cannot serve as a rendering process).
pub fn stack_settings() -> Settings {
    load_stack_env();
    let mut settings = Settings::from_env().expect("settings from stack/local.env");
    settings.render_program = Some(env!("CARGO_BIN_EXE_docbundle-local").into());
    settings
}

pub struct TestApp {
    pub base: String,
    pub state: AppState,
    pub http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Serves the local API built from `state` on a free loopback port; returns its base URL and
/// the server task.
pub async fn serve(state: AppState) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = docbundle_local::app(state);
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (base, server)
}

/// Creates a fresh database named after a random id and migrates it; returns its URL.
pub async fn fresh_database(settings: &Settings) -> String {
    let name = format!("test_{}", Uuid::new_v4().simple());
    // Over TLS when the URL asks for it (`./dev test-tls`), as the functions connect.
    let (config, connector) =
        docbundle::infra::db::tls::client(&settings.database_url).expect("DATABASE_URL");
    let (client, conn) = config
        .connect(connector)
        .await
        .expect("connect to the docbundle database");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    let (path, query) = match settings.database_url.split_once('?') {
        Some((path, query)) => (path, format!("?{query}")),
        None => (settings.database_url.as_str(), String::new()),
    };
    let url = match path.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}{query}"),
        None => panic!("DATABASE_URL has no database name"),
    };
    docbundle::infra::db::migrate::run(&url)
        .await
        .expect("migrate");
    url
}

/// Creates a queue and its dead-letter queue (redrive after `max_receives`); returns
/// `(queue_url, dlq_url)`.
pub async fn fresh_queue(
    state: &AppState,
    visibility_secs: u32,
    max_receives: u32,
) -> (String, String) {
    let sqs = sqs_client(state).await;
    let id = Uuid::new_v4().simple().to_string();
    let dlq = sqs
        .create_queue()
        .queue_name(format!("test-{id}-dlq"))
        .send()
        .await
        .expect("create dlq");
    let dlq_url = dlq.queue_url.expect("dlq url");
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("dlq attributes");
    let dlq_arn = attrs
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("dlq arn");
    let queue = sqs
        .create_queue()
        .queue_name(format!("test-{id}"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            visibility_secs.to_string(),
        )
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives.to_string()})
                .to_string(),
        )
        .send()
        .await
        .expect("create queue");
    (queue.queue_url.expect("queue url"), dlq_url)
}

/// The AWS SDK configuration the functions would use with `settings` (region, endpoint).
pub async fn aws_config(settings: &Settings) -> aws_config::SdkConfig {
    docbundle::infra::aws_sdk_config(
        &settings.aws_region,
        settings.aws_endpoint_url.as_deref(),
        settings.dependency_timeout,
    )
    .await
}

/// A log bucket of the test's own: every test's merchants have the same ids, and each test's
/// logs are its own (a deployment has one log per merchant). Public, as the stack's is.
pub async fn fresh_log_bucket(settings: &Settings) -> (String, String) {
    let config = aws_config(settings).await;
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let bucket = format!("docbundle-logs-{}", Uuid::new_v4().simple());
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create log bucket");
    let endpoint = settings
        .aws_endpoint_url
        .as_deref()
        .expect("the stack's S3 endpoint")
        .trim_end_matches('/');
    let public = format!("{endpoint}/{bucket}");
    (bucket, public)
}

pub async fn sqs_client(state: &AppState) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&aws_config(&state.settings).await)
}

impl TestApp {
    /// The app with the stack's settings, a fresh database and a fresh queue.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Same, after `adjust` has changed the settings (e.g. auth mode).
    pub async fn spawn_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
        Self::spawn_with_visibility(2, adjust).await
    }

    /// Same, with a run queue whose visibility timeout is `visibility_secs` (the tests of
    /// leases and back-offs use one as long as AWS's, so that only they can bring a message
    /// back soon).
    pub async fn spawn_with_visibility(
        visibility_secs: u32,
        adjust: impl FnOnce(&mut Settings),
    ) -> TestApp {
        Self::spawn_with_queue(visibility_secs, 3, adjust).await
    }

    /// The same with the run queue's dead-letter redrive after `max_receives` receives (the
    /// template's 12, for a test whose runs are retried more than twice).
    pub async fn spawn_with_queue(
        visibility_secs: u32,
        max_receives: u32,
        adjust: impl FnOnce(&mut Settings),
    ) -> TestApp {
        let mut settings = stack_settings();
        let url = fresh_database(&settings).await;
        settings.database_url = url;
        let (log_bucket, log_public_url) = fresh_log_bucket(&settings).await;
        settings.log_bucket = log_bucket;
        settings.log_public_url = Some(log_public_url);
        // Each app's logs have names of their own (as deployments' do), and no witness unless
        // a test starts one: tests reuse the merchants' ids, and a witness keeps what it saw.
        settings.log_origin_prefix = format!(
            "test-{}.localhost/docbundle",
            &Uuid::new_v4().simple().to_string()[..12]
        );
        settings.witnesses = Default::default();
        adjust(&mut settings);
        // A throwaway state is enough to create the queue with the configured endpoint.
        let bootstrap = AppState::build(settings.clone()).await.expect("state");
        let (queue_url, _dlq_url) = fresh_queue(&bootstrap, visibility_secs, max_receives).await;
        settings.runs_queue_url = queue_url;
        let (webhook_queue_url, _dlq_url) = fresh_queue(&bootstrap, 5, 5).await;
        settings.webhook_queue_url = webhook_queue_url;
        let (batch_queue_url, _dlq_url) = fresh_queue(&bootstrap, 30, 12).await;
        settings.batch_queue_url = batch_queue_url;
        let state = AppState::build(settings).await.expect("state");
        seed_merchants(&state).await;

        let (base, server) = serve(state.clone()).await;
        TestApp {
            base,
            state,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// An app whose checkpoints go to a witness of their own ([`LocalWitness`]), which
    /// trusts both merchants' logs under the app's log key; `timeout_ms` bounds a submission.
    pub async fn spawn_witnessed(timeout_ms: u64) -> (TestApp, LocalWitness) {
        let prefix = format!(
            "test-{}.localhost/docbundle",
            &Uuid::new_v4().simple().to_string()[..12]
        );
        let logs = log_verifier_keys(&prefix).await;
        let witness = LocalWitness::start(&logs).await;
        let settings = witness.settings(timeout_ms);
        let app = TestApp::spawn_with(move |s| {
            s.log_origin_prefix = prefix;
            s.witnesses = settings;
        })
        .await;
        (app, witness)
    }
}

/// `(origin, verifier key)` of both merchants' logs under `prefix`, with the newest version
/// of the stack's log key: what a witness of those logs is configured with.
pub async fn log_verifier_keys(prefix: &str) -> Vec<(String, String)> {
    use base64::Engine;
    let state = AppState::build(stack_settings()).await.expect("state");
    let keys = state
        .vault
        .public_keys_of(state.vault.log_key_name())
        .await
        .expect("the log key");
    let newest = keys.last().expect("a version of the log key");
    let public: [u8; 32] = base64::engine::general_purpose::STANDARD
        .decode(&newest.public_key)
        .unwrap()
        .try_into()
        .unwrap();
    [MERCHANT_A, MERCHANT_B]
        .iter()
        .map(|m| {
            let origin = format!("{prefix}/{m}");
            let key = docbundle::domain::checkpoint::verifier_key(&origin, &public);
            (origin, key)
        })
        .collect()
}

async fn seed_merchants(state: &AppState) {
    for (id, name) in [(MERCHANT_A, "Merchant A"), (MERCHANT_B, "Merchant B")] {
        docbundle::infra::db::merchants::insert(&state.db, Uuid::parse_str(id).unwrap(), name)
            .await
            .expect("seed merchant");
        // Both have the sample's logo and font, as a user who followed the README has.
        let merchant = docbundle::domain::MerchantId::from(Uuid::parse_str(id).unwrap());
        for (name, bytes) in sample_assets() {
            docbundle::app::assets::upload(state, merchant, &name, bytes, "test")
                .await
                .expect("sample asset");
        }
    }
}

/// The sample invoice's assets (`events/samples/assets/`): `(name, bytes)`.
pub fn sample_assets() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events/samples/assets");
    let mut assets: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .filter(|(name, _)| !name.ends_with(".txt"))
        .collect();
    assets.sort();
    assets
}

/// Uploads the sample's assets through the API of the server at `base`.
pub async fn upload_sample_assets(http: &reqwest::Client, base: &str, token: &str) {
    for (name, bytes) in sample_assets() {
        let response = http
            .post(format!("{base}/api/v1/assets?name={name}"))
            .bearer_auth(token)
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{name}: {:?}",
            response.text().await
        );
    }
}

/// A client-credentials token from the local issuer.
pub async fn token(client: &str) -> String {
    load_stack_env();
    let issuer = std::env::var("OIDC_ISSUER_URL").expect("OIDC_ISSUER_URL");
    let response = reqwest::Client::new()
        .post(format!("{issuer}/protocol/openid-connect/token"))
        .basic_auth(client, Some(format!("{client}-secret")))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("issuer reachable");
    assert_eq!(response.status(), StatusCode::OK, "token for {client}");
    let body: Value = response.json().await.expect("token json");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// The issuer's counters (tokens issued, introspections answered).
pub async fn issuer_stats() -> HashMap<String, u64> {
    load_stack_env();
    let issuer = std::env::var("OIDC_ISSUER_URL").expect("OIDC_ISSUER_URL");
    let root = issuer.split("/realms/").next().unwrap().to_owned();
    reqwest::get(format!("{root}/_stats"))
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats json")
}

/// Asserts the error envelope: status, code, and `requestId` equal to the `x-request-id` header.
pub async fn assert_envelope(response: reqwest::Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "status");
    let header = response
        .headers()
        .get("x-request-id")
        .expect("x-request-id header")
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.expect("json body");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["requestId"], header.as_str(), "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert!(body["error"]["timestamp"].as_str().is_some());
    body
}

/// The issuer's own signing key (PKCS#8 PEM) and its `kid`, for crafting tokens it would never
/// issue but that are correctly signed.
pub fn issuer_key() -> (Vec<u8>, String) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/.stack/oidc");
    let pem = std::fs::read(format!("{dir}/signing-key.pem")).expect("issuer key (./dev services)");
    let jwk: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/signing-key.json")).unwrap())
            .unwrap();
    (pem, jwk["kid"].as_str().unwrap().to_owned())
}

/// Claims of a valid merchant-A token, for tests to alter.
pub fn valid_claims() -> serde_json::Map<String, Value> {
    load_stack_env();
    let now = chrono::Utc::now().timestamp();
    serde_json::json!({
        "iss": std::env::var("OIDC_ISSUER_URL").unwrap(),
        "aud": "docbundle-api",
        "sub": "service-account-merchant-a",
        "client_id": "merchant-a",
        "azp": "merchant-a",
        "scope": "bundle.read bundle.write config.read config.write",
        "merchant_id": MERCHANT_A,
        "iat": now,
        "exp": now + 300,
    })
    .as_object()
    .unwrap()
    .clone()
}

/// Signs `claims` with RS256 using the issuer's key and `kid`.
pub fn sign_as_issuer(claims: &serde_json::Map<String, Value>) -> String {
    let (pem, kid) = issuer_key();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid);
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap()
}

/// SHA-256 hex of a token, as the issuer's per-token counters name it.
pub fn token_sha256(token: &str) -> String {
    docbundle::domain::digest::sha256_hex(token.as_bytes())
}

/// How many times the issuer introspected `token`.
pub async fn introspections_of(token: &str) -> u64 {
    load_stack_env();
    let issuer = std::env::var("OIDC_ISSUER_URL").expect("OIDC_ISSUER_URL");
    let root = issuer.split("/realms/").next().unwrap().to_owned();
    let stats: Value = reqwest::get(format!(
        "{root}/_stats?token_sha256={}",
        token_sha256(token)
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    stats["token"].as_u64().unwrap()
}

impl TestApp {
    /// Feeds the worker from this app's queue (as the event source mapping would) until the
    /// run is `completed` or `failed`; returns the run as `GET /api/v1/bundles/{id}` shows it.
    pub async fn run_to_end(&self, token: &str, run_id: &str) -> Value {
        for _ in 0..120 {
            let run: Value = self
                .http
                .get(self.url(&format!("/api/v1/bundles/{run_id}")))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if run["status"] == "completed" || run["status"] == "failed" {
                return run;
            }
            docbundle_local::poller::poll_once(&self.state, Duration::from_millis(500))
                .await
                .expect("poll");
        }
        panic!("run {run_id} did not finish");
    }

    /// A state like this app's, with `adjust` applied (e.g. a dependency made unreachable).
    pub async fn state_with(&self, adjust: impl FnOnce(&mut Settings)) -> AppState {
        let mut settings = (*self.state.settings).clone();
        adjust(&mut settings);
        AppState::build(settings).await.expect("state")
    }

    /// `GET path` with `token`, as JSON (whatever the status).
    /// `method path` with `token` and no body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::Response {
        self.http
            .request(method, self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `POST /api/v1/assets?name=…` with `bytes`.
    pub async fn upload_asset(&self, token: &str, name: &str, bytes: Vec<u8>) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/api/v1/assets?name={name}")))
            .bearer_auth(token)
            .body(bytes)
            .send()
            .await
            .unwrap()
    }

    pub async fn launch(&self, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/api/v1/bundles"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

/// Downloads `url` and returns the bytes, asserting `200`.
pub async fn download(url: &str) -> Vec<u8> {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    response.bytes().await.unwrap().to_vec()
}

/// A TCP proxy to a real server that can be frozen: while frozen it passes no byte either way,
/// as a stopped server or a dropped network would, then goes on where it stopped.
pub struct FreezableProxy {
    pub addr: std::net::SocketAddr,
    frozen: tokio::sync::watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl FreezableProxy {
    /// Proxies a fresh loopback port to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> FreezableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (frozen, watch) = tokio::sync::watch::channel(false);
        let upstream = upstream.to_owned();
        let accept = tokio::spawn(async move {
            // Dropped with the accept loop: every connection's pipes end with the proxy.
            let mut pipes = tokio::task::JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (in_read, in_write) = inbound.into_split();
                let (out_read, out_write) = outbound.into_split();
                pipes.spawn(pipe(in_read, out_write, watch.clone()));
                pipes.spawn(pipe(out_read, in_write, watch.clone()));
            }
        });
        FreezableProxy {
            addr,
            frozen,
            accept,
        }
    }

    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // Held, not lost, while frozen.
        if frozen.wait_for(|f| !*f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// An independent witness for one test (PyPI aics-witness, C2SP tlog-witness, installed by
/// `./dev services`): its own identity, SQLite state and port, trusting the logs it is given.
/// Stopped (killed) and started again with its state, as a witness that went away would be.
pub struct LocalWitness {
    pub vkey: String,
    pub url: String,
    dir: std::path::PathBuf,
    listen: String,
    child: Option<std::process::Child>,
}

const WITNESS_BIN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.stack/tlog/bin/aics-witness");

impl LocalWitness {
    /// A new witness trusting each `(origin, log verifier key)`, serving.
    pub async fn start(logs: &[(String, String)]) -> LocalWitness {
        let dir = std::env::temp_dir().join(format!("docbundle-witness-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("witness.json");
        let run = |args: &[&str]| {
            let output = std::process::Command::new(WITNESS_BIN)
                .args(args)
                .arg("--config")
                .arg(&config)
                .env_remove("WITNESS_SEED_HEX")
                .output()
                .expect("aics-witness (./dev services installs it)");
            assert!(
                output.status.success(),
                "aics-witness {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8(output.stdout).unwrap()
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let name = format!(
            "witness.test/{}",
            &Uuid::new_v4().simple().to_string()[..12]
        );
        let vkey = run(&["init", "--name", &name, "--listen", &listen])
            .trim()
            .to_owned();
        for (origin, key) in logs {
            run(&["add-log", "--origin", origin, "--vkey", key]);
        }
        let mut witness = LocalWitness {
            vkey,
            url: format!("http://{listen}"),
            dir,
            listen,
            child: None,
        };
        witness.serve().await;
        witness
    }

    /// Serves again (with its state) and waits for its port.
    pub async fn serve(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("serve.log"))
            .unwrap();
        let child = std::process::Command::new(WITNESS_BIN)
            .args(["serve", "--config"])
            .arg(self.dir.join("witness.json"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("aics-witness serve");
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(&self.listen).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the witness did not start: {}",
            std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
        );
    }

    /// Kills it, as a witness that goes away without a word.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// What it has logged while serving (each cosignature: `cosigned <origin>: size A -> B`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    /// What it says of itself and each log it knows (`aics-witness status --json`).
    pub fn status(&self) -> Value {
        let output = std::process::Command::new(WITNESS_BIN)
            .args(["status", "--json", "--config"])
            .arg(self.dir.join("witness.json"))
            .output()
            .unwrap();
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// The size of `origin` it last cosigned (`None`: nothing yet).
    pub fn cosigned_size(&self, origin: &str) -> Option<u64> {
        self.status()["logs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["origin"] == origin)
            .and_then(|l| l["size"].as_u64())
    }

    /// The settings that submit each checkpoint to it alone, within `timeout_ms`.
    pub fn settings(&self, timeout_ms: u64) -> docbundle::config::WitnessSettings {
        docbundle::config::WitnessSettings {
            list: docbundle::domain::witness::parse_list(&format!("{} {}", self.vkey, self.url))
                .unwrap(),
            quorum: 1,
            timeout: Duration::from_millis(timeout_ms),
        }
    }
}

impl Drop for LocalWitness {
    fn drop(&mut self) {
        self.stop();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// The log at `tiles` checked by a reader no one here wrote (PyPI aics-tlog, through
/// `tests/tools/tlog_audit.py`): the checkpoint signed under `vkey` for `origin` (and cosigned
/// by each of `witnesses`), the root recomputed from the tiles, and the inclusion of every
/// entry whose bytes `entries` holds (`<index>.json`). Its report; panics if it refuses.
pub fn tlog_audit(
    tiles: &str,
    vkey: &str,
    origin: &str,
    entries: &std::path::Path,
    witnesses: &[&str],
) -> Value {
    let output = std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/.stack/tlog/bin/python"
    ))
    .arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/tools/tlog_audit.py"
    ))
    .arg(tiles)
    .arg(vkey)
    .arg(origin)
    .arg(entries)
    .args(witnesses)
    .output()
    .expect("aics-tlog (./dev services installs it)");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(said.trim()).unwrap()
}
