//! A merchant's document-signing key, for an external CA (`DOCUMENT_SIGNING_CA=external`, or to
//! replace what Vault's PKI engine issued): the CSR its key makes, and the chain imported back.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use docbundle::domain::MerchantId;
use docbundle::error::ApiError;
use docbundle::http::auth::{scope, Authorized};
use docbundle::http::openapi::ErrorEnvelope;
use docbundle::http::{ApiJson, ApiPath};
use docbundle::infra::db::merchants as repo;
use docbundle::AppState;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A merchant's document-signing key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningCertificate {
    /// The key in Vault transit (it never leaves Vault).
    pub key_name: String,
    pub key_version: u32,
    /// Its certificate chain (PEM), the merchant's certificate first; empty until one is
    /// issued or imported.
    pub chain: Vec<String>,
    /// A certificate signing request for the key (PEM), signed by the key inside Vault.
    pub csr: String,
}

/// The longest chain imported (a few certificates are a few kilobytes).
const MAX_CHAIN_CHARS: usize = 65536;

/// `PUT …/signing-certificate`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportChain {
    /// PEM certificates: the merchant's (for this key) first, then its issuers.
    #[schema(max_length = 65536)]
    pub chain: String,
}

async fn known(state: &AppState, id: Uuid) -> Result<MerchantId, ApiError> {
    match repo::find(&state.db, id).await? {
        Some(_) => Ok(MerchantId::from(id)),
        None => Err(ApiError::not_found(format!("No merchant {id}"))),
    }
}

fn answer(key: docbundle::infra::secrets::DocumentKey, csr: String) -> Response {
    use docbundle::infra::secrets::pem_encode;
    Json(SigningCertificate {
        chain: key
            .chain
            .iter()
            .map(|der| pem_encode(der, "CERTIFICATE"))
            .collect(),
        key_name: key.name,
        key_version: key.version,
        csr,
    })
    .into_response()
}

/// A merchant's document-signing key: its chain and a CSR (the key is created if it has none).
#[utoipa::path(get, path = "/api/v1/merchants/{merchantId}/signing-certificate", operation_id = "getSigningCertificate", tag = "merchants",
    params(("merchantId" = Uuid, Path)),
    responses(
        (status = 200, description = "The key, its chain and a CSR", body = SigningCertificate),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["merchant.admin"]), ("bearer" = [])))]
pub(crate) async fn read(
    State(state): State<AppState>,
    _admin: Authorized<scope::MerchantAdmin>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let merchant = known(&state, id).await?;
    let status = docbundle::app::signing::key_status(&state, merchant).await?;
    Ok(answer(status.key, status.csr))
}

/// Import the chain an external CA issued for the key's CSR; `422` when its first
/// certificate is not for the key.
#[utoipa::path(put, path = "/api/v1/merchants/{merchantId}/signing-certificate", operation_id = "importSigningCertificate", tag = "merchants",
    params(("merchantId" = Uuid, Path)), request_body = ImportChain,
    responses(
        (status = 200, description = "The key with its new chain", body = SigningCertificate),
        (status = "4XX", description = "The error envelope", body = ErrorEnvelope),
    ),
    security(("oauth2" = ["merchant.admin"]), ("bearer" = [])))]
pub(crate) async fn import(
    State(state): State<AppState>,
    _admin: Authorized<scope::MerchantAdmin>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<ImportChain>,
) -> Result<Response, ApiError> {
    if body.chain.chars().count() > MAX_CHAIN_CHARS {
        return Err(ApiError::validation(
            "The certificate chain is not valid",
            vec![docbundle::error::FieldError::new(
                "chain",
                format!("must be at most {MAX_CHAIN_CHARS} characters"),
            )],
        ));
    }
    let merchant = known(&state, id).await?;
    let key = docbundle::app::signing::import_chain(&state, merchant, &body.chain).await?;
    let csr = state.vault.document_key_csr(merchant).await?;
    Ok(answer(key, csr))
}
