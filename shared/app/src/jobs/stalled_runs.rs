//! `stalled_runs`: fails the runs that made no progress for `RUN_STALE_AFTER_SECONDS`, so
//! that no run stays unfinished for ever ([`crate::runs::expire_stalled`]).

use docbundle_infra::error::DependencyError;

use crate::runs::{self, ExpireError};
use crate::Services;

pub const NAME: &str = "stalled_runs";

/// Fails the stalled runs; returns how many.
pub async fn run(services: &Services) -> Result<usize, DependencyError> {
    match runs::expire_stalled(services).await {
        Ok(expired) => Ok(expired.runs),
        Err(ExpireError::Dependency(e)) => Err(e),
    }
}
