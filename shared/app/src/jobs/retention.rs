//! `retention`: expires the runs whose retention passed and deletes what they no longer keep
//! (artefacts, seeds, batches' seeds files), never what a legal hold keeps
//! ([`crate::retention::pass`]).

use docbundle_infra::error::DependencyError;

use crate::retention::RetentionReport;
use crate::Services;

pub const NAME: &str = "retention";

pub async fn run(services: &Services) -> Result<RetentionReport, DependencyError> {
    crate::retention::pass(services).await
}
