//! Local JWT verification against the issuer's JWKS.
//!
//! Keys are found through the issuer's discovery document, kept in memory and in Redis, and
//! fetched again (at most once per [`REFETCH_INTERVAL`]) when a token names an unknown `kid`.
//! Only the algorithm the key itself declares is accepted, which rules out `alg: none` and
//! HS/RS confusion.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

use super::Claims;
use crate::error::{ApiError, DependencyError};
use docbundle_app::config::AuthSettings;
use docbundle_infra::cache::Cache;

const REFETCH_INTERVAL: Duration = Duration::from_secs(30);

struct VerificationKey {
    key: DecodingKey,
    algorithm: Algorithm,
}

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, Arc<VerificationKey>>,
    fetched_at: Option<Instant>,
}

pub struct JwksVerifier {
    settings: AuthSettings,
    http: super::IssuerHttp,
    cache: Arc<Cache>,
    keys: RwLock<KeySet>,
    last_fetch: Mutex<Option<Instant>>,
}

#[derive(Deserialize)]
struct Discovery {
    jwks_uri: String,
}

impl JwksVerifier {
    pub fn new(settings: AuthSettings, http: super::IssuerHttp, cache: Arc<Cache>) -> Self {
        JwksVerifier {
            settings,
            http,
            cache,
            keys: RwLock::new(KeySet::default()),
            last_fetch: Mutex::new(None),
        }
    }

    fn cache_key(&self) -> String {
        format!(
            "docbundle:jwks:{}",
            docbundle_domain::digest::sha256_hex(self.settings.issuer.as_bytes())
        )
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| ApiError::unauthorized("Malformed token"))?;
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| ApiError::unauthorized("Token names no signing key (kid)"))?;
        let key = self.key(kid).await?;
        if header.alg != key.algorithm {
            return Err(ApiError::unauthorized(format!(
                "Algorithm {:?} is not allowed for this key",
                header.alg
            )));
        }
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.leeway = self.settings.leeway.as_secs();
        validation.validate_nbf = true;
        match &self.settings.audience {
            // With an audience configured, a token without `aud` is refused too (validating
            // `aud` only when present would let any token of the issuer in).
            Some(audience) => {
                validation.set_required_spec_claims(&["exp", "iss", "aud"]);
                validation.set_audience(&[audience]);
            }
            None => {
                validation.set_required_spec_claims(&["exp", "iss"]);
                validation.validate_aud = false;
            }
        }
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map_err(|e| ApiError::unauthorized(describe(e.kind())))?;
        Ok(data.claims)
    }

    async fn key(&self, kid: &str) -> Result<Arc<VerificationKey>, ApiError> {
        {
            let keys = self.keys.read().await;
            let fresh = keys
                .fetched_at
                .is_some_and(|at| at.elapsed() < self.settings.jwks_cache_ttl);
            if let Some(key) = keys.keys.get(kid).filter(|_| fresh) {
                return Ok(key.clone());
            }
        }
        self.refresh(kid).await?;
        self.keys
            .read()
            .await
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("Token is signed with an unknown key"))
    }

    /// Loads keys from Redis, or from the issuer when Redis has none (or not the wanted `kid`).
    async fn refresh(&self, kid: &str) -> Result<(), ApiError> {
        let mut last_fetch = self.last_fetch.lock().await;
        // Another request may have refreshed while this one waited.
        if self.keys.read().await.keys.contains_key(kid)
            && last_fetch.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL)
        {
            return Ok(());
        }
        if let Some(set) = self.cached_keys().await {
            if set.find(kid).is_some() {
                self.install(&set).await;
                return Ok(());
            }
        }
        if last_fetch.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL) {
            // Fetched moments ago and the kid was not there: do not let unknown kids hammer the
            // issuer.
            return Ok(());
        }
        let raw = self.fetch().await.map_err(ApiError::unavailable)?;
        *last_fetch = Some(Instant::now());
        let set: JwkSet = serde_json::from_str(&raw)
            .map_err(|e| ApiError::unavailable(format!("issuer JWKS is malformed: {e}")))?;
        self.install(&set).await;
        if let Err(e) = self
            .cache
            .set_with_ttl(&self.cache_key(), &raw, self.settings.jwks_cache_ttl)
            .await
        {
            tracing::warn!(error = %e, "could not cache the JWKS in Redis; continuing without");
        }
        Ok(())
    }

    async fn cached_keys(&self) -> Option<JwkSet> {
        match self.cache.get(&self.cache_key()).await {
            Ok(Some(raw)) => serde_json::from_str(&raw).ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "Redis unavailable for the JWKS cache; continuing without");
                None
            }
        }
    }

    async fn install(&self, set: &JwkSet) {
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let algorithm = match jwk.common.key_algorithm {
                Some(alg) => alg.to_string().parse().ok(),
                None => default_algorithm(&jwk.algorithm),
            };
            let (Some(algorithm), Ok(key)) = (algorithm, DecodingKey::from_jwk(jwk)) else {
                continue;
            };
            // Symmetric keys never belong in a public JWKS.
            if matches!(
                algorithm,
                Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
            ) {
                continue;
            }
            keys.insert(kid, Arc::new(VerificationKey { key, algorithm }));
        }
        *self.keys.write().await = KeySet {
            keys,
            fetched_at: Some(Instant::now()),
        };
    }

    async fn fetch(&self) -> Result<String, DependencyError> {
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.endpoint
        );
        let discovery: Discovery = get(self.http.client(), &discovery_url, "discovery")
            .await
            .and_then(|body| {
                serde_json::from_str(&body)
                    .map_err(|e| DependencyError::failed("issuer", "discovery", e))
            })?;
        let jwks_uri = self.settings.reach(&discovery.jwks_uri);
        get(self.http.client(), &jwks_uri, "jwks").await
    }
}

async fn get(
    http: &reqwest::Client,
    url: &str,
    operation: &str,
) -> Result<String, DependencyError> {
    let response = http
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| DependencyError::failed("issuer", operation, e))?;
    response
        .text()
        .await
        .map_err(|e| DependencyError::failed("issuer", operation, e))
}

fn default_algorithm(params: &AlgorithmParameters) -> Option<Algorithm> {
    match params {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(_) => Some(Algorithm::ES256),
        AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
        AlgorithmParameters::OctetKey(_) => None,
    }
}

fn describe(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::ExpiredSignature => "Token has expired",
        K::ImmatureSignature => "Token is not valid yet",
        K::InvalidIssuer => "Token was issued by another issuer",
        K::InvalidAudience => "Token is meant for another audience",
        K::InvalidSignature => "Token signature is invalid",
        K::InvalidAlgorithm => "Token algorithm is not allowed",
        K::MissingRequiredClaim(_) => "Token lacks a required claim",
        _ => "Token is invalid",
    }
}
