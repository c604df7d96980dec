//! Webhooks and their deliveries.
//!
//! A webhook belongs to a namespace (it hears that namespace's events) or
//! to the site (`namespace` NULL: every event). Its secret is written here
//! and read back only by the delivery worker ([`DueDelivery`]); nothing
//! that lists webhooks returns it.
//!
//! Deliveries: [`Meta::dispatch_events`] fans events of the outbox out into
//! one `pending` delivery per subscribed, enabled webhook, and marks the
//! events dispatched, in one transaction. [`Meta::due_deliveries`] returns
//! the deliveries to attempt now: only the oldest pending delivery of each
//! webhook and *chain* (the repository, or the namespace for events about
//! no repository), so a later event of a repository never overtakes an
//! earlier one, even while the earlier is waiting for its retry.
//! [`Meta::record_attempt`] writes an attempt's outcome, counts the
//! webhook's run of consecutive failures and disables it (with an audit
//! event) when the run reaches the caller's limit.

use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::audit::{self, action, Actor};
use crate::events::{self, EventKind, NewEvent, OutboxEvent};
use crate::{Meta, Result};
use berth_oci::Namespace;

/// A webhook, as the API shows it (no secret).
#[derive(Debug, Clone, Serialize)]
pub struct Webhook {
    /// Id.
    pub id: i64,
    /// The namespace it belongs to; `None`: site-wide.
    pub namespace: Option<Namespace>,
    /// Where events are POSTed.
    pub url: String,
    /// Payload format (`cloudevents` or `distribution`).
    pub format: String,
    /// Event kinds it receives.
    pub events: Vec<String>,
    /// A note for people.
    pub description: Option<String>,
    /// The current run of consecutive failed attempts.
    pub failures: i64,
    /// When it was disabled (Unix ms); `None`: enabled.
    pub disabled_at: Option<i64>,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Creation time (Unix ms).
    pub created_at: i64,
    /// Who created it.
    pub created_by: Option<String>,
}

/// A webhook to create.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    /// The namespace; `None`: site-wide.
    pub namespace: Option<Namespace>,
    /// Target URL (checked by the registry).
    pub url: String,
    /// Payload format.
    pub format: String,
    /// Event kinds.
    pub events: Vec<String>,
    /// HMAC key.
    pub secret: String,
    /// A note.
    pub description: Option<String>,
}

/// Which webhooks to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookScope {
    /// Every webhook.
    All,
    /// Site-wide webhooks only.
    Site,
    /// The webhooks of one namespace.
    Namespace(Namespace),
}

/// One event to one webhook.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// Sequence number.
    pub id: i64,
    /// The delivery id sent in the `Berth-Delivery` header.
    pub uid: String,
    /// The webhook.
    pub webhook_id: i64,
    /// The outbox event.
    pub event_id: i64,
    /// The event's kind.
    pub event: String,
    /// The event's repository.
    pub repository: Option<String>,
    /// `pending`, `delivered` or `failed` (gave up).
    pub state: String,
    /// Attempts made.
    pub attempts: i64,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<i64>,
    /// When the last attempt was made.
    pub last_attempt_at: Option<i64>,
    /// The last attempt's HTTP status, if it got an answer.
    pub status_code: Option<i64>,
    /// The last attempt's duration.
    pub latency_ms: Option<i64>,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// Creation time.
    pub created_at: i64,
    /// When it was delivered or given up.
    pub finished_at: Option<i64>,
}

/// Where a due delivery goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// Webhook id.
    pub id: i64,
    /// URL.
    pub url: String,
    /// Payload format.
    pub format: String,
    /// HMAC key.
    pub secret: String,
}

/// A delivery to attempt now.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// Delivery id.
    pub id: i64,
    /// Delivery uid (header).
    pub uid: String,
    /// Attempts made before this one.
    pub attempts: i64,
    /// The webhook.
    pub webhook: Target,
    /// The event.
    pub event: OutboxEvent,
}

/// What became of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted (2xx).
    Delivered,
    /// Failed; try again at this time (Unix ms).
    Retry(i64),
    /// Failed for the last time.
    GiveUp,
}

/// One attempt's result.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The delivery.
    pub delivery: i64,
    /// Its webhook.
    pub webhook: i64,
    /// When it was made (Unix ms).
    pub at: i64,
    /// What it became.
    pub outcome: Outcome,
    /// The HTTP status, if there was an answer.
    pub status_code: Option<u16>,
    /// Its duration.
    pub latency_ms: i64,
    /// Why it failed.
    pub error: Option<String>,
}

/// Deliveries not yet delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Backlog {
    /// Pending deliveries (of enabled webhooks) plus events not fanned out.
    pub pending: i64,
    /// Creation time of the oldest of them (Unix ms).
    pub oldest_at: Option<i64>,
}

const WEBHOOK_COLUMNS: &str = "id, namespace, url, format, events, description, failures, \
     disabled_at, disabled_reason, created_at, created_by";

fn webhook_from_row(r: &sqlx::any::AnyRow) -> Result<Webhook> {
    let events: String = r.try_get(4)?;
    Ok(Webhook {
        id: r.try_get(0)?,
        namespace: crate::namespace_at(r, 1)?,
        url: r.try_get(2)?,
        format: r.try_get(3)?,
        events: split_kinds(&events),
        description: r.try_get(5)?,
        failures: r.try_get(6)?,
        disabled_at: r.try_get(7)?,
        disabled_reason: r.try_get(8)?,
        created_at: r.try_get(9)?,
        created_by: r.try_get(10)?,
    })
}

fn split_kinds(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect()
}

const DELIVERY_COLUMNS: &str = "d.id, d.uid, d.webhook_id, d.event_id, e.kind, e.repository, \
     d.state, d.attempts, d.next_attempt_at, d.last_attempt_at, d.status_code, d.latency_ms, \
     d.error, d.created_at, d.finished_at";

fn delivery_from_row(r: &sqlx::any::AnyRow) -> Result<Delivery> {
    let state: String = r.try_get(6)?;
    let next: i64 = r.try_get(8)?;
    Ok(Delivery {
        id: r.try_get(0)?,
        uid: r.try_get(1)?,
        webhook_id: r.try_get(2)?,
        event_id: r.try_get(3)?,
        event: r.try_get(4)?,
        repository: r.try_get(5)?,
        next_attempt_at: (state == "pending").then_some(next),
        state,
        attempts: r.try_get(7)?,
        last_attempt_at: r.try_get(9)?,
        status_code: r.try_get(10)?,
        latency_ms: r.try_get(11)?,
        error: r.try_get(12)?,
        created_at: r.try_get(13)?,
        finished_at: r.try_get(14)?,
    })
}

async fn webhook_on(c: &mut AnyConnection, id: i64) -> Result<Option<Webhook>> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1");
    let row = sqlx::query(&sql).bind(id).fetch_optional(&mut *c).await?;
    row.as_ref().map(webhook_from_row).transpose()
}

async fn delivery_on(c: &mut AnyConnection, id: i64) -> Result<Option<Delivery>> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.id = $1"
    );
    let row = sqlx::query(&sql).bind(id).fetch_optional(&mut *c).await?;
    row.as_ref().map(delivery_from_row).transpose()
}

/// The chain (ordering key) of an event's deliveries.
fn chain_of(e: &OutboxEvent) -> String {
    match (&e.repository, &e.namespace) {
        (Some(r), _) => format!("repo:{r}"),
        (None, Some(ns)) => format!("ns:{ns}"),
        (None, None) => "site".into(),
    }
}

async fn insert_delivery(
    c: &mut AnyConnection,
    webhook: i64,
    event: i64,
    chain: &str,
    now: i64,
) -> Result<i64> {
    let row = sqlx::query(
        "INSERT INTO webhook_deliveries (uid, webhook_id, event_id, chain, state, attempts,
                                         next_attempt_at, created_at)
         VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5) RETURNING id",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(webhook)
    .bind(event)
    .bind(chain)
    .bind(now)
    .fetch_one(&mut *c)
    .await?;
    Ok(row.try_get::<i64, _>(0)?)
}

fn change_event(actor: &Actor, what: &str, w: &Webhook) -> audit::Event {
    actor
        .event(action::WEBHOOK_CHANGE)
        .detail(serde_json::json!({
            "change": what,
            "webhook": w.id,
            "namespace": w.namespace,
            "url": w.url,
            "events": w.events,
        }))
}

impl Meta {
    /// Creates a webhook, with its audit event.
    pub async fn create_webhook(&self, new: &NewWebhook, actor: &Actor) -> Result<Webhook> {
        let (new, actor) = (new.clone(), actor.clone());
        self.transact(move |c| {
            Box::pin(async move {
                let row = sqlx::query(
                    "INSERT INTO webhooks (namespace, url, format, events, secret, description,
                                           failures, created_at, created_by)
                     VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8) RETURNING id",
                )
                .bind(new.namespace.as_ref().map(Namespace::as_str))
                .bind(&new.url)
                .bind(&new.format)
                .bind(new.events.join(","))
                .bind(&new.secret)
                .bind(new.description.as_deref())
                .bind(actor.at)
                .bind(&actor.name)
                .fetch_one(&mut *c)
                .await?;
                let id: i64 = row.try_get(0)?;
                let w = webhook_on(c, id)
                    .await?
                    .ok_or_else(|| crate::Error::Corrupt("a created webhook vanished".into()))?;
                audit::record(c, &change_event(&actor, "create", &w)).await?;
                Ok(w)
            })
        })
        .await
    }

    /// The webhooks of `scope`, by id.
    pub async fn webhooks(&self, scope: &WebhookScope) -> Result<Vec<Webhook>> {
        let (clause, ns) = match scope {
            WebhookScope::All => ("$1 IS NULL", None),
            WebhookScope::Site => ("namespace IS NULL AND $1 IS NULL", None),
            WebhookScope::Namespace(ns) => ("namespace = $1", Some(ns.as_str())),
        };
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE {clause} ORDER BY id");
        let rows = sqlx::query(&sql).bind(ns).fetch_all(&self.read).await?;
        rows.iter().map(webhook_from_row).collect()
    }

    /// Webhook `id`.
    pub async fn webhook(&self, id: i64) -> Result<Option<Webhook>> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(webhook_from_row).transpose()
    }

    /// Removes webhook `id` and its deliveries; returns it, if it existed.
    pub async fn remove_webhook(&self, id: i64, actor: &Actor) -> Result<Option<Webhook>> {
        let actor = actor.clone();
        self.transact(move |c| {
            Box::pin(async move {
                let Some(w) = webhook_on(c, id).await? else {
                    return Ok(None);
                };
                sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
                    .bind(id)
                    .execute(&mut *c)
                    .await?;
                sqlx::query("DELETE FROM webhooks WHERE id = $1")
                    .bind(id)
                    .execute(&mut *c)
                    .await?;
                audit::record(c, &change_event(&actor, "remove", &w)).await?;
                Ok(Some(w))
            })
        })
        .await
    }

    /// Enables webhook `id` (its failure run starts again from zero; its
    /// pending deliveries resume) or disables it. Returns it, if it exists.
    pub async fn set_webhook_enabled(
        &self,
        id: i64,
        enabled: bool,
        actor: &Actor,
    ) -> Result<Option<Webhook>> {
        let actor = actor.clone();
        self.transact(move |c| {
            Box::pin(async move {
                if enabled {
                    sqlx::query(
                        "UPDATE webhooks SET disabled_at = NULL, disabled_reason = NULL,
                                             failures = 0
                         WHERE id = $1",
                    )
                    .bind(id)
                    .execute(&mut *c)
                    .await?;
                } else {
                    sqlx::query(
                        "UPDATE webhooks SET disabled_at = $2, disabled_reason = $3
                         WHERE id = $1 AND disabled_at IS NULL",
                    )
                    .bind(id)
                    .bind(actor.at)
                    .bind(format!("disabled by {}", actor.name))
                    .execute(&mut *c)
                    .await?;
                }
                let Some(w) = webhook_on(c, id).await? else {
                    return Ok(None);
                };
                let what = if enabled { "enable" } else { "disable" };
                audit::record(c, &change_event(&actor, what, &w)).await?;
                Ok(Some(w))
            })
        })
        .await
    }

    /// Whether an enabled webhook subscribes to `kind` (so that events
    /// nobody wants, such as pulls, are not even published).
    pub async fn webhooks_want(&self, kind: EventKind) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM webhooks
             WHERE disabled_at IS NULL AND (',' || events || ',') LIKE $1 LIMIT 1",
        )
        .bind(format!("%,{},%", kind.as_str()))
        .fetch_optional(&self.read)
        .await?;
        Ok(row.is_some())
    }

    /// Fans up to `limit` undispatched events out into one pending
    /// delivery per enabled webhook that subscribes to them, and marks them
    /// dispatched, in one transaction. Returns the number of events.
    pub async fn dispatch_events(&self, now: i64, limit: i64) -> Result<usize> {
        self.transact(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {} FROM events e WHERE e.dispatched_at IS NULL ORDER BY e.id LIMIT $1",
                    events::COLUMNS
                );
                let rows = sqlx::query(&sql).bind(limit).fetch_all(&mut *c).await?;
                if rows.is_empty() {
                    return Ok(0);
                }
                let list: Vec<OutboxEvent> = rows
                    .iter()
                    .map(|r| OutboxEvent::from_row(r, 0))
                    .collect::<Result<_>>()?;
                let hooks = sqlx::query(
                    "SELECT id, namespace, events, created_at FROM webhooks
                     WHERE disabled_at IS NULL",
                )
                .fetch_all(&mut *c)
                .await?;
                // The namespace as stored: compared with the events'.
                let mut targets: Vec<(i64, Option<String>, Vec<String>, i64)> = Vec::new();
                for h in &hooks {
                    let kinds: String = h.try_get(2)?;
                    targets.push((
                        h.try_get(0)?,
                        h.try_get(1)?,
                        split_kinds(&kinds),
                        h.try_get(3)?,
                    ));
                }
                for e in &list {
                    let chain = chain_of(e);
                    for (id, ns, kinds, created_at) in &targets {
                        // A webhook hears what happens after its creation.
                        let in_scope = (ns.is_none() || *ns == e.namespace) && *created_at <= e.at;
                        if in_scope && kinds.iter().any(|k| k == e.kind.as_str()) {
                            insert_delivery(c, *id, e.id, &chain, now).await?;
                        }
                    }
                }
                // By id, not by range: on PostgreSQL an event with an id in
                // the range may commit after the SELECT above.
                let ids: Vec<String> = list.iter().map(|e| e.id.to_string()).collect();
                let sql = format!(
                    "UPDATE events SET dispatched_at = $1 WHERE id IN ({})",
                    ids.join(",")
                );
                sqlx::query(&sql).bind(now).execute(&mut *c).await?;
                Ok(list.len())
            })
        })
        .await
    }

    /// Up to `limit` deliveries to attempt at `now`: pending, due, of an
    /// enabled webhook, and the oldest pending of their webhook and chain.
    pub async fn due_deliveries(&self, now: i64, limit: i64) -> Result<Vec<DueDelivery>> {
        let sql = format!(
            "SELECT d.id, d.uid, d.attempts, w.id, w.url, w.format, w.secret, {}
             FROM webhook_deliveries d
             JOIN webhooks w ON w.id = d.webhook_id
             JOIN events e ON e.id = d.event_id
             WHERE d.state = 'pending' AND d.next_attempt_at <= $1 AND w.disabled_at IS NULL
               AND NOT EXISTS (
                 SELECT 1 FROM webhook_deliveries p
                 WHERE p.state = 'pending' AND p.webhook_id = d.webhook_id
                   AND p.chain = d.chain AND p.id < d.id)
             ORDER BY d.id LIMIT $2",
            events::COLUMNS
        );
        let rows = sqlx::query(&sql)
            .bind(now)
            .bind(limit.clamp(1, 10_000))
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DueDelivery {
                    id: r.try_get(0)?,
                    uid: r.try_get(1)?,
                    attempts: r.try_get(2)?,
                    webhook: Target {
                        id: r.try_get(3)?,
                        url: r.try_get(4)?,
                        format: r.try_get(5)?,
                        secret: r.try_get(6)?,
                    },
                    event: OutboxEvent::from_row(r, 7)?,
                })
            })
            .collect()
    }

    /// Records an attempt. A failure extends the webhook's run of
    /// failures; when the run reaches `disable_after` (0: never) the webhook
    /// is disabled with a `webhook.disable` audit event. Returns whether it
    /// was disabled now.
    pub async fn record_attempt(&self, a: &Attempt, disable_after: u32) -> Result<bool> {
        let a = a.clone();
        self.transact(move |c| {
            Box::pin(async move {
                let (state, next, finished) = match a.outcome {
                    Outcome::Delivered => ("delivered", a.at, Some(a.at)),
                    Outcome::Retry(at) => ("pending", at, None),
                    Outcome::GiveUp => ("failed", a.at, Some(a.at)),
                };
                sqlx::query(
                    "UPDATE webhook_deliveries
                     SET state = $2, attempts = attempts + 1, next_attempt_at = $3,
                         last_attempt_at = $4, status_code = $5, latency_ms = $6, error = $7,
                         finished_at = $8
                     WHERE id = $1",
                )
                .bind(a.delivery)
                .bind(state)
                .bind(next)
                .bind(a.at)
                .bind(a.status_code.map(i64::from))
                .bind(a.latency_ms)
                .bind(a.error.as_deref())
                .bind(finished)
                .execute(&mut *c)
                .await?;
                if a.outcome == Outcome::Delivered {
                    sqlx::query("UPDATE webhooks SET failures = 0 WHERE id = $1")
                        .bind(a.webhook)
                        .execute(&mut *c)
                        .await?;
                    return Ok(false);
                }
                let row = sqlx::query(
                    "UPDATE webhooks SET failures = failures + 1 WHERE id = $1
                     RETURNING failures, disabled_at",
                )
                .bind(a.webhook)
                .fetch_optional(&mut *c)
                .await?;
                let Some(row) = row else { return Ok(false) };
                let failures: i64 = row.try_get(0)?;
                let disabled_at: Option<i64> = row.try_get(1)?;
                if disable_after == 0
                    || failures < i64::from(disable_after)
                    || disabled_at.is_some()
                {
                    return Ok(false);
                }
                let reason = format!(
                    "{failures} deliveries failed in a row (the last: {})",
                    a.error.as_deref().unwrap_or("no answer")
                );
                sqlx::query(
                    "UPDATE webhooks SET disabled_at = $2, disabled_reason = $3 WHERE id = $1",
                )
                .bind(a.webhook)
                .bind(a.at)
                .bind(&reason)
                .execute(&mut *c)
                .await?;
                let actor = Actor {
                    name: "webhooks".into(),
                    ip: None,
                    at: a.at,
                };
                let event = actor
                    .event(action::WEBHOOK_DISABLE)
                    .detail(serde_json::json!({
                        "webhook": a.webhook,
                        "failures": failures,
                        "reason": reason,
                    }));
                audit::record(c, &event).await?;
                Ok(true)
            })
        })
        .await
    }

    /// The deliveries of webhook `id`, newest first: at most `limit`, older
    /// than delivery `before` when given.
    pub async fn deliveries(
        &self,
        webhook: i64,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.webhook_id = $1 AND d.id < $2 ORDER BY d.id DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(webhook)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit.clamp(1, 1000))
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// Queues the event of delivery `delivery` (of webhook `webhook`) once
    /// more, as a new delivery behind the pending ones of its chain.
    pub async fn redeliver(
        &self,
        webhook: i64,
        delivery: i64,
        now: i64,
    ) -> Result<Option<Delivery>> {
        self.transact(move |c| {
            Box::pin(async move {
                let row = sqlx::query(
                    "SELECT event_id, chain FROM webhook_deliveries
                     WHERE id = $1 AND webhook_id = $2",
                )
                .bind(delivery)
                .bind(webhook)
                .fetch_optional(&mut *c)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let event: i64 = row.try_get(0)?;
                let chain: String = row.try_get(1)?;
                let id = insert_delivery(c, webhook, event, &chain, now).await?;
                delivery_on(c, id).await
            })
        })
        .await
    }

    /// Publishes a `ping` event for webhook `id` alone and queues its
    /// delivery (ahead of any backlog: it has a chain of its own).
    pub async fn ping_webhook(&self, id: i64, actor: &Actor) -> Result<Option<Delivery>> {
        let actor = actor.clone();
        self.transact(move |c| {
            Box::pin(async move {
                let Some(w) = webhook_on(c, id).await? else {
                    return Ok(None);
                };
                let mut event = NewEvent::new(EventKind::Ping, &actor.name, actor.at);
                event.client_ip = actor.ip.clone();
                event.namespace = w.namespace.clone();
                event.data = serde_json::json!({ "webhook": w.id });
                let event_id = events::publish(c, &event).await?;
                sqlx::query("UPDATE events SET dispatched_at = $1 WHERE id = $2")
                    .bind(actor.at)
                    .bind(event_id)
                    .execute(&mut *c)
                    .await?;
                let chain = format!("ping:{event_id}");
                let d = insert_delivery(c, id, event_id, &chain, actor.at).await?;
                delivery_on(c, d).await
            })
        })
        .await
    }

    /// Removes finished deliveries older than `before`, and dispatched
    /// events older than `before` that no delivery needs any more.
    /// Returns the number of rows removed.
    pub async fn prune_webhook_history(&self, before: i64) -> Result<u64> {
        self.transact(move |c| {
            Box::pin(async move {
                let d = sqlx::query(
                    "DELETE FROM webhook_deliveries WHERE state <> 'pending' AND created_at < $1",
                )
                .bind(before)
                .execute(&mut *c)
                .await?;
                let e = sqlx::query(
                    "DELETE FROM events
                     WHERE dispatched_at IS NOT NULL AND at < $1
                       AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = events.id)",
                )
                .bind(before)
                .execute(&mut *c)
                .await?;
                Ok(d.rows_affected() + e.rows_affected())
            })
        })
        .await
    }

    /// What is waiting to be delivered: pending deliveries of enabled
    /// webhooks and events not yet fanned out, with the oldest's time.
    pub async fn webhook_backlog(&self) -> Result<Backlog> {
        let row = sqlx::query(
            "SELECT COUNT(*), MIN(d.created_at) FROM webhook_deliveries d
             JOIN webhooks w ON w.id = d.webhook_id
             WHERE d.state = 'pending' AND w.disabled_at IS NULL",
        )
        .fetch_one(&self.read)
        .await?;
        let (mut pending, mut oldest): (i64, Option<i64>) = (row.try_get(0)?, row.try_get(1)?);
        let row = sqlx::query("SELECT COUNT(*), MIN(at) FROM events WHERE dispatched_at IS NULL")
            .fetch_one(&self.read)
            .await?;
        let (n, at): (i64, Option<i64>) = (row.try_get(0)?, row.try_get(1)?);
        pending += n;
        oldest = match (oldest, at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(Backlog {
            pending,
            oldest_at: oldest,
        })
    }
}
