//! Access tokens under `/api/v1/tokens`.
//!
//! The rules (who manages whose tokens, with which credentials, for how
//! long) are the registry's ([`berth_registry::auth::Authority::issue_token`]
//! and its neighbours): the account itself, the admins of a robot's
//! organisation and site admins, with a password sign-in or an
//! unrestricted `admin` token; any token may revoke itself.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use berth_registry::auth::{Lifetime, TokenRequest};
use berth_registry::Error;
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::JsonBody;
use super::extract::{Path, Query};
use super::Principal;
use crate::error::ApiError;
use crate::App;

pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/tokens", get(handle_list).post(handle_create))
        .route("/tokens/{id}", delete(handle_revoke))
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
    let owner = owner_of(&app, &principal, body.owner.as_deref())?.to_owned();
    let lifetime = match (body.expires_in_ms, body.expires_at) {
        (Some(_), Some(_)) => {
            return Err(Error::InvalidParameter(
                "give expires_in_ms or expires_at, not both".into(),
            )
            .into())
        }
        (Some(ms), None) => Lifetime::For(ms),
        (None, Some(at)) => Lifetime::Until(at),
        (None, None) => Lifetime::Forever,
    };
    let request = TokenRequest {
        name: body.name,
        scopes: body.scopes,
        patterns: body.patterns,
        expires_at: None,
    };
    let created = app
        .auth
        .issue_token(
            &principal.identity,
            &owner,
            &request,
            lifetime,
            &principal.caller,
        )
        .await?;
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
    // Refresh tokens are docker login sessions, listed with the rest so
    // they can be revoked.
    let tokens = app.auth.tokens_of(&principal.identity, &owner).await?;
    Ok(Json(json!(tokens)))
}

async fn handle_revoke(
    State(app): State<Arc<App>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.auth
        .revoke_token_as(&principal.identity, &id, &principal.caller)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
