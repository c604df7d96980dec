//! The web UI under `/ui/` (`/` redirects there): server-rendered HTML for
//! people, over the same services and permission checks as the management
//! API, so a signed-in user sees exactly what the API would show them.
//!
//! - Templates are `maud` macros compiled into the binary: HTML is checked
//!   at compile time and every interpolated value is escaped. One
//!   stylesheet and a few lines of script, both compiled in and served
//!   with content-hashed names ([`assets`]); every page answers with a
//!   Content-Security-Policy that allows only berth itself, so a page
//!   loads nothing from another host and runs no inline script.
//! - Sign-in, sessions and CSRF are in [`session`]; the sign-in itself is
//!   `berth_registry::auth::Authority::authenticate`, with the API's
//!   throttling and audit events.
//! - Pages: [`login`], [`home`] (search and namespaces), [`namespace`],
//!   [`repository`] (tags), [`image`] (layers, config, referrers,
//!   signatures, vulnerabilities), [`tokens`], [`policy`] (a namespace's
//!   retention policy with its plan, tag rules and quota), [`org`]
//!   (members, robots and their tokens), [`admin`]
//!   (users, organisations, storage), [`audit`].
//! - A repository the viewer may not read is answered 404, like one that
//!   does not exist; it is never named in a listing.
//!
//! This module knows no SQL: it calls registry services, as the API does.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use berth_registry::{Error, Kind};
use maud::{html, Markup};

use crate::App;

mod admin;
mod assets;
mod audit;
mod form;
mod format;
mod home;
mod image;
mod layout;
mod login;
mod namespace;
mod org;
mod policy;
mod repository;
mod session;
mod tokens;

pub(crate) use layout::Page;
pub(crate) use session::Viewer;

/// Settings of the web UI.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Serve `/ui/` at all.
    pub enabled: bool,
    /// A session unused this long ends.
    pub session_idle: Duration,
    /// A session ends this long after sign-in, however it is used.
    pub session_lifetime: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: true,
            session_idle: Duration::from_secs(3600),
            session_lifetime: Duration::from_secs(12 * 3600),
        }
    }
}

impl Settings {
    /// The idle timeout in milliseconds.
    pub fn idle_ms(&self) -> i64 {
        i64::try_from(self.session_idle.as_millis()).unwrap_or(i64::MAX)
    }

    /// The absolute lifetime in milliseconds.
    pub fn lifetime_ms(&self) -> i64 {
        i64::try_from(self.session_lifetime.as_millis()).unwrap_or(i64::MAX)
    }
}

/// The Content-Security-Policy of every UI response: berth's own
/// stylesheet and script, nothing inline, nothing from elsewhere, no
/// framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The UI's routes, under `/ui`, plus `/` redirecting there.
pub(crate) fn routes(app: &Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(home::handle))
        .route("/ui/static/{file}", get(assets::handle_static))
        .route(
            "/ui/login",
            get(login::handle_form).post(login::handle_post),
        )
        .route("/ui/logout", post(login::handle_logout))
        .route("/ui/ns/{ns}", get(namespace::handle))
        .route("/ui/ns/{ns}/settings", get(policy::handle))
        .route("/ui/ns/{ns}/retention", post(policy::handle_retention))
        .route(
            "/ui/ns/{ns}/retention/preview",
            post(policy::handle_preview),
        )
        .route("/ui/ns/{ns}/tag-rules", post(policy::handle_tag_rules))
        .route("/ui/ns/{ns}/quota", post(policy::handle_quota))
        .route("/ui/org/{org}", get(org::handle).post(org::handle_post))
        .route("/ui/repo/{*path}", get(repository::handle))
        .route(
            "/ui/tokens",
            get(tokens::handle_list).post(tokens::handle_create),
        )
        .route("/ui/tokens/revoke", post(tokens::handle_revoke))
        .route("/ui/tokens/dockerconfig", post(tokens::handle_dockerconfig))
        .route(
            "/ui/admin/users",
            get(admin::handle_users).post(admin::handle_users_post),
        )
        .route(
            "/ui/admin/orgs",
            get(admin::handle_orgs).post(admin::handle_orgs_post),
        )
        .route("/ui/admin/usage", get(admin::handle_usage))
        .route("/ui/admin/audit", get(audit::handle))
        .route("/ui/{*rest}", get(handle_unknown))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            session::open_form_secret,
        ))
        .layer(axum::middleware::map_response(headers))
        .layer(axum::middleware::from_fn(crate::error::catch_panics))
}

/// Adds the security headers to every UI response; pages (not the
/// hashed static files) are never cached: they carry CSRF secrets.
async fn headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

async fn handle_unknown(viewer: Viewer) -> Response {
    UiError::NotFound("There is no such page.".into()).page(Some(&viewer))
}

/// Why a page could not be shown.
#[derive(Debug)]
pub(crate) enum UiError {
    /// Signing in is needed: redirect to the sign-in page.
    SignIn,
    /// A form without the session's CSRF secret.
    Forged,
    /// Nothing to show here (also what a repository the viewer may not
    /// read looks like).
    NotFound(String),
    /// The viewer may not do this (not used for repositories).
    Forbidden(String),
    /// Any other failure of a service, with its status.
    Service(Error),
}

impl From<Error> for UiError {
    fn from(e: Error) -> Self {
        UiError::from_registry(e)
    }
}

impl From<crate::error::ApiError> for UiError {
    fn from(e: crate::error::ApiError) -> Self {
        match e.error().kind() {
            Kind::Unauthenticated => UiError::SignIn,
            Kind::PermissionDenied => UiError::Forbidden(e.error().to_string()),
            Kind::NotFound => UiError::NotFound(e.error().to_string()),
            Kind::InvalidArgument => {
                UiError::Service(Error::InvalidParameter(e.error().to_string()))
            }
            _ => UiError::Service(Error::Internal(e.error().to_string())),
        }
    }
}

impl UiError {
    /// Maps a service error.
    pub(crate) fn from_registry(e: Error) -> Self {
        match e.kind() {
            Kind::Unauthenticated => UiError::SignIn,
            Kind::NotFound => UiError::NotFound(e.to_string()),
            _ => UiError::Service(e),
        }
    }

    /// The answer: a redirect to sign in, or a page saying what happened.
    pub(crate) fn page(self, viewer: Option<&Viewer>) -> Response {
        let (status, title, text, detail) = match self {
            UiError::SignIn => return Redirect::to("/ui/login").into_response(),
            UiError::Forged => (
                StatusCode::FORBIDDEN,
                "Form refused",
                "This form was refused: it did not carry this session's security token. \
                 It may come from another site, or from a page opened before you signed in \
                 again. Go back, reload the page and try once more."
                    .to_owned(),
                None,
            ),
            UiError::NotFound(msg) => (
                StatusCode::NOT_FOUND,
                "Not found",
                "Nothing here, or nothing you may see. If it is private, sign in with an \
                 account that may read it."
                    .to_owned(),
                Some(msg),
            ),
            UiError::Forbidden(msg) => (
                StatusCode::FORBIDDEN,
                "Not allowed",
                "Your account may not see this page.".to_owned(),
                Some(msg),
            ),
            UiError::Service(e) => {
                let status = crate::error::status(e.kind());
                if status.is_server_error() {
                    tracing::warn!(error = %crate::error::chain(&e), "a UI page failed");
                }
                (
                    status,
                    "Something went wrong",
                    e.public_message().to_string(),
                    None,
                )
            }
        };
        let body: Markup = html! {
            h1 { (title) }
            p { (text) }
            @if let Some(d) = detail { p.muted { (d) } }
            p { a href="/ui/" { "Back to the start page" } }
        };
        let mut resp = Page::new(title).render(viewer, body);
        *resp.status_mut() = status;
        resp
    }
}

impl IntoResponse for UiError {
    /// Without a viewer (its session could not be read).
    fn into_response(self) -> Response {
        self.page(None)
    }
}

/// Answers a page: its markup, or the error's page.
pub(crate) fn answer(viewer: &Viewer, result: Result<Response, UiError>) -> Response {
    result.unwrap_or_else(|e| e.page(Some(viewer)))
}
