//! `docbundle-local bench-log [N]`: what the transparency log costs a run's completion, and
//! what sequencing costs, against the real database. Sets up a throwaway merchant with `N`
//! runs, then times, for each, a transaction that writes the run's row and queues its entry
//! (as the completing transaction does), beside one that only writes the row; then the
//! sequencer's pass that integrates all `N` (one transaction). Prints figures; asserts
//! nothing.

use std::time::{Duration, Instant};

use docbundle::domain::merkle;
use docbundle::infra::db::{transparency, Connection};
use docbundle::Settings;
use uuid::Uuid;

pub async fn run(settings: &Settings, n: usize) -> anyhow::Result<()> {
    docbundle::infra::db::migrate::run(&settings.database_url).await?;
    let pool = docbundle::infra::db::pool(&settings.database_url, 2, Duration::from_secs(10))?;
    let mut conn = pool.get().await?;
    let (merchant, runs) = set_up(&conn, n).await?;
    let merchant_id = docbundle::domain::MerchantId::from(merchant);
    let (append, empty) = time_appends(&mut conn, merchant_id, &runs).await?;
    report(n, append, empty);
    let started = Instant::now();
    let integrated = transparency::sequence(&pool, merchant_id, i64::MAX).await?;
    let took = started.elapsed();
    println!(
        "  the sequencer integrating them: {integrated} entries in one transaction, {:.1} ms ({:.3} ms per entry)",
        ms(took),
        ms(took) / integrated.max(1) as f64
    );
    // The proofs' cost at this size: one query each.
    let started = Instant::now();
    let size = n as u64;
    for m in (0..size).step_by((n / 50).max(1)) {
        transparency::range_hashes(&pool, merchant_id, &merkle::inclusion_ranges(m, size)).await?;
    }
    println!(
        "  an inclusion proof at size {n}: {:.3} ms on average (one query)",
        ms(started.elapsed()) / (n / (n / 50).max(1)) as f64
    );
    Ok(())
}

/// A throwaway merchant with one configuration, one seed and `n` runs in processing: the
/// merchant's id and the runs'.
async fn set_up(conn: &Connection, n: usize) -> anyhow::Result<(Uuid, Vec<Uuid>)> {
    let merchant = Uuid::new_v4();
    let configuration = Uuid::new_v4();
    let seed = "0".repeat(64);
    conn.batch_execute("SET synchronous_commit = on").await?;
    conn.execute(
        "INSERT INTO merchants (id, name) VALUES ($1, 'bench-log')",
        &[&merchant],
    )
    .await?;
    conn.execute(
        "INSERT INTO configurations (id, merchant_id, name, current_version, created_by) VALUES ($1, $2, 'bench', 1, 'bench')",
        &[&configuration, &merchant],
    )
    .await?;
    conn.execute(
        "INSERT INTO configuration_versions (configuration_id, version, merchant_id, name, documents, created_by)
         VALUES ($1, 1, $2, 'bench', '[]', 'bench')",
        &[&configuration, &merchant],
    )
    .await?;
    conn.execute(
        "INSERT INTO seeds (merchant_id, hash, canonical, size_bytes) VALUES ($1, $2, '{}', 2)",
        &[&merchant, &seed],
    )
    .await?;
    let mut runs = Vec::with_capacity(n);
    for _ in 0..n {
        let id = Uuid::new_v4();
        conn.execute(
            "INSERT INTO bundle_runs (id, merchant_id, configuration_id, configuration_version, seed_hash,
                                      status, triggered_by_type, triggered_by_id, started_at)
             VALUES ($1, $2, $3, 1, $4, 'processing', 'user', 'bench', now())",
            &[&id, &merchant, &configuration, &seed],
        )
        .await?;
        runs.push(id);
    }
    Ok((merchant, runs))
}

/// For each run, a transaction writing the run's row, then one writing it and queueing its
/// entry: the two durations.
async fn time_appends(
    conn: &mut Connection,
    merchant_id: docbundle::domain::MerchantId,
    runs: &[Uuid],
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let mut append = Vec::with_capacity(runs.len());
    let mut empty = Vec::with_capacity(runs.len());
    for (i, run) in runs.iter().enumerate() {
        // The completing transaction writes anyway (one commit flush either way): the
        // baseline writes the run's row, the measured one that and the entry.
        let touch = "UPDATE bundle_runs SET started_at = started_at WHERE id = $1";
        let started = Instant::now();
        let tx = conn.transaction().await?;
        tx.execute(touch, &[run]).await?;
        tx.commit().await?;
        empty.push(started.elapsed());
        let leaf = merkle::leaf_hash(format!("manifest {i}").as_bytes());
        let started = Instant::now();
        let tx = conn.transaction().await?;
        tx.execute(touch, &[run]).await?;
        transparency::enqueue(&tx, merchant_id, *run, &leaf).await?;
        tx.commit().await?;
        append.push(started.elapsed());
    }
    Ok((append, empty))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The median and p90 of queueing and of the empty transaction, and their difference.
fn report(n: usize, mut append: Vec<Duration>, mut empty: Vec<Duration>) {
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        (ms(v[v.len() / 2]), ms(v[v.len() * 9 / 10]))
    };
    let (append_median, append_p90) = median(&mut append);
    let (empty_median, empty_p90) = median(&mut empty);
    println!("transparency log, {n} entries in one merchant's log (this build, this machine):");
    println!("  a transaction writing the run's row alone: median {empty_median:.3} ms, p90 {empty_p90:.3} ms");
    println!(
        "  the same queueing the entry too: median {append_median:.3} ms, p90 {append_p90:.3} ms"
    );
    println!(
        "  added to a run's completion: median {:.3} ms",
        append_median - empty_median
    );
}
