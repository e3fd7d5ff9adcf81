//! Offline verification of a bundle manifest: its exact bytes, the detached ed25519 signature
//! and the public keys published at `GET /api/v1/signing-keys` (a JWKS). No call to the
//! service or to Vault is needed.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use docbundle::app::transparency::Inclusion;
use docbundle::domain::keys::Jwks;

/// Checks `signature` (standard base64) over `manifest` with the key `key_id` from `jwks`.
pub fn verify_manifest(
    manifest: &[u8],
    signature: &str,
    key_id: &str,
    jwks: &Jwks,
) -> Result<(), String> {
    let x = jwks
        .find(key_id)
        .ok_or_else(|| format!("no key `{key_id}` in the JWKS"))?
        .ed25519_public()?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|e| e.to_string())?;
    let sig: [u8; 64] = STANDARD
        .decode(signature.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the signature is not 64 base64 bytes")?;
    key.verify_strict(manifest, &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| "signature does not match the manifest".to_owned())
}

/// Verifies a signed checkpoint (a C2SP note) against the JWKS: at least one signature by one
/// of its keys (named by `kid`, checked against its key hash) must hold.
pub fn verify_checkpoint(
    note: &str,
    jwks: &Jwks,
) -> Result<docbundle::domain::checkpoint::Parsed, String> {
    use docbundle::domain::checkpoint;
    let parsed = checkpoint::parse(note).map_err(|e| format!("checkpoint: {e}"))?;
    // As signed-note verifiers do: signatures by unknown keys are ignored, but every signature
    // by a known key must hold, and at least one must be there.
    let mut verified = None;
    for (name, hash, signature) in &parsed.signatures {
        let Some(jwk) = jwks.find(name) else {
            continue;
        };
        let x = jwk
            .ed25519_public()
            .map_err(|e| format!("checkpoint: {e}"))?;
        if checkpoint::key_hash(name, &x) != *hash {
            // Another key of the same name: not this one.
            continue;
        }
        let holds = match (
            ed25519_dalek::VerifyingKey::from_bytes(&x),
            <[u8; 64]>::try_from(signature.as_slice()),
        ) {
            (Ok(key), Ok(sig)) => key
                .verify_strict(
                    parsed.text.as_bytes(),
                    &ed25519_dalek::Signature::from_bytes(&sig),
                )
                .is_ok(),
            _ => false,
        };
        if !holds {
            return Err(format!(
                "checkpoint: the signature by `{name}` does not hold"
            ));
        }
        verified = Some(name.clone());
    }
    match verified {
        Some(_) => Ok(parsed),
        None => Err("checkpoint: signed by no key in the JWKS".to_owned()),
    }
}

fn hashes(proof: &[String]) -> Result<Vec<[u8; 32]>, String> {
    proof
        .iter()
        .map(|h| {
            hex::decode(h)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| "a proof hash is not 64 hex digits".to_owned())
        })
        .collect()
}

/// Checks that `manifest` (its exact bytes) is entry `logIndex` of the signed checkpoint in
/// `transparency` (as a run answers it), in the log of `merchant`. Returns the checkpoint.
pub fn verify_inclusion(
    manifest: &[u8],
    merchant: docbundle::domain::MerchantId,
    transparency: &Inclusion,
    jwks: &Jwks,
) -> Result<docbundle::domain::checkpoint::Parsed, String> {
    use docbundle::domain::{checkpoint, merkle};
    let parsed = verify_checkpoint(&transparency.checkpoint, jwks)?;
    let origin = checkpoint::origin(merchant);
    if parsed.origin != origin {
        return Err(format!(
            "the checkpoint is of log `{}`, not the manifest's merchant's `{origin}`",
            parsed.origin
        ));
    }
    let index = transparency.log_index;
    if transparency.tree_size != parsed.size {
        return Err("treeSize is not the checkpoint's".to_owned());
    }
    let proof = hashes(&transparency.inclusion_proof)?;
    let leaf = merkle::leaf_hash(manifest);
    if !merkle::verify_inclusion(index, parsed.size, &leaf, &proof, &parsed.root) {
        return Err(format!(
            "the manifest is not entry {index} of the signed log of size {}",
            parsed.size
        ));
    }
    Ok(parsed)
}

/// Checks a consistency proof (hex hashes) from `old` to `new` (both verified checkpoints).
pub fn verify_consistency(
    old: &docbundle::domain::checkpoint::Parsed,
    new: &docbundle::domain::checkpoint::Parsed,
    proof: &[String],
) -> Result<(), String> {
    if old.origin != new.origin {
        return Err(format!(
            "checkpoints of two logs: `{}` and `{}`",
            old.origin, new.origin
        ));
    }
    if new.size < old.size {
        return Err(format!(
            "the log shrank from {} to {} entries",
            old.size, new.size
        ));
    }
    let proof = hashes(proof)?;
    if !docbundle::domain::merkle::verify_consistency(
        old.size, new.size, &old.root, &new.root, &proof,
    ) {
        return Err(format!(
            "fork: the log of size {} is not a prefix of the log of size {}",
            old.size, new.size
        ));
    }
    Ok(())
}
