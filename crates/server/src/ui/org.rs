//! An organisation, at `/ui/org/{org}`: its members and their roles, and
//! its robots (CI accounts) with a token for each, shown once.
//!
//! The checks are the management API's (`crates/server/src/api/accounts.rs`):
//! members see the members; the organisation's admins change roles, add
//! and remove members, and see, create and issue tokens for robots. Anyone
//! else gets a 403 page saying who may.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use berth_oci::Namespace;
use berth_registry::auth::{CreatedToken, Lifetime, TokenRequest};
use berth_registry::{Error, NamespaceKind, Role};
use maud::html;

use super::form::Form;
use super::format::time;
use super::{answer, Page, UiError, Viewer};
use crate::api::Need;
use crate::App;

/// Roles offered, least first.
const ROLES: [&str; 3] = ["read", "write", "admin"];

/// A robot's token: its scopes and lifetime (a year; revoke it on the
/// robot's tokens page through the API or `berth token revoke`).
const ROBOT_SCOPES: [&str; 2] = ["pull", "push"];
const ROBOT_TOKEN_DAYS: i64 = 365;

/// The organisation `raw` names; a user's namespace or nothing is a 404.
async fn org(app: &App, raw: &str) -> Result<Namespace, UiError> {
    let ns = Namespace::parse(raw)
        .map_err(|_| UiError::NotFound(format!("{raw:?} is not an organisation name")))?;
    match app.auth.org(ns.as_str()).await {
        Ok(o) if o.kind == NamespaceKind::Org => Ok(ns),
        Ok(_) => Err(UiError::NotFound(format!(
            "{ns} is a user's own namespace, not an organisation"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The viewer's right to see (member) and to manage (admin) `org`.
async fn may_manage(app: &App, viewer: &Viewer, org: &Namespace) -> Result<bool, UiError> {
    if app.auth.enforced() {
        viewer.signed_in()?;
    }
    viewer
        .principal
        .require(app, org, Need::Member)
        .await
        .map_err(|e| denied(e, org))?;
    Ok(viewer
        .principal
        .require(app, org, Need::Admin)
        .await
        .is_ok())
}

fn denied(e: crate::error::ApiError, org: &Namespace) -> UiError {
    match UiError::from(e) {
        UiError::Forbidden(msg) => UiError::Forbidden(format!(
            "{msg}. Only the members of {org} see it and only its admins manage it: ask one of its admins."
        )),
        other => other,
    }
}

/// `GET /ui/org/{org}`.
pub(crate) async fn handle(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(raw): Path<String>,
) -> Response {
    let result = async {
        let org = org(&app, &raw).await?;
        let admin = may_manage(&app, &viewer, &org).await?;
        render(&app, &viewer, &org, admin, None, None).await
    }
    .await;
    answer(&viewer, result)
}

/// `POST /ui/org/{org}`: `action` `member` (`member`, `role`), `remove`
/// (`member`), `robot` (`name`, `role`) or `token` (`robot`).
pub(crate) async fn handle_post(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(raw): Path<String>,
    Form(fields): Form,
) -> Response {
    let result = async {
        viewer.check_csrf(fields.get("csrf"))?;
        let org = org(&app, &raw).await?;
        may_manage(&app, &viewer, &org).await?;
        let caller = viewer
            .principal
            .require(&app, &org, Need::Admin)
            .await
            .map_err(|e| denied(e, &org))?;
        let role = || {
            let r = fields.get("role").unwrap_or("");
            Role::parse(r).ok_or_else(|| {
                Error::InvalidParameter(format!("role {r:?}: use read, write or admin"))
            })
        };
        let member = fields.get("member").unwrap_or("").trim();
        let done: Result<Option<CreatedToken>, Error> = match fields.get("action").unwrap_or("") {
            "member" => match role() {
                Ok(r) => app
                    .auth
                    .set_member(org.as_str(), member, r, &caller)
                    .await
                    .map(|_| None),
                Err(e) => Err(e),
            },
            "remove" => app
                .auth
                .remove_member(org.as_str(), member, &caller)
                .await
                .map(|_| None),
            "robot" => match role() {
                Ok(r) => {
                    let short = fields.get("name").unwrap_or("").trim();
                    match app.auth.create_robot(org.as_str(), short, r, &caller).await {
                        Ok(Some(_)) => Ok(None),
                        Ok(None) => Err(Error::Conflict(format!("robot {org}+{short} exists"))),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            },
            "token" => {
                let robot = fields.get("robot").unwrap_or("");
                let robots = app.auth.robots(org.as_str()).await?;
                if !robots.iter().any(|r| r.account.name == robot) {
                    Err(Error::NotFound(format!("no robot {robot:?} in {org}")))
                } else {
                    let request = TokenRequest {
                        name: format!("ui-{}", berth_registry::now_ms() / 1000),
                        scopes: ROBOT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
                        patterns: vec![format!("{org}/*")],
                        expires_at: None,
                    };
                    app.auth
                        .issue_token(
                            viewer.identity(),
                            robot,
                            &request,
                            Lifetime::For(ROBOT_TOKEN_DAYS * 86_400_000),
                            &caller,
                        )
                        .await
                        .map(Some)
                }
            }
            other => Err(Error::InvalidParameter(format!("unknown action {other:?}"))),
        };
        match done {
            Ok(None) => Ok(Redirect::to(&format!("/ui/org/{org}")).into_response()),
            Ok(Some(created)) => render(&app, &viewer, &org, true, Some(&created), None).await,
            Err(e @ (Error::InvalidParameter(_) | Error::Conflict(_) | Error::NotFound(_))) => {
                let msg = e.to_string();
                let mut resp = render(&app, &viewer, &org, true, None, Some(&msg)).await?;
                *resp.status_mut() = StatusCode::BAD_REQUEST;
                Ok(resp)
            }
            Err(e) => Err(e.into()),
        }
    }
    .await;
    answer(&viewer, result)
}

async fn render(
    app: &App,
    viewer: &Viewer,
    org: &Namespace,
    admin: bool,
    created: Option<&CreatedToken>,
    problem: Option<&str>,
) -> Result<Response, UiError> {
    let members = app.auth.members(org.as_str()).await?;
    let robots = if admin {
        app.auth.robots(org.as_str()).await?
    } else {
        Vec::new()
    };
    let now = berth_registry::now_ms();
    let csrf = viewer.csrf();
    let action = format!("/ui/org/{org}");
    let role_select = |id: String, current: Option<&str>| {
        html! {
            select id=(id) name="role" {
                @for r in ROLES { option value=(r) selected[Some(r) == current] { (r) } }
            }
        }
    };
    let body = html! {
        h1 { "Organisation " (org.as_str()) }
        p { a href={ "/ui/ns/" (org.as_str()) } { "Its repositories and storage" } }
        @if let Some(msg) = problem { p.error role="alert" { (msg) } }
        @if let Some(c) = created {
            section.created aria-labelledby="created-h" role="status" {
                h2 #created-h { "Token for " (c.record.owner) }
                p { strong { "Copy it now: it is not shown again." } " It may pull and push " (org.as_str()) "/* for a year." }
                div.cmd {
                    code #new-token { (c.token) }
                    button.copy type="button" data-copy=(c.token) aria-label="Copy the token" { "Copy" }
                }
            }
        }
        section aria-labelledby="members-h" {
            h2 #members-h { "Members" }
            div.scroll { table {
                thead { tr {
                    th scope="col" { "Account" } th scope="col" { "Role" }
                    @if admin { th scope="col" { span.visually-hidden { "Actions" } } }
                } }
                tbody {
                    @for m in &members {
                        tr {
                            td { (m.member) }
                            td {
                                @if admin {
                                    form.inline method="post" action=(action) {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input type="hidden" name="action" value="member";
                                        input type="hidden" name="member" value=(m.member);
                                        label.visually-hidden for={ "role-" (m.member) } { "Role of " (m.member) }
                                        (role_select(format!("role-{}", m.member), Some(m.role.as_str())))
                                        " "
                                        button type="submit" aria-label={ "Change the role of " (m.member) } { "Change" }
                                    }
                                } @else { (m.role.as_str()) }
                            }
                            @if admin {
                                td {
                                    form.inline method="post" action=(action) {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input type="hidden" name="action" value="remove";
                                        input type="hidden" name="member" value=(m.member);
                                        button.danger type="submit" aria-label={ "Remove " (m.member) " from " (org.as_str()) } { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                }
            } }
            @if admin {
                form.stack method="post" action=(action) {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="action" value="member";
                    label for="new-member" { "Add a member (account name)" }
                    input #new-member name="member" type="text" required maxlength="128";
                    label for="new-member-role" { "Role" }
                    (role_select("new-member-role".into(), Some("read")))
                    button type="submit" { "Add the member" }
                }
            } @else {
                p.muted { "Only the organisation's admins change its members." }
            }
        }
        @if admin {
            section aria-labelledby="robots-h" {
                h2 #robots-h { "Robots" }
                p.muted { "Accounts for CI: they sign in with their tokens only, and act with their role in " (org.as_str()) "." }
                @if robots.is_empty() {
                    p.muted { "No robots yet." }
                } @else {
                    div.scroll { table {
                        thead { tr {
                            th scope="col" { "Robot" } th scope="col" { "Role" } th scope="col" { "Created" }
                            th scope="col" { span.visually-hidden { "Actions" } }
                        } }
                        tbody {
                            @for r in &robots {
                                tr {
                                    td.mono { (r.account.name) }
                                    td { (r.role.map_or("none", |r| r.as_str())) }
                                    td { (time(r.account.created_at, now)) }
                                    td {
                                        form.inline method="post" action=(action) {
                                            input type="hidden" name="csrf" value=(csrf);
                                            input type="hidden" name="action" value="token";
                                            input type="hidden" name="robot" value=(r.account.name);
                                            button type="submit" aria-label={ "New token for " (r.account.name) } { "New token" }
                                        }
                                    }
                                }
                            }
                        }
                    } }
                }
                form.stack method="post" action=(action) {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="action" value="robot";
                    label for="robot-name" { "New robot's name (it becomes " (org.as_str()) "+NAME)" }
                    input #robot-name name="name" type="text" required maxlength="64" placeholder="ci";
                    label for="robot-role" { "Role" }
                    (role_select("robot-role".into(), Some("write")))
                    button type="submit" { "Create the robot" }
                }
            }
        }
    };
    Ok(Page::new(format!("Organisation {org}"))
        .crumb("Repositories", "/ui/")
        .crumb(org.as_str(), format!("/ui/ns/{org}"))
        .render(Some(viewer), body))
}
