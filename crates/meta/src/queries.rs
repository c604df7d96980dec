//! The metadata operations the registry services use.

use berth_oci::{Digest, RepositoryName, Tag};
use sqlx::Row;

use crate::{digest_at, repository_at, tag_at, Error, Meta, Result};

/// How a manifest references another piece of content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RefKind {
    /// A config or layer blob.
    Blob,
    /// A child manifest of an index.
    Manifest,
}

impl RefKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RefKind::Blob => "blob",
            RefKind::Manifest => "manifest",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<RefKind> {
        match s {
            "blob" => Ok(RefKind::Blob),
            "manifest" => Ok(RefKind::Manifest),
            other => Err(Error::Corrupt(format!("unknown reference kind {other:?}"))),
        }
    }
}

/// An index entry docker buildx marks as an attestation manifest
/// (provenance, SBOM), recorded on the index's reference to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationRef {
    /// The attestation manifest (a child of the index).
    pub manifest: Digest,
    /// The image it describes (`vnd.docker.reference.digest`), when the
    /// index names one.
    pub describes: Option<Digest>,
}

/// A manifest to record, with everything that must commit together with it.
#[derive(Debug, Clone)]
pub struct NewManifest {
    /// Repository name.
    pub repository: RepositoryName,
    /// Digest of `content`.
    pub digest: Digest,
    /// Media type.
    pub media_type: String,
    /// Artifact type reported by the referrers API.
    pub artifact_type: Option<String>,
    /// The bytes as pushed.
    pub content: Vec<u8>,
    /// Subject digest, for referrers.
    pub subject: Option<Digest>,
    /// Top-level annotations as a JSON object, for referrers.
    pub annotations: Option<String>,
    /// What it references: config and layer blobs, child manifests, and an
    /// index's blob entries (BuildKit's cache layers and config).
    pub references: Vec<(Digest, RefKind)>,
    /// Which of the child manifests are attestations (a subset of
    /// `references`; empty for images and most indexes).
    pub attestations: Vec<AttestationRef>,
    /// The blob references (a subset of `references`) that must be linked
    /// to the repository. They are checked again inside the transaction
    /// that stores the manifest, as are its child manifests, so that
    /// garbage collection or retention running between the registry's
    /// checks and the commit makes the push fail instead of leaving a
    /// manifest whose content is gone.
    pub required_blobs: Vec<Digest>,
    /// Mirrored content (a pull-through mirror's copy of an upstream's):
    /// its child manifests need not be stored yet (an index holds only
    /// the platforms pulled so far).
    pub sparse: bool,
    /// Tags to point at it.
    pub tags: Vec<Tag>,
    /// Push time (Unix ms).
    pub pushed_at: i64,
    /// What a scan on push would scan, if the namespace asks for it (see
    /// the `scans` module): the manifest itself for a container image, an
    /// index's platform images not scanned yet; empty for artifacts.
    pub scan_candidates: Vec<Digest>,
    /// The image's total size (see [`crate::tag_page`]) when the caller
    /// knows it from the sizes it checked: an image manifest's own bytes
    /// plus its distinct blobs. `None`: computed from the stored
    /// references in the write's transaction (an index), or left unknown
    /// for `sparse` content, whose size is then computed when read.
    pub total_size: Option<u64>,
}

/// A stored manifest.
#[derive(Debug, Clone)]
pub struct ManifestRecord {
    /// Digest.
    pub digest: Digest,
    /// Media type.
    pub media_type: String,
    /// The bytes as pushed.
    pub content: Vec<u8>,
}

/// A manifest that refers to a subject.
#[derive(Debug, Clone)]
pub struct Referrer {
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size.
    pub size: i64,
    /// Its artifact type.
    pub artifact_type: Option<String>,
    /// Its annotations (JSON object).
    pub annotations: Option<String>,
}

impl Meta {
    /// Size of `digest` if it is linked to `repository` (a timed read: the blob pull path).
    pub async fn repository_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>> {
        crate::db::timed_read(self.repository_blob_query(repository, digest)).await
    }

    async fn repository_blob_query(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>> {
        let row = sqlx::query(
            "SELECT b.size FROM repositories r
             JOIN repository_blobs rb ON rb.repository_id = r.id
             JOIN blobs b ON b.digest = rb.digest
             WHERE r.name = $1 AND rb.digest = $2",
        )
        .bind(repository.as_str())
        .bind(digest.as_str())
        .fetch_optional(&self.read)
        .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .map(|s| s as u64))
    }

    /// Names of the repositories `digest` is linked to, in name order,
    /// at most `limit`.
    pub async fn repositories_with_blob(
        &self,
        digest: &Digest,
        limit: i64,
    ) -> Result<Vec<RepositoryName>> {
        let rows = sqlx::query(
            "SELECT r.name FROM repository_blobs rb
             JOIN repositories r ON r.id = rb.repository_id
             WHERE rb.digest = $1
             ORDER BY r.name
             LIMIT $2",
        )
        .bind(digest.as_str())
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| repository_at(r, 0)).collect()
    }

    /// Size of `digest` if the registry stores it for any repository.
    pub async fn blob(&self, digest: &Digest) -> Result<Option<u64>> {
        let row = sqlx::query("SELECT size FROM blobs WHERE digest = $1")
            .bind(digest.as_str())
            .fetch_optional(&self.read)
            .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .map(|s| s as u64))
    }

    /// Which of `digests` are not linked to `repository` as blobs.
    pub async fn missing_blobs(
        &self,
        repository: &RepositoryName,
        digests: &[Digest],
    ) -> Result<Vec<Digest>> {
        let mut missing = Vec::new();
        for d in digests {
            if self.repository_blob(repository, d).await?.is_none() {
                missing.push(d.clone());
            }
        }
        Ok(missing)
    }

    /// Which of `digests` are not manifests of `repository`.
    pub async fn missing_manifests(
        &self,
        repository: &RepositoryName,
        digests: &[Digest],
    ) -> Result<Vec<Digest>> {
        let mut missing = Vec::new();
        for d in digests {
            let row = sqlx::query(
                "SELECT 1 FROM manifests m JOIN repositories r ON r.id = m.repository_id
                 WHERE r.name = $1 AND m.digest = $2",
            )
            .bind(repository.as_str())
            .bind(d.as_str())
            .fetch_optional(&self.read)
            .await?;
            if row.is_none() {
                missing.push(d.clone());
            }
        }
        Ok(missing)
    }

    /// The manifest `tag` points to in `repository` (a timed read: the manifest pull path).
    pub async fn manifest_by_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<ManifestRecord>> {
        crate::db::timed_read(self.manifest_by_tag_query(repository, tag)).await
    }

    async fn manifest_by_tag_query(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<ManifestRecord>> {
        let row = sqlx::query(
            "SELECT m.digest, m.media_type, m.content FROM repositories r
             JOIN tags t ON t.repository_id = r.id
             JOIN manifests m ON m.repository_id = r.id AND m.digest = t.digest
             WHERE r.name = $1 AND t.name = $2",
        )
        .bind(repository.as_str())
        .bind(tag.as_str())
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| record(&r)).transpose()
    }

    /// The manifest `digest` of `repository` (a timed read: the manifest pull path).
    pub async fn manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>> {
        crate::db::timed_read(self.manifest_query(repository, digest)).await
    }

    async fn manifest_query(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>> {
        let row = sqlx::query(
            "SELECT m.digest, m.media_type, m.content FROM repositories r
             JOIN manifests m ON m.repository_id = r.id
             WHERE r.name = $1 AND m.digest = $2",
        )
        .bind(repository.as_str())
        .bind(digest.as_str())
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| record(&r)).transpose()
    }

    /// Up to `limit` tags of `repository` sorted after `last`; `None` if the
    /// repository does not exist.
    pub async fn tags(
        &self,
        repository: &RepositoryName,
        last: Option<&str>,
        limit: i64,
    ) -> Result<Option<Vec<Tag>>> {
        let mut conn = self.read.acquire().await?;
        let Some(row) = sqlx::query("SELECT id FROM repositories WHERE name = $1")
            .bind(repository.as_str())
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        let repo: i64 = row.try_get(0)?;
        let rows = sqlx::query(
            "SELECT name FROM tags WHERE repository_id = $1 AND name > $2 ORDER BY name LIMIT $3",
        )
        .bind(repo)
        .bind(last.unwrap_or(""))
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
        Ok(Some(
            rows.iter().map(|r| tag_at(r, 0)).collect::<Result<_>>()?,
        ))
    }

    /// Up to `limit` repository names sorted after `last`.
    pub async fn repositories(
        &self,
        last: Option<&str>,
        limit: i64,
    ) -> Result<Vec<RepositoryName>> {
        let rows =
            sqlx::query("SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2")
                .bind(last.unwrap_or(""))
                .bind(limit)
                .fetch_all(&self.read)
                .await?;
        rows.iter().map(|r| repository_at(r, 0)).collect()
    }

    /// A page of the repositories readable by someone who may read every
    /// repository of `namespaces` (their own, their organisations'),
    /// after `last`: those, plus every public one (a public override, or
    /// no override under a public namespace). Namespaces nobody owns are
    /// private. The query is driven by the namespaces and overrides, so
    /// its cost follows what is listed, not how many private repositories
    /// exist.
    pub async fn readable_repositories(
        &self,
        namespaces: &[String],
        last: Option<&str>,
        limit: i64,
    ) -> Result<Vec<RepositoryName>> {
        let mut sql = String::from(
            "SELECT p.name FROM (
                 SELECT r.name AS name FROM namespaces n JOIN repositories r ON r.name = n.name
                 WHERE n.visibility = 'public' AND r.name > $1
                 UNION ALL
                 SELECT r.name AS name FROM namespaces n JOIN repositories r
                   ON r.name >= n.name || '/' AND r.name < n.name || '0'
                 WHERE n.visibility = 'public' AND r.name > $1
             ) p
             WHERE NOT EXISTS (SELECT 1 FROM repository_visibility v
                               WHERE v.repository = p.name AND v.visibility = 'private')
             UNION
             SELECT v.repository FROM repository_visibility v
               JOIN repositories r ON r.name = v.repository
             WHERE v.visibility = 'public' AND v.repository > $1",
        );
        let mut binds: Vec<String> = Vec::new();
        if !namespaces.is_empty() {
            let mut ors = Vec::new();
            for ns in namespaces {
                let i = binds.len() + 3;
                ors.push(format!(
                    "name = ${i} OR (name >= ${} AND name < ${})",
                    i + 1,
                    i + 2
                ));
                binds.push(ns.clone());
                binds.push(format!("{ns}/"));
                binds.push(format!("{ns}0"));
            }
            sql.push_str(&format!(
                " UNION SELECT name FROM repositories WHERE name > $1 AND ({})",
                ors.join(" OR ")
            ));
        }
        sql.push_str(" ORDER BY 1 LIMIT $2");
        let mut q = sqlx::query(&sql).bind(last.unwrap_or("")).bind(limit);
        for b in &binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(&self.read).await?;
        rows.iter().map(|r| repository_at(r, 0)).collect()
    }

    /// Manifests of `repository` whose subject is `subject`, optionally only
    /// those of `artifact_type`, sorted by digest.
    pub async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let rows = sqlx::query(
            "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations
             FROM repositories r JOIN manifests m ON m.repository_id = r.id
             WHERE r.name = $1 AND m.subject = $2 AND ($3 IS NULL OR m.artifact_type = $3)
             ORDER BY m.digest",
        )
        .bind(repository.as_str())
        .bind(subject.as_str())
        .bind(artifact_type)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Referrer {
                    digest: digest_at(r, 0)?,
                    media_type: r.try_get(1)?,
                    size: r.try_get(2)?,
                    artifact_type: r.try_get(3)?,
                    annotations: r.try_get(4)?,
                })
            })
            .collect()
    }
}

fn record(r: &sqlx::any::AnyRow) -> Result<ManifestRecord> {
    let content: Vec<u8> = r
        .try_get(2)
        .map_err(|e| Error::Corrupt(format!("manifest content: {e}")))?;
    Ok(ManifestRecord {
        digest: digest_at(r, 0)?,
        media_type: r.try_get(1)?,
        content,
    })
}
