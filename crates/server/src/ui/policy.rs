//! A namespace's rules, at `/ui/ns/{ns}/settings`: its retention policy in
//! an editor with a live plan preview, its tag rules and its quota.
//!
//! Each read and each change goes through the service the management API
//! calls, behind the same check (`crates/server/src/api/retention.rs`,
//! `tag_rules.rs`, `usage.rs`): a namespace's members read, its admins
//! change the retention policy and the tag rules, site admins set the
//! quota. Anyone else gets a 403 page saying who may. The preview is the
//! API's `POST .../retention/plan`: what the policy in the editor would
//! delete now, and why, without saving it; with script on, it follows the
//! text as it is typed (`ui.js` posts the form to `.../retention/preview`
//! and puts the answer in place), without, a button asks for it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use berth_oci::Namespace;
use berth_registry::retention::{ItemKind, Plan};
use berth_registry::{Caller, Error, TagRuleKind};
use maud::{html, Markup};

use super::form::{Fields, Form};
use super::format::{size, time};
use super::{answer, Page, UiError, Viewer};
use crate::api::Need;
use crate::App;

/// Planned deletions listed a page (as the tag table); the totals count
/// them all.
const PLAN_ROWS: usize = 50;

/// A policy to start from when the namespace has none.
const EXAMPLE: &str = r#"[[rule]]
name = "keep-last-10"
tags = ["*"]
exclude_tags = ["latest"]
keep = { last = 10 }
"#;

/// Quota units offered (decimal, as sizes are shown).
const UNITS: [(&str, u64); 3] = [
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
];

/// What the viewer may do here.
struct Rights {
    /// Change the retention policy and the tag rules (namespace admin).
    admin: bool,
    /// Set the quota (site admin).
    site_admin: bool,
}

/// What a form just did or why it was refused, shown at its section.
#[derive(Default)]
struct Outcome {
    /// Policy text to show instead of the stored one (a refused save, a
    /// preview).
    draft: Option<String>,
    /// The plan of the draft, when previewed.
    plan: Option<Result<Plan, String>>,
    /// The page of the plan's deletions shown (1-based).
    plan_page: usize,
    /// A problem with the retention form.
    retention: Option<String>,
    /// A problem with the tag rule form.
    rules: Option<String>,
    /// A problem with the quota form.
    quota: Option<String>,
}

fn namespace(raw: &str) -> Result<Namespace, UiError> {
    Namespace::parse(raw).map_err(|_| UiError::NotFound(format!("{raw:?} is not a namespace name")))
}

/// Members only, as the API's reads; the rights to change.
async fn rights(app: &App, viewer: &Viewer, ns: &Namespace) -> Result<Rights, UiError> {
    if app.auth.enforced() {
        viewer.signed_in()?;
    }
    viewer
        .principal
        .require(app, ns, Need::Member)
        .await
        .map_err(|e| refused(e, ns, "members"))?;
    Ok(Rights {
        admin: viewer.principal.require(app, ns, Need::Admin).await.is_ok(),
        site_admin: viewer.principal.require_site_admin(app).is_ok(),
    })
}

/// What every form of the page checks first: the session's CSRF secret,
/// the namespace, the viewer's membership.
async fn posted(
    app: &App,
    viewer: &Viewer,
    raw: &str,
    fields: &Fields,
) -> Result<(Namespace, Rights), UiError> {
    viewer.check_csrf(fields.get("csrf"))?;
    let ns = namespace(raw)?;
    let rights = rights(app, viewer, &ns).await?;
    Ok((ns, rights))
}

/// The viewer as one of the namespace's admins, who change its policy
/// and tag rules; else a 403 page naming who may.
async fn as_admin(app: &App, viewer: &Viewer, ns: &Namespace) -> Result<Caller, UiError> {
    viewer
        .principal
        .require(app, ns, Need::Admin)
        .await
        .map_err(|e| refused(e, ns, "admins"))
}

/// The page of the plan a form asks for (`plan_page`, 1-based).
fn plan_page(fields: &Fields) -> usize {
    fields
        .get("plan_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
}

/// The page again with a form's problem at its section, as a 400.
async fn refused_form(
    app: &App,
    viewer: &Viewer,
    ns: &Namespace,
    rights: &Rights,
    out: Outcome,
) -> Result<Response, UiError> {
    let mut resp = render(app, viewer, ns, rights, out).await?;
    *resp.status_mut() = StatusCode::BAD_REQUEST;
    Ok(resp)
}

/// A refusal of the API's check as a 403 page naming who may.
fn refused(e: crate::error::ApiError, ns: &Namespace, who: &str) -> UiError {
    match UiError::from(e) {
        UiError::Forbidden(msg) => UiError::Forbidden(format!(
            "{msg}. Only {who} of {ns} may do this: ask one of its admins (or a site admin) for the role."
        )),
        other => other,
    }
}

/// `GET /ui/ns/{ns}/settings`.
pub(crate) async fn handle(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(ns): Path<String>,
) -> Response {
    let result = async {
        let ns = namespace(&ns)?;
        let rights = rights(&app, &viewer, &ns).await?;
        render(&app, &viewer, &ns, &rights, Outcome::default()).await
    }
    .await;
    answer(&viewer, result)
}

/// `POST /ui/ns/{ns}/retention`: `action` `preview`, `save` or `remove`.
pub(crate) async fn handle_retention(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(ns): Path<String>,
    Form(fields): Form,
) -> Response {
    let result = async {
        let (ns, rights) = posted(&app, &viewer, &ns, &fields).await?;
        let text = policy_text(&fields);
        let mut out = Outcome::default();
        match fields.get("action").unwrap_or("preview") {
            "save" => {
                let caller = as_admin(&app, &viewer, &ns).await?;
                match app.registry.set_retention_policy(&ns, &text, &caller).await {
                    Ok(_) => return Ok(Redirect::to(&settings_url(&ns)).into_response()),
                    Err(Error::InvalidParameter(msg)) => {
                        out.retention = Some(msg);
                        out.draft = Some(text);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            "remove" => {
                let caller = as_admin(&app, &viewer, &ns).await?;
                match app.registry.delete_retention_policy(&ns, &caller).await {
                    Ok(()) | Err(Error::NotFound(_)) => {
                        return Ok(Redirect::to(&settings_url(&ns)).into_response())
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            _ => {
                out.plan = Some(preview(&app, &ns, &text).await?);
                out.plan_page = plan_page(&fields);
                out.draft = Some(text);
            }
        }
        if out.retention.is_some() {
            return refused_form(&app, &viewer, &ns, &rights, out).await;
        }
        render(&app, &viewer, &ns, &rights, out).await
    }
    .await;
    answer(&viewer, result)
}

/// `POST /ui/ns/{ns}/retention/preview`: the plan of the posted policy
/// alone, as an HTML fragment the editor's script puts in place.
pub(crate) async fn handle_preview(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(ns): Path<String>,
    Form(fields): Form,
) -> Response {
    let result = async {
        let (ns, _) = posted(&app, &viewer, &ns, &fields).await?;
        let plan = preview(&app, &ns, &policy_text(&fields)).await?;
        let mut resp = plan_view(&plan, plan_page(&fields))
            .into_string()
            .into_response();
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("text/html; charset=utf-8"),
        );
        Ok(resp)
    }
    .await;
    answer(&viewer, result)
}

/// The policy text of a form, with the browser's CRLF line ends undone.
fn policy_text(fields: &Fields) -> String {
    fields.get("policy").unwrap_or("").replace("\r\n", "\n")
}

/// What `text` would delete now: the plan, or why it is not a policy.
async fn preview(app: &App, ns: &Namespace, text: &str) -> Result<Result<Plan, String>, UiError> {
    match app
        .registry
        .retention_plan(ns, berth_registry::now_ms(), Some(text))
        .await
    {
        Ok(plan) => Ok(Ok(plan)),
        Err(Error::InvalidParameter(msg)) => Ok(Err(msg)),
        Err(e) => Err(e.into()),
    }
}

/// `POST /ui/ns/{ns}/tag-rules`: `action` `add` (`pattern`, `kind`) or
/// `remove` (`id`).
pub(crate) async fn handle_tag_rules(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(ns): Path<String>,
    Form(fields): Form,
) -> Response {
    let result = async {
        let (ns, rights) = posted(&app, &viewer, &ns, &fields).await?;
        let caller = as_admin(&app, &viewer, &ns).await?;
        let done = if fields.get("action") == Some("remove") {
            let id = fields.get("id").unwrap_or("");
            match id.parse::<i64>() {
                Ok(id) => app
                    .registry
                    .remove_tag_rule(&ns, id, &caller)
                    .await
                    .map(|_| ()),
                Err(_) => Err(Error::InvalidParameter(format!(
                    "tag rule id {id:?} is not a number"
                ))),
            }
        } else {
            let kind = fields.get("kind").unwrap_or("");
            match TagRuleKind::parse(kind) {
                Some(kind) => app
                    .registry
                    .add_tag_rule(
                        &ns,
                        ns.as_str(),
                        fields.get("pattern").unwrap_or("").trim(),
                        kind,
                        &caller,
                    )
                    .await
                    .map(|_| ()),
                None => Err(Error::InvalidParameter(format!(
                    "kind {kind:?} must be protected or immutable"
                ))),
            }
        };
        match done {
            Ok(()) => Ok(Redirect::to(&format!("{}#rules-h", settings_url(&ns))).into_response()),
            Err(e @ (Error::InvalidParameter(_) | Error::NotFound(_))) => {
                let out = Outcome {
                    rules: Some(e.to_string()),
                    ..Default::default()
                };
                refused_form(&app, &viewer, &ns, &rights, out).await
            }
            Err(e) => Err(e.into()),
        }
    }
    .await;
    answer(&viewer, result)
}

/// `POST /ui/ns/{ns}/quota`: `limit` and `unit`, or `action=remove`.
pub(crate) async fn handle_quota(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(ns): Path<String>,
    Form(fields): Form,
) -> Response {
    let result = async {
        let (ns, rights) = posted(&app, &viewer, &ns, &fields).await?;
        let caller =
            viewer
                .principal
                .require_site_admin(&app)
                .map_err(|e| match UiError::from(e) {
                    UiError::Forbidden(msg) => UiError::Forbidden(format!(
                    "{msg}. Only a site admin sets quotas: ask one to change the quota of {ns}."
                )),
                    other => other,
                })?;
        let done = if fields.get("action") == Some("remove") {
            match app.registry.remove_quota(&ns, &caller).await {
                Ok(()) | Err(Error::NotFound(_)) => Ok(()),
                Err(e) => Err(e),
            }
        } else {
            match quota_bytes(&fields) {
                Ok(limit) => app
                    .registry
                    .set_quota(&ns, limit, &caller)
                    .await
                    .map(|_| ()),
                Err(msg) => Err(Error::InvalidParameter(msg)),
            }
        };
        match done {
            Ok(()) => Ok(Redirect::to(&format!("{}#quota-h", settings_url(&ns))).into_response()),
            Err(Error::InvalidParameter(msg)) => {
                let out = Outcome {
                    quota: Some(msg),
                    ..Default::default()
                };
                refused_form(&app, &viewer, &ns, &rights, out).await
            }
            Err(e) => Err(e.into()),
        }
    }
    .await;
    answer(&viewer, result)
}

/// The quota a form asks for, in bytes.
fn quota_bytes(fields: &Fields) -> Result<u64, String> {
    let raw = fields.get("limit").unwrap_or("").trim();
    let unit = fields.get("unit").unwrap_or("GB");
    let Some((_, scale)) = UNITS.iter().find(|(u, _)| *u == unit) else {
        return Err(format!("unit {unit:?} must be MB, GB or TB"));
    };
    match raw.parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 && n * (*scale as f64) < u64::MAX as f64 => {
            Ok((n * *scale as f64).round() as u64)
        }
        _ => Err(format!(
            "the limit {raw:?} is not a positive number (for example 10 for 10 {unit})"
        )),
    }
}

fn settings_url(ns: &Namespace) -> String {
    format!("/ui/ns/{ns}/settings")
}

async fn render(
    app: &App,
    viewer: &Viewer,
    ns: &Namespace,
    rights: &Rights,
    out: Outcome,
) -> Result<Response, UiError> {
    let stored = app.registry.retention_policy(ns).await?;
    let rules = app.registry.namespace_tag_rules(ns).await?;
    let quota = app.registry.quota(ns).await?;
    let now = berth_registry::now_ms();
    let text = out
        .draft
        .clone()
        .or_else(|| stored.as_ref().map(|s| s.policy.clone()))
        .unwrap_or_else(|| EXAMPLE.to_owned());
    // Without a preview asked for, the page shows the stored policy's plan.
    let plan = match out.plan {
        Some(p) => Some(p),
        None if stored.is_some() => Some(preview(app, ns, &text).await?),
        None => None,
    };
    let csrf = viewer.csrf();
    let base = format!("/ui/ns/{ns}");
    let body = html! {
        h1 { "Rules of " (ns.as_str()) }
        section aria-labelledby="retention-h" {
            h2 #retention-h { "Retention policy" }
            @if let Some(s) = &stored {
                p.muted {
                    "Set " (time(s.updated_at, now))
                    @if let Some(by) = &s.updated_by { " by " (by) }
                    ". The format is in docs/retention.md."
                }
            } @else {
                p.muted { "No policy: nothing is deleted on a schedule. Below is an example to start from; the format is in docs/retention.md." }
            }
            @if let Some(msg) = &out.retention { p.error role="alert" { (msg) } }
            form.stack.wide #retention-form method="post" action={ (base) "/retention" }
                data-preview={ (base) "/retention/preview" } {
                input type="hidden" name="csrf" value=(csrf);
                label for="policy" { "Policy (TOML)" }
                textarea #policy.mono name="policy" rows="12" spellcheck="false"
                    aria-describedby="plan-h" readonly[!rights.admin] { (text) }
                div.actions {
                    button type="submit" name="action" value="preview" { "Preview the plan" }
                    @if rights.admin {
                        button type="submit" name="action" value="save" { "Save the policy" }
                        @if stored.is_some() {
                            button.danger type="submit" name="action" value="remove" { "Remove the policy" }
                        }
                    }
                }
            }
            @if !rights.admin { p.muted { "Only the namespace's admins change its policy." } }
            div #plan aria-live="polite" {
                @if let Some(plan) = &plan { (plan_view(plan, out.plan_page)) }
            }
        }
        section aria-labelledby="rules-h" {
            h2 #rules-h { "Tag rules" }
            p.muted {
                "Protected tags are moved or deleted only by the namespace's admins and never by retention; "
                "immutable tags never move once they exist."
            }
            @if let Some(msg) = &out.rules { p.error role="alert" { (msg) } }
            @if rules.is_empty() {
                p.muted { "No tag rules." }
            } @else {
                div.scroll { table {
                    thead { tr {
                        th scope="col" { "Tags" } th scope="col" { "Kind" } th scope="col" { "Applies to" }
                        th scope="col" { "Created" }
                        @if rights.admin { th scope="col" { span.visually-hidden { "Actions" } } }
                    } }
                    tbody {
                        @for r in &rules {
                            tr {
                                td.mono { (r.pattern) }
                                td { (r.kind.as_str()) }
                                td.mono { (r.scope) }
                                td { (time(r.created_at, now)) @if let Some(by) = &r.created_by { " by " (by) } }
                                @if rights.admin {
                                    td {
                                        form.inline method="post" action={ (base) "/tag-rules" } {
                                            input type="hidden" name="csrf" value=(csrf);
                                            input type="hidden" name="action" value="remove";
                                            input type="hidden" name="id" value=(r.id);
                                            button.danger type="submit"
                                                aria-label={ "Remove the " (r.kind.as_str()) " rule " (r.pattern) } { "Remove" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
            @if rights.admin {
                form.stack method="post" action={ (base) "/tag-rules" } {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="action" value="add";
                    label for="rule-pattern" { "Tags (a glob: " code { "v*" } ", " code { "release-*" } ", " code { "latest" } ")" }
                    input #rule-pattern.mono name="pattern" type="text" required maxlength="128";
                    label for="rule-kind" { "Kind" }
                    select #rule-kind name="kind" {
                        option value="protected" { "protected" }
                        option value="immutable" { "immutable" }
                    }
                    button type="submit" { "Add the rule" }
                }
            }
        }
        section aria-labelledby="quota-h" {
            h2 #quota-h { "Quota" }
            @if let Some(msg) = &out.quota { p.error role="alert" { (msg) } }
            @if let Some(q) = &quota {
                p { label for="quota-meter" { (size(q.used_bytes)) " of " (size(q.limit_bytes)) " used" } }
                meter #quota-meter min="0" max=(q.limit_bytes) value=(q.used_bytes.min(q.limit_bytes))
                    low=(q.limit_bytes / 10 * 8) high=(q.limit_bytes / 20 * 19) optimum="0" {
                    (size(q.used_bytes)) " of " (size(q.limit_bytes))
                }
            } @else {
                p { "No quota: the namespace may store as much as the registry holds." }
            }
            @if rights.site_admin {
                form.stack method="post" action={ (base) "/quota" } {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="quota-limit" { "Limit" }
                    div.actions {
                        input #quota-limit name="limit" type="number" min="0.001" step="any" required
                            value=[quota.as_ref().map(|q| q.limit_bytes as f64 / 1e9)];
                        label.visually-hidden for="quota-unit" { "Unit" }
                        select #quota-unit name="unit" {
                            @for (u, _) in UNITS { option value=(u) selected[u == "GB"] { (u) } }
                        }
                        button type="submit" name="action" value="set" { "Set the quota" }
                        @if quota.is_some() {
                            button.danger type="submit" name="action" value="remove" formnovalidate { "Remove the quota" }
                        }
                    }
                }
            } @else {
                p.muted { "Only site admins set quotas." }
            }
        }
    };
    Ok(Page::new(format!("Rules of {ns}"))
        .crumb("Repositories", "/ui/")
        .crumb(ns.as_str(), base.clone())
        .render(Some(viewer), body))
}

/// A plan: what would be deleted, and why; or why the policy is refused.
/// The deletions are shown [`PLAN_ROWS`] a page (`page`, 1-based); the
/// pager's buttons post the editor's form again for another page of the
/// plan of the text in the editor.
fn plan_view(plan: &Result<Plan, String>, page: usize) -> Markup {
    let now = berth_registry::now_ms();
    html! {
        h3 #plan-h { "What it would delete now" }
        @match plan {
            Err(msg) => { p.error role="alert" { "Not a valid policy: " (msg) } }
            Ok(p) if p.items.is_empty() => { p { "Nothing: every tag and image is kept." } }
            Ok(p) => {
                @let pages = p.items.len().div_ceil(PLAN_ROWS);
                @let page = page.clamp(1, pages);
                @let first = (page - 1) * PLAN_ROWS;
                @let shown = &p.items[first..(first + PLAN_ROWS).min(p.items.len())];
                p {
                    (p.tags) (if p.tags == 1 { " tag and " } else { " tags and " })
                    (p.manifests) (if p.manifests == 1 { " image; " } else { " images; " }) (size(p.bytes))
                    " no kept image uses any more, freed by the next garbage collection."
                }
                // Wide (the reasons): a focusable region, so that the
                // keyboard scrolls it too.
                div.scroll tabindex="0" role="region" aria-label="Planned deletions" { table {
                    thead { tr {
                        th scope="col" { "Repository" } th scope="col" { "Tag or image" }
                        th scope="col" { "Rule" } th scope="col" { "Why" } th scope="col" { "Pushed" }
                        th.num scope="col" { "Frees" }
                    } }
                    tbody {
                        @for i in shown {
                            tr {
                                td { (i.repository) }
                                td.mono {
                                    @match (&i.kind, &i.tag) {
                                        (ItemKind::Tag, Some(t)) => { "tag " (t) }
                                        _ => { "image " (super::format::short_digest(i.digest.as_str())) }
                                    }
                                }
                                td { (i.rule) }
                                td { (i.reason) }
                                td { (time(i.pushed_at, now)) }
                                td.num { (size(i.bytes)) }
                            }
                        }
                    }
                } }
                @if pages > 1 {
                    nav.pager aria-label="Plan pages" {
                        @if page > 1 {
                            button type="submit" form="retention-form" name="plan_page" value=(page - 1) { "← Previous" }
                        }
                        span { "Deletions " (first + 1) "–" (first + shown.len()) " of " (p.items.len()) " (page " (page) " of " (pages) ")" }
                        @if page < pages {
                            button type="submit" form="retention-form" name="plan_page" value=(page + 1) { "Next →" }
                        }
                    }
                    p.muted { code { "berth retention plan" } " lists them all at once." }
                }
            }
        }
    }
}
