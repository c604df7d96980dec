//! Access tokens: personal access tokens, robot tokens and the refresh
//! tokens of the OAuth2 flow.
//!
//! A token has a public id (the lookup key, part of the token string) and a
//! secret stored only as a hash; this module stores and reads what the
//! registry layer computed and never sees a secret. Creation and revocation
//! record [`action::TOKEN_CREATE`] / [`action::TOKEN_REVOKE`] in the same
//! transaction; `last_used_at` is written in batches ([`Meta::touch_tokens`])
//! off the request path.

use serde::Serialize;
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::accounts::corrupt;
use crate::audit::{self, action, Actor};
use crate::{Meta, Result};

/// What a token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// A user's personal access token.
    Pat,
    /// A robot account's token.
    Robot,
    /// A refresh token of the OAuth2 flow (`docker login` keeps it as its
    /// identity token); stands for the password it was obtained with.
    Refresh,
}

impl TokenKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Pat => "pat",
            TokenKind::Robot => "robot",
            TokenKind::Refresh => "refresh",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<TokenKind> {
        match s {
            "pat" => Some(TokenKind::Pat),
            "robot" => Some(TokenKind::Robot),
            "refresh" => Some(TokenKind::Refresh),
            _ => None,
        }
    }
}

/// A token to store.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Public id (unique; the lookup key).
    pub id: String,
    /// The account it acts as.
    pub owner: String,
    /// A label chosen by its creator (`ci`, `laptop`).
    pub name: String,
    /// What it stands for.
    pub kind: TokenKind,
    /// Hex SHA-256 of the secret part.
    pub secret_hash: String,
    /// Allowed actions (`pull`, `push`, `delete`, `admin`).
    pub scopes: Vec<String>,
    /// Repository scopes it is limited to (namespaces or globs); empty:
    /// everything its owner may do.
    pub patterns: Vec<String>,
    /// Expiry (Unix ms); `None`: never.
    pub expires_at: Option<i64>,
}

/// A stored token (without anything secret but the hash).
#[derive(Debug, Clone, Serialize)]
pub struct TokenRecord {
    /// Public id.
    pub id: String,
    /// The account it acts as.
    pub owner: String,
    /// Its label.
    pub name: String,
    /// What it stands for.
    pub kind: TokenKind,
    /// Hex SHA-256 of the secret part.
    #[serde(skip)]
    pub secret_hash: String,
    /// Allowed actions.
    pub scopes: Vec<String>,
    /// Repository scopes it is limited to (empty: none).
    pub patterns: Vec<String>,
    /// Expiry (Unix ms).
    pub expires_at: Option<i64>,
    /// Last use (Unix ms), updated in batches.
    pub last_used_at: Option<i64>,
    /// Revocation time (Unix ms).
    pub revoked_at: Option<i64>,
    /// Creation time (Unix ms).
    pub created_at: i64,
    /// Who created it.
    pub created_by: Option<String>,
}

impl TokenRecord {
    /// Whether the token may be used at `now` (not revoked, not expired).
    pub fn usable(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

const COLUMNS: &str = "id, owner, name, kind, secret_hash, scopes, patterns, expires_at,
                       last_used_at, revoked_at, created_at, created_by";

fn split(s: &str, sep: char) -> Vec<String> {
    s.split(sep)
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn token_row(r: &AnyRow) -> Result<TokenRecord> {
    let kind: String = r.try_get(3)?;
    let scopes: String = r.try_get(5)?;
    let patterns: String = r.try_get(6)?;
    Ok(TokenRecord {
        id: r.try_get(0)?,
        owner: r.try_get(1)?,
        name: r.try_get(2)?,
        kind: TokenKind::parse(&kind).ok_or_else(|| corrupt("tokens.kind", &kind))?,
        secret_hash: r.try_get(4)?,
        scopes: split(&scopes, ','),
        patterns: split(&patterns, '\n'),
        expires_at: r.try_get(7)?,
        last_used_at: r.try_get(8)?,
        revoked_at: r.try_get(9)?,
        created_at: r.try_get(10)?,
        created_by: r.try_get(11)?,
    })
}

async fn create(c: &mut AnyConnection, t: NewToken, actor: Actor) -> Result<bool> {
    let owner = sqlx::query("SELECT 1 FROM users WHERE name = $1")
        .bind(&t.owner)
        .fetch_optional(&mut *c)
        .await?;
    if owner.is_none() {
        return Ok(false);
    }
    let done = sqlx::query(
        "INSERT INTO tokens (id, owner, name, kind, secret_hash, scopes, patterns, expires_at,
                             last_used_at, revoked_at, created_at, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, $9, $10)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&t.id)
    .bind(&t.owner)
    .bind(&t.name)
    .bind(t.kind.as_str())
    .bind(&t.secret_hash)
    .bind(t.scopes.join(","))
    .bind(t.patterns.join("\n"))
    .bind(t.expires_at)
    .bind(actor.at)
    .bind(&actor.name)
    .execute(&mut *c)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    let event = actor.event(action::TOKEN_CREATE).detail(json!({
        "token": t.id, "owner": t.owner, "name": t.name, "kind": t.kind,
        "scopes": t.scopes, "patterns": t.patterns, "expires_at": t.expires_at,
    }));
    audit::record(c, &event).await?;
    Ok(true)
}

async fn revoke(c: &mut AnyConnection, id: String, actor: Actor) -> Result<bool> {
    let row = sqlx::query(
        "UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL
         RETURNING owner, name, kind",
    )
    .bind(&id)
    .bind(actor.at)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let (owner, name, kind): (String, String, String) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    let event = actor.event(action::TOKEN_REVOKE).detail(json!({
        "token": id, "owner": owner, "name": name, "kind": kind,
    }));
    audit::record(c, &event).await?;
    Ok(true)
}

impl Meta {
    /// Stores a token. `false` if the owner does not exist or the id is
    /// taken.
    pub async fn create_token(&self, token: &NewToken, actor: &Actor) -> Result<bool> {
        let (token, actor) = (token.clone(), actor.clone());
        self.accounts_write(move |c| Box::pin(create(c, token, actor)))
            .await
    }

    /// Revokes a token. `false` if there is no such token or it was
    /// already revoked.
    pub async fn revoke_token(&self, id: &str, actor: &Actor) -> Result<bool> {
        let (id, actor) = (id.to_owned(), actor.clone());
        self.accounts_write(move |c| Box::pin(revoke(c, id, actor)))
            .await
    }

    /// The token `id`, revoked or expired ones included.
    pub async fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM tokens WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| token_row(&r)).transpose()
    }

    /// The tokens of `owner`, oldest first, revoked and expired ones
    /// included (`TokenRecord::usable` tells them apart).
    pub async fn tokens(&self, owner: &str) -> Result<Vec<TokenRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM tokens WHERE owner = $1 ORDER BY created_at, id");
        let rows = sqlx::query(&sql).bind(owner).fetch_all(&self.read).await?;
        rows.iter().map(token_row).collect()
    }

    /// Records the last use of tokens, `(id, time)` pairs, in one write.
    /// Not audited (a login is).
    pub async fn touch_tokens(&self, uses: &[(String, i64)]) -> Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let uses = uses.to_vec();
        self.transact(move |c| {
            Box::pin(async move {
                for (id, at) in uses {
                    sqlx::query(
                        "UPDATE tokens SET last_used_at = $2
                         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
                    )
                    .bind(&id)
                    .bind(at)
                    .execute(&mut *c)
                    .await?;
                }
                Ok(())
            })
        })
        .await
    }
}
