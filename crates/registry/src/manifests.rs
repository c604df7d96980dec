//! Pushing, pulling and deleting manifests.

use std::sync::Arc;

use berth_meta::{AttestationRef, NewManifest, RefKind};
use berth_oci::manifest::ManifestError;
use berth_oci::{
    media, Descriptor, Digest, EntryKind, Manifest, ManifestKind, Reference, RepositoryName, Tag,
};
use bytes::Bytes;

use crate::Caller;
use crate::{Error, Registry, Result};

/// A manifest as served on the pull path.
#[derive(Debug)]
pub struct ManifestEntry {
    /// Its digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// The bytes as pushed.
    pub content: Bytes,
}

/// The outcome of a manifest push.
#[derive(Debug, Clone)]
pub struct PushedManifest {
    /// Digest of the stored bytes.
    pub digest: Digest,
    /// The subject it refers to, if any (for the `OCI-Subject` header).
    pub subject: Option<Digest>,
    /// The tags now pointing at it: the reference's and those of `?tag=`,
    /// each once (one `OCI-Tag` header each).
    pub tags: Vec<Tag>,
}

/// What a manifest references, as [`Registry::check_references`] found it.
#[derive(Debug, Default)]
struct References {
    refs: Vec<(Digest, RefKind)>,
    required: Vec<Digest>,
    attestations: Vec<AttestationRef>,
    /// An image manifest's blobs and their stored sizes, as checked.
    blob_sizes: Vec<(Digest, u64)>,
}

impl References {
    /// An image's total size stored with it (`NewManifest::total_size`):
    /// its bytes and each distinct blob it references, by the sizes the
    /// check found (a blob embedded in a descriptor or a foreign layer
    /// pushed anyway: the descriptor's, which the parser or the upload
    /// verified). `None` for an index (the database sums its children)
    /// and for mirrored content, whose blobs may not be here yet.
    fn image_total(&self, m: &Manifest, len: usize, sparse: bool) -> Option<u64> {
        if sparse || m.kind != ManifestKind::Image {
            return None;
        }
        let mut total = len as u64;
        for (digest, kind) in &self.refs {
            if *kind != RefKind::Blob {
                continue;
            }
            let size = match self.blob_sizes.iter().find(|(d, _)| d == digest) {
                Some((_, n)) => *n,
                None => m
                    .config
                    .iter()
                    .chain(m.layers.iter())
                    .find(|d| d.digest == *digest)
                    .map_or(0, |d| d.size.max(0) as u64),
            };
            total = total.saturating_add(size);
        }
        Some(total)
    }
}

/// Whether a client whose `Accept` header lists `accept` takes `media_type`.
/// No header, `*/*` and `application/json` accept everything.
pub fn accepts<'a>(mut accept: impl Iterator<Item = &'a str>, media_type: &str) -> bool {
    let mut any = false;
    let ok = accept.any(|value| {
        value.split(',').any(|item| {
            any = true;
            let t = item.split(';').next().unwrap_or("").trim();
            t.is_empty()
                || t == "*/*"
                || t == "application/*"
                || t == "application/json"
                || t == media_type
        })
    });
    ok || !any
}

/// What a scan on push of `m` would scan (see [`NewManifest::scan_candidates`]).
fn scan_candidates(m: &Manifest, digest: &Digest) -> Vec<Digest> {
    match m.kind {
        ManifestKind::Image if crate::scanning::is_container_image(m) => vec![digest.clone()],
        ManifestKind::Image => Vec::new(),
        ManifestKind::Index => m
            .child_manifests()
            .filter(|c| c.entry_kind() == EntryKind::Manifest)
            .map(|c| c.digest.clone())
            .collect(),
    }
}

impl Registry {
    /// Stores a manifest pushed to `reference` (plus `extra_tags` from
    /// `?tag=`). A tag that would move is refused (DENIED, naming the rule)
    /// if it is immutable, or protected and the caller is no namespace
    /// admin.
    pub async fn put_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
        extra_tags: &[Tag],
        caller: &Caller,
    ) -> Result<PushedManifest> {
        self.store_manifest(
            repo,
            reference,
            content_type,
            body,
            extra_tags,
            caller,
            false,
        )
        .await
    }

    /// Stores a manifest fetched from a mirror's upstream: as
    /// [`Registry::put_manifest`], except that what it references need not
    /// be here yet (mirrored content is sparse: an index holds only the
    /// platforms pulled so far, an image its layers once they are asked
    /// for). The references are recorded all the same, so garbage
    /// collection keeps whatever of them arrives later.
    pub async fn put_mirrored_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
        caller: &Caller,
    ) -> Result<PushedManifest> {
        self.store_manifest(repo, reference, content_type, body, &[], caller, true)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn store_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
        extra_tags: &[Tag],
        caller: &Caller,
        sparse: bool,
    ) -> Result<PushedManifest> {
        if body.len() > self.settings.max_manifest_bytes {
            return Err(Error::ManifestTooLarge {
                size: body.len() as u64,
                limit: self.settings.max_manifest_bytes,
            });
        }
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::compute(expected.algorithm(), &body);
                if &actual != expected {
                    return Err(Error::DigestInvalid(format!(
                        "manifest content has digest {actual}, not {expected}"
                    )));
                }
                actual
            }
            Reference::Tag(_) => Digest::sha256(&body),
        };
        let mut tags = Vec::new();
        if let Reference::Tag(t) = reference {
            tags.push(t.clone());
        }
        for t in extra_tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        let manifest = Manifest::parse(&body, content_type).map_err(|e| match e {
            ManifestError::Schema1 => Error::ManifestInvalid(e.to_string()),
            ManifestError::Invalid(m) => Error::ManifestInvalid(m),
        })?;
        let checked = self.check_references(repo, &manifest, sparse).await?;
        let total_size = checked.image_total(&manifest, body.len(), sparse);
        let References {
            refs: references,
            required: required_blobs,
            attestations,
            ..
        } = checked;
        let record = NewManifest {
            repository: repo.clone(),
            digest: digest.clone(),
            media_type: manifest.media_type.clone(),
            artifact_type: manifest.effective_artifact_type().map(str::to_owned),
            content: body.to_vec(),
            subject: manifest.subject.as_ref().map(|s| s.digest.clone()),
            annotations: manifest
                .annotations
                .as_ref()
                .and_then(|a| serde_json::to_string(a).ok()),
            references,
            attestations,
            required_blobs,
            sparse,
            tags: tags.clone(),
            pushed_at: berth_meta::now_ms(),
            scan_candidates: scan_candidates(&manifest, &digest),
            total_size,
        };
        // Manifest bytes count against the namespace quota, unless the
        // namespace holds this manifest already.
        if let Some(g) = self.quota_gate(repo, Some(&digest), None).await? {
            g.check(&crate::quota::Pushed::Manifest(&digest), body.len() as u64)?;
        }
        // Tag rules are decided inside the write's transaction: two
        // concurrent pushes of an immutable tag cannot both win.
        let rules = Arc::new(self.tag_rules(repo).await?);
        let epoch = self.cache.epoch();
        if rules.is_empty() || tags.is_empty() {
            self.meta.put_manifest(&record, &caller.actor()).await?;
        } else {
            self.meta
                .put_manifest_guarded(&record, rules.move_guard(caller), &caller.actor())
                .await?;
        }
        for t in &tags {
            self.cache.invalidate_tag(repo, t);
        }
        berth_metrics::get().pushed(
            repo.as_str(),
            berth_metrics::ArtifactKind::Manifest,
            body.len() as u64,
        );
        self.cache.fill_manifest(
            repo,
            Arc::new(ManifestEntry {
                digest: digest.clone(),
                media_type: manifest.media_type,
                content: body,
            }),
            &epoch,
        );
        if !record.scan_candidates.is_empty() {
            // Any request the push made waits in the database; this wakes
            // the worker of this process at once rather than at its next poll.
            self.scans.wake.notify_one();
        }
        let signs = record
            .artifact_type
            .as_deref()
            .filter(|t| crate::trust::is_signature_type(t))
            .and(record.subject.as_ref());
        self.after_signature_push(repo, &tags, signs, caller.name())
            .await;
        Ok(PushedManifest {
            digest,
            subject: manifest.subject.map(|s| s.digest),
            tags,
        })
    }

    /// Checks that what the manifest references is in `repo`; returns the
    /// references to record (with an index's attestation manifests) and
    /// the blobs that must be linked (checked again in the transaction
    /// that stores the manifest).
    ///
    /// An index's entries whose media type is not a manifest's are blob
    /// references (BuildKit's registry cache lists its layers and its
    /// cache config so): each must be linked in `repo`, as an image's
    /// layers must, and is recorded as a blob reference so that garbage
    /// collection keeps it while the index is kept. An ordinary image or
    /// index costs what it did before: no query for what it does not list.
    ///
    /// `sparse` (mirrored content): nothing is required to be present.
    async fn check_references(
        &self,
        repo: &RepositoryName,
        m: &Manifest,
        sparse: bool,
    ) -> Result<References> {
        let mut out = References::default();
        let (blobs, listed_in): (Vec<&Descriptor>, &str) = match m.kind {
            ManifestKind::Image => (
                m.config.iter().chain(m.layers.iter()).collect(),
                "referenced by the manifest",
            ),
            ManifestKind::Index => (m.blob_entries().collect(), "listed in the index"),
        };
        // Foreign (non-distributable) layers are downloaded from their
        // `urls` and usually not pushed: not required, but referenced when
        // they were pushed anyway, so that GC keeps them with the image.
        let mut optional: Vec<Digest> = Vec::new();
        for d in blobs {
            if media::is_non_distributable(&d.media_type) {
                optional.push(d.digest.clone());
                continue;
            }
            out.refs.push((d.digest.clone(), RefKind::Blob));
            // Content embedded in `data` was verified by the parser.
            if !sparse && d.data.is_none() && !out.required.contains(&d.digest) {
                out.required.push(d.digest.clone());
            }
        }
        // Each required blob's size, from the link cache or the database
        // (one query per blob the cache does not hold, as before).
        for d in &out.required {
            let size = match self.cache.link(repo, d) {
                Some(size) => Some(size),
                None => self.meta.repository_blob(repo, d).await?,
            };
            match size {
                Some(size) => out.blob_sizes.push((d.clone(), size)),
                None => {
                    return Err(Error::ManifestBlobUnknown(format!(
                        "blob {d} {listed_in} is not in repository {repo}; push it first"
                    )))
                }
            }
        }
        if !optional.is_empty() && !sparse {
            let absent = self.meta.missing_blobs(repo, &optional).await?;
            out.refs.extend(
                optional
                    .into_iter()
                    .filter(|d| !absent.contains(d))
                    .map(|d| (d, RefKind::Blob)),
            );
        }
        if m.kind == ManifestKind::Index {
            let children: Vec<Digest> = m.child_manifests().map(|d| d.digest.clone()).collect();
            let missing = if sparse {
                Vec::new()
            } else {
                self.meta.missing_manifests(repo, &children).await?
            };
            if let Some(d) = missing.first() {
                return Err(Error::ManifestBlobUnknown(format!(
                    "manifest {d} listed in the index is not in repository {repo}; push it first"
                )));
            }
            out.refs
                .extend(children.into_iter().map(|d| (d, RefKind::Manifest)));
            out.attestations = m
                .child_manifests()
                .filter(|d| d.entry_kind() == EntryKind::Attestation)
                .map(|d| AttestationRef {
                    manifest: d.digest.clone(),
                    describes: d.attested().and_then(|a| Digest::parse(a).ok()),
                })
                .collect();
        }
        out.refs.sort();
        out.refs.dedup();
        Ok(out)
    }

    /// Resolves `reference` in `repo` to the stored manifest: the pull
    /// path, answered from the cache when it can be.
    pub async fn get_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<Arc<ManifestEntry>> {
        let unknown = || Error::ManifestUnknown(reference.to_string());
        let tag = match reference {
            Reference::Digest(d) => {
                if let Some(entry) = self.cache.manifest(repo, d) {
                    return Ok(entry);
                }
                return self.load_manifest(repo, d).await?.ok_or_else(unknown);
            }
            Reference::Tag(t) => t,
        };
        if let Some(digest) = self.cache.tag(repo, tag) {
            if let Some(entry) = self.cache.manifest(repo, &digest) {
                return Ok(entry);
            }
            return self.load_manifest(repo, &digest).await?.ok_or_else(unknown);
        }
        let epoch = self.cache.epoch();
        let record = self
            .meta
            .manifest_by_tag(repo, tag)
            .await?
            .ok_or_else(unknown)?;
        self.cache
            .fill_tag(repo, tag, Arc::new(record.digest.clone()), &epoch);
        let entry = Arc::new(ManifestEntry {
            digest: record.digest,
            media_type: record.media_type,
            content: Bytes::from(record.content),
        });
        self.cache.fill_manifest(repo, entry.clone(), &epoch);
        Ok(entry)
    }

    /// Reads a manifest of `repo` from the database into the cache.
    async fn load_manifest(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<Arc<ManifestEntry>>> {
        let epoch = self.cache.epoch();
        let Some(record) = self.meta.manifest(repo, digest).await? else {
            return Ok(None);
        };
        let entry = Arc::new(ManifestEntry {
            digest: record.digest,
            media_type: record.media_type,
            content: Bytes::from(record.content),
        });
        self.cache.fill_manifest(repo, entry.clone(), &epoch);
        Ok(Some(entry))
    }

    /// Deletes a manifest (by digest: the manifest and its tags; by tag: the
    /// tag only). Protected and immutable tags are deleted only by
    /// namespace admins ([`crate::TagRules::refuse_delete`]).
    pub async fn delete_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        caller: &Caller,
    ) -> Result<()> {
        // Protected and immutable tags are checked inside the delete's
        // transaction, against the tags it actually removes.
        let rules = Arc::new(self.tag_rules(repo).await?);
        let guard = (!rules.is_empty()).then(|| rules.delete_guard(caller));
        let actor = caller.actor();
        match reference {
            Reference::Tag(t) => {
                let existed = match guard {
                    Some(g) => self.meta.delete_tag_guarded(repo, t, g, &actor).await?,
                    None => self.meta.delete_tag(repo, t, &actor).await?,
                };
                self.cache.invalidate_tag(repo, t);
                if !existed {
                    return Err(Error::ManifestUnknown(t.to_string()));
                }
            }
            Reference::Digest(d) => {
                let tags = match guard {
                    Some(g) => {
                        self.meta
                            .delete_manifest_guarded(repo, d, g, &actor)
                            .await?
                    }
                    None => self.meta.delete_manifest(repo, d, &actor).await?,
                };
                self.cache.invalidate_manifest(repo, d);
                self.pull_verdicts.forget(repo);
                let tags = tags.ok_or_else(|| Error::ManifestUnknown(d.to_string()))?;
                for t in &tags {
                    self.cache.invalidate_tag(repo, t);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::accepts;

    #[test]
    fn accept_negotiation() {
        let oci = berth_oci::media::OCI_MANIFEST;
        assert!(accepts(std::iter::empty(), oci));
        assert!(accepts(["*/*"].into_iter(), oci));
        assert!(accepts(
            [berth_oci::media::DOCKER_MANIFEST, oci].into_iter(),
            oci
        ));
        assert!(accepts(["application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json;q=0.5"].into_iter(), oci));
        assert!(!accepts(
            [berth_oci::media::DOCKER_MANIFEST].into_iter(),
            oci
        ));
    }
}
