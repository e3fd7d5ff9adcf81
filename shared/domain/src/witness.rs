//! Witnesses (C2SP `tlog-witness` v1 and `tlog-cosignature`): independent services that
//! cosign a log's checkpoint once they have checked it is consistent with every checkpoint of
//! that log they cosigned before, so a log cannot show two auditors two histories (a split
//! view) without a witness noticing. Pure: the witness list as configured, the
//! `add-checkpoint` request, the answers it may get, and cosignature checks.
//!
//! A cosignature (`cosignature/v1`, Ed25519) is a signed-note signature line by the witness's
//! name whose blob is the key hash (4 bytes), the time it was made (8 bytes, big-endian POSIX
//! seconds) and an Ed25519 signature over
//!
//! ```text
//! cosignature/v1
//! time <seconds>
//! <the checkpoint's text: origin, size, root>
//! ```
//!
//! The key hash is the first 4 bytes of SHA-256(name ‖ `\n` ‖ 0x04 ‖ public key), and the
//! witness's verifier key is written `<name>+<hex key hash>+<base64(0x04 ‖ public key)>`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::checkpoint::{self, CheckpointError, Parsed};
use crate::merkle::Hash;

/// The signature type of `cosignature/v1` in signed notes.
pub const COSIGNATURE: u8 = 0x04;
/// Most hashes a consistency proof in an `add-checkpoint` request carries.
pub const MAX_PROOF_HASHES: usize = 63;
/// The largest answer read from a witness (a few signature lines are a few hundred bytes).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A witness as configured: its name and key (from its verifier key) and where it takes
/// checkpoints (`<url>/add-checkpoint`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    pub name: String,
    pub key_hash: [u8; 4],
    pub public_key: [u8; 32],
    /// The submission prefix, without a trailing `/`.
    pub url: String,
}

impl Witness {
    /// Where `add-checkpoint` is posted.
    pub fn endpoint(&self) -> String {
        format!("{}/add-checkpoint", self.url)
    }

    /// Its verifier key, as configured.
    pub fn verifier_key(&self) -> String {
        cosigner_key(&self.name, &self.public_key)
    }
}

/// `<name>+<hex key hash>+<base64(0x04 ‖ key)>`: a witness's verifier key.
pub fn cosigner_key(name: &str, public_key: &[u8; 32]) -> String {
    checkpoint::typed_verifier_key(COSIGNATURE, name, public_key)
}

/// `(name, key hash, public key)` of a witness's verifier key (signature type 0x04).
pub fn parse_cosigner_key(raw: &str) -> Result<(String, [u8; 4], [u8; 32]), CheckpointError> {
    checkpoint::parse_typed_verifier_key(COSIGNATURE, raw)
}

/// Why the witness list does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessListError {
    #[error("witness {0}: each is `<verifier key> <https URL>`")]
    Entry(usize),
    #[error("witness {0}: {1}")]
    Key(usize, CheckpointError),
    #[error("witness {0}: the URL is not http(s) without a query")]
    Url(usize),
    #[error("two witnesses are named `{0}`")]
    Duplicate(String),
}

/// The witnesses of `WITNESSES`: entries separated by `;` or newlines, each
/// `<verifier key> <submission URL>`. Empty: none.
pub fn parse_list(raw: &str) -> Result<Vec<Witness>, WitnessListError> {
    let mut witnesses: Vec<Witness> = Vec::new();
    for (i, entry) in raw
        .split([';', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        let number = i + 1;
        let mut fields = entry.split_whitespace();
        let (Some(key), Some(url), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(WitnessListError::Entry(number));
        };
        let (name, key_hash, public_key) =
            parse_cosigner_key(key).map_err(|e| WitnessListError::Key(number, e))?;
        let parsed = url::Url::parse(url).map_err(|_| WitnessListError::Url(number))?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.host_str().is_none()
            || parsed.query().is_some()
            || parsed.fragment().is_some()
        {
            return Err(WitnessListError::Url(number));
        }
        if witnesses.iter().any(|w| w.name == name) {
            return Err(WitnessListError::Duplicate(name));
        }
        witnesses.push(Witness {
            name,
            key_hash,
            public_key,
            url: url.trim_end_matches('/').to_owned(),
        });
    }
    Ok(witnesses)
}

/// The body of an `add-checkpoint` request: `old <size>`, the consistency proof from that
/// size (one base64 hash a line), a blank line, the signed checkpoint.
pub fn add_checkpoint_body(old: u64, proof: &[Hash], note: &str) -> Vec<u8> {
    let mut body = format!("old {old}\n");
    for hash in proof {
        body.push_str(&STANDARD.encode(hash));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    body.into_bytes()
}

/// The tree size a `409 Conflict` answer carries (`text/x.tlog.size`: `<size>\n`).
pub fn parse_size(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body.strip_suffix(b"\n")?).ok()?;
    let canonical = text == "0" || (!text.starts_with('0') && !text.is_empty());
    (canonical && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Why a witness's answer is not a cosignature of the checkpoint sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignatureError {
    #[error("the answer is not signature lines")]
    NotSignatureLines,
    #[error("no signature line by the witness's key")]
    NotByTheWitness,
    #[error("the cosignature is not 8 bytes of time and a 64-byte signature")]
    Malformed,
    #[error("the cosignature does not hold for this checkpoint")]
    Invalid,
}

/// The message a `cosignature/v1` signs for the checkpoint text `text` at `time`.
pub fn cosigned_message(text: &str, time: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {time}\n{text}").into_bytes()
}

/// Checks a cosignature blob (time ‖ signature) by `public_key` over `text`; its time.
pub fn verify(text: &str, public_key: &[u8; 32], blob: &[u8]) -> Result<u64, CosignatureError> {
    let (Ok(time), Ok(signature)) = (
        <[u8; 8]>::try_from(blob.get(..8).unwrap_or_default()),
        <[u8; 64]>::try_from(blob.get(8..).unwrap_or_default()),
    ) else {
        return Err(CosignatureError::Malformed);
    };
    let time = u64::from_be_bytes(time);
    let key = ed25519_dalek::VerifyingKey::from_bytes(public_key)
        .map_err(|_| CosignatureError::Invalid)?;
    key.verify_strict(
        &cosigned_message(text, time),
        &ed25519_dalek::Signature::from_bytes(&signature),
    )
    .map_err(|_| CosignatureError::Invalid)?;
    Ok(time)
}

/// The witness's cosignature line in its `200` answer to the checkpoint whose text is
/// `text`, checked (name, key hash, signature): the line to append to the checkpoint note.
/// Lines by other keys are ignored; the witness's own must hold.
pub fn cosignature_line(
    answer: &[u8],
    witness: &Witness,
    text: &str,
) -> Result<String, CosignatureError> {
    let answer = std::str::from_utf8(answer).map_err(|_| CosignatureError::NotSignatureLines)?;
    if answer.is_empty()
        || !answer.ends_with('\n')
        || answer.chars().any(|c| c.is_control() && c != '\n')
    {
        return Err(CosignatureError::NotSignatureLines);
    }
    for line in answer.lines() {
        let Some((name, encoded)) = line
            .strip_prefix("\u{2014} ")
            .and_then(|rest| rest.split_once(' '))
        else {
            return Err(CosignatureError::NotSignatureLines);
        };
        let blob = STANDARD
            .decode(encoded)
            .map_err(|_| CosignatureError::NotSignatureLines)?;
        if name != witness.name || blob.get(..4) != Some(&witness.key_hash[..]) {
            continue;
        }
        verify(text, &witness.public_key, &blob[4..])?;
        return Ok(format!("{line}\n"));
    }
    Err(CosignatureError::NotByTheWitness)
}

/// The witnesses among `keys` (verifier keys) whose cosignature on `parsed` holds: their
/// names. A signature line by a known name and key hash that does not hold is an error, as
/// signed-note verifiers treat it.
pub fn cosigners(
    parsed: &Parsed,
    keys: &[(String, [u8; 4], [u8; 32])],
) -> Result<Vec<String>, CosignatureError> {
    let mut names = Vec::new();
    for (name, hash, signature) in &parsed.signatures {
        let Some((_, _, public)) = keys.iter().find(|(n, h, _)| n == name && h == hash) else {
            continue;
        };
        verify(&parsed.text, public, signature)?;
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn witness(seed: u8) -> (SigningKey, Witness) {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let public = key.verifying_key().to_bytes();
        let vkey = cosigner_key("witness.example/w1", &public);
        let list = parse_list(&format!("{vkey} https://witness.example/w1/")).unwrap();
        (key, list.into_iter().next().unwrap())
    }

    fn cosign(key: &SigningKey, w: &Witness, text: &str, time: u64) -> String {
        let mut blob = w.key_hash.to_vec();
        blob.extend_from_slice(&time.to_be_bytes());
        blob.extend_from_slice(&key.sign(&cosigned_message(text, time)).to_bytes());
        format!("\u{2014} {} {}\n", w.name, STANDARD.encode(blob))
    }

    #[test]
    fn a_witness_list_parses_and_junk_is_refused() {
        let (_, w) = witness(1);
        assert_eq!(w.endpoint(), "https://witness.example/w1/add-checkpoint");
        assert_eq!(parse_list(" ; \n").unwrap(), vec![]);
        let vkey = w.verifier_key();
        let two = parse_list(&format!(
            "{vkey} http://127.0.0.1:7380;{} https://b.example",
            cosigner_key("b.example/w", &[7; 32])
        ))
        .unwrap();
        assert_eq!(two.len(), 2);
        for junk in [
            vkey.clone(),
            format!("{vkey} https://a.example extra"),
            format!("{vkey} ftp://a.example"),
            format!("{vkey} https://a.example/?q=1"),
            // A key hash that is not the name's and key's.
            format!(
                "{}+00000000+{} https://a.example",
                w.name,
                vkey.rsplit('+').next().unwrap()
            ),
            format!("{vkey} https://a.example;{vkey} https://b.example"),
            // A log's verifier key (type 0x01) is not a witness's.
            format!(
                "{} https://a.example",
                checkpoint::verifier_key("w", &[7; 32])
            ),
        ] {
            assert!(parse_list(&junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn a_cosignature_is_checked_against_the_witness_key_and_the_text() {
        let (key, w) = witness(2);
        let text = checkpoint::body("example.com/log", 5, &[3; 32]);
        let line = cosign(&key, &w, &text, 1_700_000_000);
        assert_eq!(cosignature_line(line.as_bytes(), &w, &text).unwrap(), line);
        // Another checkpoint, another key, junk and nothing by the witness are refused.
        let other = checkpoint::body("example.com/log", 6, &[3; 32]);
        assert_eq!(
            cosignature_line(line.as_bytes(), &w, &other),
            Err(CosignatureError::Invalid)
        );
        let (wrong, _) = witness(3);
        let forged = cosign(&wrong, &w, &text, 1_700_000_000);
        assert_eq!(
            cosignature_line(forged.as_bytes(), &w, &text),
            Err(CosignatureError::Invalid)
        );
        for junk in [
            &b""[..],
            b"garbage",
            b"\xff\xfe\n",
            b"\xe2\x80\x94 x AAAA\r\n",
        ] {
            assert!(cosignature_line(junk, &w, &text).is_err());
        }
        let by_another = line.replace("witness.example/w1", "someone.else");
        assert_eq!(
            cosignature_line(by_another.as_bytes(), &w, &text),
            Err(CosignatureError::NotByTheWitness)
        );

        // On a note: counted once, and a broken one by the witness's key is an error.
        let note = checkpoint::signed_note(&text, "example.com/log", &[9; 32], &[1; 64]);
        let keys = [(w.name.clone(), w.key_hash, w.public_key)];
        let parsed = checkpoint::parse(&format!("{note}{line}{line}")).unwrap();
        assert_eq!(cosigners(&parsed, &keys).unwrap(), vec![w.name.clone()]);
        let parsed = checkpoint::parse(&format!("{note}{forged}")).unwrap();
        assert!(cosigners(&parsed, &keys).is_err());
        let parsed = checkpoint::parse(&note).unwrap();
        assert!(cosigners(&parsed, &keys).unwrap().is_empty());
    }

    #[test]
    fn requests_and_sizes_are_written_and_read_as_the_spec_has_them() {
        let body = add_checkpoint_body(3, &[[0; 32]], "o\n1\nr\n\n\u{2014} k s\n");
        assert_eq!(
            String::from_utf8(body).unwrap(),
            format!(
                "old 3\n{}\n\no\n1\nr\n\n\u{2014} k s\n",
                STANDARD.encode([0u8; 32])
            )
        );
        assert_eq!(parse_size(b"12\n"), Some(12));
        assert_eq!(parse_size(b"0\n"), Some(0));
        for junk in [
            &b"12"[..],
            b"012\n",
            b"-1\n",
            b"\n",
            b"99999999999999999999\n",
            b"1 \n",
        ] {
            assert_eq!(parse_size(junk), None, "{junk:?}");
        }
    }
}
