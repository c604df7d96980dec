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
use berth_registry::scanning::ScanSummary;
use berth_registry::{SignatureState, TagOrder, TagPageQuery};
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

/// What the database is asked for: the filter, the order (names
/// ascending by default, the other keys largest first) and the page.
fn page_query(q: &TagQuery) -> TagPageQuery {
    let order = match q.sort.as_deref() {
        Some("pushed") => TagOrder::Pushed,
        Some("size") => TagOrder::Size,
        Some("pulls") => TagOrder::Pulls,
        _ => TagOrder::Name,
    };
    let descending = match q.dir.as_deref() {
        Some("asc") => false,
        Some("desc") => true,
        _ => order != TagOrder::Name,
    };
    let page = q.page.unwrap_or(1).max(1);
    TagPageQuery {
        contains: q.q.as_deref().unwrap_or("").trim().to_owned(),
        order,
        descending,
        limit: PER_PAGE as u32,
        offset: (page as u64 - 1).saturating_mul(PER_PAGE as u64),
    }
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
    let tag_page = app.registry.tag_page(name, &page_query(q)).await?;
    let total = usize::try_from(tag_page.total).unwrap_or(usize::MAX);
    // Platforms and the images a scan covers, for the page's manifests.
    let mut contents = Vec::with_capacity(tag_page.tags.len());
    for t in &tag_page.tags {
        contents.push(image::contents(app, name, &t.digest).await?);
    }
    let covered: Vec<Vec<Digest>> = contents.iter().map(|(_, c)| c.clone()).collect();
    let scans = app.registry.scan_summaries(name, &covered).await?;
    let digests: Vec<Digest> = tag_page.tags.iter().map(|t| t.digest.clone()).collect();
    let signatures = app.registry.signature_states(name, &digests).await?;
    let rows: Vec<_> = tag_page
        .tags
        .iter()
        .zip(contents)
        .zip(scans)
        .map(|((t, (platforms, _)), scan)| (t, platforms, scan, signatures.get(&t.digest)))
        .collect();
    let host = registry_host(app, headers);
    let featured = tag_page.featured.as_ref();
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
        @if let Some((tag, digest)) = featured {
            (pull_commands(&host, name, tag.as_str(), digest.as_str()))
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
                            th scope="col" { "Signature" }
                            th scope="col" { "Vulnerabilities" }
                        } }
                        tbody {
                            @for (t, platforms, scan, signature) in &rows {
                                tr {
                                    td { a href={ "/ui/repo/" (name) ":" (t.name.as_str()) } { (t.name.as_str()) } }
                                    td { a.mono href={ "/ui/repo/" (name) "@" (t.digest.as_str()) } title=(t.digest.as_str()) { (short_digest(t.digest.as_str())) } }
                                    td { (platforms.join(", ")) }
                                    td.num { (size(t.size)) }
                                    td { (time(t.pushed_at, now)) }
                                    td { (maybe_time(t.last_pulled_at, now, "never")) }
                                    td.num { (t.pull_count) }
                                    td { (signature_badge(*signature)) }
                                    td { (scan_badge(scan)) }
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

/// The stored scan of a row: its worst findings, "scan failed" or "not
/// scanned yet".
fn scan_badge(scan: &ScanSummary) -> Markup {
    match scan.state {
        "scanned" => image::vuln_badge(Some(&scan.counts)),
        "failed" => html! { span.badge.high { "scan failed" } },
        _ => image::vuln_badge(None),
    }
}

/// The last signature verdict of a row: verified (by which key), why not,
/// or "not checked yet"; the exact time it was checked on hover.
fn signature_badge(state: Option<&SignatureState>) -> Markup {
    match state {
        Some(SignatureState::Verified { key, checked_at }) => html! {
            span.badge.ok title={ "checked " (super::format::exact(*checked_at)) } { "verified" }
            " " span.muted { (key) }
        },
        Some(SignatureState::Unverified {
            reason,
            detail,
            checked_at,
        }) => {
            let label = match reason.as_str() {
                "no_signature" => "unsigned",
                "no_trust" => "no trusted keys",
                "expired" => "expired",
                "bad_signature" | "digest_mismatch" => "invalid signature",
                _ => "not verified",
            };
            let bad = matches!(
                reason.as_str(),
                "bad_signature" | "digest_mismatch" | "expired" | "malformed"
            );
            html! {
                span.badge.high[bad] title={ (detail) " (checked " (super::format::exact(*checked_at)) ")" } { (label) }
            }
        }
        None => html! { span.muted { "not checked yet" } },
    }
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

    #[test]
    fn the_query_asks_the_database_for_one_page() {
        let p = page_query(&TagQuery::default());
        assert_eq!(
            (
                p.contains.as_str(),
                p.order,
                p.descending,
                p.limit,
                p.offset
            ),
            ("", TagOrder::Name, false, PER_PAGE as u32, 0)
        );
        let p = page_query(&TagQuery {
            q: Some(" v1 ".into()),
            sort: Some("size".into()),
            page: Some(3),
            ..TagQuery::default()
        });
        assert_eq!(
            (p.contains.as_str(), p.order, p.descending, p.offset),
            ("v1", TagOrder::Size, true, 2 * PER_PAGE as u64),
            "other keys largest first"
        );
        let p = page_query(&TagQuery {
            sort: Some("pushed".into()),
            dir: Some("asc".into()),
            page: Some(0),
            ..TagQuery::default()
        });
        assert_eq!(
            (p.order, p.descending, p.offset),
            (TagOrder::Pushed, false, 0)
        );
        let p = page_query(&TagQuery {
            sort: Some("pulls".into()),
            page: Some(usize::MAX),
            ..TagQuery::default()
        });
        assert_eq!(p.order, TagOrder::Pulls);
        assert!(p.offset > 0, "a huge page number saturates");
        let p = page_query(&TagQuery {
            sort: Some("nonsense".into()),
            dir: Some("desc".into()),
            ..TagQuery::default()
        });
        assert_eq!((p.order, p.descending), (TagOrder::Name, true));
    }
}
