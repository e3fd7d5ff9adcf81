//! Erasure on request: what selects the runs to erase, and the signed receipt that says what
//! went, when, at whose request and which SHA-256 each artefact had.
//!
//! A receipt is appended to the merchant's transparency log like a manifest, so it is split
//! into parts small enough to be a log entry ([`MAX_PART_BYTES`]; a tile's entry is at most
//! 64 KiB). It names no value that was matched: only the pointer, hashes and ids.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::MerchantId;

/// The `schema` of every receipt part.
pub const RECEIPT_SCHEMA: &str = "docbundle.erasure-receipt/v1";
/// Most bytes of one receipt part.
pub const MAX_PART_BYTES: usize = 48 * 1024;
/// Most segments of a pointer, and its length.
pub const MAX_POINTER_SEGMENTS: usize = 32;
pub const MAX_POINTER_BYTES: usize = 1024;
/// Most bytes of the JSON value a pointer is matched against.
pub const MAX_VALUE_BYTES: usize = 4096;
/// Above this many runs, an erasure names its count to be executed (`confirm.runs`).
pub const CONFIRM_ABOVE_RUNS: usize = 10;
/// Most runs one erasure erases (one transaction, within the scheduler's minute): a larger
/// one is refused, to be split (by seed hash, or a narrower pointer).
pub const MAX_RUNS: usize = 5_000;

/// An RFC 6901 JSON pointer as the path of segments it names (`/customer/id` →
/// `["customer", "id"]`; `""` is the whole seed).
pub fn parse_pointer(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.len() > MAX_POINTER_BYTES {
        return Err(format!("must be at most {MAX_POINTER_BYTES} bytes"));
    }
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err("must be empty or start with '/' (RFC 6901)".to_owned());
    };
    let mut segments = Vec::new();
    for raw in rest.split('/') {
        if segments.len() == MAX_POINTER_SEGMENTS {
            return Err(format!("must have at most {MAX_POINTER_SEGMENTS} segments"));
        }
        let mut segment = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            match c {
                '~' => match chars.next() {
                    Some('0') => segment.push('~'),
                    Some('1') => segment.push('/'),
                    _ => return Err("has a '~' that is neither '~0' nor '~1' (RFC 6901)".into()),
                },
                '\0' => return Err("must not contain NUL".to_owned()),
                c => segment.push(c),
            }
        }
        segments.push(segment);
    }
    Ok(segments)
}

/// What an erasure asked for, as its receipt names it (never the value matched).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Request {
    #[serde(rename_all = "camelCase")]
    Run { run_id: Uuid },
    #[serde(rename_all = "camelCase")]
    Seed { seed_hash: String },
    /// Every run whose seed holds the value (kept out of the receipt) at `pointer`, or holds
    /// anything there when no value was given.
    #[serde(rename_all = "camelCase")]
    Match { pointer: String, value_given: bool },
}

/// One artefact of an erased run: the hash that still proves what it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErasedArtefact {
    pub name: String,
    pub sha256: String,
}

/// One thing an erasure did or did not do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Item {
    /// A run whose artefacts were deleted (none for a run that had failed).
    #[serde(rename_all = "camelCase")]
    RunErased {
        run_id: Uuid,
        seed_hash: String,
        manifest_sha256: Option<String>,
        artefacts: Vec<ErasedArtefact>,
        /// Its retention had deleted its artefacts already.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        already_expired: bool,
    },
    /// A run a legal hold keeps.
    #[serde(rename_all = "camelCase")]
    RunKept { run_id: Uuid, reason: String },
    #[serde(rename_all = "camelCase")]
    SeedErased { seed_hash: String },
    /// A seed kept because runs outside this erasure (held, or by retention) still keep it.
    #[serde(rename_all = "camelCase")]
    SeedKept {
        seed_hash: String,
        reason: String,
        run_ids: Vec<Uuid>,
    },
}

/// One part of an erasure's receipt, signed and appended to the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiptPart {
    pub schema: String,
    pub erasure_id: Uuid,
    pub merchant_id: MerchantId,
    pub part: u32,
    pub parts: u32,
    pub request: Request,
    pub requested_by: String,
    pub requested_at: chrono::DateTime<chrono::Utc>,
    pub erased_at: chrono::DateTime<chrono::Utc>,
    pub items: Vec<Item>,
}

impl ReceiptPart {
    pub fn to_bytes(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(self)
    }
}

/// Everything a receipt says, before it is split.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub erasure_id: Uuid,
    pub merchant_id: MerchantId,
    pub request: Request,
    pub requested_by: String,
    pub requested_at: chrono::DateTime<chrono::Utc>,
    pub erased_at: chrono::DateTime<chrono::Utc>,
    pub items: Vec<Item>,
}

impl Receipt {
    /// The receipt in parts of at most [`MAX_PART_BYTES`] each (items in order, never split);
    /// at least one part, even when nothing matched.
    pub fn parts(&self) -> serde_json::Result<Vec<ReceiptPart>> {
        // The envelope as large as it can be: part and parts numbers of many digits.
        let envelope = self.part(u32::MAX, u32::MAX, Vec::new()).to_bytes()?.len();
        let mut chunks: Vec<Vec<Item>> = vec![Vec::new()];
        let mut size = envelope;
        for item in &self.items {
            let item_size = serde_json::to_vec(item)?.len() + 1;
            let current = chunks.last_mut().expect("one chunk at least");
            if !current.is_empty() && size + item_size > MAX_PART_BYTES {
                chunks.push(Vec::new());
                size = envelope;
            }
            chunks.last_mut().expect("one chunk").push(item.clone());
            size += item_size;
        }
        let parts = chunks.len() as u32;
        Ok(chunks
            .into_iter()
            .enumerate()
            .map(|(i, items)| self.part(i as u32 + 1, parts, items))
            .collect())
    }

    fn part(&self, part: u32, parts: u32, items: Vec<Item>) -> ReceiptPart {
        ReceiptPart {
            schema: RECEIPT_SCHEMA.to_owned(),
            erasure_id: self.erasure_id,
            merchant_id: self.merchant_id,
            part,
            parts,
            request: self.request.clone(),
            requested_by: self.requested_by.clone(),
            requested_at: self.requested_at,
            erased_at: self.erased_at,
            items,
        }
    }
}

/// Where the receipt part whose log entry is `entry` is stored.
pub fn receipt_key(merchant: MerchantId, erasure: Uuid, entry: Uuid) -> String {
    format!("merchants/{merchant}/erasures/{erasure}/receipt-{entry}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_parse_as_rfc_6901_says() {
        assert_eq!(parse_pointer(""), Ok(vec![]));
        assert_eq!(
            parse_pointer("/customer/id"),
            Ok(vec!["customer".into(), "id".into()])
        );
        assert_eq!(
            parse_pointer("/a~1b/c~0d/"),
            Ok(vec!["a/b".into(), "c~d".into(), "".into()])
        );
        assert_eq!(
            parse_pointer("/items/0"),
            Ok(vec!["items".into(), "0".into()])
        );
        for bad in [
            "customer",
            "/a~2",
            "/a~",
            "/\u{0}",
            &"/x".repeat(33),
            &"/".repeat(1025),
        ] {
            assert!(parse_pointer(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_large_receipt_is_split_into_parts_that_fit_a_log_entry() {
        let receipt = Receipt {
            erasure_id: Uuid::nil(),
            merchant_id: MerchantId::new(Uuid::nil()),
            request: Request::Match {
                pointer: "/customer/id".into(),
                value_given: true,
            },
            requested_by: "someone".into(),
            requested_at: chrono::DateTime::UNIX_EPOCH,
            erased_at: chrono::DateTime::UNIX_EPOCH,
            items: (0..2_000)
                .map(|i| Item::RunErased {
                    run_id: Uuid::from_u128(i),
                    seed_hash: "ab".repeat(32),
                    manifest_sha256: Some("cd".repeat(32)),
                    artefacts: vec![ErasedArtefact {
                        name: "statement.pdf".into(),
                        sha256: "ef".repeat(32),
                    }],
                    already_expired: false,
                })
                .collect(),
        };
        let parts = receipt.parts().unwrap();
        assert!(parts.len() > 1);
        let mut items = 0;
        for (i, part) in parts.iter().enumerate() {
            assert_eq!(part.part as usize, i + 1);
            assert_eq!(part.parts as usize, parts.len());
            assert!(part.to_bytes().unwrap().len() <= MAX_PART_BYTES);
            items += part.items.len();
        }
        assert_eq!(items, 2_000);
        let empty = Receipt {
            items: vec![],
            ..receipt
        };
        assert_eq!(empty.parts().unwrap().len(), 1);
    }
}
