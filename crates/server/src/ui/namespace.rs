//! A namespace: its repositories, visibility, members and storage.
//!
//! Its members (and site admins) see everything the API's namespace views
//! show (`Need::Member`): every repository with its bytes, the members,
//! the quota and its use. Anyone else sees only the repositories of it
//! they may read, and a namespace with none of those is a 404.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use berth_registry::{NamespaceKind, NamespaceUsage};
use maud::{html, Markup};

use super::format::size;
use super::home::readable;
use super::{answer, Page, UiError, Viewer};
use crate::api::Need;
use crate::App;

/// `GET /ui/ns/{ns}`.
pub(crate) async fn handle(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Path(ns): Path<String>,
) -> Response {
    let result = render(&app, &viewer, &ns).await;
    answer(&viewer, result)
}

/// The repositories of `ns` the viewer may read (by the filtered catalog).
async fn readable_in(app: &App, viewer: &Viewer, ns: &str) -> Result<Vec<String>, UiError> {
    let prefix = format!("{ns}/");
    let mut out = Vec::new();
    let mut last = Some(ns.to_owned());
    loop {
        let page = readable(app, viewer, last.as_deref(), 1000).await?;
        for name in page.items() {
            if name.starts_with(&prefix) {
                out.push(name.clone());
            } else if name.as_str() > prefix.as_str() {
                return Ok(out);
            }
        }
        match page.items().last() {
            Some(l) if page.more => last = Some(l.clone()),
            _ => return Ok(out),
        }
    }
}

async fn render(app: &App, viewer: &Viewer, raw: &str) -> Result<Response, UiError> {
    let ns = berth_oci::Namespace::parse(raw)
        .map_err(|_| UiError::NotFound(format!("{raw:?} is not a namespace name")))?;
    let member = viewer
        .principal
        .require(app, &ns, Need::Member)
        .await
        .is_ok();
    let (visibility, _) = app.auth.namespace_visibility(&ns).await?;
    let body = if member {
        let usage = app.registry.namespace_usage(&ns).await?;
        let members = match app.auth.org(ns.as_str()).await {
            Ok(org) if org.kind == NamespaceKind::Org => Some(app.auth.members(ns.as_str()).await?),
            _ => None,
        };
        html! {
            (header(ns.as_str(), visibility.as_str()))
            p { a href={ "/ui/ns/" (ns.as_str()) "/settings" } { "Retention policy, tag rules and quota" } }
            (storage(&usage))
            (repositories_with_usage(&usage))
            @if let Some(members) = members {
                section aria-labelledby="members-h" {
                    h2 #members-h { "Members" }
                    p { a href={ "/ui/org/" (ns.as_str()) } { "Members and robots of " (ns.as_str()) } }
                    table {
                        thead { tr { th scope="col" { "Account" } th scope="col" { "Role" } } }
                        tbody {
                            @for m in &members {
                                tr { td { (m.member) } td { (m.role.as_str()) } }
                            }
                        }
                    }
                }
            } @else {
                p.muted { "A user's own namespace: its owner is its only member." }
            }
        }
    } else {
        let repos = readable_in(app, viewer, ns.as_str()).await?;
        if repos.is_empty() {
            return Err(UiError::NotFound(format!(
                "no repositories of {ns} to show"
            )));
        }
        html! {
            (header(ns.as_str(), visibility.as_str()))
            section aria-labelledby="repos-h" {
                h2 #repos-h { "Repositories" }
                ul.cards {
                    @for r in &repos { li { a href={ "/ui/repo/" (r) } { (r) } } }
                }
            }
        }
    };
    Ok(Page::new(ns.as_str())
        .crumb("Repositories", "/ui/")
        .render(Some(viewer), body))
}

fn header(ns: &str, visibility: &str) -> Markup {
    html! {
        h1 { (ns) " " span.badge { (visibility) } }
    }
}

fn storage(usage: &NamespaceUsage) -> Markup {
    html! {
        section aria-labelledby="usage-h" {
            h2 #usage-h { "Storage" }
            @if let Some(q) = &usage.quota {
                p {
                    label for="quota" { "Quota: " (size(q.used_bytes)) " of " (size(q.limit_bytes)) " used" }
                }
                meter #quota min="0" max=(q.limit_bytes) value=(q.used_bytes.min(q.limit_bytes))
                    low=(q.limit_bytes / 10 * 8) high=(q.limit_bytes / 20 * 19) optimum="0" {
                    (size(q.used_bytes)) " of " (size(q.limit_bytes))
                }
            } @else {
                p { (size(usage.total_bytes)) " stored (no quota)." }
            }
            p.muted {
                (usage.manifests) " manifests, " (usage.blobs) " blobs; "
                (size(usage.unreferenced_bytes)) " unreferenced, held until garbage collection."
            }
        }
    }
}

fn repositories_with_usage(usage: &NamespaceUsage) -> Markup {
    html! {
        section aria-labelledby="repos-h" {
            h2 #repos-h { "Repositories" }
            @if usage.repositories.is_empty() {
                p.muted { "No repositories yet." }
            } @else {
                div.scroll {
                    table {
                        thead { tr {
                            th scope="col" { "Repository" }
                            th.num scope="col" { "Manifests" }
                            th.num scope="col" { "Size" }
                            th.num scope="col" { "Unique" }
                        } }
                        tbody {
                            @for r in &usage.repositories {
                                tr {
                                    td { a href={ "/ui/repo/" (r.name) } { (r.name) } }
                                    td.num { (r.manifests) }
                                    td.num { (size(r.total_bytes)) }
                                    td.num { (size(r.unique_bytes)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
