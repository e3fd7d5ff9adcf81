//! `checkpoints`: integrates the log entries completions queued, then signs a
//! transparency-log checkpoint for every merchant whose log grew since its last one
//! ([`crate::transparency::issue_checkpoints`]).

use docbundle_infra::error::DependencyError;

use crate::Services;

pub const NAME: &str = "checkpoints";

/// Signs the due checkpoints; returns how many.
pub async fn run(services: &Services) -> Result<usize, DependencyError> {
    crate::transparency::issue_checkpoints(services).await
}
