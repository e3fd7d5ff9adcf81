//! Revocation data for long-term signatures: a CRL fetched from a certificate's distribution
//! point. A distribution point that does not answer is a transient fault.

use std::time::Duration;

use crate::error::DependencyError;

/// The largest CRL read.
const MAX_CRL_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Revocation {
    client: reqwest::Client,
    timeout: Duration,
}

impl Revocation {
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("docbundle/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Revocation { client, timeout })
    }

    /// The DER CRL at `url`.
    pub async fn crl(&self, url: &str) -> Result<Vec<u8>, DependencyError> {
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                DependencyError::timeout("crl", "fetch", self.timeout)
            } else {
                DependencyError::failed("crl", "fetch", crate::error::with_causes(&e))
            }
        };
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(failed)?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_CRL_BYTES {
                return Err(DependencyError::failed(
                    "crl",
                    "fetch",
                    format!("larger than {MAX_CRL_BYTES} bytes"),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
