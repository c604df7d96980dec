//! The event outbox: state changes worth telling the outside world about
//! (a manifest pushed, a tag moved, a quota nearly full, a GC run
//! finished), one row each in `events`.
//!
//! An event is written on the connection, inside the transaction, of the
//! change it reports, so a change committed is an event committed: a
//! process killed right after acknowledging a push still delivers its
//! event once it is back. Most events come from the audit log's writer
//! ([`crate::audit::record`] calls [`for_audit`]): a change that records
//! its audit event records its outbox event with it, by construction. Job
//! runs publish theirs when they are finished ([`crate::Meta::finish_run`]),
//! and the registry publishes what has no transaction of its own (quota
//! alerts, batched pulls) with [`crate::Meta::publish_event`].
//!
//! Consumers read the outbox in id order: the webhook worker fans each
//! event out into deliveries (see the `webhooks` module) and marks it
//! `dispatched_at`. New consumers (replication, rescans) and new kinds
//! (scans, signatures) extend [`EventKind`] and this table; nothing else.

use serde::Serialize;
use serde_json::{json, Value};
use sqlx::{AnyConnection, Row};

use crate::audit::{self, action};
use crate::{Meta, Result};
use berth_oci::{Namespace, RepositoryName};

/// What happened. Each kind has a stable dotted name (the CloudEvents
/// `type` suffix and the name webhooks subscribe with).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A manifest was pushed (by digest, or with its tags).
    ManifestPushed,
    /// An existing tag was moved to another manifest.
    TagMoved,
    /// A tag was deleted (by a client or by retention).
    TagDeleted,
    /// A manifest was deleted with its tags (by a client or by retention).
    ManifestDeleted,
    /// Manifests were pulled (one event per repository and flush of the
    /// pull counters, with counts).
    Pulled,
    /// A namespace's stored content reached 80% of its quota.
    QuotaWarning,
    /// A push was refused because the namespace's quota is full.
    QuotaExceeded,
    /// A retention run finished.
    RetentionFinished,
    /// A garbage collection run finished.
    GcFinished,
    /// A manifest's signature was verified by a trusted key (after a
    /// signature push, or a change of the namespace's trusted keys).
    SignatureVerified,
    /// A manifest's signatures were checked and none verifies (wrong key,
    /// changed payload, another manifest's signature, malformed).
    SignatureFailed,
    /// A vulnerability scan of an image manifest finished (on push, after
    /// a vulnerability data change, or on request), with its counts.
    ScanCompleted,
    /// A namespace's vulnerability policy refused a manifest pull (the
    /// first refusal of a manifest to one caller for one reason in a
    /// minute; the audit event counts the rest).
    PullBlocked,
    /// A test event sent by an administrator (`berth webhook test`).
    Ping,
}

impl EventKind {
    /// Every kind, in documentation order.
    pub const ALL: &'static [EventKind] = &[
        EventKind::ManifestPushed,
        EventKind::TagMoved,
        EventKind::TagDeleted,
        EventKind::ManifestDeleted,
        EventKind::Pulled,
        EventKind::QuotaWarning,
        EventKind::QuotaExceeded,
        EventKind::RetentionFinished,
        EventKind::GcFinished,
        EventKind::SignatureVerified,
        EventKind::SignatureFailed,
        EventKind::ScanCompleted,
        EventKind::PullBlocked,
        EventKind::Ping,
    ];

    /// The stable name (`manifest.pushed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ManifestPushed => "manifest.pushed",
            EventKind::TagMoved => "tag.moved",
            EventKind::TagDeleted => "tag.deleted",
            EventKind::ManifestDeleted => "manifest.deleted",
            EventKind::Pulled => "pulled",
            EventKind::QuotaWarning => "quota.warning",
            EventKind::QuotaExceeded => "quota.exceeded",
            EventKind::RetentionFinished => "retention.finished",
            EventKind::GcFinished => "gc.finished",
            EventKind::SignatureVerified => "signature.verified",
            EventKind::SignatureFailed => "signature.failed",
            EventKind::ScanCompleted => "scan.completed",
            EventKind::PullBlocked => "pull.blocked",
            EventKind::Ping => "ping",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// An event to publish.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// What happened.
    pub kind: EventKind,
    /// When (Unix ms).
    pub at: i64,
    /// Who did it (an account, or `scheduler`, `retention`, ...).
    pub actor: String,
    /// From where.
    pub client_ip: Option<String>,
    /// The namespace concerned (derived from the repository when unset).
    pub namespace: Option<Namespace>,
    /// The repository concerned.
    pub repository: Option<RepositoryName>,
    /// The manifest concerned.
    pub digest: Option<String>,
    /// The tag concerned.
    pub tag: Option<String>,
    /// Everything else, as a JSON object.
    pub data: Value,
}

impl NewEvent {
    /// An event of `kind` by `actor` at `at`, about nothing in particular yet.
    pub fn new(kind: EventKind, actor: &str, at: i64) -> NewEvent {
        NewEvent {
            kind,
            at,
            actor: actor.to_owned(),
            client_ip: None,
            namespace: None,
            repository: None,
            digest: None,
            tag: None,
            data: json!({}),
        }
    }
}

/// A published event.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxEvent {
    /// Sequence number (increasing in commit order per repository).
    pub id: i64,
    /// A globally unique id (the CloudEvents `id`).
    pub uid: String,
    /// What happened.
    pub kind: EventKind,
    /// When (Unix ms).
    pub at: i64,
    /// Who did it.
    pub actor: String,
    /// From where.
    pub client_ip: Option<String>,
    /// The namespace concerned.
    pub namespace: Option<String>,
    /// The repository concerned.
    pub repository: Option<String>,
    /// The manifest concerned.
    pub digest: Option<String>,
    /// The tag concerned.
    pub tag: Option<String>,
    /// The rest.
    pub data: Value,
}

/// The columns [`OutboxEvent::from_row`] reads, prefixed with `e.`.
pub(crate) const COLUMNS: &str =
    "e.id, e.uid, e.kind, e.at, e.actor, e.client_ip, e.namespace, e.repository, e.digest, e.tag, e.data";

impl OutboxEvent {
    /// Reads [`COLUMNS`] starting at column `at`.
    pub(crate) fn from_row(r: &sqlx::any::AnyRow, at: usize) -> Result<OutboxEvent> {
        let kind: String = r.try_get(at + 2)?;
        let data: String = r.try_get(at + 10)?;
        Ok(OutboxEvent {
            id: r.try_get(at)?,
            uid: r.try_get(at + 1)?,
            kind: EventKind::parse(&kind)
                .ok_or_else(|| crate::Error::Corrupt(format!("unknown event kind {kind:?}")))?,
            at: r.try_get(at + 3)?,
            actor: r.try_get(at + 4)?,
            client_ip: r.try_get(at + 5)?,
            namespace: r.try_get(at + 6)?,
            repository: r.try_get(at + 7)?,
            digest: r.try_get(at + 8)?,
            tag: r.try_get(at + 9)?,
            data: serde_json::from_str(&data).unwrap_or(Value::Null),
        })
    }
}

/// Writes `event` on `conn`, inside the caller's transaction; returns its id.
pub async fn publish(conn: &mut AnyConnection, event: &NewEvent) -> Result<i64> {
    let namespace = match (&event.namespace, &event.repository) {
        (Some(ns), _) => Some(ns.as_str()),
        (None, Some(r)) => Some(r.namespace_str()),
        (None, None) => None,
    };
    let row = sqlx::query(
        "INSERT INTO events (uid, kind, at, actor, client_ip, namespace, repository, digest, tag,
                             data)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(event.kind.as_str())
    .bind(event.at)
    .bind(&event.actor)
    .bind(event.client_ip.as_deref())
    .bind(namespace)
    .bind(event.repository.as_ref().map(RepositoryName::as_str))
    .bind(event.digest.as_deref())
    .bind(event.tag.as_deref())
    .bind(event.data.to_string())
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get::<i64, _>(0)?)
}

/// The outbox event an audit event implies, if any.
fn from_audit(e: &audit::Event) -> Option<NewEvent> {
    let detail = e.detail.clone().unwrap_or_else(|| json!({}));
    let kind = match e.action.as_str() {
        action::PUSH => EventKind::ManifestPushed,
        action::TAG_MOVE => EventKind::TagMoved,
        action::TAG_DELETE => EventKind::TagDeleted,
        action::MANIFEST_DELETE => EventKind::ManifestDeleted,
        action::RETENTION_DELETE if e.tag.is_some() => EventKind::TagDeleted,
        action::RETENTION_DELETE => EventKind::ManifestDeleted,
        action::PULL_BLOCKED => EventKind::PullBlocked,
        _ => return None,
    };
    let mut data = detail;
    if e.action == action::RETENTION_DELETE {
        if let Some(o) = data.as_object_mut() {
            o.insert("by".into(), json!("retention"));
        }
    }
    Some(NewEvent {
        kind,
        at: e.at,
        actor: e.actor.clone(),
        client_ip: e.client_ip.clone(),
        namespace: None,
        // Written by this layer from a typed name: a record that holds no
        // repository name (a namespace's policy change) names none here.
        repository: e
            .repository
            .as_deref()
            .and_then(|r| RepositoryName::parse(r).ok()),
        digest: e.digest.clone(),
        tag: e.tag.clone(),
        data,
    })
}

/// Publishes the outbox event that the audit event `e` implies (called by
/// [`audit::record`], in its transaction).
pub(crate) async fn record_audit(conn: &mut AnyConnection, e: &audit::Event) -> Result<()> {
    if let Some(event) = from_audit(e) {
        publish(conn, &event).await?;
    }
    Ok(())
}

/// Publishes the end of job run `id` (`gc`, `retention:NS`), inside the
/// transaction that records it.
pub(crate) async fn record_run(
    conn: &mut AnyConnection,
    id: i64,
    now: i64,
    ok: bool,
    summary: &Value,
) -> Result<()> {
    let row = sqlx::query("SELECT job, started_at FROM job_runs WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(()) };
    let job: String = row.try_get(0)?;
    let started_at: i64 = row.try_get(1)?;
    let (kind, namespace) = match job.split_once(':') {
        None if job == "gc" => (EventKind::GcFinished, None),
        Some(("retention", ns)) => (EventKind::RetentionFinished, Namespace::parse(ns).ok()),
        _ => return Ok(()),
    };
    let mut event = NewEvent::new(kind, "scheduler", now);
    event.namespace = namespace;
    event.data = json!({
        "run": id,
        "job": job,
        "ok": ok,
        "started_at": started_at,
        "finished_at": now,
        "summary": summary,
    });
    publish(conn, &event).await.map(drop)
}

impl Meta {
    /// Publishes `event` in a transaction of its own (events that report
    /// no change of their own: quota alerts, batched pulls).
    pub async fn publish_event(&self, event: NewEvent) -> Result<i64> {
        self.transact(move |c| Box::pin(async move { publish(c, &event).await }))
            .await
    }

    /// Publishes `events` together, in one transaction.
    pub async fn publish_events(&self, events: Vec<NewEvent>) -> Result<()> {
        self.transact(move |c| {
            Box::pin(async move {
                for e in &events {
                    publish(c, e).await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Events with an id greater than `after`, oldest first, at most `limit`.
    pub async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<OutboxEvent>> {
        let sql = format!("SELECT {COLUMNS} FROM events e WHERE e.id > $1 ORDER BY e.id LIMIT $2");
        let rows = sqlx::query(&sql)
            .bind(after)
            .bind(limit.clamp(1, 10_000))
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| OutboxEvent::from_row(r, 0)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_by_name() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(EventKind::parse("manifest.pushed?"), None);
    }

    #[test]
    fn audit_actions_map_to_kinds() {
        let a = audit::Actor {
            name: "ci".into(),
            ip: None,
            at: 5,
        };
        let push = from_audit(&a.event(action::PUSH).repository("acme/web")).unwrap();
        assert_eq!(push.kind, EventKind::ManifestPushed);
        let by_retention = from_audit(
            &a.event(action::RETENTION_DELETE)
                .repository("acme/web")
                .tag("old")
                .detail(json!({"rule": "keep 3"})),
        )
        .unwrap();
        assert_eq!(by_retention.kind, EventKind::TagDeleted);
        assert_eq!(by_retention.data["by"], "retention");
        assert!(from_audit(&a.event(action::LOGIN)).is_none());
    }
}
