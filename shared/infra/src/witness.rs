//! A witness over HTTP (C2SP `tlog-witness`): `POST <url>/add-checkpoint`. The whole exchange
//! is bounded by the timeout (a witness that trickles its answer byte by byte is cut off at
//! it), and no more than [`MAX_ANSWER_BYTES`] of an answer are read.

use std::time::Duration;

use docbundle_domain::witness::{parse_size, Witness, MAX_ANSWER_BYTES};

use crate::error::DependencyError;
use crate::fetch::{capped_body, LazyClient};

/// What a witness answered to a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `200`: its signature lines (not checked yet).
    Cosigned(Vec<u8>),
    /// `409`: the size of the log it knows, which the request's `old` did not match.
    Conflict(u64),
    /// Anything else: why, in a few words (its status and the start of its text).
    Refused(String),
}

#[derive(Debug, Clone)]
pub struct WitnessClient {
    client: LazyClient,
}

impl WitnessClient {
    pub fn new(timeout: Duration) -> Self {
        WitnessClient {
            client: LazyClient::new(timeout),
        }
    }

    /// Submits an `add-checkpoint` request `body` to `witness`. A witness that does not answer
    /// in time, or whose connection fails, is an error; one that answers is an [`Answer`].
    pub async fn add_checkpoint(
        &self,
        witness: &Witness,
        body: Vec<u8>,
    ) -> Result<Answer, DependencyError> {
        let failed = |e: reqwest::Error| self.client.failure("witness", "add-checkpoint", &e);
        let mut response = self
            .client
            .get("witness")?
            .post(witness.endpoint())
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(failed)?;
        let status = response.status();
        let Some(text) = capped_body(&mut response, MAX_ANSWER_BYTES)
            .await
            .map_err(failed)?
        else {
            return Ok(Answer::Refused(format!(
                "HTTP {status} with an answer over {MAX_ANSWER_BYTES} bytes"
            )));
        };
        Ok(match status.as_u16() {
            200 => Answer::Cosigned(text),
            409 => match parse_size(&text) {
                Some(size) => Answer::Conflict(size),
                None => Answer::Refused("HTTP 409 without a tree size".to_owned()),
            },
            _ => Answer::Refused(format!(
                "HTTP {status}: {}",
                crate::outbound::printable(&String::from_utf8_lossy(&text[..text.len().min(200)]))
                    .replace('\n', " ")
            )),
        })
    }
}
