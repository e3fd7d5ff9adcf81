//! PostgreSQL: the connection pool, the migration runner, and one repository module per table
//! family.

pub mod assets;
pub mod batches;
pub mod configurations;
pub mod deadline;
pub mod erasures;
pub mod holds;
pub mod idempotency;
pub mod inbound;
pub mod merchants;
pub mod migrate;
pub mod outbox;
pub mod retention;
pub mod runs;
pub mod tls;
pub mod transparency;
pub mod webhooks;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use crate::error::{with_causes, DependencyError};

pub use deadpool_postgres::{Object as Connection, Pool as DbPool};

/// Builds the pool without connecting: connections are opened on first use, so a cold start
/// never waits on the network.
/// TLS follows the URL's `sslmode` / `sslrootcert` ([`tls`]).
pub fn pool(database_url: &str, max_size: usize, timeout: Duration) -> anyhow::Result<Pool> {
    let (mut config, connector) = tls::client(database_url)?;
    config.connect_timeout(timeout);
    if config.get_application_name().is_none() {
        config.application_name("docbundle");
    }
    // Every statement must be answered within `timeout` too ([`deadline`]).
    let manager = Manager::from_connect(
        config,
        deadline::DeadlineConnect {
            tls: connector,
            timeout,
        },
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the database pool: {e}"))
}

/// [`pool`], with its first connection opened now, in the background: a cold start's first
/// request then finds it open, or waits for it, instead of opening a second connection beside it
/// (two TLS handshakes and SCRAM exchanges sharing one vCPU, each slower than one alone). The
/// pool holds one connection until the first is open (or has failed, which is only logged: the
/// first request opens one then, and answers 503 if it cannot), then `max_size`.
pub fn warmed_pool(database_url: &str, max_size: usize, timeout: Duration) -> anyhow::Result<Pool> {
    let pool = self::pool(database_url, 1, timeout)?;
    let warm = pool.clone();
    tokio::spawn(async move {
        if let Err(e) = connection(&warm).await {
            tracing::warn!(error = %e, "the database connection opened during init failed");
        }
        warm.resize(max_size);
    });
    Ok(pool)
}

/// Takes a connection from the pool, mapping failure (unreachable server, exhausted pool) to a
/// dependency error. The whole wait is bounded by the pool's wait timeout: waiting for a free
/// slot and then opening a connection in it each had their own timeout, so a request could
/// wait twice as long as the timeout says when the server stopped answering.
pub async fn connection(pool: &Pool) -> Result<Connection, DependencyError> {
    let limit = pool.timeouts().wait.unwrap_or(Duration::from_secs(5));
    match tokio::time::timeout(limit, pool.get()).await {
        Ok(got) => {
            got.map_err(|e| DependencyError::failed("postgres", "get connection", with_causes(&e)))
        }
        Err(_) => Err(DependencyError::timeout(
            "postgres",
            "get connection",
            limit,
        )),
    }
}

/// Maps a query error to a dependency error naming the operation.
pub fn query_error(operation: &str) -> impl FnOnce(tokio_postgres::Error) -> DependencyError + '_ {
    move |e| {
        let detail = match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        };
        DependencyError::failed("postgres", operation, detail)
    }
}
