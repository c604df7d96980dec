//! Webhooks: telling other systems what happened in the registry.
//!
//! Events are written to the outbox in the transaction of the change they
//! report (see `berth_meta::events`); nothing on a push or pull path waits
//! for a receiver. The delivery worker ([`crate::worker::WebhookDelivery`],
//! one replica at a time under a lease) fans events out to the webhooks
//! that subscribe to them, POSTs each delivery with its signature
//! ([`sign`]), in its webhook's format ([`payload`]), to addresses the
//! operator allows ([`guard`]), and retries failures with exponential
//! backoff and jitter, one delivery at a time per webhook and repository
//! (see `deliver`).
//!
//! A namespace's webhooks hear its events and are managed by its admins;
//! site-wide webhooks hear every event and are managed by site admins
//! (the server checks who may; these services check what is valid).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_meta::events::EventKind;
use berth_meta::webhooks::{NewWebhook, WebhookScope};
use berth_oci::Namespace;
use ipnet::IpNet;
use serde::Serialize;

use crate::{Caller, Error, Registry, Result};

pub(crate) mod alerts;
mod deliver;
pub mod guard;
pub mod payload;
pub mod sign;

pub use berth_meta::webhooks::{Backlog, Delivery, Webhook};
pub use deliver::Round;
pub use payload::Format;

/// Webhook delivery settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Networks deliveries may reach although they are private, loopback
    /// or link-local (see [`guard`]).
    pub allow_networks: Vec<IpNet>,
    /// Longest a delivery may take, connection included.
    pub timeout: Duration,
    /// Attempts per delivery before it is given up.
    pub max_attempts: u32,
    /// Wait after the first failed attempt (doubling after each).
    pub retry_base: Duration,
    /// Longest wait between attempts.
    pub retry_max: Duration,
    /// A webhook is disabled after this many failed attempts in a row
    /// (0: never).
    pub disable_after: u32,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Finished deliveries and dispatched events are kept this long.
    pub history: Duration,
    /// The registry's external URL (CloudEvents `source`, target URLs).
    pub external_url: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allow_networks: Vec::new(),
            timeout: Duration::from_secs(10),
            max_attempts: 12,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(3600),
            disable_after: 50,
            concurrency: 8,
            history: Duration::from_secs(30 * 24 * 3600),
            external_url: None,
        }
    }
}

/// The largest response body read from a receiver (the rest is dropped).
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024;

/// What the registry keeps for webhooks.
pub(crate) struct Hub {
    settings: Settings,
    client: std::result::Result<reqwest::Client, String>,
    /// Whether some enabled webhook subscribes to pulls (refreshed by the
    /// delivery worker; pulls publish nothing otherwise).
    wants_pulls: AtomicBool,
    last_prune: Mutex<Option<Instant>>,
    last_gauges: Mutex<Option<Instant>>,
    /// The delivery lease's expiry (Unix ms), while this process holds it.
    lease_until: AtomicI64,
    /// Quota alerts waiting to be published.
    alerts: Arc<alerts::Alerts>,
}

impl Hub {
    pub(crate) fn new(settings: Settings) -> Hub {
        let client = reqwest::Client::builder()
            .user_agent(concat!("berth-webhooks/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .pool_max_idle_per_host(2)
            .dns_resolver(Arc::new(guard::Resolver {
                allow: Arc::new(settings.allow_networks.clone()),
            }))
            .build()
            .map_err(|e| format!("cannot build the webhook HTTP client: {e}"));
        Hub {
            settings,
            client,
            wants_pulls: AtomicBool::new(false),
            last_prune: Mutex::new(None),
            last_gauges: Mutex::new(None),
            lease_until: AtomicI64::new(0),
            alerts: Arc::default(),
        }
    }
}

/// What creating a webhook needs.
#[derive(Debug, Clone, Default)]
pub struct WebhookSpec {
    /// The namespace; `None`: site-wide.
    pub namespace: Option<Namespace>,
    /// `http(s)://` URL.
    pub url: String,
    /// `cloudevents` (default) or `distribution`.
    pub format: Option<String>,
    /// Event kinds (default: every kind the format can say, pulls excepted).
    pub events: Option<Vec<String>>,
    /// The HMAC key (default: a random one); at least 16 characters.
    pub secret: Option<String>,
    /// A note.
    pub description: Option<String>,
}

/// A created webhook and its secret, shown this once.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedWebhook {
    /// The webhook.
    #[serde(flatten)]
    pub webhook: Webhook,
    /// The signing secret: not shown again.
    pub secret: String,
}

/// Splits `http(s)://host[:port]/...` into its host, or says what is wrong.
fn url_host(url: &str) -> Result<String> {
    let bad = |why: &str| Error::InvalidParameter(format!("webhook url {url:?} {why}"));
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| bad("must start with http:// or https://"))?;
    if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("is too long or contains spaces"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(bad(
            "must not contain credentials (use the signature to authenticate)",
        ));
    }
    let host = if authority.starts_with('[') {
        authority
            .split_once(']')
            .map(|(h, _)| format!("{h}]"))
            .ok_or_else(|| bad("has an unterminated IPv6 address"))?
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(h, _)| h)
            .to_owned()
    };
    if host.is_empty() || host == "[]" {
        return Err(bad("has no host"));
    }
    Ok(host)
}

fn default_kinds(format: Format) -> Vec<String> {
    EventKind::ALL
        .iter()
        .copied()
        .filter(|k| !matches!(k, EventKind::Pulled | EventKind::Ping) && format.supports(*k))
        .map(|k| k.as_str().to_owned())
        .collect()
}

fn kinds(format: Format, given: Option<Vec<String>>) -> Result<Vec<String>> {
    let Some(given) = given else {
        let mut all = default_kinds(format);
        all.sort();
        return Ok(all);
    };
    let mut out: Vec<String> = Vec::new();
    for k in given.iter().flat_map(|k| k.split(',')).map(str::trim) {
        if k.is_empty() {
            continue;
        }
        if k == "all" {
            out.extend(default_kinds(format));
            continue;
        }
        let kind = EventKind::parse(k)
            .filter(|k| *k != EventKind::Ping)
            .ok_or_else(|| {
                let known: Vec<&str> = EventKind::ALL
                    .iter()
                    .filter(|k| **k != EventKind::Ping)
                    .map(|k| k.as_str())
                    .collect();
                Error::InvalidParameter(format!(
                    "unknown event {k:?}; known events: {}, or all",
                    known.join(", ")
                ))
            })?;
        if !format.supports(kind) {
            return Err(Error::InvalidParameter(format!(
                "the {} format cannot express {k} events; use the cloudevents format for them",
                format.as_str()
            )));
        }
        out.push(kind.as_str().to_owned());
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err(Error::InvalidParameter(
            "a webhook needs at least one event".into(),
        ));
    }
    Ok(out)
}

impl Registry {
    /// Creates a webhook after checking its URL (scheme, and every address
    /// its host resolves to now: see [`guard`]), format and events.
    pub async fn add_webhook(&self, spec: WebhookSpec, caller: &Caller) -> Result<CreatedWebhook> {
        let format_name = spec.format.as_deref().unwrap_or("cloudevents");
        let format = Format::parse(format_name).ok_or_else(|| {
            Error::InvalidParameter(format!(
                "unknown webhook format {format_name:?}: use cloudevents or distribution"
            ))
        })?;
        let events = kinds(format, spec.events)?;
        let host = url_host(&spec.url)?;
        guard::check_host(&host, &self.webhooks.settings.allow_networks)
            .await
            .map_err(Error::InvalidParameter)?;
        let secret = match spec.secret {
            Some(s) if s.len() < 16 || s.len() > 256 => {
                return Err(Error::InvalidParameter(
                    "a webhook secret must have 16 to 256 characters".into(),
                ))
            }
            Some(s) => s,
            None => sign::new_secret()?,
        };
        let webhook = self
            .meta
            .create_webhook(
                &NewWebhook {
                    namespace: spec.namespace,
                    url: spec.url,
                    format: format.as_str().to_owned(),
                    events,
                    secret: secret.clone(),
                    description: spec.description,
                },
                &caller.actor(),
            )
            .await?;
        self.webhooks.wants_pulls.fetch_or(
            webhook.events.iter().any(|e| e == "pulled"),
            Ordering::Relaxed,
        );
        Ok(CreatedWebhook { webhook, secret })
    }

    /// The webhooks of a namespace (`Some`) or the site-wide ones (`None`).
    pub async fn webhooks(&self, namespace: Option<&Namespace>) -> Result<Vec<Webhook>> {
        let scope = match namespace {
            Some(ns) => WebhookScope::Namespace(ns.clone()),
            None => WebhookScope::Site,
        };
        Ok(self.meta.webhooks(&scope).await?)
    }

    /// Webhook `id`.
    pub async fn webhook(&self, id: i64) -> Result<Webhook> {
        self.meta
            .webhook(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("webhook {id} does not exist")))
    }

    /// Removes webhook `id` with its delivery log.
    pub async fn remove_webhook(&self, id: i64, caller: &Caller) -> Result<Webhook> {
        self.meta
            .remove_webhook(id, &caller.actor())
            .await?
            .ok_or_else(|| Error::NotFound(format!("webhook {id} does not exist")))
    }

    /// Enables (its pending deliveries resume, its failure run restarts)
    /// or disables webhook `id`.
    pub async fn set_webhook_enabled(
        &self,
        id: i64,
        enabled: bool,
        caller: &Caller,
    ) -> Result<Webhook> {
        self.meta
            .set_webhook_enabled(id, enabled, &caller.actor())
            .await?
            .ok_or_else(|| Error::NotFound(format!("webhook {id} does not exist")))
    }

    /// Queues a `ping` delivery to webhook `id`.
    pub async fn test_webhook(&self, id: i64, caller: &Caller) -> Result<Delivery> {
        self.meta
            .ping_webhook(id, &caller.actor())
            .await?
            .ok_or_else(|| Error::NotFound(format!("webhook {id} does not exist")))
    }

    /// The delivery log of webhook `id`, newest first.
    pub async fn webhook_deliveries(
        &self,
        id: i64,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        Ok(self.meta.deliveries(id, before, limit).await?)
    }

    /// Queues delivery `delivery`'s event to webhook `id` once more.
    pub async fn redeliver(&self, id: i64, delivery: i64) -> Result<Delivery> {
        self.meta
            .redeliver(id, delivery, berth_meta::now_ms())
            .await?
            .ok_or_else(|| Error::NotFound(format!("webhook {id} has no delivery {delivery}")))
    }

    /// What waits to be delivered (for metrics and health).
    pub async fn webhook_backlog(&self) -> Result<Backlog> {
        Ok(self.meta.webhook_backlog().await?)
    }

    /// Whether pull events are wanted by some webhook.
    pub(crate) fn webhooks_want_pulls(&self) -> bool {
        self.webhooks.wants_pulls.load(Ordering::Relaxed)
    }

    /// The quota alerts, for the quota gates.
    pub(crate) fn quota_alerts(&self) -> Arc<alerts::Alerts> {
        self.webhooks.alerts.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_with_a_host_and_no_credentials() {
        assert_eq!(
            url_host("https://hooks.example.com/in?x=1").unwrap(),
            "hooks.example.com"
        );
        assert_eq!(url_host("http://127.0.0.1:8080/x").unwrap(), "127.0.0.1");
        assert_eq!(url_host("http://[::1]:8080/x").unwrap(), "[::1]");
        for bad in [
            "ftp://x/",
            "http:///nohost",
            "https://user:pw@host/",
            "http://host/a b",
            "file:///etc/passwd",
        ] {
            assert!(url_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn events_are_checked_against_the_format() {
        let all = kinds(Format::CloudEvents, None).unwrap();
        assert!(all.contains(&"manifest.pushed".to_owned()));
        assert!(!all.contains(&"pulled".to_owned()), "pulls are opt-in");
        let d = kinds(Format::Distribution, None).unwrap();
        assert_eq!(d, ["manifest.deleted", "manifest.pushed", "tag.deleted"]);
        assert!(kinds(Format::Distribution, Some(vec!["gc.finished".into()])).is_err());
        assert!(kinds(Format::CloudEvents, Some(vec!["ping".into()])).is_err());
        assert!(kinds(Format::CloudEvents, Some(vec!["nope".into()])).is_err());
        assert_eq!(
            kinds(Format::CloudEvents, Some(vec!["pulled,tag.moved".into()])).unwrap(),
            ["pulled", "tag.moved"]
        );
    }
}
