//! Offline verification of a bundle manifest: its exact bytes, the detached ed25519 signature
//! and the public keys published at `GET /api/v1/signing-keys` (a JWKS). No call to the
//! service or to Vault is needed.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::Value;

/// Checks `signature` (standard base64) over `manifest` with the key `key_id` from `jwks`.
pub fn verify_manifest(
    manifest: &[u8],
    signature: &str,
    key_id: &str,
    jwks: &Value,
) -> Result<(), String> {
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == key_id))
        .ok_or_else(|| format!("no key `{key_id}` in the JWKS"))?;
    if jwk["kty"] != "OKP" || jwk["crv"] != "Ed25519" {
        return Err(format!("key `{key_id}` is not an Ed25519 key"));
    }
    let x: [u8; 32] = URL_SAFE_NO_PAD
        .decode(jwk["x"].as_str().unwrap_or_default())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the key's `x` is not 32 base64url bytes")?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|e| e.to_string())?;
    let sig: [u8; 64] = STANDARD
        .decode(signature.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the signature is not 64 base64 bytes")?;
    key.verify_strict(manifest, &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| "signature does not match the manifest".to_owned())
}
