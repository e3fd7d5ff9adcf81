//! Applies `migrations/*.sql` with refinery, serialised across processes by an advisory lock so
//! that several functions (or tests) starting at once cannot race.

mod embedded {
    refinery::embed_migrations!("../../migrations");
}

/// Arbitrary constant: the advisory lock key reserved for migrations.
const MIGRATION_LOCK_KEY: i64 = 0x646f_6362_756e_646c;

/// Connects to `database_url` and applies every pending migration. Returns the versions applied.
pub async fn run(database_url: &str) -> anyhow::Result<Vec<i32>> {
    let (config, connector) = super::tls::client(database_url)?;
    let (mut client, connection) = config
        .connect(connector)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL to migrate: {e}"))?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "migration connection closed with an error");
        }
    });
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let report = embedded::migrations::runner()
        .set_abort_divergent(true)
        .run_async(&mut client)
        .await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    drop(client);
    let _ = driver.await;
    let report = report.map_err(|e| anyhow::anyhow!("migration failed: {e}"))?;
    let applied: Vec<i32> = report
        .applied_migrations()
        .iter()
        .map(|m| m.version())
        .collect();
    if !applied.is_empty() {
        tracing::info!(?applied, "migrations applied");
    }
    Ok(applied)
}
