//! What a repository holds, for the management API and lifecycle jobs:
//! tags and manifests with their sizes, push times and pull statistics, and
//! the references between them (without manifest bodies).

use serde::Serialize;
use sqlx::Row;

use berth_oci::{Digest, Tag};

use crate::writes::ROLE_ATTESTATION;
use crate::{digest_at, optional_digest_at, tag_at, Meta, RefKind, Result};

/// A tag with its pull statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TagInfo {
    /// Tag name.
    pub name: Tag,
    /// Manifest it points to.
    pub digest: Digest,
    /// When it was last set (Unix ms).
    pub updated_at: i64,
    /// GETs through this tag.
    pub pull_count: i64,
    /// Last GET through this tag (Unix ms).
    pub last_pulled_at: Option<i64>,
}

/// A manifest without its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestInfo {
    /// Digest.
    pub digest: Digest,
    /// Media type.
    pub media_type: String,
    /// Artifact type, if any.
    pub artifact_type: Option<String>,
    /// Subject digest (signatures, SBOMs, ...).
    pub subject: Option<Digest>,
    /// Bytes of the manifest itself.
    pub size: i64,
    /// Push time (Unix ms).
    pub pushed_at: i64,
    /// GETs of this manifest (by tag or digest).
    pub pull_count: i64,
    /// Last GET (Unix ms).
    pub last_pulled_at: Option<i64>,
}

/// A reference from a manifest to a blob or a child manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRef {
    /// The referring manifest.
    pub parent: Digest,
    /// What it references.
    pub child: Digest,
    /// Blob or manifest.
    pub kind: RefKind,
    /// For blobs the registry stores: their size.
    pub blob_size: Option<i64>,
    /// Whether the child is the parent index's attestation manifest
    /// (docker buildx provenance or SBOM).
    pub attestation: bool,
    /// For an attestation: the image it describes, when the index names it.
    pub describes: Option<Digest>,
}

/// Tags, manifests and references of one repository.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Tags by name.
    pub tags: Vec<TagInfo>,
    /// Manifests by digest.
    pub manifests: Vec<ManifestInfo>,
    /// References, by parent.
    pub references: Vec<ManifestRef>,
}

impl Inventory {
    /// `(index, child manifest)` pairs.
    pub fn children(&self) -> impl Iterator<Item = (&Digest, &Digest)> {
        self.references
            .iter()
            .filter(|r| r.kind == RefKind::Manifest)
            .map(|r| (&r.parent, &r.child))
    }

    /// `(index, attestation manifest, image it describes)` triples.
    pub fn attestations(&self) -> impl Iterator<Item = (&Digest, &Digest, Option<&Digest>)> {
        self.references
            .iter()
            .filter(|r| r.attestation)
            .map(|r| (&r.parent, &r.child, r.describes.as_ref()))
    }

    /// `(manifest, blob, blob size)` triples (size 0 when unknown).
    pub fn blobs(&self) -> impl Iterator<Item = (&Digest, &Digest, i64)> {
        self.references
            .iter()
            .filter(|r| r.kind == RefKind::Blob)
            .map(|r| (&r.parent, &r.child, r.blob_size.unwrap_or(0)))
    }
}

impl Meta {
    /// What `repository` holds; `None` if it does not exist.
    pub async fn inventory(
        &self,
        repository: &berth_oci::RepositoryName,
    ) -> Result<Option<Inventory>> {
        let mut conn = self.read.acquire().await?;
        let Some(row) = sqlx::query("SELECT id FROM repositories WHERE name = $1")
            .bind(repository.as_str())
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        let repo: i64 = row.try_get(0)?;
        let tags = sqlx::query(
            "SELECT name, digest, updated_at, pull_count, last_pulled_at FROM tags
             WHERE repository_id = $1 ORDER BY name",
        )
        .bind(repo)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| {
            Ok(TagInfo {
                name: tag_at(r, 0)?,
                digest: digest_at(r, 1)?,
                updated_at: r.try_get(2)?,
                pull_count: r.try_get(3)?,
                last_pulled_at: r.try_get(4)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let manifests = sqlx::query(
            "SELECT digest, media_type, artifact_type, subject, size, pushed_at, pull_count,
                    last_pulled_at
             FROM manifests WHERE repository_id = $1 ORDER BY digest",
        )
        .bind(repo)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| {
            Ok(ManifestInfo {
                digest: digest_at(r, 0)?,
                media_type: r.try_get(1)?,
                artifact_type: r.try_get(2)?,
                subject: optional_digest_at(r, 3)?,
                size: r.try_get(4)?,
                pushed_at: r.try_get(5)?,
                pull_count: r.try_get(6)?,
                last_pulled_at: r.try_get(7)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let references = sqlx::query(
            "SELECT mr.parent, mr.child, mr.kind, b.size, mr.role, mr.describes
             FROM manifest_references mr
             LEFT JOIN blobs b ON mr.kind = 'blob' AND b.digest = mr.child
             WHERE mr.repository_id = $1 ORDER BY mr.parent, mr.child",
        )
        .bind(repo)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| {
            let kind: String = r.try_get(2)?;
            let role: Option<String> = r.try_get(4)?;
            Ok(ManifestRef {
                parent: digest_at(r, 0)?,
                child: digest_at(r, 1)?,
                kind: RefKind::parse(&kind)?,
                blob_size: r.try_get(3)?,
                attestation: role.as_deref() == Some(ROLE_ATTESTATION),
                describes: optional_digest_at(r, 5)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        Ok(Some(Inventory {
            tags,
            manifests,
            references,
        }))
    }
}
