//! An RFC 3161 time-stamping authority over HTTP (`TSA_URL`): a token for a SHA-256 digest.
//! A TSA that does not answer (refused connection, timeout, 5xx) is a transient fault; one
//! that answers and refuses, or answers with something that is not a time-stamp for what was
//! asked, is not.

use std::time::Duration;

use docbundle_pades::tsp::{self, Stamp, TspError};

use crate::error::DependencyError;
use crate::fetch::{capped_body, LazyClient};

/// The largest answer read (a token with its TSA's chain is a few kilobytes).
const MAX_ANSWER_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StampError {
    #[error(transparent)]
    Unavailable(#[from] DependencyError),
    #[error("{0}")]
    Refused(String),
}

#[derive(Debug, Clone)]
pub struct TimeStamper {
    client: LazyClient,
    url: String,
}

impl TimeStamper {
    pub fn new(url: String, timeout: Duration) -> Self {
        TimeStamper {
            client: LazyClient::new(timeout),
            url,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A granted token for `digest`, checked against the request.
    pub async fn stamp(&self, digest: &[u8; 32]) -> Result<Stamp, StampError> {
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce)
            .map_err(|e| DependencyError::failed("tsa", "make a nonce", e))?;
        let unavailable = |e: reqwest::Error| self.client.failure("tsa", "time-stamp", &e);
        let mut response = self
            .client
            .get("tsa")?
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, tsp::REQUEST_TYPE)
            .header(reqwest::header::ACCEPT, tsp::REPLY_TYPE)
            .body(tsp::request(digest, nonce))
            .send()
            .await
            .map_err(unavailable)?;
        let status = response.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(
                DependencyError::failed("tsa", "time-stamp", format!("HTTP {status}")).into(),
            );
        }
        if !status.is_success() {
            return Err(StampError::Refused(format!(
                "the time-stamping authority answered HTTP {status}"
            )));
        }
        let answer = capped_body(&mut response, MAX_ANSWER_BYTES)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                StampError::Refused(format!(
                    "the time-stamping authority's answer exceeds {MAX_ANSWER_BYTES} bytes"
                ))
            })?;
        tsp::token(&answer, digest, nonce).map_err(|e: TspError| StampError::Refused(e.to_string()))
    }
}
