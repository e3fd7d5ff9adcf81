//! Authentication and authorisation for every JWT route.
//!
//! Two modes, chosen by settings: local verification against the issuer's JWKS ([`jwks`]), or
//! RFC 7662 introspection with the answer cached in Redis ([`introspection`]). Either way the
//! result is a [`Principal`], which handlers take as an axum extractor.

pub mod introspection;
pub mod jwks;
mod principal;

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde_json::{Map, Value};

pub use principal::Principal;

use crate::error::ApiError;
use crate::state::AppState;
use docbundle_app::config::{AuthMode, AuthSettings};
use docbundle_domain::Scope;
use docbundle_infra::cache::Cache;

/// The HTTP client for the issuer, built on first use: building it loads the system's root
/// certificates, a cost that a cold start which never calls the issuer should not pay.
#[derive(Clone)]
pub struct IssuerHttp {
    timeout: std::time::Duration,
    client: Arc<std::sync::OnceLock<reqwest::Client>>,
}

impl IssuerHttp {
    pub fn new(timeout: std::time::Duration) -> Self {
        IssuerHttp {
            timeout,
            client: Arc::new(std::sync::OnceLock::new()),
        }
    }

    pub fn client(&self) -> &reqwest::Client {
        self.client.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(self.timeout)
                .connect_timeout(self.timeout)
                .build()
                .unwrap_or_else(|_| reqwest::Client::new())
        })
    }
}

/// Longest bearer token accepted; real access tokens are a few KB at most.
const MAX_TOKEN_LEN: usize = 16 * 1024;

pub struct Authenticator {
    settings: AuthSettings,
    mode: Mode,
}

enum Mode {
    Jwks(jwks::JwksVerifier),
    Introspection(introspection::Introspector),
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("mode", &self.settings.mode)
            .field("issuer", &self.settings.issuer)
            .finish()
    }
}

impl Authenticator {
    pub fn new(settings: AuthSettings, http: IssuerHttp, cache: Arc<Cache>) -> Self {
        let mode = match settings.mode {
            AuthMode::Jwks => Mode::Jwks(jwks::JwksVerifier::new(settings.clone(), http, cache)),
            AuthMode::Introspection => Mode::Introspection(introspection::Introspector::new(
                settings.clone(),
                http,
                cache,
            )),
        };
        Authenticator { settings, mode }
    }

    /// Checks a bearer token and returns who is calling.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, ApiError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(ApiError::unauthorized("Malformed token"));
        }
        let claims = match &self.mode {
            Mode::Jwks(verifier) => verifier.verify(token).await?,
            Mode::Introspection(introspector) => introspector.introspect(token).await?,
        };
        Principal::from_claims(&claims, &self.settings.merchant_claim)
    }
}

/// `Authorization: Bearer <token>` → the token.
fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(ApiError::missing_credentials)?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("Malformed Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("Expected `Authorization: Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::unauthorized(
            "Expected `Authorization: Bearer <token>`",
        ));
    }
    Ok(token.trim())
}

impl<S> FromRequestParts<S> for Principal
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        let state = AppState::from_ref(state);
        let token = bearer_token(parts)?;
        let principal = state.auth.authenticate(token).await?;
        tracing::Span::current().record("subject", principal.subject.as_str());
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

/// SHA-256 of a token, the only form in which a token is ever used as a cache key.
fn token_fingerprint(token: &str) -> String {
    docbundle_domain::digest::sha256_hex(token.as_bytes())
}

type Claims = Map<String, Value>;

/// A scope that a route requires, as a type, so that [`Authorized`] checks it before any
/// other extractor reads the query or the body.
pub trait RequiredScope: Send + Sync {
    const SCOPE: Scope;
}

macro_rules! required_scopes {
    ($($name:ident => $scope:ident),* $(,)?) => {
        /// Marker types naming one scope each, for [`Authorized`].
        pub mod scope {
            $(
                pub struct $name;
                impl super::RequiredScope for $name {
                    const SCOPE: super::Scope = super::Scope::$scope;
                }
            )*
        }
    };
}

required_scopes! {
    BundleRead => BundleRead,
    BundleWrite => BundleWrite,
    BundleErase => BundleErase,
    ConfigRead => ConfigRead,
    ConfigWrite => ConfigWrite,
    MerchantAdmin => MerchantAdmin,
}

/// The caller, known to hold scope `S`: `401` without a valid token, `403` without the scope,
/// answered before the query or the body is even looked at (so a read-only client's malformed
/// write is a `403`, not a `400`). Put it before every other extractor.
pub struct Authorized<S: RequiredScope>(pub Principal, std::marker::PhantomData<S>);

impl<S: RequiredScope> std::ops::Deref for Authorized<S> {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl<S, St> FromRequestParts<St> for Authorized<S>
where
    S: RequiredScope,
    AppState: FromRef<St>,
    St: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        principal.require(S::SCOPE)?;
        Ok(Authorized(principal, std::marker::PhantomData))
    }
}
