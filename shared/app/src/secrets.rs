//! Signing secrets (Standard Webhooks `whsec_…`), for inbound sources and completion webhook
//! endpoints alike: kept in Vault KV only, issued once, rotated with an overlap during which
//! the previous secret stays valid.

use chrono::{DateTime, Utc};

use docbundle_domain::inbound::{self, SourceSecrets};
use docbundle_infra::error::DependencyError;
use docbundle_infra::secrets::Vault;

/// Why a secret could not be issued or rotated.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// No randomness, or an overlap too long to add to a date: a fault of this process.
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

fn internal(e: impl std::fmt::Display) -> SecretError {
    SecretError::Internal(e.to_string())
}

/// A fresh secret stored at `path` (before the row it belongs to, so that no row exists
/// without its secret); returns it, to show once.
pub async fn issue(vault: &Vault, path: &str) -> Result<String, SecretError> {
    let secret = inbound::generate_secret().map_err(internal)?;
    vault
        .put_secret(path, &SourceSecrets::new(secret.clone(), Utc::now()))
        .await?;
    Ok(secret)
}

/// A new current secret at `path`; the previous ones stay valid for `overlap`. Returns the
/// new secret and until when the previous one is valid.
pub async fn rotate(
    vault: &Vault,
    path: &str,
    overlap: std::time::Duration,
) -> Result<(String, DateTime<Utc>), SecretError> {
    let mut secrets: SourceSecrets = vault.get_secret(path).await?.unwrap_or_default();
    let secret = inbound::generate_secret().map_err(internal)?;
    let now = Utc::now();
    let overlap = chrono::Duration::from_std(overlap).map_err(internal)?;
    secrets.rotate(secret.clone(), now, overlap);
    vault.put_secret(path, &secrets).await?;
    Ok((secret, now + overlap))
}
