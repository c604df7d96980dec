//! The start page: search across the repositories the viewer may read,
//! and the namespaces they belong to.
//!
//! Listings come from the same filtered catalog as `/v2/_catalog`
//! ([`berth_registry::auth::Authority::catalog`]): a private repository
//! the viewer may not read is never scanned, let alone shown.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::{answer, Page, UiError, Viewer};
use crate::App;

/// Repositories listed without a search.
const FIRST: usize = 100;
/// Search results shown at most.
const MAX_RESULTS: usize = 200;
/// Catalog entries looked at per page of the search.
const BATCH: i64 = 1000;

#[derive(Deserialize)]
pub(crate) struct Search {
    q: Option<String>,
}

/// A page of the catalog the viewer may read, after `last`.
pub(crate) async fn readable(
    app: &App,
    viewer: &Viewer,
    last: Option<&str>,
    n: i64,
) -> Result<berth_registry::Page, UiError> {
    Ok(if app.auth.enforced() {
        app.auth
            .catalog(&app.registry, viewer.identity(), Some(n), last)
            .await?
    } else {
        app.registry.catalog(Some(n), last).await?
    })
}

/// Up to `limit` readable repositories whose name contains `needle`
/// (every one when it is empty), and whether there were more.
pub(crate) async fn search(
    app: &App,
    viewer: &Viewer,
    needle: &str,
    limit: usize,
) -> Result<(Vec<String>, bool), UiError> {
    let needle = needle.to_lowercase();
    let mut found = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let page = readable(app, viewer, last.as_deref(), BATCH).await?;
        for name in page.items() {
            if name.contains(needle.as_str()) {
                if found.len() == limit {
                    return Ok((found, true));
                }
                found.push(name.clone());
            }
        }
        match page.items().last() {
            Some(l) if page.more => last = Some(l.clone()),
            _ => return Ok((found, false)),
        }
    }
}

/// The namespaces the viewer belongs to: their own, then their
/// organisations' (every organisation for a site admin).
async fn namespaces(app: &App, viewer: &Viewer) -> Result<Vec<String>, UiError> {
    let Some(me) = viewer.account() else {
        return Ok(Vec::new());
    };
    let mut out = vec![me.to_owned()];
    for org in app.auth.orgs_for(viewer.identity()).await? {
        if org.name != me {
            out.push(org.name);
        }
    }
    Ok(out)
}

/// `GET /ui/?q=`.
pub(crate) async fn handle(
    State(app): State<Arc<App>>,
    viewer: Viewer,
    Query(s): Query<Search>,
) -> Response {
    let result = render(&app, &viewer, s.q.as_deref().unwrap_or("").trim()).await;
    answer(&viewer, result)
}

async fn render(app: &App, viewer: &Viewer, q: &str) -> Result<Response, UiError> {
    let limit = if q.is_empty() { FIRST } else { MAX_RESULTS };
    let (repos, more) = search(app, viewer, q, limit).await?;
    let namespaces = namespaces(app, viewer).await?;
    let anonymous = viewer.account().is_none() && app.auth.enforced();
    let body = html! {
        h1 { "Repositories" }
        form.search-big role="search" action="/ui/" method="get" {
            label for="q" { "Search the repositories you can read" }
            div.row {
                input #q type="search" name="q" value=(q) placeholder="name or part of it";
                button type="submit" { "Search" }
            }
        }
        @if anonymous {
            p.notice { "You see public repositories only. " a href="/ui/login" { "Sign in" } " to see yours." }
        }
        section aria-labelledby="repos-h" {
            h2 #repos-h {
                @if q.is_empty() { "All you can read" } @else { "Matching “" (q) "”" }
            }
            @if repos.is_empty() {
                p.muted { @if q.is_empty() { "No repositories yet. Push one: " code { "docker push HOST/NAMESPACE/NAME:TAG" } } @else { "Nothing matches." } }
            } @else {
                ul.cards {
                    @for name in &repos {
                        li { a href={ "/ui/repo/" (name) } { (name) } }
                    }
                }
                @if more { p.muted { "More repositories match: narrow the search." } }
            }
        }
        @if !namespaces.is_empty() {
            section aria-labelledby="ns-h" {
                h2 #ns-h { "Your namespaces" }
                ul.cards {
                    @for ns in &namespaces {
                        li { a href={ "/ui/ns/" (ns) } { (ns) } }
                    }
                }
            }
        }
    };
    Ok(Page::new("Repositories").render(Some(viewer), body))
}
