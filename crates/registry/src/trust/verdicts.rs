//! Verdicts: verifying a manifest's signatures (its cosign `.sig` tag,
//! its sigstore bundle and notation referrers) against its namespace's
//! trust, caching the result with its inputs, and the check on the pull
//! path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use berth_meta::events::{EventKind, NewEvent};
use berth_meta::trust::StoredVerdict;
use berth_oci::{Digest, Manifest, Reference, RepositoryName, Tag};
use berth_trust::cosign;
use berth_trust::{Format, Reason, Subject, Verdict};
use serde::Serialize;

use super::{Mode, NamespaceTrust};
use crate::invalidation::{Change, Invalidation, Subscriber};
use crate::manifests::ManifestEntry;
use crate::{Error, Registry, Result};

/// Entries kept in memory at most (past that the map is cleared).
const MAX_CACHED: usize = 100_000;
/// Indexes consulted for a platform image that is not signed itself.
const MAX_PARENTS: i64 = 8;

/// A verdict with the inputs it was computed from.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    signatures: Option<Digest>,
    referrers: Vec<Digest>,
    trust: String,
    verdict: Verdict,
    checked_at: i64,
}

/// The in-memory verdicts, `(repository, digest) -> verdict`. Entries
/// carry their inputs and are checked against the current ones on every
/// use (the `.sig` tag, the signature referrer, the trust fingerprint:
/// each from a cache kept correct through the invalidation seam), so no
/// change needs to evict them. With replicas sharing a PostgreSQL they
/// are kept too, through the same seam: while this process is not
/// listening nothing is served or kept, and a lost listener clears them
/// (an epoch refuses a fill that raced the reset).
pub(crate) struct Verdicts {
    map: RwLock<HashMap<(String, String), Arc<Cached>>>,
    gate: Invalidation,
    epoch: AtomicU64,
}

impl Verdicts {
    /// The verdicts, on while `gate` is live; subscribed to it.
    pub(crate) fn new(gate: &Invalidation) -> Arc<Verdicts> {
        let v = Arc::new(Verdicts {
            map: RwLock::default(),
            gate: gate.clone(),
            epoch: AtomicU64::new(0),
        });
        gate.subscribe(&v);
        v
    }

    /// The epoch to pass to [`Verdicts::fill`] for a verdict about to be
    /// computed or read.
    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn get(&self, repo: &RepositoryName, digest: &Digest) -> Option<Arc<Cached>> {
        if !self.gate.live() {
            return None;
        }
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(&(repo.as_str().to_owned(), digest.as_str().to_owned()))
            .cloned()
    }

    fn fill(&self, repo: &RepositoryName, digest: &Digest, c: Arc<Cached>, epoch: u64) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if self.epoch.load(Ordering::Acquire) != epoch || !self.gate.live() {
            return;
        }
        if map.len() >= MAX_CACHED {
            map.clear();
        }
        map.insert((repo.as_str().to_owned(), digest.as_str().to_owned()), c);
    }
}

impl Subscriber for Verdicts {
    /// Nothing to evict: every entry is checked against its inputs on use.
    fn changed(&self, _: &Change) {}

    fn reset(&self) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        self.epoch.fetch_add(1, Ordering::AcqRel);
        map.clear();
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
    /// `verified by key "release" (ecdsa-p256)`, or why not.
    pub summary: String,
    /// The cosign signature manifest read (`sha256-<hex>.sig`), if any.
    pub signatures: Option<Digest>,
    /// The signature referrers read (sigstore bundles, notation).
    pub referrers: Vec<Digest>,
    /// When the verdict was computed (Unix ms).
    pub checked_at: i64,
    /// The namespace's policy (`None`: off).
    pub policy: Option<Mode>,
}

fn to_stored(c: &Cached) -> StoredVerdict {
    let mut v = StoredVerdict {
        signatures: c.signatures.clone(),
        referrers: c.referrers.clone(),
        trust: c.trust.clone(),
        verified: false,
        key: None,
        algorithm: None,
        format: None,
        signature: None,
        valid_until: None,
        reason: None,
        detail: None,
        checked_at: c.checked_at,
    };
    match &c.verdict {
        Verdict::Verified {
            key,
            algorithm,
            format,
            signature,
            until,
        } => {
            v.verified = true;
            v.key = Some(key.clone());
            v.algorithm = Some(algorithm.clone());
            v.format = Some(format.as_str().to_owned());
            v.signature = Some(signature.clone());
            v.valid_until = *until;
        }
        Verdict::Unverified { reason, detail } => {
            v.reason = Some(reason.as_str().to_owned());
            v.detail = Some(detail.clone());
        }
    }
    v
}

/// A stored verdict, if it reads back (a verified row from before
/// referrers were verified names no format: the `.sig` manifest's).
fn from_stored(s: StoredVerdict) -> Option<Cached> {
    let verdict = if s.verified {
        Verdict::Verified {
            key: s.key?,
            algorithm: s.algorithm.unwrap_or_default(),
            format: match s.format.as_deref() {
                None => Format::Cosign,
                Some(f) => Format::parse(f)?,
            },
            signature: s.signature.or_else(|| s.signatures.clone())?,
            until: s.valid_until,
        }
    } else {
        Verdict::unverified(
            Reason::parse(s.reason.as_deref()?)?,
            s.detail.unwrap_or_default(),
        )
    };
    Some(Cached {
        signatures: s.signatures,
        referrers: s.referrers,
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
            reason:
                Reason::BadSignature
                | Reason::DigestMismatch
                | Reason::Malformed
                | Reason::Unsupported
                | Reason::Expired,
            ..
        } => EventKind::SignatureFailed,
        Verdict::Unverified { .. } => return None,
    };
    if let Some(b) = before {
        if b.signatures == now.signatures
            && b.referrers == now.referrers
            && b.verified == now.verified
            && b.reason == now.reason
        {
            return None;
        }
    }
    let mut e = NewEvent::new(kind, actor, c.checked_at);
    e.repository = Some(repo.clone());
    e.digest = Some(digest.as_str().to_owned());
    e.data = serde_json::json!({
        "verdict": c.verdict,
        "signatures": c.signatures,
        "referrers": c.referrers,
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
    /// Whether the verified verdict `c` still holds, known without
    /// listing referrers: same trust, not past its validity, and the
    /// signature it names still there (the `.sig` tag still on it, or the
    /// referrer still in the repository). More signatures cannot undo a
    /// verified verdict, so a verified pull costs lookups in memory.
    async fn still_verified(
        &self,
        repo: &RepositoryName,
        c: &Cached,
        sig: Option<&Digest>,
        trust: &NamespaceTrust,
        now: i64,
    ) -> Result<bool> {
        let Verdict::Verified {
            format, signature, ..
        } = &c.verdict
        else {
            return Ok(false);
        };
        if c.trust != trust.fingerprint || !c.verdict.holds_at(now) {
            return Ok(false);
        }
        if *format == Format::Cosign {
            return Ok(sig == Some(signature));
        }
        match self
            .get_manifest(repo, &Reference::Digest(signature.clone()))
            .await
        {
            Ok(_) => Ok(true),
            Err(Error::ManifestUnknown(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The verdict of `m` in `repo` under `trust`: from memory or the
    /// database when its inputs are unchanged, else computed and stored
    /// (with its event, published as `actor`).
    async fn verdict_with(
        &self,
        repo: &RepositoryName,
        m: &ManifestEntry,
        trust: &NamespaceTrust,
        actor: &str,
    ) -> Result<Arc<Cached>> {
        let digest = &m.digest;
        let now = berth_meta::now_ms();
        let epoch = self.verdicts.epoch();
        let sig = self.signature_manifest(repo, digest).await?;
        let sig_digest = sig.as_ref().map(|m| m.digest.clone());
        let current = |c: &Cached, referrers: &[Digest]| {
            c.signatures == sig_digest
                && c.referrers == referrers
                && c.trust == trust.fingerprint
                && c.verdict.holds_at(now)
        };
        // In memory: a verified verdict still holding costs nothing more;
        // any other is checked against the signature referrers (one query).
        let mut listed = None;
        if let Some(c) = self.verdicts.get(repo, digest) {
            if self
                .still_verified(repo, &c, sig_digest.as_ref(), trust, now)
                .await?
            {
                return Ok(c);
            }
            let referrers = self.signature_referrers(repo, digest).await?;
            if current(&c, &referrers) {
                return Ok(c);
            }
            listed = Some(referrers);
        }
        // Stored (what a shared database gives every replica).
        let stored = self.meta.signature_verdict(repo, digest).await?;
        let from_db = stored.clone().and_then(from_stored).map(Arc::new);
        if let Some(c) = &from_db {
            if self
                .still_verified(repo, c, sig_digest.as_ref(), trust, now)
                .await?
            {
                self.verdicts.fill(repo, digest, c.clone(), epoch);
                return Ok(c.clone());
            }
        }
        let referrers = match listed {
            Some(r) => r,
            None => self.signature_referrers(repo, digest).await?,
        };
        if let Some(c) = from_db.filter(|c| current(c, &referrers)) {
            self.verdicts.fill(repo, digest, c.clone(), epoch);
            return Ok(c);
        }
        let evidence = if trust.trust.is_empty() {
            Vec::new()
        } else {
            self.evidence(repo, sig.as_deref(), &referrers).await?
        };
        let subject = Subject {
            digest,
            media_type: &m.media_type,
            content: &m.content,
        };
        let verdict = berth_trust::verify(subject, &evidence, &trust.trust, now);
        let c = Arc::new(Cached {
            signatures: sig_digest,
            referrers,
            trust: trust.fingerprint.clone(),
            verdict,
            checked_at: now,
        });
        let event = event_for(repo, digest, &c, stored.as_ref(), actor);
        self.meta
            .record_signature_verdict(repo, digest, &to_stored(&c), event)
            .await?;
        self.verdicts.fill(repo, digest, c.clone(), epoch);
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
        let c = self.verdict_with(repo, &m, trust, "verifier").await?;
        Ok(VerdictView {
            repository: repo.clone(),
            digest: m.digest.clone(),
            summary: c.verdict.describe(),
            verdict: c.verdict.clone(),
            signatures: c.signatures.clone(),
            referrers: c.referrers.clone(),
            checked_at: c.checked_at,
            policy: trust.mode,
        })
    }

    /// After a push of `tags` to `repo` by `actor`: a cosign signature tag
    /// (`sha256-<hex>.sig`), or a signature referrer (a sigstore bundle,
    /// a notation signature) of `signs`, gets its subject verified now, so
    /// the verdict and its webhook event follow the push. Failures are
    /// logged, never the push's.
    pub(crate) async fn after_signature_push(
        &self,
        repo: &RepositoryName,
        tags: &[Tag],
        signs: Option<&Digest>,
        actor: &str,
    ) {
        let tagged = tags
            .iter()
            .filter(|t| t.as_str().ends_with(".sig"))
            .filter_map(|t| cosign::tagged_subject(t.as_str()));
        for subject in tagged.chain(signs.cloned()) {
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
            .filter(|t| !t.trust.is_empty())
        else {
            return Ok(());
        };
        let m = match self
            .get_manifest(repo, &Reference::Digest(subject.clone()))
            .await
        {
            Ok(m) => m,
            Err(Error::ManifestUnknown(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.verdict_with(repo, &m, trust, actor).await.map(drop)
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
        let c = self.verdict_with(repo, m, trust, "verifier").await?;
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
            let index = self.get_manifest(repo, &Reference::Digest(parent)).await?;
            let p = self.verdict_with(repo, &index, trust, "verifier").await?;
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
                     sign it with a key namespace {ns} trusts (cosign sign --key ... {repo}@{}), or with notation \
                     and a certificate of a root it trusts, and push the signature, or see `berth trust list {ns}`",
                    c.verdict.describe(),
                    m.digest
                )))
            }
        }
    }
}
