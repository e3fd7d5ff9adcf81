//! The answer of an idempotent operation (a launch, a batch's create and start): new, or the
//! first answer again for a repeated `Idempotency-Key`.

use serde::Serialize;
use serde_json::Value;

use docbundle_infra::db::idempotency::{Idempotency, StoredAnswer};
use docbundle_infra::error::DependencyError;

#[derive(Debug, Clone)]
pub enum Answered<T> {
    /// Done now: the thing made.
    New(Box<T>),
    /// The key was seen before with the same request: the first answer, again.
    Repeated(Value),
}

impl<T: Serialize> Answered<T> {
    /// The answer's body: what was made, as it was when made.
    pub fn body(&self) -> Result<Value, DependencyError> {
        match self {
            Answered::New(made) => serde_json::to_value(made)
                .map_err(|e| DependencyError::failed("answer", "encode the answer", e)),
            Answered::Repeated(body) => Ok(body.clone()),
        }
    }
}

impl<T> Answered<T> {
    /// The key's recorded answer for this request; `None` when the key came with another
    /// request (which the caller refuses as a reused key).
    pub(crate) fn replayed(stored: StoredAnswer, idem: &Idempotency) -> Option<Self> {
        (stored.request_sha256 == idem.request_sha256).then_some(Answered::Repeated(stored.body))
    }
}
