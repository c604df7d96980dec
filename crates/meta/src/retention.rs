//! What retention reads and deletes: policies as stored, the inventory of a
//! namespace (manifests, tags, references, pull statistics), and deletions
//! that re-check, under the repository lock, that what the plan saw still
//! holds.

use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::audit::{self, action, Actor};
use crate::gc::lock_repository;
use crate::rules::TagGuard;
use crate::{repository_at, tag_at, Error, Meta, Result};
use berth_oci::{Digest, Namespace, RepositoryName, Tag};

/// A namespace's retention policy as stored.
#[derive(Debug, Clone, Serialize)]
pub struct StoredPolicy {
    /// The namespace.
    pub namespace: Namespace,
    /// The policy's TOML text, as set.
    pub policy: String,
    /// Last change (Unix ms).
    pub updated_at: i64,
    /// Who changed it.
    pub updated_by: Option<String>,
}

/// A manifest retention is about to delete, with what it expects.
#[derive(Debug, Clone)]
pub struct ManifestTarget {
    /// The manifest.
    pub digest: Digest,
    /// The only tags that may still point to it (deleted with it).
    pub with_tags: Vec<Tag>,
    /// Its subject, which must be gone already.
    pub subject: Option<Digest>,
}

/// The outcome of a conditional deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// Done, with its audit event.
    Deleted,
    /// Not done: what changed since the plan.
    Skipped(String),
}

impl Meta {
    /// The retention policy of `namespace`.
    pub async fn retention_policy(&self, namespace: &Namespace) -> Result<Option<StoredPolicy>> {
        let row = sqlx::query(
            "SELECT namespace, policy, updated_at, updated_by FROM retention_policies
             WHERE namespace = $1",
        )
        .bind(namespace.as_str())
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| policy(&r)).transpose()
    }

    /// Every stored retention policy, by namespace.
    pub async fn retention_policies(&self) -> Result<Vec<StoredPolicy>> {
        let rows = sqlx::query(
            "SELECT namespace, policy, updated_at, updated_by FROM retention_policies
             ORDER BY namespace",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(policy).collect()
    }

    /// Sets (or, with `None`, removes) the retention policy of `namespace`,
    /// with a `policy.change` audit event. Returns whether a policy existed
    /// before.
    pub async fn set_retention_policy(
        &self,
        namespace: &Namespace,
        text: Option<&str>,
        actor: &Actor,
    ) -> Result<bool> {
        let (ns, text, actor) = (
            namespace.to_string(),
            text.map(str::to_owned),
            actor.clone(),
        );
        self.transact(move |c| {
            Box::pin(async move {
                let existed = sqlx::query("SELECT 1 FROM retention_policies WHERE namespace = $1")
                    .bind(&ns)
                    .fetch_optional(&mut *c)
                    .await?
                    .is_some();
                match &text {
                    Some(t) => {
                        sqlx::query(
                            "INSERT INTO retention_policies (namespace, policy, updated_at, updated_by)
                             VALUES ($1, $2, $3, $4)
                             ON CONFLICT (namespace) DO UPDATE SET policy = excluded.policy,
                                 updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                        )
                        .bind(&ns)
                        .bind(t)
                        .bind(actor.at)
                        .bind(&actor.name)
                        .execute(&mut *c)
                        .await?;
                    }
                    None => {
                        sqlx::query("DELETE FROM retention_policies WHERE namespace = $1")
                            .bind(&ns)
                            .execute(&mut *c)
                            .await?;
                    }
                }
                if text.is_some() || existed {
                    let what = if text.is_some() { "set" } else { "deleted" };
                    let event = actor.event(action::POLICY_CHANGE).detail(serde_json::json!({
                        "retention": what, "namespace": ns,
                    }));
                    audit::record(c, &event).await?;
                }
                Ok(existed)
            })
        })
        .await
    }

    /// The repositories of `namespace` (the namespace itself and everything
    /// below `namespace/`), sorted.
    pub async fn namespace_repositories(
        &self,
        namespace: &Namespace,
    ) -> Result<Vec<RepositoryName>> {
        // '0' is the byte after '/': a range scan instead of an escaped LIKE.
        let rows = sqlx::query(
            "SELECT name FROM repositories WHERE name = $1 OR (name >= $2 AND name < $3)
             ORDER BY name",
        )
        .bind(namespace.as_str())
        .bind(format!("{namespace}/"))
        .bind(format!("{namespace}0"))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| repository_at(r, 0)).collect()
    }

    /// Deletes `tag` of `repository` if it still points to `digest` and
    /// `guard` (the tag rules) does not refuse it, with a `retention.delete`
    /// event carrying `detail`.
    pub async fn retention_delete_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
        guard: TagGuard,
        actor: &Actor,
        detail: serde_json::Value,
    ) -> Result<Deletion> {
        let (repo, tag, digest, actor) = (
            repository.clone(),
            tag.clone(),
            digest.clone(),
            actor.clone(),
        );
        self.repository_write(repository, move |c| {
            Box::pin(async move {
                let Some(id) = lock_repository(c, &repo).await? else {
                    return Ok(Deletion::Skipped("the repository is gone".into()));
                };
                if let Some(why) = guard(&tag) {
                    return Ok(Deletion::Skipped(why));
                }
                let done = sqlx::query(
                    "DELETE FROM tags WHERE repository_id = $1 AND name = $2 AND digest = $3",
                )
                .bind(id)
                .bind(tag.as_str())
                .bind(digest.as_str())
                .execute(&mut *c)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(Deletion::Skipped("the tag was moved or deleted".into()));
                }
                let event = actor
                    .event(action::RETENTION_DELETE)
                    .repository(repo.as_str())
                    .digest(digest.as_str())
                    .tag(tag.as_str())
                    .detail(detail);
                audit::record(c, &event).await?;
                Ok(Deletion::Deleted)
            })
        })
        .await
    }

    /// Deletes manifest `digest` of `repository` with its tags `with_tags`,
    /// if nothing else holds it any more: no other tag points to it, no
    /// index lists it, its `subject` (if given) is gone, and `guard` refuses
    /// none of its tags.
    pub async fn retention_delete_manifest(
        &self,
        repository: &RepositoryName,
        target: ManifestTarget,
        guard: TagGuard,
        actor: &Actor,
        detail: serde_json::Value,
    ) -> Result<Deletion> {
        let (repo, actor) = (repository.clone(), actor.clone());
        self.repository_write(repository, move |c| {
            Box::pin(async move {
                delete_manifest(
                    c,
                    &repo,
                    &target,
                    &guard,
                    &actor,
                    action::RETENTION_DELETE,
                    detail,
                )
                .await
            })
        })
        .await
    }

    /// Deletes a mirrored manifest that the mirror's cache limit evicts,
    /// on the same conditions as [`Meta::retention_delete_manifest`], with
    /// a `mirror.evict` event carrying `detail`.
    pub async fn evict_manifest(
        &self,
        repository: &RepositoryName,
        target: ManifestTarget,
        guard: TagGuard,
        actor: &Actor,
        detail: serde_json::Value,
    ) -> Result<Deletion> {
        let (repo, actor) = (repository.clone(), actor.clone());
        self.repository_write(repository, move |c| {
            Box::pin(async move {
                delete_manifest(
                    c,
                    &repo,
                    &target,
                    &guard,
                    &actor,
                    action::MIRROR_EVICT,
                    detail,
                )
                .await
            })
        })
        .await
    }

    /// Sets the push time of a manifest (imports that keep history, tests
    /// with a controlled clock).
    pub async fn set_manifest_times(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        pushed_at: i64,
        last_pulled_at: Option<i64>,
    ) -> Result<()> {
        self.set_times(
            "UPDATE manifests SET pushed_at = $3, last_pulled_at = $4
             WHERE digest = $2 AND repository_id = (SELECT id FROM repositories WHERE name = $1)",
            repository,
            digest.as_str(),
            pushed_at,
            last_pulled_at,
        )
        .await
    }

    /// Sets when a tag was pushed and last pulled (imports, tests).
    pub async fn set_tag_times(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        updated_at: i64,
        last_pulled_at: Option<i64>,
    ) -> Result<()> {
        self.set_times(
            "UPDATE tags SET updated_at = $3, last_pulled_at = $4
             WHERE name = $2 AND repository_id = (SELECT id FROM repositories WHERE name = $1)",
            repository,
            tag.as_str(),
            updated_at,
            last_pulled_at,
        )
        .await
    }

    async fn set_times(
        &self,
        sql: &'static str,
        repository: &RepositoryName,
        key: &str,
        at: i64,
        pulled: Option<i64>,
    ) -> Result<()> {
        let (repo, key) = (repository.as_str().to_owned(), key.to_owned());
        self.repository_write(repository, move |c| {
            Box::pin(async move {
                sqlx::query(sql)
                    .bind(&repo)
                    .bind(&key)
                    .bind(at)
                    .bind(pulled)
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
        })
        .await
    }
}

fn policy(r: &sqlx::any::AnyRow) -> Result<StoredPolicy> {
    let namespace: String = r.try_get(0)?;
    Ok(StoredPolicy {
        namespace: Namespace::parse(namespace)
            .map_err(|e| Error::Corrupt(format!("retention policy: {e}")))?,
        policy: r.try_get(1)?,
        updated_at: r.try_get(2)?,
        updated_by: r.try_get(3)?,
    })
}

async fn delete_manifest(
    c: &mut AnyConnection,
    repo: &RepositoryName,
    target: &ManifestTarget,
    guard: &TagGuard,
    actor: &Actor,
    what: &'static str,
    detail: serde_json::Value,
) -> Result<Deletion> {
    let (digest, with_tags, subject) = (
        target.digest.as_str(),
        &target.with_tags,
        target.subject.as_ref().map(Digest::as_str),
    );
    let Some(id) = lock_repository(c, repo).await? else {
        return Ok(Deletion::Skipped("the repository is gone".into()));
    };
    let exists = sqlx::query("SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2")
        .bind(id)
        .bind(digest)
        .fetch_optional(&mut *c)
        .await?;
    if exists.is_none() {
        return Ok(Deletion::Skipped("it was deleted meanwhile".into()));
    }
    let tags: Vec<Tag> =
        sqlx::query("SELECT name FROM tags WHERE repository_id = $1 AND digest = $2")
            .bind(id)
            .bind(digest)
            .fetch_all(&mut *c)
            .await?
            .iter()
            .map(|r| tag_at(r, 0))
            .collect::<Result<_>>()?;
    if let Some(t) = tags.iter().find(|t| !with_tags.contains(t)) {
        return Ok(Deletion::Skipped(format!("it is tagged {t}")));
    }
    if let Some(why) = tags.iter().find_map(|t| guard(t)) {
        return Ok(Deletion::Skipped(why));
    }
    let parent = sqlx::query(
        "SELECT parent FROM manifest_references
         WHERE repository_id = $1 AND child = $2 AND kind = 'manifest'",
    )
    .bind(id)
    .bind(digest)
    .fetch_optional(&mut *c)
    .await?;
    if let Some(p) = parent {
        let p: String = p.try_get(0)?;
        return Ok(Deletion::Skipped(format!("index {p} lists it")));
    }
    if let Some(s) = subject {
        let present =
            sqlx::query("SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2")
                .bind(id)
                .bind(s)
                .fetch_optional(&mut *c)
                .await?;
        if present.is_some() {
            return Ok(Deletion::Skipped(format!("its subject {s} is still there")));
        }
    }
    for sql in [
        "DELETE FROM tags WHERE repository_id = $1 AND digest = $2",
        "DELETE FROM manifest_references WHERE repository_id = $1 AND parent = $2",
        "DELETE FROM manifests WHERE repository_id = $1 AND digest = $2",
    ] {
        sqlx::query(sql)
            .bind(id)
            .bind(digest)
            .execute(&mut *c)
            .await?;
    }
    let mut detail = detail;
    if let Some(o) = detail.as_object_mut() {
        o.insert("tags".into(), serde_json::json!(tags));
    }
    let event = actor
        .event(what)
        .repository(repo.as_str())
        .digest(digest)
        .detail(detail);
    audit::record(c, &event).await?;
    Ok(Deletion::Deleted)
}
