//! Each merchant's document-signing key: an ECDSA P-256 key in Vault transit that never
//! leaves it, its certificate chain stored beside it (`set-certificate`), the certificate
//! issued by Vault's PKI engine for a CSR the transit key made itself, and signatures of
//! digests (`prehashed`).

use base64::Engine;
use rustify_derive::Endpoint;
use serde::Deserialize;
use std::collections::HashMap;
use vaultrs::api::transit::requests::{CreateKeyRequest, SignDataRequest};
use vaultrs::api::transit::{HashAlgorithm, KeyType, MarshalingAlgorithm};
use vaultrs::error::ClientError;

use super::{Vault, BASE64};
use crate::error::DependencyError;
use docbundle_domain::MerchantId;

/// A merchant's signing key as last read: its latest version and that version's chain.
#[derive(Debug, Clone)]
pub struct DocumentKey {
    pub name: String,
    pub version: u32,
    /// DER certificates, the key's own first; empty until a certificate is stored.
    pub chain: Vec<Vec<u8>>,
    /// The latest version's public key (PEM SubjectPublicKeyInfo).
    pub public_key: String,
}

/// A DER ECDSA signature and the key version that made it.
#[derive(Debug, Clone)]
pub struct DocumentSignature {
    pub der: Vec<u8>,
    pub version: u32,
}

#[derive(Debug, Endpoint)]
#[endpoint(path = "{self.mount}/keys/{self.name}", response = "KeyRead")]
struct ReadKey {
    #[endpoint(skip)]
    mount: String,
    #[endpoint(skip)]
    name: String,
}

#[derive(Debug, Deserialize)]
struct KeyRead {
    latest_version: u32,
    keys: HashMap<String, KeyVersion>,
}

#[derive(Debug, Deserialize)]
struct KeyVersion {
    #[serde(default)]
    certificate_chain: String,
    #[serde(default)]
    public_key: String,
}

#[derive(Debug, Endpoint)]
#[endpoint(
    path = "{self.mount}/keys/{self.name}/csr",
    method = "POST",
    response = "Csr"
)]
struct MakeCsr {
    #[endpoint(skip)]
    mount: String,
    #[endpoint(skip)]
    name: String,
}

#[derive(Debug, Deserialize)]
struct Csr {
    csr: String,
}

#[derive(Debug, Endpoint)]
#[endpoint(
    path = "{self.mount}/keys/{self.name}/set-certificate",
    method = "POST"
)]
struct SetCertificate {
    #[endpoint(skip)]
    mount: String,
    #[endpoint(skip)]
    name: String,
    certificate_chain: String,
}

/// PEM certificates → DER, in order.
pub fn pem_chain(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    pem_blocks(pem, "CERTIFICATE")
}

/// The DER of every PEM block labelled `label` (`CERTIFICATE`, `PUBLIC KEY`), in order.
pub fn pem_blocks(pem: &str, label: &str) -> Result<Vec<Vec<u8>>, String> {
    let (begin, end) = (
        format!("-----BEGIN {label}-----"),
        format!("-----END {label}-----"),
    );
    let mut blocks = Vec::new();
    for block in pem.split(end.as_str()) {
        let Some((_, body)) = block.split_once(begin.as_str()) else {
            continue;
        };
        let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        blocks.push(BASE64.decode(b64).map_err(|e| e.to_string())?);
    }
    Ok(blocks)
}

/// `der` as a PEM block labelled `label`, 64 characters a line.
pub fn pem_encode(der: &[u8], label: &str) -> String {
    let b64 = BASE64.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .filter_map(|line| std::str::from_utf8(line).ok())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

impl Vault {
    /// The transit key name of `merchant`'s document-signing key.
    pub fn document_key_name(&self, merchant: MerchantId) -> String {
        format!("{}{merchant}", self.settings.document_key_prefix)
    }

    /// The merchant's key and its latest version's chain; `None` when it has no key yet.
    pub async fn document_key(
        &self,
        merchant: MerchantId,
    ) -> Result<Option<DocumentKey>, DependencyError> {
        let name = self.document_key_name(merchant);
        let mount = &self.settings.transit_mount;
        let read = self
            .with_client("read document key", |client| {
                let endpoint = ReadKey {
                    mount: mount.clone(),
                    name: name.clone(),
                };
                async move {
                    match vaultrs::api::exec_with_result(&*client, endpoint).await {
                        Ok(read) => Ok(Some(read)),
                        Err(ClientError::APIError { code: 404, .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                }
            })
            .await?;
        let Some(read) = read else {
            return Ok(None);
        };
        let latest = read.keys.get(&read.latest_version.to_string());
        let chain = latest
            .map(|v| pem_chain(&v.certificate_chain))
            .transpose()
            .map_err(|e| DependencyError::failed("vault", "read document key", e))?
            .unwrap_or_default();
        Ok(Some(DocumentKey {
            name,
            version: read.latest_version,
            chain,
            public_key: latest.map(|v| v.public_key.clone()).unwrap_or_default(),
        }))
    }

    /// Creates the merchant's key (ECDSA P-256, not exportable); a no-op when it exists.
    pub async fn create_document_key(&self, merchant: MerchantId) -> Result<(), DependencyError> {
        let name = self.document_key_name(merchant);
        let mount = &self.settings.transit_mount;
        self.with_client("create document key", |client| {
            let name = name.clone();
            async move {
                let mut opts = CreateKeyRequest::builder();
                opts.key_type(KeyType::EcdsaP256).exportable(false);
                vaultrs::transit::key::create(&*client, mount, &name, Some(&mut opts)).await
            }
        })
        .await
    }

    /// A CSR (PEM) for the key's latest version, signed by the key inside Vault.
    pub async fn document_key_csr(&self, merchant: MerchantId) -> Result<String, DependencyError> {
        let name = self.document_key_name(merchant);
        let mount = &self.settings.transit_mount;
        let csr = self
            .with_client("document key csr", |client| {
                let endpoint = MakeCsr {
                    mount: mount.clone(),
                    name: name.clone(),
                };
                async move { vaultrs::api::exec_with_result(&*client, endpoint).await }
            })
            .await?;
        Ok(csr.csr)
    }

    /// Has Vault's PKI engine issue a certificate for `csr` naming `common_name`; returns the
    /// chain (PEM: the certificate, then its issuers). `None` when no PKI engine is set.
    pub async fn issue_document_certificate(
        &self,
        csr: &str,
        common_name: &str,
    ) -> Result<Option<String>, DependencyError> {
        let Some(pki) = &self.settings.pki else {
            return Ok(None);
        };
        let issued = self
            .with_client("issue document certificate", |client| async move {
                vaultrs::pki::cert::ca::sign(
                    &*client,
                    &pki.mount,
                    &pki.role,
                    csr,
                    common_name,
                    None,
                )
                .await
            })
            .await?;
        let mut chain = vec![issued.certificate.trim().to_owned()];
        match issued.ca_chain {
            Some(cas) if !cas.is_empty() => chain.extend(cas.iter().map(|c| c.trim().to_owned())),
            _ => chain.push(issued.issuing_ca.trim().to_owned()),
        }
        Ok(Some(chain.join("\n") + "\n"))
    }

    /// The PKI engine's CA certificate (PEM), the root readers must trust; `None` without a
    /// PKI engine.
    pub async fn document_signing_ca(&self) -> Result<Option<String>, DependencyError> {
        let Some(pki) = &self.settings.pki else {
            return Ok(None);
        };
        let read = self
            .with_client("read signing CA", |client| async move {
                vaultrs::pki::cert::read(&*client, &pki.mount, "ca").await
            })
            .await?;
        Ok(Some(read.certificate))
    }

    /// Stores `chain_pem` (the key's certificate first) with the key's latest version.
    pub async fn set_document_certificate(
        &self,
        merchant: MerchantId,
        chain_pem: &str,
    ) -> Result<(), DependencyError> {
        let name = self.document_key_name(merchant);
        let mount = &self.settings.transit_mount;
        self.with_client("set document certificate", |client| {
            let endpoint = SetCertificate {
                mount: mount.clone(),
                name: name.clone(),
                certificate_chain: chain_pem.to_owned(),
            };
            async move { vaultrs::api::exec_with_empty(&*client, endpoint).await }
        })
        .await
    }

    /// Signs a SHA-256 `digest` with the merchant's key (only the digest goes to Vault).
    pub async fn sign_document_digest(
        &self,
        merchant: MerchantId,
        digest: &[u8; 32],
    ) -> Result<DocumentSignature, DependencyError> {
        let name = self.document_key_name(merchant);
        let mount = &self.settings.transit_mount;
        let input = BASE64.encode(digest);
        let response = self
            .with_client("sign document digest", |client| {
                let name = name.clone();
                let input = input.clone();
                async move {
                    let mut opts = SignDataRequest::builder();
                    opts.prehashed(true)
                        .hash_algorithm(HashAlgorithm::Sha2_256)
                        .marshaling_algorithm(MarshalingAlgorithm::Asn1);
                    vaultrs::transit::data::sign(&*client, mount, &name, &input, Some(&mut opts))
                        .await
                }
            })
            .await?;
        let parsed = super::parse_vault_signature(&response.signature);
        let decoded = parsed
            .as_ref()
            .and_then(|s| BASE64.decode(&s.signature).ok());
        match (parsed, decoded) {
            (Some(signature), Some(der)) => Ok(DocumentSignature {
                der,
                version: signature.key_version,
            }),
            _ => Err(DependencyError::failed(
                "vault",
                "sign document digest",
                "unexpected signature format",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_chains_become_der_in_order() {
        let pem = "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n\
                   -----BEGIN CERTIFICATE-----\nBAUG\nBw==\n-----END CERTIFICATE-----\n";
        assert_eq!(
            pem_chain(pem).unwrap(),
            vec![vec![1, 2, 3], vec![4, 5, 6, 7]]
        );
        assert!(pem_chain("").unwrap().is_empty());
        assert!(pem_chain("-----BEGIN CERTIFICATE-----\n%%\n-----END CERTIFICATE-----").is_err());
        let der: Vec<u8> = (0..=255).collect();
        let pem = pem_encode(&der, "PUBLIC KEY");
        assert!(pem.lines().all(|line| line.len() <= 64));
        assert_eq!(pem_blocks(&pem, "PUBLIC KEY").unwrap(), vec![der]);
        assert!(pem_chain(&pem).unwrap().is_empty(), "another label");
    }
}
