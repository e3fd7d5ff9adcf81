//! A bundle on disk: `download` writes a completed run's artefacts under their document names
//! (as `render` does), `manifest.json` (its exact signed bytes) and `manifest.sig` (the key id
//! and the signature), checking every hash and size as the bytes land; `verify` checks such a
//! folder offline against the published signing keys.
//!
//! This module holds what both share: the bundle's file names, `manifest.sig`'s format, the
//! names a bundle may hold and the key set's reading; the commands are in [`crate::download`]
//! and [`crate::check`].

use std::path::Path;

use anyhow::Context;
use docbundle::domain::keys::Jwks;
use serde::{Deserialize, Serialize};

use crate::{exit, folder, VERIFICATION_FAILED};

pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";
/// The run's transparency-log inclusion proof and checkpoint, when it had one.
pub const TRANSPARENCY: &str = "transparency.json";
/// The time-stamping authority's RFC 3161 answer over the manifest's SHA-256, when the
/// service has a TSA.
pub const TIMESTAMP: &str = "manifest.tsr";
const ARCHIVE: &str = "bundle.zip";
/// Largest manifest or key set read.
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// `manifest.sig`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signature {
    pub algorithm: String,
    pub key_id: String,
    /// Base64 Ed25519 signature over `manifest.json`'s bytes.
    pub signature: String,
}

/// A name a bundle may hold a file under: a document name, or the archive's.
pub fn safe_name(name: &str) -> bool {
    name == ARCHIVE || docbundle::domain::configuration::check_document_name(name).is_ok()
}

/// A verification failure: the command ends with [`VERIFICATION_FAILED`].
pub fn mismatch(message: impl Into<String>) -> anyhow::Error {
    exit(VERIFICATION_FAILED, message)
}

pub fn read_keys(path: &Path) -> anyhow::Result<Jwks> {
    let bytes = folder::read_capped(path, MAX_MANIFEST_BYTES, "the limit")?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not a JWKS", path.display()))
}
