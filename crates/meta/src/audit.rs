//! The audit log: who changed what, when, from where.
//!
//! An event is written by [`record`] on the same connection, inside the same
//! transaction, as the change it describes, so a change without its event
//! (or an event without its change) cannot be committed. Reads go through
//! [`Meta::audit_events`] with an [`AuditFilter`].

use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::{Meta, Result};

/// Action names recorded in the log (the `action` column).
pub mod action {
    /// A manifest was pushed (by digest or with tags).
    pub const PUSH: &str = "push";
    /// An existing tag was moved to another manifest.
    pub const TAG_MOVE: &str = "tag.move";
    /// A tag was deleted.
    pub const TAG_DELETE: &str = "tag.delete";
    /// A manifest (and its tags) was deleted.
    pub const MANIFEST_DELETE: &str = "manifest.delete";
    /// A blob was unlinked from a repository.
    pub const BLOB_DELETE: &str = "blob.delete";
    /// Credentials were accepted.
    pub const LOGIN: &str = "login";
    /// Credentials were refused.
    pub const LOGIN_FAILED: &str = "login.failed";
    /// An access token was created.
    pub const TOKEN_CREATE: &str = "token.create";
    /// An access token was revoked.
    pub const TOKEN_REVOKE: &str = "token.revoke";
    /// Accounts, memberships, roles or visibility changed.
    pub const PERMISSION_CHANGE: &str = "permission.change";
    /// A tag rule, retention policy or quota changed.
    pub const POLICY_CHANGE: &str = "policy.change";
    /// Retention deleted a manifest or tag.
    pub const RETENTION_DELETE: &str = "retention.delete";
    /// Garbage collection removed unreferenced content.
    pub const GC: &str = "gc";
    /// A webhook was created, changed, enabled or removed.
    pub const WEBHOOK_CHANGE: &str = "webhook.change";
    /// A webhook was disabled after a run of failed deliveries.
    pub const WEBHOOK_DISABLE: &str = "webhook.disable";
    /// The integrity scrub found a blob missing or corrupt (the detail
    /// says what it breaks and whether it was repaired).
    pub const SCRUB_FINDING: &str = "scrub.finding";
    /// An import of vulnerability data started (`berth vulndb import`;
    /// the detail names its source and import id).
    pub const VULNDB_IMPORT: &str = "vulndb.import";
    /// The mirror's cache limit evicted a mirrored manifest (the least
    /// recently pulled first; the detail says its size and last use).
    pub const MIRROR_EVICT: &str = "mirror.evict";
    /// A replication rule deleted at its target what was deleted here
    /// (the detail names the rule, the target and what went).
    pub const REPLICATION_DELETE: &str = "replication.delete";
    /// A pull was refused by the namespace's vulnerability policy (the
    /// detail names the policy and the findings that blocked it).
    pub const PULL_BLOCKED: &str = "pull.blocked";
}

/// Who acts, from where, and when: the part of an event every write
/// shares.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// Account name (`anonymous` when there is none).
    pub name: String,
    /// Client address.
    pub ip: Option<String>,
    /// Time of the change (Unix ms).
    pub at: i64,
}

impl Actor {
    /// An event by this actor.
    pub fn event(&self, action: &str) -> Event {
        Event {
            at: self.at,
            actor: self.name.clone(),
            client_ip: self.ip.clone(),
            action: action.to_owned(),
            repository: None,
            digest: None,
            tag: None,
            detail: None,
        }
    }
}

/// One audit event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Unix ms.
    pub at: i64,
    /// Account name.
    pub actor: String,
    /// Client address.
    pub client_ip: Option<String>,
    /// One of [`action`].
    pub action: String,
    /// Repository acted on.
    pub repository: Option<String>,
    /// Manifest or blob digest.
    pub digest: Option<String>,
    /// Tag.
    pub tag: Option<String>,
    /// Anything else (previous digest of a moved tag, token id, rule, ...).
    pub detail: Option<serde_json::Value>,
}

impl Event {
    /// Sets the repository.
    pub fn repository(mut self, r: &str) -> Self {
        self.repository = Some(r.to_owned());
        self
    }
    /// Sets the digest.
    pub fn digest(mut self, d: &str) -> Self {
        self.digest = Some(d.to_owned());
        self
    }
    /// Sets the tag.
    pub fn tag(mut self, t: &str) -> Self {
        self.tag = Some(t.to_owned());
        self
    }
    /// Sets the detail object.
    pub fn detail(mut self, d: serde_json::Value) -> Self {
        self.detail = Some(d);
        self
    }
}

/// A stored event.
#[derive(Debug, Clone, Serialize)]
pub struct StoredEvent {
    /// Sequence number (increasing).
    pub id: i64,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

/// Writes `event` on `conn`, inside the caller's transaction, with the
/// outbox event it implies (a push, a tag moved or deleted, a manifest
/// deleted: see [`crate::events`]).
pub async fn record(conn: &mut AnyConnection, event: &Event) -> Result<()> {
    insert(conn, event).await?;
    crate::events::record_audit(conn, event).await
}

/// Writes `event` and returns its id.
async fn insert(conn: &mut AnyConnection, event: &Event) -> Result<i64> {
    let detail = event.detail.as_ref().map(|d| d.to_string());
    let row = sqlx::query(
        "INSERT INTO audit_events (at, actor, client_ip, action, repository, digest, tag, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(event.at)
    .bind(&event.actor)
    .bind(event.client_ip.as_deref())
    .bind(&event.action)
    .bind(event.repository.as_deref())
    .bind(event.digest.as_deref())
    .bind(event.tag.as_deref())
    .bind(detail.as_deref())
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get::<i64, _>(0)?)
}

/// Which events to read. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Exact account name.
    pub actor: Option<String>,
    /// Exact action, or a prefix ending in `.` (`tag.`).
    pub action: Option<String>,
    /// Exact repository, or a namespace prefix ending in `/` (`acme/`).
    pub repository: Option<String>,
    /// Events at or after this time (Unix ms).
    pub since: Option<i64>,
    /// Events before this time (Unix ms).
    pub until: Option<i64>,
    /// Only events with an id greater than this (paging towards newer).
    pub after_id: Option<i64>,
    /// Only events with an id smaller than this (paging towards older).
    pub before_id: Option<i64>,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
    /// At most this many, from the end the order starts at.
    pub limit: Option<i64>,
}

fn prefix_or_exact(column: &str, value: &str, n: usize, sep: char) -> (String, String) {
    if value.ends_with(sep) {
        let escaped = value
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        (
            format!("{column} LIKE ${n} ESCAPE '\\'"),
            format!("{escaped}%"),
        )
    } else {
        (format!("{column} = ${n}"), value.to_owned())
    }
}

impl Meta {
    /// Records an event that has no other change to commit with (a failed
    /// login, for instance).
    pub async fn record_event(&self, event: Event) -> Result<()> {
        self.transact(move |c| Box::pin(async move { record(c, &event).await }))
            .await
    }

    /// Records an event alone, with the outbox event it implies, and
    /// returns its id (to count repeats of it later with
    /// [`Meta::count_repeats`]).
    pub async fn record_event_id(&self, event: Event) -> Result<i64> {
        self.transact(move |c| {
            Box::pin(async move {
                let id = insert(c, &event).await?;
                crate::events::record_audit(c, &event).await?;
                Ok(id)
            })
        })
        .await
    }

    /// Counts repeats of event `id` (the rest of a burst of logins by one
    /// client, refused pulls): `detail.repeats` becomes `repeats` and `detail.last_at`
    /// the time of the latest. The event's own fields do not change.
    pub async fn count_repeats(&self, id: i64, repeats: u64, last_at: i64) -> Result<()> {
        self.transact(move |c| {
            Box::pin(async move {
                let row = sqlx::query("SELECT detail FROM audit_events WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *c)
                    .await?;
                let Some(row) = row else { return Ok(()) };
                let detail: Option<String> = row.try_get(0)?;
                let mut detail = detail
                    .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
                    .filter(serde_json::Value::is_object)
                    .unwrap_or_else(|| serde_json::json!({}));
                detail["repeats"] = repeats.into();
                detail["last_at"] = last_at.into();
                sqlx::query("UPDATE audit_events SET detail = $1 WHERE id = $2")
                    .bind(detail.to_string())
                    .bind(id)
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// Events matching `filter`, oldest first (newest first when the
    /// filter says so).
    pub async fn audit_events(&self, filter: &AuditFilter) -> Result<Vec<StoredEvent>> {
        let mut clauses = Vec::new();
        let mut texts: Vec<(usize, String)> = Vec::new();
        let mut ints: Vec<(usize, i64)> = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        if let Some(a) = &filter.actor {
            let i = next();
            clauses.push(format!("actor = ${i}"));
            texts.push((i, a.clone()));
        }
        if let Some(a) = &filter.action {
            let i = next();
            let (c, v) = prefix_or_exact("action", a, i, '.');
            clauses.push(c);
            texts.push((i, v));
        }
        if let Some(r) = &filter.repository {
            let i = next();
            let (c, v) = prefix_or_exact("repository", r, i, '/');
            clauses.push(c);
            texts.push((i, v));
        }
        for (col, op, v) in [
            ("at", ">=", filter.since),
            ("at", "<", filter.until),
            ("id", ">", filter.after_id),
            ("id", "<", filter.before_id),
        ] {
            if let Some(v) = v {
                let i = next();
                clauses.push(format!("{col} {op} ${i}"));
                ints.push((i, v));
            }
        }
        let limit = filter.limit.unwrap_or(1000).clamp(1, 100_000);
        let sql = format!(
            "SELECT id, at, actor, client_ip, action, repository, digest, tag, detail
             FROM audit_events {} ORDER BY id {} LIMIT {limit}",
            if clauses.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", clauses.join(" AND "))
            },
            if filter.newest_first { "DESC" } else { "ASC" }
        );
        // Bind in placeholder order.
        let mut binds: Vec<(usize, Result<String, i64>)> = texts
            .into_iter()
            .map(|(i, t)| (i, Ok(t)))
            .chain(ints.into_iter().map(|(i, v)| (i, Err(v))))
            .collect();
        binds.sort_by_key(|(i, _)| *i);
        let mut q = sqlx::query(&sql);
        for (_, b) in binds {
            q = match b {
                Ok(t) => q.bind(t),
                Err(v) => q.bind(v),
            };
        }
        let rows = q.fetch_all(&self.read).await?;
        rows.iter()
            .map(|r| {
                let detail: Option<String> = r.try_get(8)?;
                Ok(StoredEvent {
                    id: r.try_get(0)?,
                    event: Event {
                        at: r.try_get(1)?,
                        actor: r.try_get(2)?,
                        client_ip: r.try_get(3)?,
                        action: r.try_get(4)?,
                        repository: r.try_get(5)?,
                        digest: r.try_get(6)?,
                        tag: r.try_get(7)?,
                        detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
                    },
                })
            })
            .collect()
    }
}
