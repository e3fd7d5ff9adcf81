//! Typed settings, read once from the environment.
//!
//! Every function reads the same [`Settings`]; a missing or malformed variable fails start-up
//! with a message naming the variable, before any request is served.

use std::collections::HashMap;
use std::time::Duration;

pub use docbundle_infra::secrets::{PkiSettings, VaultSettings};

/// How bearer tokens are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Verify the JWT signature locally against the issuer's JWKS.
    Jwks,
    /// Ask the issuer (RFC 7662) and cache the answer in Redis.
    Introspection,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub mode: AuthMode,
    /// Issuer URL, e.g. `http://127.0.0.1:8080/realms/docbundle`; must equal the tokens' `iss`.
    pub issuer: String,
    /// Where the functions reach the issuer (`OIDC_ENDPOINT_URL`), when that differs from the
    /// `iss` URL: a private endpoint, or the local issuer seen from a container (`10.0.2.2`).
    /// Discovery is fetched from it and the endpoints it names under the issuer URL are
    /// reached through it. Defaults to the issuer URL.
    pub endpoint: String,
    /// Expected `aud`; when unset the audience is not checked.
    pub audience: Option<String>,
    /// The service's own client, used to call the introspection endpoint.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// Name of the claim that carries the caller's merchant id.
    pub merchant_claim: String,
    /// Upper bound for how long an introspection answer is cached.
    pub introspection_cache_max: Duration,
    /// How long fetched signing keys are trusted before being fetched again.
    pub jwks_cache_ttl: Duration,
    /// Clock skew allowed on `exp` / `nbf`.
    pub leeway: Duration,
}

impl AuthSettings {
    /// `url` as the functions reach it: a URL under the issuer URL moved under
    /// [`AuthSettings::endpoint`]; any other URL as it is.
    pub fn reach(&self, url: &str) -> String {
        match url.strip_prefix(self.issuer.as_str()) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                format!("{}{rest}", self.endpoint)
            }
            _ => url.to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    pub database_pool_size: usize,
    pub redis_url: String,
    /// PEM CA bundle trusted for `rediss://` (`REDIS_CA_FILE`; else the system's roots).
    pub redis_ca_file: Option<String>,
    /// Timeout for one Redis call; Redis is a cache, so this is short.
    pub redis_timeout: Duration,
    pub aws_region: String,
    /// Endpoint override for S3 and SQS (LocalStack); path-style addressing is used when set.
    pub aws_endpoint_url: Option<String>,
    pub artefact_bucket: String,
    /// Where each merchant's log is published as tlog-tiles, under `log/<merchant>/`
    /// (`LOG_BUCKET`; unset: the artefact bucket).
    pub log_bucket: String,
    /// What each merchant's log is called (its checkpoints' origin line and key name):
    /// `<prefix>/<merchant id>` (`LOG_ORIGIN_PREFIX`, e.g. `docs.example.com/docbundle`; unique
    /// across deployments, so that a witness or monitor never mistakes one deployment's log
    /// for another's). Unset: `docbundle`.
    pub log_origin_prefix: String,
    /// Most entries whose tiles one pass publishes ahead of a checkpoint (`LOG_PUBLISH_CHUNK`,
    /// 4,096, a multiple of 256: as many manifests read back, a few seconds): a long history
    /// goes out a chunk per pass.
    pub log_publish_chunk: u64,
    /// The public base URL of the log bucket, when its `log/` prefix is readable by anyone
    /// (`LOG_PUBLIC_URL`: a CloudFront distribution or a public-read bucket; locally
    /// LocalStack's). Unset: the tiles are read through the API, with the merchant's token.
    pub log_public_url: Option<String>,
    pub runs_queue_url: String,
    /// The batch queue (`BATCH_QUEUE_URL`): batches' fan-out and their runs, consumed with its
    /// own concurrency. Unset: the run queue (one queue for everything, as before batches).
    pub batch_queue_url: String,
    /// What batches may do (see [`BatchLimits`]).
    pub batch_limits: BatchLimits,
    /// The completion webhooks' delivery queue (`webhook-dispatcher` consumes it).
    pub webhook_queue_url: String,
    /// Completion webhooks may go to `http` URLs and loopback addresses: local development
    /// only (never link-local, metadata or private addresses).
    pub webhook_allow_insecure: bool,
    /// Delay before each retry of a failed delivery; spent, the delivery is `failed`.
    pub webhook_retry_schedule: Vec<Duration>,
    /// Longest wait for a receiver's answer.
    pub webhook_timeout: Duration,
    /// An endpoint whose every delivery failed for this long is disabled.
    pub webhook_disable_after: Duration,
    pub vault: VaultSettings,
    /// The RFC 3161 time-stamping authority of `B-T`/`B-LT` signatures (`TSA_URL`, with
    /// `TSA_TIMEOUT_MS`); none when unset.
    pub tsa: Option<TsaSettings>,
    /// The witnesses that cosign each log's checkpoints (`WITNESSES`, `WITNESS_QUORUM`,
    /// `WITNESS_TIMEOUT_MS`); none when unset.
    pub witnesses: WitnessSettings,
    /// Roots published besides the PKI engine's (`GET /api/v1/trust-roots`).
    pub trust_roots: TrustRootFiles,
    pub auth: AuthSettings,
    /// Timeout applied to every call to a dependency (S3, SQS, Vault, issuer).
    pub dependency_timeout: Duration,
    /// PostgreSQL's own bound (`DATABASE_TIMEOUT_MS`, 2,000): for a pooled connection (waiting
    /// for a slot and connecting) and for each statement's answer. A request may meet both
    /// once, so an API call waits at most twice this for a database that does not answer:
    /// under the 5 s a caller is promised.
    pub database_timeout: Duration,
    pub presign_expiry: Duration,
    pub max_body_bytes: usize,
    /// Largest asset upload (an image or a font). Lambda's 6 MB payload limit counts the body
    /// base64-encoded, so more than about 4.4 MiB cannot reach a function.
    pub asset_max_bytes: usize,
    /// Launches per merchant per minute (0: unlimited).
    pub launch_rate_limit_per_minute: u64,
    /// Previews per merchant per minute (0: unlimited): each renders synchronously.
    pub preview_rate_limit_per_minute: u64,
    /// How long a rotated-out webhook secret keeps verifying.
    pub webhook_rotation_overlap: Duration,
    /// How long webhook secrets read from Vault are reused.
    pub webhook_secret_cache: Duration,
    /// Attempts after which a transient fault fails a run instead of retrying it (keep it at
    /// most the run queue's `maxReceiveCount`, so the worker decides before the DLQ does).
    pub run_max_attempts: i32,
    /// How long a `processing` run may show no progress before the scheduled sweep fails it.
    pub run_stale_after: Duration,
    /// How SQS messages are held while handled and backed off after a transient fault
    /// (`QUEUE_LEASE_SECONDS`, `QUEUE_RETRY_MAX_SECONDS`; see [`docbundle_infra::sqs_batch`]).
    pub queue_lease: docbundle_infra::sqs_batch::LeasePolicy,
    /// Limits for rendering one document.
    pub render_limits: docbundle_render::RenderLimits,
    /// Where documents are rendered: `process` (default; supervised child processes with
    /// enforced memory and time budgets) or `in-process` (benchmarks of the engines only).
    pub render_isolation: RenderIsolation,
    /// Most rendering processes alive at once per function instance.
    pub render_processes: usize,
    /// The binary started as a rendering process; this binary when unset.
    pub render_program: Option<std::path::PathBuf>,
    /// Bounds and defaults of configurations' retention (`RETENTION_*`).
    pub retention: docbundle_domain::retention::RetentionLimits,
    /// Most runs one pass of the retention job expires (`RETENTION_PASS_RUNS`).
    pub retention_pass_runs: i64,
}

/// What batches may do, per merchant and per batch (documented in docs/batches.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Seeds (non-blank lines) in one batch (`BATCH_MAX_SEEDS`, 100,000).
    pub max_seeds: u32,
    /// Bytes of one seeds file (`BATCH_MAX_BYTES`, 256 MiB).
    pub max_bytes: u64,
    /// Bytes of one line: a seed is as large as a launch's body may be (`MAX_BODY_BYTES`).
    pub max_line_bytes: usize,
    /// Batches running at once per merchant (`BATCH_MAX_RUNNING`, 3).
    pub max_running: i64,
    /// Seeds of batches started in the last 24 hours per merchant (`BATCH_SEEDS_PER_DAY`,
    /// 1,000,000).
    pub seeds_per_day: i64,
    /// Lines the fan-out writes per transaction (`BATCH_CHUNK_LINES`, 500).
    pub chunk_lines: usize,
    /// How long one fan-out message works before handing on to the next
    /// (`BATCH_FANOUT_SLICE_SECONDS`, 60): well inside the worker's timeout.
    pub fan_out_slice: Duration,
    /// Batch runs one process works on at once (`BATCH_RUN_CONCURRENCY`, the rendering
    /// processes'), behind any interactive run ([`crate::lanes`]).
    pub run_concurrency: usize,
}

/// Where documents are rendered (see [`docbundle_render::Isolation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderIsolation {
    Process,
    InProcess,
}

/// A setting that is missing or cannot be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("missing environment variable {0}")]
    Missing(&'static str),
    #[error("environment variable {var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
}

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_lookup(|name| vars.get(name).cloned())
    }

    /// Reads the settings from `vars` and, when `SECRETS_ARN` is set, from the secret it
    /// names (see [`docbundle_infra::secret_settings`]); a setting missing from both says so.
    pub async fn from_vars_and_secret(vars: HashMap<String, String>) -> anyhow::Result<Self> {
        use docbundle_infra::secret_settings::{self, SECRETS_ARN, SECRET_SETTINGS};
        let arn = secret_settings::secret_arn(&vars);
        let vars = secret_settings::resolve(vars).await?;
        Self::from_lookup(|name| vars.get(name).cloned()).map_err(|e| match (&e, &arn) {
            (ConfigError::Missing(var), Some(arn)) if SECRET_SETTINGS.contains(var) => {
                anyhow::anyhow!(
                    "{var} is neither in the environment nor in secret {arn} ({SECRETS_ARN})"
                )
            }
            _ => e.into(),
        })
    }

    /// Reads the settings through `lookup`, so that parsing can be tested without touching the
    /// process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        // Read in the order a reader of the README meets them, so the first error is the
        // most fundamental missing piece.
        let database_url = env.required("DATABASE_URL")?;
        // Through RDS Proxy: the template sets its endpoint here.
        let database_url = match env.optional("DATABASE_HOST") {
            Some(host) => docbundle_infra::db::tls::with_host(&database_url, host.trim()).map_err(
                |reason| ConfigError::Invalid {
                    var: "DATABASE_HOST",
                    reason,
                },
            )?,
            None => database_url,
        };
        let redis_url = env.url("REDIS_URL")?;
        let artefact_bucket = env.required("ARTEFACT_BUCKET")?;
        let runs_queue_url = env.url("RUNS_QUEUE_URL")?;
        let webhook_queue_url = env.url("WEBHOOK_QUEUE_URL")?;
        let vault_addr = env.url("VAULT_ADDR")?;
        let role_id = env.required("VAULT_ROLE_ID")?;
        let secret_id = env.required("VAULT_SECRET_ID")?;
        let auth = auth_settings(&env)?;
        Ok(Settings {
            database_url,
            database_pool_size: env.parse_or("DATABASE_POOL_SIZE", 4)?,
            redis_url,
            redis_ca_file: env.optional("REDIS_CA_FILE"),
            redis_timeout: Duration::from_millis(env.parse_or("REDIS_TIMEOUT_MS", 250)?),
            aws_region: docbundle_infra::aws_region(|name| (env.0)(name)),
            aws_endpoint_url: match env.optional("AWS_ENDPOINT_URL") {
                Some(_) => Some(env.url("AWS_ENDPOINT_URL")?),
                None => None,
            },
            log_bucket: env
                .optional("LOG_BUCKET")
                .unwrap_or_else(|| artefact_bucket.clone()),
            log_origin_prefix: log_origin_prefix(&env)?,
            log_publish_chunk: (env.parse_or("LOG_PUBLISH_CHUNK", 4_096u64)? / 256).max(1) * 256,
            log_public_url: match env.optional("LOG_PUBLIC_URL") {
                Some(_) => Some(env.url("LOG_PUBLIC_URL")?.trim_end_matches('/').to_owned()),
                None => None,
            },
            artefact_bucket,
            batch_queue_url: match env.optional("BATCH_QUEUE_URL") {
                Some(_) => env.url("BATCH_QUEUE_URL")?,
                None => runs_queue_url.clone(),
            },
            batch_limits: BatchLimits {
                max_seeds: env.parse_or("BATCH_MAX_SEEDS", 100_000u32)?.max(1),
                // Line numbers are 32-bit: a file has fewer lines than bytes.
                max_bytes: env
                    .parse_or("BATCH_MAX_BYTES", 256 * 1024 * 1024u64)?
                    .min(i32::MAX as u64),
                max_line_bytes: env.parse_or("MAX_BODY_BYTES", 1024 * 1024usize)?,
                max_running: env.parse_or("BATCH_MAX_RUNNING", 3i64)?,
                seeds_per_day: env.parse_or("BATCH_SEEDS_PER_DAY", 1_000_000i64)?,
                chunk_lines: env.parse_or("BATCH_CHUNK_LINES", 500usize)?.clamp(1, 5_000),
                fan_out_slice: Duration::from_secs(
                    env.parse_or("BATCH_FANOUT_SLICE_SECONDS", 60u64)?
                        .clamp(1, 600),
                ),
                run_concurrency: env
                    .parse_or(
                        "BATCH_RUN_CONCURRENCY",
                        env.parse_or("RENDER_PROCESSES", 2usize)?,
                    )?
                    .max(1),
            },
            runs_queue_url,
            webhook_queue_url,
            webhook_allow_insecure: env.parse_or("WEBHOOK_ALLOW_INSECURE_URLS", false)?,
            webhook_retry_schedule: retry_schedule(&env)?,
            webhook_timeout: Duration::from_secs(
                env.parse_or("WEBHOOK_TIMEOUT_SECONDS", 10u64)?.clamp(1, 60),
            ),
            webhook_disable_after: Duration::from_secs(
                env.parse_or("WEBHOOK_DISABLE_AFTER_SECONDS", 5 * 24 * 3600)?,
            ),
            vault: VaultSettings {
                addr: vault_addr,
                ca_cert: env.optional("VAULT_CACERT"),
                approle_mount: env.or("VAULT_APPROLE_MOUNT", "approle"),
                role_id,
                secret_id,
                transit_mount: env.or("VAULT_TRANSIT_MOUNT", "transit"),
                signing_key: env.or("VAULT_SIGNING_KEY", "manifest-signing"),
                log_key: env.or("VAULT_LOG_KEY", "log-signing"),
                kv_mount: env.or("VAULT_KV_MOUNT", "secret"),
                document_key_prefix: env.or("VAULT_DOCUMENT_KEY_PREFIX", "documents-"),
                pki: document_signing_ca(&env)?,
            },
            tsa: tsa_settings(&env)?,
            witnesses: witness_settings(&env)?,
            trust_roots: TrustRootFiles {
                document_signing: env
                    .optional("DOCUMENT_SIGNING_TRUST_ROOTS")
                    .map(std::path::PathBuf::from),
                time_stamping: env
                    .optional("TSA_TRUST_ROOTS")
                    .map(std::path::PathBuf::from),
            },
            auth,
            dependency_timeout: Duration::from_millis(
                env.parse_or("DEPENDENCY_TIMEOUT_MS", 5_000)?,
            ),
            database_timeout: Duration::from_millis(
                env.parse_or("DATABASE_TIMEOUT_MS", 2_000u64)?.max(100),
            ),
            presign_expiry: Duration::from_secs(env.parse_or("PRESIGN_EXPIRY_SECONDS", 900)?),
            max_body_bytes: env.parse_or("MAX_BODY_BYTES", 1024 * 1024)?,
            asset_max_bytes: env.parse_or("ASSET_MAX_BYTES", 4 * 1024 * 1024)?,
            launch_rate_limit_per_minute: env.parse_or("LAUNCH_RATE_LIMIT_PER_MINUTE", 600)?,
            preview_rate_limit_per_minute: env.parse_or("PREVIEW_RATE_LIMIT_PER_MINUTE", 60)?,
            run_max_attempts: env.parse_or("RUN_MAX_ATTEMPTS", 12i32)?.max(1),
            queue_lease: docbundle_infra::sqs_batch::LeasePolicy {
                lease: Duration::from_secs(env.parse_or("QUEUE_LEASE_SECONDS", 10u64)?.max(1)),
                retry_max: Duration::from_secs(
                    env.parse_or("QUEUE_RETRY_MAX_SECONDS", 300u64)?.max(2),
                ),
            },
            run_stale_after: Duration::from_secs(env.parse_or("RUN_STALE_AFTER_SECONDS", 3600)?),
            webhook_rotation_overlap: Duration::from_secs(
                env.parse_or("WEBHOOK_ROTATION_OVERLAP_SECONDS", 24 * 3600)?,
            ),
            webhook_secret_cache: Duration::from_secs(
                env.parse_or("WEBHOOK_SECRET_CACHE_SECONDS", 30)?,
            ),
            render_limits: render_limits(&env)?,
            render_isolation: render_isolation(&env)?,
            render_processes: env.parse_or("RENDER_PROCESSES", 2usize)?.max(1),
            render_program: env.optional("RENDER_PROGRAM").map(std::path::PathBuf::from),
            retention: retention_limits(&env)?,
            retention_pass_runs: env
                .parse_or("RETENTION_PASS_RUNS", 500i64)?
                .clamp(1, 10_000),
        })
    }
}

/// `RETENTION_MIN` (default `P1D`), `RETENTION_MAX` (default `forever`),
/// `RETENTION_DEFAULT_ARTEFACTS` and `RETENTION_DEFAULT_SEEDS` (default `forever`, and never
/// above the maximum).
fn retention_limits(
    env: &Env<'_>,
) -> Result<docbundle_domain::retention::RetentionLimits, ConfigError> {
    use docbundle_domain::retention::{Period, Retention, RetentionLimits};
    let period = |var: &'static str, default: &str| {
        Period::parse(&env.or(var, default)).map_err(|reason| ConfigError::Invalid { var, reason })
    };
    let min = period("RETENTION_MIN", "P1D")?;
    if min == Period::Forever {
        return Err(ConfigError::Invalid {
            var: "RETENTION_MIN",
            reason: "must be a duration".into(),
        });
    }
    let bounds = RetentionLimits {
        min,
        max: period("RETENTION_MAX", "forever")?,
        ..RetentionLimits::default()
    };
    let default = |var: &'static str| {
        bounds
            .check(period(var, "forever")?)
            .map_err(|reason| ConfigError::Invalid { var, reason })
    };
    let default = Retention {
        artefacts: default("RETENTION_DEFAULT_ARTEFACTS")?,
        seeds: default("RETENTION_DEFAULT_SEEDS")?,
    };
    Ok(RetentionLimits { default, ..bounds })
}

/// `WEBHOOK_RETRY_SCHEDULE_SECONDS`: comma-separated seconds, about a day in all by default.
fn retry_schedule(env: &Env<'_>) -> Result<Vec<Duration>, ConfigError> {
    const VAR: &str = "WEBHOOK_RETRY_SCHEDULE_SECONDS";
    let raw = env.or(VAR, "5,300,1800,7200,18000,36000,36000");
    let schedule = raw
        .split(',')
        .map(|s| s.trim().parse::<u64>().map(Duration::from_secs))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::Invalid {
            var: VAR,
            reason: format!("`{raw}`: {e}"),
        })?;
    if schedule.len() > 20 || schedule.iter().any(|d| d.as_secs() > 7 * 24 * 3600) {
        return Err(ConfigError::Invalid {
            var: VAR,
            reason: "at most 20 retries of at most 7 days each".to_owned(),
        });
    }
    Ok(schedule)
}

/// How tokens are checked: the mode, the issuer and, for introspection, the service's client.
fn auth_settings(env: &Env<'_>) -> Result<AuthSettings, ConfigError> {
    let mode = match env.optional("AUTH_MODE").as_deref() {
        None | Some("jwks") => AuthMode::Jwks,
        Some("introspection") => AuthMode::Introspection,
        Some(other) => {
            return Err(ConfigError::Invalid {
                var: "AUTH_MODE",
                reason: format!("expected `jwks` or `introspection`, got `{other}`"),
            })
        }
    };
    let client_id = env.optional("OIDC_CLIENT_ID");
    let client_secret = env.optional("OIDC_CLIENT_SECRET");
    if mode == AuthMode::Introspection {
        if client_id.is_none() {
            return Err(ConfigError::Missing("OIDC_CLIENT_ID"));
        }
        if client_secret.is_none() {
            return Err(ConfigError::Missing("OIDC_CLIENT_SECRET"));
        }
    }
    let issuer = env.url("OIDC_ISSUER_URL")?.trim_end_matches('/').to_owned();
    let endpoint = match env.optional("OIDC_ENDPOINT_URL") {
        Some(_) => env
            .url("OIDC_ENDPOINT_URL")?
            .trim_end_matches('/')
            .to_owned(),
        None => issuer.clone(),
    };
    Ok(AuthSettings {
        mode,
        issuer,
        endpoint,
        audience: env.optional("OIDC_AUDIENCE"),
        client_id,
        client_secret,
        merchant_claim: env.or("MERCHANT_CLAIM", "merchant_id"),
        introspection_cache_max: Duration::from_secs(
            env.parse_or("INTROSPECTION_CACHE_MAX_SECONDS", 300)?,
        ),
        jwks_cache_ttl: Duration::from_secs(env.parse_or("JWKS_CACHE_SECONDS", 600)?),
        leeway: Duration::from_secs(env.parse_or("TOKEN_LEEWAY_SECONDS", 30)?),
    })
}

/// Where document-signing certificates come from: `DOCUMENT_SIGNING_CA=vault-pki` (default:
/// Vault's PKI engine at `VAULT_PKI_MOUNT`, role `VAULT_PKI_ROLE`) or `external` (each
/// merchant's chain is imported from another CA).
fn document_signing_ca(env: &Env<'_>) -> Result<Option<PkiSettings>, ConfigError> {
    match env.optional("DOCUMENT_SIGNING_CA").as_deref() {
        None | Some("vault-pki") => Ok(Some(PkiSettings {
            mount: env.or("VAULT_PKI_MOUNT", "pki"),
            role: env.or("VAULT_PKI_ROLE", "document-signing"),
        })),
        Some("external") => Ok(None),
        Some(_) => Err(ConfigError::Invalid {
            var: "DOCUMENT_SIGNING_CA",
            reason: "must be vault-pki or external".into(),
        }),
    }
}

/// A time-stamping authority: where, and how long one request may take.
#[derive(Debug, Clone)]
pub struct TsaSettings {
    pub url: String,
    pub timeout: Duration,
}

/// Extra roots `GET /api/v1/trust-roots` publishes, each a PEM file: the TSA's
/// (`TSA_TRUST_ROOTS`) and, with an external CA, the document-signing roots
/// (`DOCUMENT_SIGNING_TRUST_ROOTS`).
#[derive(Debug, Clone, Default)]
pub struct TrustRootFiles {
    pub document_signing: Option<std::path::PathBuf>,
    pub time_stamping: Option<std::path::PathBuf>,
}

/// `LOG_ORIGIN_PREFIX`: a key name once the merchant id is added (C2SP signed notes: no
/// spaces, no `+`), without a trailing `/`, at most 200 bytes.
fn log_origin_prefix(env: &Env<'_>) -> Result<String, ConfigError> {
    let prefix = env.or("LOG_ORIGIN_PREFIX", "docbundle");
    let valid = !prefix.is_empty()
        && prefix.len() <= 200
        && !prefix.ends_with('/')
        && docbundle_domain::checkpoint::valid_key_name(&prefix)
        && !prefix.chars().any(char::is_control);
    if !valid {
        return Err(ConfigError::Invalid {
            var: "LOG_ORIGIN_PREFIX",
            reason: "a name without spaces, `+` or a trailing `/`, at most 200 bytes".to_owned(),
        });
    }
    Ok(prefix)
}

/// The witnesses each checkpoint is submitted to, and how many cosignatures it needs.
#[derive(Debug, Clone, Default)]
pub struct WitnessSettings {
    /// `WITNESSES`: `<verifier key> <URL>` entries separated by `;`.
    pub list: Vec<docbundle_domain::witness::Witness>,
    /// `WITNESS_QUORUM`: cosignatures a checkpoint needs before it stops being flagged
    /// (default: one per witness, so every witness counts; at most the number of witnesses).
    pub quorum: usize,
    /// `WITNESS_TIMEOUT_MS` (5,000): the longest one submission may take, answer included.
    pub timeout: Duration,
}

fn witness_settings(env: &Env<'_>) -> Result<WitnessSettings, ConfigError> {
    let list = docbundle_domain::witness::parse_list(&env.or("WITNESSES", "")).map_err(|e| {
        ConfigError::Invalid {
            var: "WITNESSES",
            reason: e.to_string(),
        }
    })?;
    let quorum = env.parse_or("WITNESS_QUORUM", list.len())?;
    if quorum > list.len() {
        return Err(ConfigError::Invalid {
            var: "WITNESS_QUORUM",
            reason: format!("{quorum} cosignatures out of {} witnesses", list.len()),
        });
    }
    Ok(WitnessSettings {
        list,
        quorum,
        timeout: Duration::from_millis(env.parse_or("WITNESS_TIMEOUT_MS", 5_000u64)?.max(1)),
    })
}

fn tsa_settings(env: &Env<'_>) -> Result<Option<TsaSettings>, ConfigError> {
    if env.optional("TSA_URL").is_none() {
        return Ok(None);
    }
    Ok(Some(TsaSettings {
        url: env.url("TSA_URL")?,
        timeout: Duration::from_millis(env.parse_or("TSA_TIMEOUT_MS", 10_000u64)?.max(1)),
    }))
}

/// The render limits and the number of rendering processes (`RENDER_*`, `RENDER_PROCESSES`) as
/// a function would read them from the process environment: what an offline render (the
/// `docbundle render` command) applies, so that a template fails there as it would in a run.
pub fn render_settings_from_env() -> Result<(docbundle_render::RenderLimits, usize), ConfigError> {
    let lookup = |name: &str| std::env::var(name).ok();
    let env = Env(&lookup);
    Ok((
        render_limits(&env)?,
        env.parse_or("RENDER_PROCESSES", 2usize)?.max(1),
    ))
}

/// `RENDER_*` limits, each defaulting to [`docbundle_render::RenderLimits::default`].
fn render_limits(env: &Env<'_>) -> Result<docbundle_render::RenderLimits, ConfigError> {
    let d = docbundle_render::RenderLimits::default();
    Ok(docbundle_render::RenderLimits {
        max_template_bytes: env.parse_or("RENDER_MAX_TEMPLATE_BYTES", d.max_template_bytes)?,
        max_output_bytes: env.parse_or("RENDER_MAX_OUTPUT_BYTES", d.max_output_bytes)?,
        fuel: env.parse_or("RENDER_FUEL", d.fuel)?,
        max_pages: env.parse_or("RENDER_MAX_PAGES", d.max_pages)?,
        time_budget: Duration::from_millis(
            env.parse_or("RENDER_TIME_BUDGET_MS", d.time_budget.as_millis() as u64)?,
        ),
        max_memory_bytes: env
            .parse_or("RENDER_MEMORY_BUDGET_MB", d.max_memory_bytes >> 20)?
            .checked_mul(1024 * 1024)
            .ok_or(ConfigError::Invalid {
                var: "RENDER_MEMORY_BUDGET_MB",
                reason: "too large".to_owned(),
            })?,
    })
}

fn render_isolation(env: &Env<'_>) -> Result<RenderIsolation, ConfigError> {
    match env.optional("RENDER_ISOLATION").as_deref() {
        None | Some("process") => Ok(RenderIsolation::Process),
        Some("in-process") => Ok(RenderIsolation::InProcess),
        Some(other) => Err(ConfigError::Invalid {
            var: "RENDER_ISOLATION",
            reason: format!("expected `process` or `in-process`, got `{other}`"),
        }),
    }
}

struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn optional(&self, var: &'static str) -> Option<String> {
        (self.0)(var).filter(|v| !v.trim().is_empty())
    }

    fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        self.optional(var).ok_or(ConfigError::Missing(var))
    }

    fn or(&self, var: &'static str, default: &str) -> String {
        self.optional(var).unwrap_or_else(|| default.to_owned())
    }

    fn url(&self, var: &'static str) -> Result<String, ConfigError> {
        let value = self.required(var)?;
        let has_scheme = ["http://", "https://", "redis://", "rediss://"]
            .iter()
            .any(|scheme| value.starts_with(scheme));
        if !has_scheme {
            // A URL that may carry a credential (a Redis AUTH token) is not repeated in logs.
            let shown = if docbundle_infra::secret_settings::SECRET_SETTINGS.contains(&var) {
                "the value".to_owned()
            } else {
                format!("`{value}`")
            };
            return Err(ConfigError::Invalid {
                var,
                reason: format!("{shown} is not an http(s) or redis URL"),
            });
        }
        Ok(value)
    }

    fn parse_or<T>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        match self.optional(var) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e: T::Err| ConfigError::Invalid {
                    var,
                    reason: format!("`{raw}`: {e}"),
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("DATABASE_URL", "postgres://localhost/docbundle"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("ARTEFACT_BUCKET", "docbundle-artefacts"),
            (
                "RUNS_QUEUE_URL",
                "http://127.0.0.1:4566/queue/us-east-1/000000000000/docbundle-runs",
            ),
            (
                "WEBHOOK_QUEUE_URL",
                "http://127.0.0.1:4566/queue/us-east-1/000000000000/docbundle-webhooks",
            ),
            ("VAULT_ADDR", "http://127.0.0.1:8200"),
            ("VAULT_ROLE_ID", "role"),
            ("VAULT_SECRET_ID", "secret"),
            ("OIDC_ISSUER_URL", "http://127.0.0.1:8080/realms/docbundle/"),
        ])
    }

    fn parse(vars: &HashMap<&'static str, &'static str>) -> Result<Settings, ConfigError> {
        Settings::from_lookup(|k| vars.get(k).map(|v| v.to_string()))
    }

    #[test]
    fn complete_environment_parses_with_defaults() {
        let s = parse(&complete()).expect("settings");
        assert_eq!(s.auth.mode, AuthMode::Jwks);
        assert_eq!(s.auth.issuer, "http://127.0.0.1:8080/realms/docbundle");
        assert_eq!(s.auth.merchant_claim, "merchant_id");
        assert_eq!(s.vault.signing_key, "manifest-signing");
        assert_eq!(s.presign_expiry, Duration::from_secs(900));
        assert_eq!(s.aws_region, "us-east-1");
        assert!(s.aws_endpoint_url.is_none());
        assert!(!s.webhook_allow_insecure);
        assert_eq!(s.webhook_retry_schedule.len(), 7);
        assert_eq!(s.webhook_retry_schedule[0], Duration::from_secs(5));
        assert_eq!(
            s.webhook_retry_schedule.iter().sum::<Duration>(),
            Duration::from_secs(99_305)
        );
    }

    #[test]
    fn database_host_puts_the_proxy_in_database_urls_place() {
        let mut vars = complete();
        vars.insert("DATABASE_HOST", "db.proxy-abc.eu-west-1.rds.amazonaws.com");
        let s = parse(&vars).expect("settings");
        assert_eq!(
            s.database_url,
            "postgres://db.proxy-abc.eu-west-1.rds.amazonaws.com/docbundle"
        );
        vars.insert("DATABASE_HOST", "evil@host/x");
        assert!(matches!(
            parse(&vars),
            Err(ConfigError::Invalid {
                var: "DATABASE_HOST",
                ..
            })
        ));
    }

    #[test]
    fn a_bad_retry_schedule_is_named() {
        for bad in ["5,x", "5,-1", "999999999", ""] {
            let mut vars = complete();
            vars.insert("WEBHOOK_RETRY_SCHEDULE_SECONDS", bad);
            match parse(&vars) {
                Err(ConfigError::Invalid { var, .. }) => {
                    assert_eq!(var, "WEBHOOK_RETRY_SCHEDULE_SECONDS")
                }
                other => assert!(bad.is_empty() && other.is_ok(), "{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn each_missing_variable_is_named() {
        for var in [
            "DATABASE_URL",
            "REDIS_URL",
            "ARTEFACT_BUCKET",
            "RUNS_QUEUE_URL",
            "WEBHOOK_QUEUE_URL",
            "VAULT_ADDR",
            "VAULT_ROLE_ID",
            "VAULT_SECRET_ID",
            "OIDC_ISSUER_URL",
        ] {
            let mut vars = complete();
            vars.remove(var);
            let err = parse(&vars).expect_err(var);
            assert_eq!(err, ConfigError::Missing(var));
            assert!(err.to_string().contains(var));
        }
    }

    #[test]
    fn introspection_needs_client_credentials() {
        let mut vars = complete();
        vars.insert("AUTH_MODE", "introspection");
        assert_eq!(
            parse(&vars).unwrap_err(),
            ConfigError::Missing("OIDC_CLIENT_ID")
        );
        vars.insert("OIDC_CLIENT_ID", "docbundle-api");
        vars.insert("OIDC_CLIENT_SECRET", "s");
        assert_eq!(parse(&vars).unwrap().auth.mode, AuthMode::Introspection);
    }

    #[test]
    fn malformed_values_are_explained() {
        let mut vars = complete();
        vars.insert("DEPENDENCY_TIMEOUT_MS", "soon");
        let err = parse(&vars).unwrap_err().to_string();
        assert!(
            err.contains("DEPENDENCY_TIMEOUT_MS") && err.contains("soon"),
            "{err}"
        );

        let mut vars = complete();
        vars.insert("AUTH_MODE", "magic");
        assert!(parse(&vars).unwrap_err().to_string().contains("AUTH_MODE"));

        let mut vars = complete();
        vars.insert("VAULT_ADDR", "127.0.0.1:8200");
        assert!(parse(&vars).unwrap_err().to_string().contains("VAULT_ADDR"));

        // A malformed URL that may hold a credential is named, not repeated.
        let mut vars = complete();
        vars.insert("REDIS_URL", "redis:/:s3cr3t-token@cache:6379");
        let err = parse(&vars).unwrap_err().to_string();
        assert!(
            err.contains("REDIS_URL") && !err.contains("s3cr3t"),
            "{err}"
        );
    }

    #[test]
    fn the_issuer_can_be_reached_through_another_endpoint() {
        let mut vars = complete();
        let settings = parse(&vars).unwrap().auth;
        assert_eq!(settings.endpoint, "http://127.0.0.1:8080/realms/docbundle");
        let jwks = "http://127.0.0.1:8080/realms/docbundle/protocol/openid-connect/certs";
        assert_eq!(settings.reach(jwks), jwks);

        vars.insert(
            "OIDC_ENDPOINT_URL",
            "http://10.0.2.2:8080/realms/docbundle/",
        );
        let settings = parse(&vars).unwrap().auth;
        // Tokens still name the issuer; only where it is reached changes.
        assert_eq!(settings.issuer, "http://127.0.0.1:8080/realms/docbundle");
        assert_eq!(
            settings.reach(jwks),
            "http://10.0.2.2:8080/realms/docbundle/protocol/openid-connect/certs"
        );
        // A URL merely sharing a prefix with the issuer, or elsewhere, is left alone.
        let other_realm = "http://127.0.0.1:8080/realms/docbundle-other/certs";
        assert_eq!(settings.reach(other_realm), other_realm);
        assert_eq!(
            settings.reach("https://keys.example.com/certs"),
            "https://keys.example.com/certs"
        );

        vars.insert("OIDC_ENDPOINT_URL", "10.0.2.2:8080");
        assert!(parse(&vars)
            .unwrap_err()
            .to_string()
            .contains("OIDC_ENDPOINT_URL"));
    }
}
