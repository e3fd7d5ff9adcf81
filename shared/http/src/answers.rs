//! The answers handlers send, as types: each derives `Serialize` (the handler returns it),
//! `Deserialize` (the CLI and `verify` read it) and `ToSchema` (the OpenAPI document shows it),
//! so that the document, the server and the client cannot drift.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use docbundle_domain::keys::{Jwk, Jwks};

/// The newest signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointView {
    /// The log's name: `<deployment's prefix>/<merchant id>` (also its key's name).
    pub origin: String,
    pub tree_size: u64,
    /// Hex SHA-256.
    pub root_hash: String,
    /// The C2SP signed note, with the cosignatures the witnesses have added; verify it with
    /// one of `verifierKeys` (and each witness's own key).
    pub checkpoint: String,
    /// The log's verifier keys (`<origin>+<hash>+<key>`), one per version of the log key.
    pub verifier_keys: Vec<String>,
    /// The configured witnesses and what each has done with this log.
    pub witnesses: Vec<WitnessView>,
    /// Cosignatures the deployment requires of each checkpoint (0: no witnesses).
    pub quorum: usize,
    /// Whether this checkpoint carries at least `quorum` cosignatures.
    pub meets_quorum: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Where the log is published as C2SP tlog-tiles (`checkpoint`, `tile/…` under it): a
    /// public URL when the service publishes its logs openly, else this API's
    /// `/api/v1/transparency/logs/{merchantId}/` (read with a `bundle.read` token).
    pub tiles_url: String,
}

/// A witness (C2SP tlog-witness) of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WitnessView {
    /// Its name, as its cosignature lines carry it.
    pub name: String,
    /// Its verifier key (`<name>+<hash>+<key>`, signature type 0x04).
    pub verifier_key: String,
    /// Whether the checkpoint carries its cosignature.
    pub cosigned: bool,
    /// The size of this log it last cosigned (0: none yet).
    pub cosigned_size: u64,
    /// Why its last submission failed, while it fails.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsistencyView {
    pub from: u64,
    pub to: u64,
    /// Hex SHA-256 hashes (RFC 9162 consistency proof).
    pub proof: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntryView {
    pub index: u64,
    /// The run whose manifest the entry is (absent for an erasure receipt's part).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<uuid::Uuid>,
    /// The erasure receipt part the entry is (`GET /api/v1/erasures/{id}` lists them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_id: Option<uuid::Uuid>,
    /// Hex SHA-256(0x00 ‖ the entry's bytes: the run's manifest.json, or the receipt part).
    pub leaf_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EntriesView {
    pub entries: Vec<EntryView>,
}

/// A completed run's signed manifest, behind a short-lived URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManifestLink {
    pub key: String,
    pub sha256: String,
    pub bundle_digest: String,
    /// Ed25519 signature over the manifest's bytes, base64.
    pub signature: String,
    /// The signing key's id in `/api/v1/signing-keys`.
    pub key_id: String,
    pub download_url: String,
    /// When a time-stamping authority is configured: its RFC 3161 time-stamp over the
    /// manifest's SHA-256 (`manifest.tsr`, a DER `TimeStampResp`), behind a short-lived URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_url: Option<String>,
    /// For a replay: the run it re-ran and whether every artefact came out identical.
    pub replay: Option<Value>,
    /// The assets the documents were rendered with (`{name, sha256}`), as the manifest lists
    /// them.
    pub assets: Vec<ManifestAssetLink>,
}

/// An asset among a run's inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ManifestAssetLink {
    pub name: String,
    pub sha256: String,
}

/// One artefact of a completed run, behind a short-lived URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtefactLink {
    pub name: String,
    pub format: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
    /// None once the run expired: the artefact was deleted (its hash above still proves what
    /// it was).
    pub download_url: Option<String>,
    /// For a signed PDF: SHA-256 of the render before it was signed (what a replay and an
    /// offline render reproduce).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub render_sha256: Option<String>,
    /// For a signed PDF: who signed it, at which level, and the time-stamp's time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<docbundle_domain::manifest::ArtefactSignature>,
    /// For an e-invoice (a Factur-X PDF or its XML): standard, profile and the XML's SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub einvoice: Option<docbundle_domain::manifest::ArtefactEinvoice>,
}

/// A run as `GET /api/v1/bundles/{id}` answers it: once completed, with its manifest and
/// artefacts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: docbundle_infra::db::runs::BundleRun,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ManifestLink>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artefacts: Option<Vec<ArtefactLink>>,
    /// Seconds the download URLs stay valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_urls_expire_in: Option<u64>,
    /// Once a checkpoint covers the run: its entry in the merchant's transparency log, with
    /// the inclusion proof and the signed checkpoint it leads to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transparency: Option<docbundle_app::transparency::Inclusion>,
    /// The legal holds in force that keep this run (on it, its batch or its configuration):
    /// while there is one, it neither expires nor is erased.
    #[serde(default)]
    pub legal_holds: Vec<uuid::Uuid>,
}

impl RunDetail {
    /// The run alone (before it completes, or as a launch answers it).
    pub fn of(run: docbundle_infra::db::runs::BundleRun) -> Self {
        RunDetail {
            run,
            manifest: None,
            artefacts: None,
            download_urls_expire_in: None,
            transparency: None,
            legal_holds: Vec::new(),
        }
    }
}

/// `GET /api/v1/trust-roots`: the certificates a relying party trusts to validate signed PDFs
/// and time-stamps (PEM, one certificate each).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustRoots {
    /// Roots of merchants' document-signing certificates.
    pub document_signing: Vec<String>,
    /// Roots of the time-stamping authority's certificates.
    pub time_stamping: Vec<String>,
}
