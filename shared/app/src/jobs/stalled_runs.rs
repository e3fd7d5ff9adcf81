//! `stalled_runs`: fails the runs that made no progress for `RUN_STALE_AFTER_SECONDS`, so
//! that no run stays unfinished for ever ([`crate::runs::fail_stalled`]).

use docbundle_infra::error::DependencyError;

use crate::runs::{self, StalledError};
use crate::Services;

pub const NAME: &str = "stalled_runs";

/// Fails the stalled runs; returns how many.
pub async fn run(services: &Services) -> Result<usize, DependencyError> {
    match runs::fail_stalled(services).await {
        Ok(failed) => Ok(failed.runs),
        Err(StalledError::Dependency(e)) => Err(e),
    }
}
