//! Vault (or OpenBao): manifest signing with the transit engine and secrets in KV v2.
//!
//! The functions authenticate with AppRole, lazily on first use (never during a cold start),
//! and log in again when the token nears expiry or is refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::RwLock;
use vaultrs::api::transit::responses::ReadKeyData;
use vaultrs::client::{Client as _, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::error::{with_timeout, DependencyError};

mod document_keys;
pub use document_keys::{pem_blocks, pem_chain, pem_encode, DocumentKey, DocumentSignature};

#[derive(Debug, Clone)]
pub struct VaultSettings {
    pub addr: String,
    /// PEM CA bundle for an HTTPS Vault (`VAULT_CACERT`; else the system's roots).
    pub ca_cert: Option<String>,
    pub approle_mount: String,
    pub role_id: String,
    pub secret_id: String,
    pub transit_mount: String,
    pub signing_key: String,
    /// The transit key that signs the transparency logs' checkpoints (`VAULT_LOG_KEY`):
    /// separate from the manifest key, so each rotates on its own.
    pub log_key: String,
    pub kv_mount: String,
    /// Each merchant's document-signing key is `<prefix><merchant id>` in the transit mount.
    pub document_key_prefix: String,
    /// The PKI engine and role that issue document-signing certificates (`None`: an
    /// external CA; chains are imported).
    pub pki: Option<PkiSettings>,
}

/// Where certificates for document-signing keys come from in Vault's PKI engine.
#[derive(Debug, Clone)]
pub struct PkiSettings {
    pub mount: String,
    pub role: String,
}

/// A detached signature made by the transit engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Standard base64 of the raw signature bytes (without Vault's `vault:vN:` prefix).
    pub signature: String,
    /// Which version of the key signed.
    pub key_version: u32,
}

/// One version of the signing key's public half.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub version: u32,
    /// Standard base64 of the 32-byte ed25519 public key.
    pub public_key: String,
}

struct Session {
    client: Arc<VaultClient>,
    renew_after: Instant,
}

pub struct Vault {
    settings: VaultSettings,
    timeout: Duration,
    session: RwLock<Option<Session>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("addr", &self.settings.addr)
            .finish_non_exhaustive()
    }
}

impl Vault {
    pub fn new(settings: VaultSettings, timeout: Duration) -> Self {
        Vault {
            settings,
            timeout,
            session: RwLock::new(None),
        }
    }

    pub fn signing_key_name(&self) -> &str {
        &self.settings.signing_key
    }

    /// `<key name>:<version>`: how manifests and the JWKS name a key version.
    pub fn key_id(&self, version: u32) -> String {
        format!("{}:{version}", self.settings.signing_key)
    }

    /// The transit key that signs checkpoints.
    pub fn log_key_name(&self) -> &str {
        &self.settings.log_key
    }

    /// `<log key name>:<version>`: how the JWKS names a version of the log key.
    pub fn log_key_id(&self, version: u32) -> String {
        format!("{}:{version}", self.settings.log_key)
    }

    async fn client(&self) -> Result<Arc<VaultClient>, DependencyError> {
        if let Some(session) = self.session.read().await.as_ref() {
            if Instant::now() < session.renew_after {
                return Ok(session.client.clone());
            }
        }
        let mut guard = self.session.write().await;
        if let Some(session) = guard.as_ref() {
            if Instant::now() < session.renew_after {
                return Ok(session.client.clone());
            }
        }
        let client = self.login().await?;
        *guard = Some(Session {
            client: client.0.clone(),
            renew_after: client.1,
        });
        Ok(client.0)
    }

    async fn login(&self) -> Result<(Arc<VaultClient>, Instant), DependencyError> {
        let mut builder = VaultClientSettingsBuilder::default();
        builder
            .address(&self.settings.addr)
            .timeout(Some(self.timeout))
            .token("");
        if let Some(ca) = &self.settings.ca_cert {
            // An organisation's CA for an HTTPS Vault (else the system's roots).
            builder.ca_certs(vec![ca.clone()]);
        }
        let settings = builder
            .build()
            .map_err(|e| DependencyError::failed("vault", "configure client", e))?;
        let mut client = VaultClient::new(settings)
            .map_err(|e| DependencyError::failed("vault", "configure client", e))?;
        let auth = with_timeout(
            "vault",
            "approle login",
            self.timeout,
            // With every cause: a TLS failure says which certificate problem it was.
            async {
                vaultrs::auth::approle::login(
                    &client,
                    &self.settings.approle_mount,
                    &self.settings.role_id,
                    &self.settings.secret_id,
                )
                .await
                .map_err(|e| crate::error::with_causes(&e))
            },
        )
        .await?;
        client.set_token(&auth.client_token);
        // Renew well before the lease ends; a zero lease (root-like token) never expires.
        let lease = match auth.lease_duration {
            0 => Duration::from_secs(3600),
            secs => Duration::from_secs(secs * 3 / 4),
        };
        Ok((Arc::new(client), Instant::now() + lease))
    }

    async fn forget_session(&self) {
        *self.session.write().await = None;
    }

    /// Runs `call` with a logged-in client; when Vault refuses the token (revoked, expired
    /// early), logs in again once and retries.
    async fn with_client<T, F, Fut>(&self, operation: &str, call: F) -> Result<T, DependencyError>
    where
        F: Fn(Arc<VaultClient>) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        for attempt in 0..2 {
            let client = self.client().await?;
            match tokio::time::timeout(self.timeout, call(client)).await {
                Err(_) => return Err(DependencyError::timeout("vault", operation, self.timeout)),
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(ClientError::APIError { code: 403, .. })) if attempt == 0 => {
                    self.forget_session().await;
                }
                Ok(Err(e)) => return Err(DependencyError::failed("vault", operation, e)),
            }
        }
        Err(DependencyError::failed(
            "vault",
            operation,
            "permission denied",
        ))
    }

    /// Signs `message` with the transit signing key (ed25519; the private key never leaves Vault).
    pub async fn sign(&self, message: &[u8]) -> Result<Signature, DependencyError> {
        self.sign_with(&self.settings.signing_key, message).await
    }

    /// Signs `message` with the transit key `key` (e.g. [`Vault::log_key_name`]).
    pub async fn sign_with(&self, key: &str, message: &[u8]) -> Result<Signature, DependencyError> {
        let input = BASE64.encode(message);
        let mount = &self.settings.transit_mount;
        let response = self
            .with_client("transit sign", |client| {
                let input = input.clone();
                async move { vaultrs::transit::data::sign(&*client, mount, key, &input, None).await }
            })
            .await?;
        parse_vault_signature(&response.signature).ok_or_else(|| {
            DependencyError::failed("vault", "transit sign", "unexpected signature format")
        })
    }

    /// Asks Vault whether `signature` (standard base64) is valid for `message` under key version
    /// `key_version`.
    pub async fn verify(
        &self,
        message: &[u8],
        signature: &Signature,
    ) -> Result<bool, DependencyError> {
        let input = BASE64.encode(message);
        let wrapped = format!("vault:v{}:{}", signature.key_version, signature.signature);
        let mount = &self.settings.transit_mount;
        let key = &self.settings.signing_key;
        let response = self
            .with_client("transit verify", |client| {
                let input = input.clone();
                let wrapped = wrapped.clone();
                async move {
                    let mut opts =
                        vaultrs::api::transit::requests::VerifySignedDataRequest::builder();
                    opts.signature(wrapped);
                    vaultrs::transit::data::verify(&*client, mount, key, &input, Some(&mut opts))
                        .await
                }
            })
            .await?;
        Ok(response.valid)
    }

    /// Every version of the signing key's public half, oldest first.
    pub async fn public_keys(&self) -> Result<Vec<PublicKey>, DependencyError> {
        self.public_keys_of(&self.settings.signing_key).await
    }

    /// Every version of the transit key `key`'s public half, oldest first.
    pub async fn public_keys_of(&self, key: &str) -> Result<Vec<PublicKey>, DependencyError> {
        let mount = &self.settings.transit_mount;
        let response = self
            .with_client("read signing key", |client| async move {
                vaultrs::transit::key::read(&*client, mount, key).await
            })
            .await?;
        let ReadKeyData::Asymmetric(keys) = response.keys else {
            return Err(DependencyError::failed(
                "vault",
                "read signing key",
                "the signing key is not asymmetric",
            ));
        };
        let mut keys: Vec<PublicKey> = keys
            .into_iter()
            .filter_map(|(version, entry)| {
                Some(PublicKey {
                    version: version.parse().ok()?,
                    public_key: entry.public_key,
                })
            })
            .collect();
        keys.sort_by_key(|k| k.version);
        Ok(keys)
    }

    /// Writes a secret to KV v2 at `path` (a new version of it).
    pub async fn put_secret<T: Serialize + Sync>(
        &self,
        path: &str,
        value: &T,
    ) -> Result<(), DependencyError> {
        let mount = &self.settings.kv_mount;
        self.with_client("kv write", |client| async move {
            vaultrs::kv2::set(&*client, mount, path, value).await
        })
        .await?;
        Ok(())
    }

    /// Reads the latest version of the secret at `path`; `Ok(None)` when there is none.
    pub async fn get_secret<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, DependencyError> {
        let mount = &self.settings.kv_mount;
        let result = self
            .with_client("kv read", |client| async move {
                match vaultrs::kv2::read::<serde_json::Value>(&*client, mount, path).await {
                    Ok(value) => Ok(Some(value)),
                    Err(ClientError::APIError { code: 404, .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await?;
        match result {
            None => Ok(None),
            Some(value) => serde_json::from_value(value)
                .map(Some)
                .map_err(|e| DependencyError::failed("vault", "kv read", e)),
        }
    }
}

/// `vault:v3:BASE64` → the signature and key version 3.
fn parse_vault_signature(wrapped: &str) -> Option<Signature> {
    let rest = wrapped.strip_prefix("vault:v")?;
    let (version, signature) = rest.split_once(':')?;
    Some(Signature {
        signature: signature.to_owned(),
        key_version: version.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_signatures_are_unwrapped() {
        assert_eq!(
            parse_vault_signature("vault:v12:AbC+/="),
            Some(Signature {
                signature: "AbC+/=".into(),
                key_version: 12
            })
        );
        assert_eq!(parse_vault_signature("AbC"), None);
        assert_eq!(parse_vault_signature("vault:vx:AbC"), None);
    }
}
