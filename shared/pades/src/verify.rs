//! Checking a signed PDF offline, as `docbundle verify` does: the signature's `/ByteRange`,
//! its CMS (the message digest, the ECDSA P-256 signature over the signed attributes), the
//! signer's chain up to one of `roots`, and a signature time-stamp (its imprint, the TSA's
//! signature, the TSA's chain up to one of `tsa_roots`). Only ECDSA P-256 with SHA-256 is
//! checked (what this service signs with): a chain in another algorithm fails as
//! unsupported; a TSA signing in another (public TSAs use RSA) is named as not checked, its
//! imprint and time still checked.

use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerInfo};
use der::asn1::OctetString;
use der::{Decode, Encode};
use lopdf::{Document, Object};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use x509_cert::Certificate;

use crate::cms::{ID_MESSAGE_DIGEST, ID_SIGNATURE_TIME_STAMP};

/// What a valid signature says.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The signer's certificate subject (RFC 4514).
    pub signer: String,
    /// The subject of the root the chain ends at.
    pub root: String,
    /// The claimed signing time (`/M`), as written.
    pub claimed: Option<String>,
    /// The TSA's time (seconds since the Unix epoch) and its subject, for a time-stamped one.
    pub timestamp: Option<(std::time::Duration, String)>,
    /// Whether validation data (a `/DSS`) follows the signature.
    pub long_term: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("it carries no signature")]
    Unsigned,
    #[error("it cannot be read: {0}")]
    Unreadable(String),
    #[error("the signed bytes changed: the digest does not match")]
    DigestMismatch,
    #[error("the signature does not hold for the signer's key")]
    BadSignature,
    #[error("the signer's certificate does not chain to a trusted root")]
    Untrusted,
    #[error("the time-stamp does not hold: {0}")]
    BadTimestamp(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
}

fn unreadable(e: impl std::fmt::Display) -> VerifyError {
    VerifyError::Unreadable(e.to_string())
}

/// Verifies the PDF's (first) signature; `roots` and `tsa_roots` are DER certificates.
pub fn verify(
    pdf: &[u8],
    roots: &[Vec<u8>],
    tsa_roots: &[Vec<u8>],
) -> Result<Verified, VerifyError> {
    let doc = Document::load_mem(pdf).map_err(unreadable)?;
    let (sig, long_term) = signature_dictionary(&doc)?;
    let range: Vec<usize> = sig
        .get(b"ByteRange")
        .and_then(Object::as_array)
        .map_err(unreadable)?
        .iter()
        .map(|n| n.as_i64().ok().and_then(|n| usize::try_from(n).ok()))
        .collect::<Option<_>>()
        .ok_or_else(|| unreadable("/ByteRange is not four offsets"))?;
    let [a, b, c, d] = range[..] else {
        return Err(unreadable("/ByteRange is not four offsets"));
    };
    let first = pdf
        .get(a..a + b)
        .ok_or_else(|| unreadable("/ByteRange outside the file"))?;
    let second = pdf
        .get(c..c + d)
        .ok_or_else(|| unreadable("/ByteRange outside the file"))?;
    let mut hasher = Sha256::new();
    hasher.update(first);
    hasher.update(second);
    let digest: [u8; 32] = hasher.finalize().into();
    let contents = match sig.get(b"Contents").map_err(unreadable)? {
        Object::String(bytes, _) => bytes.clone(),
        _ => return Err(unreadable("/Contents is not a string")),
    };
    let (signed, signer_info) = cms_of(&contents)?;
    let certificates = certificates_of(&signed);
    let signer = check_signer(&signer_info, &certificates, &digest)?;
    let root = chain_to(&signer, &certificates, roots)?;
    let timestamp = match timestamp_of(&signer_info)? {
        None => None,
        Some(token) => Some(check_timestamp(
            &token,
            signer_info.signature.as_bytes(),
            tsa_roots,
        )?),
    };
    let claimed = match sig.get(b"M") {
        Ok(Object::String(bytes, _)) => Some(String::from_utf8_lossy(bytes).into_owned()),
        _ => None,
    };
    Ok(Verified {
        signer: signer.tbs_certificate.subject.to_string(),
        root,
        claimed,
        timestamp,
        long_term,
    })
}

/// The first signature field's value, and whether the catalog has a `/DSS`.
fn signature_dictionary(doc: &Document) -> Result<(lopdf::Dictionary, bool), VerifyError> {
    let catalog = doc.catalog().map_err(unreadable)?;
    let long_term = catalog.has(b"DSS");
    let resolve = |object: &Object| -> Option<lopdf::Dictionary> {
        match object {
            Object::Reference(id) => doc.get_dictionary(*id).ok().cloned(),
            Object::Dictionary(d) => Some(d.clone()),
            _ => None,
        }
    };
    let form = catalog
        .get(b"AcroForm")
        .ok()
        .and_then(resolve)
        .ok_or(VerifyError::Unsigned)?;
    let fields = form
        .get(b"Fields")
        .and_then(Object::as_array)
        .map_err(|_| VerifyError::Unsigned)?;
    for field in fields {
        let Some(field) = resolve(field) else {
            continue;
        };
        let is_signature =
            field.get(b"FT").and_then(Object::as_name).ok() == Some(b"Sig".as_slice());
        if let (true, Some(value)) = (is_signature, field.get(b"V").ok().and_then(resolve)) {
            return Ok((value, long_term));
        }
    }
    Err(VerifyError::Unsigned)
}

fn cms_of(contents: &[u8]) -> Result<(SignedData, SignerInfo), VerifyError> {
    // The placeholder's zero padding follows the DER: read one value, ignore the rest.
    let mut reader = der::SliceReader::new(contents).map_err(unreadable)?;
    let info: ContentInfo = der::Decode::decode(&mut reader).map_err(unreadable)?;
    let signed: SignedData = info.content.decode_as().map_err(unreadable)?;
    let signer = signed
        .signer_infos
        .0
        .iter()
        .next()
        .cloned()
        .ok_or_else(|| unreadable("the CMS has no signer"))?;
    Ok((signed, signer))
}

fn certificates_of(signed: &SignedData) -> Vec<Certificate> {
    signed
        .certificates
        .as_ref()
        .map(|set| {
            set.0
                .iter()
                .filter_map(|c| match c {
                    cms::cert::CertificateChoices::Certificate(c) => Some(c.clone()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The signer's certificate, once the message digest is `digest` and its key verifies the
/// signed attributes.
fn check_signer(
    signer: &SignerInfo,
    certificates: &[Certificate],
    digest: &[u8],
) -> Result<Certificate, VerifyError> {
    let attributes = signer
        .signed_attrs
        .as_ref()
        .ok_or_else(|| unreadable("no signed attributes"))?;
    let message_digest = attributes
        .iter()
        .find(|a| a.oid == ID_MESSAGE_DIGEST)
        .and_then(|a| a.values.iter().next())
        .and_then(|v| v.decode_as::<OctetString>().ok())
        .ok_or_else(|| unreadable("no message digest"))?;
    if message_digest.as_bytes() != digest {
        return Err(VerifyError::DigestMismatch);
    }
    let cms::signed_data::SignerIdentifier::IssuerAndSerialNumber(id) = &signer.sid else {
        return Err(VerifyError::Unsupported("a signer named by key id".into()));
    };
    let certificate = certificates
        .iter()
        .find(|c| {
            c.tbs_certificate.serial_number == id.serial_number
                && c.tbs_certificate.issuer == id.issuer
        })
        .cloned()
        .ok_or_else(|| unreadable("the signer's certificate is not in the signature"))?;
    let signed = attributes.to_der().map_err(unreadable)?;
    verify_p256(
        &certificate,
        &Sha256::digest(signed),
        signer.signature.as_bytes(),
    )
    .map_err(|_| VerifyError::BadSignature)?;
    Ok(certificate)
}

fn verify_p256(key_of: &Certificate, prehash: &[u8], signature: &[u8]) -> Result<(), VerifyError> {
    let spki = key_of
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| unreadable("the public key is not whole bytes"))?;
    let key = VerifyingKey::from_sec1_bytes(spki)
        .map_err(|_| VerifyError::Unsupported("a key that is not ECDSA P-256".into()))?;
    let signature = Signature::from_der(signature).map_err(|_| VerifyError::BadSignature)?;
    key.verify_prehash(prehash, &signature)
        .map_err(|_| VerifyError::BadSignature)
}

/// Walks issuers from `leaf` through `certificates` to one of `roots` (each link's signature
/// checked); the root's subject.
fn chain_to(
    leaf: &Certificate,
    certificates: &[Certificate],
    roots: &[Vec<u8>],
) -> Result<String, VerifyError> {
    let roots: Vec<Certificate> = roots
        .iter()
        .filter_map(|r| Certificate::from_der(r).ok())
        .collect();
    let mut current = leaf.clone();
    for _ in 0..8 {
        let issuer_name = &current.tbs_certificate.issuer;
        let tbs = current.tbs_certificate.to_der().map_err(unreadable)?;
        let signature = current
            .signature
            .as_bytes()
            .ok_or_else(|| unreadable("a certificate's signature"))?;
        if let Some(root) = roots
            .iter()
            .find(|r| &r.tbs_certificate.subject == issuer_name)
        {
            verify_p256(root, &Sha256::digest(&tbs), signature)
                .map_err(|_| VerifyError::Untrusted)?;
            return Ok(root.tbs_certificate.subject.to_string());
        }
        let Some(issuer) = certificates.iter().find(|c| {
            &c.tbs_certificate.subject == issuer_name
                && c.tbs_certificate.subject != current.tbs_certificate.subject
        }) else {
            break;
        };
        verify_p256(issuer, &Sha256::digest(&tbs), signature)
            .map_err(|_| VerifyError::Untrusted)?;
        current = issuer.clone();
    }
    Err(VerifyError::Untrusted)
}

fn timestamp_of(signer: &SignerInfo) -> Result<Option<Vec<u8>>, VerifyError> {
    let Some(unsigned) = &signer.unsigned_attrs else {
        return Ok(None);
    };
    let Some(attribute) = unsigned.iter().find(|a| a.oid == ID_SIGNATURE_TIME_STAMP) else {
        return Ok(None);
    };
    let token = attribute
        .values
        .iter()
        .next()
        .ok_or_else(|| unreadable("an empty time-stamp"))?;
    Ok(Some(token.to_der().map_err(unreadable)?))
}

/// The token covers `signature` and is signed by a TSA that chains to `tsa_roots`.
fn check_timestamp(
    token: &[u8],
    signature: &[u8],
    tsa_roots: &[Vec<u8>],
) -> Result<(std::time::Duration, String), VerifyError> {
    let bad = |e: &dyn std::fmt::Display| VerifyError::BadTimestamp(e.to_string());
    let imprint: [u8; 32] = Sha256::digest(signature).into();
    let stamp = crate::tsp::read_token(token, &imprint).map_err(|e| bad(&e))?;
    let (signed, signer_info) = cms_of(token)?;
    let content = signed
        .encap_content_info
        .econtent
        .as_ref()
        .and_then(|e| e.decode_as::<OctetString>().ok())
        .ok_or_else(|| bad(&"no TSTInfo"))?;
    let certificates = certificates_of(&signed);
    let checked = check_signer(
        &signer_info,
        &certificates,
        &Sha256::digest(content.as_bytes()),
    )
    .and_then(|tsa| {
        chain_to(&tsa, &certificates, tsa_roots)?;
        Ok(tsa.tbs_certificate.subject.to_string())
    });
    match checked {
        Ok(tsa) => Ok((stamp.time, tsa)),
        // Public TSAs sign with RSA: the imprint and time hold; say what was not checked.
        Err(VerifyError::Unsupported(what)) => Ok((
            stamp.time,
            format!("a TSA whose signature was not checked ({what})"),
        )),
        Err(e) => Err(bad(&e)),
    }
}
