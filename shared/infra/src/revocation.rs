//! Revocation data for long-term signatures: a CRL fetched from a certificate's distribution
//! point. A distribution point that does not answer is a transient fault.

use std::time::Duration;

use crate::error::DependencyError;
use crate::fetch::{capped_body, LazyClient};

/// The largest CRL read.
const MAX_CRL_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Revocation {
    client: LazyClient,
}

impl Revocation {
    pub fn new(timeout: Duration) -> Self {
        Revocation {
            client: LazyClient::new(timeout),
        }
    }

    /// The DER CRL at `url`.
    pub async fn crl(&self, url: &str) -> Result<Vec<u8>, DependencyError> {
        let failed = |e: reqwest::Error| self.client.failure("crl", "fetch", &e);
        let mut response = self
            .client
            .get("crl")?
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(failed)?;
        capped_body(&mut response, MAX_CRL_BYTES)
            .await
            .map_err(failed)?
            .ok_or_else(|| {
                DependencyError::failed(
                    "crl",
                    "fetch",
                    format!("larger than {MAX_CRL_BYTES} bytes"),
                )
            })
    }
}
