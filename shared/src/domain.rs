//! Domain vocabulary shared by every function: identifiers and the scopes a caller may hold.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The tenant every resource belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MerchantId(pub Uuid);

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

/// A permission carried by an access token's `scope` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    BundleRead,
    BundleWrite,
    BundleForce,
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
