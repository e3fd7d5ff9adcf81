//! Each merchant's log published as C2SP tlog-tiles ([`docbundle_domain::tiles`]) under its
//! own prefix in the log bucket: after a checkpoint is signed, the hash tiles and entry
//! bundles it covers that were not published yet, then the checkpoint itself (last, so a
//! reader never sees a checkpoint whose tiles are missing). Any monitor that has the log's
//! verifier key can mirror and check the log from these files alone, without our API.
//!
//! Entries are the runs' manifest bytes, read back from storage and checked against their
//! leaf hashes before they are published; the widened entry bundle starts from the partial
//! one published before (one read) rather than from every manifest it held.

use futures::{StreamExt, TryStreamExt};

use crate::Services;
use docbundle_domain::tiles::{self, Tile};
use docbundle_domain::{merkle, MerchantId};
use docbundle_infra::db::transparency::{self as repo, Unpublished};
use docbundle_infra::error::DependencyError;

/// Manifests read at once while an entry bundle is assembled.
const READS_AT_ONCE: usize = 16;
/// A pass starts publishing no log after this long (the scheduler's whole pass has 60 s; one
/// log's publication is at most a chunk, `LOG_PUBLISH_CHUNK`).
const PASS_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);

/// The object key prefix of `merchant`'s log in the log bucket (ends with `/`).
pub fn prefix(merchant: MerchantId) -> String {
    format!("log/{merchant}/")
}

/// Publishes every log whose newest checkpoint is not published yet; returns how many. One
/// log's trouble does not hold back the others'; a log that failed waits out a back-off
/// (30 s, doubling, at most an hour) before it is tried again.
pub async fn publish(services: &Services) -> Result<usize, DependencyError> {
    let mut published = 0;
    let mut first_error = None;
    let started = std::time::Instant::now();
    for log in repo::unpublished(&services.db).await? {
        if started.elapsed() > PASS_BUDGET {
            // The rest next pass (those with least to publish come first).
            break;
        }
        match publish_one(services, &log).await {
            Ok(()) => published += 1,
            Err(e) => {
                tracing::error!(merchant = %log.merchant, error = %e, "log tiles not published");
                if let Err(e) = repo::publish_failed(&services.db, log.merchant).await {
                    tracing::warn!(merchant = %log.merchant, error = %e, "publication failure not recorded");
                }
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if published == 0 => Err(e),
        _ => Ok(published),
    }
}

async fn publish_one(services: &Services, log: &Unpublished) -> Result<(), DependencyError> {
    let merchant = log.merchant;
    let size = log.checkpoint.tree_size;
    // What is there already: the published checkpoint's tiles, or more (a long history's).
    let base = log.published.max(log.tiles_through);
    let chunk = services.settings.log_publish_chunk;
    if size - base.min(size) > chunk {
        // A long history (published for the first time, or after a long outage): a chunk of
        // full tiles per pass, so that no pass outlasts its function's timeout and each one's
        // work stays done; the checkpoint once every tile it covers is there.
        let through = base / tiles::WIDTH * tiles::WIDTH + chunk;
        write_tiles(services, merchant, base, through).await?;
        tracing::info!(merchant = %merchant, through, size, "log tiles published ahead of the checkpoint");
        return repo::mark_tiles_through(&services.db, merchant, through).await;
    }
    write_tiles(services, merchant, base, size).await?;
    services
        .log_store
        .put(
            &format!("{}checkpoint", prefix(merchant)),
            log.checkpoint.note.clone().into_bytes(),
            "text/plain; charset=utf-8",
        )
        .await?;
    repo::mark_published(&services.db, merchant, size, log.cosigners).await
}

/// Writes the tiles a log of `size` entries has that one of `base` entries did not: entry
/// bundles first (they read every new entry back, and what cannot be read fails the
/// publication before any hash tile is written for nothing), then hash tiles.
async fn write_tiles(
    services: &Services,
    merchant: MerchantId,
    base: u64,
    size: u64,
) -> Result<(), DependencyError> {
    let prefix = prefix(merchant);
    let mut grown = tiles::grown(base, size);
    grown.sort_by_key(|t| t.level.is_some());
    for tile in grown {
        let bytes = match tile.level {
            Some(_) => hash_tile(services, merchant, &tile).await?,
            None => entry_bundle(services, merchant, &tile, base).await?,
        };
        services
            .log_store
            .put(
                &format!("{prefix}{}", tile.path()),
                bytes,
                "application/octet-stream",
            )
            .await?;
    }
    Ok(())
}

/// A hash tile: its nodes' hashes, concatenated.
async fn hash_tile(
    services: &Services,
    merchant: MerchantId,
    tile: &Tile,
) -> Result<Vec<u8>, DependencyError> {
    let (start, end) = tile.span();
    let hashes = repo::level_hashes(&services.db, merchant, tile.tree_level(), start, end).await?;
    Ok(hashes.concat())
}

/// An entry bundle: the partial one published before (when this tile widens it), then each
/// further entry's manifest bytes, each checked against its leaf hash.
async fn entry_bundle(
    services: &Services,
    merchant: MerchantId,
    tile: &Tile,
    published: u64,
) -> Result<Vec<u8>, DependencyError> {
    let (start, end) = tile.span();
    let mut bundle = Vec::new();
    let mut from = start;
    if published > start && published < end {
        let before = Tile {
            width: published - start,
            ..*tile
        };
        let key = format!("{}{}", prefix(merchant), before.path());
        let earlier = services.log_store.get(&key).await?;
        if let Some(earlier) =
            earlier.filter(|b| tiles::entries(b).is_some_and(|e| e.len() as u64 == before.width))
        {
            bundle = earlier;
            from = published;
        }
    }
    let manifests = repo::entry_manifests(&services.db, merchant, from, end).await?;
    let leaves = repo::level_hashes(&services.db, merchant, 0, from, end).await?;
    let store = &services.store;
    let bodies: Vec<Vec<u8>> =
        futures::stream::iter(manifests.into_iter().map(|(index, key)| async move {
            store.get(&key).await?.ok_or_else(|| {
                DependencyError::failed(
                    "s3",
                    "publish log entries",
                    format!("entry {index}'s manifest {key} is missing"),
                )
            })
        }))
        .buffered(READS_AT_ONCE)
        .try_collect()
        .await?;
    for ((body, leaf), index) in bodies.iter().zip(&leaves).zip(from..) {
        if merkle::leaf_hash(body) != *leaf {
            return Err(DependencyError::failed(
                "s3",
                "publish log entries",
                format!("entry {index}'s stored manifest is not the one the log holds"),
            ));
        }
        tiles::push_entry(&mut bundle, body)
            .map_err(|e| DependencyError::failed("log", "publish log entries", e))?;
    }
    Ok(bundle)
}
