//! The token endpoint of the Docker registry token flow, `/token`.
//!
//! - `GET /token?service=..&scope=..[&offline_token=true]`, with Basic
//!   credentials (a password, or an access token as the password), a
//!   Bearer access token, or nothing (anonymous, for public pulls).
//! - `POST /token`, form-encoded, OAuth2 as containerd and docker use it:
//!   `grant_type=password` (`username`, `password`) and
//!   `grant_type=refresh_token` (`refresh_token`), with `service`, `scope`
//!   (space-separated) and `access_type=offline` for a refresh token.
//!
//! Without credentials, a client certificate mapped to an account (mutual
//! TLS) logs in as that account.
//!
//! The answer is `{"token","access_token","expires_in","issued_at"}` plus
//! `refresh_token` when one was asked for and the login was a password
//! or keyless (a refresh token grant gets its own token back).
//!
//! Keyless logins from CI (see `berth_registry::auth::oidc`): the user name
//! `oidc` with an OpenID Connect ID token as the password, on `GET` with
//! Basic or `POST` with `grant_type=password`. The refresh token then
//! returned is a session token, which works as a refresh token and as the
//! password of `oidc` until the session ends. Wrong credentials are
//! 401, throttled ones 429 with `Retry-After`, a token for another service
//! 400.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_registry::auth::{scope, secret, Credentials, Identity, Issued};
use berth_registry::Error;
use http_body_util::BodyExt;

use crate::auth::{certificate, client_ip, credentials};
use crate::error::ApiError;
use crate::App;

/// Largest form body accepted on `POST /token`.
const MAX_FORM: usize = 64 * 1024;

type Pairs = Vec<(String, String)>;

fn values<'a>(pairs: &'a Pairs, key: &'a str) -> impl Iterator<Item = &'a str> {
    pairs
        .iter()
        .filter(move |(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn value<'a>(pairs: &'a Pairs, key: &'a str) -> Option<&'a str> {
    values(pairs, key).next()
}

fn check_service(app: &App, pairs: &Pairs) -> Result<(), ApiError> {
    match value(pairs, "service") {
        Some(s) if !s.is_empty() && s != app.auth.settings().service => {
            Err(Error::InvalidParameter(format!(
                "this registry issues tokens for service {:?}, not {s:?}",
                app.auth.settings().service
            ))
            .into())
        }
        _ => Ok(()),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds.
fn rfc3339(secs: i64) -> String {
    berth_oci::time::Timestamp(secs).to_string()
}

fn answer(issued: Issued, refresh: Option<String>) -> Response {
    let mut body = serde_json::json!({
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": rfc3339(issued.issued_at),
        "scope": issued.scope,
    });
    if let Some(r) = refresh {
        body["refresh_token"] = serde_json::Value::String(r);
    }
    let mut resp = (StatusCode::OK, axum::Json(body)).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

fn refused(e: Error) -> ApiError {
    let basic = header::HeaderValue::from_static("Basic realm=\"berth\"");
    match e {
        Error::Unauthorized(message) => ApiError::challenge(message, basic),
        other => other.into(),
    }
}

async fn login(
    app: &App,
    creds: &Credentials,
    ip: Option<std::net::IpAddr>,
) -> Result<Identity, ApiError> {
    app.auth
        .authenticate(creds, ip, !matches!(creds, Credentials::None))
        .await
        .map_err(refused)
}

/// `GET /token`.
pub(crate) async fn handle_get(State(app): State<Arc<App>>, req: Request) -> Response {
    let pairs: Pairs = crate::v2::query(&req);
    let creds = credentials(req.headers());
    let ip = client_ip(&app, req.headers(), req.extensions());
    let cert = certificate(&app, &creds, req.extensions()).map(|c| c.subject.clone());
    drop(req);
    let result = async {
        check_service(&app, &pairs)?;
        let identity = match &cert {
            Some(subject) => app
                .auth
                .authenticate_certificate(subject, ip, true)
                .await
                .map_err(refused)?,
            None => login(&app, &creds, ip).await?,
        };
        let scopes = scope::parse_all(values(&pairs, "scope"));
        let issued = app.auth.issue(&identity, &scopes).await?;
        let refresh = if value(&pairs, "offline_token") == Some("true") {
            app.auth.refresh_token(&identity).await?
        } else {
            None
        };
        Ok::<_, ApiError>(answer(issued, refresh))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /token`.
pub(crate) async fn handle_post(State(app): State<Arc<App>>, req: Request) -> Response {
    let ip = client_ip(&app, req.headers(), req.extensions());
    let result = async {
        let body = http_body_util::Limited::new(req.into_body(), MAX_FORM)
            .collect()
            .await
            .map_err(|_| Error::InvalidParameter("the form is missing or too large".into()))?
            .to_bytes();
        let pairs: Pairs = form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        check_service(&app, &pairs)?;
        let (creds, echo) = match value(&pairs, "grant_type") {
            Some("password") => (
                Credentials::Basic {
                    username: value(&pairs, "username").unwrap_or("").to_owned(),
                    password: value(&pairs, "password").unwrap_or("").to_owned(),
                },
                None,
            ),
            Some("refresh_token") => {
                let t = value(&pairs, "refresh_token").unwrap_or("");
                // An access token, or the session token of a keyless login.
                if !secret::looks_like_token(t) && t.split('.').count() != 3 {
                    return Err(refused(Error::Unauthorized("invalid refresh token".into())));
                }
                (Credentials::Bearer(t.to_owned()), Some(t.to_owned()))
            }
            other => {
                return Err(Error::InvalidParameter(format!(
                    "unsupported grant_type {other:?} (use password or refresh_token)"
                ))
                .into())
            }
        };
        let identity = login(&app, &creds, ip).await?;
        let scopes = scope::parse_all(values(&pairs, "scope"));
        let issued = app.auth.issue(&identity, &scopes).await?;
        let refresh = match echo {
            Some(t) => Some(t),
            None if value(&pairs, "access_type") == Some("offline") => {
                app.auth.refresh_token(&identity).await?
            }
            None => None,
        };
        Ok::<_, ApiError>(answer(issued, refresh))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Answers methods other than GET and POST.
pub(crate) async fn handle_other() -> Response {
    ApiError::from(Error::Unsupported("use GET or POST on /token".into())).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
