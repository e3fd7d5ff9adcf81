//! The state every handler receives: settings and every client, built once per cold start.
//! Nothing here touches the network while being built; connections open on first use.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{RenderIsolation, Settings};
use crate::domain::events::Destination;
use crate::http::auth::Authenticator;
use crate::infra::cache::Cache;
use crate::infra::db::DbPool;
use crate::infra::outbound::WebhookSender;
use crate::infra::publisher::Publisher;
use crate::infra::queue::RunQueue;
use crate::infra::secrets::Vault;
use crate::infra::storage::ArtefactStore;
use crate::render::{sandbox::SandboxSettings, Isolation, Renderer};

#[derive(Clone, Debug)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: DbPool,
    pub store: ArtefactStore,
    pub queue: RunQueue,
    /// The completion webhooks' delivery queue.
    pub webhook_queue: RunQueue,
    /// Sends completion webhooks (only to addresses they may reach).
    pub webhook_sender: WebhookSender,
    /// Publishes outbox events to their destination queues.
    pub publisher: Publisher,
    pub vault: Arc<Vault>,
    pub cache: Arc<Cache>,
    pub auth: Arc<Authenticator>,
    /// Renders documents (in rendering processes started on first use).
    pub renderer: Renderer,
}

impl AppState {
    /// Builds every client from `settings`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let timeout = settings.dependency_timeout;
        let db =
            crate::infra::db::pool(&settings.database_url, settings.database_pool_size, timeout)?;

        let aws = crate::infra::AwsConfig::new(
            settings.aws_region.clone(),
            settings.aws_endpoint_url.clone(),
            timeout,
        );
        let store = ArtefactStore::new(aws.clone(), settings.artefact_bucket.clone(), timeout);
        let queue = RunQueue::new(aws.clone(), settings.runs_queue_url.clone(), timeout);
        let webhook_queue = RunQueue::new(aws, settings.webhook_queue_url.clone(), timeout);
        let webhook_sender =
            WebhookSender::new(settings.webhook_allow_insecure, settings.webhook_timeout)
                .map_err(|e| anyhow::anyhow!("cannot build the webhook client: {e}"))?;

        let vault = Arc::new(Vault::new(settings.vault.clone(), timeout));
        let cache = Arc::new(
            Cache::new(settings.redis_url.clone(), settings.redis_timeout)
                .with_ca_file(settings.redis_ca_file.clone()),
        );
        let http = crate::http::auth::IssuerHttp::new(timeout);
        let auth = Arc::new(Authenticator::new(
            settings.auth.clone(),
            http,
            cache.clone(),
        ));

        let isolation = match settings.render_isolation {
            RenderIsolation::InProcess => Isolation::InProcess,
            RenderIsolation::Process => Isolation::Process(SandboxSettings {
                program: match &settings.render_program {
                    Some(program) => program.clone(),
                    None => std::env::current_exe()
                        .map_err(|e| anyhow::anyhow!("cannot locate this binary: {e}"))?,
                },
                processes: settings.render_processes,
            }),
        };
        let renderer = Renderer::new(settings.render_limits, isolation);
        let publisher = Publisher::new([
            (Destination::Runs, queue.clone()),
            (Destination::Webhooks, webhook_queue.clone()),
        ]);

        Ok(AppState {
            renderer,
            settings: Arc::new(settings),
            db,
            store,
            queue,
            webhook_queue,
            webhook_sender,
            publisher,
            vault,
            cache,
            auth,
        })
    }

    /// Reads settings from the environment (and the secret `SECRETS_ARN` names) and builds
    /// the state; the error names what is wrong.
    pub async fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(std::env::vars().collect()).await
    }

    /// Same, from `vars` instead of the process environment.
    pub async fn from_vars(vars: HashMap<String, String>) -> anyhow::Result<Self> {
        let settings = Settings::from_vars_and_secret(vars).await?;
        Self::build(settings).await
    }
}
