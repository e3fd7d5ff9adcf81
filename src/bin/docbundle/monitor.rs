//! `docbundle transparency monitor`: the log's newest checkpoint, its signature (and the
//! witnesses' cosignatures asked for) verified and checked to extend the last one seen, which
//! is then kept in a state file. With `--tiles`, everything comes from the log's published
//! C2SP tlog-tiles: the checkpoint, and the hash tiles the consistency proof is computed from
//! (and the root, checked against the checkpoint's) — no call to the API at all when the keys
//! are given too.

use std::collections::HashMap;

use anyhow::Context;
use docbundle::domain::checkpoint::{self, Parsed};
use docbundle::domain::keys::{Jwk, Jwks};
use docbundle::domain::merkle;
use docbundle::domain::tiles::{self, Tile, TileSource};
use docbundle::http::answers::{CheckpointView, ConsistencyView};

use crate::api::Client;
use crate::bundle::mismatch;
use crate::check::Witnesses;
use crate::folder;

/// The largest checkpoint read (a note with a few cosignatures is well under 1 KiB).
const MAX_CHECKPOINT_BYTES: usize = 64 * 1024;
/// A full hash tile.
const MAX_TILE_BYTES: usize = 256 * 32;

/// What the monitor trusts and where it reads the log.
pub struct Monitor {
    /// Where the last checkpoint seen is kept.
    pub state: std::path::PathBuf,
    /// A JWKS pinned by the auditor (`--keys`).
    pub keys: Option<Jwks>,
    /// The log's verifier keys pinned by the auditor (`--log-key`).
    pub log_keys: Vec<String>,
    /// The log's tiles (`--tiles`): an `http(s)` URL, or an API path read with the token.
    pub tiles: Option<String>,
    pub witnesses: Witnesses,
}

impl Monitor {
    /// Whether it needs the API (and so a login): for a log not read from public tiles, or
    /// without the log's own verifier key pinned (a JWKS's log key signs every merchant's
    /// log: the API says which is this merchant's).
    pub fn needs_api(&self) -> bool {
        let pinned = !self.log_keys.is_empty();
        let public = self
            .tiles
            .as_deref()
            .is_some_and(|t| t.starts_with("http://") || t.starts_with("https://"));
        !(pinned && public)
    }
}

/// Verifier keys as a JWKS whose `kid` is each key's name (how checkpoints are checked).
fn jwks_of(log_keys: &[String]) -> anyhow::Result<Jwks> {
    let keys = log_keys
        .iter()
        .map(|k| {
            let (name, _, public) = checkpoint::parse_verifier_key(k)
                .map_err(|e| anyhow::anyhow!("--log-key {k}: {e}"))?;
            Ok(Jwk::ed25519(name, &public))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Jwks { keys })
}

/// Reads files of the log: from its public URL, or through the API.
struct TileReader<'a> {
    base: String,
    client: Option<&'a Client>,
    http: reqwest::Client,
}

impl TileReader<'_> {
    async fn get(&self, path: &str, max: usize) -> anyhow::Result<Vec<u8>> {
        let url = format!("{}/{path}", self.base.trim_end_matches('/'));
        let request = match self.client {
            Some(client) if !url.starts_with("http") => client
                .send(
                    reqwest::Method::GET,
                    url.trim_start_matches("/api/v1"),
                    |r| r,
                )
                .await
                .with_context(|| format!("GET {url}"))?,
            _ => self
                .http
                .get(&url)
                .send()
                .await
                .with_context(|| format!("GET {url}"))?,
        };
        let mut response = request;
        if !response.status().is_success() {
            anyhow::bail!("GET {url}: HTTP {}", response.status());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .with_context(|| format!("GET {url}"))?
        {
            if body.len() + chunk.len() > max {
                return Err(mismatch(format!("{url}: more than {max} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// The hashes of `ranges` of the tree of `size` leaves, computed from its hash tiles.
    async fn range_hashes(
        &self,
        size: u64,
        ranges: &[merkle::Range],
    ) -> anyhow::Result<Vec<merkle::Hash>> {
        let mut fetched: HashMap<Tile, Vec<u8>> = HashMap::new();
        for node in ranges.iter().flat_map(|r| merkle::subtrees(*r)) {
            let tile = tiles::tile_for(node, size);
            if let std::collections::hash_map::Entry::Vacant(slot) = fetched.entry(tile) {
                slot.insert(self.get(&tile.path(), MAX_TILE_BYTES).await?);
            }
        }
        let mut source = TileSource {
            size,
            tiles: &fetched,
        };
        merkle::range_hashes(&mut source, ranges)
            .map_err(|e| mismatch(format!("the log's tiles: {e}")))
    }
}

/// `transparency monitor`: the newest checkpoint, verified, consistent with the last one seen
/// (kept in `state`); a shrink, a fork, tiles that do not match the checkpoint or a missing
/// quorum of cosignatures is an error and the state is left as it was.
pub async fn monitor(client: Option<&Client>, args: Monitor) -> anyhow::Result<()> {
    let api = || client.ok_or_else(|| anyhow::anyhow!("this needs the API: log in first"));
    // Keys pinned by the auditor, or (less strict) the ones the service serves now.
    let keys = match (&args.keys, args.log_keys.is_empty()) {
        (Some(keys), true) => keys.clone(),
        (Some(keys), false) => {
            let mut keys = keys.clone();
            keys.keys.extend(jwks_of(&args.log_keys)?.keys);
            keys
        }
        (None, false) => jwks_of(&args.log_keys)?,
        (None, true) => api()?.get("/signing-keys").await?,
    };
    let reader = match &args.tiles {
        Some(base) => Some(TileReader {
            base: base.clone(),
            client,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
        }),
        None => None,
    };
    let (note, expected_origin) = match &reader {
        Some(reader) => {
            let bytes = reader.get("checkpoint", MAX_CHECKPOINT_BYTES).await?;
            let note = String::from_utf8(bytes)
                .map_err(|_| mismatch("the published checkpoint is not text"))?;
            // Whose log the tiles must be: the merchant's, as the API names it (with pinned
            // log keys alone, the keys' names bind it: each is named after its log).
            let expected = match client {
                Some(client) if args.log_keys.is_empty() => Some(
                    client
                        .get::<CheckpointView>("/transparency/checkpoint")
                        .await?
                        .origin,
                ),
                _ => None,
            };
            (note, expected)
        }
        None => {
            let latest: CheckpointView = api()?.get("/transparency/checkpoint").await?;
            (latest.checkpoint, Some(latest.origin))
        }
    };
    let new = docbundle_local::verify::verify_checkpoint(&note, &keys)
        .map_err(|e| mismatch(e.to_string()))?;
    if let Some(origin) = expected_origin.filter(|o| *o != new.origin) {
        return Err(mismatch(format!(
            "the checkpoint is of log `{}`, not this merchant's `{origin}`",
            new.origin
        )));
    }
    args.witnesses.check(&new, "the newest checkpoint")?;
    if let Some(reader) = &reader {
        // The published tiles are the tree the checkpoint signs.
        let root = reader.range_hashes(new.size, &[(0, new.size)]).await?;
        if root.first() != Some(&new.root) {
            return Err(mismatch(format!(
                "{}: the tiles' root is not the checkpoint's (size {})",
                new.origin, new.size
            )));
        }
    }
    let state = &args.state;
    if state.is_file() {
        let older = String::from_utf8(folder::read_capped(state, 64 * 1024, "the limit")?)
            .with_context(|| format!("{} is not a checkpoint", state.display()))?;
        let old = docbundle_local::verify::verify_checkpoint(&older, &keys)
            .map_err(|e| mismatch(format!("{}: {e}", state.display())))?;
        let proof = consistency(api, reader.as_ref(), &old, &new).await?;
        docbundle_local::verify::verify_consistency(&old, &new, &proof)
            .map_err(|e| mismatch(format!("{}: {e}", new.origin)))?;
        println!(
            "log {}: {} entries (was {}), consistent with the last checkpoint seen",
            new.origin, new.size, old.size
        );
    } else {
        println!(
            "log {}: {} entries; first checkpoint seen, kept in {}",
            new.origin,
            new.size,
            state.display()
        );
    }
    let part = state.with_extension("part");
    std::fs::write(&part, &note)?;
    std::fs::rename(&part, state)?;
    Ok(())
}

/// The consistency proof from `old` to `new` (hex hashes): from the tiles, else the API.
async fn consistency<'a>(
    api: impl Fn() -> anyhow::Result<&'a Client>,
    reader: Option<&TileReader<'_>>,
    old: &Parsed,
    new: &Parsed,
) -> anyhow::Result<Vec<String>> {
    if old.size >= new.size || old.origin != new.origin {
        // Nothing to prove, or nothing provable (`verify_consistency` says which).
        return Ok(Vec::new());
    }
    let hashes = match reader {
        Some(reader) => {
            reader
                .range_hashes(new.size, &merkle::consistency_ranges(old.size, new.size))
                .await?
        }
        None => {
            return Ok(api()?
                .get::<ConsistencyView>(&format!(
                    "/transparency/consistency?from={}&to={}",
                    old.size, new.size
                ))
                .await?
                .proof)
        }
    };
    Ok(hashes.iter().map(hex::encode).collect())
}
