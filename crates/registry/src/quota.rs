//! Storage usage per namespace and repository, and namespace quotas.
//!
//! Usage comes from the metadata every time (see `berth_meta`'s usage
//! module): a namespace's content is every blob linked to and every
//! manifest stored in one of its repositories, each distinct digest counted
//! once. A repository's bytes are *unique* when no other repository of the
//! namespace holds that digest, *shared* otherwise.
//!
//! A quota limits a namespace's usage: its stored content *and* the bytes
//! its open upload sessions hold. Uploads are refused (DENIED) before their
//! data is written when their size is known (`Content-Length`,
//! `Content-Range`), cut off as soon as a streamed body passes what is free,
//! and checked again, exactly, in the transaction that links the finished
//! blob; manifest pushes and mounts are checked too. Content the namespace
//! already holds costs nothing.
//!
//! Upload sessions: every byte written to a session of a namespace with a
//! quota is first reserved in a ledger that holds the size of each open
//! session of the namespace: stored content plus every session's bytes
//! never pass the quota, however many sessions run at once (six sessions
//! of a 2 MB quota hold 2 MB between them, not 12). A session's bytes are
//! released when it is completed, cancelled or purged as abandoned.
//!
//! - One process (SQLite): the ledger is in memory ([`Sessions`]), under
//!   one lock, filled from the store's open sessions the first time a
//!   namespace's quota is needed.
//! - Replicas sharing a PostgreSQL: the ledger is the `upload_reservations`
//!   table, and every reservation is a transaction holding the namespace's
//!   lock that compares stored content plus all sessions' bytes with the
//!   quota, so concurrent pushes on different replicas cannot overshoot it
//!   together. To keep that off the per-chunk path, a session reserves in
//!   slabs of up to [`SLAB`] (never more than is free) and writes chunks
//!   against its slab; after each request its reservation is set to the
//!   bytes it really holds. A replica that dies mid-upload leaves its
//!   reservation until the session is purged as abandoned.
//!
//! The bound on concurrent links: the final check runs inside the link's
//! transaction, which on PostgreSQL holds the namespace's lock, so it is
//! exact on both engines: the namespace never ends over its quota, and a
//! refused upload's bytes are removed (or, if published already, left
//! unreferenced for garbage collection). Manifests (at most
//! `max_manifest_size` each) are checked before their transaction and may
//! overshoot by the manifests pushed concurrently.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use berth_meta::Meta;
use berth_oci::{Digest, Namespace, RepositoryName};
use berth_store::ByteStream;
use futures_util::StreamExt;
use serde::Serialize;

use crate::{Caller, Error, Registry, Result};

pub use berth_meta::RepositoryUsage;

/// One namespace in the usage overview ([`Registry::usage_overview`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamespaceTotals {
    /// Namespace.
    pub namespace: String,
    /// Distinct blobs stored.
    pub blobs: u64,
    /// Bytes stored, each distinct digest once (what a quota counts).
    pub bytes: u64,
    /// Its quota, if one is set.
    pub quota_bytes: Option<u64>,
    /// It holds a pull-through mirror's cache: its bytes were mirrored,
    /// not pushed.
    pub mirrored: bool,
}

/// A namespace's quota and how much of it is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuotaView {
    /// Namespace.
    pub namespace: String,
    /// The limit.
    pub limit_bytes: u64,
    /// Bytes used.
    pub used_bytes: u64,
    /// Bytes still free (0 when over).
    pub available_bytes: u64,
}

/// A namespace's storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamespaceUsage {
    /// Namespace.
    pub namespace: String,
    /// Bytes stored, each distinct digest once: what the quota counts.
    pub total_bytes: u64,
    /// Of which blobs no manifest of the namespace uses (uploads no
    /// manifest uses yet, what deleted images and repositories left),
    /// stored until garbage collection removes them after its grace
    /// period.
    pub unreferenced_bytes: u64,
    /// Of which blobs (layers, configs, artifacts).
    pub blob_bytes: u64,
    /// Of which manifests.
    pub manifest_bytes: u64,
    /// Distinct blobs.
    pub blobs: u64,
    /// Distinct manifests.
    pub manifests: u64,
    /// The quota, if one is set.
    pub quota: Option<QuotaView>,
    /// The namespace holds the pull-through mirror's cache of the
    /// upstream of that name: content mirrored, not pushed, limited by
    /// the cache limits and never by a quota.
    pub mirrored: bool,
    /// Each repository, by name.
    pub repositories: Vec<RepositoryUsage>,
}

/// `1.5 GiB`.
pub(crate) fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut unit) = (n as f64, 0);
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The namespace's figures from the database's sums.
fn summarise(ns: &Namespace, sum: berth_meta::UsageSummary) -> NamespaceUsage {
    NamespaceUsage {
        namespace: ns.to_string(),
        total_bytes: sum.total_bytes,
        unreferenced_bytes: sum.unreferenced_bytes,
        blob_bytes: sum.blob_bytes,
        manifest_bytes: sum.manifest_bytes,
        blobs: sum.blobs,
        manifests: sum.manifests,
        quota: None,
        mirrored: false,
        repositories: sum.repositories,
    }
}

/// Bodies up to this size are read to the end after a refusal, so that a
/// client still sending gets the error instead of a connection reset.
pub(crate) const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;

/// Reads and discards up to [`DRAIN_LIMIT`] bytes of `body`.
pub(crate) async fn drain(mut body: ByteStream) {
    let mut n = 0u64;
    while n <= DRAIN_LIMIT {
        match body.next().await {
            Some(Ok(chunk)) => n += chunk.len() as u64,
            _ => break,
        }
    }
}

/// Decides, chunk by chunk, whether a body may write `n` more bytes.
#[async_trait]
pub(crate) trait Admit: Send {
    /// Reserves `n` bytes, or refuses.
    async fn admit(&mut self, n: u64) -> bool;
}

/// Fails a body stream as soon as `admit` refuses a chunk's length (after
/// draining what the client is still sending, see [`DRAIN_LIMIT`]),
/// setting the returned flag so the caller can tell a quota cut-off from a
/// client failure.
pub(crate) fn capped(body: ByteStream, admit: Box<dyn Admit>) -> (ByteStream, Arc<AtomicBool>) {
    let tripped = Arc::new(AtomicBool::new(false));
    let flag = tripped.clone();
    let stream = futures_util::stream::unfold(Some((body, admit)), move |state| {
        let flag = flag.clone();
        async move {
            let (mut body, mut admit) = state?;
            match body.next().await? {
                Err(e) => Some((Err(e), None)),
                Ok(chunk) => {
                    if admit.admit(chunk.len() as u64).await {
                        return Some((Ok(chunk), Some((body, admit))));
                    }
                    flag.store(true, Ordering::Release);
                    drain(body).await;
                    Some((Err(std::io::Error::other("over the namespace quota")), None))
                }
            }
        }
    });
    (Box::pin(stream), tripped)
}

/// Most bytes a session reserves in the shared ledger at once.
pub(crate) const SLAB: u64 = 8 << 20;

/// Reserves in the in-memory ledger.
struct LocalAdmit {
    ledger: Arc<Sessions>,
    namespace: Namespace,
    session: String,
    used: u64,
    limit: u64,
}

#[async_trait]
impl Admit for LocalAdmit {
    async fn admit(&mut self, n: u64) -> bool {
        self.ledger
            .reserve(&self.namespace, &self.session, n, self.used, self.limit)
    }
}

/// Reserves in the database's ledger, a slab at a time.
struct SharedAdmit {
    meta: Meta,
    namespace: Namespace,
    session: String,
    limit: u64,
    /// Reserved and not yet written.
    granted: u64,
}

#[async_trait]
impl Admit for SharedAdmit {
    async fn admit(&mut self, n: u64) -> bool {
        if n > self.granted {
            let need = n - self.granted;
            match self
                .meta
                .reserve_upload(&self.namespace, &self.session, need, SLAB, self.limit)
                .await
            {
                Ok(Some(granted)) => self.granted += granted,
                Ok(None) => return false,
                Err(e) => {
                    tracing::warn!(error = %e, "reserving upload bytes failed");
                    return false;
                }
            }
        }
        self.granted -= n;
        true
    }
}

/// What a push that needs quota is, for refusals.
#[derive(Debug, Clone)]
pub(crate) enum Pushed<'a> {
    /// A new upload session to `repository`.
    Session(&'a RepositoryName),
    /// A chunk of an upload session to `repository`.
    Upload(&'a RepositoryName),
    /// The blob `digest` (an upload completed, a monolithic push, a mount).
    Blob(&'a Digest),
    /// A manifest.
    Manifest(&'a Digest),
}

impl std::fmt::Display for Pushed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pushed::Session(r) => write!(f, "a new upload to {r}"),
            Pushed::Upload(r) => write!(f, "the upload to {r}"),
            Pushed::Blob(d) => write!(f, "blob {d}"),
            Pushed::Manifest(d) => write!(f, "manifest {d}"),
        }
    }
}

/// A namespace's quota as the upload paths need it.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    pub(crate) namespace: Namespace,
    pub(crate) limit: u64,
    /// Bytes of stored content.
    pub(crate) used: u64,
    /// Bytes held by open upload sessions (those of the request's own
    /// session excluded).
    pub(crate) held: u64,
    /// Where a refusal is noted, for the `quota.exceeded` webhook event.
    pub(crate) alerts: Arc<crate::webhooks::alerts::Alerts>,
}

impl Gate {
    pub(crate) fn available(&self) -> u64 {
        self.limit
            .saturating_sub(self.used)
            .saturating_sub(self.held)
    }

    /// The refusal of `what`, which needs `need` bytes: `Some(n)` when
    /// known, `None` for a streamed body that passed what is free.
    pub(crate) fn refusal(&self, what: &Pushed<'_>, need: Option<u64>) -> Error {
        self.alerts
            .note(&self.namespace, self.used, self.limit, true);
        let need = match need {
            Some(n) => human(n),
            None => format!("more than {}", human(self.available())),
        };
        let held = if self.held > 0 {
            format!(", {} held by open uploads", human(self.held))
        } else {
            String::new()
        };
        Error::Denied(format!(
            "storage quota of namespace {ns} exceeded: {what} needs {need}, but only {free} of \
             its {limit} quota is free ({used} stored{held}); delete images, finish or cancel \
             uploads, or ask for a larger quota",
            ns = self.namespace,
            free = human(self.available()),
            limit = human(self.limit),
            used = human(self.used),
        ))
    }

    /// Refuses `what`, adding `more` bytes, if it does not fit.
    pub(crate) fn check(&self, what: &Pushed<'_>, more: u64) -> Result<()> {
        if more > self.available() {
            Err(self.refusal(what, Some(more)))
        } else {
            Ok(())
        }
    }
}

/// The bytes open upload sessions hold, per namespace with a quota (see
/// the module's documentation). Monolithic pushes in flight are entries
/// too, under a key of their own.
#[derive(Default)]
pub(crate) struct Sessions {
    by_namespace: std::sync::Mutex<Ledgers>,
}

/// Namespace -> session id -> bytes.
type Ledgers = HashMap<Namespace, HashMap<String, u64>>;

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ledgers> {
        self.by_namespace.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the ledger of `ns` is filled.
    pub(crate) fn knows(&self, ns: &Namespace) -> bool {
        self.lock().contains_key(ns)
    }

    /// Fills the ledger of `ns` with `open` sessions, unless another
    /// request did first.
    pub(crate) fn fill(&self, ns: &Namespace, open: impl IntoIterator<Item = (String, u64)>) {
        self.lock()
            .entry(ns.clone())
            .or_insert_with(|| open.into_iter().collect());
    }

    /// Bytes held in `ns` by sessions other than `except`.
    pub(crate) fn held(&self, ns: &Namespace, except: Option<&str>) -> u64 {
        self.lock().get(ns).map_or(0, |m| {
            m.iter()
                .filter(|(id, _)| Some(id.as_str()) != except)
                .map(|(_, n)| *n)
                .sum()
        })
    }

    /// Reserves `n` more bytes for session `id` of `ns` if stored content
    /// (`used`) plus every session's bytes stay within `limit`.
    pub(crate) fn reserve(&self, ns: &Namespace, id: &str, n: u64, used: u64, limit: u64) -> bool {
        let mut map = self.lock();
        let sessions = map.entry(ns.clone()).or_default();
        let total: u64 = sessions.values().sum();
        if used.saturating_add(total).saturating_add(n) > limit {
            return false;
        }
        *sessions.entry(id.to_owned()).or_insert(0) += n;
        true
    }

    /// Records that session `id` of `ns` holds `size` bytes (the store's
    /// word after an append).
    pub(crate) fn set(&self, ns: &Namespace, id: &str, size: u64) {
        if let Some(sessions) = self.lock().get_mut(ns) {
            sessions.insert(id.to_owned(), size);
        }
    }

    /// Forgets session `id` (completed, cancelled, purged), in whichever
    /// namespace's ledger holds it: session ids are unique, and the purge
    /// of abandoned sessions knows them by their store label alone.
    pub(crate) fn release(&self, id: &str) {
        for sessions in self.lock().values_mut() {
            if sessions.remove(id).is_some() {
                return;
            }
        }
    }
}

impl Registry {
    pub(crate) async fn quota_limits(&self) -> Result<Arc<HashMap<Namespace, u64>>> {
        Ok(self
            .quotas
            .get_or_load(|| async {
                let all = self.meta.quotas().await?;
                Ok::<_, berth_meta::Error>(
                    all.into_iter()
                        .map(|q| (q.namespace, q.limit_bytes))
                        .collect(),
                )
            })
            .await?)
    }

    /// The quota of `repo`'s namespace with its current usage (stored
    /// content and open upload sessions other than `session`), if it has
    /// one and `digest` (when known) is not already held there.
    pub(crate) async fn quota_gate(
        &self,
        repo: &berth_oci::RepositoryName,
        digest: Option<&berth_oci::Digest>,
        session: Option<&str>,
    ) -> Result<Option<Gate>> {
        // Looked up without allocating: most namespaces have no quota.
        let limits = self.quota_limits().await?;
        let Some((ns, &limit)) = limits.get_key_value(repo.namespace_str()) else {
            return Ok(None);
        };
        // A mirror's cache has its own limit (`mirror_cache_max`), never a
        // push quota: only the mirror writes there.
        if self.is_mirror_cache(ns.as_str()) {
            return Ok(None);
        }
        let ns = ns.clone();
        if let Some(d) = digest {
            if self.meta.namespace_holds(&ns, d).await? {
                return Ok(None);
            }
        }
        if !self.settings.shared_database && !self.sessions.knows(&ns) {
            let open: Vec<(String, u64)> = self
                .store
                .upload_list()
                .await?
                .into_iter()
                .filter(|u| {
                    RepositoryName::parse(u.label.as_str()).is_ok_and(|r| r.namespace() == ns)
                })
                .map(|u| (u.id, u.size))
                .collect();
            self.sessions.fill(&ns, open);
        }
        let used = self.meta.namespace_usage(&ns).await?;
        let alerts = self.quota_alerts();
        // Reaching 80% queues a `quota.warning` event (no write here).
        alerts.note(&ns, used, limit, false);
        Ok(Some(Gate {
            held: self.ledger_held(&ns, session).await?,
            namespace: ns,
            limit,
            used,
            alerts,
        }))
    }

    /// Bytes the open uploads of `ns` hold, `except`'s excluded.
    async fn ledger_held(&self, ns: &Namespace, except: Option<&str>) -> Result<u64> {
        if self.settings.shared_database {
            return Ok(self.meta.upload_reservations(ns, except).await?);
        }
        Ok(self.sessions.held(ns, except))
    }

    /// Records that upload `id` of `ns` holds `size` bytes.
    pub(crate) async fn ledger_set(&self, ns: &Namespace, id: &str, size: u64) -> Result<()> {
        if self.settings.shared_database {
            return Ok(self.meta.set_upload_reservation(ns, id, size).await?);
        }
        self.sessions.set(ns, id, size);
        Ok(())
    }

    /// Forgets upload `id`. A failure on the shared ledger is logged: the
    /// reservation then waits for the purge of abandoned uploads.
    pub(crate) async fn ledger_release(&self, id: &str) {
        if self.settings.shared_database {
            if let Err(e) = self.meta.release_upload(id).await {
                tracing::warn!(upload = id, error = %e, "releasing an upload's quota reservation failed");
            }
            return;
        }
        self.sessions.release(id);
    }

    /// What reserves the bytes of upload (or push) `id` within `g`.
    pub(crate) fn admit(&self, g: &Gate, id: &str) -> Box<dyn Admit> {
        if self.settings.shared_database {
            Box::new(SharedAdmit {
                meta: self.meta.clone(),
                namespace: g.namespace.clone(),
                session: id.to_owned(),
                limit: g.limit,
                granted: 0,
            })
        } else {
            Box::new(LocalAdmit {
                ledger: self.sessions.clone(),
                namespace: g.namespace.clone(),
                session: id.to_owned(),
                used: g.used,
                limit: g.limit,
            })
        }
    }

    /// Usage of namespace `ns`, per repository, with its quota. A
    /// namespace nobody owns, without repositories or a quota, is
    /// `NotFound`, as an unknown repository is.
    pub async fn namespace_usage(&self, ns: &Namespace) -> Result<NamespaceUsage> {
        let mut usage = summarise(ns, self.meta.usage_summary(ns).await?);
        usage.mirrored = self.is_mirror_cache(ns.as_str());
        // The quota's use is the namespace's stored bytes, summed above.
        usage.quota = match self.quota_limits().await?.get(ns) {
            Some(&limit) if !usage.mirrored => Some(QuotaView {
                namespace: ns.to_string(),
                limit_bytes: limit,
                used_bytes: usage.total_bytes,
                available_bytes: limit.saturating_sub(usage.total_bytes),
            }),
            _ => None,
        };
        if usage.repositories.is_empty()
            && usage.quota.is_none()
            && self.meta.namespace(ns).await?.is_none()
            && self.meta.namespace_repositories(ns).await?.is_empty()
        {
            return Err(Error::NotFound(format!(
                "namespace {ns} is not known to this registry: no user or organisation owns it and it holds no repositories"
            )));
        }
        Ok(usage)
    }

    /// Every namespace's stored bytes, with its quota and whether a
    /// mirror's cache holds it (pushed versus mirrored bytes): the sums of
    /// the storage gauges of `/metrics`, one query for all namespaces,
    /// with the namespaces that have a quota and no content yet.
    pub async fn usage_overview(&self) -> Result<Vec<NamespaceTotals>> {
        let quotas = self.quota_limits().await?;
        let mut out: Vec<NamespaceTotals> = self
            .meta
            .usage_by_namespace()
            .await?
            .into_iter()
            .map(|(ns, blobs, bytes)| NamespaceTotals {
                quota_bytes: Namespace::parse(ns.as_str())
                    .ok()
                    .and_then(|n| quotas.get(&n).copied()),
                mirrored: self.is_mirror_cache(&ns),
                namespace: ns,
                blobs,
                bytes,
            })
            .collect();
        for (ns, limit) in quotas.iter() {
            if !out.iter().any(|t| t.namespace == ns.as_str()) {
                out.push(NamespaceTotals {
                    namespace: ns.to_string(),
                    blobs: 0,
                    bytes: 0,
                    quota_bytes: Some(*limit),
                    mirrored: false,
                });
            }
        }
        out.sort_by(|a, b| a.namespace.cmp(&b.namespace));
        Ok(out)
    }

    /// Usage of repository `repo` within its namespace.
    pub async fn repository_usage(&self, repo: &RepositoryName) -> Result<RepositoryUsage> {
        let ns = repo.namespace();
        let usage = self.meta.usage_summary(&ns).await?;
        match usage
            .repositories
            .into_iter()
            .find(|r| r.name == repo.as_str())
        {
            Some(r) => Ok(r),
            None if self.meta.inventory(repo).await?.is_some() => Ok(RepositoryUsage {
                name: repo.to_string(),
                ..Default::default()
            }),
            None => Err(Error::NameUnknown(repo.to_string())),
        }
    }

    /// The quota of `ns` and its use, if one is set.
    pub async fn quota(&self, ns: &Namespace) -> Result<Option<QuotaView>> {
        let Some(&limit) = self.quota_limits().await?.get(ns) else {
            return Ok(None);
        };
        let used = self.meta.namespace_usage(ns).await?;
        Ok(Some(QuotaView {
            namespace: ns.to_string(),
            limit_bytes: limit,
            used_bytes: used,
            available_bytes: limit.saturating_sub(used),
        }))
    }

    /// Sets the quota of namespace `ns`. A quota below the current usage
    /// is allowed: it refuses new content until enough is deleted.
    pub async fn set_quota(
        &self,
        ns: &Namespace,
        limit_bytes: u64,
        caller: &Caller,
    ) -> Result<QuotaView> {
        let out = self.meta.set_quota(ns, limit_bytes, &caller.actor()).await;
        self.quotas.invalidate();
        out?;
        self.quota(ns)
            .await?
            .ok_or_else(|| Error::Internal("quota vanished after being set".into()))
    }

    /// Removes the quota of namespace `ns`.
    pub async fn remove_quota(&self, ns: &Namespace, caller: &Caller) -> Result<()> {
        let out = self.meta.delete_quota(ns, &caller.actor()).await;
        self.quotas.invalidate();
        if out? {
            Ok(())
        } else {
            Err(Error::NotFound(format!("namespace {ns} has no quota")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_messages() {
        let g = Gate {
            namespace: Namespace::parse("acme").unwrap(),
            limit: 10 << 20,
            used: 9 << 20,
            held: 0,
            alerts: Arc::default(),
        };
        let digest = berth_testkit::digests::digest("sha256:abc");
        let what = Pushed::Blob(&digest);
        assert!(g.check(&what, 1 << 20).is_ok());
        let Err(Error::Denied(m)) = g.check(&what, (1 << 20) + 1) else {
            panic!("expected a refusal");
        };
        assert_eq!(
            m,
            format!(
                "storage quota of namespace acme exceeded: blob {digest} needs 1.0 MiB, but only \
                 1.0 MiB of its 10.0 MiB quota is free (9.0 MiB stored); delete images, finish \
                 or cancel uploads, or ask for a larger quota"
            )
        );
        let held = Gate {
            held: 512 << 10,
            ..g.clone()
        };
        assert_eq!(held.available(), 512 << 10);
        let Error::Denied(m) = held.refusal(
            &Pushed::Upload(&RepositoryName::parse("acme/web").unwrap()),
            None,
        ) else {
            panic!("expected a refusal");
        };
        assert!(
            m.contains("the upload to acme/web needs more than 512.0 KiB")
                && m.contains("(9.0 MiB stored, 512.0 KiB held by open uploads)"),
            "{m}"
        );
        assert_eq!(human(512), "512 B");
        let alerts = g.alerts.take();
        let kinds: Vec<_> = alerts.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [berth_meta::events::EventKind::QuotaExceeded],
            "a refusal queues one quota.exceeded event"
        );
    }

    #[test]
    fn sessions_share_one_budget() {
        let s = Sessions::default();
        let (acme, other) = (
            Namespace::parse("acme").unwrap(),
            Namespace::parse("other").unwrap(),
        );
        s.fill(&acme, [("old".to_owned(), 300)]);
        // 1000 B quota, 200 B stored, 300 B in an old session: 500 B left
        // for every session together.
        assert!(s.reserve(&acme, "a", 400, 200, 1000));
        assert!(!s.reserve(&acme, "b", 101, 200, 1000));
        assert!(s.reserve(&acme, "b", 100, 200, 1000));
        assert_eq!(s.held(&acme, Some("a")), 400);
        s.release("a");
        assert!(s.reserve(&acme, "b", 400, 200, 1000));
        s.set(&acme, "b", 0);
        assert_eq!(s.held(&acme, None), 300);
        // Other namespaces are not affected.
        assert!(s.reserve(&other, "x", 5000, 0, 5000));
    }
}
