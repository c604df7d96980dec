//! Pages for site administrators only: the accounts of the registry
//! (create a user; disable, enable, make or unmake a site admin, reset a
//! password, end sessions, delete), the organisations (found one; each
//! linked to its own page) and the storage of every namespace. Anyone
//! else gets a 403 page (signed out: the sign-in page).
//!
//! Every change calls the account service the management API calls
//! (`crates/server/src/api/accounts.rs`), so the rules, the validation
//! and the audit events are the API's; a refusal is shown on the page
//! with its reason and what to do.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use berth_oci::name::MAX_NAMESPACE_LEN as MAX_NAME;
use berth_registry::auth::{secret, AccountChange};
use berth_registry::{Caller, Error, Visibility};
use maud::{html, Markup};

use super::form::Form;
use super::format::{size, time};
use super::{answer, Page, UiError, Viewer};
use crate::App;

/// What a page answers after a form: nothing, a refusal (with what to
/// do next), a change done, or a password shown once.
enum Notice {
    None,
    Problem(String),
    Done(String),
    Password { user: String, password: String },
}

/// A refusal the page shows in place (with the status it answers):
/// invalid input, a name taken, no such account, a rule of the
/// operation (nobody disables themselves). Anything else is the error
/// page.
fn refusal(e: Error) -> Result<(StatusCode, String), UiError> {
    match e {
        Error::InvalidParameter(_) | Error::Conflict(_) | Error::NotFound(_) | Error::Denied(_) => {
            Ok((crate::error::status(e.kind()), e.to_string()))
        }
        e => Err(e.into()),
    }
}

/// The site admin's caller, or the refusal every admin page gives.
fn site_admin(app: &App, viewer: &Viewer) -> Result<Caller, UiError> {
    if app.auth.enforced() {
        viewer.signed_in()?;
    }
    Ok(viewer.principal.require_site_admin(app)?)
}

/// `GET /ui/admin/users`.
pub(crate) async fn handle_users(State(app): State<Arc<App>>, viewer: Viewer) -> Response {
    let result = async {
        site_admin(&app, &viewer)?;
        render_users(&app, &viewer, Notice::None).await
    }
    .await;
    answer(&viewer, result)
}

/// `POST /ui/admin/users`: `action` `create` (`name`, `password`,
/// `site_admin`, `visibility`), or one of `disable`, `enable`,
/// `grant-admin`, `withdraw-admin`, `password`, `sessions`, `delete` on
/// the account `name`. Each calls the account service the management
/// API's `/api/v1/users` handlers call, with the same rules and audit
/// events; an empty password at creation, and a reset, get a generated
/// one, shown once.
pub(crate) async fn handle_users_post(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Form(fields): Form,
) -> Response {
    let result = async {
        viewer.check_csrf(fields.get("csrf"))?;
        let caller = site_admin(&app, &viewer)?;
        let name = fields.get("name").unwrap_or("").trim().to_owned();
        let done: Result<Notice, Error> = async {
            Ok(match fields.get("action").unwrap_or("") {
                "create" => {
                    let visibility = match fields.get("visibility").unwrap_or("") {
                        "" | "default" => None,
                        v => Some(Visibility::parse(v).ok_or_else(|| {
                            Error::InvalidParameter(format!(
                                "visibility {v:?}: use public or private"
                            ))
                        })?),
                    };
                    let admin = fields.get("site_admin").is_some();
                    let typed = fields.get("password").unwrap_or("");
                    let generated = if typed.is_empty() {
                        Some(secret::random_string(24)?)
                    } else {
                        None
                    };
                    let password = generated.as_deref().unwrap_or(typed);
                    let created = app
                        .auth
                        .create_user(&name, Some(password), admin, visibility, &caller)
                        .await?;
                    if !created {
                        return Err(Error::Conflict(format!(
                            "the name {name:?} is taken by a user or organisation: choose \
                             another name"
                        )));
                    }
                    match generated {
                        Some(password) => Notice::Password {
                            user: name.clone(),
                            password,
                        },
                        None => Notice::Done(format!(
                            "User {name} created{}.",
                            if admin { ", a site administrator" } else { "" }
                        )),
                    }
                }
                a @ ("disable" | "enable" | "grant-admin" | "withdraw-admin") => {
                    let change = AccountChange {
                        disabled: match a {
                            "disable" => Some(true),
                            "enable" => Some(false),
                            _ => None,
                        },
                        site_admin: match a {
                            "grant-admin" => Some(true),
                            "withdraw-admin" => Some(false),
                            _ => None,
                        },
                    };
                    app.auth.change_account(&name, change, &caller).await?;
                    Notice::Done(match a {
                        "disable" => format!(
                            "{name} is disabled: it can no longer sign in or use its tokens, \
                             and its sessions are ended."
                        ),
                        "enable" => format!("{name} is enabled again."),
                        "grant-admin" => format!("{name} is now a site administrator."),
                        _ => format!("{name} is no longer a site administrator."),
                    })
                }
                "password" => {
                    let password = secret::random_string(24)?;
                    app.auth.set_password(&name, &password, &caller).await?;
                    Notice::Password {
                        user: name.clone(),
                        password,
                    }
                }
                "sessions" => {
                    let n = app.auth.revoke_sessions(&name, &caller).await?;
                    Notice::Done(format!("{n} sessions of {name} ended."))
                }
                "delete" => {
                    app.auth.delete_user(&app.registry, &name, &caller).await?;
                    Notice::Done(format!(
                        "{name} is deleted; the repositories of its namespace stay, private."
                    ))
                }
                other => return Err(Error::InvalidParameter(format!("unknown action {other:?}"))),
            })
        }
        .await;
        match done {
            Ok(notice) => render_users(&app, &viewer, notice).await,
            Err(e) => {
                let (status, msg) = refusal(e)?;
                let mut resp = render_users(&app, &viewer, Notice::Problem(msg)).await?;
                *resp.status_mut() = status;
                Ok(resp)
            }
        }
    }
    .await;
    answer(&viewer, result)
}

/// A form of one button acting on the account `name`; its accessible
/// name is `label` followed by the account's (or `aria`, when given).
fn account_button(csrf: &str, name: &str, action: &str, label: &str, danger: bool) -> Markup {
    account_button_named(
        csrf,
        name,
        action,
        label,
        &format!("{label} {name}"),
        danger,
    )
}

fn account_button_named(
    csrf: &str,
    name: &str,
    action: &str,
    label: &str,
    aria: &str,
    danger: bool,
) -> Markup {
    html! {
        form.inline method="post" action="/ui/admin/users" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="action" value=(action);
            input type="hidden" name="name" value=(name);
            @if danger {
                button.danger type="submit" aria-label=(aria) { (label) }
            } @else {
                button type="submit" aria-label=(aria) { (label) }
            }
        }
    }
}

/// A notice: a refusal, a change done or a password shown once.
fn notice_markup(notice: &Notice) -> Markup {
    html! {
        @match notice {
            Notice::None => {}
            Notice::Problem(msg) => { p.error role="alert" { (msg) } }
            Notice::Done(msg) => { p.notice role="status" { (msg) } }
            Notice::Password { user, password } => {
                section.created aria-labelledby="created-h" role="status" {
                    h2 #created-h { "Password of " (user) }
                    p { strong { "Copy it now: it is not shown again." } " Hand it to " (user) " over a safe channel; they can change it with " code { "berth user passwd" } "." }
                    div.cmd {
                        code #new-password { (password) }
                        button.copy type="button" data-copy=(password) aria-label="Copy the password" { "Copy" }
                    }
                }
            }
        }
    }
}

async fn render_users(app: &App, viewer: &Viewer, notice: Notice) -> Result<Response, UiError> {
    let users = app.auth.users().await?;
    let now = berth_registry::now_ms();
    let csrf = viewer.csrf();
    let me = viewer.account();
    let body = html! {
        h1 { "Users" }
        (notice_markup(&notice))
        section aria-labelledby="new-user-h" {
            h2 #new-user-h { "Create a user" }
            form.stack method="post" action="/ui/admin/users" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="action" value="create";
                label for="new-user" { "Name" }
                input #new-user name="name" type="text" required maxlength=(MAX_NAME) autocomplete="off" aria-describedby="new-user-hint";
                p.hint #new-user-hint { "Lower-case letters, digits and . _ -; it is also the name of the user's namespace." }
                label for="new-password" { "Password" }
                input #new-password name="password" type="password" autocomplete="new-password" aria-describedby="new-password-hint";
                p.hint #new-password-hint { "At least 8 characters. Leave it empty to have one generated and shown once." }
                label for="new-visibility" { "Repositories of the new namespace" }
                select #new-visibility name="visibility" {
                    option value="default" selected { "as configured (" (app.auth.settings().default_visibility.as_str()) ")" }
                    option value="private" { "private" }
                    option value="public" { "public" }
                }
                label.check { input type="checkbox" name="site_admin" value="yes"; " Site administrator" }
                button type="submit" { "Create the user" }
            }
        }
        section aria-labelledby="users-h" {
            h2 #users-h { "Accounts" }
            div.scroll { table.users {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Site admin" }
                    th scope="col" { "State" } th scope="col" { "Created" }
                    th scope="col" { span.visually-hidden { "Actions" } }
                } }
                tbody {
                    @for u in &users {
                        @let user = u.kind.as_str() == "user";
                        @let mine = me == Some(u.name.as_str());
                        tr {
                            td { (u.name) @if mine { " " span.muted { "(you)" } } }
                            td { (u.kind.as_str()) @if let Some(o) = &u.org { " of " a href={ "/ui/org/" (o) } { (o) } } }
                            td { @if u.site_admin { "yes" } @else { "no" } }
                            td { @if u.disabled_at.is_some() { "disabled" } @else { "active" } }
                            td { (time(u.created_at, now)) }
                            td.actions {
                                @if mine {
                                    span.muted { "Another site administrator changes your own account." }
                                } @else {
                                    @if u.disabled_at.is_some() {
                                        (account_button(csrf, &u.name, "enable", "Enable", false))
                                    } @else {
                                        (account_button(csrf, &u.name, "disable", "Disable", true))
                                    }
                                    " "
                                    @if user {
                                        @if u.site_admin {
                                            (account_button(csrf, &u.name, "withdraw-admin", "Withdraw site admin", false))
                                        } @else {
                                            (account_button(csrf, &u.name, "grant-admin", "Make site admin", false))
                                        }
                                        " "
                                        (account_button(csrf, &u.name, "password", "New password", false))
                                        " "
                                    }
                                    (account_button(csrf, &u.name, "sessions", "End sessions", false))
                                    " "
                                    details.confirm {
                                        summary aria-label={ "Delete " (u.name) "..." } { "Delete..." }
                                        p.hint { "Its tokens and memberships go; its repositories stay, private." }
                                        (account_button_named(csrf, &u.name, "delete", "Delete for good", &format!("Delete {} for good", u.name), true))
                                    }
                                }
                            }
                        }
                    }
                }
            } }
        }
    };
    Ok(Page::new("Users")
        .crumb("Repositories", "/ui/")
        .render(Some(viewer), body))
}

/// `GET /ui/admin/orgs`: every organisation with its members and
/// storage, each linked to its page and its namespace's; a form to found
/// one.
pub(crate) async fn handle_orgs(State(app): State<Arc<App>>, viewer: Viewer) -> Response {
    let result = async {
        site_admin(&app, &viewer)?;
        render_orgs(&app, &viewer, None).await
    }
    .await;
    answer(&viewer, result)
}

/// `POST /ui/admin/orgs` (`name`, `visibility`): founds an organisation
/// as `POST /api/v1/orgs` does (the site admin becomes its admin), then
/// shows its page.
pub(crate) async fn handle_orgs_post(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Form(fields): Form,
) -> Response {
    let result = async {
        viewer.check_csrf(fields.get("csrf"))?;
        let caller = site_admin(&app, &viewer)?;
        let name = fields.get("name").unwrap_or("").trim();
        let visibility = match fields.get("visibility").unwrap_or("") {
            "" | "default" => Ok(None),
            v => Visibility::parse(v).map(Some).ok_or_else(|| {
                Error::InvalidParameter(format!("visibility {v:?}: use public or private"))
            }),
        };
        let founded = match visibility {
            Ok(v) => app
                .auth
                .found_org(name, v, viewer.identity(), &caller)
                .await
                .map(|o| o.name),
            Err(e) => Err(e),
        };
        match founded {
            Ok(org) => Ok(Redirect::to(&format!("/ui/org/{org}")).into_response()),
            Err(e) => {
                let (status, msg) = refusal(e)?;
                let mut resp = render_orgs(&app, &viewer, Some(&msg)).await?;
                *resp.status_mut() = status;
                Ok(resp)
            }
        }
    }
    .await;
    answer(&viewer, result)
}

async fn render_orgs(
    app: &App,
    viewer: &Viewer,
    problem: Option<&str>,
) -> Result<Response, UiError> {
    let orgs = app.auth.orgs_with_member_counts().await?;
    let stored: HashMap<String, u64> = app
        .registry
        .usage_overview()
        .await?
        .into_iter()
        .map(|t| (t.namespace, t.bytes))
        .collect();
    let now = berth_registry::now_ms();
    let csrf = viewer.csrf();
    let body = html! {
        h1 { "Organisations" }
        @if let Some(msg) = problem { p.error role="alert" { (msg) } }
        section aria-labelledby="new-org-h" {
            h2 #new-org-h { "Create an organisation" }
            form.stack method="post" action="/ui/admin/orgs" {
                input type="hidden" name="csrf" value=(csrf);
                label for="new-org" { "Name" }
                input #new-org name="name" type="text" required maxlength=(MAX_NAME) autocomplete="off" aria-describedby="new-org-hint";
                p.hint #new-org-hint { "It is also the name of its namespace. You become its admin; add its members on its page." }
                label for="new-org-visibility" { "Its repositories" }
                select #new-org-visibility name="visibility" {
                    option value="default" selected { "as configured (" (app.auth.settings().default_visibility.as_str()) ")" }
                    option value="private" { "private" }
                    option value="public" { "public" }
                }
                button type="submit" { "Create the organisation" }
            }
        }
        section aria-labelledby="orgs-h" {
            h2 #orgs-h { "Organisations" }
            @if orgs.is_empty() {
                p.muted { "No organisations yet." }
            } @else {
                div.scroll { table.orgs {
                    thead { tr {
                        th scope="col" { "Organisation" } th scope="col" { "Namespace" }
                        th scope="col" { "Visibility" } th.num scope="col" { "Members" }
                        th.num scope="col" { "Stored" } th scope="col" { "Created" }
                    } }
                    tbody {
                        @for (o, members) in &orgs {
                            tr {
                                td { a href={ "/ui/org/" (o.name) } { (o.name) } }
                                td { a href={ "/ui/ns/" (o.name) } aria-label={ "Repositories of " (o.name) } { (o.name) "/" } }
                                td { (o.visibility.as_str()) }
                                td.num { (members) }
                                td.num { (size(stored.get(&o.name).copied().unwrap_or(0))) }
                                td { (time(o.created_at, now)) }
                            }
                        }
                    }
                } }
            }
        }
    };
    Ok(Page::new("Organisations")
        .crumb("Repositories", "/ui/")
        .render(Some(viewer), body))
}

/// `GET /ui/admin/usage`: every namespace's stored bytes, pushed or
/// mirrored, with its quota; each links to its namespace page, which
/// splits it by repository.
pub(crate) async fn handle_usage(State(app): State<Arc<App>>, viewer: Viewer) -> Response {
    let result = async {
        if app.auth.enforced() {
            viewer.signed_in()?;
        }
        viewer.principal.require_site_admin(&app)?;
        let all = app.registry.usage_overview().await?;
        let sum = |mirrored: bool| -> u64 {
            all.iter()
                .filter(|t| t.mirrored == mirrored)
                .map(|t| t.bytes)
                .sum()
        };
        let (pushed, mirrored) = (sum(false), sum(true));
        let body = html! {
            h1 { "Storage" }
            p {
                (size(pushed + mirrored)) " stored: " (size(pushed)) " pushed, "
                (size(mirrored)) " mirrored from upstream registries."
            }
            p.muted { "Each digest counts once per namespace. Garbage collection frees what no image uses." }
            @if all.is_empty() {
                p.muted { "Nothing stored yet." }
            } @else {
                div.scroll { table {
                    thead { tr {
                        th scope="col" { "Namespace" } th scope="col" { "Content" }
                        th.num scope="col" { "Blobs" } th.num scope="col" { "Stored" }
                        th.num scope="col" { "Quota" }
                    } }
                    tbody {
                        @for t in &all {
                            tr {
                                td { a href={ "/ui/ns/" (t.namespace) } { (t.namespace) } }
                                td { @if t.mirrored { "mirrored" } @else { "pushed" } }
                                td.num { (t.blobs) }
                                td.num { (size(t.bytes)) }
                                td.num {
                                    @if let Some(q) = t.quota_bytes {
                                        (size(q)) " (" (t.bytes.saturating_mul(100) / q.max(1)) "%)"
                                    } @else { "none" }
                                }
                            }
                        }
                    }
                } }
            }
        };
        Ok::<_, UiError>(Page::new("Storage").crumb("Repositories", "/ui/").render(Some(&viewer), body))
    }
    .await;
    answer(&viewer, result)
}
