//! Assets: uploading one (type read from the bytes, stored once per merchant under its
//! SHA-256) and loading the ones a configuration names, checked against their hash.

use std::collections::{BTreeMap, BTreeSet};

use crate::Services;
use docbundle_domain::asset::{self, AssetInfo, MAX_ASSETS_PER_CONFIGURATION};
use docbundle_domain::configuration::StoredAssets;
use docbundle_domain::digest::sha256_hex;
use docbundle_domain::FieldError;
use docbundle_domain::MerchantId;
use docbundle_infra::db::assets as repo;
use docbundle_infra::error::DependencyError;

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The name or the bytes are not a valid asset (the field says which).
    #[error("the asset is not valid: {}: {}", .0.field, .0.message)]
    Invalid(FieldError),
    #[error("merchant not found")]
    MerchantNotFound,
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

/// Stores `bytes` as the merchant's asset `name`; `(asset, true)` when new, the existing
/// record and `false` when the merchant has these bytes already (under any name).
pub async fn upload(
    services: &Services,
    merchant: MerchantId,
    name: &str,
    bytes: Vec<u8>,
    created_by: &str,
) -> Result<(AssetInfo, bool), UploadError> {
    let invalid =
        |field: &str, message: String| UploadError::Invalid(FieldError::new(field, message));
    let named = asset::check_name(name).map_err(|m| invalid("name", m))?;
    if bytes.is_empty() {
        return Err(invalid("body", "must hold the asset's bytes".to_owned()));
    }
    let kind = asset::inspect(&bytes).map_err(|m| invalid("body", m))?;
    if kind != named {
        return Err(invalid(
            "name",
            format!(
                "the content is a {} file: the name must end in .{}",
                kind.as_str(),
                kind.extensions().join(" or .")
            ),
        ));
    }
    // A platform caller may name any merchant: it must exist (before anything is stored).
    docbundle_infra::db::merchants::find(&services.db, merchant.as_uuid())
        .await?
        .ok_or(UploadError::MerchantNotFound)?;
    let sha256 = sha256_hex(&bytes);
    let size = bytes.len();
    // The object first, every time (it is content-addressed, so writing it again is harmless
    // and heals a lost one): a record never points at bytes that are not stored.
    services
        .store
        .put(
            &asset::asset_key(merchant, &sha256),
            bytes,
            kind.content_type(),
        )
        .await?;
    let stored = repo::insert(
        &services.db,
        merchant,
        name,
        &sha256,
        kind,
        size,
        created_by,
    )
    .await?;
    Ok(stored)
}

/// The merchant's assets among those `map` names, with their bytes (each checked against its
/// SHA-256). Names of assets that do not exist are simply absent: validation names them.
pub async fn load(
    services: &Services,
    merchant: MerchantId,
    map: &BTreeMap<String, String>,
) -> Result<StoredAssets, DependencyError> {
    let mut stored = StoredAssets::new();
    if map.len() > MAX_ASSETS_PER_CONFIGURATION {
        return Ok(stored);
    }
    let hashes: Vec<String> = map
        .values()
        .filter(|h| asset::is_sha256(h))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for info in repo::find_many(&services.db, merchant, &hashes).await? {
        let key = asset::asset_key(merchant, &info.sha256);
        let bytes = services.store.get(&key).await?.ok_or_else(|| {
            DependencyError::failed("s3", "read asset", format!("{key} is missing"))
        })?;
        if sha256_hex(&bytes) != info.sha256 {
            return Err(DependencyError::failed(
                "s3",
                "read asset",
                format!("{key} does not match its SHA-256"),
            ));
        }
        stored.insert(info.sha256, (info.kind, bytes::Bytes::from(bytes)));
    }
    Ok(stored)
}
