//! Infrastructure: every call that leaves the process, each with a timeout and its failure
//! mapped into [`crate::DependencyError`] with context.

pub mod cache;
pub mod db;
pub mod queue;
pub mod secret_settings;
pub mod secrets;
pub mod storage;

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// The AWS region: `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`.
pub fn aws_region(lookup: impl Fn(&str) -> Option<String>) -> String {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .into_iter()
        .find_map(|name| lookup(name).filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "us-east-1".to_owned())
}

/// The AWS SDK's shared configuration: the region, an endpoint override (LocalStack) and the
/// dependency timeout on every call. Reads no network: credentials are resolved on first use.
pub async fn aws_sdk_config(region: &str, endpoint: Option<&str>, timeout: Duration) -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(timeout)
        .operation_timeout(timeout)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .timeout_config(timeouts);
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}
