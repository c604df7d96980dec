//! Access tokens under `/api/v1/tokens`.
//!
//! Who may manage the tokens of an account: the account itself, the admins
//! of a robot's organisation, and site admins. Creating a token needs a
//! password sign-in (or an unrestricted `admin` token): a limited token can
//! never mint a wider one, nor can a registry token from `/token`. Revoking
//! is always allowed to the token's owner, even with the token being
//! revoked.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use berth_registry::auth::TokenRequest;
use berth_registry::{Caller, Error};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::JsonBody;
use super::extract::{Path, Query};
use super::{Need, Principal};
use crate::error::ApiError;
use crate::App;

/// Longest lifetime a token may be given at creation (10 years).
const MAX_LIFETIME_MS: i64 = 10 * 366 * 86_400_000;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/tokens", get(handle_list).post(handle_create))
        .route("/tokens/{id}", delete(handle_revoke))
}

/// Checks that `principal` may manage the tokens of `owner`.
async fn require_owner_rights(
    app: &App,
    principal: &Principal,
    owner: &str,
) -> Result<Caller, ApiError> {
    if principal.account() == Some(owner) || !app.auth.enforced() {
        return Ok(principal.caller.clone());
    }
    if let Some((org, _)) = owner.split_once('+') {
        return principal.require(app, org, Need::Admin).await;
    }
    principal.require(app, "", Need::SiteAdmin).await
}

/// Whose tokens a request is about: `owner`, else the caller. Anonymous
/// without `owner`: 401 when credentials are enforced (they would say
/// whose), 400 in open mode.
fn owner_of<'a>(
    app: &App,
    principal: &'a Principal,
    asked: Option<&'a str>,
) -> Result<&'a str, ApiError> {
    asked.or(principal.account()).ok_or_else(|| {
        if app.auth.enforced() {
            Error::Unauthorized("authentication required".into()).into()
        } else {
            Error::InvalidParameter("say whose token: owner".into()).into()
        }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTokenBody {
    name: String,
    owner: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    patterns: Vec<String>,
    /// Lifetime from now; absent: never expires.
    expires_in_ms: Option<i64>,
    /// Absolute expiry (Unix ms), instead of `expires_in_ms`.
    expires_at: Option<i64>,
}

async fn handle_create(
    State(app): State<Arc<App>>,
    principal: Principal,
    JsonBody(body): JsonBody<NewTokenBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if app.auth.enforced() {
        if principal.identity.account.is_none() {
            return Err(Error::Unauthorized("authentication required".into()).into());
        }
        if !principal.identity.unrestricted() {
            return Err(Error::Denied(
                "a limited or registry token cannot create tokens: sign in with a password".into(),
            )
            .into());
        }
    }
    let owner = owner_of(&app, &principal, body.owner.as_deref())?.to_owned();
    let caller = require_owner_rights(&app, &principal, &owner).await?;
    let now = berth_registry::meta::now_ms();
    let expires_at = match (body.expires_in_ms, body.expires_at) {
        (Some(_), Some(_)) => {
            return Err(Error::InvalidParameter(
                "give expires_in_ms or expires_at, not both".into(),
            )
            .into())
        }
        (Some(ms), None) if ms > 0 && ms <= MAX_LIFETIME_MS => Some(now + ms),
        (None, Some(at)) if at > now && at - now <= MAX_LIFETIME_MS => Some(at),
        (None, None) => None,
        _ => {
            return Err(Error::InvalidParameter(
                "the expiry must be in the future and within 10 years".into(),
            )
            .into())
        }
    };
    let request = TokenRequest {
        name: body.name,
        scopes: body.scopes,
        patterns: body.patterns,
        expires_at,
    };
    let created = app
        .auth
        .create_token(&owner, &request, &caller)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no account named {owner:?}")))?;
    let mut answer = json!(created.record);
    answer["token"] = created.token.into();
    Ok((StatusCode::CREATED, Json(answer)))
}

#[derive(Deserialize)]
struct ListParams {
    owner: Option<String>,
}

async fn handle_list(
    State(app): State<Arc<App>>,
    principal: Principal,
    Query(p): Query<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let owner = owner_of(&app, &principal, p.owner.as_deref())?.to_owned();
    require_owner_rights(&app, &principal, &owner).await?;
    let tokens = app.auth.meta().tokens(&owner).await.map_err(Error::from)?;
    // Refresh tokens are docker login sessions, listed with the rest so
    // they can be revoked.
    Ok(Json(json!(tokens)))
}

async fn handle_revoke(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let unknown = || ApiError::from(Error::NotFound(format!("no token with id {id:?}")));
    let token = app
        .auth
        .meta()
        .token(&id)
        .await
        .map_err(Error::from)?
        .ok_or_else(unknown)?;
    // Without rights on the owner, answer as if the token did not exist:
    // ids are not secret, but whose they are is nobody else's business.
    let caller = require_owner_rights(&app, &principal, &token.owner)
        .await
        .map_err(|e| match e.error() {
            Error::Denied(_) => unknown(),
            _ => e,
        })?;
    if !app.auth.revoke_token(&id, &caller).await? && token.revoked_at.is_none() {
        return Err(unknown());
    }
    Ok(StatusCode::NO_CONTENT)
}
