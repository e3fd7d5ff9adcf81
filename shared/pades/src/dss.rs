//! PAdES B-LT: the validation data a signature needs to be checked later, offline — every
//! certificate of the signer's and the time-stamping authority's chains and the CRLs that
//! say they were not revoked — in the catalog's document security store (`/DSS`), appended
//! as one more incremental update after the signature (which it does not touch).

use der::{Decode, Encode};
use lopdf::{Dictionary, Object, ObjectId};
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::CrlDistributionPoints;
use x509_cert::Certificate;

use crate::pdf::{read_original, write_object, write_xref_and_trailer, PdfError};

/// The `http(s)` CRL distribution points a certificate (DER) names; none for a root.
pub fn crl_urls(certificate: &[u8]) -> Vec<String> {
    let Ok(certificate) = Certificate::from_der(certificate) else {
        return Vec::new();
    };
    if certificate.tbs_certificate.issuer == certificate.tbs_certificate.subject {
        return Vec::new();
    }
    let Ok(Some((_, points))) = certificate.tbs_certificate.get::<CrlDistributionPoints>() else {
        return Vec::new();
    };
    points
        .0
        .iter()
        .filter_map(
            |DistributionPoint {
                 distribution_point, ..
             }| distribution_point.as_ref(),
        )
        .filter_map(|name| match name {
            DistributionPointName::FullName(names) => Some(names),
            _ => None,
        })
        .flatten()
        .filter_map(|name| match name {
            GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
            _ => None,
        })
        .filter(|uri| uri.starts_with("http://") || uri.starts_with("https://"))
        .collect()
}

/// The certificates a DER time-stamp token carries (the TSA's chain).
pub fn token_certificates(token: &[u8]) -> Vec<Vec<u8>> {
    let Ok(info) = cms::content_info::ContentInfo::from_der(token) else {
        return Vec::new();
    };
    let Ok(signed) = info.content.decode_as::<cms::signed_data::SignedData>() else {
        return Vec::new();
    };
    signed
        .certificates
        .map(|set| {
            set.0
                .iter()
                .filter_map(|choice| match choice {
                    cms::cert::CertificateChoices::Certificate(c) => c.to_der().ok(),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Appends the document security store with `certificates` and `crls` (DER each).
pub fn append_dss(
    pdf: &[u8],
    certificates: &[Vec<u8>],
    crls: &[Vec<u8>],
) -> Result<Vec<u8>, PdfError> {
    let original = read_original(pdf, false)?;
    let mut next = original.next_id;
    let mut out = pdf.to_vec();
    if out.last() != Some(&b'\n') {
        out.push(b'\n');
    }
    let mut offsets: Vec<(ObjectId, usize)> = Vec::new();
    let mut streams = |blobs: &[Vec<u8>], out: &mut Vec<u8>| -> Vec<Object> {
        let mut seen: Vec<&Vec<u8>> = Vec::new();
        let mut refs = Vec::new();
        for blob in blobs {
            if seen.contains(&blob) {
                continue;
            }
            seen.push(blob);
            let id = (next, 0);
            next += 1;
            offsets.push((id, out.len()));
            out.extend_from_slice(
                format!("{} 0 obj\n<</Length {}>>\nstream\n", id.0, blob.len()).as_bytes(),
            );
            out.extend_from_slice(blob);
            out.extend_from_slice(b"\nendstream\nendobj\n");
            refs.push(Object::Reference(id));
        }
        refs
    };
    let certs = streams(certificates, &mut out);
    let crls = streams(crls, &mut out);
    let mut dss = Dictionary::new();
    dss.set("Type", Object::Name(b"DSS".to_vec()));
    dss.set("Certs", certs);
    if !crls.is_empty() {
        dss.set("CRLs", crls);
    }
    let dss_id = (next, 0);
    next += 1;
    offsets.push((dss_id, out.len()));
    write_object(&mut out, dss_id, &Object::Dictionary(dss))?;
    let mut catalog = original.catalog.clone();
    catalog.set("DSS", Object::Reference(dss_id));
    offsets.push((original.root, out.len()));
    write_object(&mut out, original.root, &Object::Dictionary(catalog))?;
    write_xref_and_trailer(&mut out, offsets, &original, next)?;
    Ok(out)
}
