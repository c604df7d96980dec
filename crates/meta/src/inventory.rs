//! What a repository holds, for the management API and lifecycle jobs:
//! tags and manifests with their sizes, push times and pull statistics, and
//! the references between them (without manifest bodies).

use std::sync::Arc;

use serde::Serialize;
use sqlx::Row;

use berth_oci::{Digest, Tag};

use crate::writes::ROLE_ATTESTATION;
use crate::{Dialect, Error, Meta, RefKind, Result};

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    ///
    /// Each table comes back as one JSON value (an array of rows, each an
    /// array of columns) built by the database, not as a row per entry:
    /// a repository of 10,000 tags holds some 250,000 values, and reading
    /// them one by one through the driver (each copied on SQLite's worker
    /// thread and handed to the runtime's) took most of a retention plan's
    /// time (docs/benchmarks.md, "Web UI: server time per page").
    ///
    /// On SQLite an inventory read is kept until this process changes the
    /// repository (the `inventory_cache` module): the same repository read
    /// again is not read from the database.
    pub async fn inventory(
        &self,
        repository: &berth_oci::RepositoryName,
    ) -> Result<Option<Arc<Inventory>>> {
        if let Some(kept) = self.inventories.get(repository.as_str()) {
            return Ok(Some(kept));
        }
        let ticket = self.inventories.ticket();
        let Some(inv) = self.read_inventory(repository).await? else {
            return Ok(None);
        };
        let inv = Arc::new(inv);
        self.inventories.fill(repository.as_str(), ticket, &inv);
        Ok(Some(inv))
    }

    /// The three tables are read at once, each on a connection of its own
    /// (their SQL is most of the time; SQLite runs each on its
    /// connection's thread). Like consecutive statements outside a
    /// transaction, they may see a write that commits in between; the
    /// plan and the views take a tag or reference to a missing manifest
    /// as gone, and the kept copy is dropped by that write.
    async fn read_inventory(
        &self,
        repository: &berth_oci::RepositoryName,
    ) -> Result<Option<Inventory>> {
        let Some(row) = sqlx::query("SELECT id FROM repositories WHERE name = $1")
            .bind(repository.as_str())
            .fetch_optional(&self.read)
            .await?
        else {
            return Ok(None);
        };
        let repo: i64 = row.try_get(0)?;
        let (tags, manifests, references) = tokio::try_join!(
            self.inventory_tags(repo),
            self.inventory_manifests(repo),
            self.inventory_references(repo)
        )?;
        Ok(Some(Inventory {
            tags,
            manifests,
            references,
        }))
    }

    async fn inventory_tags(&self, repo: i64) -> Result<Vec<TagInfo>> {
        type TagRow = (Tag, Digest, i64, i64, Option<i64>);
        let mut tags: Vec<TagInfo> = self
            .json_rows::<TagRow>(
                "name, digest, updated_at, pull_count, last_pulled_at",
                "tags WHERE repository_id = $1",
                repo,
            )
            .await?
            .into_iter()
            .map(
                |(name, digest, updated_at, pull_count, last_pulled_at)| TagInfo {
                    name,
                    digest,
                    updated_at,
                    pull_count,
                    last_pulled_at,
                },
            )
            .collect();
        tags.sort_unstable_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        Ok(tags)
    }

    async fn inventory_manifests(&self, repo: i64) -> Result<Vec<ManifestInfo>> {
        type ManifestRow = (
            Digest,
            String,
            Option<String>,
            Option<Digest>,
            i64,
            i64,
            i64,
            Option<i64>,
        );
        let mut manifests: Vec<ManifestInfo> = self
            .json_rows::<ManifestRow>(
                "digest, media_type, artifact_type, subject, size, pushed_at, pull_count,
                 last_pulled_at",
                "manifests WHERE repository_id = $1",
                repo,
            )
            .await?
            .into_iter()
            .map(
                |(digest, media_type, artifact_type, subject, size, pushed_at, pulls, pulled)| {
                    ManifestInfo {
                        digest,
                        media_type,
                        artifact_type,
                        subject,
                        size,
                        pushed_at,
                        pull_count: pulls,
                        last_pulled_at: pulled,
                    }
                },
            )
            .collect();
        manifests.sort_unstable_by(|a, b| a.digest.as_str().cmp(b.digest.as_str()));
        Ok(manifests)
    }

    async fn inventory_references(&self, repo: i64) -> Result<Vec<ManifestRef>> {
        type RefRow = (
            Digest,
            Digest,
            String,
            Option<i64>,
            Option<String>,
            Option<Digest>,
        );
        let mut references = self
            .json_rows::<RefRow>(
                "mr.parent, mr.child, mr.kind, b.size, mr.role, mr.describes",
                "manifest_references mr
                 LEFT JOIN blobs b ON mr.kind = 'blob' AND b.digest = mr.child
                 WHERE mr.repository_id = $1",
                repo,
            )
            .await?
            .into_iter()
            .map(|(parent, child, kind, blob_size, role, describes)| {
                Ok(ManifestRef {
                    parent,
                    child,
                    kind: RefKind::parse(&kind)?,
                    blob_size,
                    attestation: role.as_deref() == Some(ROLE_ATTESTATION),
                    describes,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        references.sort_unstable_by(|a, b| {
            (a.parent.as_str(), a.child.as_str()).cmp(&(b.parent.as_str(), b.child.as_str()))
        });
        Ok(references)
    }

    /// `SELECT columns FROM from` (bound to `repo` as `$1`) as one JSON
    /// array of rows, each row an array of `columns` decoded as `T` (a
    /// tuple). Digests and tags are validated as they are decoded.
    async fn json_rows<T: serde::de::DeserializeOwned>(
        &self,
        columns: &str,
        from: &str,
        repo: i64,
    ) -> Result<Vec<T>> {
        let sql = match self.dialect() {
            Dialect::Sqlite => {
                format!("SELECT json_group_array(json_array({columns})) FROM {from}")
            }
            Dialect::Postgres => {
                format!("SELECT json_agg(json_build_array({columns}))::text FROM {from}")
            }
        };
        let row = sqlx::query(&sql).bind(repo).fetch_one(&self.read).await?;
        // PostgreSQL aggregates no rows to NULL, SQLite to `[]`.
        let Some(json) = row.try_get::<Option<String>, _>(0)? else {
            return Ok(Vec::new());
        };
        serde_json::from_str(&json).map_err(|e| Error::Corrupt(format!("stored inventory: {e}")))
    }
}
