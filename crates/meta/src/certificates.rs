//! Client certificate identities: the subject of a client certificate
//! (mutual TLS), as an RFC 4514 distinguished name, mapped to the account
//! it authenticates as. A mapping is an accounts change: it bumps the
//! accounts epoch (caches drop what they knew) and records
//! [`action::PERMISSION_CHANGE`] in the same transaction.

use serde::Serialize;
use serde_json::json;
use sqlx::{AnyConnection, Row};

use crate::audit::{self, action, Actor};
use crate::{Meta, Result};

/// A subject mapped to an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateIdentity {
    /// The certificate subject (`CN=ci,O=acme`).
    pub subject: String,
    /// The account it authenticates as.
    pub account: String,
    /// When the mapping was made (Unix ms).
    pub created_at: i64,
    /// Who made it.
    pub created_by: Option<String>,
}

fn row(r: &sqlx::any::AnyRow) -> Result<CertificateIdentity> {
    Ok(CertificateIdentity {
        subject: r.try_get("subject")?,
        account: r.try_get("account")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
    })
}

const COLUMNS: &str = "subject, account, created_at, created_by";

async fn map(
    c: &mut AnyConnection,
    subject: String,
    account: String,
    actor: Actor,
) -> Result<bool> {
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM users WHERE name = $1 AND kind IN ('user', 'robot')")
            .bind(&account)
            .fetch_optional(&mut *c)
            .await?;
    if exists.is_none() {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO certificate_identities (subject, account, created_at, created_by)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (subject) DO UPDATE SET account = $2, created_at = $3, created_by = $4",
    )
    .bind(&subject)
    .bind(&account)
    .bind(actor.at)
    .bind(&actor.name)
    .execute(&mut *c)
    .await?;
    let event = actor.event(action::PERMISSION_CHANGE).detail(json!({
        "change": "certificate.map", "subject": subject, "account": account,
    }));
    audit::record(c, &event).await?;
    Ok(true)
}

async fn unmap(c: &mut AnyConnection, subject: String, actor: Actor) -> Result<bool> {
    let done = sqlx::query("DELETE FROM certificate_identities WHERE subject = $1")
        .bind(&subject)
        .execute(&mut *c)
        .await?
        .rows_affected()
        > 0;
    if done {
        let event = actor.event(action::PERMISSION_CHANGE).detail(json!({
            "change": "certificate.unmap", "subject": subject,
        }));
        audit::record(c, &event).await?;
    }
    Ok(done)
}

impl Meta {
    /// Maps `subject` to the user or robot `account` (replacing an
    /// earlier mapping of the subject). `false` if there is no such
    /// account.
    pub async fn map_certificate(
        &self,
        subject: &str,
        account: &str,
        actor: &Actor,
    ) -> Result<bool> {
        let (s, a, actor) = (subject.to_owned(), account.to_owned(), actor.clone());
        self.accounts_write(move |c| Box::pin(map(c, s, a, actor)))
            .await
    }

    /// Removes the mapping of `subject`; `false` if there was none.
    pub async fn unmap_certificate(&self, subject: &str, actor: &Actor) -> Result<bool> {
        let (s, actor) = (subject.to_owned(), actor.clone());
        self.accounts_write(move |c| Box::pin(unmap(c, s, actor)))
            .await
    }

    /// The account `subject` is mapped to, if any.
    pub async fn certificate_identity(&self, subject: &str) -> Result<Option<CertificateIdentity>> {
        let sql = format!("SELECT {COLUMNS} FROM certificate_identities WHERE subject = $1");
        let r = sqlx::query(&sql)
            .bind(subject)
            .fetch_optional(&self.read)
            .await?;
        r.as_ref().map(row).transpose()
    }

    /// Every mapping, by subject.
    pub async fn certificate_identities(&self) -> Result<Vec<CertificateIdentity>> {
        let sql = format!("SELECT {COLUMNS} FROM certificate_identities ORDER BY subject");
        let rows = sqlx::query(&sql).fetch_all(&self.read).await?;
        rows.iter().map(row).collect()
    }
}
