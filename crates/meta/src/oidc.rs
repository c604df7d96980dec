//! Keyless push from CI: OIDC trust policies and the ids of exchanged
//! tokens.
//!
//! A policy says which tokens of an OpenID Connect issuer (GitHub Actions,
//! GitLab, ...) may be exchanged for registry access, and what access. Its
//! changes record [`action::POLICY_CHANGE`] in the same transaction. The
//! ids (`jti`) of exchanged tokens are kept until the tokens expire, so
//! that one token is exchanged once.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;
use sqlx::{AnyConnection, Row};

use crate::audit::{self, action, Actor};
use crate::{Error, Meta, Result};

/// A trust policy, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OidcPolicy {
    /// Unique name (`acme-ci`).
    pub name: String,
    /// The issuer URL, exactly as tokens name it in `iss`.
    pub issuer: String,
    /// The `aud` tokens must carry.
    pub audience: String,
    /// Claim name -> glob its value must match (all must).
    pub claims: BTreeMap<String, String>,
    /// The repositories granted: a namespace scope or a glob.
    pub repositories: String,
    /// The actions granted (`pull`, `push`, `delete`).
    pub scopes: Vec<String>,
    /// When it was made (Unix ms).
    pub created_at: i64,
    /// Who made it.
    pub created_by: Option<String>,
}

const COLUMNS: &str =
    "name, issuer, audience, claims, repositories, scopes, created_at, created_by";

fn row(r: &sqlx::any::AnyRow) -> Result<OidcPolicy> {
    let claims: String = r.try_get("claims")?;
    let scopes: String = r.try_get("scopes")?;
    Ok(OidcPolicy {
        name: r.try_get("name")?,
        issuer: r.try_get("issuer")?,
        audience: r.try_get("audience")?,
        claims: serde_json::from_str(&claims)
            .map_err(|_| Error::Corrupt(format!("oidc_policies.claims = {claims:?}")))?,
        repositories: r.try_get("repositories")?,
        scopes: scopes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
    })
}

async fn add(c: &mut AnyConnection, p: OidcPolicy, actor: Actor) -> Result<bool> {
    let claims = serde_json::to_string(&p.claims).map_err(|e| Error::Corrupt(e.to_string()))?;
    let done = sqlx::query(
        "INSERT INTO oidc_policies
            (name, issuer, audience, claims, repositories, scopes, created_at, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(&p.name)
    .bind(&p.issuer)
    .bind(&p.audience)
    .bind(&claims)
    .bind(&p.repositories)
    .bind(p.scopes.join(","))
    .bind(actor.at)
    .bind(&actor.name)
    .execute(&mut *c)
    .await?
    .rows_affected()
        > 0;
    if done {
        let event = actor.event(action::POLICY_CHANGE).detail(json!({
            "change": "oidc.policy.add", "name": p.name, "issuer": p.issuer,
            "audience": p.audience, "claims": p.claims, "repositories": p.repositories,
            "scopes": p.scopes,
        }));
        audit::record(c, &event).await?;
    }
    Ok(done)
}

async fn remove(c: &mut AnyConnection, name: String, actor: Actor) -> Result<bool> {
    let done = sqlx::query("DELETE FROM oidc_policies WHERE name = $1")
        .bind(&name)
        .execute(&mut *c)
        .await?
        .rows_affected()
        > 0;
    if done {
        let event = actor
            .event(action::POLICY_CHANGE)
            .detail(json!({"change": "oidc.policy.remove", "name": name}));
        audit::record(c, &event).await?;
    }
    Ok(done)
}

async fn claim(
    c: &mut AnyConnection,
    issuer: String,
    jti: String,
    exp: i64,
    now: i64,
) -> Result<bool> {
    sqlx::query("DELETE FROM oidc_token_ids WHERE expires_at < $1")
        .bind(now)
        .execute(&mut *c)
        .await?;
    let fresh = sqlx::query(
        "INSERT INTO oidc_token_ids (issuer, jti, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (issuer, jti) DO NOTHING",
    )
    .bind(&issuer)
    .bind(&jti)
    .bind(exp)
    .execute(&mut *c)
    .await?
    .rows_affected()
        > 0;
    Ok(fresh)
}

impl Meta {
    /// Adds a policy (its `created_at`/`created_by` come from `actor`).
    /// `false` if one of that name exists.
    pub async fn add_oidc_policy(&self, policy: &OidcPolicy, actor: &Actor) -> Result<bool> {
        let (p, actor) = (policy.clone(), actor.clone());
        self.transact(move |c| Box::pin(add(c, p, actor))).await
    }

    /// Removes the policy `name`; `false` if there was none.
    pub async fn remove_oidc_policy(&self, name: &str, actor: &Actor) -> Result<bool> {
        let (n, actor) = (name.to_owned(), actor.clone());
        self.transact(move |c| Box::pin(remove(c, n, actor))).await
    }

    /// Every policy, by name.
    pub async fn oidc_policies(&self) -> Result<Vec<OidcPolicy>> {
        let sql = format!("SELECT {COLUMNS} FROM oidc_policies ORDER BY name");
        let rows = sqlx::query(&sql).fetch_all(&self.read).await?;
        rows.iter().map(row).collect()
    }

    /// The policies trusting `issuer`, by name.
    pub async fn oidc_policies_of(&self, issuer: &str) -> Result<Vec<OidcPolicy>> {
        let sql = format!("SELECT {COLUMNS} FROM oidc_policies WHERE issuer = $1 ORDER BY name");
        let rows = sqlx::query(&sql).bind(issuer).fetch_all(&self.read).await?;
        rows.iter().map(row).collect()
    }

    /// Records that the token `jti` of `issuer`, valid until `expires_at`
    /// (Unix ms), was exchanged: `false` if it was before (a replay).
    /// Forgets the ids of tokens expired before `now`.
    pub async fn claim_oidc_token(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool> {
        let (i, j) = (issuer.to_owned(), jti.to_owned());
        self.transact(move |c| Box::pin(claim(c, i, j, expires_at, now)))
            .await
    }
}
