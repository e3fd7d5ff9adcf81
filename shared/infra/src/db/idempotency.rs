//! Idempotency keys of launches: the first answer to a key, kept at least a day, so that a
//! retried launch gets the same answer and launches nothing.

use std::time::Duration;

use serde_json::Value;

use super::query_error;
use crate::error::DependencyError;
use docbundle_domain::MerchantId;

/// How long an answer is kept: a day, and a minute for clocks and retries in flight.
pub const TTL: Duration = Duration::from_secs(24 * 3600 + 60);

/// A key as the caller sent it, with the fingerprint of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: IdempotencyKey,
    /// SHA-256 of the request's canonical JSON: the same key with another body is refused.
    pub request_sha256: String,
}

/// An `Idempotency-Key`: 1 to 255 printable ASCII characters, checked when parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key (surrounding spaces ignored), or `None` when it is not one.
    pub fn parse(raw: &str) -> Option<Self> {
        let key = raw.trim();
        let printable = key.bytes().all(|b| (0x21..=0x7e).contains(&b));
        (!key.is_empty() && key.len() <= 255 && printable).then(|| IdempotencyKey(key.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The answer recorded for a key.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAnswer {
    pub request_sha256: String,
    pub body: Value,
}

/// The live answer for `key`, if any (an expired one is ignored).
pub async fn find_live(
    client: &impl deadpool_postgres::GenericClient,
    merchant: MerchantId,
    key: &IdempotencyKey,
) -> Result<Option<StoredAnswer>, DependencyError> {
    let row = client
        .query_opt(
            "SELECT request_sha256, response_body FROM idempotency_keys
              WHERE merchant_id = $1 AND key = $2 AND expires_at >= now()",
            &[&merchant, &key.as_str()],
        )
        .await
        .map_err(query_error("find idempotency key"))?;
    Ok(row.map(|row| StoredAnswer {
        request_sha256: row.get("request_sha256"),
        body: row.get("response_body"),
    }))
}

/// Forgets `key` when its answer has expired, so that it can be used again.
pub async fn expire(
    client: &impl deadpool_postgres::GenericClient,
    merchant: MerchantId,
    key: &IdempotencyKey,
) -> Result<(), DependencyError> {
    client
        .execute(
            "DELETE FROM idempotency_keys WHERE merchant_id = $1 AND key = $2 AND expires_at < now()",
            &[&merchant, &key.as_str()],
        )
        .await
        .map_err(query_error("expire idempotency key"))?;
    Ok(())
}

/// Records the answer for `idempotency` inside the launch's transaction; `false` when another
/// request with the same key recorded one first.
pub async fn record(
    tx: &tokio_postgres::Transaction<'_>,
    merchant: MerchantId,
    idempotency: &Idempotency,
    body: &Value,
) -> Result<bool, DependencyError> {
    let inserted = tx
        .execute(
            "INSERT INTO idempotency_keys
                 (merchant_id, key, request_sha256, response_status, response_body, expires_at)
             VALUES ($1, $2, $3, 202, $4, now() + make_interval(secs => $5))
             ON CONFLICT (merchant_id, key) DO NOTHING",
            &[
                &merchant,
                &idempotency.key.as_str(),
                &idempotency.request_sha256,
                body,
                &TTL.as_secs_f64(),
            ],
        )
        .await
        .map_err(query_error("record idempotency key"))?;
    Ok(inserted == 1)
}

#[cfg(test)]
mod tests {
    use super::IdempotencyKey;

    #[test]
    fn keys_are_printable_ascii_of_bounded_length() {
        assert_eq!(IdempotencyKey::parse("  run-1 ").unwrap().as_str(), "run-1");
        for bad in ["", "   ", "a b", "caf\u{e9}", "tab\there"] {
            assert!(IdempotencyKey::parse(bad).is_none(), "{bad:?}");
        }
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_some());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_none());
    }
}
