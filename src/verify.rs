//! Offline verification of a bundle manifest: its exact bytes, the detached ed25519 signature
//! and the public keys published at `GET /api/v1/signing-keys` (a JWKS). No call to the
//! service or to Vault is needed.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use docbundle::app::transparency::Inclusion;
use docbundle::domain::checkpoint::{CheckpointError, Parsed};
use docbundle::domain::keys::{Jwks, KeyError, KeyRole};

/// Why a manifest, a checkpoint or a proof does not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The manifest's signing key is not in the JWKS.
    #[error("no key `{key_id}` in the JWKS")]
    UnknownKey { key_id: String },
    /// The manifest's signing key, as the JWKS has it, is not an Ed25519 key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The key's bytes are not an Ed25519 public key.
    #[error("{0}")]
    PublicKey(ed25519_dalek::SignatureError),
    #[error("the signature is not 64 base64 bytes")]
    SignatureEncoding,
    #[error("signature does not match the manifest")]
    SignatureMismatch,
    /// The checkpoint note does not parse.
    #[error("checkpoint: {0}")]
    Checkpoint(CheckpointError),
    /// A key the checkpoint names, as the JWKS has it, is not an Ed25519 key.
    #[error("checkpoint: {0}")]
    CheckpointKey(KeyError),
    /// A signature by a key of the JWKS does not hold.
    #[error("checkpoint: the signature by `{name}` does not hold")]
    CheckpointSignature { name: String },
    #[error("checkpoint: signed by no key in the JWKS")]
    CheckpointUnsigned,
    #[error("a proof hash is not 64 hex digits")]
    ProofHash,
    /// The checkpoint is of another merchant's log.
    #[error("the checkpoint is of log `{log}`, not the manifest's merchant's `{expected}`")]
    OtherLog { log: String, expected: String },
    #[error("treeSize is not the checkpoint's")]
    TreeSize,
    /// The inclusion proof does not lead from the manifest to the checkpoint's root.
    #[error("the manifest is not entry {index} of the signed log of size {size}")]
    NotIncluded { index: u64, size: u64 },
    #[error("checkpoints of two logs: `{old}` and `{new}`")]
    TwoLogs { old: String, new: String },
    #[error("the log shrank from {from} to {to} entries")]
    Shrank { from: u64, to: u64 },
    /// The consistency proof does not hold: the older log is not a prefix of the newer.
    #[error("fork: the log of size {old} is not a prefix of the log of size {new}")]
    Fork { old: u64, new: u64 },
}

/// Checks `signature` (standard base64) over `manifest` with the key `key_id` from `jwks`.
pub fn verify_manifest(
    manifest: &[u8],
    signature: &str,
    key_id: &str,
    jwks: &Jwks,
) -> Result<(), VerifyError> {
    let x = jwks
        .find(key_id)
        .ok_or_else(|| VerifyError::UnknownKey {
            key_id: key_id.to_owned(),
        })?
        .ed25519_public()?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(VerifyError::PublicKey)?;
    let sig: [u8; 64] = STANDARD
        .decode(signature.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(VerifyError::SignatureEncoding)?;
    key.verify_strict(manifest, &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| VerifyError::SignatureMismatch)
}

/// Verifies a signed checkpoint (a C2SP note) against the JWKS: at least one signature by one
/// of its keys (named after the log, or by `kid`; checked against its key hash) must hold.
pub fn verify_checkpoint(note: &str, jwks: &Jwks) -> Result<Parsed, VerifyError> {
    use docbundle::domain::checkpoint;
    let parsed = checkpoint::parse(note).map_err(VerifyError::Checkpoint)?;
    // As signed-note verifiers do: signatures by unknown keys are ignored, but every signature
    // by a known key must hold, and at least one must be there.
    let mut verified = None;
    for (name, hash, signature) in &parsed.signatures {
        // A log key signs under the log's name (its origin); a manifest key (which signed
        // checkpoints before the log key existed, or a log's verifier key pinned as one)
        // only under its `kid`. Any other line (a witness's cosignature, a key this JWKS does
        // not hold, a key under another name) is not the log's signature.
        let key = jwks.keys.iter().find_map(|jwk| {
            let named = match jwk.role {
                KeyRole::Manifests => jwk.kid == *name,
                KeyRole::Checkpoints => *name == parsed.origin,
            };
            let x = jwk.ed25519_public();
            match x {
                Ok(x) if named && checkpoint::key_hash(name, &x) == *hash => Some(Ok(x)),
                Err(e) if jwk.kid == *name => Some(Err(e)),
                _ => None,
            }
        });
        let Some(key) = key else {
            continue;
        };
        let x = key.map_err(VerifyError::CheckpointKey)?;
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
            return Err(VerifyError::CheckpointSignature { name: name.clone() });
        }
        verified = Some(name.clone());
    }
    match verified {
        Some(_) => Ok(parsed),
        None => Err(VerifyError::CheckpointUnsigned),
    }
}

fn hashes(proof: &[String]) -> Result<Vec<[u8; 32]>, VerifyError> {
    proof
        .iter()
        .map(|h| {
            hex::decode(h)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or(VerifyError::ProofHash)
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
) -> Result<Parsed, VerifyError> {
    use docbundle::domain::{checkpoint, merkle};
    let parsed = verify_checkpoint(&transparency.checkpoint, jwks)?;
    if !checkpoint::names_merchant(&parsed.origin, merchant) {
        return Err(VerifyError::OtherLog {
            log: parsed.origin,
            expected: format!("…/{merchant}"),
        });
    }
    let index = transparency.log_index;
    if transparency.tree_size != parsed.size {
        return Err(VerifyError::TreeSize);
    }
    let proof = hashes(&transparency.inclusion_proof)?;
    let leaf = merkle::leaf_hash(manifest);
    if !merkle::verify_inclusion(index, parsed.size, &leaf, &proof, &parsed.root) {
        return Err(VerifyError::NotIncluded {
            index,
            size: parsed.size,
        });
    }
    Ok(parsed)
}

/// Checks a consistency proof (hex hashes) from `old` to `new` (both verified checkpoints).
pub fn verify_consistency(old: &Parsed, new: &Parsed, proof: &[String]) -> Result<(), VerifyError> {
    if old.origin != new.origin {
        return Err(VerifyError::TwoLogs {
            old: old.origin.clone(),
            new: new.origin.clone(),
        });
    }
    if new.size < old.size {
        return Err(VerifyError::Shrank {
            from: old.size,
            to: new.size,
        });
    }
    let proof = hashes(proof)?;
    if !docbundle::domain::merkle::verify_consistency(
        old.size, new.size, &old.root, &new.root, &proof,
    ) {
        return Err(VerifyError::Fork {
            old: old.size,
            new: new.size,
        });
    }
    Ok(())
}
