//! Credentials in, challenges out: the HTTP side of authentication.
//!
//! The decisions are [`berth_registry::auth::Authority`]'s; this module
//! reads the `Authorization` header and the client address, and writes the
//! `WWW-Authenticate` challenge that tells clients where to get a token:
//!
//! ```text
//! WWW-Authenticate: Bearer realm="https://registry.example.com/token",
//!                   service="berth",scope="repository:acme/web:pull,push"
//! ```
//!
//! The realm is the configured external URL plus `/token`, or, without
//! one, the request's own scheme (`https` when berth serves TLS or
//! `X-Forwarded-Proto` says so, else `http`) and `Host`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{header, Extensions, HeaderMap, HeaderValue};
use berth_registry::auth::{Access, Action, Credentials, Decision, Identity};
use berth_registry::{Caller, Error};

use crate::error::ApiError;
use crate::tls::ClientCertificate;
use crate::App;

/// The credentials of a request.
pub fn credentials(headers: &HeaderMap) -> Credentials {
    Credentials::from_header(
        headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or("\u{0}")),
    )
}

/// The client's address: the connection's peer, or, when the server sits
/// behind a proxy it trusts (`trust_forwarded_for`), the last address of
/// `X-Forwarded-For` (the one that proxy appended; earlier entries are
/// whatever the client claimed).
pub fn client_ip(app: &App, headers: &HeaderMap, extensions: &Extensions) -> Option<IpAddr> {
    if app.settings.trust_forwarded_for {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|a| a.trim().parse::<IpAddr>().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The token endpoint clients are sent to.
pub fn realm(app: &App, headers: &HeaderMap) -> String {
    if let Some(url) = &app.settings.external_url {
        return format!("{}/token", url.trim_end_matches('/'));
    }
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|s| !s.is_empty() && !s.contains(['"', '\\', ',']))
    };
    let scheme = match text("x-forwarded-proto") {
        _ if app.settings.https => "https",
        Some("https") => "https",
        _ => "http",
    };
    let host = text("host").unwrap_or("localhost");
    format!("{scheme}://{host}/token")
}

/// A 401 with the Bearer challenge, asking for `scope` if given;
/// `insufficient` marks a token that lacks the scope.
pub fn challenge(
    app: &App,
    headers: &HeaderMap,
    scope: Option<&str>,
    insufficient: bool,
    message: &str,
) -> ApiError {
    let mut value = format!(
        "Bearer realm=\"{}\",service=\"{}\"",
        realm(app, headers),
        app.auth.settings().service
    );
    if let Some(scope) = scope {
        value.push_str(&format!(",scope=\"{scope}\""));
    }
    if insufficient {
        value.push_str(",error=\"insufficient_scope\"");
    }
    let hv = HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
    ApiError::challenge(message, hv)
}

/// Authenticates a `/v2/` or `/api/` request: the identity, or the error
/// response (a 401 challenge for bad credentials, a 429 when throttled).
/// Without an `Authorization` header, a client certificate (mutual TLS)
/// speaks for its mapped account.
pub async fn identify(
    app: &App,
    headers: &HeaderMap,
    extensions: &Extensions,
    ip: Option<IpAddr>,
) -> Result<Identity, ApiError> {
    let creds = credentials(headers);
    let result = match certificate(app, &creds, extensions) {
        Some(cert) => {
            app.auth
                .authenticate_certificate(&cert.subject, ip, false)
                .await
        }
        None => app.auth.authenticate(&creds, ip, false).await,
    };
    match result {
        Ok(identity) => {
            if let (Some(name), Some(who)) = (
                identity.label(),
                extensions.get::<crate::observe::Account>(),
            ) {
                who.set(&name);
            }
            Ok(identity)
        }
        Err(Error::Unauthorized(msg)) => Err(challenge(app, headers, None, false, &msg)),
        Err(e) => Err(e.into()),
    }
}

/// The client certificate that authenticates a request: one was presented
/// and the request carries no other credentials (only ever over TLS).
pub fn certificate<'a>(
    app: &App,
    creds: &Credentials,
    extensions: &'a Extensions,
) -> Option<&'a ClientCertificate> {
    if !app.settings.https || *creds != Credentials::None {
        return None;
    }
    extensions.get::<ClientCertificate>()
}

/// What a `/v2/` request asked for on one repository: the repository, the
/// actions it needs and the scope a challenge asks for (the needed actions,
/// or more, and a mount's source as well).
pub struct Wanted<'a> {
    /// The repository.
    pub repository: &'a berth_oci::RepositoryName,
    /// The actions the request needs.
    pub need: Access,
    /// The challenge's `scope`: one or more scopes separated by spaces.
    pub scope: String,
}

impl Wanted<'_> {
    /// The action a refusal names: the strongest one needed.
    fn verb(&self) -> &'static str {
        if self.need.contains(Action::Delete) {
            "delete"
        } else if self.need.contains(Action::Push) {
            "push"
        } else {
            "pull"
        }
    }
}

/// Turns a decision into the [`Caller`] for the services, or the refusal,
/// which names the repository and the action:
///
/// - a registry token that does not grant the access: 401 with
///   `error="insufficient_scope"` (anonymous tokens too), as the reference
///   registry answers. The Docker daemon then stops at once ("denied: ...",
///   "pull access denied for ...") instead of retrying for 50 seconds.
/// - no credentials: 401 with a challenge for the scope;
/// - an account (password or access token) that may not: 403.
///
/// Every refusal's message differs from its code's default text: the
/// daemon's error decoder reduces an error that carries only the default
/// text to a bare code, and retries bare codes.
pub fn enforce(
    app: &App,
    headers: &HeaderMap,
    decision: Decision,
    identity: &Identity,
    ip: Option<IpAddr>,
    wanted: &Wanted<'_>,
) -> Result<Caller, ApiError> {
    let (verb, name) = (wanted.verb(), wanted.repository);
    let message = match (decision, identity.label()) {
        (Decision::Allow(access), _) => {
            return Ok(identity.caller(ip, !app.auth.enforced() || access.contains(Action::Admin)))
        }
        (Decision::Login, _) | (_, None) => {
            format!("authentication required to {verb} repository {name}: log in first")
        }
        (Decision::Scope, Some(_)) => format!(
            "the registry token does not grant {verb} access to repository {name}; \
             request one with the scope in the challenge"
        ),
        (Decision::Deny, Some(who)) => {
            format!("{verb} access to repository {name} is denied to {who}")
        }
    };
    let token = identity.grants.is_some();
    if decision == Decision::Deny {
        berth_metrics::get().auth_failure(berth_metrics::AuthFailure::Denied);
    }
    match decision {
        Decision::Deny if !token => Err(Error::Denied(message).into()),
        _ => Err(challenge(
            app,
            headers,
            Some(&wanted.scope),
            token || decision == Decision::Scope,
            &message,
        )),
    }
}
