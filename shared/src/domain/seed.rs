//! Seeds are content-addressed: `seedHash` is the lowercase hex SHA-256 of the seed's RFC 8785
//! (JSON Canonicalization Scheme) form, so the same data always has the same hash whatever its
//! key order or whitespace.

use serde_json::Value;

/// A seed in canonical form with its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalSeed {
    pub canonical: String,
    pub hash: String,
}

impl CanonicalSeed {
    pub fn of(value: &Value) -> Result<Self, String> {
        let canonical = serde_json_canonicalizer::to_string(value).map_err(|e| e.to_string())?;
        let hash = crate::infra::storage::sha256_hex(canonical.as_bytes());
        Ok(CanonicalSeed { canonical, hash })
    }

    /// The seed as JSON. Fails only for a stored seed that is not JSON any more (corrupted
    /// data), which callers report instead of rendering something else.
    pub fn value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(&self.canonical)
    }
}

/// A syntactically valid seed hash: 64 lowercase hex digits.
pub fn is_seed_hash(raw: &str) -> bool {
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
        assert!(is_seed_hash(&ca.hash));
    }

    #[test]
    fn known_vector() {
        // sha256 of `{"a":1}`
        let seed = CanonicalSeed::of(&json!({"a": 1})).unwrap();
        assert_eq!(
            seed.hash,
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
