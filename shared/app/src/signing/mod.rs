//! Signing a run's PDFs as its merchant (see [`documents`]), and the merchants' keys as last
//! read from Vault.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use docbundle_domain::MerchantId;
use docbundle_infra::secrets::DocumentKey;

#[cfg(feature = "pdf")]
pub(crate) mod documents;

/// How long a merchant's key and chain are reused before Vault is asked again.
const KEY_CACHE: Duration = Duration::from_secs(300);

/// The merchants' keys as last read, per function instance.
#[derive(Debug, Default)]
pub struct SigningKeys(Mutex<HashMap<MerchantId, (Instant, DocumentKey)>>);

impl SigningKeys {
    #[cfg_attr(not(feature = "pdf"), allow(dead_code))]
    fn get(&self, merchant: MerchantId) -> Option<DocumentKey> {
        let cached = self.0.lock().ok()?;
        let (at, key) = cached.get(&merchant)?;
        (at.elapsed() < KEY_CACHE).then(|| key.clone())
    }

    #[cfg_attr(not(feature = "pdf"), allow(dead_code))]
    fn put(&self, merchant: MerchantId, key: DocumentKey) {
        if let Ok(mut cached) = self.0.lock() {
            cached.insert(merchant, (Instant::now(), key));
        }
    }

    #[cfg_attr(not(feature = "pdf"), allow(dead_code))]
    fn forget(&self, merchant: MerchantId) {
        if let Ok(mut cached) = self.0.lock() {
            cached.remove(&merchant);
        }
    }
}

/// A merchant's document-signing key as an administrator sees it.
#[derive(Debug, Clone)]
pub struct KeyStatus {
    pub key: DocumentKey,
    /// A CSR for its latest version (PEM), made by the key inside Vault.
    pub csr: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The chain is not PEM certificates, or its first one is not for the key.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Dependency(#[from] docbundle_infra::error::DependencyError),
}

/// The merchant's key (created when it has none), its chain and a CSR for it — what an
/// external CA needs to issue its certificate.
pub async fn key_status(
    services: &crate::Services,
    merchant: MerchantId,
) -> Result<KeyStatus, docbundle_infra::error::DependencyError> {
    let key = existing_or_new(services, merchant).await?;
    let csr = services.vault.document_key_csr(merchant).await?;
    Ok(KeyStatus { key, csr })
}

/// The merchant's key, created first when it has none.
pub(crate) async fn existing_or_new(
    services: &crate::Services,
    merchant: MerchantId,
) -> Result<DocumentKey, docbundle_infra::error::DependencyError> {
    let vault = &services.vault;
    if let Some(key) = vault.document_key(merchant).await? {
        return Ok(key);
    }
    vault.create_document_key(merchant).await?;
    vault.document_key(merchant).await?.ok_or_else(|| {
        docbundle_infra::error::DependencyError::failed(
            "vault",
            "read document key",
            "the key just created is not there",
        )
    })
}

/// Stores `chain_pem` (the merchant's certificate first, then its issuers) with the key's
/// latest version, once the certificate is for that key.
pub async fn import_chain(
    services: &crate::Services,
    merchant: MerchantId,
    chain_pem: &str,
) -> Result<DocumentKey, ImportError> {
    let chain = docbundle_infra::secrets::pem_chain(chain_pem)
        .map_err(|e| ImportError::Invalid(format!("not PEM certificates: {e}")))?;
    if chain.is_empty() {
        return Err(ImportError::Invalid("holds no certificate".into()));
    }
    let status = key_status(services, merchant).await?;
    let spki = docbundle_infra::secrets::pem_blocks(&status.key.public_key, "PUBLIC KEY")
        .ok()
        .and_then(|der| der.into_iter().next())
        .ok_or_else(|| ImportError::Invalid("the key's public key cannot be read".into()))?;
    match docbundle_pades::certifies(&chain, &spki) {
        Ok(true) => {}
        Ok(false) => {
            return Err(ImportError::Invalid(
                "its first certificate is not for the merchant's signing key".into(),
            ))
        }
        Err(e) => return Err(ImportError::Invalid(e.to_string())),
    }
    services
        .vault
        .set_document_certificate(merchant, chain_pem)
        .await?;
    services.signing_keys.forget(merchant);
    Ok(services
        .vault
        .document_key(merchant)
        .await?
        .unwrap_or(status.key))
}
