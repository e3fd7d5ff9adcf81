//! The manifest-signing public keys as `GET /api/v1/signing-keys` publishes them (a JWKS,
//! RFC 7517, of Ed25519 keys as RFC 8037 writes them), and the one place that reads a key
//! back: the server writes this type, the CLI and `verify` read it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::checkpoint;

/// What is wrong with a key read as an Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Another key type or curve than Ed25519's `OKP`/`Ed25519`.
    #[error("key `{kid}` is not an Ed25519 key")]
    NotEd25519 { kid: String },
    /// `x` is not the base64url of 32 bytes.
    #[error("key `{kid}`: `x` is not 32 base64url bytes")]
    PublicKey { kid: String },
}

/// The manifest-signing public keys, to verify manifests and checkpoints offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

/// One Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Jwk {
    /// `OKP`
    pub kty: String,
    /// `Ed25519`
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    /// `<key name>:<version>`, as manifests name it.
    pub kid: String,
    /// `EdDSA`
    pub alg: String,
    /// `sig`
    #[serde(rename = "use")]
    pub use_: String,
    /// The key as a C2SP signed-note verifier key (`name+hash+key`, named by `kid`): what
    /// verified the transparency checkpoints the manifest key signed before the log key
    /// existed. A log key signs under each log's name: its verifier key for a log is that log's
    /// (`GET /api/v1/transparency/checkpoint`'s `verifierKeys`).
    #[serde(rename = "noteVerifierKey")]
    pub note_verifier_key: String,
    /// What the key signs: `manifests` (manifests and batch statements) or `checkpoints` (the
    /// transparency logs', under each log's name). Absent: `manifests`.
    #[serde(default)]
    pub role: KeyRole,
}

/// What a published key signs; a key is trusted for nothing else.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum KeyRole {
    #[default]
    Manifests,
    Checkpoints,
}

impl Jwk {
    /// The key `kid` whose public half is `public`.
    pub fn ed25519(kid: String, public: &[u8; 32]) -> Self {
        Jwk {
            kty: "OKP".to_owned(),
            crv: "Ed25519".to_owned(),
            x: URL_SAFE_NO_PAD.encode(public),
            note_verifier_key: checkpoint::verifier_key(&kid, public),
            role: KeyRole::Manifests,
            kid,
            alg: "EdDSA".to_owned(),
            use_: "sig".to_owned(),
        }
    }

    /// A version `kid` of the log key, which signs checkpoints (under each log's name).
    pub fn ed25519_log(kid: String, public: &[u8; 32]) -> Self {
        Jwk {
            role: KeyRole::Checkpoints,
            ..Jwk::ed25519(kid, public)
        }
    }

    /// The 32 bytes of the public key; an error names what is wrong with it.
    pub fn ed25519_public(&self) -> Result<[u8; 32], KeyError> {
        if self.kty != "OKP" || self.crv != "Ed25519" {
            return Err(KeyError::NotEd25519 {
                kid: self.kid.clone(),
            });
        }
        URL_SAFE_NO_PAD
            .decode(&self.x)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| KeyError::PublicKey {
                kid: self.kid.clone(),
            })
    }
}

impl Jwks {
    /// The manifest key named `kid` (a log key verifies no manifest).
    pub fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys
            .iter()
            .find(|k| k.kid == kid && k.role == KeyRole::Manifests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_key_is_found_for_no_manifest_and_old_jwks_still_read() {
        let log = Jwk::ed25519_log("log-signing:1".to_owned(), &[7u8; 32]);
        let json = serde_json::to_value(&log).unwrap();
        assert_eq!(json["role"], "checkpoints");
        assert!(json["noteVerifierKey"].is_string(), "{json}");
        let jwks = Jwks { keys: vec![log] };
        assert!(jwks.find("log-signing:1").is_none());
        // A JWKS from before roles: every key a manifest key.
        let mut old = serde_json::to_value(Jwk::ed25519("m:1".to_owned(), &[8u8; 32])).unwrap();
        old.as_object_mut().unwrap().remove("role");
        let read: Jwks = serde_json::from_value(serde_json::json!({"keys": [old]})).unwrap();
        assert_eq!(read.find("m:1").unwrap().role, KeyRole::Manifests);
    }

    #[test]
    fn a_key_reads_back_as_written_and_a_foreign_one_is_refused() {
        let public = [9u8; 32];
        let jwk = Jwk::ed25519("docbundle-manifest:3".to_owned(), &public);
        let json = serde_json::to_value(Jwks { keys: vec![jwk] }).unwrap();
        assert_eq!(json["keys"][0]["use"], "sig");
        assert_eq!(json["keys"][0]["crv"], "Ed25519");
        let read: Jwks = serde_json::from_value(json).unwrap();
        let jwk = read.find("docbundle-manifest:3").unwrap();
        assert_eq!(jwk.ed25519_public(), Ok(public));
        assert!(jwk.note_verifier_key.starts_with("docbundle-manifest:3+"));
        let rsa = Jwk {
            kty: "RSA".to_owned(),
            ..jwk.clone()
        };
        assert!(rsa
            .ed25519_public()
            .unwrap_err()
            .to_string()
            .contains("not an Ed25519 key"));
        let short = Jwk {
            x: URL_SAFE_NO_PAD.encode([1u8; 31]),
            ..jwk.clone()
        };
        assert!(short
            .ed25519_public()
            .unwrap_err()
            .to_string()
            .contains("32 base64url bytes"));
        assert!(read.find("other:1").is_none());
    }
}
