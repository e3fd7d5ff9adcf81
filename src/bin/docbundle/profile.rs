//! Profiles and tokens: `config.toml` under the user's config directory (or
//! `DOCBUNDLE_CONFIG_DIR`) names, per profile, the API, the issuer's token endpoint and a
//! client's credentials; `tokens/<profile>.json` caches the last access token until shortly
//! before it expires. Both are written readable by the user only.
//!
//! `DOCBUNDLE_TOKEN` (a bearer token used as is) and `DOCBUNDLE_API` need no profile at all.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::api::Client;

/// Renew a cached token this long before it expires.
const RENEW_BEFORE: i64 = 30;

#[derive(Args)]
pub struct LoginArgs {
    /// The OpenID Connect issuer (its `/.well-known/openid-configuration` names the token
    /// endpoint).
    #[arg(long)]
    issuer: String,
    #[arg(long)]
    client_id: String,
    /// The client's secret (or `DOCBUNDLE_CLIENT_SECRET`, which keeps it out of the process
    /// list).
    #[arg(long, env = "DOCBUNDLE_CLIENT_SECRET", hide_env_values = true)]
    client_secret: String,
    // The API's URL is the global `--api` (required here).
}

/// Which profile, and an API URL over its own.
pub struct Target {
    pub profile: String,
    pub api: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    pub api: String,
    pub issuer: String,
    pub token_endpoint: String,
    pub client_id: String,
    pub client_secret: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CachedToken {
    access_token: String,
    /// Unix seconds.
    expires_at: i64,
}

pub fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCBUNDLE_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    dirs::config_dir()
        .map(|d| d.join("docbundle"))
        .context("no config directory: set DOCBUNDLE_CONFIG_DIR")
}

fn read_config(dir: &Path) -> anyhow::Result<ConfigFile> {
    let path = dir.join("config.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("{} is invalid", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes `bytes` to `path` (mode 0600), through a temporary file renamed into place.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("no parent directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// A URL as the user typed it, without its trailing slashes.
fn trimmed(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

fn http() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("docbundle-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client")
}

pub async fn login(target: &Target, args: LoginArgs) -> anyhow::Result<()> {
    let Some(api) = &target.api else {
        bail!("login needs the API's URL: --api URL (or DOCBUNDLE_API)");
    };
    let http = http()?;
    let issuer = trimmed(&args.issuer);
    let discovery = format!("{issuer}/.well-known/openid-configuration");
    let response = http
        .get(&discovery)
        .send()
        .await
        .with_context(|| format!("cannot reach the issuer at {discovery}"))?;
    if !response.status().is_success() {
        bail!("the issuer answered {} at {discovery}", response.status());
    }
    let document: serde_json::Value = response
        .json()
        .await
        .with_context(|| format!("{discovery} is not a discovery document"))?;
    let token_endpoint = document["token_endpoint"]
        .as_str()
        .with_context(|| format!("{discovery} names no token_endpoint"))?
        .to_owned();
    let profile = Profile {
        api: trimmed(api),
        issuer,
        token_endpoint,
        client_id: args.client_id,
        client_secret: args.client_secret,
    };
    let token = fetch_token(&http, &profile).await?;
    let dir = config_dir()?;
    let mut config = read_config(&dir)?;
    config
        .profiles
        .insert(target.profile.clone(), profile.clone());
    write_private(
        &dir.join("config.toml"),
        toml::to_string(&config)?.as_bytes(),
    )?;
    store_token(&dir, &target.profile, &token)?;
    println!(
        "logged in as `{}` (profile `{}`; API {})",
        profile.client_id, target.profile, profile.api
    );
    Ok(())
}

pub fn list() -> anyhow::Result<()> {
    let config = read_config(&config_dir()?)?;
    if config.profiles.is_empty() {
        println!("no profiles: `docbundle login` saves one");
    }
    for (name, profile) in &config.profiles {
        println!("{name}\t{}\t{}", profile.client_id, profile.api);
    }
    Ok(())
}

async fn fetch_token(http: &reqwest::Client, profile: &Profile) -> anyhow::Result<CachedToken> {
    let response = http
        .post(&profile.token_endpoint)
        .basic_auth(&profile.client_id, Some(&profile.client_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .with_context(|| format!("cannot reach the issuer at {}", profile.token_endpoint))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        let reason = body["error_description"]
            .as_str()
            .or(body["error"].as_str())
            .unwrap_or("no reason given");
        bail!(
            "the issuer refused client `{}`: {reason} (HTTP {status})",
            profile.client_id
        );
    }
    let access_token = body["access_token"]
        .as_str()
        .context("the issuer's answer has no access_token")?
        .to_owned();
    let expires_in = body["expires_in"].as_i64().unwrap_or(300).clamp(0, 86_400);
    Ok(CachedToken {
        access_token,
        expires_at: chrono::Utc::now().timestamp() + expires_in,
    })
}

fn token_path(dir: &Path, profile: &str) -> PathBuf {
    dir.join("tokens").join(format!("{profile}.json"))
}

fn store_token(dir: &Path, profile: &str, token: &CachedToken) -> anyhow::Result<()> {
    write_private(&token_path(dir, profile), &serde_json::to_vec(token)?)
}

/// Where a client's token comes from.
#[derive(Clone)]
pub enum Credentials {
    /// `DOCBUNDLE_TOKEN`: used as is.
    Fixed(String),
    /// A profile's client: cached, renewed before it expires or when the API refuses it.
    Profile {
        dir: PathBuf,
        name: String,
        profile: Box<Profile>,
    },
    /// No credentials (the API answers 401 where it needs them).
    None,
}

impl Credentials {
    /// A bearer token; `renew` skips the cache.
    pub async fn token(
        &self,
        http: &reqwest::Client,
        renew: bool,
    ) -> anyhow::Result<Option<String>> {
        match self {
            Credentials::Fixed(token) => Ok(Some(token.clone())),
            Credentials::None => Ok(None),
            Credentials::Profile { dir, name, profile } => {
                let path = token_path(dir, name);
                if !renew {
                    let cached = std::fs::read(&path)
                        .ok()
                        .and_then(|bytes| serde_json::from_slice::<CachedToken>(&bytes).ok());
                    if let Some(cached) = cached {
                        if cached.expires_at - RENEW_BEFORE > chrono::Utc::now().timestamp() {
                            return Ok(Some(cached.access_token));
                        }
                    }
                }
                let token = fetch_token(http, profile).await?;
                store_token(dir, name, &token)?;
                Ok(Some(token.access_token))
            }
        }
    }

    /// Whether a refused token is worth renewing once.
    pub fn renewable(&self) -> bool {
        matches!(self, Credentials::Profile { .. })
    }
}

impl Target {
    /// A client of the API this target names.
    pub fn client(&self) -> anyhow::Result<Client> {
        let dir = config_dir()?;
        let config = read_config(&dir)?;
        let profile = config.profiles.get(&self.profile).cloned();
        let fixed = std::env::var("DOCBUNDLE_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty());
        let api = match (&self.api, &profile) {
            (Some(api), _) => trimmed(api),
            (None, Some(profile)) => profile.api.clone(),
            (None, None) => bail!(
                "no profile `{}`: run `docbundle login --issuer … --client-id … --client-secret … --api …`, \
                 or set DOCBUNDLE_API (and DOCBUNDLE_TOKEN)",
                self.profile
            ),
        };
        let credentials = match (fixed, profile) {
            (Some(token), _) => Credentials::Fixed(token.trim().to_owned()),
            (None, Some(profile)) => Credentials::Profile {
                dir,
                name: self.profile.clone(),
                profile: Box::new(profile),
            },
            (None, None) => Credentials::None,
        };
        Client::new(&api, credentials, http()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_round_trips_through_the_config_file() {
        let mut config = ConfigFile::default();
        let profile = Profile {
            api: "https://docs.example.com".into(),
            issuer: "https://id.example.com/realms/x".into(),
            token_endpoint: "https://id.example.com/realms/x/token".into(),
            client_id: "ci".into(),
            client_secret: "s3cret \"quoted\"".into(),
        };
        config.profiles.insert("prod".into(), profile.clone());
        let text = toml::to_string(&config).unwrap();
        let back: ConfigFile = toml::from_str(&text).unwrap();
        assert_eq!(back.profiles["prod"], profile);
    }

    #[test]
    fn urls_lose_their_trailing_slashes() {
        assert_eq!(trimmed(" http://h:3000/ "), "http://h:3000");
    }
}
