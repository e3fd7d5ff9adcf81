//! Domain vocabulary shared by every function: identifiers, the states and kinds that are
//! stored as text (parsed, never compared as strings), and the scopes a caller may hold.

pub mod asset;
pub mod batch;
pub mod checkpoint;
pub mod configuration;
pub mod digest;
pub mod document;
pub mod einvoice;
pub mod erasure;
pub mod inbound;
pub mod keys;
pub mod manifest;
pub mod merkle;
pub mod outbox;
pub mod paging;
pub mod retention;
pub mod run_errors;
pub mod schema;
pub mod seed;
pub mod signature;
pub mod svg;
pub mod tiles;
pub mod trace;
pub mod webhooks;
pub mod witness;

use std::fmt;

use serde::{Deserialize, Serialize};

use uuid::Uuid;

/// One field that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The tenant every resource belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MerchantId(Uuid);

impl utoipa::PartialSchema for MerchantId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, SchemaFormat, Type};
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
            .description(Some("A merchant's id"))
            .into()
    }
}

impl utoipa::ToSchema for MerchantId {}

impl MerchantId {
    pub const fn new(id: Uuid) -> Self {
        MerchantId(id)
    }

    pub const fn as_uuid(self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for MerchantId {
    fn from(id: Uuid) -> Self {
        MerchantId(id)
    }
}

impl fmt::Display for MerchantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for MerchantId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(MerchantId)
    }
}

/// Stored as the `uuid` it wraps, so that queries take and return merchants, not bare ids.
impl<'a> postgres_types::FromSql<'a> for MerchantId {
    fn from_sql(
        ty: &postgres_types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Uuid::from_sql(ty, raw).map(MerchantId)
    }

    fn accepts(ty: &postgres_types::Type) -> bool {
        <Uuid as postgres_types::FromSql>::accepts(ty)
    }
}

impl postgres_types::ToSql for MerchantId {
    fn to_sql(
        &self,
        ty: &postgres_types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.0.to_sql(ty, out)
    }

    fn accepts(ty: &postgres_types::Type) -> bool {
        <Uuid as postgres_types::ToSql>::accepts(ty)
    }

    postgres_types::to_sql_checked!();
}

/// A permission carried by an access token's `scope` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    BundleRead,
    BundleWrite,
    BundleForce,
    /// Erase runs' artefacts and seeds on request (GDPR art. 17).
    BundleErase,
    ConfigRead,
    ConfigWrite,
    MerchantAdmin,
}

impl Scope {
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::BundleRead => "bundle.read",
            Scope::BundleWrite => "bundle.write",
            Scope::BundleForce => "bundle.force",
            Scope::BundleErase => "bundle.erase",
            Scope::ConfigRead => "config.read",
            Scope::ConfigWrite => "config.write",
            Scope::MerchantAdmin => "merchant.admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An enum stored as `text` (with a CHECK constraint in the schema): parsed when read, so code
/// never compares a state as a string, and written as its name.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
            utoipa::ToSchema,
        )]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(raw: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == raw)
            }

            /// Every name, for messages (`pending, processing, …`).
            pub fn names() -> Vec<&'static str> {
                Self::ALL.iter().map(|v| v.as_str()).collect()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl<'a> postgres_types::FromSql<'a> for $name {
            fn from_sql(
                ty: &postgres_types::Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
                let text = <&str as postgres_types::FromSql>::from_sql(ty, raw)?;
                Self::parse(text)
                    .ok_or_else(|| format!("unknown {} `{text}`", stringify!($name)).into())
            }

            fn accepts(ty: &postgres_types::Type) -> bool {
                <&str as postgres_types::FromSql>::accepts(ty)
            }
        }

        impl postgres_types::ToSql for $name {
            fn to_sql(
                &self,
                ty: &postgres_types::Type,
                out: &mut bytes::BytesMut,
            ) -> Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
                self.as_str().to_sql(ty, out)
            }

            fn accepts(ty: &postgres_types::Type) -> bool {
                <&str as postgres_types::ToSql>::accepts(ty)
            }

            postgres_types::to_sql_checked!();
        }
    };
}

pub(crate) use text_enum;

text_enum! {
    /// Where a bundle run is: `pending → processing → completed | failed`, forward only;
    /// a completed run is `expired` once its artefacts are deleted (its retention passed, or
    /// an erasure), its manifest and log entry kept.
    RunStatus {
        Pending => "pending",
        Processing => "processing",
        Completed => "completed",
        Failed => "failed",
        Expired => "expired",
    }
}

impl RunStatus {
    /// `completed`, `failed` or `expired`: the run will not be processed again.
    pub const fn has_ended(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Expired
        )
    }

    /// `completed` or `expired`: the run produced a signed manifest, which it keeps.
    pub const fn has_manifest(self) -> bool {
        matches!(self, RunStatus::Completed | RunStatus::Expired)
    }
}

text_enum! {
    /// What launched a run.
    TriggerType {
        /// An API call.
        User => "user",
        /// A verified inbound event.
        Webhook => "webhook",
        /// A replay of an earlier run.
        Replay => "replay",
        /// A line of a batch.
        Batch => "batch",
    }
}

text_enum! {
    /// Whether a configuration still launches runs.
    ConfigurationStatus {
        Active => "active",
        Archived => "archived",
    }
}

#[cfg(test)]
mod text_enum_tests {
    use super::*;

    #[test]
    fn names_round_trip_and_serialise_as_stored() {
        for status in RunStatus::ALL {
            assert_eq!(RunStatus::parse(status.as_str()), Some(*status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert_eq!(RunStatus::parse("Completed"), None);
        assert_eq!(TriggerType::names(), ["user", "webhook", "replay", "batch"]);
    }
}
