//! Pages for site administrators only: the accounts of the registry.
//! Anyone else gets a 403 page (signed out: the sign-in page).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::format::time;
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
