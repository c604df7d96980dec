//! The metadata operations the registry services use.

use sqlx::Row;

use crate::{Error, Meta, Result};

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

/// A manifest to record, with everything that must commit together with it.
#[derive(Debug, Clone)]
pub struct NewManifest {
    /// Repository name.
    pub repository: String,
    /// Digest of `content`.
    pub digest: String,
    /// Media type.
    pub media_type: String,
    /// Artifact type reported by the referrers API.
    pub artifact_type: Option<String>,
    /// The bytes as pushed.
    pub content: Vec<u8>,
    /// Subject digest, for referrers.
    pub subject: Option<String>,
    /// Top-level annotations as a JSON object, for referrers.
    pub annotations: Option<String>,
    /// What it references.
    pub references: Vec<(String, RefKind)>,
    /// The blob references (a subset of `references`) that must be linked
    /// to the repository. They are checked again inside the transaction
    /// that stores the manifest, as are its child manifests, so that
    /// garbage collection or retention running between the registry's
    /// checks and the commit makes the push fail instead of leaving a
    /// manifest whose content is gone.
    pub required_blobs: Vec<String>,
    /// Tags to point at it.
    pub tags: Vec<String>,
    /// Push time (Unix ms).
    pub pushed_at: i64,
}

/// A stored manifest.
#[derive(Debug, Clone)]
pub struct ManifestRecord {
    /// Digest.
    pub digest: String,
    /// Media type.
    pub media_type: String,
    /// The bytes as pushed.
    pub content: Vec<u8>,
}

/// A manifest that refers to a subject.
#[derive(Debug, Clone)]
pub struct Referrer {
    /// Its digest.
    pub digest: String,
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
    /// Size of `digest` if it is linked to `repository`.
    pub async fn repository_blob(&self, repository: &str, digest: &str) -> Result<Option<u64>> {
        let row = sqlx::query(
            "SELECT b.size FROM repositories r
             JOIN repository_blobs rb ON rb.repository_id = r.id
             JOIN blobs b ON b.digest = rb.digest
             WHERE r.name = $1 AND rb.digest = $2",
        )
        .bind(repository)
        .bind(digest)
        .fetch_optional(&self.read)
        .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .map(|s| s as u64))
    }

    /// Names of the repositories `digest` is linked to, in name order,
    /// at most `limit`.
    pub async fn repositories_with_blob(&self, digest: &str, limit: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT r.name FROM repository_blobs rb
             JOIN repositories r ON r.id = rb.repository_id
             WHERE rb.digest = $1
             ORDER BY r.name
             LIMIT $2",
        )
        .bind(digest)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(Into::into))
            .collect()
    }

    /// Size of `digest` if the registry stores it for any repository.
    pub async fn blob(&self, digest: &str) -> Result<Option<u64>> {
        let row = sqlx::query("SELECT size FROM blobs WHERE digest = $1")
            .bind(digest)
            .fetch_optional(&self.read)
            .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()?
            .map(|s| s as u64))
    }

    /// Which of `digests` are not linked to `repository` as blobs.
    pub async fn missing_blobs(&self, repository: &str, digests: &[String]) -> Result<Vec<String>> {
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
        repository: &str,
        digests: &[String],
    ) -> Result<Vec<String>> {
        let mut missing = Vec::new();
        for d in digests {
            let row = sqlx::query(
                "SELECT 1 FROM manifests m JOIN repositories r ON r.id = m.repository_id
                 WHERE r.name = $1 AND m.digest = $2",
            )
            .bind(repository)
            .bind(d)
            .fetch_optional(&self.read)
            .await?;
            if row.is_none() {
                missing.push(d.clone());
            }
        }
        Ok(missing)
    }

    /// The manifest `tag` points to in `repository`.
    pub async fn manifest_by_tag(
        &self,
        repository: &str,
        tag: &str,
    ) -> Result<Option<ManifestRecord>> {
        let row = sqlx::query(
            "SELECT m.digest, m.media_type, m.content FROM repositories r
             JOIN tags t ON t.repository_id = r.id
             JOIN manifests m ON m.repository_id = r.id AND m.digest = t.digest
             WHERE r.name = $1 AND t.name = $2",
        )
        .bind(repository)
        .bind(tag)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| record(&r)).transpose()
    }

    /// The manifest `digest` of `repository`.
    pub async fn manifest(&self, repository: &str, digest: &str) -> Result<Option<ManifestRecord>> {
        let row = sqlx::query(
            "SELECT m.digest, m.media_type, m.content FROM repositories r
             JOIN manifests m ON m.repository_id = r.id
             WHERE r.name = $1 AND m.digest = $2",
        )
        .bind(repository)
        .bind(digest)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| record(&r)).transpose()
    }

    /// Up to `limit` tags of `repository` sorted after `last`; `None` if the
    /// repository does not exist.
    pub async fn tags(
        &self,
        repository: &str,
        last: Option<&str>,
        limit: i64,
    ) -> Result<Option<Vec<String>>> {
        let mut conn = self.read.acquire().await?;
        let Some(row) = sqlx::query("SELECT id FROM repositories WHERE name = $1")
            .bind(repository)
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
            rows.iter()
                .map(|r| r.try_get::<String, _>(0))
                .collect::<Result<_, _>>()?,
        ))
    }

    /// Up to `limit` repository names sorted after `last`.
    pub async fn repositories(&self, last: Option<&str>, limit: i64) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2")
                .bind(last.unwrap_or(""))
                .bind(limit)
                .fetch_all(&self.read)
                .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<String, _>(0))
            .collect::<Result<_, _>>()?)
    }

    /// Manifests of `repository` whose subject is `subject`, optionally only
    /// those of `artifact_type`, sorted by digest.
    pub async fn referrers(
        &self,
        repository: &str,
        subject: &str,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let rows = sqlx::query(
            "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations
             FROM repositories r JOIN manifests m ON m.repository_id = r.id
             WHERE r.name = $1 AND m.subject = $2 AND ($3 IS NULL OR m.artifact_type = $3)
             ORDER BY m.digest",
        )
        .bind(repository)
        .bind(subject)
        .bind(artifact_type)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Referrer {
                    digest: r.try_get(0)?,
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
        digest: r.try_get(0)?,
        media_type: r.try_get(1)?,
        content,
    })
}
