//! `erasures`: executes the pending erasures ([`crate::erasures::pass`]): each expires and
//! deletes what it matches, but what a legal hold keeps, and appends its signed receipt to the
//! merchant's transparency log.

use docbundle_infra::error::DependencyError;

use crate::erasures::ErasuresReport;
use crate::Services;

pub const NAME: &str = "erasures";

pub async fn run(services: &Services) -> Result<ErasuresReport, DependencyError> {
    crate::erasures::pass(services).await
}
