//! A namespace's allowances: advisory ids that do not count against its
//! pull policy (`scan_allowances`), each with a reason, who granted it,
//! and an optional expiry after which it no longer allows. Every change is
//! audited (`policy.change`) in its transaction.

use berth_oci::Namespace;
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use crate::audit::{self, action, Actor};
use crate::{Error, Meta, Result};

/// One allowance (a row of `scan_allowances`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanAllowance {
    /// The namespace it applies to.
    pub namespace: Namespace,
    /// The advisory id (`CVE-2024-1234`, `GHSA-...`, `DSA-...`).
    pub advisory: String,
    /// Why it is allowed.
    pub reason: String,
    /// When it stops allowing (Unix ms); `None`: never.
    pub expires_at: Option<i64>,
    /// When it was granted (Unix ms).
    pub created_at: i64,
    /// Who granted it.
    pub created_by: Option<String>,
}

fn row(r: &AnyRow) -> Result<ScanAllowance> {
    let ns: String = r.try_get("namespace")?;
    Ok(ScanAllowance {
        namespace: Namespace::parse(&ns)
            .map_err(|e| Error::Corrupt(format!("scan allowance namespace {ns:?}: {e}")))?,
        advisory: r.try_get("advisory")?,
        reason: r.try_get("reason")?,
        expires_at: r.try_get("expires_at")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
    })
}

async fn put(c: &mut AnyConnection, a: ScanAllowance, actor: Actor) -> Result<()> {
    sqlx::query(
        "INSERT INTO scan_allowances (namespace, advisory, reason, expires_at, created_at,
            created_by)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (namespace, advisory) DO UPDATE SET reason = excluded.reason,
            expires_at = excluded.expires_at, created_at = excluded.created_at,
            created_by = excluded.created_by",
    )
    .bind(a.namespace.as_str())
    .bind(a.advisory.as_str())
    .bind(a.reason.as_str())
    .bind(a.expires_at)
    .bind(actor.at)
    .bind(&actor.name)
    .execute(&mut *c)
    .await?;
    let event = actor.event(action::POLICY_CHANGE).detail(json!({
        "change": "scan.allowance.set", "namespace": a.namespace, "advisory": a.advisory,
        "reason": a.reason, "expires_at": a.expires_at,
    }));
    audit::record(c, &event).await
}

async fn remove(
    c: &mut AnyConnection,
    ns: Namespace,
    advisory: String,
    actor: Actor,
) -> Result<bool> {
    let n = sqlx::query("DELETE FROM scan_allowances WHERE namespace = $1 AND advisory = $2")
        .bind(ns.as_str())
        .bind(advisory.as_str())
        .execute(&mut *c)
        .await?
        .rows_affected();
    if n == 0 {
        return Ok(false);
    }
    let event = actor.event(action::POLICY_CHANGE).detail(json!({
        "change": "scan.allowance.remove", "namespace": ns, "advisory": advisory,
    }));
    audit::record(c, &event).await?;
    Ok(true)
}

impl Meta {
    /// The allowances of `ns` (every namespace's when `None`), by
    /// namespace and advisory.
    pub async fn scan_allowances(&self, ns: Option<&Namespace>) -> Result<Vec<ScanAllowance>> {
        const SELECT: &str = "SELECT namespace, advisory, reason, expires_at, created_at,
            created_by FROM scan_allowances";
        let rows = match ns {
            Some(ns) => {
                sqlx::query(&format!("{SELECT} WHERE namespace = $1 ORDER BY advisory"))
                    .bind(ns.as_str().to_owned())
                    .fetch_all(&self.read)
                    .await?
            }
            None => {
                sqlx::query(&format!("{SELECT} ORDER BY namespace, advisory"))
                    .fetch_all(&self.read)
                    .await?
            }
        };
        rows.iter().map(row).collect()
    }

    /// Grants (or replaces) the allowance `a` (its `created_*` come from
    /// `actor`), with a `policy.change` audit event.
    pub async fn set_scan_allowance(&self, a: &ScanAllowance, actor: &Actor) -> Result<()> {
        let (a, actor) = (a.clone(), actor.clone());
        self.transact(move |c| Box::pin(put(c, a, actor))).await
    }

    /// Removes the allowance of `advisory` in `ns`, with a `policy.change`
    /// audit event; `false`: there was none.
    pub async fn remove_scan_allowance(
        &self,
        ns: &Namespace,
        advisory: &str,
        actor: &Actor,
    ) -> Result<bool> {
        let (ns, advisory, actor) = (ns.clone(), advisory.to_owned(), actor.clone());
        self.transact(move |c| Box::pin(remove(c, ns, advisory, actor)))
            .await
    }
}
