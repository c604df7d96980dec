//! One round of the delivery worker.
//!
//! A round, on the replica holding the `webhooks` lease: publish queued
//! quota alerts; then keep up to `concurrency` attempts in flight, each the
//! oldest pending delivery of its webhook and repository (so a
//! repository's events arrive in order, and a failing delivery holds back
//! only its own chain), filling free slots with newly fanned-out and due
//! deliveries as attempts finish and at least every second, so a receiver
//! that never answers holds one slot, not the round. The round ends when
//! nothing is in flight or due, or when told to stop (attempts cut short
//! are attempted again later). Then, hourly, old history is pruned.
//!
//! An attempt is one POST with a timeout on the whole exchange; the answer
//! is read up to [`super::MAX_RESPONSE_BYTES`] and dropped. A 2xx is
//! delivered; anything else (another status, a refused address, a
//! timeout, a reset) is a failure, retried after [`super::sign::backoff`]
//! until `max_attempts`, and counted in the webhook's run of failures.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use berth_meta::events::EventKind;
use berth_meta::webhooks::{Attempt, DueDelivery, Outcome};
use berth_metrics::DeliveryOutcome;
use futures_util::StreamExt;
use serde::Serialize;

use super::{guard, payload, sign, url_host, Format, MAX_RESPONSE_BYTES};
use crate::worker::Stop;
use crate::{Error, Registry, Result};

/// The lease only one replica's worker holds.
pub const LEASE_NAME: &str = "webhooks";
/// A replica that dies holding the lease delays deliveries this long at
/// most.
const LEASE: Duration = Duration::from_secs(30);
/// How often a round looks for new work while attempts are in flight.
const REFILL_EVERY: Duration = Duration::from_secs(1);
/// A round that only waited on slow receivers this many times in a row
/// ends (and the next round starts over): the round's summary gets logged.
const MAX_IDLE_PASSES: u32 = 120;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How often the backlog gauges are read.
const GAUGE_EVERY: Duration = Duration::from_secs(10);

/// What a round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Round {
    /// Events fanned out.
    pub dispatched: usize,
    /// Deliveries accepted by their receiver.
    pub delivered: usize,
    /// Attempts that failed (to be retried or given up).
    pub failed: usize,
    /// Deliveries given up after their last attempt.
    pub given_up: usize,
    /// Webhooks disabled after a run of failures.
    pub disabled: usize,
}

impl Round {
    /// A one-line summary, if anything was attempted.
    pub fn summary(&self) -> Option<String> {
        (self.delivered + self.failed > 0).then(|| {
            format!(
                "webhooks: {} delivered, {} failed ({} given up), {} webhooks disabled",
                self.delivered, self.failed, self.given_up, self.disabled
            )
        })
    }
}

/// Why an attempt got no answer.
struct Failure {
    /// The address was refused by the guard (nothing was sent).
    refused: bool,
    message: String,
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure {
            refused: false,
            message,
        }
    }
}

/// Whether the guard refused the address somewhere in `e`'s chain.
fn is_refusal(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if err.downcast_ref::<guard::Refused>().is_some() {
            return true;
        }
        next = err.source();
    }
    false
}

/// The error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

impl Registry {
    /// Takes or renews the delivery lease (a write only when half of it
    /// has passed); `Conflict` when another replica holds it. On SQLite,
    /// which one process owns, there is nobody to share with: no lease, so
    /// a restart after a crash delivers at once.
    async fn hold_delivery_lease(&self) -> Result<()> {
        if !self.settings.shared_database {
            return Ok(());
        }
        let now = berth_meta::now_ms();
        let held_until = self
            .webhooks
            .lease_until
            .load(std::sync::atomic::Ordering::Acquire);
        if held_until - (LEASE.as_millis() as i64) / 2 > now {
            return Ok(());
        }
        let until = now + LEASE.as_millis() as i64;
        if self
            .meta
            .acquire_lease(LEASE_NAME, self.job_holder(), now, until)
            .await?
        {
            self.webhooks
                .lease_until
                .store(until, std::sync::atomic::Ordering::Release);
            Ok(())
        } else {
            self.webhooks
                .lease_until
                .store(0, std::sync::atomic::Ordering::Release);
            Err(Error::Conflict("another replica delivers webhooks".into()))
        }
    }

    /// Gives the delivery lease up (at shutdown), so another replica takes
    /// over at once.
    pub async fn release_delivery_lease(&self) {
        if self
            .webhooks
            .lease_until
            .swap(0, std::sync::atomic::Ordering::AcqRel)
            == 0
        {
            return;
        }
        if let Err(e) = self.meta.release_lease(LEASE_NAME, self.job_holder()).await {
            tracing::warn!(error = %e, "releasing the webhook delivery lease failed");
        }
    }

    /// Sets the backlog gauges of `/metrics` (every replica, at most every
    /// [`GAUGE_EVERY`]).
    async fn refresh_backlog_gauges(&self) {
        {
            let mut last = self
                .webhooks
                .last_gauges
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < GAUGE_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        match self.meta.webhook_backlog().await {
            Ok(b) => {
                let age = b.oldest_at.map_or(0, |t| (berth_meta::now_ms() - t).max(0));
                berth_metrics::get().webhook_backlog(b.pending, Duration::from_millis(age as u64));
            }
            Err(e) => tracing::debug!(error = %e, "reading the webhook backlog failed"),
        }
    }

    /// One round of webhook delivery (see the module's documentation).
    pub async fn deliver_webhooks(&self, stop: &Stop) -> Result<Round> {
        self.refresh_backlog_gauges().await;
        self.hold_delivery_lease().await?;
        let mut round = Round::default();
        let wants = self.meta.webhooks_want(EventKind::Pulled).await?;
        self.webhooks
            .wants_pulls
            .store(wants, std::sync::atomic::Ordering::Relaxed);
        let alerts = self.webhooks.alerts.take();
        if !alerts.is_empty() {
            if let Err(e) = self.meta.publish_events(alerts.clone()).await {
                self.webhooks.alerts.restore(alerts);
                return Err(e.into());
            }
        }
        let settings = &self.webhooks.settings;
        let slots = settings.concurrency.max(1);
        let mut in_flight = futures_util::stream::FuturesUnordered::new();
        let mut busy: HashSet<i64> = HashSet::new();
        let mut idle_passes = 0;
        loop {
            if stop.is_cancelled() {
                // Attempts cut short are retried by the next process.
                break;
            }
            // Fill the free slots with what is due now.
            if in_flight.len() < slots {
                let now = berth_meta::now_ms();
                round.dispatched += self.meta.dispatch_events(now, 500).await?;
                let due = self
                    .meta
                    .due_deliveries(now, (slots + busy.len()) as i64)
                    .await?;
                for d in due {
                    if in_flight.len() >= slots {
                        break;
                    }
                    if busy.insert(d.id) {
                        in_flight.push(async move { self.attempt(&d).await });
                    }
                }
            }
            if in_flight.is_empty() {
                break;
            }
            // Record what finishes; look for new work every second even
            // while slow receivers hold slots.
            tokio::select! {
                done = in_flight.next() => {
                    let Some(a) = done else { continue };
                    busy.remove(&a.delivery);
                    self.record(&a, &mut round).await?;
                    idle_passes = 0;
                }
                _ = tokio::time::sleep(REFILL_EVERY) => {
                    idle_passes += 1;
                }
                _ = stop.cancelled() => {}
            }
            if idle_passes > MAX_IDLE_PASSES {
                break;
            }
            self.hold_delivery_lease().await?;
        }
        self.prune_webhooks_if_due().await;
        Ok(round)
    }

    /// Records attempt `a` and counts it in `round`.
    async fn record(&self, a: &Attempt, round: &mut Round) -> Result<()> {
        let settings = &self.webhooks.settings;
        match a.outcome {
            Outcome::Delivered => round.delivered += 1,
            Outcome::Retry(_) => round.failed += 1,
            Outcome::GiveUp => {
                round.failed += 1;
                round.given_up += 1;
            }
        }
        if self.meta.record_attempt(a, settings.disable_after).await? {
            round.disabled += 1;
            tracing::warn!(
                webhook = a.webhook,
                failures = settings.disable_after,
                error = a.error.as_deref().unwrap_or(""),
                "disabled a webhook after a run of failed deliveries; \
                 `berth webhook enable` turns it back on"
            );
        }
        Ok(())
    }

    async fn prune_webhooks_if_due(&self) {
        let due = {
            let mut last = self
                .webhooks
                .last_prune
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= PRUNE_EVERY);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if !due {
            return;
        }
        let before = berth_meta::now_ms() - self.webhooks.settings.history.as_millis() as i64;
        match self.meta.prune_webhook_history(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "pruned old webhook deliveries and events"),
            Err(e) => tracing::warn!(error = %e, "pruning webhook history failed"),
        }
    }

    /// Makes one attempt of `d` and says what became of it.
    async fn attempt(&self, d: &DueDelivery) -> Attempt {
        let settings = &self.webhooks.settings;
        let started = Instant::now();
        let result = self.post(d).await;
        let latency_ms = started.elapsed().as_millis() as i64;
        let at = berth_meta::now_ms();
        let mut refused = false;
        let (status_code, error) = match result {
            Ok(s) if (200..300).contains(&s) => (Some(s), None),
            Ok(s) => (Some(s), Some(format!("the receiver answered HTTP {s}"))),
            Err(f) => {
                refused = f.refused;
                (None, Some(f.message))
            }
        };
        let made = u32::try_from(d.attempts)
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let outcome = if error.is_none() {
            Outcome::Delivered
        } else if made >= settings.max_attempts.max(1) {
            Outcome::GiveUp
        } else {
            let wait = sign::backoff(
                made,
                settings.retry_base,
                settings.retry_max,
                sign::jitter(),
            );
            Outcome::Retry(at + wait.as_millis() as i64)
        };
        berth_metrics::get().webhook_delivery(match outcome {
            Outcome::Delivered => DeliveryOutcome::Delivered,
            _ if refused => DeliveryOutcome::Refused,
            Outcome::Retry(_) => DeliveryOutcome::Failed,
            Outcome::GiveUp => DeliveryOutcome::Abandoned,
        });
        if let Some(e) = &error {
            tracing::info!(
                webhook = d.webhook.id,
                delivery = %d.uid,
                attempt = made,
                error = %e,
                "webhook delivery failed"
            );
        }
        Attempt {
            delivery: d.id,
            webhook: d.webhook.id,
            at,
            outcome,
            status_code,
            latency_ms,
            error,
        }
    }

    /// POSTs `d`; the status of the answer, or why there was none.
    async fn post(&self, d: &DueDelivery) -> std::result::Result<u16, Failure> {
        let hub = &self.webhooks;
        let client = hub.client.as_ref().map_err(|e| Failure::from(e.clone()))?;
        let host = url_host(&d.webhook.url).map_err(|e| Failure::from(e.to_string()))?;
        // IP literals never reach the resolver: check them here.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
            if let Some(why) = guard::refusal(ip, &hub.settings.allow_networks) {
                return Err(Failure {
                    refused: true,
                    message: guard::message(bare, ip, why),
                });
            }
        }
        let format = Format::parse(&d.webhook.format).unwrap_or(Format::CloudEvents);
        let body = payload::render(format, &d.event, hub.settings.external_url.as_deref());
        let signature = sign::signature(&d.webhook.secret, &body);
        let response = client
            .post(&d.webhook.url)
            .header(reqwest::header::CONTENT_TYPE, format.content_type())
            .header("Berth-Delivery", &d.uid)
            .header("Berth-Event", d.event.kind.as_str())
            .header("Berth-Signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| Failure {
                refused: is_refusal(&e),
                message: chain(&e),
            })?;
        let status = response.status().as_u16();
        // Read a little of the answer (keeps the connection reusable),
        // never all of it.
        let mut read = 0usize;
        let mut response = response;
        while read < MAX_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(c)) => read += c.len(),
                Ok(None) | Err(_) => break,
            }
        }
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("connect failed")]
    struct Outer(#[source] guard::Refused);

    #[test]
    fn refusals_are_found_in_the_error_chain() {
        let e = Outer(guard::Refused("loopback".into()));
        assert!(is_refusal(&e));
        assert_eq!(chain(&e), "connect failed: loopback");
        let other = std::io::Error::other("reset");
        assert!(!is_refusal(&other));
    }

    #[test]
    fn summaries_only_when_something_was_attempted() {
        assert_eq!(Round::default().summary(), None);
        let r = Round {
            delivered: 2,
            failed: 1,
            ..Default::default()
        };
        assert!(r.summary().unwrap().contains("2 delivered, 1 failed"));
    }
}
