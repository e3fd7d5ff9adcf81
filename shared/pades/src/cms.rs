//! The CMS SignedData of a PAdES baseline signature (ETSI EN 319 122-1 as PAdES profiles it):
//! detached over the byte ranges, signed attributes `content-type`, `message-digest` and
//! `signing-certificate-v2` (no `signing-time`: the PDF's `/M` and the time-stamp say when),
//! ECDSA with SHA-256, and for B-T the `signature-time-stamp` unsigned attribute.

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{OctetString, SetOfVec};
use der::oid::ObjectIdentifier;
use der::{Any, Decode, Encode, Sequence};
use sha2::{Digest, Sha256};
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;

use crate::PadesError;

pub(crate) const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
pub(crate) const ID_SIGNED_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
pub(crate) const ID_MESSAGE_DIGEST: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
pub(crate) const ID_SIGNATURE_TIME_STAMP: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.14");
pub(crate) const ID_SHA256: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");

/// RFC 5035 `SigningCertificateV2` (without policies).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SigningCertificateV2 {
    certs: Vec<EssCertIdV2>,
}

/// RFC 5035 `ESSCertIDv2` with the default hash algorithm (SHA-256), hence omitted.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct EssCertIdV2 {
    cert_hash: OctetString,
    issuer_serial: IssuerSerial,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct IssuerSerial {
    issuer: Vec<GeneralName>,
    serial_number: SerialNumber,
}

fn encoding(e: der::Error) -> PadesError {
    PadesError::Encoding(e.to_string())
}

fn sha256() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: ID_SHA256,
        parameters: None,
    }
}

fn attribute(oid: ObjectIdentifier, value: Any) -> Result<Attribute, PadesError> {
    let mut values = SetOfVec::new();
    values.insert(value).map_err(encoding)?;
    Ok(Attribute { oid, values })
}

pub(crate) fn parse_chain(chain: &[Vec<u8>]) -> Result<Vec<Certificate>, PadesError> {
    if chain.is_empty() {
        return Err(PadesError::Certificate("the chain is empty".into()));
    }
    chain
        .iter()
        .map(|der| Certificate::from_der(der).map_err(|e| PadesError::Certificate(e.to_string())))
        .collect()
}

/// The signed attributes, as they are signed (a DER `SET OF`).
pub(crate) struct SignedAttributes(SetOfVec<Attribute>);

impl SignedAttributes {
    pub(crate) fn new(content_digest: &[u8; 32], signer: &Certificate) -> Result<Self, PadesError> {
        let signer_der = signer.to_der().map_err(encoding)?;
        let signing_certificate = SigningCertificateV2 {
            certs: vec![EssCertIdV2 {
                cert_hash: OctetString::new(Sha256::digest(&signer_der).to_vec())
                    .map_err(encoding)?,
                issuer_serial: IssuerSerial {
                    issuer: vec![GeneralName::DirectoryName(
                        signer.tbs_certificate.issuer.clone(),
                    )],
                    serial_number: signer.tbs_certificate.serial_number.clone(),
                },
            }],
        };
        let digest = OctetString::new(content_digest.to_vec()).map_err(encoding)?;
        let mut set = SetOfVec::new();
        for (oid, value) in [
            (ID_CONTENT_TYPE, Any::encode_from(&ID_DATA)),
            (ID_MESSAGE_DIGEST, Any::encode_from(&digest)),
            (
                ID_SIGNING_CERTIFICATE_V2,
                Any::encode_from(&signing_certificate),
            ),
        ] {
            set.insert(attribute(oid, value.map_err(encoding)?)?)
                .map_err(encoding)?;
        }
        Ok(SignedAttributes(set))
    }

    /// SHA-256 over the DER `SET OF` (RFC 5652 §5.4: what the signature covers).
    pub(crate) fn digest(&self) -> [u8; 32] {
        // Encoding a set built from encodable values does not fail.
        let der = self.0.to_der().unwrap_or_default();
        Sha256::digest(der).into()
    }
}

/// The DER `ContentInfo` holding the SignedData.
pub(crate) fn signed_data(
    attributes: SignedAttributes,
    chain: &[Certificate],
    signature: &[u8],
    timestamp_token: Option<&[u8]>,
) -> Result<Vec<u8>, PadesError> {
    let signer = &chain[0];
    let unsigned_attrs = match timestamp_token {
        None => None,
        Some(token) => {
            let token = Any::from_der(token).map_err(encoding)?;
            let mut set = SetOfVec::new();
            set.insert(attribute(ID_SIGNATURE_TIME_STAMP, token)?)
                .map_err(encoding)?;
            Some(set)
        }
    };
    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: signer.tbs_certificate.issuer.clone(),
            serial_number: signer.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: sha256(),
        signed_attrs: Some(attributes.0),
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: ECDSA_WITH_SHA256,
            parameters: None,
        },
        signature: OctetString::new(signature.to_vec()).map_err(encoding)?,
        unsigned_attrs,
    };
    let mut digest_algorithms = SetOfVec::new();
    digest_algorithms.insert(sha256()).map_err(encoding)?;
    let mut certificates = SetOfVec::new();
    for certificate in chain {
        let choice = CertificateChoices::Certificate(certificate.clone());
        // A chain that names a certificate twice (a root sent along) is no error.
        if !certificates.iter().any(|c| c == &choice) {
            certificates.insert(choice).map_err(encoding)?;
        }
    }
    let mut signer_infos = SetOfVec::new();
    signer_infos.insert(signer_info).map_err(encoding)?;
    let signed_data = SignedData {
        version: CmsVersion::V1,
        digest_algorithms,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: None,
        },
        certificates: Some(CertificateSet(certificates)),
        crls: None,
        signer_infos: SignerInfos(signer_infos),
    };
    ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed_data).map_err(encoding)?,
    }
    .to_der()
    .map_err(encoding)
}
