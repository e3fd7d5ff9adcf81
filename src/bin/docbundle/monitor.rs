//! `docbundle transparency monitor`: the log's newest checkpoint, its signature verified and
//! checked to extend the last one seen, which is then kept in a state file.

use std::path::Path;

use anyhow::Context;
use docbundle::domain::keys::Jwks;
use docbundle::http::answers::{CheckpointView, ConsistencyView};

use crate::api::Client;
use crate::bundle::mismatch;
use crate::folder;

/// `transparency monitor`: the newest checkpoint, verified, consistent with the last one seen
/// (kept in `state`); a shrink or a fork is an error and the state is left as it was.
pub async fn monitor(client: &Client, state: &Path, keys: Option<Jwks>) -> anyhow::Result<()> {
    // Keys pinned by the auditor, or (less strict) the ones the service serves now.
    let keys = match keys {
        Some(keys) => keys,
        None => client.get("/signing-keys").await?,
    };
    let latest: CheckpointView = client.get("/transparency/checkpoint").await?;
    let note = latest.checkpoint;
    let new = docbundle_local::verify::verify_checkpoint(&note, &keys)
        .map_err(|e| mismatch(e.to_string()))?;
    if !new.origin.starts_with("docbundle/") {
        return Err(mismatch(format!(
            "the checkpoint is of log `{}`, not a docbundle merchant's",
            new.origin
        )));
    }
    if state.is_file() {
        let older = String::from_utf8(folder::read_capped(state, 64 * 1024, "the limit")?)
            .with_context(|| format!("{} is not a checkpoint", state.display()))?;
        let old = docbundle_local::verify::verify_checkpoint(&older, &keys)
            .map_err(|e| mismatch(format!("{}: {e}", state.display())))?;
        let proof = if old.size == new.size || new.size < old.size {
            Vec::new()
        } else {
            client
                .get::<ConsistencyView>(&format!(
                    "/transparency/consistency?from={}&to={}",
                    old.size, new.size
                ))
                .await?
                .proof
        };
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
