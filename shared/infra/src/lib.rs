//! Infrastructure: every call that leaves the process, each with a timeout and its failure
//! mapped into [`error::DependencyError`] with context.

pub mod cache;
pub mod db;
pub mod error;
mod fetch;
pub mod metrics;
pub mod outbound;
pub mod publisher;
pub mod queue;
pub mod revocation;
pub mod secret_settings;
pub mod secrets;
pub mod sqs_batch;
pub mod storage;
pub mod tsa;
pub mod witness;

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};

/// The AWS region: `AWS_REGION`, else `AWS_DEFAULT_REGION`, else `us-east-1`.
pub fn aws_region(lookup: impl Fn(&str) -> Option<String>) -> String {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .into_iter()
        .find_map(|name| lookup(name).filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "us-east-1".to_owned())
}

/// The AWS SDK's shared configuration, loaded on first use: a request that calls no AWS
/// service (a `401`, say) runs none of the SDK's code during a cold start.
#[derive(Clone, Debug)]
pub struct AwsConfig {
    region: String,
    endpoint: Option<String>,
    timeout: Duration,
    loaded: std::sync::Arc<tokio::sync::OnceCell<SdkConfig>>,
}

impl AwsConfig {
    pub fn new(region: impl Into<String>, endpoint: Option<String>, timeout: Duration) -> Self {
        AwsConfig {
            region: region.into(),
            endpoint,
            timeout,
            loaded: Default::default(),
        }
    }

    /// The endpoint override (LocalStack), if any.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    pub async fn get(&self) -> &SdkConfig {
        self.loaded
            .get_or_init(|| aws_sdk_config(&self.region, self.endpoint.as_deref(), self.timeout))
            .await
    }
}

/// The AWS SDK's shared configuration: the region, an endpoint override (LocalStack) and the
/// dependency timeout on every call. Reads no network and no certificate: credentials are
/// resolved, and clients built, on first use.
pub async fn aws_sdk_config(region: &str, endpoint: Option<&str>, timeout: Duration) -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(timeout)
        .operation_timeout(timeout)
        .build();
    // Every call is bounded by the operation timeout already: the SDK's stalled-stream
    // protection (a throughput check polled beside every upload and download) adds work to
    // each of a run's uploads and nothing the timeout does not cover.
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .timeout_config(timeouts)
        .stalled_stream_protection(
            aws_config::stalled_stream_protection::StalledStreamProtectionConfig::disabled(),
        );
    if let Some(endpoint) = endpoint.filter(|e| !e.trim().is_empty()) {
        loader = loader.endpoint_url(endpoint);
    }
    // Lambda hands the function's role credentials over in the environment: the first link of
    // the default chain. Naming it skips building the rest of the chain, whose instance-metadata
    // client would load every system root certificate during a cold start.
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        loader = loader.credentials_provider(
            aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
        );
    }
    // The one endpoint is the settings' (`AWS_ENDPOINT_URL`, an empty one meaning none). Left to
    // itself, each client would read `AWS_ENDPOINT_URL[_<SERVICE>]` again and take an empty
    // value as its endpoint, panicking on the first call.
    loader
        .load()
        .await
        .into_builder()
        .service_config(NoServiceConfig)
        .build()
}

/// Service-specific configuration from the environment or profile files: none.
#[derive(Debug)]
struct NoServiceConfig;

impl LoadServiceConfig for NoServiceConfig {
    fn load_config(&self, _key: ServiceConfigKey<'_>) -> Option<String> {
        None
    }
}
