//! The signed-in user's access tokens: create (the secret shown once,
//! with a Docker config to download for Kubernetes), list, revoke.
//!
//! The rules are the API's ([`berth_registry::auth::Authority::issue_token`]
//! and its neighbours): a session opened with a password manages the
//! account's tokens; one opened with a restricted token does not.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use berth_registry::auth::{CreatedToken, Lifetime, TokenRequest};
use berth_registry::{Error, TokenKind};
use maud::{html, Markup};
use serde_json::json;

use super::form::Form;
use super::format::{maybe_time, time};
use super::repository::registry_host;
use super::{answer, Page, UiError, Viewer};
use crate::App;

/// Token lifetimes offered: (form value, label, days).
const LIFETIMES: [(&str, &str, Option<i64>); 4] = [
    ("30", "30 days", Some(30)),
    ("90", "90 days", Some(90)),
    ("365", "1 year", Some(365)),
    ("never", "never expires", None),
];

/// `GET /ui/tokens`.
pub(crate) async fn handle_list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    viewer: Viewer,
) -> Response {
    let result = async {
        viewer.signed_in()?;
        render(&app, &headers, &viewer, None, None).await
    }
    .await;
    answer(&viewer, result)
}

/// The page: the form, `created` (just made, its secret shown once) and
/// the list; `problem` said above the form.
async fn render(
    app: &App,
    headers: &HeaderMap,
    viewer: &Viewer,
    created: Option<&CreatedToken>,
    problem: Option<&str>,
) -> Result<Response, UiError> {
    let me = viewer.account().ok_or(UiError::SignIn)?;
    let (tokens, refused) = match app.auth.tokens_of(viewer.identity(), me).await {
        Ok(t) => (t, None),
        Err(Error::Denied(msg)) => (Vec::new(), Some(msg)),
        Err(e) => return Err(e.into()),
    };
    let now = berth_registry::now_ms();
    let host = registry_host(app, headers);
    let csrf = viewer.csrf();
    let body = html! {
        h1 { "Access tokens" }
        p { "Tokens stand in for your password in " code { "docker login" } ", CI jobs and Kubernetes pull secrets." }
        @if let Some(c) = created { (created_panel(c, &host, me, csrf)) }
        @if let Some(msg) = &refused {
            p.error role="alert" { "This session cannot manage tokens: " (msg) ". Sign in with your password to manage them." }
        } @else {
            section aria-labelledby="new-h" {
                h2 #new-h { "New token" }
                @if let Some(p) = problem { p.error role="alert" { (p) } }
                form.stack method="post" action="/ui/tokens" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="token-name" { "Name" }
                    input #token-name name="name" type="text" required maxlength="64" placeholder="ci, laptop";
                    fieldset {
                        legend { "Scopes" }
                        @for (scope, checked) in [("pull", true), ("push", false), ("delete", false), ("admin", false)] {
                            label.check { input type="checkbox" name="scope" value=(scope) checked[checked]; " " (scope) }
                        }
                    }
                    label for="token-patterns" { "Limit to repositories (one namespace or glob per line; empty: all yours)" }
                    textarea #token-patterns name="patterns" rows="2" placeholder="acme/*" {}
                    label for="token-expiry" { "Expires" }
                    select #token-expiry name="expires" {
                        @for (value, label, _) in LIFETIMES {
                            option value=(value) selected[value == "90"] { (label) }
                        }
                    }
                    button type="submit" { "Create token" }
                }
            }
            section aria-labelledby="list-h" {
                h2 #list-h { "Your tokens" }
                @if tokens.is_empty() {
                    p.muted { "No tokens yet." }
                } @else {
                    div.scroll { table {
                        thead { tr {
                            th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Kind" }
                            th scope="col" { "Scopes" } th scope="col" { "Created" } th scope="col" { "Last used" }
                            th scope="col" { "Expires" } th scope="col" { "State" } th scope="col" { span.visually-hidden { "Actions" } }
                        } }
                        tbody {
                            @for t in &tokens {
                                @let usable = t.usable(now);
                                tr {
                                    td { (t.name) }
                                    td.mono { (t.id) }
                                    td { (match t.kind { TokenKind::Pat => "personal", TokenKind::Robot => "robot", TokenKind::Refresh => "docker login" }) }
                                    td { (t.scopes.join(", ")) @if !t.patterns.is_empty() { br; span.muted { (t.patterns.join(", ")) } } }
                                    td { (time(t.created_at, now)) }
                                    td { (maybe_time(t.last_used_at, now, "never")) }
                                    td { (maybe_time(t.expires_at, now, "never")) }
                                    td { @if t.revoked_at.is_some() { "revoked" } @else if usable { "active" } @else { "expired" } }
                                    td {
                                        @if usable {
                                            form.inline method="post" action="/ui/tokens/revoke" {
                                                input type="hidden" name="csrf" value=(csrf);
                                                input type="hidden" name="id" value=(t.id);
                                                button.danger type="submit" aria-label={ "Revoke token " (t.name) " (" (t.id) ")" } { "Revoke" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    } }
                }
            }
        }
    };
    Ok(Page::new("Access tokens")
        .crumb("Repositories", "/ui/")
        .render(Some(viewer), body))
}

/// The panel showing a new token's secret, once.
fn created_panel(c: &CreatedToken, host: &str, me: &str, csrf: &str) -> Markup {
    let login = format!("docker login {host} -u {me} --password-stdin");
    html! {
        section.created aria-labelledby="created-h" role="status" {
            h2 #created-h { "Token " (c.record.name) " created" }
            p { strong { "Copy it now: it is not shown again." } }
            div.cmd {
                code #new-token { (c.token) }
                button.copy type="button" data-copy=(c.token) aria-label="Copy the token" { "Copy" }
            }
            p { "Log in with it: " code { (login) } " (paste the token)." }
            form.inline method="post" action="/ui/tokens/dockerconfig" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="token" value=(c.token);
                button type="submit" { "Download a Docker config (dockerconfigjson)" }
            }
            p.muted { "For Kubernetes: " code { "kubectl create secret generic pull --type=kubernetes.io/dockerconfigjson --from-file=.dockerconfigjson=config.json" } }
        }
    }
}

/// `POST /ui/tokens`.
pub(crate) async fn handle_create(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    viewer: Viewer,
    Form(fields): Form,
) -> Response {
    let result = async {
        viewer.check_csrf(fields.get("csrf"))?;
        let me = viewer.account().ok_or(UiError::SignIn)?.to_owned();
        let lifetime = match LIFETIMES
            .iter()
            .find(|(v, _, _)| Some(*v) == fields.get("expires"))
        {
            Some((_, _, Some(days))) => Lifetime::For(days * 86_400_000),
            Some((_, _, None)) => Lifetime::Forever,
            None => Lifetime::For(90 * 86_400_000),
        };
        let request = TokenRequest {
            name: fields.get("name").unwrap_or("").trim().to_owned(),
            scopes: fields.all("scope").map(str::to_owned).collect(),
            patterns: fields
                .get("patterns")
                .unwrap_or("")
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
            expires_at: None,
        };
        match app
            .auth
            .issue_token(
                viewer.identity(),
                &me,
                &request,
                lifetime,
                &viewer.principal.caller,
            )
            .await
        {
            Ok(created) => render(&app, &headers, &viewer, Some(&created), None).await,
            Err(e @ (Error::InvalidParameter(_) | Error::Conflict(_))) => {
                let mut resp = render(&app, &headers, &viewer, None, Some(&e.to_string())).await?;
                *resp.status_mut() = StatusCode::BAD_REQUEST;
                Ok(resp)
            }
            Err(e) => Err(e.into()),
        }
    }
    .await;
    answer(&viewer, result)
}

/// `POST /ui/tokens/revoke`.
pub(crate) async fn handle_revoke(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Form(fields): Form,
) -> Response {
    let result = async {
        viewer.check_csrf(fields.get("csrf"))?;
        let id = fields.get("id").unwrap_or("");
        app.auth
            .revoke_token_as(viewer.identity(), id, &viewer.principal.caller)
            .await?;
        Ok(Redirect::to("/ui/tokens").into_response())
    }
    .await;
    answer(&viewer, result)
}

/// `POST /ui/tokens/dockerconfig`: the Docker config holding the token
/// just shown (sent back by the form, never stored), as a download.
pub(crate) async fn handle_dockerconfig(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    viewer: Viewer,
    Form(fields): Form,
) -> Response {
    let result = async {
        viewer.check_csrf(fields.get("csrf"))?;
        let me = viewer.account().ok_or(UiError::SignIn)?;
        let token = fields.get("token").unwrap_or("");
        if !berth_registry::auth::secret::looks_like_token(token) {
            return Err(UiError::Service(Error::InvalidParameter(
                "that is not a berth token".into(),
            )));
        }
        let host = registry_host(&app, &headers);
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{me}:{token}"));
        let config =
            json!({ "auths": { host: { "username": me, "password": token, "auth": auth } } });
        let mut resp = serde_json::to_string_pretty(&config)
            .map_err(|e| Error::Internal(format!("encoding a Docker config: {e}")))?
            .into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"config.json\""),
        );
        Ok(resp)
    }
    .await;
    answer(&viewer, result)
}
