//! Checkpoints in the C2SP `tlog-checkpoint` format, as C2SP signed notes: the text
//!
//! ```text
//! <origin prefix>/<merchant id>
//! <tree size>
//! <base64 root hash>
//! ```
//!
//! then a blank line and one line per signature, `— <key name> <base64(key hash ‖ sig)>`,
//! where the key hash is the first 4 bytes of SHA-256(name ‖ `\n` ‖ 0x01 ‖ Ed25519 public key)
//! and the signature is Ed25519 over the text. A verifier key is written
//! `<name>+<hex key hash>+<base64(0x01 ‖ public key)>`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::merkle::Hash;
use crate::MerchantId;

/// The signature type of Ed25519 in signed notes.
pub const ED25519: u8 = 0x01;
const DASH: &str = "\u{2014} ";

/// The merchant's log's name in its checkpoints, and the name of the key that signs them:
/// `<prefix>/<merchant id>` (the prefix is the deployment's, `LOG_ORIGIN_PREFIX`).
pub fn origin(prefix: &str, merchant: MerchantId) -> String {
    format!("{prefix}/{merchant}")
}

/// Whether `origin` names `merchant`'s log (whatever the deployment's prefix).
pub fn names_merchant(origin: &str, merchant: MerchantId) -> bool {
    origin
        .strip_suffix(&merchant.to_string())
        .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('/'))
}

/// The signed text of a checkpoint.
pub fn body(origin: &str, size: u64, root: &Hash) -> String {
    format!("{origin}\n{size}\n{}\n", STANDARD.encode(root))
}

pub fn key_hash(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    typed_key_hash(ED25519, name, public_key)
}

/// The key hash of a signed-note key of signature type `kind` (0x01 a log's Ed25519 key,
/// 0x04 a witness's cosignature key): the first 4 bytes of SHA-256(name ‖ `\n` ‖ kind ‖ key).
pub fn typed_key_hash(kind: u8, name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([kind]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// `<name>+<hex key hash>+<base64(0x01 ‖ key)>`.
pub fn verifier_key(name: &str, public_key: &[u8; 32]) -> String {
    typed_verifier_key(ED25519, name, public_key)
}

/// `<name>+<hex key hash>+<base64(kind ‖ key)>`: a verifier key of signature type `kind`.
pub fn typed_verifier_key(kind: u8, name: &str, public_key: &[u8; 32]) -> String {
    let mut key = vec![kind];
    key.extend_from_slice(public_key);
    format!(
        "{name}+{}+{}",
        hex::encode(typed_key_hash(kind, name, public_key)),
        STANDARD.encode(key)
    )
}

/// The note: `body`, a blank line, the signature line.
pub fn signed_note(body: &str, name: &str, public_key: &[u8; 32], signature: &[u8]) -> String {
    let mut sig = key_hash(name, public_key).to_vec();
    sig.extend_from_slice(signature);
    format!("{body}\n{DASH}{name} {}\n", STANDARD.encode(sig))
}

/// A key name: non-empty, no spaces or `+`.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// What is wrong with a checkpoint note or a verifier key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The note is longer than 64 KiB.
    #[error("the checkpoint is too long")]
    TooLong,
    /// A control character other than a newline (a carriage return, say).
    #[error("a note holds no control characters but newlines")]
    ControlCharacter,
    /// No blank line between the text and the signatures.
    #[error("a checkpoint is its text, a blank line and its signatures")]
    NoBlankLine,
    #[error("no origin line")]
    NoOrigin,
    /// The size line is missing, signed, or has leading zeros.
    #[error("no tree size line")]
    NoSize,
    #[error("no root hash line (base64 of 32 bytes)")]
    NoRoot,
    #[error("a signature line must end with a newline")]
    UnterminatedSignature,
    #[error("a signature line starts with `— `")]
    NoDash,
    #[error("a signature line is `— name signature`")]
    SignatureLine,
    #[error("a signature is not base64")]
    SignatureEncoding,
    /// An invalid key name, or too few bytes for a key hash and a signature.
    #[error("a signature line is malformed")]
    MalformedSignature,
    #[error("the checkpoint carries no signature")]
    Unsigned,
    /// A verifier key without its three `+`-separated parts.
    #[error("a verifier key is name+hash+key")]
    VerifierKeyParts,
    #[error("the key hash is not 8 hex digits")]
    KeyHashEncoding,
    #[error("the key is not base64")]
    KeyEncoding,
    #[error("not an Ed25519 verifier key")]
    NotEd25519,
    /// The key hash is not the name's and key's (or the name is invalid).
    #[error("the key hash does not match the key")]
    KeyHashMismatch,
}

/// A parsed (not yet verified) checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The signed text, byte for byte.
    pub text: String,
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// `(key name, key hash, signature)` of each signature line.
    pub signatures: Vec<(String, [u8; 4], Vec<u8>)>,
}

/// Parses a signed checkpoint note, strictly: anything unexpected is an error.
pub fn parse(note: &str) -> Result<Parsed, CheckpointError> {
    if note.len() > 64 * 1024 {
        return Err(CheckpointError::TooLong);
    }
    if note.chars().any(|c| c.is_control() && c != '\n') {
        return Err(CheckpointError::ControlCharacter);
    }
    let (text, signatures) = note
        .split_once("\n\n")
        .ok_or(CheckpointError::NoBlankLine)?;
    let text = format!("{text}\n");
    let mut lines = text.lines();
    let origin = lines
        .next()
        .filter(|l| !l.is_empty())
        .ok_or(CheckpointError::NoOrigin)?;
    let size = lines
        .next()
        .and_then(|l| {
            // Decimal without a sign or leading zeros.
            (l == "0" || (!l.starts_with('0') && l.bytes().all(|b| b.is_ascii_digit())))
                .then(|| l.parse::<u64>().ok())
                .flatten()
        })
        .ok_or(CheckpointError::NoSize)?;
    let root: Hash = lines
        .next()
        .and_then(|l| STANDARD.decode(l).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or(CheckpointError::NoRoot)?;
    let mut parsed = Vec::new();
    for line in signatures.split_inclusive('\n') {
        let line = line
            .strip_suffix('\n')
            .ok_or(CheckpointError::UnterminatedSignature)?;
        let rest = line.strip_prefix(DASH).ok_or(CheckpointError::NoDash)?;
        let (name, sig) = rest.split_once(' ').ok_or(CheckpointError::SignatureLine)?;
        let bytes = STANDARD
            .decode(sig)
            .map_err(|_| CheckpointError::SignatureEncoding)?;
        if !valid_key_name(name) || bytes.len() < 5 {
            return Err(CheckpointError::MalformedSignature);
        }
        let hash = [bytes[0], bytes[1], bytes[2], bytes[3]];
        parsed.push((name.to_owned(), hash, bytes[4..].to_vec()));
    }
    if parsed.is_empty() {
        return Err(CheckpointError::Unsigned);
    }
    Ok(Parsed {
        origin: origin.to_owned(),
        size,
        root,
        text,
        signatures: parsed,
    })
}

/// `(name, key hash, public key)` of a verifier key.
pub fn parse_verifier_key(raw: &str) -> Result<(String, [u8; 4], [u8; 32]), CheckpointError> {
    parse_typed_verifier_key(ED25519, raw)
}

/// `(name, key hash, public key)` of a verifier key of signature type `kind`.
pub fn parse_typed_verifier_key(
    kind: u8,
    raw: &str,
) -> Result<(String, [u8; 4], [u8; 32]), CheckpointError> {
    let mut parts = raw.trim().splitn(3, '+');
    let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(CheckpointError::VerifierKeyParts);
    };
    let hash: [u8; 4] = hex::decode(hash)
        .ok()
        .and_then(|h| h.try_into().ok())
        .ok_or(CheckpointError::KeyHashEncoding)?;
    let key = STANDARD
        .decode(key)
        .map_err(|_| CheckpointError::KeyEncoding)?;
    let (Some(&found), Ok(public)) = (key.first(), <[u8; 32]>::try_from(&key[1.min(key.len())..]))
    else {
        return Err(CheckpointError::NotEd25519);
    };
    if found != kind {
        return Err(CheckpointError::NotEd25519);
    }
    if typed_key_hash(kind, name, &public) != hash || !valid_key_name(name) {
        return Err(CheckpointError::KeyHashMismatch);
    }
    Ok((name.to_owned(), hash, public))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_and_junk_is_refused() {
        let root = [9u8; 32];
        let text = body("docbundle/abc", 7, &root);
        assert_eq!(
            text,
            format!("docbundle/abc\n7\n{}\n", STANDARD.encode(root))
        );
        let public = [3u8; 32];
        let note = signed_note(&text, "docbundle-manifests:1", &public, &[5u8; 64]);
        let parsed = parse(&note).unwrap();
        assert_eq!(parsed.text, text);
        assert_eq!(
            (parsed.origin.as_str(), parsed.size, parsed.root),
            ("docbundle/abc", 7, root)
        );
        assert_eq!(
            parsed.signatures[0].1,
            key_hash("docbundle-manifests:1", &public)
        );
        let verifier = verifier_key("docbundle-manifests:1", &public);
        assert_eq!(
            parse_verifier_key(&verifier).unwrap(),
            (
                "docbundle-manifests:1".to_owned(),
                key_hash("docbundle-manifests:1", &public),
                public
            )
        );
        for junk in [
            "",
            "docbundle/abc\n7\n",
            &note.replace("\n7\n", "\n07\n"),
            &note.replace("\n7\n", "\n-7\n"),
            &note.replace("\u{2014}", "-"),
            &note.replace('\n', "\r\n"),
            note.trim_end(),
        ] {
            assert!(parse(junk).is_err(), "{junk:?}");
        }
        assert!(parse_verifier_key(&verifier.replace("+", "x+")).is_err());
        assert!(parse_verifier_key("a+00000000+AQ==").is_err());
    }
}
