//! PAdES baseline signatures (ETSI EN 319 142-1, levels B-B, B-T and B-LT) of PDFs whose signing key
//! lives elsewhere (Vault transit): [`prepare`] appends an incremental update with an
//! invisible signature field and a `/Contents` placeholder and returns the digest of the CMS
//! signed attributes; the caller has that digest signed (ECDSA P-256, prehashed) and, for
//! B-T, a time-stamp token over the signature value fetched ([`tsp`]); [`Prepared::finish`]
//! writes the CMS SignedData into the placeholder; for B-LT, [`dss::append_dss`] adds the
//! validation data in one more update.
//!
//! The rendered bytes are never changed: everything is appended, and the `/ByteRange` covers
//! the whole file but the placeholder, so a reader checks exactly what was rendered plus the
//! update. No I/O here.

mod cms;
pub mod dss;
pub mod metadata;
mod pdf;
pub mod tsp;
pub mod verify;
mod xref;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

pub use pdf::PdfError;

/// This signer's name and version, as a manifest's renderer build records it.
pub const SIGNER: &str = concat!("docbundle-pades ", env!("CARGO_PKG_VERSION"));

/// Bytes reserved for the CMS SignedData (hex-encoded in the file, so twice this): room for a
/// chain of a few certificates and a time-stamp token with its own chain.
pub const DEFAULT_RESERVE: usize = 24 * 1024;

/// What a signature says besides the signer (each an optional PDF text string).
#[derive(Debug, Clone, Default)]
pub struct Details {
    pub reason: Option<String>,
    pub location: Option<String>,
    pub contact_info: Option<String>,
    /// The claimed signing time (`/M`); a B-T signature's time-stamp attests it.
    pub signing_time: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum PadesError {
    #[error(transparent)]
    Pdf(#[from] PdfError),
    #[error("the signer's certificate cannot be read: {0}")]
    Certificate(String),
    #[error("the CMS signature cannot be encoded: {0}")]
    Encoding(String),
    #[error("the signature ({actual} bytes) does not fit the {reserved} bytes reserved for it")]
    TooLarge { actual: usize, reserved: usize },
}

/// A PDF with its signature placeholder, waiting for the signature of [`Prepared::digest`].
pub struct Prepared {
    pdf: pdf::Placeholder,
    attributes: cms::SignedAttributes,
    chain: Vec<x509_cert::Certificate>,
}

/// Appends the signature field and placeholder to `pdf` (rendered by this service) for a
/// signer whose certificate chain is `chain` (DER, the signer's certificate first).
pub fn prepare(
    pdf: &[u8],
    chain: &[Vec<u8>],
    details: &Details,
    reserve: usize,
) -> Result<Prepared, PadesError> {
    let chain = cms::parse_chain(chain)?;
    let placeholder = pdf::append_placeholder(pdf, details, reserve)?;
    let content_digest: [u8; 32] = {
        let mut hasher = Sha256::new();
        for range in placeholder.signed_ranges() {
            hasher.update(range);
        }
        hasher.finalize().into()
    };
    let attributes = cms::SignedAttributes::new(&content_digest, &chain[0])?;
    Ok(Prepared {
        pdf: placeholder,
        attributes,
        chain,
    })
}

impl Prepared {
    /// SHA-256 of the DER signed attributes: what the key signs (prehashed).
    pub fn digest(&self) -> [u8; 32] {
        self.attributes.digest()
    }

    /// The signer's certificate subject (RFC 4514, e.g. `CN=Merchant A`).
    pub fn signer(&self) -> String {
        self.chain[0].tbs_certificate.subject.to_string()
    }

    /// SHA-256 (hex) of the signer's certificate.
    pub fn certificate_sha256(&self) -> String {
        use der::Encode;
        let der = self.chain[0].to_der().unwrap_or_default();
        hex::encode(Sha256::digest(der))
    }

    /// Writes the CMS SignedData with `signature` (DER ECDSA over [`Prepared::digest`]) and,
    /// for B-T, the signature time-stamp token (a DER `ContentInfo`, see
    /// [`tsp::signature_imprint`]) into the placeholder; returns the signed PDF.
    pub fn finish(
        self,
        signature: &[u8],
        timestamp_token: Option<&[u8]>,
    ) -> Result<Vec<u8>, PadesError> {
        let signed_data =
            cms::signed_data(self.attributes, &self.chain, signature, timestamp_token)?;
        self.pdf.fill(&signed_data)
    }
}

/// Whether `chain`'s first certificate (DER) holds the public key `spki` (DER
/// SubjectPublicKeyInfo): a chain imported for a key must be that key's.
pub fn certifies(chain: &[Vec<u8>], spki: &[u8]) -> Result<bool, PadesError> {
    use der::Encode;
    let leaf = cms::parse_chain(chain)?;
    let held = leaf[0]
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| PadesError::Encoding(e.to_string()))?;
    Ok(held == spki)
}
