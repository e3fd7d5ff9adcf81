//! What the TSA and CRL clients share: an HTTP client built on first use (not during a cold
//! start: only the worker signs), failures named for their dependency, and a body read up to a
//! limit.

use std::sync::OnceLock;
use std::time::Duration;

use crate::error::DependencyError;

/// An HTTP client with `timeout` for connecting and for each request, built on first use.
#[derive(Debug, Clone)]
pub(crate) struct LazyClient {
    timeout: Duration,
    client: std::sync::Arc<OnceLock<reqwest::Client>>,
}

impl LazyClient {
    pub(crate) fn new(timeout: Duration) -> Self {
        LazyClient {
            timeout,
            client: Default::default(),
        }
    }

    pub(crate) fn get(
        &self,
        dependency: &'static str,
    ) -> Result<&reqwest::Client, DependencyError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .user_agent(concat!("docbundle/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DependencyError::failed(dependency, "build a client", e))?;
        Ok(self.client.get_or_init(|| client))
    }

    /// `e` as the dependency's failure: a timeout as such, else with its causes.
    pub(crate) fn failure(
        &self,
        dependency: &'static str,
        operation: &'static str,
        e: &reqwest::Error,
    ) -> DependencyError {
        if e.is_timeout() {
            DependencyError::timeout(dependency, operation, self.timeout)
        } else {
            DependencyError::failed(dependency, operation, crate::error::with_causes(e))
        }
    }
}

/// The response's body, or `None` once it would exceed `max` bytes.
pub(crate) async fn capped_body(
    response: &mut reqwest::Response,
    max: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}
