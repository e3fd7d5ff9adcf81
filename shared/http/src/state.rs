//! The state every handler receives: the services every use-case works with, and the
//! authenticator that turns a bearer token into a caller. Built once per cold start without
//! waiting on the network: the database's and the cache's first connections are opened
//! meanwhile, in the background; the issuer's HTTP client is built only when a token's keys
//! or introspection answer are not in the cache.

use std::collections::HashMap;
use std::sync::Arc;

use docbundle_app::config::Settings;
use docbundle_app::Services;

use crate::auth::{Authenticator, IssuerHttp};

#[derive(Clone, Debug)]
pub struct AppState {
    pub services: Services,
    pub auth: Arc<Authenticator>,
}

/// Handlers read the services as fields of the state (`state.db`, `state.vault`, …), and a
/// `&AppState` is a `&Services` wherever a use-case asks for one.
impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.services
    }
}

impl AppState {
    /// Builds every client from `settings`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let services = Services::build(settings).await?;
        Ok(Self::around(services))
    }

    /// The state for `services`, with an authenticator over their settings and cache.
    pub fn around(services: Services) -> Self {
        // Built on first use: the issuer's keys and introspection answers are usually in the
        // cache, and building the client loads every system root certificate (milliseconds of
        // CPU that a cold start's first request would share its vCPU with).
        let http = IssuerHttp::new(services.settings.dependency_timeout);
        // Every authenticated request reads the cache first (the issuer's keys, introspection
        // answers, the rate limit): its connection is opened now, like the database's.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let cache = services.cache.clone();
            runtime.spawn(async move { cache.warm().await });
        }
        let auth = Arc::new(Authenticator::new(
            services.settings.auth.clone(),
            http,
            services.cache.clone(),
        ));
        AppState { services, auth }
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
