//! Replication rules: what to copy to (push) or from (pull) another
//! registry, and how far each rule has got.
//!
//! A rule's changes record [`action::POLICY_CHANGE`] in the same
//! transaction (never with its secret). A push rule follows the event
//! outbox: `event_cursor` is the last event it has handled, set to the
//! newest event when the rule is made (a new rule does not replay
//! history; a run on demand copies what exists). Runs are recorded in
//! `job_runs` under [`job_name`].

use serde::Serialize;
use serde_json::json;
use sqlx::{AnyConnection, Row};

use berth_oci::{Digest, RepositoryName, Tag};

use crate::audit::{self, action, Actor};
use crate::{Meta, Result};

/// The `job_runs` name of rule `id`'s runs (its history).
pub fn job_name(id: i64) -> String {
    format!("replication:{id}")
}

/// A credential that is stored but never shown: not in `Debug`, not
/// serialised.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A rule as stored, with its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplicationRule {
    /// Sequence number.
    pub id: i64,
    /// Unique name (`backup-eu`).
    pub name: String,
    /// `push` (to the other registry) or `pull` (from it).
    pub direction: String,
    /// The other registry's root URL (`https://backup.example.com`).
    pub url: String,
    /// The user name berth authenticates with there, if any.
    pub username: Option<String>,
    /// The password or token for `username`: never serialised.
    #[serde(skip)]
    pub secret: Option<Secret>,
    /// Glob (or namespace scope) of the repositories copied.
    pub repositories: String,
    /// Glob of the tags copied.
    pub tags: String,
    /// Whether a push rule copies each matching push as it happens.
    pub on_push: bool,
    /// A 5-field cron schedule (UTC) of full passes, if any.
    pub schedule: Option<String>,
    /// A note for people.
    pub description: Option<String>,
    /// Whether deletions at the source are replicated (push rules: a tag
    /// or manifest deleted here, on its event; pull rules: a tag this rule
    /// created that is gone at the source, on the next full pass).
    pub replicate_deletions: bool,
    /// The last outbox event handled (push rules).
    pub event_cursor: i64,
    /// Failed attempts in a row.
    pub failures: i64,
    /// When (Unix ms) a failed rule is tried again.
    pub next_attempt_at: i64,
    /// The last failure, while failing.
    pub last_error: Option<String>,
    /// When a run on demand was asked for, until it starts.
    pub run_requested_at: Option<i64>,
    /// The start of the last full pass (Unix ms).
    pub last_sync_at: Option<i64>,
    /// When it was made (Unix ms).
    pub created_at: i64,
    /// Who made it.
    pub created_by: Option<String>,
}

impl ReplicationRule {
    /// Whether a secret is stored (what the API shows of it).
    pub fn has_secret(&self) -> bool {
        self.secret.is_some()
    }
}

/// What making a rule needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRule {
    /// Unique name.
    pub name: String,
    /// `push` or `pull`.
    pub direction: String,
    /// The other registry's root URL.
    pub url: String,
    /// User name there.
    pub username: Option<String>,
    /// Its password or token.
    pub secret: Option<Secret>,
    /// Repository glob or scope.
    pub repositories: String,
    /// Tag glob.
    pub tags: String,
    /// Copy each matching push as it happens (push rules).
    pub on_push: bool,
    /// Cron schedule of full passes.
    pub schedule: Option<String>,
    /// A note.
    pub description: Option<String>,
    /// Replicate deletions too.
    pub replicate_deletions: bool,
}

/// A tag a pull rule made here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicatedTag {
    /// Its repository.
    pub repository: RepositoryName,
    /// The tag.
    pub tag: Tag,
    /// The digest the rule made it name.
    pub digest: Digest,
}

/// A rule's progress after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The last outbox event handled.
    pub event_cursor: i64,
    /// Failed attempts in a row (0: the attempt succeeded).
    pub failures: i64,
    /// When to try again (Unix ms).
    pub next_attempt_at: i64,
    /// The failure, if it failed.
    pub last_error: Option<String>,
    /// A full pass started at this time (Unix ms): recorded, and a run on
    /// demand asked for before it is done.
    pub synced_at: Option<i64>,
}

const COLUMNS: &str = "id, name, direction, url, username, secret, repositories, tags, on_push, \
     schedule, description, replicate_deletions, event_cursor, failures, next_attempt_at, last_error, \
     run_requested_at, last_sync_at, created_at, created_by";

fn row(r: &sqlx::any::AnyRow) -> Result<ReplicationRule> {
    let on_push: i64 = r.try_get("on_push")?;
    let replicate_deletions: i64 = r.try_get("replicate_deletions")?;
    let secret: Option<String> = r.try_get("secret")?;
    Ok(ReplicationRule {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        direction: r.try_get("direction")?,
        url: r.try_get("url")?,
        username: r.try_get("username")?,
        secret: secret.map(Secret),
        repositories: r.try_get("repositories")?,
        tags: r.try_get("tags")?,
        on_push: on_push != 0,
        schedule: r.try_get("schedule")?,
        description: r.try_get("description")?,
        replicate_deletions: replicate_deletions != 0,
        event_cursor: r.try_get("event_cursor")?,
        failures: r.try_get("failures")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        last_error: r.try_get("last_error")?,
        run_requested_at: r.try_get("run_requested_at")?,
        last_sync_at: r.try_get("last_sync_at")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
    })
}

async fn rule_on(c: &mut AnyConnection, name: &str) -> Result<Option<ReplicationRule>> {
    let sql = format!("SELECT {COLUMNS} FROM replication_rules WHERE name = $1");
    let r = sqlx::query(&sql).bind(name).fetch_optional(&mut *c).await?;
    r.as_ref().map(row).transpose()
}

async fn add(c: &mut AnyConnection, n: NewRule, actor: Actor) -> Result<Option<ReplicationRule>> {
    let newest: i64 = sqlx::query("SELECT COALESCE(MAX(id), 0) FROM events")
        .fetch_one(&mut *c)
        .await?
        .try_get(0)?;
    let done = sqlx::query(
        "INSERT INTO replication_rules
            (name, direction, url, username, secret, repositories, tags, on_push, schedule,
             description, event_cursor, created_at, created_by, replicate_deletions)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(&n.name)
    .bind(&n.direction)
    .bind(&n.url)
    .bind(n.username.as_deref())
    .bind(n.secret.as_ref().map(|s| s.0.as_str()))
    .bind(&n.repositories)
    .bind(&n.tags)
    .bind(i64::from(n.on_push))
    .bind(n.schedule.as_deref())
    .bind(n.description.as_deref())
    .bind(newest)
    .bind(actor.at)
    .bind(&actor.name)
    .bind(i64::from(n.replicate_deletions))
    .execute(&mut *c)
    .await?
    .rows_affected()
        > 0;
    if !done {
        return Ok(None);
    }
    let event = actor.event(action::POLICY_CHANGE).detail(json!({
        "change": "replication.rule.add", "name": n.name, "direction": n.direction,
        "url": n.url, "username": n.username, "repositories": n.repositories,
        "tags": n.tags, "on_push": n.on_push, "schedule": n.schedule,
        "replicate_deletions": n.replicate_deletions,
    }));
    audit::record(c, &event).await?;
    rule_on(c, &n.name).await
}

async fn remove(
    c: &mut AnyConnection,
    name: String,
    actor: Actor,
) -> Result<Option<ReplicationRule>> {
    let Some(rule) = rule_on(c, &name).await? else {
        return Ok(None);
    };
    sqlx::query("DELETE FROM replication_rules WHERE id = $1")
        .bind(rule.id)
        .execute(&mut *c)
        .await?;
    let event = actor
        .event(action::POLICY_CHANGE)
        .detail(json!({"change": "replication.rule.remove", "name": name, "url": rule.url}));
    audit::record(c, &event).await?;
    Ok(Some(rule))
}

impl Meta {
    /// Adds a rule (its `created_at`/`created_by` come from `actor`), its
    /// event cursor at the newest event. `None` if one of that name exists.
    pub async fn add_replication_rule(
        &self,
        rule: &NewRule,
        actor: &Actor,
    ) -> Result<Option<ReplicationRule>> {
        let (n, actor) = (rule.clone(), actor.clone());
        self.transact(move |c| Box::pin(add(c, n, actor))).await
    }

    /// Removes rule `name`; `None` if there was none.
    pub async fn remove_replication_rule(
        &self,
        name: &str,
        actor: &Actor,
    ) -> Result<Option<ReplicationRule>> {
        let (n, actor) = (name.to_owned(), actor.clone());
        self.transact(move |c| Box::pin(remove(c, n, actor))).await
    }

    /// Every rule, by name.
    pub async fn replication_rules(&self) -> Result<Vec<ReplicationRule>> {
        let sql = format!("SELECT {COLUMNS} FROM replication_rules ORDER BY name");
        let rows = sqlx::query(&sql).fetch_all(&self.read).await?;
        rows.iter().map(row).collect()
    }

    /// Rule `name`.
    pub async fn replication_rule(&self, name: &str) -> Result<Option<ReplicationRule>> {
        let sql = format!("SELECT {COLUMNS} FROM replication_rules WHERE name = $1");
        let r = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        r.as_ref().map(row).transpose()
    }

    /// Asks for a full pass of rule `name` as soon as possible (kept until
    /// a pass starts after `now`); clears its retry wait. `None`: no such
    /// rule.
    pub async fn request_replication_run(
        &self,
        name: &str,
        now: i64,
    ) -> Result<Option<ReplicationRule>> {
        let name = name.to_owned();
        self.transact(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE replication_rules
                     SET run_requested_at = COALESCE(run_requested_at, $2), next_attempt_at = 0
                     WHERE name = $1",
                )
                .bind(&name)
                .bind(now)
                .execute(&mut *c)
                .await?;
                rule_on(c, &name).await
            })
        })
        .await
    }

    /// Records rule `id`'s progress after an attempt. A full pass
    /// (`synced_at`) also answers the runs on demand asked for before it
    /// started.
    pub async fn save_replication_progress(&self, id: i64, p: &Progress) -> Result<()> {
        let p = p.clone();
        self.transact(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE replication_rules
                     SET event_cursor = $2, failures = $3, next_attempt_at = $4, last_error = $5,
                         last_sync_at = COALESCE($6, last_sync_at),
                         run_requested_at = CASE WHEN run_requested_at <= $6 THEN NULL
                                                 ELSE run_requested_at END
                     WHERE id = $1",
                )
                .bind(id)
                .bind(p.event_cursor)
                .bind(p.failures)
                .bind(p.next_attempt_at)
                .bind(p.last_error.as_deref())
                .bind(p.synced_at)
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Records that rule `id` made (or moved) `repository:tag` to name
    /// `digest` (a pull rule here, a push rule at its target).
    pub async fn record_replicated_tag(
        &self,
        id: i64,
        repository: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
        at: i64,
    ) -> Result<()> {
        let (repository, tag, digest) = (repository.clone(), tag.clone(), digest.clone());
        self.transact(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO replication_tags (rule_id, repository, tag, digest, copied_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (rule_id, repository, tag)
                     DO UPDATE SET digest = excluded.digest, copied_at = excluded.copied_at",
                )
                .bind(id)
                .bind(repository.as_str())
                .bind(tag.as_str())
                .bind(digest.as_str())
                .bind(at)
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// The tags rule `id` made (a pull rule here, a push rule at its
    /// target), with the digest it put there, by repository and tag.
    pub async fn replicated_tags(&self, id: i64) -> Result<Vec<ReplicatedTag>> {
        let rows = sqlx::query(
            "SELECT repository, tag, digest FROM replication_tags WHERE rule_id = $1
             ORDER BY repository, tag",
        )
        .bind(id)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let (repository, tag, digest): (String, String, String) = (
                    r.try_get("repository")?,
                    r.try_get("tag")?,
                    r.try_get("digest")?,
                );
                let corrupt = |what: &str| {
                    crate::Error::Corrupt(format!("replication_tags: {what} of rule {id}"))
                };
                Ok(ReplicatedTag {
                    repository: RepositoryName::parse(&repository)
                        .map_err(|_| corrupt("a repository name"))?,
                    tag: Tag::parse(&tag).map_err(|_| corrupt("a tag"))?,
                    digest: Digest::parse(&digest).map_err(|_| corrupt("a digest"))?,
                })
            })
            .collect()
    }

    /// Forgets that rule `id` made `repository:tag`.
    pub async fn forget_replicated_tag(
        &self,
        id: i64,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<()> {
        let (repository, tag) = (repository.clone(), tag.clone());
        self.transact(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "DELETE FROM replication_tags
                     WHERE rule_id = $1 AND repository = $2 AND tag = $3",
                )
                .bind(id)
                .bind(repository.as_str())
                .bind(tag.as_str())
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Moves rule `id`'s event cursor forward to `cursor` (events that
    /// concern none of its repositories).
    pub async fn advance_replication_cursor(&self, id: i64, cursor: i64) -> Result<()> {
        self.transact(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE replication_rules SET event_cursor = $2
                     WHERE id = $1 AND event_cursor < $2",
                )
                .bind(id)
                .bind(cursor)
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        })
        .await
    }
}
