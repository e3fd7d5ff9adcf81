//! Requests to URLs merchants chose (completion webhooks), made so that a URL cannot reach
//! what it must not: the name is resolved by [`Guard`], every resolved address is checked
//! ([`docbundle_domain::webhooks::address_allowed`]) and the connection goes to exactly those
//! addresses (no second lookup, so no DNS rebinding); an IP literal is checked before any
//! connection; no redirect is followed, no proxy used; the whole exchange is bounded by a
//! timeout, and only the first bytes of the answer are read.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use docbundle_domain::webhooks::{address_allowed, MAX_RESPONSE_KEPT};

/// Resolves names and keeps only the addresses a webhook may go to; none left is an error.
#[derive(Debug, Clone, Copy)]
struct Guard {
    allow_loopback: bool,
}

/// The addresses `host` resolves to, all of them allowed; or why not.
async fn resolve_allowed(host: &str, allow_loopback: bool) -> Result<Vec<SocketAddr>, Refusal> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| Refusal::Unresolved(format!("cannot resolve {host}: {e}")))?
        .collect();
    let refused: Vec<String> = resolved
        .iter()
        .filter_map(|a| {
            address_allowed(a.ip(), allow_loopback)
                .err()
                .map(|why| format!("{} ({why})", a.ip()))
        })
        .collect();
    // One forbidden address is enough to refuse the name: a receiver has no reason to
    // resolve to an internal address too.
    if !refused.is_empty() {
        return Err(Refusal::Forbidden(format!(
            "{host} resolves to an address webhooks may not reach: {}",
            refused.join(", ")
        )));
    }
    if resolved.is_empty() {
        return Err(Refusal::Unresolved(format!(
            "{host} resolves to no address"
        )));
    }
    Ok(resolved)
}

enum Refusal {
    Unresolved(String),
    Forbidden(String),
}

impl Resolve for Guard {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            match resolve_allowed(name.as_str(), allow_loopback).await {
                Ok(resolved) => {
                    let addrs: Addrs = Box::new(resolved.into_iter());
                    Ok(addrs)
                }
                Err(Refusal::Unresolved(why) | Refusal::Forbidden(why)) => Err(why.into()),
            }
        })
    }
}

/// At registration: refuses a host name that resolves now to an address webhooks may not
/// reach. A name that does not resolve (yet) passes: every attempt checks it again.
pub async fn vet_host(url: &reqwest::Url, allow_loopback: bool) -> Result<(), String> {
    let Some(url::Host::Domain(host)) = url.host() else {
        return Ok(());
    };
    let lookup = resolve_allowed(host, allow_loopback);
    match tokio::time::timeout(Duration::from_secs(3), lookup).await {
        Ok(Err(Refusal::Forbidden(why))) => Err(why),
        _ => Ok(()),
    }
}

/// The answer to one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The first [`MAX_RESPONSE_KEPT`] bytes of the body, as text.
    pub body: String,
}

/// Why an attempt got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError(pub String);

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Sends webhook requests; cheap to clone. Its HTTP client is built on first use: building it
/// reads every system root certificate (milliseconds), which only the webhook dispatcher
/// needs, not every API function's cold start.
#[derive(Clone, Debug)]
pub struct WebhookSender {
    client: Arc<std::sync::OnceLock<reqwest::Client>>,
    allow_insecure: bool,
    timeout: Duration,
}

impl WebhookSender {
    /// `allow_insecure`: `http` URLs and loopback addresses (local development only).
    pub fn new(allow_insecure: bool, timeout: Duration) -> Self {
        WebhookSender {
            client: Default::default(),
            allow_insecure,
            timeout,
        }
    }

    fn client(&self) -> Result<&reqwest::Client, SendError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(Guard {
                allow_loopback: self.allow_insecure,
            }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .user_agent(concat!("docbundle-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SendError(format!("cannot build the HTTP client: {e}")))?;
        Ok(self.client.get_or_init(|| client))
    }

    pub fn allows_insecure(&self) -> bool {
        self.allow_insecure
    }

    /// POSTs `body` to `url` with `headers`. Any answer is an [`Answer`] (the caller decides
    /// what counts as delivered); no answer in time, or a refused address, is a [`SendError`].
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: String,
    ) -> Result<Answer, SendError> {
        let url = docbundle_domain::webhooks::check_url(url, self.allow_insecure)
            .map_err(|why| SendError(format!("the URL {why}")))?;
        // A literal address skips the resolver: check it here.
        if let Some(ip) = url
            .host_str()
            .and_then(|h| h.trim_matches(['[', ']']).parse::<IpAddr>().ok())
        {
            address_allowed(ip, self.allow_insecure)
                .map_err(|why| SendError(format!("{ip} is {why}")))?;
        }
        let mut request = self
            .client()?
            .post(url)
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let exchange = async {
            let mut response = request.send().await.map_err(describe)?;
            let status = response.status().as_u16();
            let mut kept = Vec::new();
            while kept.len() < MAX_RESPONSE_KEPT {
                match response.chunk().await {
                    Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
                    // An answer cut short still has its status.
                    Ok(None) | Err(_) => break,
                }
            }
            kept.truncate(MAX_RESPONSE_KEPT);
            Ok(Answer {
                status,
                body: printable(&String::from_utf8_lossy(&kept)),
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(SendError(format!(
                    "no answer within {} s",
                    self.timeout.as_secs()
                )))
            })
    }
}

/// `text` without control characters (PostgreSQL refuses NUL in text; the rest only muddles a
/// listing), newlines and tabs kept.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// The error and its causes, in one line (reqwest's own message hides the resolver's).
fn describe(e: reqwest::Error) -> SendError {
    let mut message = if e.is_timeout() {
        "no answer in time".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    SendError(printable(&message))
}
