//! Inbound webhooks, Standard Webhooks style: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` (`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, several
//! space-separated for key rotation), ±5 minutes of tolerance, constant-time comparison.
//!
//! Secrets are `whsec_<base64 key>`, kept in Vault KV, never in PostgreSQL or logs.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How far a `webhook-timestamp` may be from now, either way.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// Why a delivery was refused; the message names the failed check and nothing about secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    MissingHeader(&'static str),
    BadTimestamp,
    StaleTimestamp,
    BadSignature,
}

impl VerifyError {
    pub fn describe(self) -> String {
        match self {
            VerifyError::MissingHeader(h) => format!("Missing {h} header"),
            VerifyError::BadTimestamp => "webhook-timestamp is not a Unix timestamp".to_owned(),
            VerifyError::StaleTimestamp => {
                format!("webhook-timestamp is more than {TOLERANCE_SECONDS} seconds away from now")
            }
            VerifyError::BadSignature => "No webhook-signature matches the payload".to_owned(),
        }
    }
}

/// A fresh secret: `whsec_` + base64 of 32 random bytes.
pub fn generate_secret() -> Result<String, String> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| e.to_string())?;
    Ok(format!("whsec_{}", STANDARD.encode(key)))
}

fn key_bytes(secret: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .ok()
}

fn mac(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> Option<Hmac<Sha256>> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// The `webhook-signature` value a sender computes: `v1,<base64>`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = key_bytes(secret)?;
    let tag = mac(&key, id, &timestamp.to_string(), body)?
        .finalize()
        .into_bytes();
    Some(format!("v1,{}", STANDARD.encode(tag)))
}

/// Checks a delivery against every currently valid secret.
pub fn verify(
    secrets: &[&str],
    id: Option<&str>,
    timestamp: Option<&str>,
    signatures: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), VerifyError> {
    let id = id
        .filter(|v| !v.is_empty())
        .ok_or(VerifyError::MissingHeader("webhook-id"))?;
    let timestamp = timestamp
        .filter(|v| !v.is_empty())
        .ok_or(VerifyError::MissingHeader("webhook-timestamp"))?;
    let signatures = signatures
        .filter(|v| !v.is_empty())
        .ok_or(VerifyError::MissingHeader("webhook-signature"))?;
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    // Checked: a hostile timestamp (i64::MIN, say) must not overflow the subtraction.
    let skew = now.timestamp().checked_sub(sent).and_then(i64::checked_abs);
    if skew.is_none_or(|skew| skew > TOLERANCE_SECONDS) {
        return Err(VerifyError::StaleTimestamp);
    }
    let candidates: Vec<Vec<u8>> = signatures
        .split_ascii_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .collect();
    for secret in secrets {
        let Some(key) = key_bytes(secret) else {
            continue;
        };
        for candidate in &candidates {
            // `verify_slice` compares in constant time.
            if let Some(mac) = mac(&key, id, timestamp.trim(), body) {
                if mac.verify_slice(candidate).is_ok() {
                    return Ok(());
                }
            }
        }
    }
    Err(VerifyError::BadSignature)
}

/// What Vault keeps for a source: its secrets, the older ones with an end of validity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceSecrets {
    pub secrets: Vec<StoredSecret>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredSecret {
    pub secret: String,
    pub created_at: DateTime<Utc>,
    /// `None` for the current secret; set on the previous one by a rotation.
    pub valid_until: Option<DateTime<Utc>>,
}

impl SourceSecrets {
    pub fn new(secret: String, now: DateTime<Utc>) -> Self {
        SourceSecrets {
            secrets: vec![StoredSecret {
                secret,
                created_at: now,
                valid_until: None,
            }],
        }
    }

    /// Adds `secret` as the current one; the previous ones stay valid for `overlap`, and any
    /// already expired are dropped.
    pub fn rotate(&mut self, secret: String, now: DateTime<Utc>, overlap: chrono::Duration) {
        self.secrets
            .retain(|s| s.valid_until.is_none_or(|until| until > now));
        for old in &mut self.secrets {
            let until = now + overlap;
            old.valid_until = Some(old.valid_until.map_or(until, |u| u.min(until)));
        }
        self.secrets.push(StoredSecret {
            secret,
            created_at: now,
            valid_until: None,
        });
    }

    /// The secrets that verify at `now`, newest first.
    pub fn valid_at(&self, now: DateTime<Utc>) -> Vec<&str> {
        self.secrets
            .iter()
            .rev()
            .filter(|s| s.valid_until.is_none_or(|until| until > now))
            .map(|s| s.secret.as_str())
            .collect()
    }
}

/// Where a source's secrets live in Vault KV.
pub fn vault_path(source_id: uuid::Uuid) -> String {
    format!("docbundle/webhook-sources/{source_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn at(ts: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(ts, 0).unwrap()
    }

    #[test]
    fn the_specification_test_vector_signs_and_verifies() {
        assert_eq!(sign(SECRET, ID, TS, BODY).unwrap(), EXPECTED);
        // The prefix is optional, as in the reference libraries.
        assert_eq!(
            sign(SECRET.trim_start_matches("whsec_"), ID, TS, BODY).unwrap(),
            EXPECTED
        );
        verify(
            &[SECRET],
            Some(ID),
            Some("1614265330"),
            Some(EXPECTED),
            BODY,
            at(TS),
        )
        .unwrap();
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let header = format!("v1,bm9wZQ== v2,whatever {EXPECTED}");
        verify(
            &[SECRET],
            Some(ID),
            Some("1614265330"),
            Some(&header),
            BODY,
            at(TS),
        )
        .unwrap();
        verify(
            &["whsec_AAAA", SECRET],
            Some(ID),
            Some("1614265330"),
            Some(EXPECTED),
            BODY,
            at(TS),
        )
        .unwrap();
    }

    #[test]
    fn every_failed_check_is_named() {
        let v = |id, ts, sig, body: &[u8], now| verify(&[SECRET], id, ts, sig, body, now);
        assert_eq!(
            v(None, Some("1614265330"), Some(EXPECTED), BODY, at(TS)),
            Err(VerifyError::MissingHeader("webhook-id"))
        );
        assert_eq!(
            v(Some(ID), None, Some(EXPECTED), BODY, at(TS)),
            Err(VerifyError::MissingHeader("webhook-timestamp"))
        );
        assert_eq!(
            v(Some(ID), Some("1614265330"), None, BODY, at(TS)),
            Err(VerifyError::MissingHeader("webhook-signature"))
        );
        assert_eq!(
            v(Some(ID), Some("soon"), Some(EXPECTED), BODY, at(TS)),
            Err(VerifyError::BadTimestamp)
        );
        assert_eq!(
            v(
                Some(ID),
                Some("1614265330"),
                Some(EXPECTED),
                BODY,
                at(TS + 301)
            ),
            Err(VerifyError::StaleTimestamp)
        );
        assert_eq!(
            v(
                Some(ID),
                Some("1614265330"),
                Some(EXPECTED),
                BODY,
                at(TS - 301)
            ),
            Err(VerifyError::StaleTimestamp)
        );
        // Extremes neither overflow (a debug build would panic) nor wrap into the window.
        for extreme in ["-9223372036854775808", "9223372036854775807"] {
            assert_eq!(
                v(Some(ID), Some(extreme), Some(EXPECTED), BODY, at(TS)),
                Err(VerifyError::StaleTimestamp),
                "{extreme}"
            );
        }
        assert_eq!(
            v(
                Some(ID),
                Some("9223372036854775808"),
                Some(EXPECTED),
                BODY,
                at(TS)
            ),
            Err(VerifyError::BadTimestamp)
        );
        v(
            Some(ID),
            Some("1614265330"),
            Some(EXPECTED),
            BODY,
            at(TS + 299),
        )
        .unwrap();
        assert_eq!(
            v(
                Some(ID),
                Some("1614265330"),
                Some(EXPECTED),
                br#"{"test": 2432232315}"#,
                at(TS)
            ),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            v(
                Some("msg_other"),
                Some("1614265330"),
                Some(EXPECTED),
                BODY,
                at(TS)
            ),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify(
                &["whsec_AAAA"],
                Some(ID),
                Some("1614265330"),
                Some(EXPECTED),
                BODY,
                at(TS)
            ),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn generated_secrets_have_the_standard_shape() {
        let s = generate_secret().unwrap();
        assert!(s.starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&s[6..]).unwrap().len(), 32);
        assert_ne!(s, generate_secret().unwrap());
    }

    #[test]
    fn rotation_keeps_the_old_secret_for_the_overlap_only() {
        let t0 = at(1_000_000);
        let mut secrets = SourceSecrets::new("old".into(), t0);
        secrets.rotate("new".into(), t0, chrono::Duration::seconds(60));
        assert_eq!(
            secrets.valid_at(t0 + chrono::Duration::seconds(59)),
            vec!["new", "old"]
        );
        assert_eq!(
            secrets.valid_at(t0 + chrono::Duration::seconds(61)),
            vec!["new"]
        );
        secrets.rotate(
            "newer".into(),
            t0 + chrono::Duration::seconds(120),
            chrono::Duration::seconds(60),
        );
        assert_eq!(secrets.secrets.len(), 2, "expired secrets are dropped");
    }
}
