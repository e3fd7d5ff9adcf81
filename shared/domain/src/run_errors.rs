//! The codes a run's `error` carries when something other than its template ended it, and the
//! code of `lastError` while it is retried: one name each, for the worker, the dead-letter
//! handler, the stalled-run sweep, the API and the docs.

/// A transient fault on the last delivery the queue allows.
pub const RETRIES_EXHAUSTED: &str = "RETRIES_EXHAUSTED";
/// No progress for `RUN_STALE_AFTER_SECONDS`: its last attempt ended without an outcome.
pub const RUN_STALLED: &str = "RUN_STALLED";
/// The run's batch was cancelled before the run started.
pub const BATCH_CANCELLED: &str = "BATCH_CANCELLED";
/// The run's batch stopped (`failFast`) before the run started.
pub const BATCH_STOPPED: &str = "BATCH_STOPPED";
/// A dependency (S3, Vault, the database …) failed this attempt; the run is retried.
pub const DEPENDENCY_UNAVAILABLE: &str = "DEPENDENCY_UNAVAILABLE";
/// The run's configuration version no longer exists.
pub const CONFIGURATION_MISSING: &str = "CONFIGURATION_MISSING";
/// The run's seed no longer exists.
pub const SEED_MISSING: &str = "SEED_MISSING";
/// The run's stored seed is not JSON.
pub const SEED_UNREADABLE: &str = "SEED_UNREADABLE";
/// An asset the version pins cannot be found.
pub const ASSET_MISSING: &str = "ASSET_MISSING";
/// The manifest cannot be encoded.
pub const MANIFEST_ERROR: &str = "MANIFEST_ERROR";
/// A PDF could not be signed for good: the time-stamping authority refused, the PDF cannot
/// carry a signature, or no time-stamping authority is configured for a `B-T` signature.
pub const SIGNATURE_FAILED: &str = "SIGNATURE_FAILED";
/// An e-invoice's XML broke its profile's XSD or EN 16931 rules with this seed (the message
/// names the rule ids): no invalid e-invoice is stored.
pub const EINVOICE_INVALID: &str = "EINVOICE_INVALID";
/// The merchant's signing key has no certificate and none can be issued here (an external
/// CA: import the chain).
pub const SIGNING_CERTIFICATE_MISSING: &str = "SIGNING_CERTIFICATE_MISSING";

/// Why a run ended without its bundle (its `error`), or why its last attempt is retried
/// (its `lastError`, with the time): stored and shown as `{code, message, document?, at?}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunError {
    pub code: String,
    pub message: String,
    /// The document whose template failed, for a render failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    /// When the fault happened, for a retried attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<chrono::DateTime<chrono::Utc>>,
}

impl RunError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        RunError {
            code: code.to_owned(),
            message: message.into(),
            document: None,
            at: None,
        }
    }

    /// As stored in the run's `error` / `last_error` column.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_else(|_| serde_json::json!({"code": self.code}))
    }
}
