//! The management API under `/api/v1/` (JSON), documented in `docs/api.md`.
//!
//! Each area (accounts, tokens, audit, tag rules, retention, usage, GC,
//! webhooks, ...)
//! lives in its own module with a `routes()` function merged here. Handlers
//! are thin: take the [`Principal`] extractor, check what the operation
//! needs with [`Principal::require`], call one service, answer JSON. Errors
//! use the same `{"errors":[{"code","message"}]}` shape as `/v2/`.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::routing::get;
use axum::{Json, Router};
use berth_oci::{Namespace, RepositoryName};
use berth_registry::auth::{Access, Action, Decision, Identity};
use berth_registry::{Caller, Error};

use crate::auth;
use crate::error::ApiError;

use crate::App;

mod accounts;
pub(crate) mod audit;
mod body;
mod certificates;
mod extract;
mod gc;
mod mirror;
mod oidc;
mod replication;
mod repositories;
mod retention;
mod scans;
mod scrub;
mod tag_rules;
mod tokens;
mod trust;
mod usage;
mod visibility;
mod vulndb;
mod webhooks;

/// What an operation needs on a namespace or repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Read (pull, list, statistics).
    Read,
    /// Read a namespace's own views (members, usage, quota, tag rules,
    /// retention): its owner, members and site admins only; public
    /// visibility does not count, since these views span the private
    /// repositories of the namespace too.
    Member,
    /// Write (push, tag).
    Write,
    /// Delete manifests, blobs and tags.
    Delete,
    /// Administer: settings, members, policies, protected tags.
    Admin,
}

/// What a management operation acts on: a namespace or one repository.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A namespace's settings and views.
    Namespace(&'a Namespace),
    /// One repository.
    Repository(&'a RepositoryName),
}

impl<'a> From<&'a Namespace> for Target<'a> {
    fn from(ns: &'a Namespace) -> Self {
        Target::Namespace(ns)
    }
}

impl<'a> From<&'a RepositoryName> for Target<'a> {
    fn from(name: &'a RepositoryName) -> Self {
        Target::Repository(name)
    }
}

/// The authenticated caller of a management API request.
///
/// Extracted from `Authorization`: Basic (a password, or an access token
/// as the password), or Bearer (an access token, or a registry token from
/// `/token`, which is then held to the access it grants). Without
/// credentials the principal is anonymous and [`Principal::require`]
/// answers 401; in open mode (`--auth none`) everything is allowed.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Who it is, for the audit log and the services (`namespace_admin`
    /// is only set by [`Principal::require`]).
    pub caller: Caller,
    /// The identity the credentials proved (account, token limits).
    pub identity: Identity,
}

impl Principal {
    /// The account name; `None` when anonymous.
    pub fn account(&self) -> Option<&str> {
        self.identity.name()
    }

    /// Checks that the principal administers the whole registry (users,
    /// organisations, global jobs), and returns the [`Caller`] to pass to
    /// the service. Anonymous: 401; known but not a site admin: 403.
    pub fn require_site_admin(&self, app: &App) -> Result<Caller, ApiError> {
        if !app.auth.enforced() {
            return Ok(Caller {
                namespace_admin: true,
                ..self.caller.clone()
            });
        }
        if self.identity.account.is_none() {
            return Err(Error::Unauthorized("authentication required".into()).into());
        }
        if self.identity.is_site_admin() {
            Ok(self.identity.caller(self.caller.ip, true))
        } else {
            Err(Error::Denied("this needs a site administrator".into()).into())
        }
    }

    /// Checks that the principal may do what `need` says on `target` (a
    /// namespace or a repository), and returns the [`Caller`] to pass to
    /// the service, with `namespace_admin` set for that target. Anonymous:
    /// 401; known but not allowed: 403.
    pub async fn require(
        &self,
        app: &App,
        target: impl Into<Target<'_>>,
        need: Need,
    ) -> Result<Caller, ApiError> {
        let target = target.into();
        if !app.auth.enforced() {
            return Ok(Caller {
                namespace_admin: true,
                ..self.caller.clone()
            });
        }
        // Anonymous callers may read public repositories; anything else
        // needs credentials.
        if self.identity.account.is_none() && need != Need::Read {
            return Err(Error::Unauthorized("authentication required".into()).into());
        }
        let denied = || ApiError::from(Error::Denied("not allowed".into()));
        if let (Need::Member, Target::Namespace(ns)) = (need, target) {
            let access = app.auth.namespace_access(&self.identity, ns).await?;
            return if access.contains(Action::Pull) {
                Ok(self
                    .identity
                    .caller(self.caller.ip, access.contains(Action::Admin)))
            } else if self.identity.account.is_none() {
                Err(Error::Unauthorized("authentication required".into()).into())
            } else {
                Err(Error::Denied("only the namespace's members may see this".into()).into())
            };
        }
        let action = match need {
            Need::Read | Need::Member => Action::Pull,
            Need::Write => Action::Push,
            Need::Delete => Action::Delete,
            Need::Admin => Action::Admin,
        };
        // A namespace is checked as the repository named like it.
        let repository = match target {
            Target::Namespace(ns) => &RepositoryName::from(ns.clone()),
            Target::Repository(name) => name,
        };
        match app
            .auth
            .decide(&self.identity, repository, Access::of(&[action]))
            .await?
        {
            Decision::Allow(access) => Ok(self
                .identity
                .caller(self.caller.ip, access.contains(Action::Admin))),
            Decision::Login => Err(Error::Unauthorized("authentication required".into()).into()),
            Decision::Scope | Decision::Deny => Err(denied()),
        }
    }
}

impl FromRequestParts<Arc<App>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let ip = auth::client_ip(app, &parts.headers, &parts.extensions);
        let identity = auth::identify(app, &parts.headers, &parts.extensions, ip).await?;
        Ok(Principal {
            caller: identity.caller(ip, !app.auth.enforced()),
            identity,
        })
    }
}

/// A namespace named in a management path (`/namespaces/{ns}/...`,
/// `/orgs/{org}/...`), checked to be one valid name component before any
/// handler sees it: a percent-encoded `/`, `..` or an invalid name is a
/// 400, never a stray row or another namespace's permission check.
pub struct NamespacePath(pub berth_oci::Namespace);

impl<S: Send + Sync> FromRequestParts<S> for NamespacePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = PathParams::from_request_parts(parts, state).await?;
        let ns = params.get("ns").or_else(|_| params.get("org"))?;
        let ns =
            berth_oci::Namespace::parse(ns).map_err(|e| Error::InvalidParameter(e.to_string()))?;
        Ok(NamespacePath(ns))
    }
}

/// The parameters of a management path, by name (`{id}`, `{member}`);
/// the namespace among them is taken with [`NamespacePath`].
pub struct PathParams(Vec<(String, String)>);

impl PathParams {
    /// The parameter `name`.
    pub fn get(&self, name: &str) -> Result<&str, ApiError> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| Error::Internal(format!("route has no {{{name}}}")).into())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(params) =
            axum::extract::Path::<Vec<(String, String)>>::from_request_parts(parts, state)
                .await
                .map_err(|e| Error::InvalidParameter(format!("bad path parameter: {e}")))?;
        Ok(PathParams(params))
    }
}

/// The `/api/v1` router. Its layers answer panics as 500s and write every
/// error with the management API's codes
/// ([`crate::error::management_errors`]); unknown paths and methods are
/// answered in the same JSON shape.
pub(crate) fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/whoami", get(handle_whoami))
        .merge(accounts::routes())
        .merge(tokens::routes())
        .merge(certificates::routes())
        .merge(visibility::routes())
        .merge(audit::routes())
        .merge(tag_rules::routes())
        .merge(repositories::routes())
        .merge(usage::routes())
        .merge(gc::routes())
        .merge(scrub::routes())
        .merge(mirror::routes())
        .merge(replication::routes())
        .merge(retention::routes())
        .merge(webhooks::routes())
        .merge(oidc::routes())
        .merge(vulndb::routes())
        .merge(scans::routes())
        .merge(trust::routes())
        .fallback(handle_no_endpoint)
        .method_not_allowed_fallback(handle_method_not_allowed)
        .layer(axum::middleware::from_fn(crate::error::catch_panics))
        .layer(axum::middleware::map_response(
            crate::error::management_errors,
        ))
}

async fn handle_no_endpoint() -> ApiError {
    ApiError::no_endpoint()
}

async fn handle_method_not_allowed(method: axum::http::Method) -> ApiError {
    Error::Unsupported(format!("method {method} is not allowed on this path")).into()
}

async fn handle_whoami(
    State(_app): State<Arc<App>>,
    principal: Principal,
) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "account": principal.account(),
        "site_admin": principal.identity.is_site_admin(),
    }))
}
