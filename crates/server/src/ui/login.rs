//! Signing in and out.
//!
//! The form takes a user name and a password, or an access token (the
//! user name may then stay empty). The check is the API's:
//! [`berth_registry::auth::Authority::authenticate`], with its throttling of
//! failed attempts per address and per account, and the audit events of
//! logins. A success opens a server-side session and sets its cookie.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use berth_registry::auth::{secret, Credentials};
use berth_registry::Error;
use maud::html;
use serde::Deserialize;

use super::form::Form;
use super::session::{self, COOKIE, LOGIN_COOKIE};
use super::{answer, Page, UiError, Viewer};
use crate::App;

/// How long the sign-in form's double-submit cookie lives (seconds).
const LOGIN_COOKIE_SECS: u64 = 3600;

#[derive(Deserialize)]
pub(crate) struct Next {
    next: Option<String>,
}

/// Where to go after signing in: a page of the UI, nothing else.
fn local(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.contains("//") && !n.contains('\\') => n,
        _ => "/ui/",
    }
}

/// `GET /ui/login`.
pub(crate) async fn handle_form(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    viewer: Viewer,
    Query(q): Query<Next>,
) -> Response {
    if viewer.session.is_some() {
        return Redirect::to(local(q.next.as_deref())).into_response();
    }
    form(
        &app,
        &headers,
        &viewer,
        q.next.as_deref(),
        None,
        StatusCode::OK,
    )
}

/// The sign-in page, with a fresh double-submit token, and `problem` said
/// above the form.
fn form(
    app: &App,
    headers: &HeaderMap,
    viewer: &Viewer,
    next: Option<&str>,
    problem: Option<&str>,
    status: StatusCode,
) -> Response {
    let token = match secret::random_string(32) {
        Ok(t) => t,
        Err(e) => return UiError::Service(e).page(Some(viewer)),
    };
    let open = !app.auth.enforced();
    let body = html! {
        section.narrow {
            h1 { "Sign in" }
            @if open {
                p.notice { "Authentication is off on this registry (" code { "--auth none" } "): everyone sees everything, and there is nothing to sign in to." }
            }
            @if let Some(p) = problem {
                p.error role="alert" { (p) }
            }
            form.stack method="post" action="/ui/login" {
                input type="hidden" name="login" value=(token);
                input type="hidden" name="next" value=(local(next));
                label for="username" { "User name" }
                input #username name="username" type="text" autocomplete="username" autocapitalize="none" spellcheck="false";
                label for="password" { "Password or access token" }
                input #password name="password" type="password" autocomplete="current-password" required;
                p.hint #password-hint { "With an access token (" code { "berth_pat_…" } ") the user name may stay empty." }
                button type="submit" { "Sign in" }
            }
        }
    };
    let mut resp = Page::new("Sign in").render(Some(viewer), body);
    *resp.status_mut() = status;
    resp.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(
            LOGIN_COOKIE,
            &token,
            LOGIN_COOKIE_SECS,
            session::over_https(app, headers),
        ),
    );
    resp
}

/// `POST /ui/login`.
pub(crate) async fn handle_post(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    viewer: Viewer,
    Form(fields): Form,
) -> Response {
    let sent = fields.get("login");
    let expected = session::cookie(&headers, LOGIN_COOKIE);
    match (sent, expected) {
        (Some(a), Some(b)) if !b.is_empty() && session::same(a, b) => {}
        _ => return UiError::Forged.page(Some(&viewer)),
    }
    let next = fields.get("next");
    if !app.auth.enforced() {
        return Redirect::to("/ui/").into_response();
    }
    let username = fields.get("username").unwrap_or("").trim();
    let password = fields.get("password").unwrap_or("");
    let credentials = if username.is_empty() && secret::looks_like_token(password) {
        Credentials::Bearer(password.to_owned())
    } else {
        Credentials::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        }
    };
    let ip = viewer.principal.caller.ip;
    let identity = match app.auth.authenticate(&credentials, ip, true).await {
        Ok(i) if i.account.is_some() && i.workload.is_none() => i,
        Ok(_) | Err(Error::Unauthorized(_)) => {
            return form(
                &app,
                &headers,
                &viewer,
                next,
                Some("Wrong user name, password or token."),
                StatusCode::UNAUTHORIZED,
            )
        }
        Err(Error::TooManyRequests { retry_after }) => {
            let text = format!(
                "Too many failed sign-ins from here or for this account: wait {retry_after} seconds, then try again."
            );
            return form(
                &app,
                &headers,
                &viewer,
                next,
                Some(&text),
                StatusCode::TOO_MANY_REQUESTS,
            );
        }
        Err(e) => return UiError::Service(e).page(Some(&viewer)),
    };
    let opened = match app
        .auth
        .open_ui_session(&identity, app.settings.ui.lifetime_ms())
        .await
    {
        Ok(o) => o,
        Err(e) => return UiError::from_registry(e).page(Some(&viewer)),
    };
    let secure = session::over_https(&app, &headers);
    let max_age = app.settings.ui.session_lifetime.as_secs().max(1);
    let mut resp = Redirect::to(local(next)).into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        session::set_cookie(COOKIE, &opened.id, max_age, secure),
    );
    h.append(
        header::SET_COOKIE,
        session::set_cookie(LOGIN_COOKIE, "", 0, secure),
    );
    resp
}

/// `POST /ui/logout`: ends the session (deleted from the database, so the
/// cookie is worthless even if kept) and clears the cookie.
pub(crate) async fn handle_logout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    viewer: Viewer,
    Form(fields): Form,
) -> Response {
    let result = async {
        viewer.check_csrf(fields.get("csrf"))?;
        let session = viewer.signed_in()?;
        app.auth.close_ui_session(&session.id).await?;
        let mut resp = Redirect::to("/ui/login").into_response();
        resp.headers_mut().append(
            header::SET_COOKIE,
            session::set_cookie(COOKIE, "", 0, session::over_https(&app, &headers)),
        );
        Ok(resp)
    }
    .await;
    answer(&viewer, result)
}

#[cfg(test)]
mod tests {
    use super::local;

    #[test]
    fn sign_in_returns_only_to_ui_pages() {
        assert_eq!(local(Some("/ui/repo/acme/web")), "/ui/repo/acme/web");
        assert_eq!(local(Some("https://evil.example/")), "/ui/");
        assert_eq!(local(Some("/ui//evil.example")), "/ui/");
        assert_eq!(local(Some("/api/v1/whoami")), "/ui/");
        assert_eq!(local(None), "/ui/");
    }
}
