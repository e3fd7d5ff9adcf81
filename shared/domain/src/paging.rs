//! Where a newest-first list continues: the key of the last item of a page, which the edge
//! carries as an opaque cursor and the repositories turn into a keyset condition.

use serde::{Deserialize, Serialize};

/// The usual key: newest first by creation time, ties broken by id. A decoded key is within
/// the years 1 to 9999, so a crafted cursor cannot carry a time the database refuses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(try_from = "RawTimeKey")]
pub struct TimeKey {
    pub t: chrono::DateTime<chrono::Utc>,
    pub id: uuid::Uuid,
}

#[derive(Deserialize)]
struct RawTimeKey {
    t: chrono::DateTime<chrono::Utc>,
    id: uuid::Uuid,
}

impl TryFrom<RawTimeKey> for TimeKey {
    type Error = &'static str;

    fn try_from(raw: RawTimeKey) -> Result<Self, Self::Error> {
        use chrono::Datelike;
        if (1..=9999).contains(&raw.t.year()) {
            Ok(TimeKey {
                t: raw.t,
                id: raw.id,
            })
        } else {
            Err("cursor time out of range")
        }
    }
}

impl TimeKey {
    /// The `(created_at, id)` query parameters of a keyset condition; both `NULL` on the
    /// first page.
    pub fn bounds(
        after: Option<&TimeKey>,
    ) -> (Option<chrono::DateTime<chrono::Utc>>, Option<uuid::Uuid>) {
        (after.map(|k| k.t), after.map(|k| k.id))
    }
}
