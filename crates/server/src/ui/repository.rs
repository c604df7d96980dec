//! A repository: its tags (filter, sort, pages), with copyable pull
//! commands. `/ui/repo/NAME` is the repository; `/ui/repo/NAME:TAG` and
//! `/ui/repo/NAME@DIGEST` are an image of it (see [`super::image`]), as a
//! docker reference reads (a repository name holds no `:` or `@`).
//!
//! A repository the viewer may not read is a 404, like one that does not
//! exist: the page never tells which.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use berth_oci::{Digest, Reference, RepositoryName, Tag};
use berth_registry::TagView;
use maud::{html, Markup};
use serde::Deserialize;

use super::format::{maybe_time, short_digest, size, time};
use super::{answer, image, Page, UiError, Viewer};
use crate::api::Need;
use crate::App;

/// Tags per page.
const PER_PAGE: usize = 50;

/// How the tag table is asked for.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TagQuery {
    /// Only tags containing this.
    q: Option<String>,
    /// `name`, `pushed`, `size` or `pulls`.
    sort: Option<String>,
    /// `asc` or `desc`.
    dir: Option<String>,
    /// 1-based page.
    page: Option<usize>,
    /// The image page's platform (`linux/arm64`).
    pub(crate) platform: Option<String>,
    /// The image page's lowest vulnerability severity shown.
    pub(crate) severity: Option<String>,
}

/// What a `/ui/repo/...` path names.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Repository(RepositoryName),
    Image(RepositoryName, Reference),
}

fn parse(path: &str) -> Option<Target> {
    let path = path.trim_end_matches('/');
    let (head, last) = match path.rsplit_once('/') {
        Some((h, l)) => (Some(h), l),
        None => (None, path),
    };
    let join = |name: &str| match head {
        Some(h) => format!("{h}/{name}"),
        None => name.to_owned(),
    };
    if let Some((name, digest)) = last.split_once('@') {
        let repo = RepositoryName::parse(join(name)).ok()?;
        return Some(Target::Image(
            repo,
            Reference::Digest(Digest::parse(digest).ok()?),
        ));
    }
    if let Some((name, tag)) = last.split_once(':') {
        let repo = RepositoryName::parse(join(name)).ok()?;
        return Some(Target::Image(repo, Reference::Tag(Tag::parse(tag).ok()?)));
    }
    RepositoryName::parse(path).ok().map(Target::Repository)
}

/// Checks that the viewer may read `name`; a refusal looks like absence.
pub(crate) async fn readable(
    app: &App,
    viewer: &Viewer,
    name: &RepositoryName,
) -> Result<(), UiError> {
    viewer
        .principal
        .require(app, name, Need::Read)
        .await
        .map(drop)
        .map_err(|_| UiError::NotFound("no such repository, or none you may read".into()))
}

/// The registry host clients pull from: the external URL's, else the
/// request's `Host`.
pub(crate) fn registry_host(app: &App, headers: &HeaderMap) -> String {
    if let Some(url) = &app.settings.external_url {
        let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        return rest.trim_end_matches('/').to_owned();
    }
    headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .unwrap_or("localhost")
        .to_owned()
}

/// `GET /ui/repo/{*path}`.
pub(crate) async fn handle(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    viewer: Viewer,
    Path(path): Path<String>,
    Query(query): Query<TagQuery>,
) -> Response {
    let result = async {
        match parse(&path) {
            Some(Target::Repository(name)) => render(&app, &headers, &viewer, &name, &query).await,
            Some(Target::Image(name, reference)) => {
                image::render(&app, &headers, &viewer, &name, &reference, &query).await
            }
            None => Err(UiError::NotFound(format!("{path:?} names no repository"))),
        }
    }
    .await;
    answer(&viewer, result)
}

/// The tags to show: filtered, sorted, one page of them.
fn select<'a>(tags: &'a [TagView], q: &TagQuery) -> (Vec<&'a TagView>, usize) {
    let needle = q.q.as_deref().unwrap_or("").trim();
    let mut shown: Vec<&TagView> = tags
        .iter()
        .filter(|t| needle.is_empty() || t.name.as_str().contains(needle))
        .collect();
    let desc = match q.dir.as_deref() {
        Some("asc") => false,
        Some("desc") => true,
        _ => q.sort.as_deref().is_some_and(|s| s != "name"),
    };
    match q.sort.as_deref() {
        Some("pushed") => shown.sort_by_key(|t| (t.pushed_at, t.updated_at)),
        Some("size") => shown.sort_by_key(|t| t.size),
        Some("pulls") => shown.sort_by_key(|t| t.pull_count),
        _ => {} // by name already
    }
    if desc {
        shown.reverse();
    }
    let total = shown.len();
    let page = q.page.unwrap_or(1).max(1);
    let start = (page - 1).saturating_mul(PER_PAGE).min(total);
    let end = (start + PER_PAGE).min(total);
    (shown[start..end].to_vec(), total)
}

/// A link to this page with `changes` applied to the query.
fn link(
    name: &RepositoryName,
    q: &TagQuery,
    sort: Option<&str>,
    dir: Option<&str>,
    page: usize,
) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    if let Some(f) = q.q.as_deref().filter(|f| !f.is_empty()) {
        out.append_pair("q", f);
    }
    if let Some(s) = sort {
        out.append_pair("sort", s);
    }
    if let Some(d) = dir {
        out.append_pair("dir", d);
    }
    if page > 1 {
        out.append_pair("page", &page.to_string());
    }
    let query = out.finish();
    if query.is_empty() {
        format!("/ui/repo/{name}")
    } else {
        format!("/ui/repo/{name}?{query}")
    }
}

async fn render(
    app: &App,
    headers: &HeaderMap,
    viewer: &Viewer,
    name: &RepositoryName,
    q: &TagQuery,
) -> Result<Response, UiError> {
    readable(app, viewer, name).await?;
    let tags = app.registry.repository_tags(name).await?;
    let (page, total) = select(&tags, q);
    let mut rows = Vec::with_capacity(page.len());
    for t in &page {
        let platforms = image::platforms(app, name, &t.digest).await?;
        let scan = app
            .registry
            .stored_scan(name, &t.digest)
            .await
            .ok()
            .flatten();
        rows.push((*t, platforms, scan.map(|s| s.counts)));
    }
    let host = registry_host(app, headers);
    let featured = tags
        .iter()
        .find(|t| t.name.as_str() == "latest")
        .or_else(|| tags.iter().max_by_key(|t| t.pushed_at));
    let now = berth_registry::now_ms();
    let current = q.page.unwrap_or(1).max(1);
    let pages = total.div_ceil(PER_PAGE).max(1);
    let sort = q.sort.as_deref().unwrap_or("name");
    let header = |label: &str, key: &str, numeric: bool| -> Markup {
        let active = sort == key;
        let dir = if active && q.dir.as_deref() == Some("asc") {
            "desc"
        } else if active && q.dir.as_deref() == Some("desc") {
            "asc"
        } else if key == "name" {
            if active {
                "desc"
            } else {
                "asc"
            }
        } else {
            "desc"
        };
        let aria = if !active {
            "none"
        } else if (key == "name" && q.dir.as_deref() != Some("desc"))
            || q.dir.as_deref() == Some("asc")
        {
            "ascending"
        } else {
            "descending"
        };
        html! {
            th.num[numeric] scope="col" aria-sort=(aria) {
                a href=(link(name, q, Some(key), Some(dir), 1)) { (label) }
            }
        }
    };
    let body = html! {
        h1 { (name) }
        @if let Some(f) = featured {
            (pull_commands(&host, name, f.name.as_str(), f.digest.as_str()))
        }
        section aria-labelledby="tags-h" {
            h2 #tags-h { "Tags " span.muted { "(" (total) ")" } }
            form.filter method="get" action={ "/ui/repo/" (name) } {
                label for="tag-filter" { "Filter tags" }
                input #tag-filter type="search" name="q" value=(q.q.as_deref().unwrap_or(""));
                @if let Some(s) = &q.sort { input type="hidden" name="sort" value=(s); }
                @if let Some(d) = &q.dir { input type="hidden" name="dir" value=(d); }
                button type="submit" { "Filter" }
            }
            @if rows.is_empty() {
                p.muted { "No tags." }
            } @else {
                div.scroll {
                    table.tags {
                        thead { tr {
                            (header("Tag", "name", false))
                            th scope="col" { "Digest" }
                            th scope="col" { "Platforms" }
                            (header("Size", "size", true))
                            (header("Pushed", "pushed", false))
                            th scope="col" { "Last pulled" }
                            (header("Pulls", "pulls", true))
                            th scope="col" { "Vulnerabilities" }
                        } }
                        tbody {
                            @for (t, platforms, counts) in &rows {
                                tr {
                                    td { a href={ "/ui/repo/" (name) ":" (t.name.as_str()) } { (t.name.as_str()) } }
                                    td { a.mono href={ "/ui/repo/" (name) "@" (t.digest.as_str()) } title=(t.digest.as_str()) { (short_digest(t.digest.as_str())) } }
                                    td { (platforms.join(", ")) }
                                    td.num { (size(t.size)) }
                                    td { (time(t.pushed_at, now)) }
                                    td { (maybe_time(t.last_pulled_at, now, "never")) }
                                    td.num { (t.pull_count) }
                                    td { (image::vuln_badge(counts.as_ref())) }
                                }
                            }
                        }
                    }
                }
                @if pages > 1 {
                    nav.pager aria-label="Tag pages" {
                        @if current > 1 { a rel="prev" href=(link(name, q, q.sort.as_deref(), q.dir.as_deref(), current - 1)) { "← Previous" } }
                        span { "Page " (current.min(pages)) " of " (pages) }
                        @if current < pages { a rel="next" href=(link(name, q, q.sort.as_deref(), q.dir.as_deref(), current + 1)) { "Next →" } }
                    }
                }
            }
        }
    };
    Ok(Page::new(name.as_str())
        .crumb("Repositories", "/ui/")
        .crumb(
            name.namespace_str(),
            format!("/ui/ns/{}", name.namespace_str()),
        )
        .render(Some(viewer), body))
}

/// The pull commands of `name:tag` (`digest`), for docker, podman and
/// Helm, by tag and pinned by digest, each with a copy button.
pub(crate) fn pull_commands(host: &str, name: &RepositoryName, tag: &str, digest: &str) -> Markup {
    let by_tag = format!("{host}/{name}:{tag}");
    let by_digest = format!("{host}/{name}@{digest}");
    let commands = [
        (
            "docker",
            format!("docker pull {by_tag}"),
            format!("docker pull {by_digest}"),
        ),
        (
            "podman",
            format!("podman pull {by_tag}"),
            format!("podman pull {by_digest}"),
        ),
        (
            "Helm",
            format!("helm pull oci://{host}/{name} --version {tag}"),
            format!("helm pull oci://{by_digest}"),
        ),
    ];
    html! {
        section.pull aria-labelledby="pull-h" {
            h2 #pull-h { "Pull " code { (tag) } }
            dl {
                @for (tool, tagged, pinned) in &commands {
                    dt { (tool) }
                    dd {
                        div.cmd { code { (tagged) } button.copy type="button" data-copy=(tagged) aria-label={ "Copy the " (tool) " command" } { "Copy" } }
                        div.cmd { code { (pinned) } button.copy type="button" data-copy=(pinned) aria-label={ "Copy the " (tool) " command pinned by digest" } { "Copy" } }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_a_repository_or_an_image() {
        let repo = |s: &str| RepositoryName::parse(s).unwrap();
        assert_eq!(
            parse("acme/web"),
            Some(Target::Repository(repo("acme/web")))
        );
        assert_eq!(
            parse("acme/web/"),
            Some(Target::Repository(repo("acme/web")))
        );
        assert_eq!(
            parse("acme/team/web:v1.2"),
            Some(Target::Image(
                repo("acme/team/web"),
                Reference::Tag(Tag::parse("v1.2").unwrap())
            ))
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            parse(&format!("web@{d}")),
            Some(Target::Image(
                repo("web"),
                Reference::Digest(Digest::parse(&d).unwrap())
            ))
        );
        assert_eq!(parse("acme/Web"), None);
        assert_eq!(parse("acme/web@sha256:zz"), None);
    }

    fn tag(name: &str, pushed: i64, size: u64) -> TagView {
        TagView {
            name: Tag::parse(name).unwrap(),
            digest: Digest::parse(&format!("sha256:{}", "b".repeat(64))).unwrap(),
            media_type: String::new(),
            pushed_at: pushed,
            updated_at: pushed,
            size,
            pull_count: 0,
            last_pulled_at: None,
        }
    }

    #[test]
    fn tags_filter_sort_and_page() {
        let tags: Vec<TagView> = (0..120)
            .map(|i| tag(&format!("v{i:03}"), i, 1000 - i as u64))
            .collect();
        let (page, total) = select(&tags, &TagQuery::default());
        assert_eq!((page.len(), total), (PER_PAGE, 120));
        assert_eq!(page[0].name.as_str(), "v000");
        let q = TagQuery {
            page: Some(3),
            ..TagQuery::default()
        };
        let (page, _) = select(&tags, &q);
        assert_eq!(page.len(), 20);
        assert_eq!(page[0].name.as_str(), "v100");
        let q = TagQuery {
            sort: Some("pushed".into()),
            ..TagQuery::default()
        };
        assert_eq!(select(&tags, &q).0[0].name.as_str(), "v119", "newest first");
        let q = TagQuery {
            sort: Some("size".into()),
            dir: Some("asc".into()),
            ..TagQuery::default()
        };
        assert_eq!(
            select(&tags, &q).0[0].name.as_str(),
            "v119",
            "smallest first"
        );
        let q = TagQuery {
            q: Some("v11".into()),
            ..TagQuery::default()
        };
        assert_eq!(select(&tags, &q).1, 10);
        let q = TagQuery {
            page: Some(99),
            ..TagQuery::default()
        };
        assert!(select(&tags, &q).0.is_empty());
    }
}
