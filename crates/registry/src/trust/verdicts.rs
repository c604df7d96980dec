//! Verdicts: verifying a manifest's cosign signatures against its
//! namespace's keys, caching the result with its inputs, and the check on
//! the pull path.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use berth_meta::events::{EventKind, NewEvent};
use berth_meta::trust::StoredVerdict;
use berth_oci::{Digest, Manifest, Reference, RepositoryName, Tag};
use berth_store::BlobBody;
use berth_trust::cosign::{self, Signed};
use berth_trust::{Reason, TrustedKey, Verdict};
use futures_util::StreamExt as _;
use serde::Serialize;

use super::{Mode, NamespaceTrust};
use crate::manifests::ManifestEntry;
use crate::{Error, Registry, Result};

/// Entries kept in memory at most (past that the map is cleared).
const MAX_CACHED: usize = 100_000;
/// Signatures read per signature manifest at most.
const MAX_SIGNATURES: usize = 32;
/// Indexes consulted for a platform image that is not signed itself.
const MAX_PARENTS: i64 = 8;

/// A verdict with the inputs it was computed from.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    signatures: Option<Digest>,
    trust: String,
    verdict: Verdict,
    checked_at: i64,
}

/// The in-memory verdicts, `(repository, digest) -> verdict`. Entries
/// carry their inputs and are checked against the current ones on every
/// use, so nothing needs invalidating. Off with a shared database (the
/// stored row is read instead, one query).
pub(crate) struct Verdicts {
    map: RwLock<HashMap<(String, String), Arc<Cached>>>,
    off: bool,
}

impl Verdicts {
    pub(crate) fn new(shared: bool) -> Verdicts {
        Verdicts {
            map: RwLock::default(),
            off: shared,
        }
    }

    fn get(&self, repo: &RepositoryName, digest: &Digest) -> Option<Arc<Cached>> {
        if self.off {
            return None;
        }
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(&(repo.as_str().to_owned(), digest.as_str().to_owned()))
            .cloned()
    }

    fn fill(&self, repo: &RepositoryName, digest: &Digest, c: Arc<Cached>) {
        if self.off {
            return;
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_CACHED {
            map.clear();
        }
        map.insert((repo.as_str().to_owned(), digest.as_str().to_owned()), c);
    }
}

/// A manifest's verdict as the management API and `berth inspect` show it.
#[derive(Debug, Clone, Serialize)]
pub struct VerdictView {
    /// The repository.
    pub repository: RepositoryName,
    /// The manifest.
    pub digest: Digest,
    /// Verified by which key, or why not.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The signature manifest read (`sha256-<hex>.sig`), if any.
    pub signatures: Option<Digest>,
    /// When the verdict was computed (Unix ms).
    pub checked_at: i64,
    /// The namespace's policy (`None`: off).
    pub policy: Option<Mode>,
}

fn to_stored(c: &Cached) -> StoredVerdict {
    let (verified, key, algorithm, reason, detail) = match &c.verdict {
        Verdict::Verified { key, algorithm } => {
            (true, Some(key.clone()), Some(algorithm.clone()), None, None)
        }
        Verdict::Unverified { reason, detail } => (
            false,
            None,
            None,
            Some(reason.as_str().to_owned()),
            Some(detail.clone()),
        ),
    };
    StoredVerdict {
        signatures: c.signatures.clone(),
        trust: c.trust.clone(),
        verified,
        key,
        algorithm,
        reason,
        detail,
        checked_at: c.checked_at,
    }
}

fn from_stored(s: StoredVerdict) -> Option<Cached> {
    let verdict = if s.verified {
        Verdict::Verified {
            key: s.key?,
            algorithm: s.algorithm.unwrap_or_default(),
        }
    } else {
        Verdict::unverified(
            Reason::parse(s.reason.as_deref()?)?,
            s.detail.unwrap_or_default(),
        )
    };
    Some(Cached {
        signatures: s.signatures,
        trust: s.trust,
        verdict,
        checked_at: s.checked_at,
    })
}

/// The outbox event a new verdict publishes: verified, or failed for a
/// reason that involves a signature (none for "no signature" or "no
/// keys"), and only when the outcome differs from the stored one or the
/// signatures changed.
fn event_for(
    repo: &RepositoryName,
    digest: &Digest,
    c: &Cached,
    before: Option<&StoredVerdict>,
    actor: &str,
) -> Option<NewEvent> {
    let now = to_stored(c);
    let kind = match &c.verdict {
        Verdict::Verified { .. } => EventKind::SignatureVerified,
        Verdict::Unverified {
            reason: Reason::BadSignature | Reason::DigestMismatch | Reason::Malformed,
            ..
        } => EventKind::SignatureFailed,
        Verdict::Unverified { .. } => return None,
    };
    if let Some(b) = before {
        if b.signatures == now.signatures && b.verified == now.verified && b.reason == now.reason {
            return None;
        }
    }
    let mut e = NewEvent::new(kind, actor, c.checked_at);
    e.repository = Some(repo.clone());
    e.digest = Some(digest.as_str().to_owned());
    e.data = serde_json::json!({
        "verdict": c.verdict,
        "signatures": c.signatures,
        "tag": c.signatures.as_ref().map(|_| cosign::signature_tag(digest)),
    });
    Some(e)
}

/// Whether `m` is content the signing flow itself reads: a signature, an
/// attestation, any artifact with a subject.
fn is_signing_artifact(m: &ManifestEntry) -> bool {
    let Ok(parsed) = Manifest::parse(&m.content, Some(&m.media_type)) else {
        return false;
    };
    let cosign_media = |t: &str| t.starts_with("application/vnd.dev.cosign.");
    parsed.subject.is_some()
        || parsed.layers.iter().any(|l| cosign_media(&l.media_type))
        || parsed.effective_artifact_type().is_some_and(|t| {
            t.starts_with("application/vnd.dev.sigstore.")
                || t.starts_with("application/vnd.cncf.notary.")
                || t.starts_with("application/vnd.in-toto")
        })
}

impl Registry {
    /// The signature manifest of `digest` (its `sha256-<hex>.sig` tag).
    async fn signature_manifest(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<Arc<ManifestEntry>>> {
        let tag = Tag::parse(cosign::signature_tag(digest))
            .map_err(|e| Error::Internal(format!("signature tag: {e}")))?;
        match self.get_manifest(repo, &Reference::Tag(tag)).await {
            Ok(m) => Ok(Some(m)),
            Err(Error::ManifestUnknown(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The bytes of a small blob (a signature payload), at most `limit`.
    async fn small_blob(&self, digest: &Digest, limit: u64) -> Result<Option<Vec<u8>>> {
        let Some(read) = self.store.read(digest, None).await? else {
            return Ok(None);
        };
        if read.len > limit {
            return Ok(None);
        }
        match read.body {
            BlobBody::Bytes(b) => Ok(Some(b.to_vec())),
            BlobBody::Stream(mut s) => {
                let mut out = Vec::with_capacity(read.len as usize);
                while let Some(chunk) = s.next().await {
                    out.extend_from_slice(&chunk.map_err(Error::Storage)?);
                    if out.len() as u64 > limit {
                        return Ok(None);
                    }
                }
                Ok(Some(out))
            }
        }
    }

    /// Verifies the signatures in `sig` (the signature manifest of
    /// `digest`, if any) against `keys`.
    async fn verify_now(
        &self,
        digest: &Digest,
        sig: Option<&ManifestEntry>,
        keys: &[TrustedKey],
    ) -> Result<Verdict> {
        let Some(sig) = sig.filter(|_| !keys.is_empty()) else {
            return Ok(cosign::verify(digest, &[], keys));
        };
        let malformed = |why: String| Verdict::unverified(Reason::Malformed, why);
        let m = match Manifest::parse(&sig.content, Some(&sig.media_type)) {
            Ok(m) => m,
            Err(e) => {
                return Ok(malformed(format!(
                    "signature manifest {} does not parse: {e}",
                    sig.digest
                )))
            }
        };
        let mut signed = Vec::new();
        for layer in cosign::signature_layers(&m)
            .into_iter()
            .take(MAX_SIGNATURES)
        {
            if !(0..=cosign::MAX_PAYLOAD).contains(&layer.size) {
                continue;
            }
            if let Some(payload) = self
                .small_blob(&layer.payload, cosign::MAX_PAYLOAD as u64)
                .await?
            {
                signed.push(Signed {
                    payload,
                    signature: layer.signature,
                });
            }
        }
        if signed.is_empty() {
            return Ok(malformed(format!(
                "signature manifest {} holds no cosign signature (layers of type {} with the annotation {}, payloads of at most {} bytes)",
                sig.digest,
                cosign::SIMPLE_SIGNING,
                cosign::SIGNATURE_ANNOTATION,
                cosign::MAX_PAYLOAD
            )));
        }
        Ok(cosign::verify(digest, &signed, keys))
    }

    /// The verdict of `digest` in `repo` under `trust`: from memory or the
    /// database when its inputs are unchanged, else computed and stored
    /// (with its event, published as `actor`).
    async fn verdict_with(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        trust: &NamespaceTrust,
        actor: &str,
    ) -> Result<Arc<Cached>> {
        let sig = self.signature_manifest(repo, digest).await?;
        let sig_digest = sig.as_ref().map(|m| m.digest.clone());
        let current = |signatures: &Option<Digest>, t: &str| {
            *signatures == sig_digest && t == trust.fingerprint
        };
        if let Some(c) = self.verdicts.get(repo, digest) {
            if current(&c.signatures, &c.trust) {
                return Ok(c);
            }
        }
        let stored = self.meta.signature_verdict(repo, digest).await?;
        if let Some(c) = stored
            .clone()
            .filter(|s| current(&s.signatures, &s.trust))
            .and_then(from_stored)
        {
            let c = Arc::new(c);
            self.verdicts.fill(repo, digest, c.clone());
            return Ok(c);
        }
        let verdict = self.verify_now(digest, sig.as_deref(), &trust.keys).await?;
        let c = Arc::new(Cached {
            signatures: sig_digest,
            trust: trust.fingerprint.clone(),
            verdict,
            checked_at: berth_meta::now_ms(),
        });
        let event = event_for(repo, digest, &c, stored.as_ref(), actor);
        self.meta
            .record_signature_verdict(repo, digest, &to_stored(&c), event)
            .await?;
        self.verdicts.fill(repo, digest, c.clone());
        Ok(c)
    }

    /// The signature verdict of the manifest `reference` names in `repo`.
    pub async fn signature_verdict(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<VerdictView> {
        let m = self.get_manifest(repo, reference).await?;
        let config = self.trust_config().await?;
        let none = NamespaceTrust::default();
        let trust = config.get(repo.namespace_str()).unwrap_or(&none);
        let c = self
            .verdict_with(repo, &m.digest, trust, "verifier")
            .await?;
        Ok(VerdictView {
            repository: repo.clone(),
            digest: m.digest.clone(),
            verdict: c.verdict.clone(),
            signatures: c.signatures.clone(),
            checked_at: c.checked_at,
            policy: trust.mode,
        })
    }

    /// After a push of `tags` to `repo` by `actor`: a cosign signature tag
    /// (`sha256-<hex>.sig`) gets its subject verified now, so the verdict
    /// and its webhook event follow the push. Failures are logged, never
    /// the push's.
    pub(crate) async fn after_signature_push(
        &self,
        repo: &RepositoryName,
        tags: &[Tag],
        actor: &str,
    ) {
        for t in tags {
            if !t.as_str().ends_with(".sig") {
                continue;
            }
            let Some(subject) = cosign::tagged_subject(t.as_str()) else {
                continue;
            };
            if let Err(e) = self.verify_pushed(repo, &subject, actor).await {
                tracing::warn!(repository = %repo, %subject, error = %e, "verifying a pushed signature failed");
            }
        }
    }

    async fn verify_pushed(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        actor: &str,
    ) -> Result<()> {
        let config = self.trust_config().await?;
        let Some(trust) = config
            .get(repo.namespace_str())
            .filter(|t| !t.keys.is_empty())
        else {
            return Ok(());
        };
        match self
            .get_manifest(repo, &Reference::Digest(subject.clone()))
            .await
        {
            Ok(_) => {}
            Err(Error::ManifestUnknown(_)) => return Ok(()),
            Err(e) => return Err(e),
        }
        self.verdict_with(repo, subject, trust, actor)
            .await
            .map(drop)
    }

    /// Checks a manifest pull (`GET`; HEAD is never checked) of `m`
    /// through `reference` against the signature policy of `repo`'s
    /// namespace: nothing to do without a policy; otherwise verified,
    /// exempt (the signing flow's reads, platform images of a verified
    /// index), or unverified: refused under `enforce`, logged and counted
    /// under `warn`.
    pub async fn check_pull(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        m: &ManifestEntry,
    ) -> Result<()> {
        let config = self.trust_config().await?;
        let Some(trust) = config.get(repo.namespace_str()) else {
            return Ok(());
        };
        let Some(mode) = trust.mode else {
            return Ok(());
        };
        let metrics = berth_metrics::get();
        if let Reference::Tag(t) = reference {
            if cosign::tagged_subject(t.as_str()).is_some() {
                metrics.signature_check(mode.as_str(), "exempt");
                return Ok(());
            }
        }
        let c = self
            .verdict_with(repo, &m.digest, trust, "verifier")
            .await?;
        if c.verdict.is_verified() {
            metrics.signature_check(mode.as_str(), "verified");
            return Ok(());
        }
        if is_signing_artifact(m) {
            metrics.signature_check(mode.as_str(), "exempt");
            return Ok(());
        }
        for parent in self
            .meta
            .parent_indexes(repo, &m.digest, MAX_PARENTS)
            .await?
        {
            let p = self.verdict_with(repo, &parent, trust, "verifier").await?;
            if p.verdict.is_verified() {
                metrics.signature_check(mode.as_str(), "verified");
                return Ok(());
            }
        }
        let ns = repo.namespace();
        let what = format!("{repo}@{}", m.digest);
        match mode {
            Mode::Warn => {
                metrics.signature_check(mode.as_str(), "allowed_unverified");
                tracing::warn!(
                    manifest = %what,
                    verdict = %c.verdict.describe(),
                    "pull of an unverified manifest allowed by the warn signature policy of namespace {ns}"
                );
                Ok(())
            }
            Mode::Enforce => {
                metrics.signature_check(mode.as_str(), "refused");
                Err(Error::Denied(format!(
                    "pull of {what} refused by the signature policy of namespace {ns} (enforce): {}; \
                     sign it with a key namespace {ns} trusts (cosign sign --key ... {repo}@{}) and push the signature, \
                     or see `berth trust list {ns}`",
                    c.verdict.describe(),
                    m.digest
                )))
            }
        }
    }
}
