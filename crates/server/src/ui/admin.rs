//! Pages for site administrators only: the accounts of the registry and
//! the storage of every namespace. Anyone else gets a 403 page (signed
//! out: the sign-in page).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::format::{size, time};
use super::{answer, Page, UiError, Viewer};
use crate::App;

/// `GET /ui/admin/users`.
pub(crate) async fn handle_users(State(app): State<Arc<App>>, viewer: Viewer) -> Response {
    let result = async {
        if app.auth.enforced() {
            viewer.signed_in()?;
        }
        viewer.principal.require_site_admin(&app)?;
        let users = app.auth.users().await?;
        let now = berth_registry::now_ms();
        let body = html! {
            h1 { "Users" }
            div.scroll { table {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Site admin" }
                    th scope="col" { "State" } th scope="col" { "Created" }
                } }
                tbody {
                    @for u in &users {
                        tr {
                            td { (u.name) }
                            td { (u.kind.as_str()) }
                            td { @if u.site_admin { "yes" } @else { "no" } }
                            td { @if u.disabled_at.is_some() { "disabled" } @else { "active" } }
                            td { (time(u.created_at, now)) }
                        }
                    }
                }
            } }
        };
        Ok::<_, UiError>(Page::new("Users").crumb("Repositories", "/ui/").render(Some(&viewer), body))
    }
    .await;
    answer(&viewer, result)
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
