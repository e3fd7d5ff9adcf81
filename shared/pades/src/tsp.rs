//! RFC 3161 time-stamps: the request for a digest, and the token read back from a TSA's
//! answer and checked against what was asked (status granted, same imprint, same nonce).

use cmpv2::status::PkiStatus;
use der::asn1::ObjectIdentifier;
use der::asn1::{Int, OctetString};
use der::Sequence;
use der::{Any, Decode, Encode, Tagged};
use sha2::{Digest, Sha256};
use x509_cert::spki::AlgorithmIdentifier;
use x509_tsp::{MessageImprint, TimeStampReq, TimeStampResp, TspVersion};

use crate::cms::{ID_SHA256, ID_SIGNED_DATA};

/// `Content-Type` of a request, and of an answer.
pub const REQUEST_TYPE: &str = "application/timestamp-query";
pub const REPLY_TYPE: &str = "application/timestamp-reply";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TspError {
    /// The TSA answered and refused (RFC 3161 status `rejection`, …).
    #[error("the time-stamping authority refused: {0}")]
    Refused(String),
    /// The answer is not a time-stamp for what was asked.
    #[error("the time-stamping authority's answer is not a valid time-stamp: {0}")]
    Invalid(String),
}

/// What a signature time-stamp covers: SHA-256 of the signature value (ETSI EN 319 122-1).
pub fn signature_imprint(signature: &[u8]) -> [u8; 32] {
    Sha256::digest(signature).into()
}

/// A DER `TimeStampReq` for `digest` (SHA-256) asking for the TSA's certificate, with
/// `nonce` (8 random bytes).
pub fn request(digest: &[u8; 32], nonce: [u8; 8]) -> Vec<u8> {
    let nonce = positive(nonce);
    let request = TimeStampReq {
        version: TspVersion::V1,
        message_imprint: MessageImprint {
            hash_algorithm: AlgorithmIdentifier {
                oid: ID_SHA256,
                parameters: None,
            },
            hashed_message: octets(digest),
        },
        req_policy: None,
        nonce: Int::new(&nonce).ok(),
        cert_req: true,
        extensions: None,
    };
    request.to_der().unwrap_or_default()
}

/// A granted time-stamp token (DER `ContentInfo`) and its time, from a TSA's answer to
/// [`request`] with the same `digest` and `nonce`.
pub fn token(answer: &[u8], digest: &[u8; 32], nonce: [u8; 8]) -> Result<Stamp, TspError> {
    read(answer, digest, Some(nonce))
}

/// A token (a DER `ContentInfo`, as a signature carries it) read back: for `digest`.
pub fn read_token(token: &[u8], digest: &[u8; 32]) -> Result<Stamp, TspError> {
    let info = cms::content_info::ContentInfo::from_der(token)
        .map_err(|e| TspError::Invalid(e.to_string()))?;
    Ok(Stamp {
        answer: Vec::new(),
        token: token.to_vec(),
        time: checked(&info, digest, None)?,
    })
}

/// A stored answer (`manifest.tsr`) read back: granted, and for `digest`.
pub fn read_answer(answer: &[u8], digest: &[u8; 32]) -> Result<Stamp, TspError> {
    read(answer, digest, None)
}

fn read(answer: &[u8], digest: &[u8; 32], nonce: Option<[u8; 8]>) -> Result<Stamp, TspError> {
    let invalid = |what: &str| TspError::Invalid(what.to_owned());
    let response = TimeStampResp::from_der(answer).map_err(|e| TspError::Invalid(e.to_string()))?;
    match response.status.status {
        PkiStatus::Accepted | PkiStatus::GrantedWithMods => {}
        status => {
            let text = response
                .status
                .status_string
                .map(|texts| {
                    texts
                        .iter()
                        .map(|t| t.as_str().to_owned())
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            return Err(TspError::Refused(
                format!("{status:?} {text}").trim().to_owned(),
            ));
        }
    }
    let token = response
        .time_stamp_token
        .ok_or_else(|| invalid("granted without a token"))?;
    let time = checked(&token, digest, nonce)?;
    Ok(Stamp {
        answer: answer.to_vec(),
        token: token
            .to_der()
            .map_err(|e| TspError::Invalid(e.to_string()))?,
        time,
    })
}

/// The time a token attests, once it is a SignedData time-stamping `digest` (SHA-256), with
/// `nonce` when one was asked.
fn checked(
    token: &cms::content_info::ContentInfo,
    digest: &[u8; 32],
    nonce: Option<[u8; 8]>,
) -> Result<std::time::Duration, TspError> {
    let invalid = |what: &str| TspError::Invalid(what.to_owned());
    if token.content_type != ID_SIGNED_DATA {
        return Err(invalid("the token is not a SignedData"));
    }
    let info = tst_info(&token.content)?;
    if info.message_imprint.hashed_message.as_bytes() != digest
        || info.message_imprint.hash_algorithm.oid != ID_SHA256
    {
        return Err(invalid("it time-stamps another digest"));
    }
    if let Some(nonce) = nonce {
        if info.nonce.as_ref().map(Int::as_bytes) != Some(positive(nonce).as_slice()) {
            return Err(invalid("its nonce is not the request's"));
        }
    }
    (info.gen_time.tag() == der::Tag::GeneralizedTime)
        .then(|| generalized_time(info.gen_time.value()))
        .flatten()
        .ok_or_else(|| invalid("its genTime is not a UTC GeneralizedTime"))
}

/// 32 bytes as an OCTET STRING (which holds up to 256 MiB, so this cannot fail).
fn octets(digest: &[u8; 32]) -> OctetString {
    match OctetString::new(digest.to_vec()) {
        Ok(octets) => octets,
        Err(_) => unreachable!("32 bytes fit an OCTET STRING"),
    }
}

/// The nonce as a positive INTEGER's bytes, without a leading zero byte.
fn positive(mut nonce: [u8; 8]) -> [u8; 8] {
    nonce[0] = (nonce[0] & 0x7f) | 0x01;
    nonce
}

/// A time-stamp token and the time it attests (since the Unix epoch).
#[derive(Debug, Clone)]
pub struct Stamp {
    /// The TSA's whole answer (a DER `TimeStampResp`: what `openssl ts -verify -in` reads).
    pub answer: Vec<u8>,
    /// The token inside it (a DER `ContentInfo`).
    pub token: Vec<u8>,
    pub time: std::time::Duration,
}

/// RFC 3161 `TSTInfo` with `genTime` read by hand: TSAs write fractions of a second
/// (`20261203154843.183Z`), which DER's `GeneralizedTime` type refuses.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct TstInfo {
    version: TspVersion,
    policy: ObjectIdentifier,
    message_imprint: MessageImprint,
    serial_number: Int,
    gen_time: Any,
    #[asn1(optional = "true")]
    accuracy: Option<x509_tsp::Accuracy>,
    #[asn1(default = "Default::default")]
    ordering: bool,
    #[asn1(optional = "true")]
    nonce: Option<Int>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    tsa: Option<x509_cert::ext::pkix::name::GeneralName>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    extensions: Option<x509_cert::ext::Extensions>,
}

/// `YYYYMMDDHHMMSS[.f+]Z` → time since the Unix epoch.
fn generalized_time(text: &[u8]) -> Option<std::time::Duration> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.len() != 14 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let time = chrono::NaiveDateTime::parse_from_str(whole, "%Y%m%d%H%M%S").ok()?;
    let seconds = u64::try_from(time.and_utc().timestamp()).ok()?;
    let nanos = if fraction.is_empty() {
        0
    } else {
        if !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits: String = fraction
            .chars()
            .chain(std::iter::repeat('0'))
            .take(9)
            .collect();
        digits.parse().ok()?
    };
    Some(std::time::Duration::new(seconds, nanos))
}

/// The `TSTInfo` inside a token's SignedData.
fn tst_info(content: &Any) -> Result<TstInfo, TspError> {
    let invalid = |e: der::Error| TspError::Invalid(e.to_string());
    let signed: cms::signed_data::SignedData = content.decode_as().map_err(invalid)?;
    let econtent = signed
        .encap_content_info
        .econtent
        .ok_or_else(|| TspError::Invalid("the token holds no TSTInfo".into()))?;
    let octets: OctetString = econtent.decode_as().map_err(invalid)?;
    TstInfo::from_der(octets.as_bytes()).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generalized_times_with_and_without_fractions() {
        assert_eq!(
            generalized_time(b"20261203154843Z"),
            Some(std::time::Duration::new(1_796_312_923, 0))
        );
        assert_eq!(
            generalized_time(b"20261203154843.183Z"),
            Some(std::time::Duration::new(1_796_312_923, 183_000_000))
        );
        for bad in [
            &b"20261203154843"[..],
            b"2026120315484Z",
            b"20261203154843.1x3Z",
            b"2026130315484 Z",
        ] {
            assert_eq!(
                generalized_time(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn an_answer_that_is_not_for_the_request_is_refused() {
        assert!(matches!(
            token(b"\x30\x03\x02\x01\x00", &[0; 32], [1; 8]),
            Err(TspError::Invalid(_))
        ));
        assert!(matches!(
            token(b"garbage", &[0; 32], [1; 8]),
            Err(TspError::Invalid(_))
        ));
    }
}
