//! RFC 7662 token introspection against the issuer, with each active answer cached in Redis
//! under the token's SHA-256 (never the token) for at most its remaining lifetime.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::{token_fingerprint, Claims};
use crate::error::{ApiError, DependencyError};
use docbundle_app::config::AuthSettings;
use docbundle_infra::cache::Cache;

pub struct Introspector {
    settings: AuthSettings,
    endpoint: String,
    http: super::IssuerHttp,
    cache: Arc<Cache>,
}

/// The Redis key an introspection answer for `token` is cached under.
pub fn cache_key(token: &str) -> String {
    format!("docbundle:introspection:{}", token_fingerprint(token))
}

impl Introspector {
    pub fn new(settings: AuthSettings, http: super::IssuerHttp, cache: Arc<Cache>) -> Self {
        let endpoint = format!(
            "{}/protocol/openid-connect/token/introspect",
            settings.endpoint
        );
        Introspector {
            settings,
            endpoint,
            http,
            cache,
        }
    }

    pub async fn introspect(&self, token: &str) -> Result<Claims, ApiError> {
        let key = cache_key(token);
        match self.cache.get(&key).await {
            Ok(Some(raw)) => {
                if let Ok(Value::Object(claims)) = serde_json::from_str(&raw) {
                    // The cache entry never outlives the token, but re-check in case of skew.
                    if !expired(&claims) {
                        return Ok(claims);
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "introspection cache unavailable; asking the issuer")
            }
        }
        let claims = self
            .ask_issuer(token)
            .await
            .map_err(ApiError::unavailable)?;
        if claims.get("active").and_then(Value::as_bool) != Some(true) {
            return Err(ApiError::unauthorized("Token is not active"));
        }
        if let Some(iss) = claims.get("iss").and_then(Value::as_str) {
            if iss.trim_end_matches('/') != self.settings.issuer {
                return Err(ApiError::unauthorized("Token was issued by another issuer"));
            }
        }
        if let Some(audience) = &self.settings.audience {
            if !audience_matches(claims.get("aud"), audience) {
                return Err(ApiError::unauthorized(
                    "Token is meant for another audience",
                ));
            }
        }
        if expired(&claims) {
            return Err(ApiError::unauthorized("Token has expired"));
        }
        if let Some(ttl) = self.cache_ttl(&claims) {
            let raw = Value::Object(claims.clone()).to_string();
            if let Err(e) = self.cache.set_with_ttl(&key, &raw, ttl).await {
                tracing::warn!(error = %e, "could not cache the introspection answer; continuing");
            }
        }
        Ok(claims)
    }

    /// The token's remaining lifetime, capped by the configured maximum; `None` when it has
    /// less than a second left.
    fn cache_ttl(&self, claims: &Claims) -> Option<Duration> {
        let max = self.settings.introspection_cache_max;
        let remaining = match claims.get("exp").and_then(Value::as_i64) {
            Some(exp) => Duration::from_secs(u64::try_from(exp - now()).ok()?),
            None => max,
        };
        let ttl = remaining.min(max);
        (ttl >= Duration::from_secs(1)).then_some(ttl)
    }

    async fn ask_issuer(&self, token: &str) -> Result<Claims, DependencyError> {
        let client_id = self.settings.client_id.as_deref().unwrap_or_default();
        let response = self
            .http
            .client()
            .post(&self.endpoint)
            .basic_auth(client_id, self.settings.client_secret.as_deref())
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| DependencyError::failed("issuer", "introspect", e))?;
        let body: Value = response
            .json()
            .await
            .map_err(|e| DependencyError::failed("issuer", "introspect", e))?;
        match body {
            Value::Object(claims) => Ok(claims),
            _ => Err(DependencyError::failed(
                "issuer",
                "introspect",
                "answer is not an object",
            )),
        }
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn expired(claims: &Claims) -> bool {
    claims
        .get("exp")
        .and_then(Value::as_i64)
        .is_some_and(|exp| exp <= now())
}

fn audience_matches(aud: Option<&Value>, expected: &str) -> bool {
    match aud {
        Some(Value::String(a)) => a == expected,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(expected)),
        _ => false,
    }
}
