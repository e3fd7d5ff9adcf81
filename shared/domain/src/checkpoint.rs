//! Checkpoints in the C2SP `tlog-checkpoint` format, as C2SP signed notes: the text
//!
//! ```text
//! docbundle/<merchant id>
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

/// The log's name in its checkpoints.
pub fn origin(merchant: MerchantId) -> String {
    format!("docbundle/{merchant}")
}

/// The signed text of a checkpoint.
pub fn body(origin: &str, size: u64, root: &Hash) -> String {
    format!("{origin}\n{size}\n{}\n", STANDARD.encode(root))
}

pub fn key_hash(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ED25519]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// `<name>+<hex key hash>+<base64(0x01 ‖ key)>`.
pub fn verifier_key(name: &str, public_key: &[u8; 32]) -> String {
    let mut key = vec![ED25519];
    key.extend_from_slice(public_key);
    format!(
        "{name}+{}+{}",
        hex::encode(key_hash(name, public_key)),
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
pub fn parse(note: &str) -> Result<Parsed, String> {
    if note.len() > 64 * 1024 {
        return Err("the checkpoint is too long".to_owned());
    }
    if note.chars().any(|c| c.is_control() && c != '\n') {
        return Err("a note holds no control characters but newlines".to_owned());
    }
    let (text, signatures) = note
        .split_once("\n\n")
        .ok_or("a checkpoint is its text, a blank line and its signatures")?;
    let text = format!("{text}\n");
    let mut lines = text.lines();
    let origin = lines
        .next()
        .filter(|l| !l.is_empty())
        .ok_or("no origin line")?;
    let size = lines
        .next()
        .and_then(|l| {
            // Decimal without a sign or leading zeros.
            (l == "0" || (!l.starts_with('0') && l.bytes().all(|b| b.is_ascii_digit())))
                .then(|| l.parse::<u64>().ok())
                .flatten()
        })
        .ok_or("no tree size line")?;
    let root: Hash = lines
        .next()
        .and_then(|l| STANDARD.decode(l).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or("no root hash line (base64 of 32 bytes)")?;
    let mut parsed = Vec::new();
    for line in signatures.split_inclusive('\n') {
        let line = line
            .strip_suffix('\n')
            .ok_or("a signature line must end with a newline")?;
        let rest = line
            .strip_prefix(DASH)
            .ok_or("a signature line starts with `— `")?;
        let (name, sig) = rest
            .split_once(' ')
            .ok_or("a signature line is `— name signature`")?;
        let bytes = STANDARD
            .decode(sig)
            .map_err(|_| "a signature is not base64")?;
        if !valid_key_name(name) || bytes.len() < 5 {
            return Err("a signature line is malformed".to_owned());
        }
        let hash = [bytes[0], bytes[1], bytes[2], bytes[3]];
        parsed.push((name.to_owned(), hash, bytes[4..].to_vec()));
    }
    if parsed.is_empty() {
        return Err("the checkpoint carries no signature".to_owned());
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
pub fn parse_verifier_key(raw: &str) -> Result<(String, [u8; 4], [u8; 32]), String> {
    let mut parts = raw.trim().splitn(3, '+');
    let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("a verifier key is name+hash+key".to_owned());
    };
    let hash: [u8; 4] = hex::decode(hash)
        .ok()
        .and_then(|h| h.try_into().ok())
        .ok_or("the key hash is not 8 hex digits")?;
    let key = STANDARD.decode(key).map_err(|_| "the key is not base64")?;
    let (Some(&ED25519), Ok(public)) =
        (key.first(), <[u8; 32]>::try_from(&key[1.min(key.len())..]))
    else {
        return Err("not an Ed25519 verifier key".to_owned());
    };
    if key_hash(name, &public) != hash || !valid_key_name(name) {
        return Err("the key hash does not match the key".to_owned());
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
