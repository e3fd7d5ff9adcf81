//! Completion webhooks, outbound: which events an endpoint hears, the delivery message the
//! dispatcher acts on, the body sent (Standard Webhooks: `webhook-id`, `webhook-timestamp`,
//! `webhook-signature`, signed as the inbound side verifies), the retry schedule, and which
//! URLs may be registered at all.
//!
//! Secrets are `whsec_…` like the inbound ones and kept the same way: in Vault KV only, the
//! previous secret signing alongside the new one for the rotation's overlap.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::outbox::{Destination, OutboxEvent};
use crate::{MerchantId, RunStatus};

/// Every event.
pub const ALL_EVENTS: &str = "*";

/// What happened to a run that completion webhooks tell: a delivery's `type`. Adding one is
/// a variant here, its [`EndpointEvent`] and the transition in `app::runs` that records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompletionEvent {
    #[serde(rename = "run.completed")]
    RunCompleted,
    #[serde(rename = "run.failed")]
    RunFailed,
    /// Its artefacts were deleted (its retention passed, or an erasure): the manifest and
    /// log entry remain.
    #[serde(rename = "run.expired")]
    RunExpired,
}

impl CompletionEvent {
    /// The name endpoints subscribe to and deliveries carry as `type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CompletionEvent::RunCompleted => "run.completed",
            CompletionEvent::RunFailed => "run.failed",
            CompletionEvent::RunExpired => "run.expired",
        }
    }

    /// The run's status once this happened.
    pub const fn status(self) -> RunStatus {
        match self {
            CompletionEvent::RunCompleted => RunStatus::Completed,
            CompletionEvent::RunFailed => RunStatus::Failed,
            CompletionEvent::RunExpired => RunStatus::Expired,
        }
    }
}

/// An event an endpoint can hear, as its `events` name it (the request's schema says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum EndpointEvent {
    #[serde(rename = "run.completed")]
    RunCompleted,
    #[serde(rename = "run.failed")]
    RunFailed,
    /// A run's artefacts were deleted (retention or erasure); not sent for a batch's runs.
    #[serde(rename = "run.expired")]
    RunExpired,
    /// A batch ended (completed, cancelled or failed): once, with its totals and manifest.
    #[serde(rename = "batch.completed")]
    BatchCompleted,
    /// Every event.
    #[serde(rename = "*")]
    All,
}

impl EndpointEvent {
    pub const fn as_str(self) -> &'static str {
        match self {
            EndpointEvent::RunCompleted => CompletionEvent::RunCompleted.as_str(),
            EndpointEvent::RunFailed => CompletionEvent::RunFailed.as_str(),
            EndpointEvent::RunExpired => CompletionEvent::RunExpired.as_str(),
            EndpointEvent::BatchCompleted => BATCH_COMPLETED,
            EndpointEvent::All => ALL_EVENTS,
        }
    }
}

/// The event a batch's end sends.
pub const BATCH_COMPLETED: &str = "batch.completed";

pub const MAX_URL_LENGTH: usize = 2048;
pub const MAX_DESCRIPTION: usize = 500;
/// Most bytes of a receiver's answer kept on the delivery.
pub const MAX_RESPONSE_KEPT: usize = 1024;

/// Where an endpoint's secrets live in Vault KV.
pub fn vault_path(endpoint_id: Uuid) -> String {
    format!("docbundle/webhook-endpoints/{endpoint_id}")
}

/// The message that makes one attempt of a delivery: stale (and dropped) once the delivery's
/// `dispatch_token` has moved on, so that at most one chain of messages drives a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeliveryMessage {
    pub delivery_id: Uuid,
    pub merchant_id: MerchantId,
    pub token: Uuid,
}

impl OutboxEvent for DeliveryMessage {
    const KIND: &'static str = "webhook.delivery";
    const DESTINATION: Destination = Destination::Webhooks;

    fn run_id(&self) -> Option<Uuid> {
        None
    }
}

/// What a finished run tells its endpoints.
#[derive(Debug, Clone)]
pub struct RunEvent<'a> {
    pub kind: CompletionEvent,
    pub run_id: Uuid,
    pub configuration_id: Uuid,
    pub configuration_version: i32,
    pub seed_hash: &'a str,
    pub bundle_digest: Option<&'a str>,
    pub manifest_key: Option<&'a str>,
    pub error: Option<&'a Value>,
    /// `run.expired`: when, and why (`retention` or `erasure`).
    pub expired: Option<(chrono::DateTime<chrono::Utc>, &'a str)>,
}

impl RunEvent<'_> {
    /// The body every attempt sends, byte for byte. No URL: receivers read the run.
    pub fn body(&self, timestamp: chrono::DateTime<chrono::Utc>) -> String {
        let mut data = json!({
            "runId": self.run_id,
            "status": self.kind.status(),
            "configurationId": self.configuration_id,
            "configurationVersion": self.configuration_version,
            "seedHash": self.seed_hash,
            "bundleDigest": self.bundle_digest,
            "manifestKey": self.manifest_key,
        });
        if let Some(error) = self.error {
            data["error"] = error.clone();
        }
        if let Some((at, by)) = self.expired {
            data["expiredAt"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            data["expiredBy"] = json!(by);
        }
        json!({
            "type": self.kind.as_str(),
            "timestamp": timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": data,
        })
        .to_string()
    }
}

/// How long after attempt `attempts` (1-based, just made and failed) the next one is due, or
/// `None` when the schedule is spent. ±10 % jitter, so that endpoints that failed together
/// are not retried together.
pub fn next_delay(schedule: &[Duration], attempts: u32, jitter: f64) -> Option<Duration> {
    let base = schedule.get(attempts.checked_sub(1)? as usize)?;
    let factor = 0.9 + 0.2 * jitter.clamp(0.0, 1.0);
    Some(base.mul_f64(factor))
}

/// A uniform value in [0, 1) for the jitter.
pub fn jitter() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether a request may go to `ip`. Link-local (which holds the cloud metadata service),
/// unspecified, broadcast, multicast, documentation and other reserved addresses never;
/// private networks never; loopback only when `allow_loopback` (local development).
pub fn address_allowed(ip: IpAddr, allow_loopback: bool) -> Result<(), &'static str> {
    match ip {
        IpAddr::V4(v4) => v4_allowed(v4, allow_loopback),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_allowed(v4, allow_loopback);
            }
            v6_allowed(v6, allow_loopback)
        }
    }
}

fn v4_allowed(ip: Ipv4Addr, allow_loopback: bool) -> Result<(), &'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        return if allow_loopback {
            Ok(())
        } else {
            Err("a loopback address")
        };
    }
    if ip.is_link_local() {
        return Err("a link-local address (where the metadata service lives)");
    }
    if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        return Err("a private address");
    }
    let reserved = ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || a >= 240
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 0 && c == 2)
        || (a == 198 && (b == 18 || b == 19))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113);
    if reserved {
        return Err("a reserved address");
    }
    Ok(())
}

fn v6_allowed(ip: Ipv6Addr, allow_loopback: bool) -> Result<(), &'static str> {
    let segments = ip.segments();
    if ip.is_loopback() {
        return if allow_loopback {
            Ok(())
        } else {
            Err("a loopback address")
        };
    }
    // Only global unicast (2000::/3) reaches the internet; within it, the ranges below hold
    // tunnels and translations that can smuggle an IPv4 address.
    let global = segments[0] & 0xe000 == 0x2000;
    if segments[0] & 0xffc0 == 0xfe80 {
        return Err("a link-local address (where the metadata service lives)");
    }
    // Unique local (fc00::/7), which holds AWS's fd00:ec2::254 metadata address too.
    if segments[0] & 0xfe00 == 0xfc00 {
        return Err("a private address");
    }
    let reserved = !global
        || (segments[0] == 0x2001 && segments[1] == 0x0db8)
        // Teredo (2001::/32) and 6to4 (2002::/16).
        || (segments[0] == 0x2001 && segments[1] == 0)
        || segments[0] == 0x2002;
    if reserved {
        return Err("a reserved address");
    }
    Ok(())
}

/// Checks a URL a merchant registers: absolute `https` (or `http` when `allow_insecure`), a
/// host, no credentials, no fragment; an IP literal must be an allowed address. A host name
/// is checked again on every attempt, once resolved.
pub fn check_url(raw: &str, allow_insecure: bool) -> Result<url::Url, String> {
    if raw.len() > MAX_URL_LENGTH {
        return Err(format!("must be at most {MAX_URL_LENGTH} characters"));
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain spaces or control characters".to_owned());
    }
    let url = url::Url::parse(raw).map_err(|e| format!("is not an absolute URL ({e})"))?;
    // Parsing normalises (percent-encoding, punycode): the stored form must fit too.
    if url.as_str().len() > MAX_URL_LENGTH {
        return Err(format!(
            "must be at most {MAX_URL_LENGTH} characters once normalised"
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_insecure => {}
        "http" => return Err("must be https".to_owned()),
        _ => return Err("must be an https URL".to_owned()),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".to_owned());
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment".to_owned());
    }
    match url.host() {
        None => return Err("must name a host".to_owned()),
        Some(url::Host::Ipv4(ip)) => address_allowed(IpAddr::V4(ip), allow_insecure)
            .map_err(|why| format!("must not point to {why}"))?,
        Some(url::Host::Ipv6(ip)) => address_allowed(IpAddr::V6(ip), allow_insecure)
            .map_err(|why| format!("must not point to {why}"))?,
        Some(url::Host::Domain(_)) => {}
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_private_and_loopback_addresses_are_refused() {
        for (ip, loopback_ok) in [
            ("169.254.169.254", true),
            ("10.0.0.1", true),
            ("172.16.5.4", true),
            ("192.168.1.1", true),
            ("100.64.0.1", true),
            ("0.0.0.0", true),
            ("255.255.255.255", true),
            ("224.0.0.1", true),
            ("127.0.0.1", false),
            ("127.1.2.3", false),
            ("::1", false),
            ("fe80::1", true),
            ("fd00:ec2::254", true),
            ("::ffff:169.254.169.254", true),
            ("::ffff:127.0.0.1", false),
            ("::127.0.0.1", true),
            ("64:ff9b::a9fe:a9fe", true),
            ("2002:a9fe:a9fe::", true),
            ("::", true),
            ("::ffff:0:a9fe:a9fe", true),
            ("64:ff9b:1::a9fe:a9fe", true),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", true),
            ("fec0::1", true),
            ("ff02::1", true),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(address_allowed(ip, false).is_err(), "{ip}");
            assert_eq!(address_allowed(ip, true).is_err(), loopback_ok, "{ip}");
        }
        for ip in ["93.184.215.14", "2606:4700::1111", "8.8.8.8"] {
            assert!(address_allowed(ip.parse().unwrap(), false).is_ok(), "{ip}");
        }
    }

    #[test]
    fn urls_must_be_https_without_credentials_or_forbidden_literals() {
        assert!(check_url("https://hooks.example.com/docbundle?x=1", false).is_ok());
        for (url, why) in [
            ("http://hooks.example.com/", "must be https"),
            ("ftp://hooks.example.com/", "must be an https URL"),
            ("file:///etc/passwd", "must be an https URL"),
            ("https://user:pw@hooks.example.com/", "credentials"),
            ("https://127.0.0.1/", "loopback"),
            ("https://[::1]/", "loopback"),
            ("https://169.254.169.254/latest/meta-data/", "link-local"),
            ("https://10.0.0.1/", "private"),
            ("https://0x7f.1/", "loopback"),
            ("https://2130706433/", "loopback"),
            ("https://hooks.example.com/a b", "spaces"),
            ("https://hooks.example.com/\0", "control"),
            ("/relative", "absolute"),
            ("https://hooks.example.com/#frag", "fragment"),
        ] {
            let error = check_url(url, false).unwrap_err();
            assert!(error.contains(why), "{url}: {error}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LENGTH));
        assert!(check_url(&long, false).is_err());
        // Short as typed, long once percent-encoded.
        let grows = format!("https://a.example/{}", "é".repeat(1000));
        assert!(grows.len() <= MAX_URL_LENGTH);
        assert!(check_url(&grows, false)
            .unwrap_err()
            .contains("once normalised"));
        // Local development: http and loopback, still never metadata or private addresses.
        assert!(check_url("http://127.0.0.1:8081/hook", true).is_ok());
        assert!(check_url("http://169.254.169.254/", true).is_err());
        assert!(check_url("http://10.0.0.1/", true).is_err());
    }

    #[test]
    fn the_schedule_spends_itself_with_jitter() {
        let schedule = [Duration::from_secs(5), Duration::from_secs(300)];
        assert_eq!(next_delay(&schedule, 1, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(
            next_delay(&schedule, 2, 0.0),
            Some(Duration::from_secs(270))
        );
        assert_eq!(next_delay(&schedule, 3, 0.5), None);
        assert_eq!(next_delay(&schedule, 0, 0.5), None);
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }

    #[test]
    fn the_body_names_the_run_and_no_url() {
        let error = json!({"code": "TEMPLATE_ERROR", "message": "boom"});
        let event = RunEvent {
            kind: CompletionEvent::RunFailed,
            run_id: Uuid::nil(),
            configuration_id: Uuid::nil(),
            configuration_version: 2,
            seed_hash: "ab",
            bundle_digest: None,
            manifest_key: None,
            error: Some(&error),
            expired: None,
        };
        let body: Value = serde_json::from_str(&event.body(chrono::DateTime::UNIX_EPOCH)).unwrap();
        assert_eq!(body["type"], "run.failed");
        assert_eq!(body["timestamp"], "1970-01-01T00:00:00.000Z");
        assert_eq!(body["data"]["error"]["code"], "TEMPLATE_ERROR");
        assert_eq!(body["data"]["configurationVersion"], 2);
        assert!(!body.to_string().contains("http"));
        assert!(body["data"].get("expiredAt").is_none());
    }

    #[test]
    fn an_expired_run_says_when_and_why() {
        let event = RunEvent {
            kind: CompletionEvent::RunExpired,
            run_id: Uuid::nil(),
            configuration_id: Uuid::nil(),
            configuration_version: 1,
            seed_hash: "ab",
            bundle_digest: None,
            manifest_key: Some("merchants/m/runs/r/manifest.json"),
            error: None,
            expired: Some((chrono::DateTime::UNIX_EPOCH, "retention")),
        };
        let body: Value = serde_json::from_str(&event.body(chrono::DateTime::UNIX_EPOCH)).unwrap();
        assert_eq!(body["type"], "run.expired");
        assert_eq!(body["data"]["status"], "expired");
        assert_eq!(body["data"]["expiredAt"], "1970-01-01T00:00:00.000Z");
        assert_eq!(body["data"]["expiredBy"], "retention");
    }
}
