//! The services every use-case works with: settings and every client, built once per cold
//! start. Nothing here touches the network while being built; connections open on first use.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{RenderIsolation, Settings};
use docbundle_domain::outbox::Destination;
use docbundle_infra::cache::Cache;
use docbundle_infra::db::DbPool;
use docbundle_infra::outbound::WebhookSender;
use docbundle_infra::publisher::Publisher;
use docbundle_infra::queue::Queue;
use docbundle_infra::revocation::Revocation;
use docbundle_infra::secrets::Vault;
use docbundle_infra::storage::ArtefactStore;
use docbundle_infra::tsa::TimeStamper;
use docbundle_infra::witness::WitnessClient;
use docbundle_render::{sandbox::SandboxSettings, Isolation, Renderer};

#[derive(Clone, Debug)]
pub struct Services {
    pub settings: Arc<Settings>,
    pub db: DbPool,
    pub store: ArtefactStore,
    /// The log bucket: each merchant's log as tlog-tiles ([`crate::transparency::tiles`]).
    pub log_store: ArtefactStore,
    pub queue: Queue,
    /// The batch queue (fan-out and batch runs).
    pub batch_queue: Queue,
    /// The completion webhooks' delivery queue.
    pub webhook_queue: Queue,
    /// Sends completion webhooks (only to addresses they may reach).
    pub webhook_sender: WebhookSender,
    /// Publishes outbox events to their destination queues.
    pub publisher: Publisher,
    pub vault: Arc<Vault>,
    pub cache: Arc<Cache>,
    /// Renders documents (in rendering processes started on first use).
    pub renderer: Renderer,
    /// The merchants' document-signing keys and chains, as last read from Vault.
    pub signing_keys: Arc<crate::signing::SigningKeys>,
    /// The RFC 3161 time-stamping authority, when `TSA_URL` is set.
    pub timestamper: Option<TimeStamper>,
    /// Submits checkpoints to the configured witnesses.
    pub witness_client: WitnessClient,
    /// Fetches the CRLs a `B-LT` signature embeds.
    pub revocation: Revocation,
    /// Interactive runs first, batch runs behind them, in this process.
    pub lanes: Arc<crate::lanes::Lanes>,
    /// The configuration versions runs are rendered from, kept (they never change).
    pub versions: Arc<crate::versions::Versions>,
}

impl Services {
    /// Builds every client from `settings`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let timeout = settings.dependency_timeout;
        // The first request of a cold start would wait for its connection (TCP, TLS, SCRAM):
        // it is opened now, while the rest is built and the first event is fetched and its
        // caller authenticated.
        let db = docbundle_infra::db::warmed_pool(
            &settings.database_url,
            settings.database_pool_size,
            settings.database_timeout,
        )?;

        let aws = docbundle_infra::AwsConfig::new(
            settings.aws_region.clone(),
            settings.aws_endpoint_url.clone(),
            timeout,
        );
        let store = ArtefactStore::new(aws.clone(), settings.artefact_bucket.clone(), timeout);
        let log_store = ArtefactStore::new(aws.clone(), settings.log_bucket.clone(), timeout);
        let queue = Queue::new(aws.clone(), settings.runs_queue_url.clone(), timeout);
        let batch_queue = Queue::new(aws.clone(), settings.batch_queue_url.clone(), timeout);
        let webhook_queue = Queue::new(aws, settings.webhook_queue_url.clone(), timeout);
        let webhook_sender =
            WebhookSender::new(settings.webhook_allow_insecure, settings.webhook_timeout);

        let vault = Arc::new(Vault::new(settings.vault.clone(), timeout));
        let cache = Arc::new(
            Cache::new(settings.redis_url.clone(), settings.redis_timeout)
                .with_ca_file(settings.redis_ca_file.clone()),
        );

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
            (Destination::Batches, batch_queue.clone()),
        ]);

        // Built now, connecting on first use (only the worker signs).
        let timestamper = settings
            .tsa
            .as_ref()
            .map(|tsa| TimeStamper::new(tsa.url.clone(), tsa.timeout));

        Ok(Services {
            renderer,
            signing_keys: Default::default(),
            timestamper,
            witness_client: WitnessClient::new(settings.witnesses.timeout),
            revocation: Revocation::new(timeout),
            lanes: Arc::new(crate::lanes::Lanes::new(
                settings.batch_limits.run_concurrency,
            )),
            versions: Arc::default(),
            settings: Arc::new(settings),
            db,
            store,
            log_store,
            queue,
            batch_queue,
            webhook_queue,
            webhook_sender,
            publisher,
            vault,
            cache,
        })
    }

    /// Reads settings from the environment (and the secret `SECRETS_ARN` names) and builds
    /// the services; the error names what is wrong.
    pub async fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(std::env::vars().collect()).await
    }

    /// Same, from `vars` instead of the process environment.
    pub async fn from_vars(vars: HashMap<String, String>) -> anyhow::Result<Self> {
        let settings = Settings::from_vars_and_secret(vars).await?;
        Self::build(settings).await
    }
}
