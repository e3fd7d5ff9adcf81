//! Redis, used only as a cache and for counters: every call is bounded by a short timeout, and a
//! failure opens a brief circuit so that a Redis outage costs requests nothing but the cache.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use tokio::sync::OnceCell;

use crate::error::{with_causes, DependencyError};

/// How long Redis is skipped after a failed call.
const CIRCUIT_OPEN_FOR: Duration = Duration::from_secs(5);

pub struct Cache {
    url: String,
    /// PEM CA bundle for `rediss://` (ElastiCache in-transit encryption uses a public CA, so
    /// the system's roots are the default).
    ca_file: Option<String>,
    timeout: Duration,
    connection: OnceCell<ConnectionManager>,
    skip_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// Connects lazily: nothing touches the network until the first call.
    pub fn new(url: impl Into<String>, timeout: Duration) -> Self {
        Cache {
            url: url.into(),
            ca_file: None,
            timeout,
            connection: OnceCell::new(),
            skip_until: Mutex::new(None),
        }
    }

    /// Trusts the CA in `path` (PEM) for `rediss://` URLs.
    pub fn with_ca_file(mut self, path: Option<String>) -> Self {
        self.ca_file = path;
        self
    }

    fn circuit_open(&self) -> bool {
        let guard = self.skip_until.lock().unwrap_or_else(|p| p.into_inner());
        guard.is_some_and(|until| Instant::now() < until)
    }

    fn trip(&self) {
        let mut guard = self.skip_until.lock().unwrap_or_else(|p| p.into_inner());
        *guard = Some(Instant::now() + CIRCUIT_OPEN_FOR);
    }

    async fn connection(&self) -> Result<ConnectionManager, DependencyError> {
        if self.circuit_open() {
            return Err(DependencyError::failed(
                "redis",
                "connect",
                "skipped after a recent failure",
            ));
        }
        let timeout = self.timeout;
        let url = self.url.clone();
        let ca_file = self.ca_file.clone();
        let result = self
            .connection
            .get_or_try_init(|| async move {
                let client = client(&url, ca_file.as_deref())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                match tokio::time::timeout(
                    timeout * 2,
                    ConnectionManager::new_with_config(client, config),
                )
                .await
                {
                    Ok(Ok(manager)) => Ok(manager),
                    Ok(Err(e)) => Err(DependencyError::failed("redis", "connect", with_causes(&e))),
                    Err(_) => Err(DependencyError::timeout("redis", "connect", timeout * 2)),
                }
            })
            .await;
        match result {
            Ok(manager) => Ok(manager.clone()),
            Err(e) => {
                self.trip();
                Err(e)
            }
        }
    }

    /// Opens the connection now (a cold start's, while the runtime fetches the first event)
    /// so that the first request finds it ready; a failure is only logged (the first request
    /// tries again, or goes without the cache).
    pub async fn warm(&self) {
        if let Err(e) = self.connection().await {
            tracing::warn!(error = %e, "the cache connection opened during init failed");
        }
    }

    async fn call<T, F, Fut>(&self, operation: &str, f: F) -> Result<T, DependencyError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let connection = self.connection().await?;
        let result = match tokio::time::timeout(self.timeout, f(connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(DependencyError::failed("redis", operation, e)),
            Err(_) => Err(DependencyError::timeout("redis", operation, self.timeout)),
        };
        if result.is_err() {
            self.trip();
        }
        result
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>, DependencyError> {
        self.call("get", |mut c| async move { c.get(key).await })
            .await
    }

    /// Sets `key` to `value`, expiring after `ttl` (at least one second).
    pub async fn set_with_ttl(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), DependencyError> {
        let secs = ttl.as_secs().max(1);
        self.call(
            "set",
            |mut c| async move { c.set_ex(key, value, secs).await },
        )
        .await
    }

    /// Remaining lifetime of `key` in seconds (`None` when it does not exist or never expires).
    pub async fn ttl(&self, key: &str) -> Result<Option<u64>, DependencyError> {
        let ttl: i64 = self
            .call("ttl", |mut c| async move { c.ttl(key).await })
            .await?;
        Ok(u64::try_from(ttl).ok())
    }

    /// Increments a counter that expires `window` after its first increment; returns the new
    /// count and the seconds left in the window.
    pub async fn incr_in_window(
        &self,
        key: &str,
        window: Duration,
    ) -> Result<(u64, u64), DependencyError> {
        let secs = window.as_secs().max(1);
        self.call("incr", |mut c| async move {
            let (count, ttl): (u64, i64) = redis::pipe()
                .atomic()
                .incr(key, 1u64)
                .cmd("EXPIRE")
                .arg(key)
                .arg(secs)
                .arg("NX")
                .ignore()
                .ttl(key)
                .query_async(&mut c)
                .await?;
            Ok((count, u64::try_from(ttl).unwrap_or(secs)))
        })
        .await
    }
}

/// The client for `url`: plain for `redis://`, TLS for `rediss://` (trusting `ca_file`, else the
/// system's roots).
fn client(url: &str, ca_file: Option<&str>) -> Result<redis::Client, DependencyError> {
    let open = |e: &dyn std::fmt::Display| DependencyError::failed("redis", "open", e.to_string());
    match (url.starts_with("rediss://"), ca_file) {
        (true, Some(path)) => {
            // The TLS client takes the process's default crypto provider: make it ours.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            let root = std::fs::read(path)
                .map_err(|e| open(&format!("cannot read the CA file {path}: {e}")))?;
            redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root),
                },
            )
            .map_err(|e| open(&e))
        }
        (true, None) => {
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            redis::Client::open(url).map_err(|e| open(&e))
        }
        (false, _) => redis::Client::open(url).map_err(|e| open(&e)),
    }
}

/// A per-merchant limit of `limit` calls of `action` per minute (fixed one-minute windows in
/// Redis): `Some(seconds)` until the next window when over it. Redis being down lets the call
/// through: the limit protects capacity, the cache must not take it away. `0` is no limit.
pub async fn over_limit_per_minute(
    cache: &Cache,
    action: &str,
    merchant: docbundle_domain::MerchantId,
    limit: u64,
) -> Option<u64> {
    if limit == 0 {
        return None;
    }
    let window = chrono::Utc::now().timestamp() / 60;
    let key = format!("docbundle:ratelimit:{action}:{merchant}:{window}");
    match cache.incr_in_window(&key, Duration::from_secs(61)).await {
        Ok((count, _)) if count > limit => {
            let retry_after = 60 - (chrono::Utc::now().timestamp() % 60) as u64;
            Some(retry_after.max(1))
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, action, "rate limit unavailable (Redis); letting the call through");
            None
        }
    }
}
