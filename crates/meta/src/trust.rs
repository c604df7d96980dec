//! Signature verification: the keys each namespace trusts, its
//! enforcement policy, and the latest verdict per manifest.
//!
//! Changes to keys and policies record [`action::POLICY_CHANGE`] in their
//! transaction. A verdict row is a cache of a pure computation: it stays
//! valid while its inputs (the signature manifest it read, the fingerprint
//! of the keys it used) are those of the moment; the registry decides.
//! Recording one may publish its outbox event in the same transaction.

use berth_oci::{Digest, Namespace, RepositoryName};
use serde::Serialize;
use serde_json::json;
use sqlx::{AnyConnection, Row};

use crate::audit::{self, action, Actor};
use crate::events::{self, NewEvent};
use crate::{Error, Meta, Result};

/// A key a namespace trusts, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrustKey {
    /// The namespace trusting it.
    pub namespace: Namespace,
    /// Its name within the namespace (`release`).
    pub name: String,
    /// What kind of material (`cosign-key`).
    pub kind: String,
    /// Its algorithm (`ecdsa-p256`, `rsa`, ...).
    pub algorithm: String,
    /// SHA-256 of its DER, hex.
    pub fingerprint: String,
    /// The PEM as given.
    pub material: String,
    /// When it was added (Unix ms).
    pub created_at: i64,
    /// Who added it.
    pub created_by: Option<String>,
}

/// A namespace's enforcement policy, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrustPolicy {
    /// The namespace.
    pub namespace: Namespace,
    /// `enforce` or `warn`.
    pub mode: String,
    /// When it was set (Unix ms).
    pub updated_at: i64,
    /// Who set it.
    pub updated_by: Option<String>,
}

/// The latest verification of one manifest, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVerdict {
    /// The `.sig` manifest it read (`None`: there was none).
    pub signatures: Option<Digest>,
    /// The signature referrers it read (sorted).
    pub referrers: Vec<Digest>,
    /// The fingerprint of the trust material it used.
    pub trust: String,
    /// Whether a trusted key verified it.
    pub verified: bool,
    /// The key that did.
    pub key: Option<String>,
    /// That key's algorithm.
    pub algorithm: Option<String>,
    /// The form of the signature that verified it (`cosign`, ...).
    pub format: Option<String>,
    /// The manifest holding that signature.
    pub signature: Option<Digest>,
    /// When a verified verdict stops holding (Unix ms).
    pub valid_until: Option<i64>,
    /// Why not, when not (a stable reason name).
    pub reason: Option<String>,
    /// A sentence for people.
    pub detail: Option<String>,
    /// When it was computed (Unix ms).
    pub checked_at: i64,
}

/// Digests as one column: comma-separated, NULL when none.
fn join_digests(list: &[Digest]) -> Option<String> {
    (!list.is_empty()).then(|| {
        list.iter()
            .map(Digest::as_str)
            .collect::<Vec<_>>()
            .join(",")
    })
}

fn split_digests(column: Option<String>) -> Result<Vec<Digest>> {
    column
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            Digest::parse(s).map_err(|e| Error::Corrupt(format!("stored referrer digest: {e}")))
        })
        .collect()
}

fn key_row(r: &sqlx::any::AnyRow) -> Result<TrustKey> {
    let ns: String = r.try_get("namespace")?;
    Ok(TrustKey {
        namespace: Namespace::parse(ns).map_err(|e| Error::Corrupt(format!("trust key: {e}")))?,
        name: r.try_get("name")?,
        kind: r.try_get("kind")?,
        algorithm: r.try_get("algorithm")?,
        fingerprint: r.try_get("fingerprint")?,
        material: r.try_get("material")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
    })
}

fn policy_row(r: &sqlx::any::AnyRow) -> Result<TrustPolicy> {
    let ns: String = r.try_get("namespace")?;
    Ok(TrustPolicy {
        namespace: Namespace::parse(ns)
            .map_err(|e| Error::Corrupt(format!("trust policy: {e}")))?,
        mode: r.try_get("mode")?,
        updated_at: r.try_get("updated_at")?,
        updated_by: r.try_get("updated_by")?,
    })
}

async fn add_key(c: &mut AnyConnection, k: TrustKey, actor: Actor) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO trust_keys
            (namespace, name, kind, algorithm, fingerprint, material, created_at, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (namespace, name) DO NOTHING",
    )
    .bind(k.namespace.as_str())
    .bind(&k.name)
    .bind(&k.kind)
    .bind(&k.algorithm)
    .bind(&k.fingerprint)
    .bind(&k.material)
    .bind(actor.at)
    .bind(&actor.name)
    .execute(&mut *c)
    .await?
    .rows_affected()
        > 0;
    if done {
        let event = actor.event(action::POLICY_CHANGE).detail(json!({
            "change": "trust.key.add", "namespace": k.namespace, "name": k.name,
            "kind": k.kind, "algorithm": k.algorithm, "fingerprint": k.fingerprint,
        }));
        audit::record(c, &event).await?;
    }
    Ok(done)
}

async fn remove_key(
    c: &mut AnyConnection,
    ns: Namespace,
    name: String,
    actor: Actor,
) -> Result<bool> {
    let done = sqlx::query("DELETE FROM trust_keys WHERE namespace = $1 AND name = $2")
        .bind(ns.as_str())
        .bind(&name)
        .execute(&mut *c)
        .await?
        .rows_affected()
        > 0;
    if done {
        let event = actor.event(action::POLICY_CHANGE).detail(json!({
            "change": "trust.key.remove", "namespace": ns, "name": name,
        }));
        audit::record(c, &event).await?;
    }
    Ok(done)
}

async fn set_policy(
    c: &mut AnyConnection,
    ns: Namespace,
    mode: Option<String>,
    actor: Actor,
) -> Result<()> {
    match &mode {
        Some(m) => {
            sqlx::query(
                "INSERT INTO trust_policies (namespace, mode, updated_at, updated_by)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (namespace) DO UPDATE SET mode = excluded.mode,
                    updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            )
            .bind(ns.as_str())
            .bind(m)
            .bind(actor.at)
            .bind(&actor.name)
            .execute(&mut *c)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM trust_policies WHERE namespace = $1")
                .bind(ns.as_str())
                .execute(&mut *c)
                .await?;
        }
    }
    let event = actor.event(action::POLICY_CHANGE).detail(json!({
        "change": "trust.policy.set", "namespace": ns, "mode": mode.as_deref().unwrap_or("off"),
    }));
    audit::record(c, &event).await
}

async fn record_verdict(
    c: &mut AnyConnection,
    repo: RepositoryName,
    digest: Digest,
    v: StoredVerdict,
    event: Option<NewEvent>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO signature_verdicts
            (repository_id, digest, signatures, trust, state, key_name, algorithm, reason,
             detail, checked_at, referrers, format, signature, valid_until)
         SELECT id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14
         FROM repositories WHERE name = $1
         ON CONFLICT (repository_id, digest) DO UPDATE SET signatures = excluded.signatures,
            trust = excluded.trust, state = excluded.state, key_name = excluded.key_name,
            algorithm = excluded.algorithm, reason = excluded.reason,
            detail = excluded.detail, checked_at = excluded.checked_at,
            referrers = excluded.referrers, format = excluded.format,
            signature = excluded.signature, valid_until = excluded.valid_until",
    )
    .bind(repo.as_str())
    .bind(digest.as_str())
    .bind(v.signatures.as_ref().map(Digest::as_str))
    .bind(&v.trust)
    .bind(if v.verified { "verified" } else { "unverified" })
    .bind(v.key.as_deref())
    .bind(v.algorithm.as_deref())
    .bind(v.reason.as_deref())
    .bind(v.detail.as_deref())
    .bind(v.checked_at)
    .bind(join_digests(&v.referrers))
    .bind(v.format.as_deref())
    .bind(v.signature.as_ref().map(Digest::as_str))
    .bind(v.valid_until)
    .execute(&mut *c)
    .await?;
    if let Some(e) = event {
        events::publish(c, &e).await?;
    }
    Ok(())
}

impl Meta {
    /// Every trusted key, by namespace and name.
    pub async fn trust_keys(&self) -> Result<Vec<TrustKey>> {
        let rows = sqlx::query(
            "SELECT namespace, name, kind, algorithm, fingerprint, material, created_at,
                    created_by
             FROM trust_keys ORDER BY namespace, name",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(key_row).collect()
    }

    /// Every enforcement policy, by namespace.
    pub async fn trust_policies(&self) -> Result<Vec<TrustPolicy>> {
        let rows = sqlx::query(
            "SELECT namespace, mode, updated_at, updated_by FROM trust_policies
             ORDER BY namespace",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(policy_row).collect()
    }

    /// Adds a trusted key (its `created_at`/`created_by` come from
    /// `actor`); `false` if the namespace has a key of that name.
    pub async fn add_trust_key(&self, key: &TrustKey, actor: &Actor) -> Result<bool> {
        let (k, actor) = (key.clone(), actor.clone());
        self.transact(move |c| Box::pin(add_key(c, k, actor))).await
    }

    /// Removes the key `name` of `ns`; `false` if there was none.
    pub async fn remove_trust_key(
        &self,
        ns: &Namespace,
        name: &str,
        actor: &Actor,
    ) -> Result<bool> {
        let (ns, n, actor) = (ns.clone(), name.to_owned(), actor.clone());
        self.transact(move |c| Box::pin(remove_key(c, ns, n, actor)))
            .await
    }

    /// Sets (`Some("enforce")`, `Some("warn")`) or removes (`None`) the
    /// policy of `ns`.
    pub async fn set_trust_policy(
        &self,
        ns: &Namespace,
        mode: Option<&str>,
        actor: &Actor,
    ) -> Result<()> {
        let (ns, m, actor) = (ns.clone(), mode.map(str::to_owned), actor.clone());
        self.transact(move |c| Box::pin(set_policy(c, ns, m, actor)))
            .await
    }

    /// The stored verdict of `digest` in `repo`, if any.
    pub async fn signature_verdict(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<StoredVerdict>> {
        let row = sqlx::query(
            "SELECT v.signatures, v.trust, v.state, v.key_name, v.algorithm, v.reason,
                    v.detail, v.checked_at, v.referrers, v.format, v.signature, v.valid_until
             FROM signature_verdicts v JOIN repositories r ON r.id = v.repository_id
             WHERE r.name = $1 AND v.digest = $2",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(stored_verdict).transpose()
    }

    /// The stored verdicts of `digests` in `repo` (those that have one),
    /// in one query.
    pub async fn signature_verdicts_of(
        &self,
        repo: &RepositoryName,
        digests: &[Digest],
    ) -> Result<Vec<(Digest, StoredVerdict)>> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT v.signatures, v.trust, v.state, v.key_name, v.algorithm, v.reason,
                    v.detail, v.checked_at, v.referrers, v.format, v.signature, v.valid_until,
                    v.digest
             FROM signature_verdicts v JOIN repositories r ON r.id = v.repository_id
             WHERE r.name = $1 AND v.digest IN ({})",
            crate::gc::placeholders(2, digests.len())
        );
        let mut q = sqlx::query(&sql).bind(repo.as_str());
        for d in digests {
            q = q.bind(d.as_str());
        }
        q.fetch_all(&self.read)
            .await?
            .iter()
            .map(|r| Ok((crate::digest_at(r, 12)?, stored_verdict(r)?)))
            .collect()
    }

    /// Stores the verdict of `digest` in `repo` (replacing the previous
    /// one), and publishes `event` in the same transaction.
    pub async fn record_signature_verdict(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        verdict: &StoredVerdict,
        event: Option<NewEvent>,
    ) -> Result<()> {
        let (r, d, v) = (repo.clone(), digest.clone(), verdict.clone());
        self.transact(move |c| Box::pin(record_verdict(c, r, d, v, event)))
            .await
    }
}

impl Meta {
    /// The indexes of `repo` that list the manifest `child` (at most
    /// `limit`): a platform image pulled through a signed index.
    pub async fn parent_indexes(
        &self,
        repo: &RepositoryName,
        child: &Digest,
        limit: i64,
    ) -> Result<Vec<Digest>> {
        let rows = sqlx::query(
            "SELECT mr.parent FROM manifest_references mr
             JOIN repositories r ON r.id = mr.repository_id
             WHERE r.name = $1 AND mr.child = $2 AND mr.kind = 'manifest'
             ORDER BY mr.parent LIMIT $3",
        )
        .bind(repo.as_str())
        .bind(child.as_str())
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                crate::optional_digest_at(r, 0)?
                    .ok_or_else(|| Error::Corrupt("manifest_references.parent is NULL".into()))
            })
            .collect()
    }
}

/// A row of `signature_verdicts` (the columns of [`Meta::signature_verdict`]).
fn stored_verdict(r: &sqlx::any::AnyRow) -> Result<StoredVerdict> {
    let state: String = r.try_get("state")?;
    Ok(StoredVerdict {
        signatures: crate::optional_digest_at(r, 0)?,
        referrers: split_digests(r.try_get("referrers")?)?,
        trust: r.try_get("trust")?,
        verified: state == "verified",
        key: r.try_get("key_name")?,
        algorithm: r.try_get("algorithm")?,
        format: r.try_get("format")?,
        signature: crate::optional_digest_at(r, 10)?,
        valid_until: r.try_get("valid_until")?,
        reason: r.try_get("reason")?,
        detail: r.try_get("detail")?,
        checked_at: r.try_get("checked_at")?,
    })
}
