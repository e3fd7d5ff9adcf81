//! A PDF document's signature as a configuration asks for it: the PAdES baseline level and
//! what the signature states besides the signer (reason, location, contact), checked at save
//! and stored with the version.

use serde::{Deserialize, Serialize};

use crate::FieldError;

/// The most characters of a reason, location or contact.
pub const MAX_TEXT_CHARS: usize = 200;

/// PAdES baseline levels (ETSI EN 319 142-1): `B-B` the signature alone, `B-T` with a
/// time-stamp on it from a time-stamping authority, `B-LT` plus the certificates and
/// revocation data that let it be validated later, offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum SignatureLevel {
    #[serde(rename = "B-B")]
    #[schema(rename = "B-B")]
    BB,
    #[serde(rename = "B-T")]
    #[schema(rename = "B-T")]
    BT,
    #[serde(rename = "B-LT")]
    #[schema(rename = "B-LT")]
    BLt,
}

impl SignatureLevel {
    pub const ALL: [SignatureLevel; 3] =
        [SignatureLevel::BB, SignatureLevel::BT, SignatureLevel::BLt];

    pub fn as_str(self) -> &'static str {
        match self {
            SignatureLevel::BB => "B-B",
            SignatureLevel::BT => "B-T",
            SignatureLevel::BLt => "B-LT",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|level| level.as_str() == text)
    }

    /// Whether the signature carries a time-stamp (B-T and above).
    pub fn timestamped(self) -> bool {
        self != SignatureLevel::BB
    }
}

/// `documents[i].signature` as sent.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignatureBody {
    #[schema(value_type = SignatureLevel)]
    pub level: String,
    /// Why the document is signed (shown by PDF readers); at most 200 characters, no control
    /// characters.
    #[serde(default)]
    #[schema(
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub reason: Option<String>,
    /// Where it was signed; the same rules.
    #[serde(default)]
    #[schema(
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub location: Option<String>,
    /// How to reach the signer; the same rules.
    #[serde(default)]
    #[schema(
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub contact_info: Option<String>,
}

/// A document's signature as stored with its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignatureSpec {
    pub level: SignatureLevel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_info: Option<String>,
}

/// Checks `body` (the signature of the document whose fields `field` names); adds every
/// problem to `errors`.
pub fn check(
    body: SignatureBody,
    field: impl Fn(&str) -> String,
    errors: &mut Vec<FieldError>,
) -> Option<SignatureSpec> {
    let level = SignatureLevel::parse(&body.level);
    if level.is_none() {
        let names: Vec<&str> = SignatureLevel::ALL.iter().map(|l| l.as_str()).collect();
        errors.push(FieldError::new(
            field("level"),
            format!("must be one of {}", names.join(", ")),
        ));
    }
    let mut text = |name: &str, value: Option<String>| -> Option<String> {
        let value = value?;
        let trimmed = value.trim();
        if trimmed.is_empty() {
            errors.push(FieldError::new(field(name), "must not be blank"));
        } else if trimmed.chars().count() > MAX_TEXT_CHARS {
            errors.push(FieldError::new(
                field(name),
                format!("must be at most {MAX_TEXT_CHARS} characters"),
            ));
        } else if trimmed.chars().any(char::is_control) {
            errors.push(FieldError::new(
                field(name),
                "must not contain control characters",
            ));
        }
        Some(trimmed.to_owned())
    };
    let reason = text("reason", body.reason);
    let location = text("location", body.location);
    let contact_info = text("contactInfo", body.contact_info);
    Some(SignatureSpec {
        level: level?,
        reason,
        location,
        contact_info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(level: &str, reason: Option<&str>) -> SignatureBody {
        SignatureBody {
            level: level.into(),
            reason: reason.map(str::to_owned),
            location: None,
            contact_info: None,
        }
    }

    fn checked(body: SignatureBody) -> (Option<SignatureSpec>, Vec<String>) {
        let mut errors = Vec::new();
        let spec = check(body, |f| format!("documents[0].signature.{f}"), &mut errors);
        (spec, errors.into_iter().map(|e| e.field).collect())
    }

    #[test]
    fn levels_and_texts_are_checked_by_field() {
        let (spec, errors) = checked(body("B-T", Some("  Invoice  ")));
        assert!(errors.is_empty());
        let spec = spec.unwrap();
        assert_eq!(spec.level, SignatureLevel::BT);
        assert_eq!(spec.reason.as_deref(), Some("Invoice"));

        let (_, errors) = checked(body("B-LTA", None));
        assert_eq!(errors, ["documents[0].signature.level"]);
        let (_, errors) = checked(body("B-B", Some("a\u{0}b")));
        assert_eq!(errors, ["documents[0].signature.reason"]);
        let (_, errors) = checked(body("B-B", Some(&"x".repeat(201))));
        assert_eq!(errors, ["documents[0].signature.reason"]);
        let (_, errors) = checked(body("B-B", Some(" \t ")));
        assert_eq!(errors, ["documents[0].signature.reason"]);
    }
}
