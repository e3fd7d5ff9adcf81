//! Assets: uploading one (type read from the bytes, stored once per merchant under its
//! SHA-256) and loading the ones a configuration names, checked against their hash.

use std::collections::{BTreeMap, BTreeSet};

use crate::domain::asset::{self, AssetInfo, MAX_ASSETS_PER_CONFIGURATION};
use crate::domain::configuration::StoredAssets;
use crate::domain::digest::sha256_hex;
use crate::domain::MerchantId;
use crate::error::{ApiError, DependencyError, FieldError};
use crate::infra::db::assets as repo;
use crate::AppState;

/// Stores `bytes` as the merchant's asset `name`; `(asset, true)` when new, the existing
/// record and `false` when the merchant has these bytes already (under any name).
pub async fn upload(
    state: &AppState,
    merchant: MerchantId,
    name: &str,
    bytes: Vec<u8>,
    created_by: &str,
) -> Result<(AssetInfo, bool), ApiError> {
    let invalid = |field: &str, message: String| {
        ApiError::validation(
            "The asset is not valid",
            vec![FieldError::new(field, message)],
        )
    };
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
    crate::infra::db::merchants::find(&state.db, merchant.as_uuid())
        .await?
        .ok_or_else(|| ApiError::not_found("Merchant not found"))?;
    let sha256 = sha256_hex(&bytes);
    let size = bytes.len();
    // The object first, every time (it is content-addressed, so writing it again is harmless
    // and heals a lost one): a record never points at bytes that are not stored.
    state
        .store
        .put(
            &asset::asset_key(merchant, &sha256),
            bytes,
            kind.content_type(),
        )
        .await?;
    let stored = repo::insert(&state.db, merchant, name, &sha256, kind, size, created_by).await?;
    Ok(stored)
}

/// The merchant's assets among those `map` names, with their bytes (each checked against its
/// SHA-256). Names of assets that do not exist are simply absent: validation names them.
pub async fn load(
    state: &AppState,
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
    for info in repo::find_many(&state.db, merchant, &hashes).await? {
        let key = asset::asset_key(merchant, &info.sha256);
        let bytes = state.store.get(&key).await?.ok_or_else(|| {
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
