//! The registry's write operations, each a function over one connection so
//! that the same code runs in its own transaction (PostgreSQL) or inside a
//! batched group commit (SQLite, see [`crate::commit`]). Other modules may
//! call them inside their own transactions.

use sqlx::{AnyConnection, Row};

use crate::audit::{self, action, Actor};
use crate::queries::{NewManifest, RefKind};
use crate::rules::TagGuard;
use crate::{tag_at, Error, Result};
use berth_oci::{Digest, RepositoryName, Tag};

/// `manifest_references.role` of an index's attestation manifest.
pub(crate) const ROLE_ATTESTATION: &str = "attestation";

pub(crate) async fn ensure_repository(
    conn: &mut AnyConnection,
    name: &RepositoryName,
    now: i64,
) -> Result<i64> {
    let row = sqlx::query(
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET name = excluded.name
         RETURNING id",
    )
    .bind(name.as_str())
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get::<i64, _>(0)?)
}

pub(crate) async fn repository_id(
    conn: &mut AnyConnection,
    name: &RepositoryName,
) -> Result<Option<i64>> {
    let row = sqlx::query("SELECT id FROM repositories WHERE name = $1")
        .bind(name.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|r| r.try_get::<i64, _>(0)).transpose()?)
}

pub(crate) async fn link_blob(
    conn: &mut AnyConnection,
    repository: &RepositoryName,
    digest: &Digest,
    size: u64,
    now: i64,
) -> Result<()> {
    let repo = ensure_repository(conn, repository, now).await?;
    // The no-op update locks an existing row until commit, so that a
    // garbage-collection sweep of this blob waits for the link below and
    // then keeps the blob, instead of deleting the row under it (which on
    // PostgreSQL would fail this insert on the foreign key).
    sqlx::query(
        "INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (digest) DO UPDATE SET size = blobs.size",
    )
    .bind(digest.as_str())
    .bind(size as i64)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    // `linked_at` is the last time the blob was uploaded or mounted here:
    // a push in flight re-uploading a blob whose old link nobody
    // references gets a fresh grace period from garbage collection.
    sqlx::query(
        "INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES ($1, $2, $3)
         ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = excluded.linked_at",
    )
    .bind(repo)
    .bind(digest.as_str())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Why `digest` may not go from repository `repo`, if a tag that `guard`
/// refuses to delete points to a manifest from which `digest` is reachable
/// (an index's children, and their config and layer blobs): deleting it
/// would break that image, and garbage collection would make it permanent.
pub(crate) async fn guarded_reach(
    conn: &mut AnyConnection,
    repo: i64,
    digest: &Digest,
    guard: &TagGuard,
) -> Result<Option<String>> {
    let tags = sqlx::query("SELECT name, digest FROM tags WHERE repository_id = $1 ORDER BY name")
        .bind(repo)
        .fetch_all(&mut *conn)
        .await?;
    let mut checked: Vec<String> = Vec::new();
    for row in &tags {
        let name = tag_at(row, 0)?;
        let root: String = row.try_get(1)?;
        if checked.contains(&root) {
            continue;
        }
        let Some(reason) = guard(&name) else {
            continue;
        };
        checked.push(root.clone());
        let reached = sqlx::query(
            "WITH RECURSIVE reach(d) AS (
                 SELECT CAST($2 AS TEXT)
                 UNION
                 SELECT r.child FROM manifest_references r JOIN reach ON r.parent = reach.d
                 WHERE r.repository_id = $1
             )
             SELECT 1 FROM reach WHERE d = $3 LIMIT 1",
        )
        .bind(repo)
        .bind(&root)
        .bind(digest.as_str())
        .fetch_optional(&mut *conn)
        .await?
        .is_some();
        if reached {
            return Ok(Some(format!(
                "is part of the image tagged {name:?} ({root}), and {reason}"
            )));
        }
    }
    Ok(None)
}

pub(crate) async fn unlink_blob(
    conn: &mut AnyConnection,
    repository: &RepositoryName,
    digest: &Digest,
    actor: &Actor,
) -> Result<bool> {
    unlink_blob_guarded(conn, repository, digest, None, actor).await
}

/// Unlinks a blob from a repository, refusing ([`Error::Refused`]) when
/// the `guard` protects an image that uses it ([`guarded_reach`]).
pub(crate) async fn unlink_blob_guarded(
    conn: &mut AnyConnection,
    repository: &RepositoryName,
    digest: &Digest,
    guard: Option<&TagGuard>,
    actor: &Actor,
) -> Result<bool> {
    if let Some(g) = guard {
        if let Some(repo) = repository_id(conn, repository).await? {
            if let Some(reason) = guarded_reach(conn, repo, digest, g).await? {
                return Err(Error::Refused(format!("blob {digest} {reason}")));
            }
        }
    }
    let done = sqlx::query(
        "DELETE FROM repository_blobs
         WHERE digest = $2 AND repository_id = (SELECT id FROM repositories WHERE name = $1)",
    )
    .bind(repository.as_str())
    .bind(digest.as_str())
    .execute(&mut *conn)
    .await?;
    let existed = done.rows_affected() > 0;
    if existed {
        let event = actor
            .event(action::BLOB_DELETE)
            .repository(repository.as_str())
            .digest(digest.as_str());
        audit::record(conn, &event).await?;
    }
    Ok(existed)
}

/// Stores a manifest with its references and tags, and records the push
/// (and every tag it moved) in the audit log. A tag the `guard` refuses is
/// never moved: it is created if absent, left alone if it already points to
/// this manifest, and otherwise the whole write fails with
/// [`Error::Refused`]. The insert-or-nothing is what makes two concurrent
/// pushes of such a tag serialise on the tag's row, on both engines.
pub(crate) async fn put_manifest(
    conn: &mut AnyConnection,
    m: &NewManifest,
    actor: &Actor,
) -> Result<()> {
    put_manifest_guarded(conn, m, None, actor).await
}

/// [`put_manifest`] with a [`TagGuard`] (see the module of tag rules).
pub(crate) async fn put_manifest_guarded(
    conn: &mut AnyConnection,
    m: &NewManifest,
    guard: Option<&TagGuard>,
    actor: &Actor,
) -> Result<()> {
    let repo = ensure_repository(conn, &m.repository, m.pushed_at).await?;
    let inserted = sqlx::query(
        "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, size, content,
                                subject, annotations, pushed_at, total_size)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (repository_id, digest) DO NOTHING",
    )
    .bind(repo)
    .bind(m.digest.as_str())
    .bind(&m.media_type)
    .bind(m.artifact_type.as_deref())
    .bind(m.content.len() as i64)
    .bind(m.content.as_slice())
    .bind(m.subject.as_ref().map(|d| d.as_str()))
    .bind(m.annotations.as_deref())
    .bind(m.pushed_at)
    .bind(m.total_size.map(|n| n.min(i64::MAX as u64) as i64))
    .execute(&mut *conn)
    .await?;
    // The registry checked the references before this transaction; check
    // them again now that the repository row is locked (on PostgreSQL the
    // upsert in `ensure_repository` holds it until commit, and GC and
    // retention take the same lock), so that a concurrent sweep either
    // sees this manifest's references or makes this push fail.
    verify_references(conn, repo, m).await?;
    if inserted.rows_affected() > 0 {
        crate::scans::request_on_push(conn, repo, &m.repository, &m.scan_candidates, m.pushed_at)
            .await?;
        for (child, kind) in &m.references {
            let attestation = match kind {
                RefKind::Manifest => m.attestations.iter().find(|a| a.manifest == *child),
                RefKind::Blob => None,
            };
            sqlx::query(
                "INSERT INTO manifest_references (repository_id, parent, child, kind, role, describes)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(repo)
            .bind(m.digest.as_str())
            .bind(child.as_str())
            .bind(kind.as_str())
            .bind(attestation.map(|_| ROLE_ATTESTATION))
            .bind(attestation.and_then(|a| a.describes.as_ref().map(|d| d.as_str())))
            .execute(&mut *conn)
            .await?;
        }
        if m.total_size.is_none() && !m.sparse {
            crate::tag_page::store_total(conn, repo, &m.digest).await?;
        }
    }
    for tag in &m.tags {
        if let Some(reason) = guard.and_then(|g| g(tag)) {
            put_guarded_tag(conn, repo, tag, m, reason).await?;
            continue;
        }
        let tag = tag.as_str();
        let previous: Option<String> =
            sqlx::query("SELECT digest FROM tags WHERE repository_id = $1 AND name = $2")
                .bind(repo)
                .bind(tag)
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| r.try_get::<String, _>(0))
                .transpose()?;
        if let Some(previous) = previous.filter(|p| p != m.digest.as_str()) {
            let event = actor
                .event(action::TAG_MOVE)
                .repository(m.repository.as_str())
                .digest(m.digest.as_str())
                .tag(tag)
                .detail(serde_json::json!({ "from": previous }));
            audit::record(conn, &event).await?;
        }
        sqlx::query(
            "INSERT INTO tags (repository_id, name, digest, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (repository_id, name)
             DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
        )
        .bind(repo)
        .bind(tag)
        .bind(m.digest.as_str())
        .bind(m.pushed_at)
        .execute(&mut *conn)
        .await?;
    }
    let event = actor
        .event(action::PUSH)
        .repository(m.repository.as_str())
        .digest(m.digest.as_str())
        .detail(serde_json::json!({
            "tags": m.tags, "media_type": m.media_type, "size": m.content.len(),
        }));
    audit::record(conn, &event).await?;
    Ok(())
}

/// Creates `tag` for `m` unless it exists; refuses with `reason` if it
/// points to another manifest.
async fn put_guarded_tag(
    conn: &mut AnyConnection,
    repo: i64,
    tag: &Tag,
    m: &NewManifest,
    reason: String,
) -> Result<()> {
    let tag = tag.as_str();
    let inserted = sqlx::query(
        "INSERT INTO tags (repository_id, name, digest, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (repository_id, name) DO NOTHING",
    )
    .bind(repo)
    .bind(tag)
    .bind(m.digest.as_str())
    .bind(m.pushed_at)
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() > 0 {
        return Ok(());
    }
    let current: Option<String> =
        sqlx::query("SELECT digest FROM tags WHERE repository_id = $1 AND name = $2")
            .bind(repo)
            .bind(tag)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.try_get::<String, _>(0))
            .transpose()?;
    match current {
        Some(d) if d != m.digest.as_str() => Err(Error::Refused(reason)),
        _ => Ok(()),
    }
}

/// Fails with [`Error::MissingReference`] if a required blob is not linked
/// to the repository or a child manifest is not stored in it.
async fn verify_references(conn: &mut AnyConnection, repo: i64, m: &NewManifest) -> Result<()> {
    for digest in &m.required_blobs {
        let linked =
            sqlx::query("SELECT 1 FROM repository_blobs WHERE repository_id = $1 AND digest = $2")
                .bind(repo)
                .bind(digest.as_str())
                .fetch_optional(&mut *conn)
                .await?;
        if linked.is_none() {
            return Err(Error::MissingReference {
                kind: "blob",
                digest: digest.clone(),
                repository: m.repository.clone(),
            });
        }
    }
    for (digest, kind) in &m.references {
        if *kind != RefKind::Manifest || m.sparse {
            continue;
        }
        let stored =
            sqlx::query("SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2")
                .bind(repo)
                .bind(digest.as_str())
                .fetch_optional(&mut *conn)
                .await?;
        if stored.is_none() {
            return Err(Error::MissingReference {
                kind: "manifest",
                digest: digest.clone(),
                repository: m.repository.clone(),
            });
        }
    }
    Ok(())
}

pub(crate) async fn delete_manifest(
    conn: &mut AnyConnection,
    repository: &RepositoryName,
    digest: &Digest,
    actor: &Actor,
) -> Result<Option<Vec<Tag>>> {
    delete_manifest_guarded(conn, repository, digest, None, actor).await
}

/// Deletes a manifest and its tags; a tag the `guard` refuses fails the
/// whole write with [`Error::Refused`] (the tags are deleted first and
/// checked as returned, so no tag can slip onto the manifest in between).
pub(crate) async fn delete_manifest_guarded(
    conn: &mut AnyConnection,
    repository: &RepositoryName,
    digest: &Digest,
    guard: Option<&TagGuard>,
    actor: &Actor,
) -> Result<Option<Vec<Tag>>> {
    let Some(repo) = repository_id(conn, repository).await? else {
        return Ok(None);
    };
    let tags: Vec<Tag> =
        sqlx::query("DELETE FROM tags WHERE repository_id = $1 AND digest = $2 RETURNING name")
            .bind(repo)
            .bind(digest.as_str())
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| tag_at(r, 0))
            .collect::<Result<_>>()?;
    if let Some(g) = guard {
        let mut sorted = tags.clone();
        sorted.sort();
        if let Some(reason) = sorted.iter().find_map(|t| g(t)) {
            return Err(Error::Refused(reason));
        }
        if let Some(reason) = guarded_reach(conn, repo, digest, g).await? {
            return Err(Error::Refused(format!("manifest {digest} {reason}")));
        }
    }
    sqlx::query("DELETE FROM manifest_references WHERE repository_id = $1 AND parent = $2")
        .bind(repo)
        .bind(digest.as_str())
        .execute(&mut *conn)
        .await?;
    let done = sqlx::query("DELETE FROM manifests WHERE repository_id = $1 AND digest = $2")
        .bind(repo)
        .bind(digest.as_str())
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    let event = actor
        .event(action::MANIFEST_DELETE)
        .repository(repository.as_str())
        .digest(digest.as_str())
        .detail(serde_json::json!({ "tags": tags }));
    audit::record(conn, &event).await?;
    Ok(Some(tags))
}

pub(crate) async fn delete_tag(
    conn: &mut AnyConnection,
    repository: &RepositoryName,
    tag: &Tag,
    actor: &Actor,
) -> Result<bool> {
    delete_tag_guarded(conn, repository, tag, None, actor).await
}

/// Deletes a tag unless the `guard` refuses it ([`Error::Refused`]).
pub(crate) async fn delete_tag_guarded(
    conn: &mut AnyConnection,
    repository: &RepositoryName,
    tag: &Tag,
    guard: Option<&TagGuard>,
    actor: &Actor,
) -> Result<bool> {
    let row = sqlx::query(
        "DELETE FROM tags
         WHERE name = $2 AND repository_id = (SELECT id FROM repositories WHERE name = $1)
         RETURNING digest",
    )
    .bind(repository.as_str())
    .bind(tag.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    if let Some(reason) = guard.and_then(|g| g(tag)) {
        return Err(Error::Refused(reason));
    }
    let digest: String = row.try_get(0)?;
    let event = actor
        .event(action::TAG_DELETE)
        .repository(repository.as_str())
        .digest(&digest)
        .tag(tag.as_str());
    audit::record(conn, &event).await?;
    Ok(true)
}
