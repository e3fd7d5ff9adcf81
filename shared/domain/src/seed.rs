//! Seeds are content-addressed: `seedHash` is the lowercase hex SHA-256 of the seed's RFC 8785
//! (JSON Canonicalization Scheme) form, so the same data always has the same hash whatever its
//! key order or whitespace.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A seed in canonical form with its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalSeed {
    pub canonical: String,
    pub hash: SeedHash,
}

/// A seed's hash: 64 lowercase hexadecimal digits, checked when parsed, so that no other
/// string can stand for one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SeedHash(String);

impl utoipa::PartialSchema for SeedHash {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9a-f]{64}$"))
            .description(Some(
                "The hex SHA-256 of the seed's canonical JSON (RFC 8785)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for SeedHash {}

impl SeedHash {
    pub fn parse(raw: &str) -> Option<Self> {
        is_seed_hash(raw).then(|| SeedHash(raw.to_owned()))
    }

    /// The hash of canonical bytes.
    pub fn of(canonical: &[u8]) -> Self {
        SeedHash(crate::digest::sha256_hex(canonical))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SeedHash {
    type Error = &'static str;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        SeedHash::parse(&raw).ok_or("a seed hash is 64 lowercase hexadecimal digits")
    }
}

impl From<SeedHash> for String {
    fn from(hash: SeedHash) -> String {
        hash.0
    }
}

impl std::fmt::Display for SeedHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'a> postgres_types::FromSql<'a> for SeedHash {
    fn from_sql(
        ty: &postgres_types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let text = <&str as postgres_types::FromSql>::from_sql(ty, raw)?;
        SeedHash::parse(text).ok_or_else(|| format!("`{text}` is not a seed hash").into())
    }

    fn accepts(ty: &postgres_types::Type) -> bool {
        <&str as postgres_types::FromSql>::accepts(ty)
    }
}

impl postgres_types::ToSql for SeedHash {
    fn to_sql(
        &self,
        ty: &postgres_types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.as_str().to_sql(ty, out)
    }

    fn accepts(ty: &postgres_types::Type) -> bool {
        <&str as postgres_types::ToSql>::accepts(ty)
    }

    postgres_types::to_sql_checked!();
}

impl CanonicalSeed {
    pub fn of(value: &Value) -> Result<Self, String> {
        let canonical = serde_json_canonicalizer::to_string(value).map_err(|e| e.to_string())?;
        let hash = SeedHash::of(canonical.as_bytes());
        Ok(CanonicalSeed { canonical, hash })
    }

    /// The seed as JSON. Fails only for a stored seed that is not JSON any more (corrupted
    /// data), which callers report instead of rendering something else.
    pub fn value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(&self.canonical)
    }
}

/// A syntactically valid seed hash: 64 lowercase hex digits.
fn is_seed_hash(raw: &str) -> bool {
    raw.len() == 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_whitespace_do_not_change_the_hash() {
        let a: Value =
            serde_json::from_str(r#"{"b": 1, "a": [1.0, "x"], "c": {"z": null, "y": true}}"#)
                .unwrap();
        let b: Value =
            serde_json::from_str(r#"{"c":{"y":true,"z":null},"a":[1,"x"],"b":1}"#).unwrap();
        let (ca, cb) = (
            CanonicalSeed::of(&a).unwrap(),
            CanonicalSeed::of(&b).unwrap(),
        );
        assert_eq!(ca, cb);
        assert_eq!(
            ca.canonical,
            r#"{"a":[1,"x"],"b":1,"c":{"y":true,"z":null}}"#
        );
        assert!(is_seed_hash(ca.hash.as_str()));
    }

    #[test]
    fn known_vector() {
        // sha256 of `{"a":1}`
        let seed = CanonicalSeed::of(&json!({"a": 1})).unwrap();
        assert_eq!(
            seed.hash.as_str(),
            "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
        );
    }

    #[test]
    fn hashes_are_checked_for_shape() {
        assert!(!is_seed_hash("ABC"));
        assert!(!is_seed_hash(&"G".repeat(64)));
        assert!(is_seed_hash(&"0a".repeat(32)));
    }
}
