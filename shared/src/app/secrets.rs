//! Signing secrets (Standard Webhooks `whsec_…`), for inbound sources and completion webhook
//! endpoints alike: kept in Vault KV only, issued once, rotated with an overlap during which
//! the previous secret stays valid.

use chrono::{DateTime, Utc};

use crate::domain::inbound::{self, SourceSecrets};
use crate::error::ApiError;
use crate::infra::secrets::Vault;

/// A fresh secret stored at `path` (before the row it belongs to, so that no row exists
/// without its secret); returns it, to show once.
pub async fn issue(vault: &Vault, path: &str) -> Result<String, ApiError> {
    let secret = inbound::generate_secret().map_err(ApiError::internal)?;
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
) -> Result<(String, DateTime<Utc>), ApiError> {
    let mut secrets: SourceSecrets = vault.get_secret(path).await?.unwrap_or_default();
    let secret = inbound::generate_secret().map_err(ApiError::internal)?;
    let now = Utc::now();
    let overlap = chrono::Duration::from_std(overlap).map_err(ApiError::internal)?;
    secrets.rotate(secret.clone(), now, overlap);
    vault.put_secret(path, &secrets).await?;
    Ok((secret, now + overlap))
}
