//! The bundle manifest: what a run produced, from what, with a digest over every artefact.
//! Its exact bytes are what Vault signs.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::digest::sha256_hex;
use crate::seed::SeedHash;
use crate::MerchantId;

pub const SCHEMA: &str = "docbundle.manifest/v1";

/// One file of a bundle as stored and listed in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artefact {
    pub name: String,
    pub format: String,
    pub content_type: String,
    pub key: String,
    pub size: u64,
    /// SHA-256 of the stored file.
    pub sha256: String,
    /// For a signed PDF: SHA-256 of the render before it was signed (what a replay and an
    /// offline render reproduce; the signed file differs with every signature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render_sha256: Option<String>,
    /// For a signed PDF: who signed it and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<ArtefactSignature>,
    /// For an e-invoice: its standard, profile and the SHA-256 of its XML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub einvoice: Option<ArtefactEinvoice>,
}

impl Artefact {
    /// What a replay compares: the render's digest, before any signature.
    pub fn render_digest(&self) -> &str {
        self.render_sha256.as_deref().unwrap_or(&self.sha256)
    }
}

/// A signed PDF's signature, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtefactSignature {
    pub level: crate::signature::SignatureLevel,
    /// The signer's certificate subject (RFC 4514), e.g. `CN=Merchant A`.
    pub signer: String,
    /// SHA-256 of the signer's certificate (DER).
    pub certificate_sha256: String,
    /// The time-stamping authority's time (`B-T` and above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<chrono::DateTime<chrono::Utc>>,
}

/// An e-invoice artefact, as the manifest records it: a Factur-X PDF (whose embedded
/// `factur-x.xml` has `xmlSha256`) or the XML itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtefactEinvoice {
    pub standard: crate::einvoice::EinvoiceStandard,
    pub profile: crate::einvoice::EinvoiceProfile,
    /// SHA-256 of the invoice's XML (embedded in the PDF as `factur-x.xml`).
    pub xml_sha256: String,
}

/// An asset among a run's inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestAsset {
    pub name: String,
    pub sha256: String,
}

/// For a replay: which run it re-ran and whether every artefact came out identical; when not,
/// `reason: "renderer changed"` if the original was rendered by another build of the engines
/// (so a difference is the engine's, not tampering).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayCheck {
    pub of: Uuid,
    pub identical: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

/// The renderer build that produced a bundle: what a byte-identical replay depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RendererBuild {
    pub typst: String,
    pub minijinja: String,
    /// ICU4X, whose CLDR data formats amounts and dates.
    pub icu: String,
    /// SHA-256 over the embedded fonts, in order.
    pub fonts: String,
    /// The CPU architecture (`x86_64`, `aarch64`).
    pub arch: String,
    /// What signed the PDFs, when any was signed (`docbundle-pades <version>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema: String,
    pub run_id: Uuid,
    pub merchant_id: MerchantId,
    pub configuration_id: Uuid,
    pub configuration_version: i32,
    pub seed_hash: SeedHash,
    /// The assets the documents were rendered with, by name: inputs as much as the seed.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub assets: Vec<ManifestAsset>,
    pub replay_of: Option<Uuid>,
    pub artefacts: Vec<Artefact>,
    pub bundle_digest: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub replay: Option<ReplayCheck>,
    /// The renderer build (engines, fonts, architecture) that rendered the artefacts.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub renderer: Option<RendererBuild>,
}

/// SHA-256 over the lines `<sha256> <name>\n` of the artefacts, sorted by name.
pub fn bundle_digest(artefacts: &[Artefact]) -> String {
    let mut sorted: Vec<&Artefact> = artefacts.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let lines: String = sorted
        .iter()
        .map(|a| format!("{} {}\n", a.sha256, a.name))
        .collect();
    sha256_hex(lines.as_bytes())
}

/// Where a run's files live in the bucket.
pub fn artefact_key(merchant: MerchantId, run: Uuid, name: &str) -> String {
    format!("merchants/{merchant}/runs/{run}/artefacts/{name}")
}

/// Where every artefact of a run lives (what its expiry deletes; never its manifest).
pub fn artefacts_prefix(merchant: MerchantId, run: Uuid) -> String {
    format!("merchants/{merchant}/runs/{run}/artefacts/")
}

pub fn manifest_key(merchant: MerchantId, run: Uuid) -> String {
    format!("merchants/{merchant}/runs/{run}/manifest.json")
}

/// The TSA's time-stamp of the manifest (an RFC 3161 `TimeStampResp`).
pub fn manifest_timestamp_key(merchant: MerchantId, run: Uuid) -> String {
    format!("merchants/{merchant}/runs/{run}/manifest.tsr")
}

impl Manifest {
    /// The exact bytes stored as `manifest.json` and signed.
    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut bytes = serde_json::to_vec_pretty(self)?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artefact(name: &str, sha: &str) -> Artefact {
        Artefact {
            name: name.into(),
            format: "txt".into(),
            content_type: "text/plain".into(),
            key: name.into(),
            size: 1,
            sha256: sha.into(),
            render_sha256: None,
            einvoice: None,
            signature: None,
        }
    }

    #[test]
    fn the_digest_is_over_sorted_lines() {
        let a = artefact("b.txt", &"1".repeat(64));
        let b = artefact("a.txt", &"2".repeat(64));
        let expected =
            sha256_hex(format!("{} a.txt\n{} b.txt\n", "2".repeat(64), "1".repeat(64)).as_bytes());
        assert_eq!(bundle_digest(&[a.clone(), b.clone()]), expected);
        assert_eq!(bundle_digest(&[b, a]), expected);
    }
}
