//! Keyset paging for every list: `limit` (default 20, at most 100) and an opaque `cursor`
//! naming the last item of the previous page. Answers are `{items, nextCursor}`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ApiError, FieldError};

pub use docbundle_domain::paging::TimeKey;

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

/// One page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A validated page request: the limit and where to continue from.
#[derive(Debug, Clone)]
pub struct PageRequest<K> {
    pub limit: i64,
    pub after: Option<K>,
}

impl<K: DeserializeOwned> PageRequest<K> {
    pub fn parse(limit: Option<i64>, cursor: Option<&str>) -> Result<Self, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::validation(
                "Invalid query parameters",
                vec![FieldError::new(
                    "limit",
                    format!("must be between 1 and {MAX_LIMIT}"),
                )],
            ));
        }
        let after = match cursor.filter(|c| !c.is_empty()) {
            None => None,
            Some(raw) => Some(decode(raw).ok_or_else(|| {
                ApiError::validation(
                    "Invalid query parameters",
                    vec![FieldError::new(
                        "cursor",
                        "is not a cursor returned by this list",
                    )],
                )
            })?),
        };
        Ok(PageRequest { limit, after })
    }

    /// Rows to fetch: one more than the limit, to learn whether another page follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }
}

/// Builds the page from up to `limit + 1` rows in list order; `key` gives a row's cursor key.
pub fn page<T, K: Serialize>(mut rows: Vec<T>, limit: i64, key: impl Fn(&T) -> K) -> Page<T> {
    let limit = usize::try_from(limit).unwrap_or(0);
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|last| encode(&key(last)))
    } else {
        None
    };
    Page {
        items: rows,
        next_cursor,
    }
}

fn encode<K: Serialize>(key: &K) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).unwrap_or_default())
}

fn decode<K: DeserializeOwned>(raw: &str) -> Option<K> {
    let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A filter parsed by `parse`: `None` when absent, `422` naming `field` (and listing `names`)
/// when it names nothing.
pub fn filter<T>(
    field: &str,
    value: Option<&str>,
    parse: impl Fn(&str) -> Option<T>,
    names: &[&str],
) -> Result<Option<T>, ApiError> {
    match value {
        None => Ok(None),
        Some(raw) => parse(raw).map(Some).ok_or_else(|| {
            ApiError::validation(
                "Invalid query parameters",
                vec![FieldError::new(
                    field,
                    format!("must be one of {}", names.join(", ")),
                )],
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_bounded() {
        assert_eq!(PageRequest::<TimeKey>::parse(None, None).unwrap().limit, 20);
        assert!(PageRequest::<TimeKey>::parse(Some(0), None).is_err());
        assert!(PageRequest::<TimeKey>::parse(Some(101), None).is_err());
        assert_eq!(
            PageRequest::<TimeKey>::parse(Some(100), None)
                .unwrap()
                .fetch(),
            101
        );
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let rows: Vec<i32> = (0..6).collect();
        let p = page(rows, 5, |r| *r);
        assert_eq!(p.items.len(), 5);
        let cursor = p.next_cursor.unwrap();
        let next = PageRequest::<i32>::parse(Some(5), Some(&cursor)).unwrap();
        assert_eq!(next.after, Some(4));
        let err = PageRequest::<i32>::parse(None, Some("%%%")).unwrap_err();
        assert_eq!(err.status().as_u16(), 422);
        assert!(page(vec![1, 2], 5, |r| *r).next_cursor.is_none());
    }

    #[test]
    fn crafted_time_cursors_are_refused() {
        for t in [
            "-200000-01-01T00:00:00Z",
            "+200000-01-01T00:00:00Z",
            "0000-12-31T23:59:59Z",
        ] {
            let raw = format!(r#"{{"t":"{t}","id":"11111111-1111-4111-8111-111111111111"}}"#);
            let cursor = URL_SAFE_NO_PAD.encode(raw);
            let err = PageRequest::<TimeKey>::parse(None, Some(&cursor)).unwrap_err();
            assert_eq!(err.status().as_u16(), 422, "{t}");
        }
        let key = TimeKey {
            t: chrono::Utc::now(),
            id: uuid::Uuid::new_v4(),
        };
        let cursor = encode(&key);
        let back = PageRequest::<TimeKey>::parse(None, Some(&cursor)).unwrap();
        assert_eq!(back.after, Some(key));
    }
}
