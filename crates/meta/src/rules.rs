//! Tag rules: which tags are protected or immutable, by scope and pattern.
//!
//! A rule is `(scope, pattern, kind)`: `scope` a namespace or a repository
//! glob, `pattern` a tag glob (the syntax is the registry's `glob` module;
//! this layer stores the strings and never interprets them). Every change
//! records a [`action::POLICY_CHANGE`] event in the same transaction.
//!
//! Enforcement needs the decision inside the transaction that moves or
//! deletes tags (two concurrent pushes of an immutable tag must not both
//! win), so the guarded writes of [`crate::writes`] take a [`TagGuard`]: a
//! predicate the caller builds from the rules and that the write calls for
//! each tag it is about to move or remove.

use std::sync::Arc;

use serde::Serialize;
use sqlx::{AnyConnection, Row};

use crate::audit::{self, action, Actor};
use crate::{Error, Meta, Result};
use berth_oci::Tag;

/// What a tag rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TagRuleKind {
    /// Matching tags cannot be moved or deleted except by a namespace
    /// admin, and are never deleted by retention.
    Protected,
    /// Matching tags, once they exist, cannot be moved to another manifest
    /// by anyone; only a namespace admin may delete them.
    Immutable,
}

impl TagRuleKind {
    /// The stored name (`protected`, `immutable`).
    pub fn as_str(self) -> &'static str {
        match self {
            TagRuleKind::Protected => "protected",
            TagRuleKind::Immutable => "immutable",
        }
    }

    /// Parses a stored or user-given name.
    pub fn parse(s: &str) -> Option<TagRuleKind> {
        match s {
            "protected" => Some(TagRuleKind::Protected),
            "immutable" => Some(TagRuleKind::Immutable),
            _ => None,
        }
    }
}

impl std::fmt::Display for TagRuleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored tag rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagRule {
    /// Its id.
    pub id: i64,
    /// Namespace (`acme`) or repository glob (`acme/web-*`).
    pub scope: String,
    /// Tag glob (`v*`, `latest`).
    pub pattern: String,
    /// Protected or immutable.
    pub kind: TagRuleKind,
    /// Creation time (Unix ms).
    pub created_at: i64,
    /// Who created it.
    pub created_by: Option<String>,
}

/// Decides, inside a write's transaction, whether a tag may be moved to
/// another manifest or removed: `Some(reason)` refuses the whole write with
/// [`Error::Refused`]`(reason)`.
pub type TagGuard = Arc<dyn Fn(&Tag) -> Option<String> + Send + Sync>;

fn rule(r: &sqlx::any::AnyRow) -> Result<TagRule> {
    let kind: String = r.try_get(3)?;
    Ok(TagRule {
        id: r.try_get(0)?,
        scope: r.try_get(1)?,
        pattern: r.try_get(2)?,
        kind: TagRuleKind::parse(&kind)
            .ok_or_else(|| Error::Corrupt(format!("unknown tag rule kind {kind:?}")))?,
        created_at: r.try_get(4)?,
        created_by: r.try_get(5)?,
    })
}

const COLUMNS: &str = "id, scope, pattern, kind, created_at, created_by";

fn audit_detail(op: &str, r: &TagRule) -> serde_json::Value {
    serde_json::json!({ "tag_rule": op, "id": r.id, "scope": r.scope, "pattern": r.pattern, "kind": r.kind })
}

/// Adds a rule; returns it and whether it was created (an identical rule
/// is returned as is, without an audit event).
pub(crate) async fn add(
    conn: &mut AnyConnection,
    scope: &str,
    pattern: &str,
    kind: TagRuleKind,
    actor: &Actor,
) -> Result<(TagRule, bool)> {
    let inserted = sqlx::query(&format!(
        "INSERT INTO tag_rules (scope, pattern, kind, created_at, created_by)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (scope, pattern, kind) DO NOTHING
         RETURNING {COLUMNS}"
    ))
    .bind(scope)
    .bind(pattern)
    .bind(kind.as_str())
    .bind(actor.at)
    .bind(&actor.name)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = inserted {
        let r = rule(&row)?;
        let event = actor
            .event(action::POLICY_CHANGE)
            .repository(scope)
            .detail(audit_detail("add", &r));
        audit::record(conn, &event).await?;
        return Ok((r, true));
    }
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM tag_rules WHERE scope = $1 AND pattern = $2 AND kind = $3"
    ))
    .bind(scope)
    .bind(pattern)
    .bind(kind.as_str())
    .fetch_one(&mut *conn)
    .await?;
    Ok((rule(&row)?, false))
}

/// Deletes rule `id` if its scope is `namespace` or below it; returns it.
pub(crate) async fn delete(
    conn: &mut AnyConnection,
    namespace: &berth_oci::Namespace,
    id: i64,
    actor: &Actor,
) -> Result<Option<TagRule>> {
    let row = sqlx::query(&format!(
        "DELETE FROM tag_rules WHERE id = $1 AND (scope = $2 OR (scope >= $3 AND scope < $4))
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(namespace.as_str())
    .bind(format!("{namespace}/"))
    .bind(format!("{namespace}0"))
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let r = rule(&row)?;
    let event = actor
        .event(action::POLICY_CHANGE)
        .repository(&r.scope)
        .detail(audit_detail("remove", &r));
    audit::record(conn, &event).await?;
    Ok(Some(r))
}

impl Meta {
    /// Adds a tag rule (see [`TagRule`]); returns it and whether it is new.
    pub async fn add_tag_rule(
        &self,
        scope: &str,
        pattern: &str,
        kind: TagRuleKind,
        actor: &Actor,
    ) -> Result<(TagRule, bool)> {
        let (scope, pattern, actor) = (scope.to_owned(), pattern.to_owned(), actor.clone());
        self.transact(move |c| {
            Box::pin(async move { add(c, &scope, &pattern, kind, &actor).await })
        })
        .await
    }

    /// Deletes rule `id` of `namespace` (scope `namespace` or below it).
    /// Returns the deleted rule, `None` if there is no such rule there.
    pub async fn delete_tag_rule(
        &self,
        namespace: &berth_oci::Namespace,
        id: i64,
        actor: &Actor,
    ) -> Result<Option<TagRule>> {
        let (namespace, actor) = (namespace.clone(), actor.clone());
        self.transact(move |c| Box::pin(async move { delete(c, &namespace, id, &actor).await }))
            .await
    }

    /// Every tag rule, by id.
    pub async fn tag_rules(&self) -> Result<Vec<TagRule>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM tag_rules ORDER BY id"))
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(rule).collect()
    }
}

impl Meta {
    /// [`Meta::put_manifest`], refusing ([`Error::Refused`]) to move any
    /// tag for which `guard` gives a reason.
    pub async fn put_manifest_guarded(
        &self,
        m: &crate::NewManifest,
        guard: TagGuard,
        actor: &Actor,
    ) -> Result<()> {
        let repository = m.repository.clone();
        let (m, actor) = (m.clone(), actor.clone());
        self.repository_write(&repository, move |c| {
            Box::pin(async move {
                crate::writes::put_manifest_guarded(c, &m, Some(&guard), &actor).await
            })
        })
        .await
    }

    /// [`Meta::delete_manifest`], refusing ([`Error::Refused`]) if a tag
    /// pointing to the manifest is one `guard` gives a reason for.
    pub async fn delete_manifest_guarded(
        &self,
        repository: &berth_oci::RepositoryName,
        digest: &berth_oci::Digest,
        guard: TagGuard,
        actor: &Actor,
    ) -> Result<Option<Vec<berth_oci::Tag>>> {
        let (repo, digest, actor) = (repository.clone(), digest.clone(), actor.clone());
        self.repository_write(repository, move |c| {
            Box::pin(async move {
                crate::writes::delete_manifest_guarded(c, &repo, &digest, Some(&guard), &actor)
                    .await
            })
        })
        .await
    }

    /// [`Meta::unlink_blob`], refusing ([`Error::Refused`]) if an image
    /// tagged with a tag `guard` gives a reason for uses the blob.
    pub async fn unlink_blob_guarded(
        &self,
        repository: &berth_oci::RepositoryName,
        digest: &berth_oci::Digest,
        guard: TagGuard,
        actor: &Actor,
    ) -> Result<bool> {
        let (repository, digest, actor) = (repository.clone(), digest.clone(), actor.clone());
        self.transact(move |c| {
            Box::pin(async move {
                crate::writes::unlink_blob_guarded(c, &repository, &digest, Some(&guard), &actor)
                    .await
            })
        })
        .await
    }

    /// [`Meta::delete_tag`], refusing ([`Error::Refused`]) if `guard` gives
    /// a reason for the tag.
    pub async fn delete_tag_guarded(
        &self,
        repository: &berth_oci::RepositoryName,
        tag: &berth_oci::Tag,
        guard: TagGuard,
        actor: &Actor,
    ) -> Result<bool> {
        let (repo, tag, actor) = (repository.clone(), tag.clone(), actor.clone());
        self.repository_write(repository, move |c| {
            Box::pin(async move {
                crate::writes::delete_tag_guarded(c, &repo, &tag, Some(&guard), &actor).await
            })
        })
        .await
    }
}
